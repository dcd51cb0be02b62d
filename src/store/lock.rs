//! One live engine per run. A lock row names its holder by host, pid and the
//! process start time, so a dead holder (or a reused pid) is recognised and
//! its lock taken over. (On PostgreSQL the run has a lease instead,
//! `pg_lease.rs`; both name their holder with [`LockHolder`].)

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
    /// The OS user.
    pub user: String,
    /// How long this engine's lease lasts without a renewal (SPEC §11's
    /// `RUNBOOK_LEASE`; PostgreSQL only). It renews every third of it.
    pub lease: std::time::Duration,
    /// Whether this engine waits (`--wait`) and so steps aside when
    /// another engine wants the run.
    pub waiting: bool,
    /// Whether it takes the run to run its steps (`run`/`resume`), and so
    /// asks a waiting holder to step aside.
    pub runs: bool,
}

/// The lease when `RUNBOOK_LEASE` is not set.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

impl ProcessId {
    /// The current process, with the default lease.
    pub fn current() -> Self {
        let pid = std::process::id() as i64;
        ProcessId {
            pid,
            host: hostname(),
            started: start_time(pid).unwrap_or_default(),
            user: user_of(pid).unwrap_or_else(|| "unknown".into()),
            lease: DEFAULT_LEASE,
            waiting: false,
            runs: false,
        }
    }

    /// `user@host`, as messages name a holder.
    pub fn who(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }
}

/// Who holds a lock or a lease.
#[derive(Debug, Clone)]
pub struct LockHolder {
    /// Holder pid.
    pub pid: i64,
    /// Holder host.
    pub host: String,
    /// Holder's OS user.
    pub user: String,
    /// When the lock was taken (SQLite) or last renewed (PostgreSQL), RFC 3339.
    pub last_seen: String,
    /// How long ago it was last heard from (PostgreSQL, by the database's
    /// clock); `None` for SQLite's lock.
    pub silent: Option<std::time::Duration>,
    /// Whether it waits (`--wait`) and would step aside.
    pub waiting: bool,
    /// Its lease (PostgreSQL): how long it may stay silent.
    pub lease: Option<std::time::Duration>,
}

impl LockHolder {
    /// `user@host`.
    pub fn who(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// When it was last heard from, as messages say it.
    pub fn heard(&self) -> String {
        match self.silent {
            Some(d) => format!("{} ago ({})", seconds(d), self.last_seen),
            None => format!(
                "now (its process is alive; it took the lock at {})",
                self.last_seen
            ),
        }
    }

    /// The error of a run this holder holds.
    pub fn locked(&self, run_id: i64) -> crate::error::Error {
        crate::error::Error::Locked {
            run_id,
            pid: self.pid,
            who: self.who(),
            heard: self.heard(),
            then: match self.lease {
                Some(l) => format!(
                    "; if it is gone, `runbook resume {run_id}` takes the run over once it has been silent for {} (its RUNBOOK_LEASE)",
                    seconds(l)
                ),
                None => String::new(),
            },
        }
    }
}

/// A duration as messages show it: whole seconds (`31s`), or
/// milliseconds under one second.
pub fn seconds(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
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
        is_alive(pid, &host, &started).then(|| LockHolder {
            pid,
            user: user_of(pid).unwrap_or_default(),
            host,
            last_seen: acquired_at,
            silent: None,
            waiting: false,
            lease: None,
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

/// The name of the user a local process runs as, from /proc.
fn user_of(pid: i64) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
}

pub(super) fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}
