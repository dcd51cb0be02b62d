//! The end-of-run summary: what succeeded, what failed (with the last lines
//! of its output), what is held and why, and the next command to type.

use std::collections::{BTreeMap, VecDeque};

use super::style::Palette;
use crate::events::Event;
use crate::state::{RunState, StepState};

/// Output lines kept per step for the summary.
const TAIL: usize = 5;

/// Collects what the summary needs from the events of a pass.
#[derive(Debug, Default)]
pub struct Summary {
    counts: BTreeMap<&'static str, usize>,
    tails: BTreeMap<String, VecDeque<String>>,
    failed: Vec<(String, String)>,
    held: Vec<(String, String)>,
    interrupted: Vec<String>,
    blocked: Vec<String>,
    /// Steps left pending on purpose (a rollout stopped at `max_fail`),
    /// by host when they have one, with the reason.
    left: Vec<(String, String)>,
    /// The steps of `left`, named there already.
    left_steps: Vec<String>,
    /// Every step the pass left pending (from `run_finished`).
    pending: Vec<String>,
    already_done: usize,
    /// Rolling blocks' ids: a block's own row is no step of its own, so
    /// no count counts it (its hosts' instances are counted).
    blocks: Vec<String>,
    /// The command waits on a held run by itself (`--wait`): no resume to
    /// type.
    waits: bool,
}

impl Summary {
    /// A summary for a command that, under `--wait`, goes on by itself
    /// once a held run is released.
    pub fn under_wait(mut self, waits: bool) -> Self {
        self.waits = waits;
        self
    }

    /// A summary of a run with these rolling blocks.
    pub fn with_blocks(mut self, mut blocks: Vec<String>) -> Self {
        blocks.sort();
        blocks.dedup();
        self.blocks = blocks;
        self
    }

    /// Takes one event into account.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::RunStarted { done, .. } => self.already_done = *done,
            Event::StepStarted { step, .. } => {
                self.tails.remove(step);
            }
            Event::StepOutput { step, line, .. } => {
                let tail = self.tails.entry(step.clone()).or_default();
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
            Event::StepFinished {
                step,
                state,
                reason,
                host,
                ..
            } => {
                if self.blocks.contains(step) {
                    return;
                }
                let reason = reason.clone().unwrap_or_default();
                if *state == StepState::Pending {
                    // Counted from `run_finished`, which names them all.
                    let who = host.clone().unwrap_or_else(|| step.clone());
                    if !self.left.iter().any(|(w, r)| *w == who && *r == reason) {
                        self.left.push((who, reason));
                    }
                    self.left_steps.push(step.clone());
                    return;
                }
                *self.counts.entry(state.as_str()).or_default() += 1;
                match state {
                    StepState::Failed => self.failed.push((step.clone(), reason)),
                    StepState::Held => self.held.push((step.clone(), reason)),
                    StepState::Interrupted => self.interrupted.push(step.clone()),
                    StepState::Blocked => self.blocked.push(step.clone()),
                    _ => {}
                }
            }
            Event::RunFinished { pending, .. } => self.pending = pending.clone(),
        }
    }

    /// The summary text for a run that ended in `state`. `state_flag` is
    /// appended to printed commands (e.g. ` --state PATH`).
    pub fn render(
        &self,
        run_id: i64,
        state: RunState,
        palette: &Palette,
        state_flag: &str,
    ) -> String {
        let mut out = format!(
            "run {run_id} {}: {}\n",
            palette.run_state(state),
            self.counts()
        );
        let mut shown = Shown::default();
        for (step, reason) in &self.failed {
            if shown.over(step, StepState::Failed) {
                continue;
            }
            out.push_str(&format!(
                "  {} {}: {reason}\n",
                palette.mark(StepState::Failed),
                palette.bold(step)
            ));
            if let Some(tail) = self.tails.get(step) {
                for line in tail {
                    out.push_str(&format!("      {} {line}\n", palette.dim("│")));
                }
            }
            out.push_str(&format!(
                "      {}\n",
                palette.dim(&format!(
                    "all of it: runbook logs {run_id} {step}{state_flag}"
                ))
            ));
        }
        for (step, reason) in &self.held {
            if shown.over(step, StepState::Held) {
                continue;
            }
            out.push_str(&format!(
                "  {} {}: {reason}\n",
                palette.mark(StepState::Held),
                palette.bold(step)
            ));
        }
        for (family, state, n) in &shown.hidden {
            out.push_str(&format!(
                "  {} {n} more instance{} of {} {state}: runbook status {run_id}{state_flag} --hosts\n",
                palette.mark(*state),
                if *n == 1 { "" } else { "s" },
                palette.bold(family)
            ));
        }
        self.render_left(&mut out, run_id, palette, state_flag);
        for step in &self.interrupted {
            out.push_str(&format!(
                "  {} {}: stopped while it ran; it runs again on resume\n",
                palette.mark(StepState::Interrupted),
                palette.bold(step)
            ));
        }
        if let Some(line) = self.not_run(palette) {
            out.push_str(&line);
        }
        if let Some(next) = next_command(run_id, state, state_flag, self.waits) {
            out.push_str(&format!("next: {next}\n"));
        }
        out
    }

    /// The header's counts: every instance is in one of them.
    fn counts(&self) -> String {
        let mut counts: Vec<String> = self
            .counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        if self.already_done > 0 {
            counts.insert(0, format!("{} already done", self.already_done));
        }
        if !self.pending.is_empty() {
            counts.push(format!("{} pending", self.pending.len()));
        }
        if counts.is_empty() {
            "nothing to do".to_string()
        } else {
            counts.join(", ")
        }
    }

    /// One line naming the first few steps that did not run, blocked and
    /// pending (held ones have lines of their own, with their reasons).
    fn not_run(&self, palette: &Palette) -> Option<String> {
        let named = |ids: &[String], state: StepState| {
            if ids.is_empty() {
                return None;
            }
            let mut names: Vec<&str> = ids.iter().take(NAMED).map(String::as_str).collect();
            let more = ids.len().saturating_sub(NAMED);
            let more = format!("{more} more");
            if ids.len() > NAMED {
                names.push(&more);
            }
            Some(format!("{} {state} ({})", ids.len(), names.join(", ")))
        };
        // Those a stopped rollout left have lines of their own.
        let pending: Vec<String> = self
            .pending
            .iter()
            .filter(|p| !self.left_steps.contains(p))
            .cloned()
            .collect();
        let parts: Vec<String> = [
            named(&self.blocked, StepState::Blocked),
            named(&pending, StepState::Pending),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            return None;
        }
        let mark = if self.blocked.is_empty() {
            StepState::Pending
        } else {
            StepState::Blocked
        };
        Some(format!(
            "  {} not run: {}\n",
            palette.mark(mark),
            parts.join("; ")
        ))
    }
}

