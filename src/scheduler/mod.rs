//! Walks the plan's DAG: starts ready steps up to `--jobs`, commits each
//! step's state before its dependents start, propagates failures and holds
//! to dependents only, and stops cleanly on SIGINT/SIGTERM.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod job;
mod reattach;
mod rollout;
use job::{Job, Msg};
use rollout::{Rollouts, Turn};

use crate::error::Result;
use crate::events::{Event, Reporter};
use crate::exec::{self, Outcome};
use crate::plan::{Plan, Rendered};
use crate::secrets::Redactor;
use crate::state::{RunState, StepState};
use crate::store::{now, LeaseWatch, SpoolRow, StepRow, Store};

/// Why a step cannot start yet: a human must act.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    /// Secrets that are missing.
    pub missing: Vec<String>,
    /// Secrets whose check rejected them, with the reason.
    pub rejected: Vec<(String, String)>,
    /// Secrets (also in `missing`) whose command failed, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// The approval question, when not yet approved.
    pub approval: Option<String>,
}

impl Hold {
    /// Whether anything holds the step.
    pub fn is_held(&self) -> bool {
        !self.missing.is_empty() || !self.rejected.is_empty() || self.approval.is_some()
    }

    /// The reason shown in status.
    pub fn reason(&self) -> String {
        let mut parts = Vec::new();
        for m in &self.missing {
            match self.unavailable.iter().find(|(n, _)| n == m) {
                Some((_, why)) => parts.push(format!("secret {m} is unavailable: {why}")),
                None => parts.push(format!("secret {m} is missing")),
            }
        }
        for (name, why) in &self.rejected {
            parts.push(format!("secret {name} {why}"));
        }
        if let Some(q) = &self.approval {
            parts.push(format!("waiting for approval: {q}"));
        }
        parts.join("; ")
    }
}

/// Why a step does not start now.
#[derive(Debug, Clone)]
pub enum NotReady {
    /// A human must act.
    Held(Hold),
    /// It cannot run as defined (its templates fail with the real secret
    /// values): it fails with this reason, without running.
    Failed(String),
}

/// What the scheduler asks before starting a step: held, failed, or ready
/// with the definition to run (rendered with real secret values).
pub trait Gate {
    /// Checks holds and renders the step for execution.
    fn prepare(&mut self, step: usize) -> std::result::Result<Rendered, NotReady>;
    /// What a step would wait on (secrets), even when it is blocked.
    fn waiting_on(&self, step: usize) -> Hold;
    /// The redactor for everything the step prints.
    fn redactor(&self) -> Arc<Redactor>;
}

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

/// Completes when the lease's state changes (never without a lease).
async fn lease_news(lease: &Option<LeaseWatch>) {
    match lease {
        Some(l) => l.changed().await,
        None => std::future::pending().await,
    }
}

/// Whether the lease lets a step start.
fn lease_ok(lease: &Option<LeaseWatch>) -> bool {
    lease.as_ref().is_none_or(|l| l.can_start() && !l.expired())
}

/// Cancels the pass once the lease has run out or was taken over, even
/// while the scheduler waits on the database.
fn fence_pass(
    lease: &Option<LeaseWatch>,
    cancel: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let (lease, cancel) = (lease.clone()?, cancel.clone());
    Some(tokio::spawn(async move {
        loop {
            if lease.lost().is_some() {
                cancel.cancel();
                return;
            }
            if lease.expired() {
                lease.mark_ran_out();
                cancel.cancel();
                return;
            }
            lease.changed().await;
        }
    }))
}

/// Captured output is committed at least this often while steps run, so a
/// killed engine loses at most this much of what its steps printed.
const OUTPUT_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// ... and whenever this many lines are waiting.
const OUTPUT_FLUSH_LINES: usize = 1000;

/// Whether a step ran before with another definition than the plan's.
fn definition_changed(step: &crate::plan::PlannedStep, row: &StepRow) -> bool {
    row.fingerprint
        .as_deref()
        .is_some_and(|f| f != step.fingerprint)
}

