//! The human reporter: prefixed output lines and one line per finished step.

use std::io::Write;

use super::{human_ms, Reporter};
use crate::events::Event;
use crate::state::{RunState, StepState};

/// How much the human reporter prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only the summary.
    Quiet,
    /// Step results and output lines.
    Normal,
    /// Also every attempt start.
    Verbose,
}

/// Prints a run for people, on stdout.
pub struct HumanReporter {
    verbosity: Verbosity,
    counts: std::collections::BTreeMap<&'static str, usize>,
    runbook: String,
}

impl HumanReporter {
    /// A reporter for the runbook `runbook`.
    pub fn new(verbosity: Verbosity, runbook: &str) -> Self {
        HumanReporter {
            verbosity,
            counts: Default::default(),
            runbook: runbook.to_string(),
        }
    }

    fn print(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// The mark shown before a step in a state.
pub fn mark(state: StepState) -> &'static str {
    match state {
        StepState::Succeeded => "✓",
        StepState::Failed => "✗",
        StepState::Held => "⏸",
        StepState::Blocked => "⊘",
        StepState::Skipped => "↷",
        StepState::Interrupted => "!",
        StepState::Running => "▶",
        StepState::Pending => "·",
    }
}

impl Reporter for HumanReporter {
    fn event(&mut self, event: &Event) {
        let quiet = self.verbosity == Verbosity::Quiet;
        match event {
            Event::RunStarted {
                run_id,
                runbook,
                resumed,
                steps,
                done,
            } => {
                if *resumed {
                    self.print(&format!(
                        "resuming run {run_id} of {runbook}: {done} of {steps} steps already done"
                    ));
                } else if !quiet {
                    self.print(&format!("run {run_id} of {runbook}: {steps} steps"));
                }
            }
            Event::StepStarted {
                step,
                attempt,
                host,
                ..
            } => {
                if self.verbosity == Verbosity::Verbose || *attempt > 1 && !quiet {
                    let on = host
                        .as_deref()
                        .map(|h| format!(" on {h}"))
                        .unwrap_or_default();
                    self.print(&format!("▶ {step}{on} (attempt {attempt})"));
                }
            }
            Event::StepOutput { step, line, .. } => {
                if !quiet {
                    self.print(&format!("[{step}] {line}"));
                }
            }
            Event::StepFinished {
                step,
                state,
                duration_ms,
                reason,
                ..
            } => {
                *self.counts.entry(state.as_str()).or_default() += 1;
                if !quiet {
                    let took = duration_ms
                        .map(|d| format!("  {}", human_ms(d)))
                        .unwrap_or_default();
                    let why = reason
                        .as_deref()
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default();
                    self.print(&format!("{} {step}  {state}{took}{why}", mark(*state)));
                }
            }
            Event::RunFinished { run_id, state } => {
                let counts: Vec<String> = self
                    .counts
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect();
                let counts = if counts.is_empty() {
                    "nothing to do".to_string()
                } else {
                    counts.join(", ")
                };
                self.print(&format!("run {run_id} {state}: {counts}"));
                let next = match state {
                    RunState::Succeeded => None,
                    RunState::Failed => Some(format!(
                        "see `runbook status {run_id}` and `runbook logs {run_id} STEP`; after a fix: runbook resume {run_id}"
                    )),
                    RunState::Held => Some(format!(
                        "a human must act: `runbook handoff {run_id}` says what; then: runbook resume {run_id}"
                    )),
                    RunState::Interrupted | RunState::Running => Some(format!("continue with: runbook resume {run_id}")),
                };
                if let Some(next) = next {
                    self.print(&format!("next: {next}"));
                }
                let _ = &self.runbook;
            }
        }
    }
}
