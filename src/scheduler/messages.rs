//! Phase 2 of a pass: what a running job says ([`Msg`]), one method per
//! kind: a line of output, an attempt begun, a spool reattached, the end.

use std::time::Instant;

use super::job::Msg;
use super::settle::{release, settle};
use super::Pass;
use crate::error::Result;
use crate::events::Event;
use crate::exec::{Outcome, Stream};
use crate::state::StepState;

impl Pass<'_> {
    /// What a running job says.
    pub(super) fn on_message(&mut self, msg: Msg) -> Result<()> {
        match msg {
            Msg::Output {
                step,
                attempt,
                stream,
                line,
            } => self.on_output(step, attempt, stream, line),
            Msg::Attempt {
                step,
                attempt,
                why,
                previous,
            } => self.on_attempt(step, attempt, why, previous),
            Msg::Reattach { step, attempt } => self.on_reattach(step, attempt),
            Msg::Done {
                step,
                outcome,
                keep_spool,
            } => self.on_done(step, outcome, keep_spool),
        }
    }

    /// A line a step printed: shown now, committed with the next flush.
    fn on_output(&mut self, step: usize, attempt: i64, stream: Stream, line: String) -> Result<()> {
        let id = self.plan.steps[step].id.clone();
        self.reporter.event(&Event::StepOutput {
            run_id: self.run_id,
            step: id.clone(),
            attempt,
            host: self.plan.steps[step].host.clone(),
            stream: stream.as_str(),
            line: line.clone(),
        });
        self.output.push((id, attempt, stream.as_str(), line));
        if self.output.full() {
            self.flush_output()?;
        }
        Ok(())
    }

    /// An attempt begins; the one before it (a retry's) is recorded first.
    fn on_attempt(
        &mut self,
        step: usize,
        attempt: i64,
        why: Option<String>,
        previous: Option<(Option<i32>, String)>,
    ) -> Result<()> {
        self.flush_output()?;
        if let Some((exit_code, reason)) = previous {
            self.record_attempt(step, exit_code, Some(reason))?;
        }
        self.attempt_start[step] = Some((crate::store::now(), Instant::now()));
        self.current_attempt[step] = attempt;
        // A first attempt `begin` counted already was committed with it.
        if self.rows[step].attempts != attempt {
            self.rows[step].attempts = attempt;
            self.store.save_step(self.run_id, &self.rows[step])?;
        }
        self.reporter.event(&Event::StepStarted {
            run_id: self.run_id,
            step: self.plan.steps[step].id.clone(),
            attempt,
            host: self.plan.steps[step].host.clone(),
            state: StepState::Running,
            reason: self.rerun_note[step].take().or(why),
        });
        Ok(())
    }

    /// A step an earlier engine started is followed again: its output is
    /// read from the start of the attempt.
    fn on_reattach(&mut self, step: usize, attempt: i64) -> Result<()> {
        self.flush_output()?;
        let id = self.plan.steps[step].id.clone();
        self.store.clear_output(self.run_id, &id, attempt)?;
        // The step began when the earlier engine started it: its
        // duration (and its attempt's) count from then, not from now.
        let began = self.rows[step].started_at.clone();
        let ago = began
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        let then = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        self.started_at[step] = Some(then);
        self.attempt_start[step] = Some((began.unwrap_or_else(crate::store::now), then));
        self.current_attempt[step] = attempt;
        self.rows[step].attempts = attempt;
        self.store.save_step(self.run_id, &self.rows[step])?;
        self.reporter.event(&Event::StepStarted {
            run_id: self.run_id,
            step: id,
            attempt,
            host: self.plan.steps[step].host.clone(),
            state: StepState::Running,
            reason: Some("reattached: started by an earlier engine".into()),
        });
        Ok(())
    }

    /// Commits how the current attempt of `step` ended (SPEC §14).
    fn record_attempt(
        &mut self,
        step: usize,
        exit_code: Option<i32>,
        reason: Option<String>,
    ) -> Result<()> {
        let Some((started_at, began)) = self.attempt_start[step].take() else {
            return Ok(());
        };
        let row = crate::store::AttemptRow {
            attempt: self.current_attempt[step],
            exit_code: exit_code.map(i64::from),
            reason,
            started_at,
            duration_ms: began.elapsed().as_millis() as i64,
        };
        let id = &self.plan.steps[step].id;
        self.store.save_attempt(self.run_id, id, &row)
    }

    /// A step ended: its lines and state are committed, then its
    /// dependents are released or blocked.
    fn on_done(&mut self, step: usize, outcome: Outcome, keep_spool: bool) -> Result<()> {
        // Every flush trims the attempts it wrote to: nothing is left to
        // trim here.
        self.flush_output()?;
        self.running -= 1;
        if let Some(family) = &self.plan.steps[step].family {
            let count = self.families.entry(family.step.clone()).or_default();
            count.running -= 1;
            if matches!(outcome, Outcome::Failed { .. }) {
                count.failed += 1;
            }
        }
        let duration = self.started_at[step].map(|s| s.elapsed().as_millis() as i64);
        let (state, exit_code, reason) = match outcome {
            Outcome::Succeeded { exit_code, note } => (StepState::Succeeded, exit_code, note),
            Outcome::Failed { exit_code, reason } => (StepState::Failed, exit_code, Some(reason)),
            Outcome::Interrupted => (
                StepState::Interrupted,
                None,
                Some("stopped by signal".into()),
            ),
        };
        // A signal-stopped attempt is kept too; one a resume reattaches to
        // is written again under the same number when it ends.
        self.record_attempt(step, exit_code, reason.clone())?;
        let row = &mut self.rows[step];
        let code = exit_code.map(i64::from);
        let spool = self.spools[step].take().filter(|_| !keep_spool);
        let (run_id, reporter) = (self.run_id, &mut *self.reporter);
        // The result and the end of the spool record commit together: a
        // crash leaves either a running step with its spool, or neither.
        self.store.atomically(|store| {
            settle(store, run_id, row, state, reason, code, duration, reporter)?;
            if spool.is_some() {
                store.drop_spool(run_id, &row.id)?;
            }
            Ok(())
        })?;
        if let Some(spool) = spool {
            self.to_discard.push(spool);
            // In a group commit: removed once it is committed (`drive`).
            if !self.store.in_batch() {
                self.discard_committed();
            }
        }
        if state.satisfies_needs() {
            release(
                self.plan,
                &self.rows,
                step,
                &mut self.waiting,
                &mut self.ready,
            );
        } else if state == StepState::Failed {
            self.block_dependents(step)?;
        }
        Ok(())
    }
}
