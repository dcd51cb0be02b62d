//! Each step as written becomes a validated [`Step`]: its needs resolved
//! to indexes, where it runs, what it requires, its action and durations.

use std::collections::HashMap;
use std::time::Duration;

use super::{is_env_name, Step, Validator};
use crate::runbook::fleet::Fleet;
use crate::runbook::model::{Approval, Defaults, RunbookFile, StepSpec};
use crate::runbook::rolling;
use crate::runbook::suggest::nearest;

/// The `defaults:` every step starts from.
struct StepDefaults {
    timeout: Option<Duration>,
    retry_delay: Option<Duration>,
    retries: u32,
}

impl Validator<'_> {
    /// The steps in file order (before a step on a group is expanded), with
    /// the group each runs on, if any.
    pub(super) fn steps(
        &mut self,
        file: &RunbookFile,
        ids: &HashMap<&str, usize>,
        fleet: &Fleet,
    ) -> (Vec<Step>, Vec<Option<String>>) {
        let defaults = self.defaults(&file.defaults);
        let mut steps = Vec::with_capacity(file.steps.len());
        let mut on_group = Vec::with_capacity(file.steps.len());
        for (index, spec) in file.steps.iter().enumerate() {
            let needs = self.needs(index, spec, ids);
            let target = self.target(index, spec, fleet);
            // A rolling block is one node; its inner steps are the instances.
            on_group.push(target.group.filter(|_| !rolling::is_block(spec)));
            self.check_requires(index, spec, file);
            self.check_env_names(index, spec);
            let action = self.action(index, spec, fleet);
            let timeout = self.duration(Some(index), "timeout", spec.timeout.as_deref());
            let delay = self.duration(Some(index), "retry_delay", spec.retry_delay.as_deref());
            steps.push(Step {
                index,
                id: spec.id.clone(),
                source: index,
                family: None,
                needs,
                host: target.host,
                timeout: timeout.or(defaults.timeout),
                retries: spec.retries.unwrap_or(defaults.retries),
                retry_delay: delay
                    .or(defaults.retry_delay)
                    .unwrap_or(Duration::from_secs(5)),
                action,
                approval: approval(spec),
                spec: spec.clone(),
            });
        }
        (steps, on_group)
    }

    fn defaults(&mut self, defaults: &Defaults) -> StepDefaults {
        StepDefaults {
            timeout: self.duration(None, "timeout", defaults.timeout.as_deref()),
            retry_delay: self.duration(None, "retry_delay", defaults.retry_delay.as_deref()),
            retries: defaults.retries.unwrap_or(0),
        }
    }

    /// The indexes of the steps step `index` needs; an unknown id is a
    /// problem, with the nearest one.
    fn needs(&mut self, index: usize, spec: &StepSpec, ids: &HashMap<&str, usize>) -> Vec<usize> {
        let mut needs = Vec::with_capacity(spec.needs.len());
        for need in &spec.needs {
            match ids.get(need.as_str()) {
                Some(&n) => needs.push(n),
                None => {
                    let d = self
                        .problem(format!(
                            "step `{}` needs `{need}`, but no step has that id",
                            spec.id
                        ))
                        .at(self.source.step_value_span(index, "needs", need))
                        .maybe_hint(
                            nearest(need, ids.keys().copied())
                                .map(|n| format!("did you mean `{n}`?")),
                        );
                    self.push(d);
                }
            }
        }
        needs
    }

    fn check_env_names(&mut self, index: usize, spec: &StepSpec) {
        for name in spec.env.keys().filter(|name| !is_env_name(name)) {
            let d = self
                .problem(format!("`{name}` is not a valid environment variable name"))
                .at(self.source.step_value_span(index, "env", name))
                .hint("use letters, digits and underscores, not starting with a digit");
            self.push(d);
        }
    }
}

/// The question a step waits on, when it waits for an approval.
fn approval(spec: &StepSpec) -> Option<String> {
    match &spec.approval {
        None | Some(Approval::Flag(false)) => None,
        Some(Approval::Flag(true)) => Some(format!("Approve step `{}`?", spec.id)),
        Some(Approval::Question(q)) => Some(q.clone()),
    }
}
