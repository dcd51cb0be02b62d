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
    /// Steps left pending on purpose (a rollout stopped at `max_fail`),
    /// by host when they have one, with the reason.
    left: Vec<(String, String)>,
    already_done: usize,
}

impl Summary {
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
                *self.counts.entry(state.as_str()).or_default() += 1;
                let reason = reason.clone().unwrap_or_default();
                match state {
                    StepState::Failed => self.failed.push((step.clone(), reason)),
                    StepState::Held => self.held.push((step.clone(), reason)),
                    StepState::Interrupted => self.interrupted.push(step.clone()),
                    StepState::Pending => {
                        let who = host.clone().unwrap_or_else(|| step.clone());
                        if !self.left.iter().any(|(w, r)| *w == who && *r == reason) {
                            self.left.push((who, reason));
                        }
                    }
                    _ => {}
                }
            }
            Event::RunFinished { .. } => {}
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
        let mut out = String::new();
        let mut counts: Vec<String> = self
            .counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        if self.already_done > 0 {
            counts.insert(0, format!("{} already done", self.already_done));
        }
        let counts = if counts.is_empty() {
            "nothing to do".to_string()
        } else {
            counts.join(", ")
        };
        out.push_str(&format!(
            "run {run_id} {}: {counts}\n",
            palette.run_state(state)
        ));
        // Past a few instances of one step on a group, only a count.
        const SHOWN: usize = 3;
        let mut shown: BTreeMap<String, usize> = BTreeMap::new();
        let mut more = |step: &str| {
            let Some(family) = super::fleet::family_of(step) else {
                return false;
            };
            let n = shown.entry(family.to_string()).or_default();
            *n += 1;
            *n > SHOWN
        };
        let mut hidden: Vec<(String, StepState, usize)> = Vec::new();
        let mut hide = |step: &str, state: StepState| {
            let family = super::fleet::family_of(step).unwrap_or(step).to_string();
            match hidden
                .iter_mut()
                .find(|(f, s, _)| *f == family && *s == state)
            {
                Some((_, _, n)) => *n += 1,
                None => hidden.push((family, state, 1)),
            }
        };
        for (step, reason) in &self.failed {
            if more(step) {
                hide(step, StepState::Failed);
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
            if more(step) {
                hide(step, StepState::Held);
                continue;
            }
            out.push_str(&format!(
                "  {} {}: {reason}\n",
                palette.mark(StepState::Held),
                palette.bold(step)
            ));
        }
        for (family, state, n) in &hidden {
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
        let next = match state {
            RunState::Succeeded => None,
            RunState::Failed => Some(format!("fix the cause above, then: runbook resume {run_id}{state_flag}")),
            RunState::Held => Some(format!(
                "a person must act: runbook handoff {run_id}{state_flag}   (says who and what); then: runbook resume {run_id}{state_flag}"
            )),
            RunState::Interrupted | RunState::Running => Some(format!("continue with: runbook resume {run_id}{state_flag}")),
        };
        if let Some(next) = next {
            out.push_str(&format!("next: {next}\n"));
        }
        out
    }

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
