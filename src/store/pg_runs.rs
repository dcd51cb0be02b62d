//! The PostgreSQL backend's runs, steps and locks: the same rows and the
//! same answers as the SQLite file's (`sqlite.rs`), every query ordered.

use tokio_postgres::Row;

use super::lock::{self, LockHolder, ProcessId};
use super::pg::{Conn, Fail, Pg, Sql};
use super::{json_list, merge_vars, now, vars_json, AttemptRow, Backend, RunRow, StepRow};
use crate::error::{Error, Result};
use crate::state::{RunState, StepState};

macro_rules! run_select {
    () => {
        "SELECT id, runbook, path, state, started_at, finished_at, vars FROM runs"
    };
}

fn run_from(r: &Row) -> RunRow {
    RunRow {
        id: r.get(0),
        runbook: r.get(1),
        path: r.get(2),
        state: RunState::parse(r.get::<_, &str>(3)).unwrap_or(RunState::Interrupted),
        started_at: r.get(4),
        finished_at: r.get(5),
        vars: serde_json::from_str(r.get::<_, &str>(6)).unwrap_or_default(),
    }
}

fn run_in(c: &mut Conn, id: i64) -> Sql<Option<RunRow>> {
    Ok(c.opt(concat!(run_select!(), " WHERE id = $1"), &[&id])?
        .map(|r| run_from(&r)))
}

fn latest_in(c: &mut Conn, runbook: Option<&str>) -> Sql<Option<RunRow>> {
    let row = match runbook {
        Some(name) => c.opt(
            concat!(
                run_select!(),
                " WHERE runbook = $1 ORDER BY id DESC LIMIT 1"
            ),
            &[&name],
        )?,
        None => c.opt(concat!(run_select!(), " ORDER BY id DESC LIMIT 1"), &[])?,
    };
    Ok(row.map(|r| run_from(&r)))
}

/// Takes the lock inside the caller's transaction, which has locked the
/// `locks` table so two engines cannot both find it free.
fn acquire(c: &mut Conn, run_id: i64, me: &ProcessId) -> Sql<()> {
    if let Some(h) = holder_in(c, run_id)? {
        if !(h.pid == me.pid && h.host == me.host) {
            return Err(Fail::Runbook(Error::Locked {
                run_id,
                pid: h.pid,
                host: h.host,
                since: h.acquired_at,
            }));
        }
    }
    c.exec(
        "INSERT INTO locks (run_id, pid, host, started, acquired_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id) DO UPDATE SET pid = EXCLUDED.pid, host = EXCLUDED.host,
            started = EXCLUDED.started, acquired_at = EXCLUDED.acquired_at",
        &[&run_id, &me.pid, &me.host, &me.started, &now()],
    )?;
    Ok(())
}

fn holder_in(c: &mut Conn, run_id: i64) -> Sql<Option<LockHolder>> {
    let row = c.opt(
        "SELECT pid, host, started, acquired_at FROM locks WHERE run_id = $1",
        &[&run_id],
    )?;
    Ok(row.and_then(|r| {
        let (pid, host, started): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        lock::is_alive(pid, &host, &started).then(|| LockHolder {
            pid,
            host,
            acquired_at: r.get(3),
        })
    }))
}

fn step_from(r: &Row) -> StepRow {
    StepRow {
        id: r.get(0),
        position: r.get(1),
        state: StepState::parse(r.get::<_, &str>(2)).unwrap_or(StepState::Pending),
        attempts: r.get(3),
        started_at: r.get(4),
        finished_at: r.get(5),
        duration_ms: r.get(6),
        exit_code: r.get(7),
        reason: r.get(8),
        fingerprint: r.get(9),
        needs: json_list(r.get(10)),
        host: r.get(11),
        missing: json_list(r.get(12)),
        rejected: json_list(r.get(13)),
        source_hash: r.get(14),
        block: r.get(15),
    }
}

