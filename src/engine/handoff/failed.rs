//! The steps that failed or were interrupted, with the tail of their
//! output; past the first few instances of one step, only their names.

use std::collections::BTreeMap;

use super::Facts;
use crate::error::Result;
use crate::report::fleet::{family_of, short_ids};
use crate::report::handoff::FailedStep;
use crate::state::StepState;
use crate::store::StepRow;

/// Failed instances of one step shown with their output; the rest by name.
pub(super) const FAILED_SHOWN: usize = 2;

/// The failed steps; `tail` gives a step's last lines of output.
pub(super) fn failed(
    f: &Facts,
    tail: impl Fn(&StepRow) -> Result<Vec<String>>,
) -> Result<Vec<FailedStep>> {
    let mut failed = Vec::new();
    let mut failed_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in f
        .steps
        .iter()
        .filter(|s| matches!(s.state, StepState::Failed | StepState::Interrupted))
    {
        if let Some(family) = family_of(&s.id) {
            let seen = failed_of.entry(family).or_default();
            seen.push(s.id.clone());
            if seen.len() > FAILED_SHOWN {
                continue;
            }
        }
        failed.push(FailedStep {
            id: s.id.clone(),
            host: s.host.clone(),
            reason: s.reason.clone().unwrap_or_else(|| s.state.to_string()),
            output_tail: tail(s)?,
            logs_command: format!("runbook logs {} {}{}", f.run_id, s.id, f.flag),
        });
    }
    for (family, ids) in failed_of.iter().filter(|(_, ids)| ids.len() > FAILED_SHOWN) {
        failed.push(the_rest(f, family, &ids[FAILED_SHOWN..]));
    }
    Ok(failed)
}

/// One entry for the instances of `family` past the first few: the id is
/// the step's (an id); the instances are named in prose.
fn the_rest(f: &Facts, family: &str, rest: &[String]) -> FailedStep {
    FailedStep {
        id: family.to_string(),
        host: None,
        reason: format!(
            "{} more instance{} failed ({}); `runbook status {}{} --hosts` lists them with their reasons",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            short_ids(rest).join(", "),
            f.run_id,
            f.flag
        ),
        output_tail: Vec::new(),
        logs_command: format!("runbook logs {} {}{}", f.run_id, rest[0], f.flag),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, row};
    use super::*;

    #[test]
    fn the_first_instances_with_their_output_the_rest_by_name() {
        let mut steps = vec![row("build", StepState::Interrupted)];
        for h in 1..=4 {
            let mut r = row(&format!("deploy@w{h}"), StepState::Failed);
            r.host = Some(format!("w{h}"));
            r.reason = Some("exit code 1".into());
            steps.push(r);
        }
        steps.push(row("check", StepState::Succeeded));
        let f = facts(&steps, "");
        let failed = failed(&f, |s| Ok(vec![format!("last of {}", s.id)])).unwrap();
        let ids: Vec<_> = failed.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, ["build", "deploy@w1", "deploy@w2", "deploy"]);
        assert_eq!(failed[0].reason, "interrupted");
        assert_eq!(failed[1].host.as_deref(), Some("w1"));
        assert_eq!(failed[1].output_tail, ["last of deploy@w1"]);
        assert_eq!(failed[1].logs_command, "runbook logs 4 deploy@w1");
        let rest = &failed[3];
        assert!(
            rest.reason.starts_with("2 more instances failed ("),
            "{}",
            rest.reason
        );
        assert!(rest
            .reason
            .ends_with("`runbook status 4 --hosts` lists them with their reasons"));
        assert!(rest.output_tail.is_empty() && rest.host.is_none());
        assert_eq!(rest.logs_command, "runbook logs 4 deploy@w3");
    }

    #[test]
    fn a_failed_tail_is_an_error_of_the_whole() {
        let steps = [row("a", StepState::Failed)];
        let f = facts(&steps, "");
        let e = failed(&f, |_| Err(crate::error::Error::Usage("gone".into())));
        assert!(e.is_err());
    }
}
