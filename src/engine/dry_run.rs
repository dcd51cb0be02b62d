//! `--dry-run`: the steps the same command would run if every step that
//! runs succeeds, with the reasons the run prints (SPEC §14). It asks the
//! questions the run asks, of the same functions: which rows are still
//! done ([`scheduler::reconcile`], which reads upload sources as they are
//! now), whether a step is ready ([`EngineGate`]), whether its `unless`
//! check passes (it runs it: checks change nothing). Nothing is written.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::gate::EngineGate;
use super::loaded::{executors, Loaded};
use super::lookup::{needed_secrets, resolve_secrets, CheckCache};
use super::{fleet, Ctx, RunOptions};
use crate::error::{exit, Result};
use crate::exec::{self, Outcome};
use crate::plan::{self, RenderedAction};
use crate::scheduler::{self, Gate, NotReady};
use crate::store::{RunRow, StepRow, Store};

/// What the run would do with one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Run,
    Rerun,
    Reattach,
    Satisfied,
    Done,
    Held,
    /// Would follow a held step once it is released.
    AfterHeld,
    Blocked,
    Fail,
    Skipped,
    /// Outside `--limit`: stays as it is.
    LeftOut,
    /// Needs a step outside `--limit` that is not done: stays pending.
    Waits,
}

impl Verdict {
    /// The words printed before the step's id.
    fn label(self) -> &'static str {
        match self {
            Verdict::Run => "would run",
            Verdict::Rerun => "would rerun",
            Verdict::Reattach => "would reattach",
            Verdict::Satisfied => "already satisfied",
            Verdict::Done => "done",
            Verdict::Held => "would be held",
            Verdict::AfterHeld => "after release",
            Verdict::Blocked => "would be blocked",
            Verdict::Fail => "would fail",
            Verdict::Skipped => "would be skipped",
            Verdict::LeftOut => "left out",
            Verdict::Waits => "would not start",
        }
    }

    /// Whether the step's effect happens in this pass (so what it builds
    /// is not known yet).
    fn runs(self) -> bool {
        matches!(self, Verdict::Run | Verdict::Rerun | Verdict::Reattach)
    }
}

/// The stored side of a dry run: the run's rows as `status` shows them,
/// its approvals, and the steps with a spool recorded on a host.
struct Stored {
    rows: Vec<StepRow>,
    approvals: HashMap<String, String>,
    spools: BTreeSet<String>,
    state: Option<String>,
}

fn stored(previous: Option<&RunRow>, store: Option<&Store>) -> Result<Stored> {
    let (Some(run), Some(store)) = (previous, store) else {
        return Ok(Stored {
            rows: Vec::new(),
            approvals: HashMap::new(),
            spools: BTreeSet::new(),
            state: None,
        });
    };
    let mut rows = store.steps(run.id)?;
    let alive = store.live_holder(run.id)?.is_some();
    let state = run.effective_state(&mut rows, alive).to_string();
    let mut approvals = HashMap::new();
    let mut spools = BTreeSet::new();
    for r in &rows {
        if let Some(a) = store.approval(run.id, &r.id)? {
            let note = a.note.map(|n| format!(": {n}")).unwrap_or_default();
            approvals.insert(
                r.id.clone(),
                format!("approved by {} at {}{note}", a.by, a.at),
            );
        }
        if store.spool(run.id, &r.id)?.is_some() {
            spools.insert(r.id.clone());
        }
    }
    Ok(Stored {
        rows,
        approvals,
        spools,
        state: Some(state),
    })
}

/// The order steps would start in: those ready at the start first, by
/// their place in the runbook, as the scheduler takes them; then those
/// the first ones release, and so on (a step that needs nothing starts
/// before one that waits for a build, wherever it is written).
fn start_order(plan: &plan::Plan) -> Vec<usize> {
    let n = plan.steps.len();
    let mut waiting: Vec<usize> = plan.steps.iter().map(|s| s.needs.len()).collect();
    // How many steps stand before it on its longest chain of needs.
    let mut wave = vec![0usize; n];
    // A rolling block's later batch goes once the earlier ones are through.
    let batch = |i: usize| {
        plan.steps[i]
            .family
            .as_ref()
            .and_then(|f| f.roll.as_ref())
            .map_or(0, |r| r.batch)
    };
    let mut ready: BTreeSet<(usize, usize, usize)> = (0..n)
        .filter(|&i| waiting[i] == 0)
        .map(|i| (batch(i), 0, i))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some((_, _, i)) = ready.pop_first() {
        order.push(i);
        for &d in &plan.steps[i].dependents {
            waiting[d] -= 1;
            wave[d] = wave[d].max(wave[i] + 1);
            if waiting[d] == 0 {
                ready.insert((batch(d), wave[d], d));
            }
        }
    }
    order
}

