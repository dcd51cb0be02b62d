//! The SQLite state file: runs, steps, captured output, approvals and locks
//! (SPEC §3). WAL mode, `synchronous=FULL`: a committed checkpoint survives
//! a crash of the engine or of the machine.

mod lock;
mod notifications;
mod schema;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

pub use lock::{LockHolder, ProcessId};
pub use notifications::{NotificationRow, Sent};

use crate::error::{Error, Result};
use crate::state::{RunState, SecretState, StepState};

/// Lines of output kept per step attempt; older lines are dropped.
pub const OUTPUT_LINES_KEPT: i64 = 5_000;

/// The state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

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

/// Where a remote step spools its output on its host (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRow {
    /// The host, as named in the runbook.
    pub host: String,
    /// The step's spool folder, relative to the login user's home; each
    /// attempt spools in a numbered folder under it.
    pub base: String,
}

/// An approval given with `runbook approve`.
#[derive(Debug, Clone)]
pub struct Approval {
    /// The OS user who approved.
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

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates the state file.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::io(format!("cannot create state folder {}", dir.display()), e)
            })?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open state file {}", path.display()), e))?;
        let conn = Connection::open(path).at(path)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        Ok(store)
    }

    /// Opens an existing state file without creating it; `None` when absent.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        Store::open(path).map(Some)
    }

    fn configure(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .at(&path)?;
        // Switching a new file to WAL takes an exclusive lock that SQLite's
        // busy handler does not wait for: retry while another engine is
        // creating the same file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self.conn.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            ) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(store_err(&path, e)),
            }
        }
        schema::migrate(&mut self.conn).map_err(|e| match e {
            schema::MigrateError::Sqlite(e) => store_err(&path, e),
            schema::MigrateError::TooNew(v) => Error::Usage(format!(
                "state file {} has schema version {v}, newer than this runbook ({}); upgrade runbook",
                path.display(),
                schema::VERSION
            )),
        })
    }

    /// Starts a new run, or picks up the latest unfinished run of `runbook`
    /// (unless `fresh`), and takes its lock, all in one transaction so two
    /// engines started together cannot both get it. Returns the run and
    /// whether it was resumed.
    pub fn begin_run(
        &mut self,
        runbook: &str,
        path: &str,
        vars: &[(String, String)],
        fresh: bool,
        me: &ProcessId,
    ) -> Result<(RunRow, bool)> {
        let path_buf = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path_buf)?;
        let latest = if fresh {
            None
        } else {
            latest_run_in(&tx, Some(runbook)).at(&path_buf)?
        };
        let (run_id, resumed) = match latest {
            Some(run) if run.state.is_unfinished() => (run.id, true),
            _ => {
                tx.execute(
                    "INSERT INTO runs (runbook, path, state, started_at, vars) VALUES (?1, ?2, 'running', ?3, ?4)",
                    params![runbook, path, now(), vars_json(vars)],
                )
                .at(&path_buf)?;
                (tx.last_insert_rowid(), false)
            }
        };
        lock::acquire(&tx, run_id, me).map_err(|e| match e {
            lock::LockError::Held(h) => Error::Locked {
                run_id,
                pid: h.pid,
                host: h.host,
                since: h.acquired_at,
            },
            lock::LockError::Sqlite(e) => store_err(&path_buf, e),
        })?;
        if resumed {
            let merged = merge_vars(&latest_vars(&tx, run_id).at(&path_buf)?, vars);
            tx.execute(
                "UPDATE runs SET state = 'running', finished_at = NULL, vars = ?2, path = ?3 WHERE id = ?1",
                params![run_id, vars_json(&merged), path],
            )
            .at(&path_buf)?;
        }
        let run = run_in(&tx, run_id)
            .at(&path_buf)?
            .ok_or_else(|| Error::Usage(format!("run {run_id} vanished")))?;
        tx.commit().at(&path_buf)?;
        Ok((run, resumed))
    }

    /// Takes the lock of an existing run (for resume, reset, approve).
    pub fn lock_run(&mut self, run_id: i64, me: &ProcessId) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        lock::acquire(&tx, run_id, me).map_err(|e| match e {
            lock::LockError::Held(h) => Error::Locked {
                run_id,
                pid: h.pid,
                host: h.host,
                since: h.acquired_at,
            },
            lock::LockError::Sqlite(e) => store_err(&path, e),
        })?;
        tx.commit().at(&path)
    }

    /// Releases a run's lock if this process holds it.
    pub fn unlock_run(&self, run_id: i64, me: &ProcessId) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM locks WHERE run_id = ?1 AND pid = ?2 AND host = ?3",
                params![run_id, me.pid, me.host],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// The live holder of a run's lock, if any.
    pub fn live_holder(&self, run_id: i64) -> Result<Option<LockHolder>> {
        lock::live_holder(&self.conn, run_id).at(&self.path)
    }

    /// A run by id.
    pub fn run(&self, id: i64) -> Result<Option<RunRow>> {
        run_in(&self.conn, id).at(&self.path)
    }

    /// The latest run, of one runbook or of any.
    pub fn latest_run(&self, runbook: Option<&str>) -> Result<Option<RunRow>> {
        latest_run_in(&self.conn, runbook).at(&self.path)
    }

    /// Recent runs, newest first.
    pub fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{RUN_SELECT} ORDER BY id DESC LIMIT ?1"))
            .at(&self.path)?;
        let rows = stmt
            .query_map([limit], run_from_row)
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }

    /// Sets a run's state; a settled state also records the end time.
    pub fn set_run_state(&self, id: i64, state: RunState) -> Result<()> {
        let finished = (state != RunState::Running).then(now);
        self.conn
            .execute(
                "UPDATE runs SET state = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), finished],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Every step of a run, in runbook order.
    pub fn steps(&self, run_id: i64) -> Result<Vec<StepRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, position, state, attempts, started_at, finished_at, duration_ms, exit_code,
                        reason, fingerprint, needs, host, missing, rejected, source_hash, block
                 FROM steps WHERE run_id = ?1 ORDER BY position",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(StepRow {
                    id: r.get(0)?,
                    position: r.get(1)?,
                    state: StepState::parse(&r.get::<_, String>(2)?).unwrap_or(StepState::Pending),
                    attempts: r.get(3)?,
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                    duration_ms: r.get(6)?,
                    exit_code: r.get(7)?,
                    reason: r.get(8)?,
                    fingerprint: r.get(9)?,
                    needs: json_list(r.get::<_, String>(10)?),
                    host: r.get(11)?,
                    missing: json_list(r.get::<_, String>(12)?),
                    rejected: json_list(r.get::<_, String>(13)?),
                    source_hash: r.get(14)?,
                    block: r.get(15)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }

    /// Writes the given steps (a whole pass's start-up changes) in one transaction.
    pub fn save_steps(&mut self, run_id: i64, rows: &[StepRow], keep_only: bool) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        if keep_only {
            let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            let existing: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT id FROM steps WHERE run_id = ?1")
                    .at(&path)?;
                let ids = stmt
                    .query_map([run_id], |r| r.get(0))
                    .at(&path)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .at(&path)?;
                ids
            };
            for gone in existing.iter().filter(|e| !ids.contains(&e.as_str())) {
                tx.execute(
                    "DELETE FROM steps WHERE run_id = ?1 AND id = ?2",
                    params![run_id, gone],
                )
                .at(&path)?;
            }
        }
        for row in rows {
            upsert_step(&tx, run_id, row).at(&path)?;
        }
        tx.commit().at(&path)
    }

    /// Opens a group commit: the writes until [`Store::commit_batch`] are
    /// one transaction, so many steps ending at once (a fleet) cost one
    /// sync instead of one each. Nothing may start that depends on them
    /// before the commit.
    pub fn begin_batch(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE").at(&self.path)?;
        }
        Ok(())
    }

    /// Whether a group commit is open (its writes are not yet durable).
    pub fn in_batch(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Commits the writes since [`Store::begin_batch`].
    pub fn commit_batch(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT").at(&self.path)?;
        }
        Ok(())
    }

    /// Writes one step; committed when this returns (or with the batch
    /// it is part of).
    pub fn save_step(&self, run_id: i64, row: &StepRow) -> Result<()> {
        upsert_step(&self.conn, run_id, row).at(&self.path)
    }

    /// Records how one attempt of a step ended (SPEC §14).
    pub fn save_attempt(&self, run_id: i64, step: &str, a: &AttemptRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO attempt_history
                 (run_id, step_id, attempt, exit_code, reason, started_at, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run_id,
                    step,
                    a.attempt,
                    a.exit_code,
                    a.reason,
                    a.started_at,
                    a.duration_ms
                ],
            )
            .map(|_| ())
            .at(&self.path)
    }

    /// Every recorded attempt of a run, by step id, in attempt order.
    pub fn attempt_history(
        &self,
        run_id: i64,
    ) -> Result<std::collections::HashMap<String, Vec<AttemptRow>>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT step_id, attempt, exit_code, reason, started_at, duration_ms
                 FROM attempt_history WHERE run_id = ?1 ORDER BY step_id, attempt",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    AttemptRow {
                        attempt: r.get(1)?,
                        exit_code: r.get(2)?,
                        reason: r.get(3)?,
                        started_at: r.get(4)?,
                        duration_ms: r.get(5)?,
                    },
                ))
            })
            .at(&self.path)?;
        let mut out: std::collections::HashMap<String, Vec<AttemptRow>> = Default::default();
        for row in rows {
            let (step, a) = row.at(&self.path)?;
            out.entry(step).or_default().push(a);
        }
        Ok(out)
    }

    /// Appends captured lines of one attempt.
    pub fn append_output(
        &mut self,
        run_id: i64,
        lines: &[(String, i64, &'static str, String)],
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let insert = |conn: &Connection| -> rusqlite::Result<()> {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO output (run_id, step_id, attempt, seq, stream, line)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM output
                                      WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3), ?4, ?5)",
            )?;
            for (step, attempt, stream, line) in lines {
                stmt.execute(params![run_id, step, attempt, stream, line])?;
            }
            Ok(())
        };
        if !self.conn.is_autocommit() {
            // Inside a batch the lines join its transaction.
            return insert(&self.conn).at(&path);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        insert(&tx).at(&path)?;
        tx.commit().at(&path)
    }

    /// Drops all but the last [`OUTPUT_LINES_KEPT`] lines of an attempt.
    pub fn trim_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM output WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3
                 AND seq <= (SELECT MAX(seq) FROM output WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3) - ?4",
                params![run_id, step, attempt, OUTPUT_LINES_KEPT],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Captured lines of one attempt as (stream, line); the last `tail` if given.
    pub fn output(
        &self,
        run_id: i64,
        step: &str,
        attempt: i64,
        tail: Option<i64>,
    ) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT stream, line FROM (SELECT seq, stream, line FROM output
                  WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3 ORDER BY seq DESC LIMIT ?4)
                 ORDER BY seq",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(params![run_id, step, attempt, tail.unwrap_or(-1)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }

    /// Captured lines of one attempt after line `after` (its `seq`), as
    /// (seq, stream, line), oldest first: what a follower has not seen yet.
    pub fn output_since(
        &self,
        run_id: i64,
        step: &str,
        attempt: i64,
        after: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, stream, line FROM output
                  WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3 AND seq > ?4 ORDER BY seq",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(params![run_id, step, attempt, after], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }

    /// Drops every captured line of one attempt (its output is read again
    /// whole from the host's spool when a resumed engine reattaches).
    pub fn clear_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM output WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3",
                params![run_id, step, attempt],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Records where a remote step spools on its host (before it starts
    /// there); committed when this returns.
    pub fn save_spool(&self, run_id: i64, step: &str, spool: &SpoolRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO spools (run_id, step_id, host, base) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, step, spool.host, spool.base],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Where a step of a run spools on its host, if it was started there and
    /// its result is not yet committed.
    pub fn spool(&self, run_id: i64, step: &str) -> Result<Option<SpoolRow>> {
        self.conn
            .query_row(
                "SELECT host, base FROM spools WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
                |r| {
                    Ok(SpoolRow {
                        host: r.get(0)?,
                        base: r.get(1)?,
                    })
                },
            )
            .optional()
            .at(&self.path)
    }

    /// Forgets a step's spool (its result is committed, or it was stopped).
    pub fn drop_spool(&self, run_id: i64, step: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM spools WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Forgets the spools of steps whose results are committed (a crash
    /// between the two writes cannot happen, but an old file may hold
    /// such rows); one transaction.
    pub fn drop_spools(&mut self, run_id: i64, steps: &[&str]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        for step in steps {
            tx.execute(
                "DELETE FROM spools WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
            )
            .at(&path)?;
        }
        tx.commit().at(&path)
    }

    /// Runs `f` in one immediate transaction: all of its writes are
    /// committed together, or none (a step's result and the end of its
    /// spool record).
    pub fn atomically<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        if !self.conn.is_autocommit() {
            // Inside a group commit: the batch's transaction makes it one.
            return f(self);
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").at(&self.path)?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").at(&self.path)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Replaces what is known about a run's secrets.
    pub fn save_secrets(
        &mut self,
        run_id: i64,
        rows: &[SecretRow],
        env_files: &[String],
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        tx.execute("DELETE FROM secrets WHERE run_id = ?1", [run_id])
            .at(&path)?;
        for r in rows {
            tx.execute(
                "INSERT INTO secrets (run_id, name, state, source, reason, checked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, r.name, r.state.as_str(), r.source, r.reason, now()],
            )
            .at(&path)?;
        }
        tx.execute(
            "UPDATE runs SET env_files = ?2 WHERE id = ?1",
            params![
                run_id,
                serde_json::to_string(env_files).unwrap_or_else(|_| "[]".into())
            ],
        )
        .at(&path)?;
        tx.commit().at(&path)
    }

    /// What the last pass learned about a run's secrets, and its --env-file paths.
    pub fn secrets(&self, run_id: i64) -> Result<(Vec<SecretRow>, Vec<String>)> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, state, source, reason FROM secrets WHERE run_id = ?1 ORDER BY name",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(SecretRow {
                    name: r.get(0)?,
                    state: SecretState::parse(&r.get::<_, String>(1)?),
                    source: r.get(2)?,
                    reason: r.get(3)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        let files: String = self
            .conn
            .query_row("SELECT env_files FROM runs WHERE id = ?1", [run_id], |r| {
                r.get(0)
            })
            .optional()
            .at(&self.path)?
            .unwrap_or_else(|| "[]".into());
        Ok((rows, serde_json::from_str(&files).unwrap_or_default()))
    }

    /// Records an approval.
    pub fn approve(&self, run_id: i64, step: &str, by: &str, note: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO approvals (run_id, step_id, approved_by, approved_at, note) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, step, by, now(), note],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// The approval of a step, if given.
    pub fn approval(&self, run_id: i64, step: &str) -> Result<Option<Approval>> {
        self.conn
            .query_row(
                "SELECT approved_by, approved_at, note FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
                |r| Ok(Approval { by: r.get(0)?, at: r.get(1)?, note: r.get(2)? }),
            )
            .optional()
            .at(&self.path)
    }
}

const RUN_SELECT: &str = "SELECT id, runbook, path, state, started_at, finished_at, vars FROM runs";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        runbook: r.get(1)?,
        path: r.get(2)?,
        state: RunState::parse(&r.get::<_, String>(3)?).unwrap_or(RunState::Interrupted),
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        vars: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
    })
}

