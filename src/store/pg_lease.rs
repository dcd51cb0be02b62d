//! A run's lease on PostgreSQL (SPEC §11): one row per run names its
//! holder (`user@host`, pid, process start), when it last renewed (by the
//! database's clock), how long its lease lasts, and a fencing token that
//! grows with every take. The row is never deleted: a released lease keeps
//! its token, so an engine that lost the run can never find its old token
//! valid again.

use std::time::{Duration, Instant};

use tokio_postgres::Row;

use super::lease::LeaseWatch;
use super::lock::{self, LockHolder, ProcessId};
use super::pg_conn::{Conn, Sql};
use super::pg_tls;
use super::pgurl::PgUrl;

/// What taking a lease came to.
pub(super) enum Outcome {
    /// Taken, with this token; from a holder that was silent or gone.
    Took {
        token: i64,
        from: Option<LockHolder>,
    },
    /// Held by an engine that renews.
    Held(LockHolder),
    /// Held by an engine that has not renewed for a while: its lease runs
    /// out after `left`.
    Silent(LockHolder, Duration),
    /// Held by an engine in `--wait`, now asked to step aside.
    Asked(LockHolder),
}

/// A lease row as read, with how long ago it was renewed.
struct Lease {
    token: i64,
    holder: LockHolder,
    started: String,
    lease: Duration,
    released: bool,
}

