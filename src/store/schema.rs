//! The schema, versioned with `PRAGMA user_version`. Each migration moves the
//! file one version up; a file newer than this program is refused.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: runs, steps, captured output, approvals, locks.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        runbook TEXT NOT NULL,
        path TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        vars TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX runs_by_runbook ON runs(runbook, id);
    CREATE TABLE steps (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        id TEXT NOT NULL,
        position INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at TEXT,
        finished_at TEXT,
        duration_ms INTEGER,
        exit_code INTEGER,
        reason TEXT,
        fingerprint TEXT,
        needs TEXT NOT NULL DEFAULT '[]',
        host TEXT,
        missing TEXT NOT NULL DEFAULT '[]',
        rejected TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (run_id, id)
    );
    CREATE TABLE output (
        run_id INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id, attempt, seq)
    );
    CREATE TABLE approvals (
        run_id INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        note TEXT,
        PRIMARY KEY (run_id, step_id)
    );
    CREATE TABLE locks (
        run_id INTEGER PRIMARY KEY,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started TEXT NOT NULL,
        acquired_at TEXT NOT NULL
    );",
    // 2: what the last pass learned about each secret (never its value), and
    // the --env-file paths it was given, for the handoff.
    "CREATE TABLE secrets (
        run_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        source TEXT,
        reason TEXT,
        checked_at TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    ALTER TABLE runs ADD COLUMN env_files TEXT NOT NULL DEFAULT '[]';",
    // 3: notifications sent when a run stopped (SPEC §10): where (the URL's
    // origin only, and a digest of the whole URL: a webhook's path is a
    // credential), what (a digest of the message), whether it arrived.
    "CREATE TABLE notifications (
        run_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        target TEXT NOT NULL,
        url_digest TEXT NOT NULL,
        message_digest TEXT NOT NULL,
        state TEXT NOT NULL,
        delivered INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );",
    // 4: where a remote step spools its output on its host (SPEC §8), so a
    // resumed engine finds it again. A row lives while the step runs there.
    "CREATE TABLE spools (
        run_id INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        host TEXT NOT NULL,
        base TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id)
    );",
    // 5: the hash of the source an upload shipped (SPEC §14): a succeeded
    // upload is done while its definition and this hash are unchanged.
    "ALTER TABLE steps ADD COLUMN source_hash TEXT;",
    // 6: each attempt's own record (SPEC §14): how it ended, when, how long.
    "CREATE TABLE attempt_history (
        run_id INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        exit_code INTEGER,
        reason TEXT,
        started_at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, step_id, attempt)
    );",
    // 7: the rolling block an instance of an inner step belongs to (SPEC
    // §15), so status and the handoff show the block as one.
    "ALTER TABLE steps ADD COLUMN block TEXT;",
    // 8: spool folders on hosts whose results are committed (or whose step
    // was reset or replaced), still to remove there: the next engine that
    // connects to the host removes them, so no output outlives a kill -9
    // of the engine that committed it.
    "CREATE TABLE spool_discards (
        run_id INTEGER NOT NULL,
        host TEXT NOT NULL,
        base TEXT NOT NULL,
        PRIMARY KEY (host, base)
    );",
    // 9: a run handed over (SPEC §11): its runbook relative to the folder
    // runbook was started in and the file's hash, where it was moved to by
    // `state copy`, and the user a remote step's spool belongs to.
    "ALTER TABLE runs ADD COLUMN rel_path TEXT;
    ALTER TABLE runs ADD COLUMN file_hash TEXT;
    ALTER TABLE runs ADD COLUMN moved_to TEXT;
    ALTER TABLE spools ADD COLUMN login TEXT;",
];

/// The schema version this program writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the file up to [`VERSION`]. Each migration runs in an immediate
/// transaction that re-reads the version first, so two engines opening a new
/// file at the same moment do not both apply it.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(MigrateError::Sqlite)?;
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(MigrateError::Sqlite)?;
        if current > VERSION {
            return Err(MigrateError::TooNew(current));
        }
        let Some(sql) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(MigrateError::Sqlite)?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(MigrateError::Sqlite)?;
        tx.commit().map_err(MigrateError::Sqlite)?;
    }
}

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub enum MigrateError {
    /// An SQLite error.
    Sqlite(rusqlite::Error),
    /// The file was written by a newer version.
    TooNew(i64),
}
