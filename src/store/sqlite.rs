//! The SQLite backend of the store: one state file, WAL mode,
//! `synchronous=FULL`, so a committed checkpoint survives a crash of the
//! engine or of the machine.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::lock::{self, LockHolder, ProcessId};
use super::schema;
use super::{json_list, merge_vars, now, vars_json, AttemptRow, Backend, RunRow, StepRow};
use crate::error::{Error, Result};
use crate::state::{RunState, StepState};

/// An open state file.
pub(super) struct Sqlite {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl Sqlite {
    /// Opens (creating with mode 0600 if needed) and migrates the state file.
    pub(super) fn open(path: &Path) -> Result<Sqlite> {
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
        let mut store = Sqlite {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        Ok(store)
    }

    /// Opens an existing state file without creating it; `None` when absent.
    pub(super) fn open_existing(path: &Path) -> Result<Option<Sqlite>> {
        if !path.exists() {
            return Ok(None);
        }
        Sqlite::open(path).map(Some)
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
}

impl Backend for Sqlite {
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
            lock::LockError::Held(h) => h.locked(run_id),
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
    fn lock_run(&mut self, run_id: i64, me: &ProcessId) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        lock::acquire(&tx, run_id, me).map_err(|e| match e {
            lock::LockError::Held(h) => h.locked(run_id),
            lock::LockError::Sqlite(e) => store_err(&path, e),
        })?;
        tx.commit().at(&path)
    }

    /// Releases a run's lock if this process holds it.
    fn unlock_run(&self, run_id: i64, me: &ProcessId) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM locks WHERE run_id = ?1 AND pid = ?2 AND host = ?3",
                params![run_id, me.pid, me.host],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// The live holder of a run's lock, if any.
    fn live_holder(&self, run_id: i64) -> Result<Option<LockHolder>> {
        lock::live_holder(&self.conn, run_id).at(&self.path)
    }

    /// A run by id.
    fn run(&self, id: i64) -> Result<Option<RunRow>> {
        run_in(&self.conn, id).at(&self.path)
    }

    /// The latest run, of one runbook or of any.
    fn latest_run(&self, runbook: Option<&str>) -> Result<Option<RunRow>> {
        latest_run_in(&self.conn, runbook).at(&self.path)
    }

    /// Recent runs, newest first.
    fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>> {
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
    fn set_run_state(&self, id: i64, state: RunState) -> Result<()> {
        let finished = (state != RunState::Running).then(now);
        self.conn
            .execute(
                "UPDATE runs SET state = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, state.as_str(), finished],
            )
            .at(&self.path)?;
        Ok(())
    }

    fn set_run_vars(&self, id: i64, vars: &[(String, String)]) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET vars = ?2 WHERE id = ?1",
                params![id, vars_json(vars)],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Every step of a run, in runbook order.
    fn steps(&self, run_id: i64) -> Result<Vec<StepRow>> {
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
    fn save_steps(&mut self, run_id: i64, rows: &[StepRow], keep_only: bool) -> Result<()> {
        let path = self.path.clone();
        in_tx(&self.conn, |tx| save_steps_in(tx, run_id, rows, keep_only)).at(&path)
    }

    /// Opens a group commit: the writes until [`Store::commit_batch`] are
    /// one transaction, so many steps ending at once (a fleet) cost one
    /// sync instead of one each. Nothing may start that depends on them
    /// before the commit.
    fn begin_batch(&self) -> Result<()> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE").at(&self.path)?;
        }
        Ok(())
    }

    /// Whether a group commit is open (its writes are not yet durable).
    fn in_batch(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Commits the writes since [`Store::begin_batch`].
    fn commit_batch(&self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT").at(&self.path)?;
        }
        Ok(())
    }

    fn rollback_batch(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Writes one step; committed when this returns (or with the batch
    /// it is part of).
    fn save_step(&self, run_id: i64, row: &StepRow) -> Result<()> {
        upsert_step(&self.conn, run_id, row).at(&self.path)
    }

    /// Records how one attempt of a step ended (SPEC §14).
    fn save_attempt(&self, run_id: i64, step: &str, a: &AttemptRow) -> Result<()> {
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
    fn attempt_history(
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
}

/// Runs `f` in a transaction of its own (immediate), or inside the group
/// commit already open (whose caller commits or rolls back all of it).
pub(super) fn in_tx<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let own = conn.is_autocommit();
    if own {
        conn.execute_batch("BEGIN IMMEDIATE")?;
    }
    let done = f(conn);
    if own {
        match &done {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
    done
}

fn save_steps_in(
    tx: &Connection,
    run_id: i64,
    rows: &[StepRow],
    keep_only: bool,
) -> rusqlite::Result<()> {
    if keep_only {
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let existing: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id FROM steps WHERE run_id = ?1")?;
            let ids = stmt
                .query_map([run_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            ids
        };
        for gone in existing.iter().filter(|e| !ids.contains(&e.as_str())) {
            tx.execute(
                "DELETE FROM steps WHERE run_id = ?1 AND id = ?2",
                params![run_id, gone],
            )?;
        }
    }
    for row in rows {
        upsert_step(tx, run_id, row)?;
    }
    Ok(())
}

const RUN_SELECT: &str =
    "SELECT id, runbook, path, state, started_at, finished_at, vars, rel_path, file_hash, moved_to FROM runs";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        runbook: r.get(1)?,
        path: r.get(2)?,
        state: RunState::parse(&r.get::<_, String>(3)?).unwrap_or(RunState::Interrupted),
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        vars: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
        rel_path: r.get(7)?,
        file_hash: r.get(8)?,
        moved_to: r.get(9)?,
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

pub(super) fn store_err(path: &Path, source: rusqlite::Error) -> Error {
    Error::Store {
        path: path.display().to_string(),
        source,
    }
}

/// SQLite results turned into the user-facing store error that names the
/// state file.
pub(super) trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| store_err(path, e))
    }
}
