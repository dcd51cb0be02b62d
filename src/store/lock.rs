//! One live engine per run. A lock row names its holder by host, pid and the
//! process start time, so a dead holder (or a reused pid) is recognised and
//! its lock taken over.

use rusqlite::{params, Connection, OptionalExtension};

/// This process, as a lock holder.
#[derive(Debug, Clone)]
pub struct ProcessId {
    /// Process id.
    pub pid: i64,
    /// Host name.
    pub host: String,
    /// Process start time (from /proc), to tell a reused pid apart.
    pub started: String,
}

impl ProcessId {
    /// The current process.
    pub fn current() -> Self {
        let pid = std::process::id() as i64;
        ProcessId {
            pid,
            host: hostname(),
            started: start_time(pid).unwrap_or_default(),
        }
    }
}

/// Who holds a lock.
#[derive(Debug, Clone)]
pub struct LockHolder {
    /// Holder pid.
    pub pid: i64,
    /// Holder host.
    pub host: String,
    /// When the lock was taken.
    pub acquired_at: String,
}

pub(super) enum LockError {
    Held(LockHolder),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for LockError {
    fn from(e: rusqlite::Error) -> Self {
        LockError::Sqlite(e)
    }
}

/// Takes the lock inside the caller's (immediate) transaction.
pub(super) fn acquire(conn: &Connection, run_id: i64, me: &ProcessId) -> Result<(), LockError> {
    if let Some(holder) = live_holder(conn, run_id)? {
        if !(holder.pid == me.pid && holder.host == me.host) {
            return Err(LockError::Held(holder));
        }
    }
    conn.execute(
        "INSERT OR REPLACE INTO locks (run_id, pid, host, started, acquired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![run_id, me.pid, me.host, me.started, super::now()],
    )?;
    Ok(())
}

/// The holder of a run's lock, when that process is still alive.
pub(super) fn live_holder(conn: &Connection, run_id: i64) -> rusqlite::Result<Option<LockHolder>> {
    let row: Option<(i64, String, String, String)> = conn
        .query_row(
            "SELECT pid, host, started, acquired_at FROM locks WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(row.and_then(|(pid, host, started, acquired_at)| {
        is_alive(pid, &host, &started).then_some(LockHolder {
            pid,
            host,
            acquired_at,
        })
    }))
}

pub(super) fn is_alive(pid: i64, host: &str, started: &str) -> bool {
    if host != hostname() {
        // Another machine: we cannot see its processes, so trust the lock.
        return true;
    }
    match start_time(pid) {
        Some(now) => started.is_empty() || now == started,
        None => false,
    }
}

/// The start time of a process in clock ticks since boot, from /proc; `None`
/// when the process does not exist (or is a zombie).
fn start_time(pid: i64) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}
