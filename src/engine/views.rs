//! What `status`, `handoff` and the list of runs show, as values: the
//! commands print them, and `runbook serve` sends the same documents.

use super::*;
use crate::report::handoff::HandoffFormat;
use crate::store::NotificationRow;

/// A run as `status` shows it.
pub struct StatusView {
    /// The run.
    pub run: RunRow,
    /// Its state as it stands (a dead engine's run is `interrupted`).
    pub state: RunState,
    /// Its steps, in runbook order.
    pub steps: Vec<StepRow>,
    /// The notifications sent for it.
    pub notifications: Vec<NotificationRow>,
    /// Secrets whose source could not be reached.
    pub unavailable: Vec<String>,
    /// Each step's attempts, by step id (SPEC §14).
    pub attempt_history: std::collections::HashMap<String, Vec<crate::store::AttemptRow>>,
    /// The live engine that holds it (SPEC §11), if any.
    pub holder: Option<crate::store::LockHolder>,
    /// The approvals given, by step id (SPEC §11: who and when).
    pub approvals: Vec<(String, crate::store::Approval)>,
}

impl StatusView {
    /// The `status --json` document (SPEC §5).
    pub fn to_json(&self) -> serde_json::Value {
        let doc = report::status::to_json(
            &self.run,
            self.state,
            &self.steps,
            &self.unavailable,
            &self.attempt_history,
        );
        let mut doc = serde_json::to_value(&doc).unwrap_or_default();
        if let Some(map) = doc.as_object_mut() {
            map.insert(
                "holder".into(),
                report::status::holder_json(self.holder.as_ref()),
            );
        }
        if let (Some(to), Some(map)) = (&self.run.moved_to, doc.as_object_mut()) {
            map.insert("moved_to".into(), to.clone().into());
        }
        let steps = doc.get_mut("steps").and_then(|s| s.as_array_mut());
        for step in steps.into_iter().flatten() {
            let id = step.get("id").and_then(|i| i.as_str()).unwrap_or_default();
            let given = self.approvals.iter().find(|(s, _)| s == id);
            if let (Some((_, a)), Some(map)) = (given, step.as_object_mut()) {
                map.insert("approved_by".into(), a.by.clone().into());
                map.insert("approved_at".into(), a.at.clone().into());
            }
        }
        if let (false, Some(map)) = (self.notifications.is_empty(), doc.as_object_mut()) {
            map.insert(
                "notifications".into(),
                serde_json::to_value(&self.notifications).unwrap_or_default(),
            );
        }
        doc
    }
}

/// One line of the list of runs (`GET /api/runs`, SPEC §12).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: i64,
    /// Runbook name.
    pub runbook: String,
    /// State as it stands.
    pub state: RunState,
    /// Start.
    pub started_at: String,
    /// End of the last pass.
    pub finished_at: Option<String>,
    /// The live engine that holds it, as `user@host (pid N)`.
    pub holder: Option<String>,
    /// Who must act: the owners of held secrets, and `approval of STEP`
    /// for each step that waits for an approval.
    pub waiting_on: Vec<String>,
}

impl Ctx {
    /// Where the state this context reads lives.
    pub fn state_path(&self) -> &crate::store::Location {
        &self.state
    }

    /// A run as `status` shows it.
    pub fn status_view(&self, store: &Store, target: &Target) -> Result<StatusView> {
        let run = self.find_run(store, target)?;
        let mut steps = store.steps(run.id)?;
        let holder = store.live_holder(run.id)?;
        let alive = holder.is_some();
        let state = run.effective_state(&mut steps, alive);
        if !alive {
            // A remote step outlives its engine (SPEC §8): say where it is.
            for s in steps
                .iter_mut()
                .filter(|s| s.state == StepState::Interrupted)
            {
                if let Some(spool) = store.spool(run.id, &s.id)? {
                    s.reason = Some(format!(
                        "the engine stopped while it ran; it may still run on `{}`, and `runbook resume` reattaches to it",
                        spool.host
                    ));
                }
            }
        }
        let notifications = store.notifications(run.id)?;
        let unavailable: Vec<String> = store
            .secrets(run.id)?
            .0
            .into_iter()
            .filter(|r| r.state == crate::state::SecretState::Unavailable)
            .map(|r| r.name)
            .collect();
        let attempt_history = store.attempt_history(run.id)?;
        let approvals = store.approvals(run.id)?;
        approved_reasons(&mut steps, &approvals, &self.state_flag(), run.id);
        Ok(StatusView {
            run,
            state,
            steps,
            notifications,
            unavailable,
            attempt_history,
            holder,
            approvals,
        })
    }