/// A reason, with "definition changed" added while the step has not yet
/// run with its new definition, so `status` says why it will run again.
fn with_change_note(step: &crate::plan::PlannedStep, row: &StepRow, reason: String) -> String {
    if definition_changed(step, row) {
        format!("{reason}; definition changed")
    } else {
        reason
    }
}

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
    step: &crate::plan::PlannedStep,
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
            let upload = matches!(
                step.rendered.action,
                crate::plan::RenderedAction::Upload { .. }
            );
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
    let fence = fence_pass(&options.lease, &cancel);
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

    /// Starts steps and handles what they say until nothing runs; whether
    /// it was stopped by a signal.
    async fn drive(
        &mut self,
        options: &Options,
        cancel: &CancellationToken,
        tx: mpsc::UnboundedSender<Msg>,
        rx: &mut mpsc::UnboundedReceiver<Msg>,
    ) -> Result<bool> {
        self.execs = Some(options.execs.clone());
        self.prepare_spools(&options.execs);
        let mut stopping = false;
        let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt());
        let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate());
        loop {
            stopping |= cancel.is_cancelled();
            let can_start = lease_ok(&options.lease);
            if !stopping && can_start {
                self.start_ready(options, &tx, cancel)?;
            }
            if self.running == 0 {
                if stopping || can_start || self.ready.is_empty() {
                    return Ok(stopping);
                }
                // The lease cannot be renewed: nothing starts until it can
                // again, or it runs out.
                tokio::select! {
                    _ = lease_news(&options.lease) => {}
                    _ = cancel.cancelled() => {}
                    _ = received(&mut sigint) => { stopping = true; cancel.cancel(); }
                    _ = received(&mut sigterm) => { stopping = true; cancel.cancel(); }
                }
                continue;
            }
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = self.output.due() => { self.flush_output()?; continue; }
                _ = received(&mut sigint) => { stopping = true; cancel.cancel(); continue; }
                _ = received(&mut sigterm) => { stopping = true; cancel.cancel(); continue; }
                _ = cancel.cancelled(), if !stopping => { stopping = true; continue; }
                _ = lease_news(&options.lease) => continue,
            };
            let Some(first) = msg else {
                return Ok(stopping);
            };
            // Whatever else is waiting, in one go (up to a bound), committed
            // together before anything that depends on it starts.
            self.store.begin_batch()?;
            self.on_message(first)?;
            for _ in 0..511 {
                match rx.try_recv() {
                    Ok(m) => self.on_message(m)?,
                    Err(_) => break,
                }
            }
            self.store.commit_batch()?;
            self.discard_committed();
        }
    }

    /// Lets the hosts remove the spool folders of the results just
    /// committed.
    fn discard_committed(&mut self) {
        let spools = std::mem::take(&mut self.to_discard);
        if let Some(execs) = &self.execs {
            for spool in spools {
                execs.ssh.discard(&spool.host, &spool.base);
            }
        }
    }

    /// Tells each host the attempt folders its remote `run` steps will
    /// spool in, so that they are made ahead, in one go.
    fn prepare_spools(&self, execs: &exec::Executors) {
        let mut by_host: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (step, row) in self.plan.steps.iter().zip(&self.rows) {
            if let (Some(host), crate::plan::RenderedAction::Run { .. }, StepState::Pending) =
                (&step.host, &step.rendered.action, row.state)
            {
                let base = exec::spool::base(self.run_id, &self.engine_key, &step.id);
                by_host
                    .entry(host)
                    .or_default()
                    .push(format!("{base}/{}", row.attempts + 1));
            }
        }
        for (host, dirs) in by_host {
            execs.ssh.prepare(host, dirs);
        }
    }

    /// Phase 1: starts ready steps up to `--jobs`; a step the gate holds,
    /// fails or skips is settled at once.
    fn start_ready(
        &mut self,
        options: &Options,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let mut deferred = Vec::new();
        // Steps start once their `running` rows are committed, together.
        let mut jobs = Vec::new();
        self.store.begin_batch()?;
        self.stop_rollouts()?;
        while self.running < options.jobs {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            if options.excluded.get(i).copied().unwrap_or(false) {
                continue;
            }
            let step = &self.plan.steps[i];
            match self.rollouts.turn(i) {
                Turn::Go => {}
                Turn::Wait => {
                    deferred.push(i);
                    continue;
                }
                Turn::Stopped => continue,
            }
            if let Some(family) = step.family.as_ref().filter(|f| f.roll.is_none()) {
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
                    continue;
                }
                if family.serial.is_some_and(|s| count.running >= s) {
                    deferred.push(i);
                    continue;
                }
            }
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
                    continue;
                }
            };
            let row = &mut self.rows[i];
            row.missing.clear();
            row.rejected.clear();
            if !rendered.when {
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
                release(self.plan, &self.rows, i, &mut self.waiting, &mut self.ready);
                continue;
            }
            self.started_at[i] = Some(Instant::now());
            // Reruns caused by an edit are announced; plain retries of a
            // failed or blocked step are not (their reason is "was ...").
            // A reset is announced too, as the dry run says it.
            self.rerun_note[i] = row
                .reason
                .clone()
                .filter(|r| r.ends_with("changed") || r.starts_with("reset (with "));
            let spool = match self.spool_of(i, &rendered, options)? {
                reattach::Spooled::Here(spool) => spool,
                reattach::Spooled::OtherLogin => continue,
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
            if let crate::plan::RenderedAction::Upload { source_hash, .. } = &rendered.action {
                // What this attempt ships, read as it started (SPEC §14).
                row.source_hash = source_hash.clone();
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
            let job = Job {
                step: i,
                first_attempt: row.attempts + 1,
                rendered,
                host: step.host.clone(),
                execs: options.execs.clone(),
                redactor: self.gate.redactor(),
                spool,
            };
            jobs.push(job);
        }
        self.store.commit_batch()?;
        for job in jobs {
            tokio::spawn(job.run(tx.clone(), cancel.clone()));
        }
        for i in deferred.into_iter().rev() {
            self.ready.push_front(i);
        }
        Ok(())
    }

    /// Phase 2: what a running job says.
    fn on_message(&mut self, msg: Msg) -> Result<()> {
        match msg {
            Msg::Output {
                step,
                attempt,
                stream,
                line,
            } => {
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
                if self.output.lines.len() >= OUTPUT_FLUSH_LINES {
                    self.flush_output()?;
                }
                Ok(())
            }
            Msg::Attempt {
                step,
                attempt,
                why,
                previous,
            } => {
                self.flush_output()?;
                if let Some((exit_code, reason)) = previous {
                    self.record_attempt(step, exit_code, Some(reason))?;
                }
                self.attempt_start[step] = Some((crate::store::now(), Instant::now()));
                self.current_attempt[step] = attempt;
                self.rows[step].attempts = attempt;
                self.store.save_step(self.run_id, &self.rows[step])?;
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
            Msg::Reattach { step, attempt } => {
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
            Msg::Done {
                step,
                outcome,
                keep_spool,
            } => self.on_done(step, outcome, keep_spool),
        }
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
        self.flush_output()?;
        if self.current_attempt[step] > 0 {
            let id = &self.plan.steps[step].id;
            self.store
                .trim_output(self.run_id, id, self.current_attempt[step])?;
        }
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

    fn block_dependents(&mut self, step: usize) -> Result<()> {
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

    fn flush_output(&mut self) -> Result<()> {
        self.output.flush(self.store, self.run_id)
    }

    /// Phase 3: the run's state, committed and announced. Returns the
    /// state of what this pass could do: a pass that finished the hosts of
    /// its `--limit` succeeded, while the run, with other hosts' instances
    /// still pending, stays unfinished (interrupted) for a later pass.
    fn finish(mut self, stopping: bool) -> Result<RunState> {
        if !stopping {
            self.note_waiting()?;
        }
        let (pass, stored) = if stopping {
            (RunState::Interrupted, RunState::Interrupted)
        } else {
            // Pending rows after a pass that was not stopped were left on
            // purpose: outside --limit, over a max_fail budget, or after them.
            let pass = RunState::from_steps(
                self.rows
                    .iter()
                    .map(|r| r.state)
                    .filter(|s| *s != StepState::Pending),
            );
            let open = self.rows.iter().any(|r| r.state == StepState::Pending);
            let stored = if open && pass == RunState::Succeeded {
                RunState::Interrupted
            } else {
                pass
            };
            (pass, stored)
        };
        self.store.set_run_state(self.run_id, stored)?;
        let pending = self
            .rows
            .iter()
            .filter(|r| r.state == StepState::Pending)
            // A block's own row is no step of its own (its hosts are).
            .filter(|r| r.block.as_deref() != Some(r.id.as_str()))
            .map(|r| r.id.clone())
            .collect();
        self.reporter.event(&Event::RunFinished {
            run_id: self.run_id,
            state: stored,
            pending,
        });
        Ok(pass)
    }
}

/// Captured lines not yet committed, and when the oldest of them arrived.
#[derive(Default)]
struct OutputBuffer {
    lines: Vec<(String, i64, &'static str, String)>,
    since: Option<tokio::time::Instant>,
}

impl OutputBuffer {
    fn push(&mut self, line: (String, i64, &'static str, String)) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.lines.push(line);
    }

    /// Completes when the oldest waiting line is due to be committed.
    async fn due(&self) {
        match self.since {
            Some(since) => tokio::time::sleep_until(since + OUTPUT_FLUSH_EVERY).await,
            None => std::future::pending().await,
        }
    }

    fn flush(&mut self, store: &mut Store, run_id: i64) -> Result<()> {
        store.append_output(run_id, &self.lines)?;
        // Kept to its last lines as it goes, so an attempt cut off by a
        // crash is no longer than one that ended.
        let mut attempts: Vec<(&str, i64)> = self
            .lines
            .iter()
            .map(|(step, attempt, _, _)| (step.as_str(), *attempt))
            .collect();
        attempts.sort_unstable();
        attempts.dedup();
        for (step, attempt) in attempts {
            store.trim_output(run_id, step, attempt)?;
        }
        self.lines.clear();
        self.since = None;
        Ok(())
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Moves a row to a new state through the one rule that allows transitions.
fn transition(row: &mut StepRow, to: StepState) {
    debug_assert!(row.state.can_become(to), "{} -> {}", row.state, to);
    row.state = to;
}

#[allow(clippy::too_many_arguments)]
fn settle(
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
fn release(
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

#[cfg(test)]
mod tests {
    //! Resume reconciliation: which stored rows run again, and why.
    use super::*;
    use crate::runbook::template::{Context, Templater};
    use crate::store::ProcessId;

    fn plan_of(yaml: &str) -> Plan {
        let path = std::path::Path::new("/tmp/rb-unit/r.yaml");
        let (file, source) = crate::runbook::load::parse_text(path, yaml.to_string()).unwrap();
        let book = crate::runbook::validate::validate(file, source, &[]).unwrap();
        let ctx = Context::new(&book.vars, minijinja::Value::from(()), 0);
        crate::plan::build(&book, &ctx, &Templater::for_placeholders()).unwrap()
    }

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