fn upsert_step(c: &mut Conn, run_id: i64, row: &StepRow) -> Sql<()> {
    let needs = serde_json::to_string(&row.needs).unwrap_or_default();
    let missing = serde_json::to_string(&row.missing).unwrap_or_default();
    let rejected = serde_json::to_string(&row.rejected).unwrap_or_default();
    c.exec(
        "INSERT INTO steps (run_id, id, position, state, attempts, started_at, finished_at, duration_ms,
                            exit_code, reason, fingerprint, needs, host, missing, rejected, source_hash, block)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (run_id, id) DO UPDATE SET position = $3, state = $4, attempts = $5, started_at = $6,
            finished_at = $7, duration_ms = $8, exit_code = $9, reason = $10, fingerprint = $11,
            needs = $12, host = $13, missing = $14, rejected = $15, source_hash = $16, block = $17",
        &[
            &run_id,
            &row.id,
            &row.position,
            &row.state.as_str(),
            &row.attempts,
            &row.started_at,
            &row.finished_at,
            &row.duration_ms,
            &row.exit_code,
            &row.reason,
            &row.fingerprint,
            &needs,
            &row.host,
            &missing,
            &rejected,
            &row.source_hash,
            &row.block,
        ],
    )?;
    Ok(())
}

const LOCK_LOCKS: &str = "LOCK TABLE locks IN SHARE ROW EXCLUSIVE MODE";

impl Backend for Pg {
    fn begin_run(
        &mut self,
        runbook: &str,
        path: &str,
        vars: &[(String, String)],
        fresh: bool,
        me: &ProcessId,
    ) -> Result<(RunRow, bool)> {
        let (runbook, path, vars, me) = (
            runbook.to_string(),
            path.to_string(),
            vars.to_vec(),
            me.clone(),
        );
        let open = self.open_tx();
        self.call(move |c| {
            c.tx(open, |c| {
                c.batch(LOCK_LOCKS)?;
                let latest = if fresh {
                    None
                } else {
                    latest_in(c, Some(&runbook))?
                };
                let (run_id, resumed) = match &latest {
                    Some(run) if run.state.is_unfinished() => (run.id, true),
                    _ => {
                        let row = c.opt(
                            "INSERT INTO runs (runbook, path, state, started_at, vars)
                             VALUES ($1, $2, 'running', $3, $4) RETURNING id",
                            &[&runbook, &path, &now(), &vars_json(&vars)],
                        )?;
                        (row.map(|r| r.get::<_, i64>(0)).unwrap_or_default(), false)
                    }
                };
                acquire(c, run_id, &me)?;
                if let (true, Some(run)) = (resumed, &latest) {
                    let merged = merge_vars(&run.vars, &vars);
                    c.exec(
                        "UPDATE runs SET state = 'running', finished_at = NULL, vars = $2, path = $3 WHERE id = $1",
                        &[&run_id, &vars_json(&merged), &path],
                    )?;
                }
                let run = run_in(c, run_id)?.ok_or_else(|| {
                    Fail::Runbook(Error::Usage(format!("run {run_id} vanished")))
                })?;
                Ok((run, resumed))
            })
        })
    }

    fn lock_run(&mut self, run_id: i64, me: &ProcessId) -> Result<()> {
        let me = me.clone();
        let open = self.open_tx();
        self.call(move |c| {
            c.tx(open, |c| {
                c.batch(LOCK_LOCKS)?;
                acquire(c, run_id, &me)
            })
        })
    }

    fn unlock_run(&self, run_id: i64, me: &ProcessId) -> Result<()> {
        let me = me.clone();
        self.call(move |c| {
            c.exec(
                "DELETE FROM locks WHERE run_id = $1 AND pid = $2 AND host = $3",
                &[&run_id, &me.pid, &me.host],
            )
            .map(|_| ())
        })
    }

    fn live_holder(&self, run_id: i64) -> Result<Option<LockHolder>> {
        self.call(move |c| holder_in(c, run_id))
    }

    fn run(&self, id: i64) -> Result<Option<RunRow>> {
        self.call(move |c| run_in(c, id))
    }

