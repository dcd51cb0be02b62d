//! Every read and write `serve` makes of the state, in one place: the
//! engine's own functions (the ones the CLI calls) and, for following a
//! run, a cheap poll of the store. Nothing else in `serve` touches it.

use std::collections::HashMap;

use crate::engine::{Ctx, RunSummary, Target};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::report::handoff::HandoffFormat;
use crate::state::{RunState, StepState};
use crate::store::{Location, StepRow, Store};

/// The state `serve` shows, and the engine functions it calls.
pub struct Adapter {
    ctx: Ctx,
}

/// A run as the run page shows it.
pub struct RunView {
    /// The `status --json` document.
    pub doc: serde_json::Value,
    /// Its steps.
    pub steps: Vec<StepRow>,
    /// The run's state as it stands.
    pub state: RunState,
    /// Runbook name.
    pub runbook: String,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
}

impl Adapter {
    /// Over the engine's context.
    pub fn new(ctx: Ctx) -> Adapter {
        Adapter { ctx }
    }

    /// Where the state lives.
    pub fn state_path(&self) -> Location {
        self.ctx.state_path().clone()
    }

    /// The latest runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunSummary>> {
        self.ctx.run_summaries(200)
    }

    /// One run, or `None` when there is no such run.
    pub fn run(&self, id: i64) -> Result<Option<RunView>> {
        let Some(store) = Store::open_existing_at(self.ctx.state_path())? else {
            return Ok(None);
        };
        if store.run(id)?.is_none() {
            return Ok(None);
        }
        let view = self.ctx.status_view(&store, &Target::RunId(id))?;
        Ok(Some(RunView {
            doc: view.to_json(),
            state: view.state,
            runbook: view.run.runbook.clone(),
            started_at: view.run.started_at.clone(),
            finished_at: view.run.finished_at.clone(),
            steps: view.steps,
        }))
    }

    /// The `status --json` document of a run.
    pub fn status_json(&self, id: i64) -> Result<serde_json::Value> {
        self.ctx.status_json(&Target::RunId(id))
    }

    /// The handoff page as `handoff --format html` writes it.
    pub fn handoff_html(&self, id: i64) -> Result<String> {
        self.ctx
            .handoff_text(&Target::RunId(id), HandoffFormat::Html)
    }

    /// What `runbook logs` prints.
    pub fn logs(&self, id: i64, step: &str, attempt: Option<i64>) -> Result<String> {
        let lines = self.ctx.log_lines(id, step, attempt)?;
        let mut text = String::new();
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
        Ok(text)
    }

    /// `runbook approve` with a name.
    pub fn approve(&self, id: i64, step: &str, note: Option<&str>, by: &str) -> Result<String> {
        self.ctx.approve_as(id, step, note, Some(by))
    }

    /// `runbook reset`.
    pub fn reset(&self, id: i64, step: &str) -> Result<Vec<String>> {
        self.ctx.reset_steps(id, step).map(|(_, steps)| steps)
    }

    /// A follower of one run: it polls the store for what changed.
    pub fn follower(&self, run_id: i64) -> Result<Follower> {
        let mut f = Follower {
            path: self.state_path(),
            run_id,
            run_state: None,
            finished_at: None,
            steps: HashMap::new(),
            seen: HashMap::new(),
            kept: None,
        };
        // From the run's current state on: what is there now is not news.
        let _ = f.poll()?;
        Ok(f)
    }
}

/// Polls one run and turns what changed into the events of SPEC §5.
pub struct Follower {
    path: Location,
    run_id: i64,
    run_state: Option<RunState>,
    finished_at: Option<String>,
    steps: HashMap<String, (StepState, i64)>,
    seen: HashMap<(String, i64), i64>,
    /// On PostgreSQL, one connection for every poll (each poll's reads see
    /// what is committed; a lost connection is opened again by the store).
    kept: Option<Store>,
}

