//! The state: runs, steps, captured output, approvals and locks (SPEC §3,
//! §11), behind one interface with two backends: an SQLite file (WAL,
//! `synchronous=FULL`) or a PostgreSQL database shared by a team. Every
//! command reads and writes through [`Store`] and cannot tell them apart.

mod copy;
mod lease;
mod lock;
mod notifications;
mod pg;
mod pg_conn;
mod pg_lease;
mod pg_pipe;
mod pg_records;
mod pg_runs;
mod pg_schema;
mod pg_tls;
pub mod pgurl;
mod schema;
mod sqlite;
mod sqlite_records;

use std::path::{Path, PathBuf};

pub use copy::copy_run;
pub use lease::LeaseWatch;
pub use lock::{seconds, LockHolder, ProcessId, DEFAULT_LEASE};
pub use notifications::{NotificationRow, Sent};
pub use pgurl::PgUrl;

use crate::error::{Error, Result};
use crate::state::{RunState, SecretState, StepState};

/// Where the state lives: an SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// An SQLite state file.
    File(PathBuf),
    /// A PostgreSQL database (SPEC §11).
    Postgres(PgUrl),
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown
    }
}

impl Location {
    /// From `--state` / `RUNBOOK_STATE` (a path, relative to `cwd`, or a
    /// `postgres://` URL); a malformed URL is a usage error (exit 2).
    pub fn parse(given: &std::ffi::OsStr, cwd: &Path) -> Result<Location> {
        match given.to_str().filter(|t| pgurl::is_pg_url(t)) {
            Some(text) => PgUrl::parse(text)
                .map(Location::Postgres)
                .map_err(|why| Error::Usage(format!("state URL: {why}"))),
            None => Ok(Location::File(cwd.join(given))),
        }
    }

    /// What messages show: the path, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Postgres(u) => u.shown.clone(),
        }
    }

    /// The database password, to redact wherever it could appear.
    pub fn password(&self) -> Option<&str> {
        match self {
            Location::File(_) => None,
            Location::Postgres(u) => u.password.as_deref(),
        }
    }
}

/// The state, open: one of the two backends.
pub struct Store {
    db: Box<dyn Backend>,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.db
    }
}

impl std::ops::DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.db
    }
}

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates a state file.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store {
            db: Box::new(sqlite::Sqlite::open(path)?),
        })
    }

    /// Opens an existing state file without creating it; `None` when absent.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        Ok(sqlite::Sqlite::open_existing(path)?.map(|db| Store { db: Box::new(db) }))
    }

    /// Opens the state wherever it lives, creating or migrating its tables.
    pub fn open_at(at: &Location) -> Result<Store> {
        match at {
            Location::File(p) => Store::open(p),
            Location::Postgres(u) => Ok(Store {
                db: Box::new(pg::Pg::connect(u, true)?),
            }),
        }
    }

    /// Opens existing state; `None` when nothing was ever written there.
    /// On PostgreSQL this creates nothing (a read-only role can read).
    pub fn open_existing_at(at: &Location) -> Result<Option<Store>> {
        match at {
            Location::File(p) => Store::open_existing(p),
            Location::Postgres(u) => {
                let db = pg::Pg::connect(u, false)?;
                Ok(db.has_schema().then(|| Store { db: Box::new(db) }))
            }
        }
    }

    /// Runs `f` in one transaction: all of its writes are committed
    /// together, or none (a step's result and the end of its spool record).
    pub fn atomically<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        if self.in_batch() {
            // Inside a group commit: the batch's transaction makes it one.
            return f(self);
        }
        self.begin_batch()?;
        match f(self) {
            Ok(v) => {
                self.commit_batch()?;
                Ok(v)
            }
            Err(e) => {
                self.rollback_batch();
                Err(e)
            }
        }
    }
}

