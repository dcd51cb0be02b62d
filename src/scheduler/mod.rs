//! Walks the plan's DAG: starts ready steps up to `--jobs`, commits each
//! step's state before its dependents start, propagates failures and holds
//! to dependents only, and stops cleanly on SIGINT/SIGTERM.
//!
//! A pass is [`run_pass`]: `drive` loops over its three phases, each a
//! file of methods on [`Pass`] (this file's noun, which every phase
//! shares): `start` (phase 1, the ready steps the gate lets go), `messages`
//! (phase 2, what a running job says) and `finish` (phase 3, the run's
//! state). Jobs and the pass meet only through [`job::Msg`]; the pass
//! reports only through `events::Reporter`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod drive;
mod fence;
mod finish;
mod gate;
mod job;
mod messages;
mod output;
mod reattach;
mod reconcile;
mod rollout;
mod settle;
mod start;
pub use gate::{Gate, Hold, NotReady};
pub use reconcile::{prepare_rows, prepare_rows_limited, reconcile, SourceNow};

use job::Msg;
use output::OutputBuffer;
use rollout::Rollouts;

use crate::error::Result;
use crate::events::Reporter;
use crate::exec;
use crate::plan::Plan;
use crate::state::{RunState, StepState};
use crate::store::{LeaseWatch, SpoolRow, StepRow, Store};

/// Options of one pass.
pub struct Options {
    /// Parallel steps at most.
    pub jobs: usize,
    /// What steps act with.
    pub execs: Arc<exec::Executors>,
    /// Per step: whether `--limit` leaves it out of this pass (it stays
    /// as it is). Empty means none is left out.
    pub excluded: Vec<bool>,
    /// The engine's lease (PostgreSQL, SPEC §11): no step starts while it
    /// cannot be renewed, and the pass stops (as on SIGTERM) once it has
    /// run out or another engine took the run.
    pub lease: Option<LeaseWatch>,
}

/// Runs one pass over the plan; returns the run's state at the end.
///
/// When the store fails (a full or read-only disk), the steps that run are
/// stopped and waited for before the error is returned: nothing keeps
/// running unrecorded, and SQLite's transactions leave no half-written
/// checkpoint.
pub async fn run_pass(
    plan: &Plan,
    store: &mut Store,
    run_id: i64,
    rows: Vec<StepRow>,
    gate: &mut dyn Gate,
    reporter: &mut dyn Reporter,
    options: &Options,
) -> Result<RunState> {
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut pass = Pass::new(plan, store, run_id, rows, gate, reporter, &options.excluded);
    let fence = fence::fence_pass(&options.lease, &cancel);
    let driven = pass.drive(options, &cancel, tx, &mut rx).await;
    if let Some(f) = fence {
        f.abort();
    }
    match driven {
        Ok(stopping) => pass.finish(stopping),
        Err(e) => {
            cancel.cancel();
            // Every job ends (interrupted) and drops its sender.
            while rx.recv().await.is_some() {}
            Err(e)
        }
    }
}

/// One pass's bookkeeping: the rows as they change, which steps are ready
/// or still wait on needs, and what runs.
struct Pass<'a> {
    plan: &'a Plan,
    store: &'a mut Store,
    run_id: i64,
    rows: Vec<StepRow>,
    gate: &'a mut dyn Gate,
    reporter: &'a mut dyn Reporter,
    /// Per step: needs not yet satisfied.
    waiting: Vec<usize>,
    /// Pending steps whose needs are all satisfied, in order.
    ready: VecDeque<usize>,
    started_at: Vec<Option<Instant>>,
    /// When the current attempt of each step started (SPEC §14's record).
    attempt_start: Vec<Option<(String, Instant)>>,
    current_attempt: Vec<i64>,
    /// Why a step runs again in this pass, shown when its first attempt starts.
    rerun_note: Vec<Option<String>>,
    running: usize,
    output: OutputBuffer,
    /// Running and failed instances per step on a group (`serial`, `max_fail`).
    families: BTreeMap<String, FamilyCount>,
    /// Where each rolling block's rollout is (SPEC §15).
    rollouts: Rollouts,
    /// Per remote `run` step that runs: its spool (host, folder).
    spools: Vec<Option<SpoolRow>>,
    /// This engine's part of spool folder names (see `exec::spool`).
    engine_key: String,
    /// Spools whose steps' results are written in the open group commit:
    /// their folders may go only once it is committed (else a crash before
    /// the commit leaves a running step whose spool is gone, and resume
    /// starts it again).
    to_discard: Vec<SpoolRow>,
    execs: Option<Arc<exec::Executors>>,
}

/// How many instances of one step on a group run, and how many failed.
#[derive(Debug, Default, Clone, Copy)]
struct FamilyCount {
    running: usize,
    failed: u32,
}

impl<'a> Pass<'a> {
    fn new(
        plan: &'a Plan,
        store: &'a mut Store,
        run_id: i64,
        rows: Vec<StepRow>,
        gate: &'a mut dyn Gate,
        reporter: &'a mut dyn Reporter,
        excluded: &[bool],
    ) -> Self {
        let n = plan.steps.len();
        let rollouts = Rollouts::new(plan, &rows, excluded);
        let waiting: Vec<usize> = (0..n)
            .map(|i| {
                plan.steps[i]
                    .needs
                    .iter()
                    .filter(|&&d| !rows[d].state.satisfies_needs())
                    .count()
            })
            .collect();
        let ready = (0..n)
            .filter(|&i| rows[i].state == StepState::Pending && waiting[i] == 0)
            .collect();
        Pass {
            plan,
            store,
            run_id,
            rows,
            gate,
            reporter,
            waiting,
            ready,
            started_at: vec![None; n],
            attempt_start: vec![None; n],
            current_attempt: vec![0; n],
            rerun_note: vec![None; n],
            running: 0,
            output: OutputBuffer::default(),
            families: BTreeMap::new(),
            rollouts,
            spools: vec![None; n],
            engine_key: exec::spool::engine_key(),
            to_discard: Vec::new(),
            execs: None,
        }
    }
}

/// A plan from runbook text (placeholders for secrets), for the unit tests
/// of the scheduler's pieces.
#[cfg(test)]
pub(crate) fn plan_of(yaml: &str) -> crate::plan::Plan {
    use crate::runbook::template::{Context, Templater};
    let path = std::path::Path::new("/tmp/rb-unit/r.yaml");
    let (file, source) = crate::runbook::load::parse_text(path, yaml.to_string()).unwrap();
    let book = crate::runbook::validate::validate(file, source, &[]).unwrap();
    let ctx = Context::new(&book.vars, minijinja::Value::from(()), 0);
    crate::plan::build(&book, &ctx, &Templater::for_placeholders()).unwrap()
}
