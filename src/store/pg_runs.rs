//! The PostgreSQL backend's runs, steps and locks: the same rows and the
//! same answers as the SQLite file's (`sqlite.rs`), every query ordered.

use tokio_postgres::Row;

use super::lock::{self, LockHolder, ProcessId};
use super::pg::Pg;
use super::pg_conn::{Conn, Fail, Sql};
use super::pg_lease::{self, Outcome};
use super::pg_pipe::p;
use super::{json_list, merge_vars, now, vars_json, AttemptRow, Backend, RunRow, StepRow};
use crate::error::{Error, Result};
use crate::state::{RunState, StepState};

macro_rules! run_select {
    () => {
        "SELECT id, runbook, path, state, started_at, finished_at, vars, rel_path, file_hash, moved_to FROM runs"
    };
}

fn run_from(r: &Row) -> Sql<RunRow> {
    Ok(RunRow {
        id: r.try_get(0)?,
        runbook: r.try_get(1)?,
        path: r.try_get(2)?,
        state: RunState::parse(r.try_get::<_, &str>(3)?).unwrap_or(RunState::Interrupted),
        started_at: r.try_get(4)?,
        finished_at: r.try_get(5)?,
        vars: serde_json::from_str(r.try_get::<_, &str>(6)?).unwrap_or_default(),
        rel_path: r.try_get(7)?,
        file_hash: r.try_get(8)?,
        moved_to: r.try_get(9)?,
    })
}

fn run_in(c: &mut Conn, id: i64) -> Sql<Option<RunRow>> {
    c.opt(concat!(run_select!(), " WHERE id = $1"), &[&id])?
        .map(|r| run_from(&r))
        .transpose()
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
    row.map(|r| run_from(&r)).transpose()
}

/// Takes the run's lease inside the caller's transaction; a holder that
/// renews, is silent or waits is the error this engine reports.
/// The inner error leaves the transaction to commit (an ask to step aside
/// is written).
fn acquire(c: &mut Conn, run_id: i64, me: &ProcessId) -> Sql<Result<(i64, Option<LockHolder>)>> {
    Ok(match pg_lease::acquire(c, run_id, me, me.runs)? {
        Outcome::Took { token, from } => {
            c.fence = Some((run_id, token));
            let timeout = format!(
                "SET idle_in_transaction_session_timeout = {}",
                me.lease.as_millis().max(1000)
            );
            c.session = vec![timeout.clone()];
            c.batch(&timeout)?;
            Ok((token, from))
        }
        Outcome::Held(h) => Err(h.locked(run_id)),
        Outcome::Silent(h, left) => Err(Error::Silent {
            run_id,
            pid: h.pid,
            who: h.who(),
            silent: lock::seconds(h.silent.unwrap_or_default()),
            left: lock::seconds(left),
            left_ms: left.as_millis() as u64,
        }),
        Outcome::Asked(h) => Err(Error::Asked {
            run_id,
            pid: h.pid,
            who: h.who(),
        }),
    })
}

fn step_from(r: &Row) -> Sql<StepRow> {
    Ok(StepRow {
        id: r.try_get(0)?,
        position: r.try_get(1)?,
        state: StepState::parse(r.try_get::<_, &str>(2)?).unwrap_or(StepState::Pending),
        attempts: r.try_get(3)?,
        started_at: r.try_get(4)?,
        finished_at: r.try_get(5)?,
        duration_ms: r.try_get(6)?,
        exit_code: r.try_get(7)?,
        reason: r.try_get(8)?,
        fingerprint: r.try_get(9)?,
        needs: json_list(r.try_get(10)?),
        host: r.try_get(11)?,
        missing: json_list(r.try_get(12)?),
        rejected: json_list(r.try_get(13)?),
        source_hash: r.try_get(14)?,
        block: r.try_get(15)?,
    })
}

fn upsert_step(c: &mut Conn, run_id: i64, row: &StepRow) -> Sql<()> {
    let needs = serde_json::to_string(&row.needs).unwrap_or_default();
    let missing = serde_json::to_string(&row.missing).unwrap_or_default();
    let rejected = serde_json::to_string(&row.rejected).unwrap_or_default();
    c.send(
        "INSERT INTO steps (run_id, id, position, state, attempts, started_at, finished_at, duration_ms,
                            exit_code, reason, fingerprint, needs, host, missing, rejected, source_hash, block)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (run_id, id) DO UPDATE SET position = $3, state = $4, attempts = $5, started_at = $6,
            finished_at = $7, duration_ms = $8, exit_code = $9, reason = $10, fingerprint = $11,
            needs = $12, host = $13, missing = $14, rejected = $15, source_hash = $16, block = $17",
        vec![
            p(run_id),
            p(row.id.clone()),
            p(row.position),
            p(row.state.as_str().to_string()),
            p(row.attempts),
            p(row.started_at.clone()),
            p(row.finished_at.clone()),
            p(row.duration_ms),
            p(row.exit_code),
            p(row.reason.clone()),
            p(row.fingerprint.clone()),
            p(needs),
            p(row.host.clone()),
            p(missing),
            p(rejected),
            p(row.source_hash.clone()),
            p(row.block.clone()),
        ],
    )?;
    Ok(())
}