/// The runs, their steps and the locks: what both backends do alike.
pub trait Backend: Records + Send {
    /// Starts a new run, or picks up the latest unfinished run of `runbook`
    /// (unless `fresh`), and takes its lock, all in one transaction so two
    /// engines started together cannot both get it. Returns the run and
    /// whether it was resumed.
    fn begin_run(
        &mut self,
        runbook: &str,
        path: &str,
        vars: &[(String, String)],
        fresh: bool,
        me: &ProcessId,
    ) -> Result<(RunRow, bool)>;
    /// Takes the lock of an existing run (for resume, reset, approve).
    fn lock_run(&mut self, run_id: i64, me: &ProcessId) -> Result<()>;
    /// Releases a run's lock if this process holds it.
    fn unlock_run(&self, run_id: i64, me: &ProcessId) -> Result<()>;
    /// The live holder of a run's lock, if any.
    fn live_holder(&self, run_id: i64) -> Result<Option<LockHolder>>;
    /// Whom the last `begin_run`/`lock_run` took the run over from (a
    /// lease's holder that was silent or gone; PostgreSQL only).
    fn took_over(&self) -> Option<LockHolder> {
        None
    }
    /// Starts renewing this engine's lease of the run on a thread of its
    /// own (PostgreSQL; SQLite's pid lock needs none); what it learns.
    fn keep_lease(&self, _run_id: i64) -> Result<Option<LeaseWatch>> {
        Ok(None)
    }
    /// A run by id.
    fn run(&self, id: i64) -> Result<Option<RunRow>>;
    /// The latest run, of one runbook or of any.
    fn latest_run(&self, runbook: Option<&str>) -> Result<Option<RunRow>>;
    /// Recent runs, newest first.
    fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>>;
    /// Sets a run's state; a settled state also records the end time.
    fn set_run_state(&self, id: i64, state: RunState) -> Result<()>;
    /// Stores a run's `--var`s (those a `resume` gave, over the ones
    /// before), so the next resume goes on with them.
    fn set_run_vars(&self, id: i64, vars: &[(String, String)]) -> Result<()>;
    /// Every step of a run, in runbook order.
    fn steps(&self, run_id: i64) -> Result<Vec<StepRow>>;
    /// Writes the given steps (a whole pass's start-up changes) in one
    /// transaction; with `keep_only`, steps not given are deleted.
    fn save_steps(&mut self, run_id: i64, rows: &[StepRow], keep_only: bool) -> Result<()>;
    /// Opens a group commit: the writes until [`Backend::commit_batch`] are
    /// one transaction, so many steps ending at once (a fleet) cost one
    /// sync instead of one each. Nothing may start that depends on them
    /// before the commit.
    fn begin_batch(&self) -> Result<()>;
    /// Whether a group commit is open (its writes are not yet durable).
    fn in_batch(&self) -> bool;
    /// Commits the writes since [`Backend::begin_batch`].
    fn commit_batch(&self) -> Result<()>;
    /// Drops the writes since [`Backend::begin_batch`].
    fn rollback_batch(&self);
    /// Writes one step; committed when this returns (or with the batch
    /// it is part of).
    fn save_step(&self, run_id: i64, row: &StepRow) -> Result<()>;
    /// Records how one attempt of a step ended (SPEC §14).
    fn save_attempt(&self, run_id: i64, step: &str, a: &AttemptRow) -> Result<()>;
    /// Every recorded attempt of a run, by step id, in attempt order.
    fn attempt_history(
        &self,
        run_id: i64,
    ) -> Result<std::collections::HashMap<String, Vec<AttemptRow>>>;
}

