//! `runbook status`: a table for people, and the JSON of SPEC §5.

use comfy_table::{presets, Table};
use serde::Serialize;

use super::human_ms;
use crate::state::{RunState, StepState};
use crate::store::{RunRow, StepRow};

/// `status --json`.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    /// Run id.
    pub run_id: i64,
    /// Runbook name.
    pub runbook: String,
    /// Run state.
    pub state: RunState,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// Steps in runbook order.
    pub steps: Vec<StepJson>,
}

/// One step in `status --json`.
#[derive(Debug, Serialize)]
pub struct StepJson {
    /// Step id.
    pub id: String,
    /// State.
    pub state: StepState,
    /// Ids it needs.
    pub needs: Vec<String>,
    /// Host, `local` when local.
    pub on: String,
    /// Attempts in this run.
    pub attempts: i64,
    /// Start of the last attempt.
    pub started_at: Option<String>,
    /// End.
    pub finished_at: Option<String>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Exit code of the last command.
    pub exit_code: Option<i64>,
    /// Why it is in this state.
    pub reason: Option<String>,
    /// Secrets missing.
    pub missing: Vec<String>,
    /// Secrets rejected.
    pub rejected: Vec<String>,
}

/// The JSON document.
pub fn to_json(run: &RunRow, state: RunState, steps: &[StepRow]) -> StatusJson {
    StatusJson {
        run_id: run.id,
        runbook: run.runbook.clone(),
        state,
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone(),
        steps: steps
            .iter()
            .map(|s| StepJson {
                id: s.id.clone(),
                state: s.state,
                needs: s.needs.clone(),
                on: s.host.clone().unwrap_or_else(|| "local".into()),
                attempts: s.attempts,
                started_at: s.started_at.clone(),
                finished_at: s.finished_at.clone(),
                duration_ms: s.duration_ms,
                exit_code: s.exit_code,
                reason: s.reason.clone(),
                missing: s.missing.clone(),
                rejected: s.rejected.clone(),
            })
            .collect(),
    }
}

/// The table for people.
pub fn to_table(
    run: &RunRow,
    state: RunState,
    steps: &[StepRow],
    palette: &super::style::Palette,
) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["STEP", "STATE", "ATTEMPTS", "DURATION", "REASON"]);
    for s in steps {
        table.add_row([
            s.id.clone(),
            palette.state(s.state),
            s.attempts.to_string(),
            s.duration_ms.map(human_ms).unwrap_or_default(),
            s.reason.clone().unwrap_or_default(),
        ]);
    }
    let done = steps.iter().filter(|s| s.state.satisfies_needs()).count();
    let ended = run
        .finished_at
        .as_deref()
        .map(|f| format!(", ended {f}"))
        .unwrap_or_default();
    let lines: Vec<String> = table.lines().map(|l| l.trim_end().to_string()).collect();
    format!(
        "run {} of {}: {} ({done}/{} done; started {}{ended})\n{}\n",
        run.id,
        run.runbook,
        palette.run_state(state),
        steps.len(),
        run.started_at,
        lines.join("\n")
    )
}
