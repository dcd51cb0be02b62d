//! What the scheduler announces as a run goes; reporters consume these.

use serde::Serialize;

use crate::state::{RunState, StepState};

/// One thing that happened in a run (the NDJSON events of SPEC §5).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The engine took the run.
    RunStarted {
        /// Run id.
        run_id: i64,
        /// Runbook name.
        runbook: String,
        /// Whether an unfinished run was picked up.
        resumed: bool,
        /// Steps in the run.
        steps: usize,
        /// Steps already done from an earlier pass.
        done: usize,
    },
    /// An attempt of a step started.
    StepStarted {
        /// Run id.
        run_id: i64,
        /// Step id.
        step: String,
        /// Attempt number in this run.
        attempt: i64,
        /// Host, when remote.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Always `running`.
        state: StepState,
        /// Why it runs again, on its first attempt of a pass ("definition changed").
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A line of a step's output (already redacted).
    StepOutput {
        /// Run id.
        run_id: i64,
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: i64,
        /// Host, when remote.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The line.
        line: String,
    },
    /// A step reached a state for this pass.
    StepFinished {
        /// Run id.
        run_id: i64,
        /// Step id.
        step: String,
        /// Host, when remote.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The state it reached.
        state: StepState,
        /// Attempts made in this run.
        attempts: i64,
        /// Duration of the pass.
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_ms: Option<i64>,
        /// Exit code of the last command.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
        /// Why.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The pass ended.
    RunFinished {
        /// Run id.
        run_id: i64,
        /// The run's state.
        state: RunState,
        /// Steps this pass left pending (outside `--limit`, past a
        /// `max_fail` budget, not reached before a stop), in plan order.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pending: Vec<String>,
    },
}

/// Where the scheduler sends its events: the reporters (live view, plain
/// lines, NDJSON) implement it, and so can a test that records them. It
/// lives beside [`Event`] so the scheduler does not depend on `report`.
pub trait Reporter {
    /// Called for every event, in order.
    fn event(&mut self, event: &Event);
}