/// What is kept beside the steps: output, spools, secrets' states,
/// approvals, notifications.
pub trait Records {
    /// Records the runbook file a run was started or resumed from: its
    /// path here, relative to the folder runbook was started in (when
    /// under it), and its content hash (SPEC §11).
    fn set_run_file(
        &self,
        run_id: i64,
        path: &str,
        rel_path: Option<&str>,
        file_hash: &str,
    ) -> Result<()>;
    /// Appends captured lines of one attempt.
    fn append_output(
        &mut self,
        run_id: i64,
        lines: &[(String, i64, &'static str, String)],
    ) -> Result<()>;
    /// Drops all but the last [`OUTPUT_LINES_KEPT`] lines of an attempt.
    fn trim_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()>;
    /// Captured lines of one attempt as (stream, line); the last `tail` if given.
    fn output(
        &self,
        run_id: i64,
        step: &str,
        attempt: i64,
        tail: Option<i64>,
    ) -> Result<Vec<(String, String)>>;
    /// Captured lines of one attempt after line `after` (its `seq`), as
    /// (seq, stream, line), oldest first: what a follower has not seen yet.
    fn output_since(
        &self,
        run_id: i64,
        step: &str,
        attempt: i64,
        after: i64,
    ) -> Result<Vec<(i64, String, String)>>;
    /// Drops every captured line of one attempt (its output is read again
    /// whole from the host's spool when a resumed engine reattaches).
    fn clear_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()>;
    /// Records where a remote step spools on its host (before it starts
    /// there); committed when this returns.
    fn save_spool(&self, run_id: i64, step: &str, spool: &SpoolRow) -> Result<()>;
    /// Where a step of a run spools on its host, if it was started there and
    /// its result is not yet committed.
    fn spool(&self, run_id: i64, step: &str) -> Result<Option<SpoolRow>>;
    /// Forgets a step's spool (its result is committed, or it was stopped)
    /// and, in the same write, records its folder as one to remove on its
    /// host ([`Records::spool_discards`]).
    fn drop_spool(&self, run_id: i64, step: &str) -> Result<()>;
    /// Forgets the spools of steps whose results are committed, recording
    /// their folders to remove; one transaction.
    fn drop_spools(&mut self, run_id: i64, steps: &[&str]) -> Result<()>;
    /// The spool folders still to remove on hosts, of runs of `runbook`
    /// (a host is known by its name in the runbook), except any a step
    /// spools in now.
    fn spool_discards(&self, runbook: &str) -> Result<Vec<SpoolRow>>;
    /// Forgets spool folders the hosts have removed.
    fn forget_discards(&mut self, removed: &[SpoolRow]) -> Result<()>;
    /// Replaces what is known about a run's secrets.
    fn save_secrets(&mut self, run_id: i64, rows: &[SecretRow], env_files: &[String])
        -> Result<()>;
    /// What the last pass learned about a run's secrets, and its --env-file paths.
    fn secrets(&self, run_id: i64) -> Result<(Vec<SecretRow>, Vec<String>)>;
    /// Records an approval.
    fn approve(&self, run_id: i64, step: &str, by: &str, note: Option<&str>) -> Result<()>;
    /// The approval of a step, if given.
    fn approval(&self, run_id: i64, step: &str) -> Result<Option<Approval>>;
    /// Every approval of a run, by step id.
    fn approvals(&self, run_id: i64) -> Result<Vec<(String, Approval)>>;
    /// Records an approval as it was given (`state copy`: who and when kept).
    fn save_approval(&self, run_id: i64, step: &str, a: &Approval) -> Result<()>;
    /// A run copied from another state (`state copy`, SPEC §11): its row
    /// under `run.id` when that id is free here, else under a new one;
    /// returns the id it got.
    fn insert_run_copy(&self, run: &RunRow) -> Result<i64>;
    /// Whether this state holds a copy of `run` (its id, runbook and start).
    fn has_copy(&self, run: &RunRow) -> Result<bool>;
    /// Marks a run moved to another state (shown without a password):
    /// it is not resumed here any more.
    fn mark_moved(&self, run_id: i64, to: &str) -> Result<()>;
    /// Records a delivery (or its failure).
    fn save_notification(&self, run_id: i64, sent: &Sent, row: &NotificationRow) -> Result<()>;
    /// Whether this message already reached this URL for this run.
    fn was_delivered(&self, run_id: i64, sent: &Sent) -> Result<bool>;
    /// A run's deliveries, oldest first.
    fn notifications(&self, run_id: i64) -> Result<Vec<NotificationRow>>;
}

/// Lines of output kept per step attempt; older lines are dropped.
pub const OUTPUT_LINES_KEPT: i64 = 5_000;

/// One run.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Run id.
    pub id: i64,
    /// Runbook name.
    pub runbook: String,
    /// Runbook file path.
    pub path: String,
    /// Stored state.
    pub state: RunState,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: Option<String>,
    /// `--var` overrides given when the run started or resumed.
    pub vars: Vec<(String, String)>,
    /// The runbook file relative to the folder runbook was started in, so
    /// another machine's checkout finds it (SPEC §11); `None` in older runs
    /// or when the file was outside that folder.
    pub rel_path: Option<String>,
    /// SHA-256 of the runbook file as it was last run.
    pub file_hash: Option<String>,
    /// Where `state copy` moved the run: it is not resumed here.
    pub moved_to: Option<String>,
}

/// One step of a run.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// Step id.
    pub id: String,
    /// Position in the runbook.
    pub position: i64,
    /// Stored state.
    pub state: StepState,
    /// Attempts made so far in this run.
    pub attempts: i64,
    /// Start of the last attempt.
    pub started_at: Option<String>,
    /// End of the last pass.
    pub finished_at: Option<String>,
    /// Duration of the last pass.
    pub duration_ms: Option<i64>,
    /// Exit code of the last command.
    pub exit_code: Option<i64>,
    /// Why it is in this state.
    pub reason: Option<String>,
    /// Fingerprint of the definition it last ran with.
    pub fingerprint: Option<String>,
    /// Ids of the steps it needs.
    pub needs: Vec<String>,
    /// Host it runs on, if remote.
    pub host: Option<String>,
    /// Secrets that were missing.
    pub missing: Vec<String>,
    /// Secrets whose check rejected them.
    pub rejected: Vec<String>,
    /// For an upload: the hash of the source it shipped last (SPEC §14),
    /// compared with the source as it is when a later pass reaches it.
    pub source_hash: Option<String>,
    /// For an instance of a rolling block's inner step, and for the block
    /// itself: the block's id (SPEC §15).
    pub block: Option<String>,
}

