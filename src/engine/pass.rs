//! One pass of a run: the steps reset to what must run, the secrets they
//! need looked up, a reporter for the terminal or `--json`, and the
//! scheduler over the DAG.

use std::io::IsTerminal;
use std::sync::Arc;

use super::gate::EngineGate;
use super::lookup::{needed_secrets, resolve_secrets, SecretStates};
use super::run::Session;
use super::{fleet, Ctx};
use crate::error::Result;
use crate::events::Event;
use crate::plan::{self, Plan};
use crate::report::live::LiveReporter;
use crate::report::plain::PlainReporter;
use crate::report::rolling::is_checkpoint;
use crate::report::{JsonReporter, Reporter, Verbosity};
use crate::scheduler;
use crate::state::RunState;
use crate::store::{StepRow, Store};

impl Session<'_> {
    /// One pass: the run's state at the end, and the secrets as this pass
    /// saw them.
    pub(super) async fn pass(
        &mut self,
        resumed: bool,
        fresh: bool,
    ) -> Result<(RunState, SecretStates)> {
        let excluded = fleet::excluded(&self.loaded.runbook, &self.loaded.plan, &self.args.limit)?;
        let rows = self.rows(fresh, &excluded)?;
        let Some(secrets) = self.secrets(&rows).await? else {
            return Ok((RunState::Interrupted, no_secrets()));
        };
        let env_files: Vec<String> = self
            .args
            .env_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        self.store
            .save_secrets(self.run.id, &secrets.rows, &env_files)?;
        let waits = self.args.wait.is_some();
        let mut reporter = self.ctx.reporter(&self.loaded.plan, self.args.json, waits);
        reporter.event(&Event::RunStarted {
            run_id: self.run.id,
            runbook: self.loaded.runbook.name.clone(),
            resumed,
            // Instances; a rolling block's own row is no step of its own.
            steps: rows.iter().filter(|r| !is_checkpoint(r)).count(),
            done: rows
                .iter()
                .filter(|r| !is_checkpoint(r) && r.state.satisfies_needs())
                .count(),
        });
        let mut gate = EngineGate {
            loaded: &self.loaded,
            secrets: &secrets,
            approvals: approvals(self.store, self.run.id, &rows),
            redactor: Arc::new(secrets.redactor()),
        };
        let options = scheduler::Options {
            jobs: self.args.jobs as usize,
            execs: self.execs.clone(),
            excluded,
            lease: self.store.keep_lease(self.run.id)?,
        };
        let plan = &self.loaded.plan;
        let state = scheduler::run_pass(
            plan,
            self.store,
            self.run.id,
            rows,
            &mut gate,
            reporter.as_mut(),
            &options,
        )
        .await?;
        Ok((state, secrets))
    }

    /// The run's rows, reset to what this pass must run.
    fn rows(&mut self, fresh: bool, excluded: &[bool]) -> Result<Vec<StepRow>> {
        let loaded = &self.loaded;
        let source_now = |i: usize| {
            plan::source::hash_now(
                &loaded.ctx,
                &loaded.runbook.steps[i],
                &loaded.plan.steps[i].rendered,
            )
        };
        scheduler::prepare_rows_limited(
            self.store,
            self.run.id,
            &loaded.plan,
            fresh,
            excluded,
            &source_now,
        )
    }

    /// The secrets the rows still need, looked up. A lookup can take a
    /// while (SSH, checks): a signal meanwhile stops the pass before any
    /// step starts (`None`, the run interrupted).
    async fn secrets(&mut self, rows: &[StepRow]) -> Result<Option<SecretStates>> {
        let needed = needed_secrets(&self.loaded, rows);
        let lookup = resolve_secrets(
            &self.loaded,
            &self.execs,
            &self.args.env_files,
            &needed,
            &mut self.cache,
        );
        let found = tokio::select! {
            s = lookup => Some(s),
            _ = self.signals.received() => None,
        };
        match found {
            Some(s) if !self.signals.take().await => Ok(Some(s)),
            _ => {
                self.store
                    .set_run_state(self.run.id, RunState::Interrupted)?;
                eprintln!(
                    "stopped (signal) while looking up secrets, before any step started; `runbook resume {}{}` goes on",
                    self.run.id,
                    self.ctx.state_flag()
                );
                Ok(None)
            }
        }
    }
}

impl Ctx {
    /// NDJSON with `--json`; the live view on a terminal (unless quiet);
    /// plain lines otherwise.
    fn reporter(&self, plan: &Plan, json: bool, waits: bool) -> Box<dyn Reporter> {
        let palette = self.palette();
        let flag = self.state_flag();
        // The instances of rolling blocks' inner steps, with their block.
        let blocks: Vec<(String, String)> = plan
            .steps
            .iter()
            .filter(|s| s.family.is_some())
            .filter_map(|s| Some((s.id.clone(), s.block.clone()?)))
            .collect();
        if json {
            Box::new(JsonReporter)
        } else if std::io::stdout().is_terminal() && self.verbosity != Verbosity::Quiet {
            Box::new(
                LiveReporter::new(self.verbosity, palette, &flag)
                    .with_blocks(blocks)
                    .under_wait(waits),
            )
        } else {
            Box::new(
                PlainReporter::new(self.verbosity, palette, &flag)
                    .with_blocks(blocks)
                    .under_wait(waits),
            )
        }
    }
}

/// The steps among `rows` someone has approved (one query for the run:
/// on PostgreSQL a query per step cost a round trip each).
fn approvals(store: &Store, run_id: i64, rows: &[StepRow]) -> Vec<String> {
    let given = store.approvals(run_id).unwrap_or_default();
    rows.iter()
        .filter(|r| given.iter().any(|(step, _)| *step == r.id))
        .map(|r| r.id.clone())
        .collect()
}

/// What a pass stopped before its lookup saw.
fn no_secrets() -> SecretStates {
    SecretStates {
        lookup: Default::default(),
        rows: Vec::new(),
        per_host: Default::default(),
    }
}