/// The line that opens a batch of a rolling block, before its first
/// instance in the walk: `rollout: batch 2 of 3: web2`.
fn batch_line(plan: &plan::Plan, i: usize, seen: &mut Vec<(String, usize)>) -> Option<String> {
    let roll = plan.steps[i].family.as_ref()?.roll.as_ref()?;
    let key = (roll.block.clone(), roll.batch);
    if seen.contains(&key) {
        return None;
    }
    seen.push(key);
    let of_block = |s: &&plan::PlannedStep| {
        s.family
            .as_ref()
            .and_then(|f| f.roll.as_ref())
            .filter(|r| r.block == roll.block)
            .map(|r| r.batch)
    };
    let batches = plan.steps.iter().filter_map(|s| of_block(&s)).max()? + 1;
    let mut hosts: Vec<&str> = Vec::new();
    for s in plan
        .steps
        .iter()
        .filter(|s| of_block(s) == Some(roll.batch))
    {
        if let Some(h) = s.host.as_deref().filter(|h| !hosts.contains(h)) {
            hosts.push(h);
        }
    }
    Some(format!(
        "  {}: batch {} of {batches}: {}",
        roll.block,
        roll.batch + 1,
        fleet::short_list(&hosts)
    ))
}

/// The first lines: which run, in the state `status` shows, and the secrets.
fn header(
    loaded: &Loaded,
    previous: Option<&RunRow>,
    old: &Stored,
    secrets: &super::lookup::SecretStates,
) {
    match (previous, &old.state) {
        (Some(run), Some(state)) => println!(
            "dry run: would resume run {} of {} ({state})",
            run.id, loaded.runbook.name
        ),
        _ => println!("dry run: would start a new run of {}", loaded.runbook.name),
    }
    for row in &secrets.rows {
        let place = row
            .source
            .as_deref()
            .map(|s| format!(" in {s}"))
            .unwrap_or_default();
        let why = row
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        println!("  secret {:<24} {}{place}{why}", row.name, row.state);
    }
}

impl Ctx {
    pub(super) async fn dry_run(
        &self,
        loaded: &Loaded,
        previous: Option<&RunRow>,
        args: &RunOptions,
    ) -> Result<i32> {
        let existing = Store::open_existing_at(&self.state)?;
        // `--fresh` has no previous run here: every step would run.
        let old = stored(previous, existing.as_ref())?;
        let plan = &loaded.plan;
        let excluded = fleet::excluded(&loaded.runbook, plan, &args.limit)?;
        let source_now = |i: usize| {
            plan::source::hash_now(
                &loaded.ctx,
                &loaded.runbook.steps[i],
                &plan.steps[i].rendered,
            )
        };
        let rows = scheduler::reconcile(old.rows.clone(), plan, &excluded, &source_now);
        let execs = Arc::new(executors(loaded)?);
        let needed = needed_secrets(loaded, &rows);
        let secrets = resolve_secrets(
            loaded,
            &execs,
            &args.env_files,
            &needed,
            &mut CheckCache::default(),
        )
        .await;
        header(loaded, previous, &old, &secrets);
        let mut gate = EngineGate {
            loaded,
            secrets: &secrets,
            approvals: old.approvals.keys().cloned().collect(),
            redactor: Arc::new(secrets.redactor()),
        };
        let redactor = Arc::new(secrets.redactor());
        let mut walk = Walk {
            loaded,
            diff: args.diff,
            redactor: redactor.clone(),
            rows: &rows,
            old: &old,
            excluded: &excluded,
            execs: &execs,
            verdict: vec![Verdict::Done; plan.steps.len()],
            built: vec![false; plan.steps.len()],
        };
        let mut batches_seen = Vec::new();
        for i in start_order(plan) {
            if let Some(line) = batch_line(plan, i, &mut batches_seen) {
                println!("{line}");
            }
            let (v, why) = walk.judge(i, &mut gate).await;
            let detail = if v.runs() && !walk.built[i] {
                walk.changes(i, &mut gate).await
            } else {
                Vec::new()
            };
            walk.verdict[i] = v;
            // A rolling block's own row is its checkpoint, no step: its
            // batches above are what would run (SPEC §15).
            if plan.steps[i].block.as_deref() == Some(plan.steps[i].id.as_str()) {
                continue;
            }
            let why = if why.is_empty() {
                why
            } else {
                format!("  ({why})")
            };
            println!("  {:<17} {}{why}", v.label(), plan.steps[i].id);
            for line in detail {
                println!("{line}");
            }
        }
        execs.ssh.close().await;
        println!("nothing was changed");
        Ok(exit::OK)
    }
}