impl Summary {
    /// The hosts (or steps) left pending on purpose, the first few named:
    /// `⋯ web3: not started, max_fail 0 reached (web2 failed)`.
    fn render_left(&self, out: &mut String, run_id: i64, palette: &Palette, state_flag: &str) {
        const SHOWN: usize = 3;
        let mark = palette.mark(StepState::Pending);
        for (who, reason) in self.left.iter().take(SHOWN) {
            out.push_str(&format!("  {mark} {}: {reason}\n", palette.bold(who)));
        }
        let more = self.left.len().saturating_sub(SHOWN);
        if more > 0 {
            out.push_str(&format!(
                "  {mark} {more} more left pending: runbook status {run_id}{state_flag} --hosts\n"
            ));
        }
    }
}

/// Steps named per state in the "not run" line.
const NAMED: usize = 3;

/// Past a few instances of one step on a group, only a count.
#[derive(Default)]
struct Shown {
    per_family: BTreeMap<String, usize>,
    hidden: Vec<(String, StepState, usize)>,
}

impl Shown {
    /// Whether `step` is past the few shown of its family (then counted).
    fn over(&mut self, step: &str, state: StepState) -> bool {
        const SHOWN: usize = 3;
        let Some(family) = super::fleet::family_of(step) else {
            return false;
        };
        let n = self.per_family.entry(family.to_string()).or_default();
        *n += 1;
        if *n <= SHOWN {
            return false;
        }
        match self
            .hidden
            .iter_mut()
            .find(|(f, s, _)| f == family && *s == state)
        {
            Some((_, _, n)) => *n += 1,
            None => self.hidden.push((family.to_string(), state, 1)),
        }
        true
    }
}

/// The command to type next, for a run that ended in `state`; under
/// `--wait` (`waits`) a held run needs no resume typed: the command goes on.
fn next_command(run_id: i64, state: RunState, state_flag: &str, waits: bool) -> Option<String> {
    match state {
        RunState::Held if waits => Some(format!(
            "a person must act: runbook handoff {run_id}{state_flag}   (says who and what); this command goes on by itself once they have"
        )),
        RunState::Succeeded => None,
        RunState::Failed => Some(format!(
            "fix the cause above, then: runbook resume {run_id}{state_flag}"
        )),
        RunState::Held => Some(format!(
            "a person must act: runbook handoff {run_id}{state_flag}   (says who and what); then: runbook resume {run_id}{state_flag}"
        )),
        RunState::Interrupted | RunState::Running => Some(format!(
            "continue with: runbook resume {run_id}{state_flag}"
        )),
    }
}
