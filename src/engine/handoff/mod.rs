//! `runbook handoff`: gathers what the state and the runbook know into the
//! model of `report::handoff`, one named piece each: `held` (the secrets a
//! person must supply, by owner), `sources` (where each can be put),
//! `failed` (the failed steps and their output), `done` (the steps done,
//! the steps blocked, the counts) and `instructions` (the resume command,
//! the approvals, the notes on the steps not done). The renderers take the
//! model; nothing here writes a page.

mod done;
mod failed;
mod held;
mod instructions;
mod sources;

use std::path::PathBuf;

use super::lookup::secret_sources;
use super::*;

impl Ctx {
    /// `handoff`.
    pub fn handoff(
        &self,
        target: Target,
        output: Option<PathBuf>,
        format: report::handoff::HandoffFormat,
    ) -> Result<i32> {
        let text = self.handoff_text(&target, format)?;
        let store = self.existing_store()?;
        let run = self.find_run(&store, &target)?;
        let mut steps = store.steps(run.id)?;
        let alive = store.live_holder(run.id)?.is_some();
        let state = run.effective_state(&mut steps, alive);
        match output {
            Some(path) => {
                std::fs::write(&path, text)
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                println!(
                    "wrote the handoff for run {} ({}) to {}",
                    run.id,
                    state,
                    path.display()
                );
            }
            None => print!("{text}"),
        }
        Ok(exit::OK)
    }

    /// The handoff model of a run, from its rows and, when it still
    /// loads, its runbook.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_handoff(
        &self,
        store: &Store,
        run: &RunRow,
        state: RunState,
        steps: &[StepRow],
        secret_rows: &[SecretRow],
        env_files: &[String],
        loaded: Option<&Loaded>,
    ) -> Result<report::handoff::Handoff> {
        let flag = self.state_flag();
        let f = Facts {
            run_id: run.id,
            flag: &flag,
            steps,
            loaded,
        };
        let sources: Vec<super::sources::Source> = match loaded {
            Some(l) => secret_sources(l, &env_files.iter().map(PathBuf::from).collect::<Vec<_>>()),
            None => vec![super::sources::Source::Environment],
        };
        let approved = |id: &str| store.approval(run.id, id).ok().flatten().is_some();
        let tail = |s: &StepRow| -> Result<Vec<String>> {
            if s.attempts == 0 {
                return Ok(Vec::new());
            }
            let lines = store.output(run.id, &s.id, s.attempts, Some(20))?;
            Ok(lines.into_iter().map(|(_, l)| l).collect())
        };
        Ok(report::handoff::Handoff {
            run_id: run.id,
            runbook: run.runbook.clone(),
            description: loaded.and_then(|l| l.runbook.description.clone()),
            state,
            started_at: run.started_at.clone(),
            finished_at: run.finished_at.clone(),
            done: done::with_approvals(done::done(&f), &store.approvals(run.id)?),
            owners: held::owners(&f, secret_rows, &sources),
            approvals: instructions::approvals(&f, approved),
            failed: failed::failed(&f, tail)?,
            blocked: done::blocked(&f, approved),
            notes: instructions::notes(&f),
            resume_command: instructions::resume_command(&f, env_files),
            counts: done::counts(steps),
        })
    }
}

/// What every piece reads: the run's rows and, when it still loads, its
/// runbook.
struct Facts<'a> {
    run_id: i64,
    /// The ` --state FILE` a printed command needs, or nothing.
    flag: &'a str,
    steps: &'a [StepRow],
    loaded: Option<&'a Loaded>,
}

impl Facts<'_> {
    /// The runbook's step of this id.
    fn spec_of(&self, id: &str) -> Option<&crate::runbook::Step> {
        self.loaded
            .and_then(|l| l.runbook.steps.iter().find(|s| s.id == id))
    }

    /// A title or question of `step`, rendered as the plan renders it.
    fn label(&self, step: &crate::runbook::Step, text: &str) -> String {
        match self.loaded {
            Some(l) => crate::plan::render_label(&l.templater, &l.ctx, step, text)
                .unwrap_or_else(|_| text.to_string()),
            None => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step row in a state, nothing else set.
    pub fn row(id: &str, state: StepState) -> StepRow {
        StepRow::new(id, 0, state)
    }

    /// Run 4's facts without its runbook.
    pub fn facts<'a>(steps: &'a [StepRow], flag: &'a str) -> Facts<'a> {
        Facts {
            run_id: 4,
            flag,
            steps,
            loaded: None,
        }
    }
}
