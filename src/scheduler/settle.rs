//! How a step's row changes in a pass, through the one rule for
//! transitions (`StepState::can_become`): a step settled (its end
//! written and announced), its dependents released or blocked, and the
//! note a reason gets while the step's definition changed.

use std::collections::VecDeque;

use super::{Gate, Pass};
use crate::error::Result;
use crate::events::{Event, Reporter};
use crate::plan::{Plan, PlannedStep};
use crate::state::StepState;
use crate::store::{now, StepRow, Store};

/// Whether a step ran before with another definition than the plan's.
pub(super) fn definition_changed(step: &PlannedStep, row: &StepRow) -> bool {
    row.fingerprint
        .as_deref()
        .is_some_and(|f| f != step.fingerprint)
}

/// A reason, with "definition changed" added while the step has not yet
/// run with its new definition, so `status` says why it will run again.
pub(super) fn with_change_note(step: &PlannedStep, row: &StepRow, reason: String) -> String {
    if definition_changed(step, row) {
        format!("{reason}; definition changed")
    } else {
        reason
    }
}

/// Moves a row to a new state through the one rule that allows transitions.
pub(super) fn transition(row: &mut StepRow, to: StepState) {
    debug_assert!(row.state.can_become(to), "{} -> {}", row.state, to);
    row.state = to;
}

/// A step's end: its row written (the state through [`transition`], the
/// reason, exit code and duration) and announced as `StepFinished`.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle(
    store: &Store,
    run_id: i64,
    row: &mut StepRow,
    state: StepState,
    reason: Option<String>,
    exit_code: Option<i64>,
    duration_ms: Option<i64>,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    transition(row, state);
    row.reason = reason;
    row.exit_code = exit_code;
    row.duration_ms = duration_ms;
    row.finished_at = Some(now());
    store.save_step(run_id, row)?;
    reporter.event(&Event::StepFinished {
        run_id,
        step: row.id.clone(),
        host: row.host.clone(),
        state,
        attempts: row.attempts,
        duration_ms,
        exit_code,
        reason: row.reason.clone(),
    });
    Ok(())
}

/// A step succeeded or was skipped: dependents whose needs are all met become ready.
pub(super) fn release(
    plan: &Plan,
    rows: &[StepRow],
    step: usize,
    waiting: &mut [usize],
    ready: &mut VecDeque<usize>,
) {
    for &d in &plan.steps[step].dependents {
        waiting[d] -= 1;
        if waiting[d] == 0 && rows[d].state == StepState::Pending {
            ready.push_back(d);
        }
    }
}

/// A step failed or is held: everything downstream that has not run is blocked.
fn block_dependents(
    plan: &Plan,
    store: &Store,
    run_id: i64,
    rows: &mut [StepRow],
    step: usize,
    gate: &dyn Gate,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    let mut stack = vec![step];
    while let Some(s) = stack.pop() {
        for &d in &plan.steps[s].dependents {
            if rows[d].state == StepState::Pending {
                // Record what it will wait on too, so the handoff asks for everything at once.
                let waits = gate.waiting_on(d);
                rows[d].missing = waits.missing;
                rows[d].rejected = waits.rejected.into_iter().map(|(n, _)| n).collect();
                let reason = with_change_note(
                    &plan.steps[d],
                    &rows[d],
                    format!("`{}` is {}", plan.steps[s].id, rows[s].state),
                );
                settle(
                    store,
                    run_id,
                    &mut rows[d],
                    StepState::Blocked,
                    Some(reason),
                    None,
                    None,
                    reporter,
                )?;
                stack.push(d);
            }
        }
    }
    Ok(())
}

impl Pass<'_> {
    /// Blocks what depends on `step` (failed or held).
    pub(super) fn block_dependents(&mut self, step: usize) -> Result<()> {
        block_dependents(
            self.plan,
            self.store,
            self.run_id,
            &mut self.rows,
            step,
            &*self.gate,
            self.reporter,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plan_of;

    fn pending(plan: &Plan) -> Vec<StepRow> {
        let rows = plan.steps.iter().enumerate();
        rows.map(|(i, s)| StepRow::new(s.id.clone(), i as i64, StepState::Pending))
            .collect()
    }

    const JOIN: &str = "steps:\n  - id: a\n    run: 'true'\n  - id: b\n    run: 'true'\n  - id: c\n    needs: [a, b]\n    run: 'true'\n";

    #[test]
    fn a_dependent_is_ready_once_its_last_need_is_met_and_only_while_pending() {
        let plan = plan_of(JOIN);
        let mut rows = pending(&plan);
        let (mut waiting, mut ready) = (vec![0, 0, 2], VecDeque::new());
        release(&plan, &rows, 0, &mut waiting, &mut ready);
        assert_eq!((waiting[2], ready.len()), (1, 0));
        release(&plan, &rows, 1, &mut waiting, &mut ready);
        assert_eq!((waiting[2], Vec::from(ready)), (0, vec![2]));
        rows[2].state = StepState::Blocked;
        let (mut waiting, mut ready) = (vec![0, 0, 1], VecDeque::new());
        release(&plan, &rows, 0, &mut waiting, &mut ready);
        assert!(ready.is_empty(), "a blocked step is not started");
    }

    #[test]
    fn a_reason_says_definition_changed_only_while_the_stored_hash_differs() {
        let plan = plan_of(JOIN);
        let step = &plan.steps[0];
        let mut row = pending(&plan).remove(0);
        assert_eq!(with_change_note(step, &row, "held".into()), "held");
        row.fingerprint = Some(step.fingerprint.clone());
        assert_eq!(with_change_note(step, &row, "held".into()), "held");
        row.fingerprint = Some("another".into());
        assert_eq!(
            with_change_note(step, &row, "held".into()),
            "held; definition changed"
        );
    }
}