fn run_in(conn: &Connection, id: i64) -> rusqlite::Result<Option<RunRow>> {
    conn.query_row(&format!("{RUN_SELECT} WHERE id = ?1"), [id], run_from_row)
        .optional()
}

fn latest_run_in(conn: &Connection, runbook: Option<&str>) -> rusqlite::Result<Option<RunRow>> {
    match runbook {
        Some(name) => conn
            .query_row(
                &format!("{RUN_SELECT} WHERE runbook = ?1 ORDER BY id DESC LIMIT 1"),
                [name],
                run_from_row,
            )
            .optional(),
        None => conn
            .query_row(
                &format!("{RUN_SELECT} ORDER BY id DESC LIMIT 1"),
                [],
                run_from_row,
            )
            .optional(),
    }
}

fn latest_vars(conn: &Connection, run_id: i64) -> rusqlite::Result<Vec<(String, String)>> {
    Ok(run_in(conn, run_id)?.map(|r| r.vars).unwrap_or_default())
}

fn merge_vars(old: &[(String, String)], new: &[(String, String)]) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = old
        .iter()
        .filter(|(k, _)| !new.iter().any(|(n, _)| n == k))
        .cloned()
        .collect();
    merged.extend(new.iter().cloned());
    merged
}

fn vars_json(vars: &[(String, String)]) -> String {
    serde_json::to_string(vars).unwrap_or_else(|_| "[]".into())
}