impl StepRow {
    /// A step at `position` in `state` that has not run: no attempt, no
    /// times, no reason, nothing it needs or is missing yet.
    pub fn new(id: impl Into<String>, position: i64, state: StepState) -> Self {
        StepRow {
            id: id.into(),
            position,
            state,
            attempts: 0,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            exit_code: None,
            reason: None,
            fingerprint: None,
            needs: Vec::new(),
            host: None,
            missing: Vec::new(),
            rejected: Vec::new(),
            source_hash: None,
            block: None,
        }
    }
}

/// Where a remote step spools its output on its host (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRow {
    /// The host, as named in the runbook.
    pub host: String,
    /// The step's spool folder, relative to the login user's home; each
    /// attempt spools in a numbered folder under it.
    pub base: String,
    /// The user the engine logged in as when the spool was made (its
    /// home holds it); `None` in older runs.
    pub login: Option<String>,
}

/// An approval given with `runbook approve`.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Who approved: `user@host` of the process, or `--by NAME`.
    pub by: String,
    /// When.
    pub at: String,
    /// The note given.
    pub note: Option<String>,
}

/// What a pass learned about a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Secret name.
    pub name: String,
    /// What the last pass learned about it.
    pub state: SecretState,
    /// Where the value was found.
    pub source: Option<String>,
    /// Why it is missing, rejected or unchecked.
    pub reason: Option<String>,
}

impl RunRow {
    /// The run as it stands: when its engine died (no live lock holder),
    /// a `running` run and its `running` steps are `interrupted`.
    pub fn effective_state(&self, steps: &mut [StepRow], engine_alive: bool) -> RunState {
        if self.state == RunState::Running && !engine_alive {
            for s in steps.iter_mut().filter(|s| s.state == StepState::Running) {
                s.state = StepState::Interrupted;
                s.reason = Some("the engine stopped while it ran".into());
            }
            return RunState::Interrupted;
        }
        self.state
    }
}

/// How one attempt of a step ended (`attempt_history` in `status --json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptRow {
    /// Attempt number in the run.
    pub attempt: i64,
    /// Exit code of its command, when it had one.
    pub exit_code: Option<i64>,
    /// Why it ended so (a failure's reason), when known.
    pub reason: Option<String>,
    /// When it started.
    pub started_at: String,
    /// How long it took.
    pub duration_ms: i64,
}

/// The current time as RFC 3339, seconds precision, UTC.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub(crate) fn merge_vars(
    old: &[(String, String)],
    new: &[(String, String)],
) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = old
        .iter()
        .filter(|(k, _)| !new.iter().any(|(n, _)| n == k))
        .cloned()
        .collect();
    merged.extend(new.iter().cloned());
    merged
}

pub(crate) fn vars_json(vars: &[(String, String)]) -> String {
    serde_json::to_string(vars).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn json_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}
