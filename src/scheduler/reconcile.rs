//! Before a pass: what it must do, from the stored rows of the run. A step
//! still done stays done; one whose definition or upload source changed,
//! or that did not succeed, runs again with the reason, and so does what
//! depends on a changed step. [`reconcile`] writes nothing, so the dry run
//! asks the same question (SPEC §14).

use std::collections::BTreeMap;

use super::settle::definition_changed;
use crate::error::Result;
use crate::plan::{Plan, PlannedStep, RenderedAction};
use crate::state::StepState;
use crate::store::{StepRow, Store};

/// Resets the stored steps of a run to what this pass must do, and writes
/// them in one transaction. Returns the rows in plan order.
pub fn prepare_rows(
    store: &mut Store,
    run_id: i64,
    plan: &Plan,
    fresh: bool,
) -> Result<Vec<StepRow>> {
    prepare_rows_limited(store, run_id, plan, fresh, &[], &|_| None)
}

/// The hash of step `i`'s upload source as it is now (`None`: not an
/// upload), asked only of a succeeded upload whose needs are all done,
/// which is when the pass reaches it (SPEC §14).
pub type SourceNow<'a> = dyn Fn(usize) -> Option<std::result::Result<String, String>> + 'a;

/// Whether a finished step is still done: `None` when it is, else why it
/// runs again. An upload's source is compared with what it shipped; a
/// fingerprint from before uploads were read at run time (it held the
/// source's hash) is taken for the new one when the source is the same.
fn still_done(
    step: &PlannedStep,
    row: &mut StepRow,
    source: Option<std::result::Result<String, String>>,
) -> Option<&'static str> {
    let same = row.fingerprint.as_deref() == Some(step.fingerprint.as_str());
    match source {
        None if same => None,
        None => Some("definition changed"),
        Some(Ok(hash)) if same => {
            let shipped =
                row.state != StepState::Succeeded || row.source_hash.as_ref() == Some(&hash);
            (!shipped).then_some("source changed")
        }
        Some(Ok(hash)) => {
            let legacy = crate::plan::source::legacy_fingerprint(&step.rendered, &hash);
            if legacy.is_some() && legacy == row.fingerprint {
                row.fingerprint = Some(step.fingerprint.clone());
                row.source_hash = Some(hash);
                None
            } else {
                Some("definition changed")
            }
        }
        Some(Err(_)) if same && row.state != StepState::Succeeded => None,
        Some(Err(_)) if same => Some("source changed"),
        Some(Err(_)) => Some("definition changed"),
    }
}

/// [`prepare_rows`], leaving the rows of `excluded` steps (outside
/// `--limit`) as they are.
pub fn prepare_rows_limited(
    store: &mut Store,
    run_id: i64,
    plan: &Plan,
    fresh: bool,
    excluded: &[bool],
    source_now: &SourceNow,
) -> Result<Vec<StepRow>> {
    let old = if fresh {
        Vec::new()
    } else {
        store.steps(run_id)?
    };
    let rows = reconcile(old, plan, excluded, source_now);
    store.save_steps(run_id, &rows, true)?;
    let done: Vec<&str> = rows
        .iter()
        .filter(|r| r.state.satisfies_needs())
        .map(|r| r.id.as_str())
        .collect();
    store.drop_spools(run_id, &done)?;
    Ok(rows)
}

