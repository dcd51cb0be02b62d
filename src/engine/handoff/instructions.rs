//! What the person taking over runs: the resume command, the approvals
//! asked for, and the notes the author wrote on the steps not done.

use super::Facts;
use crate::report::handoff::{ApprovalNeed, StepLine};
use crate::state::StepState;

/// The command that continues the run, with every `--env-file` it was given.
pub(super) fn resume_command(f: &Facts, env_files: &[String]) -> String {
    let mut command = format!("runbook resume {}{}", f.run_id, f.flag);
    for file in env_files {
        command.push_str(&format!(
            " --env-file {}",
            crate::exec::quote::sh_quote(file)
        ));
    }
    command
}

/// The steps held for an approval that none has given (`approved`).
pub(super) fn approvals(f: &Facts, approved: impl Fn(&str) -> bool) -> Vec<ApprovalNeed> {
    f.steps
        .iter()
        .filter(|s| {
            // Held, asks for an approval, and has none yet; without the
            // runbook at hand, a step held on no secret is held on one.
            let asks = match f.spec_of(&s.id) {
                Some(spec) => spec.approval.is_some(),
                None => s.missing.is_empty() && s.rejected.is_empty(),
            };
            s.state == StepState::Held && asks && !approved(&s.id)
        })
        .map(|s| ApprovalNeed {
            step: s.id.clone(),
            question: f
                .spec_of(&s.id)
                .and_then(|st| {
                    let a = st.approval.as_deref()?;
                    Some(f.label(st, a))
                })
                .unwrap_or_else(|| format!("Approve step `{}`?", s.id)),
            command: format!(
                "runbook approve {} {}{} --note \"why it is fine\"",
                f.run_id, s.id, f.flag
            ),
        })
        .collect()
}

/// The `doc` of every step not done (SPEC §6), so whoever picks the run
/// up reads what each one is for.
pub(super) fn notes(f: &Facts) -> Vec<StepLine> {
    let notes = f
        .steps
        .iter()
        .filter(|s| !matches!(s.state, StepState::Succeeded | StepState::Skipped))
        .filter_map(|s| {
            f.spec_of(&s.id)
                .and_then(|st| st.spec.doc.clone())
                .map(|doc| StepLine::new(s.id.clone(), doc))
        })
        .collect();
    super::done::collapse(notes)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, row};
    use super::*;

    #[test]
    fn the_resume_command_quotes_each_env_file_and_keeps_the_state_flag() {
        let steps = [row("a", StepState::Held)];
        let f = facts(&steps, " --state /s/r.db");
        assert_eq!(
            resume_command(&f, &["my env".into(), "b.env".into()]),
            "runbook resume 4 --state /s/r.db --env-file 'my env' --env-file b.env"
        );
    }

    #[test]
    fn an_approval_is_asked_of_a_held_step_on_no_secret_until_given() {
        let mut on_secret = row("b", StepState::Held);
        on_secret.missing = vec!["TOKEN".into()];
        let steps = [
            row("a", StepState::Held),
            on_secret,
            row("c", StepState::Succeeded),
        ];
        let f = facts(&steps, "");
        let asked = approvals(&f, |_| false);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].step, "a");
        assert_eq!(asked[0].question, "Approve step `a`?");
        assert_eq!(
            asked[0].command,
            "runbook approve 4 a --note \"why it is fine\""
        );
        assert!(approvals(&f, |id| id == "a").is_empty());
    }

    #[test]
    fn without_the_runbook_there_are_no_notes() {
        let steps = [row("a", StepState::Failed)];
        assert!(notes(&facts(&steps, "")).is_empty());
    }
}
