//! `runbook status`: a table for people, and the JSON of SPEC §5.

use comfy_table::{presets, Table};
use serde::Serialize;

use super::human_ms;
use crate::state::{RunState, StepState};
use crate::store::{RunRow, StepRow};

/// Whether `runbook reset` sent this step back to pending (and nothing
/// has run it since): its reason is the one reset writes.
pub fn was_reset(row: &StepRow) -> bool {
    row.state == StepState::Pending
        && row
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("reset (with "))
}

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
    /// The host it runs on (null when local); an instance of a step on a
    /// group is `STEP@HOST`.
    pub host: Option<String>,
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
    /// Secrets whose command failed (SPEC §13).
    pub unavailable: Vec<String>,
    /// Each attempt's own record, in order (SPEC §14).
    pub attempt_history: Vec<crate::store::AttemptRow>,
    /// The rolling block this is, or is an instance of an inner step of
    /// (SPEC §15); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// The JSON document; `unavailable` names the secrets whose command
/// failed (a step holds them among its missing ones).
pub fn to_json(
    run: &RunRow,
    state: RunState,
    steps: &[StepRow],
    unavailable: &[String],
    history: &std::collections::HashMap<String, Vec<crate::store::AttemptRow>>,
) -> StatusJson {
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
                host: s.host.clone(),
                attempts: s.attempts,
                started_at: s.started_at.clone(),
                finished_at: s.finished_at.clone(),
                duration_ms: s.duration_ms,
                exit_code: s.exit_code,
                reason: s.reason.clone(),
                missing: s
                    .missing
                    .iter()
                    .filter(|m| !unavailable.contains(m))
                    .cloned()
                    .collect(),
                rejected: s.rejected.clone(),
                unavailable: s
                    .missing
                    .iter()
                    .filter(|m| unavailable.contains(m))
                    .cloned()
                    .collect(),
                attempt_history: history.get(&s.id).cloned().unwrap_or_default(),
                block: s.block.clone(),
            })
            .collect(),
    }
}

/// A rolling block (SPEC §15): one line with counts per state of its
/// hosts, then its hosts (past [`INSTANCES_SHOWN`], those not succeeded,
/// unless `--hosts`), each with where its block is.
fn block_rows(
    table: &mut Table,
    row: &StepRow,
    rows: &[&StepRow],
    palette: &super::style::Palette,
    all_hosts: bool,
) {
    let hosts = super::rolling::hosts(rows);
    let took: i64 = hosts.iter().filter_map(|h| h.duration_ms).sum();
    table.add_row([
        format!(
            "{} (rolling, {})",
            row.id,
            super::count(hosts.len(), "host")
        ),
        super::rolling::counts(&hosts),
        String::new(),
        if took > 0 {
            human_ms(took)
        } else {
            String::new()
        },
        String::new(),
    ]);
    let all = all_hosts || hosts.len() <= INSTANCES_SHOWN;
    let listed: Vec<_> = hosts
        .iter()
        .filter(|h| all || h.state != StepState::Succeeded)
        .collect();
    let cut = if all { listed.len() } else { INSTANCES_SHOWN };
    for h in listed.iter().take(cut) {
        table.add_row([
            format!("  {}", h.host),
            palette.state(h.state),
            String::new(),
            h.duration_ms.map(human_ms).unwrap_or_default(),
            h.reason.clone(),
        ]);
    }
    if listed.len() > cut {
        table.add_row([
            format!("  … {} more", listed.len() - cut),
            String::new(),
            String::new(),
            String::new(),
            "`runbook status --hosts` lists every host".to_string(),
        ]);
    }
}

/// A step on a group: one line with its host count and counts per state,
/// then its instances that have not succeeded (at most
/// [`INSTANCES_SHOWN`], unless `--hosts`).
fn family_rows(
    table: &mut Table,
    step: &str,
    rows: &[&StepRow],
    row_of: &dyn Fn(&StepRow, String) -> [String; 5],
    all_hosts: bool,
) {
    let longest = rows.iter().filter_map(|r| r.duration_ms).max();
    table.add_row([
        format!("{step} ({})", super::count(rows.len(), "host")),
        super::fleet::counts(rows),
        String::new(),
        longest.map(human_ms).unwrap_or_default(),
        String::new(),
    ]);
    let listed: Vec<&&StepRow> = rows
        .iter()
        .filter(|r| all_hosts || r.state != StepState::Succeeded)
        .collect();
    let cut = if all_hosts {
        listed.len()
    } else {
        INSTANCES_SHOWN
    };
    for s in listed.iter().take(cut) {
        table.add_row(row_of(s, format!("  {}", s.id)));
    }
    if listed.len() > cut {
        table.add_row([
            format!("  … {} more", listed.len() - cut),
            String::new(),
            String::new(),
            String::new(),
            "`runbook status --hosts` lists every instance".to_string(),
        ]);
    }
}