impl Follower {
    /// What changed since the last poll, as events; `None` when the run is gone.
    pub fn poll(&mut self) -> Result<Option<Vec<Event>>> {
        // An SQLite file is opened afresh each time: a long-lived
        // connection was seen to miss a later engine's pass. A database
        // connection is kept: opening one per poll is a login each time.
        let store = match self.kept.take() {
            Some(kept) => kept,
            None => Store::open_existing_at(&self.path)?
                .ok_or_else(|| Error::Usage("no state file".into()))?,
        };
        let polled = self.poll_with(&store);
        if matches!(self.path, Location::Postgres(_)) {
            self.kept = Some(store);
        }
        polled
    }

    fn poll_with(&mut self, store: &Store) -> Result<Option<Vec<Event>>> {
        let Some(run) = store.run(self.run_id)? else {
            return Ok(None);
        };
        let mut steps = store.steps(self.run_id)?;
        let alive = store.live_holder(self.run_id)?.is_some();
        let state = run.effective_state(&mut steps, alive);
        let first = self.run_state.is_none();
        let mut events = Vec::new();
        if self.run_state != Some(state) && !first && state == RunState::Running {
            // Counted as the engine counts them: no block's own row.
            let counted = || {
                steps
                    .iter()
                    .filter(|s| !crate::report::rolling::is_checkpoint(s))
            };
            events.push(Event::RunStarted {
                run_id: run.id,
                runbook: run.runbook.clone(),
                resumed: true,
                steps: counted().count(),
                done: counted().filter(|s| s.state.satisfies_needs()).count(),
            });
        }
        for s in &steps {
            self.step_events(store, s, first, &mut events)?;
        }
        // A pass that began and ended between two polls still ends.
        let stepped = events
            .iter()
            .any(|e| matches!(e, Event::StepFinished { .. }));
        let ended = self.run_state != Some(state) || self.finished_at != run.finished_at || stepped;
        if ended && !first && state != RunState::Running {
            let pending = steps
                .iter()
                .filter(|s| s.state == StepState::Pending)
                .map(|s| s.id.clone())
                .collect();
            events.push(Event::RunFinished {
                run_id: run.id,
                state,
                pending,
            });
        }
        self.run_state = Some(state);
        self.finished_at = run.finished_at.clone();
        Ok(Some(events))
    }

    fn step_events(
        &mut self,
        store: &Store,
        s: &StepRow,
        first: bool,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let before = self.steps.insert(s.id.clone(), (s.state, s.attempts));
        let changed = before != Some((s.state, s.attempts));
        // An attempt that began and ended between two polls still starts,
        // and its lines are still sent, as `run --json` sends them.
        let unseen = !first
            && matches!(
                s.state,
                StepState::Succeeded | StepState::Failed | StepState::Interrupted
            )
            && s.attempts > before.map_or(0, |b| b.1);
        if changed && !first && (s.state == StepState::Running || unseen) {
            events.push(Event::StepStarted {
                run_id: self.run_id,
                step: s.id.clone(),
                attempt: s.attempts,
                host: s.host.clone(),
                state: StepState::Running,
                // A finished step's reason says how it ended, not why it ran.
                reason: if unseen { None } else { s.reason.clone() },
            });
        }
        if s.state == StepState::Running
            || unseen
            || before.map(|b| b.0) == Some(StepState::Running)
        {
            let key = (s.id.clone(), s.attempts);
            let after = self.seen.get(&key).copied().unwrap_or(0);
            let lines = store.output_since(self.run_id, &s.id, s.attempts, after)?;
            if let Some((seq, _, _)) = lines.last() {
                self.seen.insert(key, *seq);
            }
            if !first {
                events.extend(
                    lines
                        .into_iter()
                        .map(|(_, stream, line)| Event::StepOutput {
                            run_id: self.run_id,
                            step: s.id.clone(),
                            attempt: s.attempts,
                            host: s.host.clone(),
                            stream: if stream == "stderr" {
                                "stderr"
                            } else {
                                "stdout"
                            },
                            line,
                        }),
                );
            }
        }
        if changed && !first && s.state != StepState::Running {
            events.push(Event::StepFinished {
                run_id: self.run_id,
                step: s.id.clone(),
                host: s.host.clone(),
                state: s.state,
                attempts: s.attempts,
                duration_ms: s.duration_ms,
                exit_code: s.exit_code,
                reason: s.reason.clone(),
            });
        }
        Ok(())
    }
}
