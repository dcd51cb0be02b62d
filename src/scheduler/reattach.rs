//! Which spool a remote `run` step uses as it starts (SPEC §8, §11): the
//! one an earlier engine recorded, reattached, when the step still has the
//! same definition and host and this engine logs in as the user whose home
//! holds it; else a new one. With another login user the step is reported,
//! not run a second time.

use super::job::JobSpool;
use super::settle::settle;
use super::{Options, Pass};
use crate::error::Result;
use crate::exec;
use crate::plan::{PlannedStep, Rendered, RenderedAction};
use crate::state::StepState;
use crate::store::{SpoolRow, StepRow, Store};

/// What a step about to start spools in.
pub(super) enum Spooled {
    /// This spool (`None`: not a remote `run` step).
    Here(Option<JobSpool>),
    /// Its spool is another login user's: the step was settled failed,
    /// naming the user, and its dependents blocked.
    OtherLogin,
}

/// Where a recorded spool stands for this engine.
enum Choice {
    Use(JobSpool),
    /// Recorded under this user's home; this engine logs in as another.
    LogInAs(String),
}

impl Pass<'_> {
    /// The spool of step `i` about to start, recorded in `self.spools`.
    pub(super) fn spool_of(
        &mut self,
        i: usize,
        rendered: &Rendered,
        options: &Options,
    ) -> Result<Spooled> {
        let step = &self.plan.steps[i];
        let (RenderedAction::Run { .. }, Some(host)) = (&rendered.action, &step.host) else {
            return Ok(Spooled::Here(None));
        };
        let login = options.execs.ssh.login_user(host);
        let row = &self.rows[i];
        match spool_for(
            self.store,
            self.run_id,
            &self.engine_key,
            step,
            row,
            host,
            &login,
        )? {
            Choice::Use(spool) => {
                self.spools[i] = Some(SpoolRow {
                    host: host.clone(),
                    base: spool.base.clone(),
                    login,
                });
                Ok(Spooled::Here(Some(spool)))
            }
            Choice::LogInAs(user) => {
                let now = login.as_deref().unwrap_or("another user");
                let reason = format!(
                    "started on {host} by another engine, which logged in as {user}; \
                     this engine logs in as {now}, so it neither follows nor reruns it: \
                     resume logging in as {user} (the host's `user`) to pick it up"
                );
                let row = &mut self.rows[i];
                settle(
                    self.store,
                    self.run_id,
                    row,
                    StepState::Failed,
                    Some(reason),
                    None,
                    None,
                    self.reporter,
                )?;
                self.block_dependents(i)?;
                Ok(Spooled::OtherLogin)
            }
        }
    }
}

/// The recorded spool when it can be followed, else a new one (the caller
/// records it with the step's start, before the job runs).
fn spool_for(
    store: &Store,
    run_id: i64,
    engine_key: &str,
    step: &PlannedStep,
    row: &StepRow,
    host: &str,
    login: &Option<String>,
) -> Result<Choice> {
    let recorded = store.spool(run_id, &step.id)?;
    let elapsed = row
        .started_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    let same = row.fingerprint.as_deref() == Some(step.fingerprint.as_str());
    let stale = match recorded {
        Some(old) if old.host == host && same => {
            if let (Some(was), Some(now)) = (&old.login, login) {
                if was != now {
                    return Ok(Choice::LogInAs(was.clone()));
                }
            }
            return Ok(Choice::Use(JobSpool {
                base: old.base,
                reattach: true,
                elapsed,
                stale: None,
            }));
        }
        other => other,
    };
    Ok(Choice::Use(JobSpool {
        base: exec::spool::base(run_id, engine_key, &step.id),
        reattach: false,
        elapsed,
        stale,
    }))
}