/// Serialises `begin_run`, so two engines started together cannot both
/// find no unfinished run and start one each ("runs" in ASCII).
const BEGIN_LOCK: i64 = 0x72756e73;

impl Backend for Pg {
    fn begin_run(
        &mut self,
        runbook: &str,
        path: &str,
        vars: &[(String, String)],
        fresh: bool,
        me: &ProcessId,
    ) -> Result<(RunRow, bool)> {
        let (runbook, path, vars, me2) = (
            runbook.to_string(),
            path.to_string(),
            vars.to_vec(),
            me.clone(),
        );
        let took = self.call(move |c| {
            c.tx(|c| {
                c.exec("SELECT pg_advisory_xact_lock($1)", &[&BEGIN_LOCK])?;
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
                        let id = match row {
                            Some(r) => r.try_get::<_, i64>(0)?,
                            None => 0,
                        };
                        (id, false)
                    }
                };
                let (token, from) = match acquire(c, run_id, &me2)? {
                    Ok(took) => took,
                    Err(e) => return Ok(Err(e)),
                };
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
                Ok(Ok((run, resumed, token, from)))
            })
        })??;
        let (run, resumed, token, from) = took;
        self.holding(run.id, token, me, from);
        Ok((run, resumed))
    }

    fn lock_run(&mut self, run_id: i64, me: &ProcessId) -> Result<()> {
        let me2 = me.clone();
        let (token, from) = self.call(move |c| c.tx(|c| acquire(c, run_id, &me2)))??;
        self.holding(run_id, token, me, from);
        Ok(())
    }

    fn unlock_run(&self, run_id: i64, _me: &ProcessId) -> Result<()> {
        let Some(token) = self.release_lease(run_id) else {
            return Ok(());
        };
        self.call(move |c| {
            c.fence = None;
            pg_lease::release(c, run_id, token)
        })
    }

    fn live_holder(&self, run_id: i64) -> Result<Option<LockHolder>> {
        self.call(move |c| pg_lease::holder(c, run_id))
    }

    fn took_over(&self) -> Option<LockHolder> {
        self.taken_from()
    }

    fn keep_lease(&self, run_id: i64) -> Result<Option<super::LeaseWatch>> {
        self.renew_lease(run_id).map(Some)
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
            c.query(
                concat!(run_select!(), " ORDER BY id DESC LIMIT $1"),
                &[&limit],
            )?
            .iter()
            .map(run_from)
            .collect()
        })
    }

    fn set_run_state(&self, id: i64, state: RunState) -> Result<()> {
        let finished = (state != RunState::Running).then(now);
        self.write(move |c| {
            c.exec(
                "UPDATE runs SET state = $2, finished_at = $3 WHERE id = $1",
                &[&id, &state.as_str(), &finished],
            )
            .map(|_| ())
        })
    }

    fn set_run_vars(&self, id: i64, vars: &[(String, String)]) -> Result<()> {
        let vars = vars_json(vars);
        self.write(move |c| {
            c.exec("UPDATE runs SET vars = $2 WHERE id = $1", &[&id, &vars])
                .map(|_| ())
        })
    }

    fn steps(&self, run_id: i64) -> Result<Vec<StepRow>> {
        self.call(move |c| {
            c.query(
                "SELECT id, position, state, attempts, started_at, finished_at, duration_ms, exit_code,
                        reason, fingerprint, needs, host, missing, rejected, source_hash, block
                 FROM steps WHERE run_id = $1 ORDER BY position, id",
                &[&run_id],
            )?
            .iter()
            .map(step_from)
            .collect()
        })
    }

    fn save_steps(&mut self, run_id: i64, rows: &[StepRow], keep_only: bool) -> Result<()> {
        let rows = rows.to_vec();
        self.write(move |c| {
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
    }

    fn begin_batch(&self) -> Result<()> {
        if !self.open_tx() {
            self.control(|c| c.begin_batch())?;
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
            self.control(|c| c.commit_batch())?;
        }
        Ok(())
    }

    fn rollback_batch(&self) {
        if self.open_tx() {
            self.set_tx(false);
            let _ = self.control(|c| {
                c.rollback_batch();
                Ok(())
            });
        }
    }

    fn save_step(&self, run_id: i64, row: &StepRow) -> Result<()> {
        let row = row.clone();
        self.write(move |c| upsert_step(c, run_id, &row))
    }

    fn save_attempt(&self, run_id: i64, step: &str, a: &AttemptRow) -> Result<()> {
        let (step, a) = (step.to_string(), a.clone());
        self.write(move |c| {
            c.send(
                "INSERT INTO attempt_history
                 (run_id, step_id, attempt, exit_code, reason, started_at, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET exit_code = $4, reason = $5,
                    started_at = $6, duration_ms = $7",
                vec![
                    p(run_id),
                    p(step.clone()),
                    p(a.attempt),
                    p(a.exit_code),
                    p(a.reason.clone()),
                    p(a.started_at.clone()),
                    p(a.duration_ms),
                ],
            )
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
                out.entry(r.try_get(0)?).or_default().push(AttemptRow {
                    attempt: r.try_get(1)?,
                    exit_code: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    started_at: r.try_get(4)?,
                    duration_ms: r.try_get(5)?,
                });
            }
            Ok(out)
        })
    }
}
