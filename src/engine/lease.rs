//! Taking a run for this engine (SPEC §11): the lock (SQLite) or the lease
//! (PostgreSQL). A holder that is silent is waited out and taken over; a
//! holder in `--wait` is asked to step aside and waited for; the take-over
//! is said on the first line.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::state::RunState;
use crate::store::{seconds, LeaseWatch, ProcessId, RunRow, Store, DEFAULT_LEASE};

/// A new run (or the latest unfinished one of a runbook) to begin.
pub(super) struct Begin<'a> {
    pub(super) runbook: &'a str,
    pub(super) path: String,
    pub(super) vars: &'a [(String, String)],
    pub(super) fresh: bool,
}

/// Takes the run `run`/`resume` is about: begins one (`begin`), or takes
/// the `previous` run to resume it; the run and whether it was resumed.
pub(super) fn take_run(
    store: &mut Store,
    begin: Option<Begin>,
    previous: Option<&RunRow>,
    me: &ProcessId,
    json: bool,
) -> Result<(RunRow, bool)> {
    if let Some(b) = begin {
        return take(
            store,
            json,
            |(r, _): &(RunRow, bool)| r.id,
            |store| store.begin_run(b.runbook, &b.path, b.vars, b.fresh, me),
        );
    }
    let run = previous
        .cloned()
        .ok_or_else(|| Error::Usage("no run to resume".into()))?;
    take(store, json, |_| run.id, |store| store.lock_run(run.id, me))?;
    store.set_run_state(run.id, RunState::Running)?;
    Ok((run, true))
}

/// `RUNBOOK_LEASE` (default 30s); a bad value is usage (exit 2).
pub(super) fn lease_from_env() -> Result<Duration> {
    let Ok(text) = std::env::var("RUNBOOK_LEASE") else {
        return Ok(DEFAULT_LEASE);
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d >= Duration::from_millis(300) => Ok(d),
        Ok(_) => Err(Error::Usage(format!(
            "RUNBOOK_LEASE={text} is too short: give at least 300ms (default 30s)"
        ))),
        Err(e) => Err(Error::Usage(format!(
            "RUNBOOK_LEASE={text} is not a duration ({e}); give one such as 30s"
        ))),
    }
}

/// `RUNBOOK_DB_RETRY` (default 60s), checked before anything runs.
pub(super) fn check_db_retry() -> Result<()> {
    match std::env::var("RUNBOOK_DB_RETRY") {
        Ok(text) => humantime::parse_duration(text.trim())
            .map(|_| ())
            .map_err(|e| {
                Error::Usage(format!(
                    "RUNBOOK_DB_RETRY={text} is not a duration ({e}); give one such as 60s"
                ))
            }),
        Err(_) => Ok(()),
    }
}

/// This engine as a holder: `run`/`resume` (which ask a waiting holder to
/// step aside) or another command that writes.
pub(super) fn me(runs: bool) -> Result<ProcessId> {
    let mut me = ProcessId::current();
    me.lease = lease_from_env()?;
    me.runs = runs;
    check_db_retry()?;
    Ok(me)
}

/// Takes the run with `take` (a `begin_run` or `lock_run`): a silent
/// holder is waited out (said on stderr), a waiting one asked to step
/// aside and waited for; then, when it was a take-over, the first line
/// says so.
pub(super) fn take<T>(
    store: &mut Store,
    json: bool,
    run_of: impl Fn(&T) -> i64,
    mut take: impl FnMut(&mut Store) -> Result<T>,
) -> Result<T> {
    let asked_at = Instant::now();
    let mut said = false;
    let taken = loop {
        match take(store) {
            Err(Error::Silent {
                run_id,
                pid,
                who,
                silent,
                left,
                left_ms,
            }) => {
                eprintln!(
                    "run {run_id} is held by pid {pid} of {who}, silent for {silent}: waiting {left} for its lease to run out, then taking it over"
                );
                std::thread::sleep(Duration::from_millis(left_ms + 50));
            }
            Err(Error::Asked { run_id, pid, who }) => {
                if !said {
                    eprintln!(
                        "run {run_id} is held by pid {pid} of {who}, which waits (--wait): asked it to step aside"
                    );
                    said = true;
                }
                if asked_at.elapsed() > DEFAULT_LEASE * 2 {
                    return Err(Error::Asked { run_id, pid, who });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            other => break other?,
        }
    };
    if let Some(from) = store.took_over() {
        let line = format!(
            "took over run {} from {} (pid {}), silent for {}",
            run_of(&taken),
            from.who(),
            from.pid,
            seconds(from.silent.unwrap_or_default())
        );
        say_first(json, &line);
    }
    Ok(taken)
}

/// The take-over line, before the run's own first line.
fn say_first(json: bool, line: &str) {
    use std::io::Write;
    let text = if json {
        serde_json::json!({"event": "took_over", "message": line}).to_string()
    } else {
        line.to_string()
    };
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// After a pass stopped because the lease ran out (the database away):
/// waits until the lease is renewed again (nobody took the run: go on) or
/// is found taken (exit 4, this engine writes nothing more).
pub(super) async fn regain(lease: &LeaseWatch) -> Result<()> {
    let give_up = Instant::now() + lease.lease() * 2 + Duration::from_secs(5);
    loop {
        if let Some(by) = lease.lost() {
            return Err(Error::LeaseLost {
                run_id: lease.run_id(),
                by,
            });
        }
        if lease.can_start() && !lease.expired() {
            return Ok(());
        }
        if Instant::now() > give_up {
            return Err(Error::Db {
                at: "the state database".into(),
                message: format!(
                    "run {}'s lease ran out and could not be renewed since; `runbook resume {}` goes on",
                    lease.run_id(),
                    lease.run_id()
                ),
            });
        }
        tokio::select! {
            _ = lease.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