macro_rules! lease_select {
    () => {
        "SELECT token, holder_user, host, pid, started,
            to_char(renewed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
            GREATEST(0, (EXTRACT(EPOCH FROM clock_timestamp() - renewed_at) * 1000))::BIGINT,
            lease_ms, waiting, released
         FROM leases WHERE run_id = $1"
    };
}

fn lease_from(r: &Row) -> Sql<Lease> {
    let silent_ms: i64 = r.try_get(6)?;
    let lease_ms: i64 = r.try_get(7)?;
    Ok(Lease {
        token: r.try_get(0)?,
        holder: LockHolder {
            user: r.try_get(1)?,
            host: r.try_get(2)?,
            pid: r.try_get(3)?,
            last_seen: r.try_get(5)?,
            silent: Some(Duration::from_millis(silent_ms.max(0) as u64)),
            waiting: r.try_get(8)?,
            lease: Some(Duration::from_millis(lease_ms.max(0) as u64)),
        },
        started: r.try_get(4)?,
        lease: Duration::from_millis(lease_ms.max(0) as u64),
        released: r.try_get(9)?,
    })
}

impl Lease {
    fn silent(&self) -> Duration {
        self.holder.silent.unwrap_or_default()
    }

    /// Whether its holder still holds it: not released, renewed within
    /// its lease, and (on this host) its process alive.
    fn live(&self) -> bool {
        !self.released
            && self.silent() < self.lease
            && lock::is_alive(self.holder.pid, &self.holder.host, &self.started)
    }
}

/// The live holder of a run's lease, if any.
pub(super) fn holder(c: &mut Conn, run_id: i64) -> Sql<Option<LockHolder>> {
    let row = c.opt(lease_select!(), &[&run_id])?;
    Ok(match row {
        Some(r) => Some(lease_from(&r)?).filter(Lease::live).map(|l| l.holder),
        None => None,
    })
}

/// Takes the lease of `run_id` for `me`, inside the caller's transaction
/// (the row is locked `FOR UPDATE`, so a take waits for any write that
/// checked the old token, and two engines cannot both take it).
pub(super) fn acquire(c: &mut Conn, run_id: i64, me: &ProcessId, asks: bool) -> Sql<Outcome> {
    c.exec(
        "INSERT INTO leases (run_id, token, holder_user, host, pid, started, renewed_at, lease_ms, released)
         VALUES ($1, 0, '', '', 0, '', clock_timestamp(), 0, true) ON CONFLICT (run_id) DO NOTHING",
        &[&run_id],
    )?;
    let row = c.opt(concat!(lease_select!(), " FOR UPDATE"), &[&run_id])?;
    let Some(row) = row else {
        return Ok(Outcome::Held(LockHolder {
            pid: 0,
            host: String::new(),
            user: String::new(),
            last_seen: String::new(),
            silent: None,
            waiting: false,
            lease: None,
        }));
    };
    let old = lease_from(&row)?;
    let mine = old.holder.pid == me.pid && old.holder.host == me.host && old.started == me.started;
    let token = if mine && !old.released {
        old.token
    } else if !old.live() {
        old.token + 1
    } else if old.holder.waiting && asks {
        c.exec(
            "UPDATE leases SET wanted_by = $2 WHERE run_id = $1",
            &[&run_id, &format!("{} (pid {})", me.who(), me.pid)],
        )?;
        return Ok(Outcome::Asked(old.holder));
    } else if old.silent() > old.lease * 2 / 3 {
        let left = old.lease.saturating_sub(old.silent());
        return Ok(Outcome::Silent(old.holder, left));
    } else {
        return Ok(Outcome::Held(old.holder));
    };
    let lease_ms = me.lease.as_millis() as i64;
    c.exec(
        "UPDATE leases SET token = $2, holder_user = $3, host = $4, pid = $5, started = $6,
            renewed_at = clock_timestamp(), lease_ms = $7, waiting = $8, wanted_by = NULL, released = false
         WHERE run_id = $1",
        &[
            &run_id,
            &token,
            &me.user,
            &me.host,
            &me.pid,
            &me.started,
            &lease_ms,
            &me.waiting,
        ],
    )?;
    let from = (!old.released && !mine && !old.holder.host.is_empty()).then_some(old.holder);
    Ok(Outcome::Took { token, from })
}

/// What a renewal found.
pub(super) enum Renewed {
    /// Still ours; another engine's `user@host (pid N)` when it asked us to
    /// step aside.
    Kept { wanted_by: Option<String> },
    /// The token is no longer the run's: taken over by the one named.
    Lost(String),
}

/// Renews the lease (autocommit, on the renewing connection).
pub(super) fn renew(c: &mut Conn, run_id: i64, token: i64, waiting: bool) -> Sql<Renewed> {
    let row = c.opt(
        "UPDATE leases SET renewed_at = clock_timestamp(), waiting = $3
         WHERE run_id = $1 AND token = $2 AND NOT released RETURNING wanted_by",
        &[&run_id, &token, &waiting],
    )?;
    Ok(match row {
        Some(r) => Renewed::Kept {
            wanted_by: r.try_get(0)?,
        },
        None => Renewed::Lost(c.holder_named(run_id)),
    })
}

/// Lets the lease go (the token stays, so it never holds again).
pub(super) fn release(c: &mut Conn, run_id: i64, token: i64) -> Sql<()> {
    c.exec(
        "UPDATE leases SET released = true, waiting = false, wanted_by = NULL
         WHERE run_id = $1 AND token = $2",
        &[&run_id, &token],
    )?;
    Ok(())
}

/// Renews the lease every third of it on a thread of its own, with a
/// connection of its own (a group commit or a slow write on the engine's
/// connection never delays it), until stopped or the run is taken over.
pub(super) fn keep(url: PgUrl, run_id: i64, token: i64, watch: LeaseWatch) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("runbook-lease".into())
        .spawn(move || renewing(&url, run_id, token, &watch))
        .map(|_| ())
}

fn renewing(url: &PgUrl, run_id: i64, token: i64, watch: &LeaseWatch) {
    let mut conn: Option<Conn> = None;
    let mut waiting = false;
    // While it fails (or waits, to answer an ask soon), it tries more often.
    let quick = (watch.interval() / 3).min(Duration::from_secs(1));
    loop {
        let sent = Instant::now();
        if conn.is_none() {
            conn = pg_tls::connector(url)
                .ok()
                .and_then(|tls| Conn::open(url, tls).ok());
        }
        let pause = match conn.as_mut().map(|c| renew(c, run_id, token, waiting)) {
            Some(Ok(Renewed::Kept { wanted_by })) => {
                watch.renewed(sent, wanted_by);
                if waiting {
                    quick
                } else {
                    watch.interval()
                }
            }
            Some(Ok(Renewed::Lost(by))) => {
                watch.taken(by);
                return;
            }
            Some(Err(_)) | None => {
                conn = None;
                watch.failed();
                quick
            }
        };
        match watch.sleep(pause) {
            Some(w) => waiting = w,
            None => return,
        }
    }
}
