//! What the scheduler asks before a step starts: is it skipped, held,
//! unable to run, or ready (rendered with the real secret values)?

use std::collections::BTreeMap;
use std::sync::Arc;

use super::loaded::Loaded;
use super::lookup::SecretStates;
use crate::plan::{self, Rendered};
use crate::scheduler::{Gate, Hold, NotReady};
use crate::secrets::Redactor;

/// The engine's answers for one pass.
pub(super) struct EngineGate<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) secrets: &'a SecretStates,
    /// Ids of the steps approved so far.
    pub(super) approvals: Vec<String>,
    pub(super) redactor: Arc<Redactor>,
}

impl EngineGate<'_> {
    /// The values found for these secrets, as a step on `host` sees them.
    fn values(&self, names: &[String], host: Option<&str>) -> BTreeMap<String, String> {
        let values = self.secrets.values_for(host);
        names
            .iter()
            .filter_map(|s| {
                let v = values.get(s)?;
                Some((s.clone(), v.to_string()))
            })
            .collect()
    }

    /// `when`, with the real secret values; `None` while a secret it reads
    /// is held (the step is held then, for all it waits on).
    fn when(&self, i: usize) -> Option<Result<bool, NotReady>> {
        let step = &self.loaded.runbook.steps[i];
        let cond = step.spec.when.as_deref()?;
        let templater = &self.loaded.templater;
        let host = step.host.as_deref();
        if self
            .secrets
            .hold_for(&templater.secret_names(cond, true), host)
            .is_held()
        {
            return None;
        }
        let c = self.loaded.ctx.for_instance(
            &step.spec.id,
            host,
            &self.values(&step.spec.requires, host),
        );
        match templater.condition(cond, &c) {
            Ok(v) => Some(Ok(v)),
            // A use the syntax list cannot see (`secrets[name]`) of a held
            // secret: held, not failed.
            Err(_) if self.secrets.hold_for(&step.spec.requires, host).is_held() => None,
            Err(e) => Some(Err(NotReady::Failed(self.redactor.redact(&format!(
                "`when` cannot be evaluated with the secret values: {}",
                e.message
            ))))),
        }
    }
}

impl Gate for EngineGate<'_> {
    fn prepare(&mut self, i: usize) -> Result<Rendered, NotReady> {
        let step = &self.loaded.runbook.steps[i];
        let planned = &self.loaded.plan.steps[i];
        // `when` first: a step that will not run waits on nobody.
        if let Some(when) = self.when(i) {
            if !when? {
                return Ok(Rendered {
                    when: false,
                    ..planned.rendered.clone()
                });
            }
        }
        let mut hold = self
            .secrets
            .hold_for(&planned.requires, planned.host.as_deref());
        if step.approval.is_some() && !self.approvals.contains(&planned.id) {
            hold.approval = step.approval.as_deref().map(|a| {
                plan::render_label(&self.loaded.templater, &self.loaded.ctx, step, a)
                    .unwrap_or_else(|_| a.to_string())
            });
        }
        if hold.is_held() {
            return Err(NotReady::Held(hold));
        }
        let values = self.values(&planned.requires, planned.host.as_deref());
        let mut rendered = self.render(i, &values)?;
        // An upload's source is read now, as the step starts (SPEC §14).
        plan::source::load(
            &self.loaded.templater,
            &self.loaded.ctx,
            step,
            &values,
            &mut rendered,
        )
        .map_err(|e| NotReady::Failed(self.redactor.redact(&e)))?;
        Ok(rendered)
    }

    fn waiting_on(&self, i: usize) -> Hold {
        let step = &self.loaded.plan.steps[i];
        self.secrets.hold_for(&step.requires, step.host.as_deref())
    }

    fn redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }
}

impl EngineGate<'_> {
    /// The step's definition with the real secret values (the plan's when
    /// it needs none).
    fn render(&self, i: usize, values: &BTreeMap<String, String>) -> Result<Rendered, NotReady> {
        let step = &self.loaded.runbook.steps[i];
        let planned = &self.loaded.plan.steps[i];
        if planned.requires.is_empty() {
            return Ok(planned.rendered.clone());
        }
        // Never the placeholder version: what cannot be rendered with the
        // real values does not run.
        plan::render_step(
            &self.loaded.templater,
            &self.loaded.ctx,
            &self.loaded.runbook,
            step,
            values,
        )
        .map_err(|(field, e)| {
            let names = &planned.requires;
            let (s, names) = match names.len() {
                1 => ("", names[0].clone()),
                _ => ("s", names.join(", ")),
            };
            NotReady::Failed(self.redactor.redact(&format!(
                "`{field}` cannot be rendered with the value{s} of secret{s} {names}: {}",
                e.message
            )))
        })
    }
}