/// The dry run's walk over the steps in the order they would start.
struct Walk<'a> {
    loaded: &'a Loaded,
    /// `--diff`: show what each changed text file would become.
    diff: bool,
    redactor: Arc<crate::secrets::Redactor>,
    rows: &'a [StepRow],
    old: &'a Stored,
    excluded: &'a [bool],
    execs: &'a Arc<exec::Executors>,
    verdict: Vec<Verdict>,
    /// Whether a step this one needs (or one they need) runs first.
    built: Vec<bool>,
}

impl Walk<'_> {
    async fn judge(&mut self, i: usize, gate: &mut EngineGate<'_>) -> (Verdict, String) {
        let step = &self.loaded.plan.steps[i];
        let needs: Vec<Verdict> = step.needs.iter().map(|&n| self.verdict[n]).collect();
        self.built[i] = step
            .needs
            .iter()
            .any(|&n| self.built[n] || self.verdict[n].runs());
        if self.rows[i].state.satisfies_needs() {
            return (Verdict::Done, String::new());
        }
        if self.excluded.get(i).copied().unwrap_or(false) {
            return (Verdict::LeftOut, "outside --limit".to_string());
        }
        if needs
            .iter()
            .any(|v| matches!(v, Verdict::Held | Verdict::AfterHeld))
        {
            return (
                Verdict::AfterHeld,
                "once the held step it needs is released".to_string(),
            );
        }
        if needs
            .iter()
            .any(|v| matches!(v, Verdict::Blocked | Verdict::Fail))
        {
            return (Verdict::Blocked, "a step it needs would fail".to_string());
        }
        if needs
            .iter()
            .any(|v| matches!(v, Verdict::LeftOut | Verdict::Waits))
        {
            return (
                Verdict::Waits,
                "a step it needs is outside --limit".to_string(),
            );
        }
        let is_upload = matches!(step.rendered.action, RenderedAction::Upload { .. });
        if is_upload && self.built[i] {
            let mut why =
                "its source is built by an earlier step; contents not known yet".to_string();
            if let Some(h) = step.host.as_deref() {
                why.push_str(&format!("; on {h}"));
            }
            return (self.run_verdict(i), self.reason(i, &why));
        }
        match gate.prepare(i) {
            Ok(r) if !r.when => (Verdict::Skipped, "`when` is false".to_string()),
            Ok(r) => self.would_run(i, &r).await,
            Err(NotReady::Held(hold)) => (Verdict::Held, hold.reason()),
            Err(NotReady::Failed(reason)) => (Verdict::Fail, reason),
        }
    }

    /// A step that is ready: reattached, already satisfied, or run.
    async fn would_run(&self, i: usize, r: &plan::Rendered) -> (Verdict, String) {
        let step = &self.loaded.plan.steps[i];
        let row = &self.rows[i];
        let remote_run = matches!(r.action, RenderedAction::Run { .. }) && step.host.is_some();
        let same = row.fingerprint.as_deref() == Some(step.fingerprint.as_str());
        if remote_run && same && self.old.spools.contains(&step.id) {
            let host = step.host.as_deref().unwrap_or_default();
            return (
                Verdict::Reattach,
                format!("still running on {host} or finished there"),
            );
        }
        if let Some(unless) = &r.unless {
            let (sink, _lines) = tokio::sync::mpsc::unbounded_channel();
            let cancel = CancellationToken::new();
            let outcome = self
                .execs
                .command(
                    step.host.as_deref(),
                    unless,
                    &r.env,
                    r.timeout,
                    &cancel,
                    &sink,
                )
                .await;
            if matches!(outcome, Outcome::Succeeded { .. }) {
                return (Verdict::Satisfied, "`unless` exited 0".to_string());
            }
        }
        let why = match self.old.approvals.get(&step.id) {
            Some(approved) => approved.clone(),
            None => step
                .host
                .as_deref()
                .map(|h| format!("on {h}"))
                .unwrap_or_default(),
        };
        (self.run_verdict(i), self.reason(i, &why))
    }

    /// For an upload that would run: the files it would write and remove,
    /// read from its destination (over SSH for a remote one; nothing is
    /// changed), with a diff of each text file under `--diff`.
    async fn changes(&self, i: usize, gate: &mut EngineGate<'_>) -> Vec<String> {
        let Ok(r) = gate.prepare(i) else {
            return Vec::new();
        };
        let RenderedAction::Upload {
            files,
            dest,
            delete,
            exclude,
            ..
        } = &r.action
        else {
            return Vec::new();
        };
        let sync = delete.then_some(exec::upload::Sync {
            root: dest.as_str(),
            exclude,
        });
        let host = self.loaded.plan.steps[i].host.as_deref();
        let (pool, dir) = (&self.execs.ssh, &self.execs.dir);
        let preview = match exec::preview::preview(pool, host, files, sync, dir, self.diff).await {
            Ok(p) => p,
            Err(e) => {
                let e = self.redactor.redact(&e);
                return vec![format!("      cannot read the destination: {e}")];
            }
        };
        let mut lines = Vec::new();
        for c in &preview.write {
            let what = if c.new { "new" } else { "changed" };
            lines.push(format!("      would write {} ({what})", c.dest));
            if self.diff {
                lines.extend(self.diff_lines(c, files));
            }
        }
        for path in &preview.remove {
            lines.push(format!("      would remove {path}"));
        }
        if preview.write.is_empty() && preview.remove.is_empty() {
            lines.push("      every file already in place".to_string());
        }
        lines
    }

    /// A unified diff of a changed text file, redacted.
    fn diff_lines(
        &self,
        c: &exec::preview::Change,
        files: &[exec::upload::FileToWrite],
    ) -> Vec<String> {
        let Some(new) = files.iter().find(|f| f.dest == c.dest) else {
            return Vec::new();
        };
        let Ok(new_text) = std::str::from_utf8(&new.bytes) else {
            return vec!["        (binary file)".to_string()];
        };
        if !c.new && c.old_text.is_none() {
            return vec!["        (not text, or too large to show)".to_string()];
        }
        let old = c.old_text.as_deref().unwrap_or("");
        let diff = similar::TextDiff::from_lines(old, new_text);
        let text = diff
            .unified_diff()
            .header(
                &format!("{} (now)", c.dest),
                &format!("{} (would be)", c.dest),
            )
            .to_string();
        text.lines()
            .map(|l| format!("        {}", self.redactor.redact(l)))
            .collect()
    }

    fn run_verdict(&self, i: usize) -> Verdict {
        match &self.rows[i].reason {
            Some(r) if r.ends_with("changed") => Verdict::Rerun,
            _ => Verdict::Run,
        }
    }

    /// The reason the run would print, then what else is known.
    fn reason(&self, i: usize, extra: &str) -> String {
        let mut parts: Vec<&str> = Vec::new();
        // A host a rollout did not start (`not started, max_fail 0
        // reached`): what stopped the last pass is not why this one runs it.
        let reason = self.rows[i].reason.as_deref();
        if let Some(r) = reason.filter(|r| !r.starts_with("not started")) {
            parts.push(r);
        }
        if !extra.is_empty() {
            parts.push(extra);
        }
        parts.join("; ")
    }
}
