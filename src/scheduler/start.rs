//! Phase 1 of a pass: the ready steps started up to `--jobs`, in order. A
//! step waits its turn (a rolling block's batch, a group's `serial`),
//! stays pending over a group's failure budget, is settled at once when
//! the gate holds or fails it or its `when` is false, and otherwise starts
//! as a [`Job`] once its `running` row is committed.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::job::{Job, Msg};
use super::reattach::Spooled;
use super::rollout::Turn;
use super::settle::{release, settle, transition, with_change_note};
use super::{NotReady, Options, Pass};
use crate::error::Result;
use crate::plan::{Rendered, RenderedAction};
use crate::state::StepState;
use crate::store::now;

/// Starts the jobs of steps whose `running` rows are committed.
pub(super) fn spawn(jobs: Vec<Job>, tx: &mpsc::UnboundedSender<Msg>, cancel: &CancellationToken) {
    for job in jobs {
        tokio::spawn(job.run(tx.clone(), cancel.clone()));
    }
}

/// Whether a ready step may start now.
enum May {
    Go,
    /// Not yet: it goes back to the front of the ready steps.
    Later,
    /// Not in this pass: it stays as it is.
    Not,
}

impl Pass<'_> {
    /// Starts ready steps up to `--jobs`; a step the gate holds, fails or
    /// skips is settled at once.
    pub(super) fn start_ready(
        &mut self,
        options: &Options,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        // Steps start once their `running` rows are committed, together.
        self.store.begin_batch()?;
        let jobs = self.begin_ready(options)?;
        self.store.commit_batch()?;
        spawn(jobs, tx, cancel);
        Ok(())
    }

    /// The ready steps up to `--jobs` made running in the open batch (or
    /// settled there, when the gate holds, fails or skips them): their
    /// jobs, which the caller starts once the batch is committed.
    pub(super) fn begin_ready(&mut self, options: &Options) -> Result<Vec<Job>> {
        let mut deferred = Vec::new();
        let mut jobs = Vec::new();
        self.stop_rollouts()?;
        while self.running < options.jobs {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            if options.excluded.get(i).copied().unwrap_or(false) {
                continue;
            }
            match self.may_start(i)? {
                May::Go => {}
                May::Later => {
                    deferred.push(i);
                    continue;
                }
                May::Not => continue,
            }
            let Some(rendered) = self.gated(i)? else {
                continue;
            };
            if let Some(job) = self.begin(i, rendered, options)? {
                jobs.push(job);
            }
        }
        for i in deferred.into_iter().rev() {
            self.ready.push_front(i);
        }
        Ok(jobs)
    }

    /// A rolling block's turn, and for an instance of a step on a group
    /// (outside a block) its `max_fail` budget and `serial` bound.
    fn may_start(&mut self, i: usize) -> Result<May> {
        match self.rollouts.turn(i) {
            Turn::Go => {}
            Turn::Wait => return Ok(May::Later),
            Turn::Stopped => return Ok(May::Not),
        }
        let step = &self.plan.steps[i];
        let Some(family) = step.family.as_ref().filter(|f| f.roll.is_none()) else {
            return Ok(May::Go);
        };
        let count = self.families.get(&family.step).copied().unwrap_or_default();
        if count.failed > family.max_fail {
            // Over the failure budget: it stays pending for a resume.
            let row = &mut self.rows[i];
            row.reason = Some(format!(
                "not started: {} of `{}` failed (max_fail: {})",
                match count.failed {
                    1 => "1 instance".to_string(),
                    n => format!("{n} instances"),
                },
                family.step,
                family.max_fail
            ));
            self.store.save_step(self.run_id, row)?;
            return Ok(May::Not);
        }
        if family.serial.is_some_and(|s| count.running >= s) {
            return Ok(May::Later);
        }
        Ok(May::Go)
    }

    /// What the gate says of step `i`: its definition to run, or `None`
    /// when it was settled here (held, failed, or skipped by `when`).
    fn gated(&mut self, i: usize) -> Result<Option<Rendered>> {
        let plan = self.plan;
        let step = &plan.steps[i];
        let rendered = match self.gate.prepare(i) {
            Ok(r) => r,
            Err(not_ready) => {
                let row = &mut self.rows[i];
                let (state, reason) = match not_ready {
                    NotReady::Failed(reason) => {
                        row.missing.clear();
                        row.rejected.clear();
                        (StepState::Failed, reason)
                    }
                    NotReady::Held(hold) => {
                        row.missing = hold.missing.clone();
                        row.rejected = hold.rejected.iter().map(|(n, _)| n.clone()).collect();
                        (StepState::Held, with_change_note(step, row, hold.reason()))
                    }
                };
                settle(
                    self.store,
                    self.run_id,
                    row,
                    state,
                    Some(reason),
                    None,
                    None,
                    self.reporter,
                )?;
                self.block_dependents(i)?;
                return Ok(None);
            }
        };
        let row = &mut self.rows[i];
        row.missing.clear();
        row.rejected.clear();
        if rendered.when {
            return Ok(Some(rendered));
        }
        // Kept like a run's, so a resume does not take the skip for
        // an edit. Not when the step uses secrets: its `when` may
        // read one, which the fingerprint (made with placeholders)
        // cannot see, so it is decided again on every resume.
        row.fingerprint = step.requires.is_empty().then(|| step.fingerprint.clone());
        let reason = Some("`when` is false".into());
        settle(
            self.store,
            self.run_id,
            row,
            StepState::Skipped,
            reason,
            None,
            None,
            self.reporter,
        )?;
        release(plan, &self.rows, i, &mut self.waiting, &mut self.ready);
        Ok(None)
    }

    /// Step `i` made running (its row, and a new spool's record, written
    /// in the open batch) and its job, which starts once they are
    /// committed; `None` when its spool is another login user's.
    fn begin(&mut self, i: usize, rendered: Rendered, options: &Options) -> Result<Option<Job>> {
        self.started_at[i] = Some(Instant::now());
        // Reruns caused by an edit are announced; plain retries of a
        // failed or blocked step are not (their reason is "was ...").
        // A reset is announced too, as the dry run says it.
        self.rerun_note[i] = self.rows[i]
            .reason
            .clone()
            .filter(|r| r.ends_with("changed") || r.starts_with("reset (with "));
        let spool = match self.spool_of(i, &rendered, options)? {
            Spooled::Here(spool) => spool,
            Spooled::OtherLogin => return Ok(None),
        };
        let (step, row) = (&self.plan.steps[i], &mut self.rows[i]);
        if spool.as_ref().is_some_and(|s| s.reattach) {
            self.rerun_note[i] = None;
        } else {
            row.started_at = Some(now());
        }
        transition(row, StepState::Running);
        row.exit_code = None;
        row.fingerprint = Some(step.fingerprint.clone());
        if let RenderedAction::Upload { source_hash, .. } = &rendered.action {
            // What this attempt ships, read as it started (SPEC §14).
            row.source_hash = source_hash.clone();
        }
        let first_attempt = row.attempts + 1;
        // A new spool of a remote step starts at once too (a resume finds
        // the attempt by probing its host from the attempt recorded, which
        // is this one either way).
        let at_once = spool
            .as_ref()
            .is_none_or(|s| !s.reattach && s.stale.is_none());
        if at_once && rendered.unless.is_none() {
            // Its job begins attempt `first_attempt` at once (no probe, no
            // earlier spool to look at or stop first): counted here, in
            // the write that makes it running, so its `Msg::Attempt`
            // writes nothing.
            row.attempts = first_attempt;
        }
        let record = self.spools[i]
            .clone()
            .filter(|_| spool.as_ref().is_some_and(|s| !s.reattach));
        let run_id = self.run_id;
        self.store.atomically(|store| {
            if let Some(record) = &record {
                store.save_spool(run_id, &step.id, record)?;
            }
            store.save_step(run_id, row)
        })?;
        self.running += 1;
        if let Some(family) = &step.family {
            self.families
                .entry(family.step.clone())
                .or_default()
                .running += 1;
        }
        Ok(Some(Job {
            step: i,
            first_attempt,
            rendered,
            host: step.host.clone(),
            execs: options.execs.clone(),
            redactor: self.gate.redactor(),
            spool,
        }))
    }
}