    /// The `status --json` document of a run.
    pub fn status_json(&self, target: &Target) -> Result<serde_json::Value> {
        let store = self.existing_store()?;
        Ok(self.status_view(&store, target)?.to_json())
    }

    /// The handoff page of a run in a format, as `handoff` writes it.
    pub fn handoff_text(&self, target: &Target, format: HandoffFormat) -> Result<String> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, target)?;
        let mut steps = store.steps(run.id)?;
        let alive = store.live_holder(run.id)?.is_some();
        let state = run.effective_state(&mut steps, alive);
        let (secret_rows, env_files) = store.secrets(run.id)?;
        let loaded = super::handover::runbook_file(&self.cwd, &run, None)
            .and_then(|p| self.load(&p, &run.vars, run.id))
            .ok();
        let page = self.build_handoff(
            &store,
            &run,
            state,
            &steps,
            &secret_rows,
            &env_files,
            loaded.as_ref(),
        )?;
        Ok(report::handoff::render(&page, format))
    }

    /// The latest `limit` runs, newest first; empty without a state file.
    pub fn run_summaries(&self, limit: i64) -> Result<Vec<RunSummary>> {
        let Some(store) = Store::open_existing_at(&self.state)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for run in store.recent_runs(limit)? {
            let mut steps = store.steps(run.id)?;
            let holder = store.live_holder(run.id)?;
            let state = run.effective_state(&mut steps, holder.is_some());
            let waiting_on = if state == RunState::Held {
                self.waiting_on(&store, &run, state, &steps)
            } else {
                Vec::new()
            };
            out.push(RunSummary {
                run_id: run.id,
                runbook: run.runbook.clone(),
                state,
                started_at: run.started_at.clone(),
                finished_at: run.finished_at.clone(),
                holder: holder.map(|h| format!("{} (pid {})", h.who(), h.pid)),
                waiting_on,
            });
        }
        Ok(out)
    }

    /// Who must act on a held run, from its handoff page.
    fn waiting_on(
        &self,
        store: &Store,
        run: &RunRow,
        state: RunState,
        steps: &[StepRow],
    ) -> Vec<String> {
        let Ok((secret_rows, env_files)) = store.secrets(run.id) else {
            return Vec::new();
        };
        let loaded = super::handover::runbook_file(&self.cwd, run, None)
            .and_then(|p| self.load(&p, &run.vars, run.id))
            .ok();
        let Ok(page) = self.build_handoff(
            store,
            run,
            state,
            steps,
            &secret_rows,
            &env_files,
            loaded.as_ref(),
        ) else {
            return Vec::new();
        };
        let mut who: Vec<String> = page.owners.iter().map(|o| o.owner.clone()).collect();
        who.extend(
            page.approvals
                .iter()
                .map(|a| format!("approval of {}", a.step)),
        );
        who
    }
}

/// A held approval step that has been approved waits for nothing but the
/// next pass: its reason says who approved it and that resume runs it, not
/// the question it no longer waits on (the row stays `held` until then).
fn approved_reasons(
    steps: &mut [StepRow],
    approvals: &[(String, crate::store::Approval)],
    flag: &str,
    run_id: i64,
) {
    for s in steps.iter_mut().filter(|s| report::status::was_reset(s)) {
        // An approval given stays through a reset (docs/reference.md).
        if let Some((_, a)) = approvals.iter().find(|(id, _)| *id == s.id) {
            let reason = s.reason.take().unwrap_or_default();
            s.reason = Some(format!(
                "{reason}; approved by {} at {}, so it runs without asking again",
                a.by, a.at
            ));
        }
    }
    for s in steps.iter_mut().filter(|s| s.state == StepState::Held) {
        let asks = s
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("waiting for approval"));
        if let (true, Some((_, a))) = (asks, approvals.iter().find(|(id, _)| *id == s.id)) {
            s.reason = Some(format!(
                "approved by {} at {}; runs on `runbook resume {run_id}{flag}`",
                a.by, a.at
            ));
        }
    }
}