/// Instances listed under a step on a group, at most, unless `--hosts`.
const INSTANCES_SHOWN: usize = 10;

/// The table for people. A step on a group is one line with counts per
/// state, then its instances that have not succeeded (all of them with
/// `all_hosts`, as `status --hosts`).
pub fn to_table(
    run: &RunRow,
    state: RunState,
    steps: &[StepRow],
    palette: &super::style::Palette,
    all_hosts: bool,
) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(["STEP", "STATE", "ATTEMPTS", "DURATION", "REASON"]);
    let row_of = |s: &StepRow, id: String| {
        [
            id,
            palette.state(s.state),
            s.attempts.to_string(),
            // A pending step's last duration is of a pass that no longer counts.
            s.duration_ms
                .filter(|_| s.state != StepState::Pending)
                .map(human_ms)
                .unwrap_or_default(),
            s.reason.clone().unwrap_or_default(),
        ]
    };
    for entry in super::fleet::entries(steps) {
        match entry {
            super::fleet::Entry::Single(s) => {
                table.add_row(row_of(s, s.id.clone()));
            }
            super::fleet::Entry::Block { row, rows } => {
                block_rows(&mut table, row, &rows, palette, all_hosts);
            }
            super::fleet::Entry::Family { step, rows } => {
                family_rows(&mut table, step, &rows, &row_of, all_hosts);
            }
        }
    }
    // Steps counted are instances; a block's own row is not one.
    let counted: Vec<&StepRow> = steps
        .iter()
        .filter(|s| !super::rolling::is_checkpoint(s))
        .collect();
    let done = counted.iter().filter(|s| s.state.satisfies_needs()).count();
    let reset = counted.iter().filter(|s| was_reset(s)).count();
    // A run whose steps `reset` sent back is `interrupted` in the JSON
    // (SPEC §3), but nothing stopped it: say what happened to it.
    let (words, ended) = match (state, reset) {
        (RunState::Interrupted, 1..)
            if !counted.iter().any(|s| s.state == StepState::Interrupted) =>
        {
            (
                format!(
                    "{}: {reset} {} pending, resume runs {}",
                    palette.run_state_word(state, "reset"),
                    if reset == 1 { "step" } else { "steps" },
                    if reset == 1 { "it" } else { "them" }
                ),
                "last pass ended",
            )
        }
        _ => (palette.run_state(state), "ended"),
    };
    let ended = run
        .finished_at
        .as_deref()
        .map(|f| format!(", {ended} {f}"))
        .unwrap_or_default();
    let lines: Vec<String> = table.lines().map(|l| l.trim_end().to_string()).collect();
    format!(
        "run {} of {}: {words} ({done}/{} done; started {}{ended})\n{}\n",
        run.id,
        run.runbook,
        counted.len(),
        run.started_at,
        lines.join("\n")
    )
}

/// `status --json`'s `holder` (SPEC §11): the live engine that holds the
/// run, `null` when none.
pub fn holder_json(holder: Option<&crate::store::LockHolder>) -> serde_json::Value {
    match holder {
        Some(h) => serde_json::json!({
            "user": h.user,
            "host": h.host,
            "pid": h.pid,
            "last_seen": h.last_seen,
            "waiting": h.waiting,
        }),
        None => serde_json::Value::Null,
    }
}

/// The line under `status`'s table naming the live engine that holds the
/// run (nothing when none).
pub fn holder_line(holder: Option<&crate::store::LockHolder>) -> String {
    match holder {
        Some(h) => format!(
            "held by {} (pid {}{}), last heard from {}\n",
            h.who(),
            h.pid,
            if h.waiting { ", waiting" } else { "" },
            h.heard()
        ),
        None => String::new(),
    }
}