    fn latest_run(&self, runbook: Option<&str>) -> Result<Option<RunRow>> {
        let runbook = runbook.map(str::to_string);
        self.call(move |c| latest_in(c, runbook.as_deref()))
    }

    fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        self.call(move |c| {
            Ok(c.query(
                concat!(run_select!(), " ORDER BY id DESC LIMIT $1"),
                &[&limit],
            )?
            .iter()
            .map(run_from)
            .collect())
        })
    }

    fn set_run_state(&self, id: i64, state: RunState) -> Result<()> {
        let finished = (state != RunState::Running).then(now);
        self.call(move |c| {
            c.exec(
                "UPDATE runs SET state = $2, finished_at = $3 WHERE id = $1",
                &[&id, &state.as_str(), &finished],
            )
            .map(|_| ())
        })
    }

    fn steps(&self, run_id: i64) -> Result<Vec<StepRow>> {
        self.call(move |c| {
            Ok(c.query(
                "SELECT id, position, state, attempts, started_at, finished_at, duration_ms, exit_code,
                        reason, fingerprint, needs, host, missing, rejected, source_hash, block
                 FROM steps WHERE run_id = $1 ORDER BY position, id",
                &[&run_id],
            )?
            .iter()
            .map(step_from)
            .collect())
        })
    }

    fn save_steps(&mut self, run_id: i64, rows: &[StepRow], keep_only: bool) -> Result<()> {
        let rows = rows.to_vec();
        let open = self.open_tx();
        self.call(move |c| {
            c.tx(open, |c| {
                if keep_only {
                    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                    c.exec(
                        "DELETE FROM steps WHERE run_id = $1 AND NOT (id = ANY($2))",
                        &[&run_id, &ids],
                    )?;
                }
                for row in &rows {
                    upsert_step(c, run_id, row)?;
                }
                Ok(())
            })
        })
    }

    fn begin_batch(&self) -> Result<()> {
        if !self.open_tx() {
            self.call(|c| c.batch("BEGIN"))?;
            self.set_tx(true);
        }
        Ok(())
    }

    fn in_batch(&self) -> bool {
        self.open_tx()
    }

    fn commit_batch(&self) -> Result<()> {
        if self.open_tx() {
            self.set_tx(false);
            self.call(|c| c.batch("COMMIT"))?;
        }
        Ok(())
    }

    fn rollback_batch(&self) {
        if self.open_tx() {
            self.set_tx(false);
            let _ = self.call(|c| c.batch("ROLLBACK"));
        }
    }

    fn save_step(&self, run_id: i64, row: &StepRow) -> Result<()> {
        let row = row.clone();
        self.call(move |c| upsert_step(c, run_id, &row))
    }

    fn save_attempt(&self, run_id: i64, step: &str, a: &AttemptRow) -> Result<()> {
        let (step, a) = (step.to_string(), a.clone());
        self.call(move |c| {
            c.exec(
                "INSERT INTO attempt_history
                 (run_id, step_id, attempt, exit_code, reason, started_at, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET exit_code = $4, reason = $5,
                    started_at = $6, duration_ms = $7",
                &[
                    &run_id,
                    &step,
                    &a.attempt,
                    &a.exit_code,
                    &a.reason,
                    &a.started_at,
                    &a.duration_ms,
                ],
            )
            .map(|_| ())
        })
    }

    fn attempt_history(
        &self,
        run_id: i64,
    ) -> Result<std::collections::HashMap<String, Vec<AttemptRow>>> {
        self.call(move |c| {
            let rows = c.query(
                "SELECT step_id, attempt, exit_code, reason, started_at, duration_ms
                 FROM attempt_history WHERE run_id = $1 ORDER BY step_id, attempt",
                &[&run_id],
            )?;
            let mut out: std::collections::HashMap<String, Vec<AttemptRow>> = Default::default();
            for r in rows {
                out.entry(r.get(0)).or_default().push(AttemptRow {
                    attempt: r.get(1),
                    exit_code: r.get(2),
                    reason: r.get(3),
                    started_at: r.get(4),
                    duration_ms: r.get(5),
                });
            }
            Ok(out)
        })
    }
}
