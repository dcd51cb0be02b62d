//! The plain reporter, for pipes, logs and CI: one line per event worth
//! reading, each output line prefixed by its step, no cursor movement.

use std::io::Write;

use super::live_block::Blocks;
use super::style::Palette;
use super::summary::Summary;
use super::{human_ms, Reporter, Verbosity};
use crate::events::Event;
use crate::state::StepState;

/// Prints a run as plain lines on stdout.
pub struct PlainReporter {
    verbosity: Verbosity,
    palette: Palette,
    summary: Summary,
    state_flag: String,
    blocks: Blocks,
}

impl PlainReporter {
    /// A reporter; `state_flag` is appended to printed commands.
    pub fn new(verbosity: Verbosity, palette: Palette, state_flag: &str) -> Self {
        PlainReporter {
            verbosity,
            palette,
            summary: Summary::default(),
            state_flag: state_flag.to_string(),
            blocks: Blocks::default(),
        }
    }

    /// Under `--wait`: the summary of a held pass says the command goes on
    /// by itself, not to type a resume.
    pub fn under_wait(mut self, waits: bool) -> Self {
        self.summary = std::mem::take(&mut self.summary).under_wait(waits);
        self
    }

    /// The instances of rolling blocks' inner steps (instance id, block
    /// id), in plan order: the summary counts them, not the blocks' own
    /// rows, and a block's end says how many hosts went through it.
    pub fn with_blocks(mut self, instances: Vec<(String, String)>) -> Self {
        let ids = instances.iter().map(|(_, b)| b.clone()).collect();
        self.summary = std::mem::take(&mut self.summary).with_blocks(ids);
        self.blocks = Blocks::new(instances);
        self
    }

    fn print(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }
}

/// The first line of a pass.
pub fn started_line(event: &Event) -> Option<String> {
    let Event::RunStarted {
        run_id,
        runbook,
        resumed,
        steps,
        done,
    } = event
    else {
        return None;
    };
    Some(if *resumed {
        format!(
            "resuming run {run_id} of {runbook}: {done} of {} already done",
            super::count(*steps, "step")
        )
    } else {
        format!(
            "run {run_id} of {runbook}: {}",
            super::count(*steps, "step")
        )
    })
}

/// The line printed when a step starts: why it runs again on the first
/// attempt of a pass, else which attempt it is.
pub fn started_step_line(event: &Event) -> Option<String> {
    let Event::StepStarted {
        step,
        attempt,
        host,
        reason,
        ..
    } = event
    else {
        return None;
    };
    let on = host
        .as_deref()
        .map(|h| format!(" on {h}"))
        .unwrap_or_default();
    Some(match reason {
        Some(why) => format!("▶ {step}{on} ({why})"),
        None => format!("▶ {step}{on} (attempt {attempt})"),
    })
}

/// The line printed when a step reaches a state.
pub fn finished_line(palette: &Palette, event: &Event) -> Option<String> {
    let Event::StepFinished {
        step,
        state,
        duration_ms,
        reason,
        ..
    } = event
    else {
        return None;
    };
    let took = duration_ms
        .map(|d| format!("  {}", human_ms(d)))
        .unwrap_or_default();
    let why = reason
        .as_deref()
        .map(|r| format!("  ({r})"))
        .unwrap_or_default();
    Some(format!(
        "{} {step}  {}{took}{why}",
        palette.mark(*state),
        state
    ))
}

impl Reporter for PlainReporter {
    fn event(&mut self, event: &Event) {
        self.summary.record(event);
        let quiet = self.verbosity == Verbosity::Quiet;
        match event {
            Event::RunStarted { resumed, .. } => {
                if *resumed || !quiet {
                    if let Some(line) = started_line(event) {
                        self.print(&line);
                    }
                }
            }
            Event::StepStarted {
                reason, attempt, ..
            } => {
                if self.verbosity == Verbosity::Verbose
                    || !quiet && (reason.is_some() || *attempt > 1)
                {
                    if let Some(line) = started_step_line(event) {
                        self.print(&line);
                    }
                }
            }
            Event::StepOutput { step, line, .. } => {
                if !quiet {
                    self.print(&format!(
                        "{} {line}",
                        self.palette.dim(&format!("[{step}]"))
                    ));
                }
            }
            Event::StepFinished { state, .. } => {
                // What a stopped rollout leaves is named in the summary.
                if !quiet && *state != StepState::Pending {
                    if let Some(line) = self.blocks.finished_line(&self.palette, event) {
                        self.print(&line);
                    } else if let Some(line) = finished_line(&self.palette, event) {
                        self.print(&line);
                    }
                }
            }
            Event::RunFinished { run_id, state, .. } => {
                let text = self
                    .summary
                    .render(*run_id, *state, &self.palette, &self.state_flag);
                // A closed stdout (`runbook run x | head`) must not stop the run.
                let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            }
        }
    }
}