/// What a pass must do, from the stored rows of the run (none for a new
/// or fresh run): each step that is no longer done made pending with the
/// reason, what depends on a changed step too. Writes nothing, so the dry
/// run asks the same question (SPEC §14).
pub fn reconcile(
    old: Vec<StepRow>,
    plan: &Plan,
    excluded: &[bool],
    source_now: &SourceNow,
) -> Vec<StepRow> {
    let left_out = |i: usize| excluded.get(i).copied().unwrap_or(false);
    let mut old: BTreeMap<String, StepRow> = old.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut rows: Vec<StepRow> = Vec::with_capacity(plan.steps.len());
    let mut changed = vec![false; plan.steps.len()];
    for (i, step) in plan.steps.iter().enumerate() {
        let needs: Vec<String> = step
            .needs
            .iter()
            .map(|&n| plan.steps[n].id.clone())
            .collect();
        let mut row = old
            .remove(&step.id)
            .unwrap_or_else(|| StepRow::new(step.id.clone(), i as i64, StepState::Pending));
        row.position = i as i64;
        row.block = step.block.clone();
        if row.fingerprint.as_deref() == Some(step.legacy_fingerprint.as_str()) {
            // Recorded before fingerprints were the same on every machine
            // (SPEC §11): the same definition, under its new hash.
            row.fingerprint = Some(step.fingerprint.clone());
        }
        row.needs = needs;
        row.host = step.host.clone();
        if left_out(i) {
            // Outside --limit: as it is.
        } else if row.state.satisfies_needs() {
            let upload = matches!(step.rendered.action, RenderedAction::Upload { .. });
            let source = if upload { source_now(i) } else { None };
            if let Some(why) = still_done(step, &mut row, source) {
                changed[i] = true;
                row.state = StepState::Pending;
                row.reason = Some(why.into());
            }
        } else if row.state != StepState::Pending {
            row.reason = Some(if definition_changed(step, &row) {
                "definition changed".to_string()
            } else {
                format!("was {}, running again", row.state)
            });
            row.state = StepState::Pending;
        }
        rows.push(row);
    }
    // What depends on a changed step runs again too (needs come before their dependents in topo order).
    for &node in &petgraph::algo::toposort(&plan.graph, None).unwrap_or_default() {
        let i = plan.graph[node];
        if changed[i] {
            for &d in &plan.steps[i].dependents {
                if rows[d].state.satisfies_needs() && !left_out(d) {
                    rows[d].state = StepState::Pending;
                    rows[d].reason = Some(format!("`{}` changed", plan.steps[i].id));
                }
                changed[d] = true;
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    //! Resume reconciliation: which stored rows run again, and why.
    use super::*;
    use crate::scheduler::plan_of;
    use crate::store::ProcessId;

    /// A store with one run whose rows are `states` (fingerprints of `ran_with`).
    fn stored(
        plan: &Plan,
        ran_with: &Plan,
        states: &[StepState],
    ) -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let (run, _) = store
            .begin_run("r", "r.yaml", &[], true, &ProcessId::current())
            .unwrap();
        let mut rows = prepare_rows(&mut store, run.id, plan, true).unwrap();
        for (row, (state, step)) in rows.iter_mut().zip(states.iter().zip(&ran_with.steps)) {
            row.state = *state;
            row.fingerprint = Some(step.fingerprint.clone());
        }
        store.save_steps(run.id, &rows, true).unwrap();
        (dir, store, run.id)
    }

    const V1: &str = "steps:\n  - id: a\n    run: echo a\n  - id: b\n    needs: [a]\n    run: echo b\n  - id: c\n    needs: [b]\n    run: echo c\n  - id: d\n    run: echo d\n";

    #[test]
    fn done_steps_stay_done_and_the_rest_run_again_with_a_reason() {
        let plan = plan_of(V1);
        use StepState::*;
        let (_dir, mut store, run) = stored(&plan, &plan, &[Succeeded, Failed, Blocked, Skipped]);
        let rows = prepare_rows(&mut store, run, &plan, false).unwrap();
        let got: Vec<(StepState, Option<&str>)> = rows
            .iter()
            .map(|r| (r.state, r.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Succeeded, None),
                (Pending, Some("was failed, running again")),
                (Pending, Some("was blocked, running again")),
                (Skipped, None),
            ]
        );
    }

    #[test]
    fn an_edited_step_and_everything_after_it_run_again() {
        let old = plan_of(V1);
        let new = plan_of(&V1.replace("echo b", "echo b2"));
        use StepState::*;
        let (_dir, mut store, run) =
            stored(&new, &old, &[Succeeded, Succeeded, Succeeded, Succeeded]);
        let rows = prepare_rows(&mut store, run, &new, false).unwrap();
        let got: Vec<(&str, StepState, Option<&str>)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.state, r.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Succeeded, None),
                ("b", Pending, Some("definition changed")),
                ("c", Pending, Some("`b` changed")),
                ("d", Succeeded, None),
            ]
        );
    }

    #[test]
    fn a_changed_step_that_failed_says_so_rather_than_was_failed() {
        let old = plan_of(V1);
        let new = plan_of(&V1.replace("echo b", "echo b2"));
        use StepState::*;
        let (_dir, mut store, run) = stored(&new, &old, &[Succeeded, Failed, Blocked, Succeeded]);
        let rows = prepare_rows(&mut store, run, &new, false).unwrap();
        assert_eq!(rows[1].reason.as_deref(), Some("definition changed"));
        assert_eq!(
            rows[2].reason.as_deref(),
            Some("was blocked, running again")
        );
    }
}