fn json_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

fn upsert_step(conn: &Connection, run_id: i64, row: &StepRow) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO steps (run_id, id, position, state, attempts, started_at, finished_at, duration_ms,
                            exit_code, reason, fingerprint, needs, host, missing, rejected, source_hash, block)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (run_id, id) DO UPDATE SET position = ?3, state = ?4, attempts = ?5, started_at = ?6,
            finished_at = ?7, duration_ms = ?8, exit_code = ?9, reason = ?10, fingerprint = ?11,
            needs = ?12, host = ?13, missing = ?14, rejected = ?15, source_hash = ?16, block = ?17",
    )?;
    stmt.execute(params![
        run_id,
        row.id,
        row.position,
        row.state.as_str(),
        row.attempts,
        row.started_at,
        row.finished_at,
        row.duration_ms,
        row.exit_code,
        row.reason,
        row.fingerprint,
        serde_json::to_string(&row.needs).unwrap_or_default(),
        row.host,
        serde_json::to_string(&row.missing).unwrap_or_default(),
        serde_json::to_string(&row.rejected).unwrap_or_default(),
        row.source_hash,
        row.block,
    ])?;
    Ok(())
}

fn store_err(path: &Path, source: rusqlite::Error) -> Error {
    Error::Store {
        path: path.display().to_string(),
        source,
    }
}

/// SQLite results turned into the user-facing store error that names the
/// state file.
trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| store_err(path, e))
    }
}
