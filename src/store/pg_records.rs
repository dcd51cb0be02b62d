//! The PostgreSQL backend's records beside the run and its steps: captured
//! output, spools, secrets' states, approvals, notifications.

use super::pg::Pg;
use super::pg_conn::{Conn, Sql};
use super::pg_pipe::p;
use super::{
    now, Approval, NotificationRow, Records, RunRow, SecretRow, Sent, SpoolRow, OUTPUT_LINES_KEPT,
};
use crate::error::Result;
use crate::state::SecretState;

/// PostgreSQL text cannot hold a NUL byte; a captured line that had one
/// keeps U+FFFD in its place.
fn pg_text(line: &str) -> String {
    line.replace('\0', "\u{FFFD}")
}

fn insert_lines(
    c: &mut Conn,
    run_id: i64,
    lines: &[(String, i64, &'static str, String)],
) -> Sql<()> {
    for (step, attempt, stream, line) in lines {
        c.send(
            "INSERT INTO output (run_id, step_id, attempt, seq, stream, line)
             VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM output
                                  WHERE run_id = $1 AND step_id = $2 AND attempt = $3), $4, $5)",
            vec![
                p(run_id),
                p(step.clone()),
                p(*attempt),
                p(stream.to_string()),
                p(pg_text(line)),
            ],
        )?;
    }
    Ok(())
}

impl Records for Pg {
    fn set_run_file(
        &self,
        run_id: i64,
        path: &str,
        rel_path: Option<&str>,
        file_hash: &str,
    ) -> Result<()> {
        let (path, rel, hash) = (
            path.to_string(),
            rel_path.map(str::to_string),
            file_hash.to_string(),
        );
        self.write(move |c| {
            c.exec(
                "UPDATE runs SET path = $2, rel_path = $3, file_hash = $4 WHERE id = $1",
                &[&run_id, &path, &rel, &hash],
            )
            .map(|_| ())
        })
    }

    fn append_output(
        &mut self,
        run_id: i64,
        lines: &[(String, i64, &'static str, String)],
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let lines = lines.to_vec();
        self.write(move |c| insert_lines(c, run_id, &lines))
    }

    fn trim_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()> {
        let step = step.to_string();
        self.write(move |c| {
            c.send(
                "DELETE FROM output WHERE run_id = $1 AND step_id = $2 AND attempt = $3
                 AND seq <= (SELECT MAX(seq) FROM output WHERE run_id = $1 AND step_id = $2 AND attempt = $3) - $4",
                vec![p(run_id), p(step.clone()), p(attempt), p(OUTPUT_LINES_KEPT)],
            )
        })
    }

    fn output(
        &self,
        run_id: i64,
        step: &str,
        attempt: i64,
        tail: Option<i64>,
    ) -> Result<Vec<(String, String)>> {
        let step = step.to_string();
        self.call(move |c| {
            let rows = c.query(
                "SELECT stream, line FROM (SELECT seq, stream, line FROM output
                  WHERE run_id = $1 AND step_id = $2 AND attempt = $3 ORDER BY seq DESC LIMIT $4) t
                 ORDER BY seq",
                &[&run_id, &step, &attempt, &tail],
            )?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn output_since(
        &self,
        run_id: i64,
        step: &str,
        attempt: i64,
        after: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        let step = step.to_string();
        self.call(move |c| {
            let rows = c.query(
                "SELECT seq, stream, line FROM output
                  WHERE run_id = $1 AND step_id = $2 AND attempt = $3 AND seq > $4 ORDER BY seq",
                &[&run_id, &step, &attempt, &after],
            )?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect()
        })
    }

    fn clear_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()> {
        let step = step.to_string();
        self.write(move |c| {
            c.exec(
                "DELETE FROM output WHERE run_id = $1 AND step_id = $2 AND attempt = $3",
                &[&run_id, &step, &attempt],
            )
            .map(|_| ())
        })
    }

    fn save_spool(&self, run_id: i64, step: &str, spool: &SpoolRow) -> Result<()> {
        let (step, spool) = (step.to_string(), spool.clone());
        self.write(move |c| {
            c.tx(|c| {
                c.exec(
                    "INSERT INTO spool_discards (run_id, host, base)
                 SELECT run_id, host, base FROM spools
                 WHERE run_id = $1 AND step_id = $2 AND (host <> $3 OR base <> $4)
                 ON CONFLICT DO NOTHING",
                    &[&run_id, &step, &spool.host, &spool.base],
                )?;
                c.exec(
                    "DELETE FROM spool_discards WHERE host = $1 AND base = $2",
                    &[&spool.host, &spool.base],
                )?;
                c.exec(
                    "INSERT INTO spools (run_id, step_id, host, base, login) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id, step_id) DO UPDATE SET host = $3, base = $4, login = $5",
                    &[&run_id, &step, &spool.host, &spool.base, &spool.login],
                )
                .map(|_| ())
            })
        })
    }

    fn spool(&self, run_id: i64, step: &str) -> Result<Option<SpoolRow>> {
        let step = step.to_string();
        self.call(move |c| {
            c.opt(
                "SELECT host, base, login FROM spools WHERE run_id = $1 AND step_id = $2",
                &[&run_id, &step],
            )?
            .map(|r| -> Sql<SpoolRow> {
                Ok(SpoolRow {
                    host: r.try_get(0)?,
                    base: r.try_get(1)?,
                    login: r.try_get(2)?,
                })
            })
            .transpose()
        })
    }

    fn drop_spool(&self, run_id: i64, step: &str) -> Result<()> {
        let step = step.to_string();
        self.write(move |c| {
            // One statement: the record of what to remove and the end of
            // the spool record are one write.
            c.send(
                "WITH gone AS (DELETE FROM spools WHERE run_id = $1 AND step_id = $2
                               RETURNING run_id, host, base)
                 INSERT INTO spool_discards (run_id, host, base)
                 SELECT run_id, host, base FROM gone ON CONFLICT DO NOTHING",
                vec![p(run_id), p(step.clone())],
            )
        })
    }

    fn drop_spools(&mut self, run_id: i64, steps: &[&str]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let steps: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        self.write(move |c| {
            c.exec(
                "WITH gone AS (DELETE FROM spools WHERE run_id = $1 AND step_id = ANY($2)
                               RETURNING run_id, host, base)
                 INSERT INTO spool_discards (run_id, host, base)
                 SELECT run_id, host, base FROM gone ON CONFLICT DO NOTHING",
                &[&run_id, &steps],
            )
            .map(|_| ())
        })
    }

    fn spool_discards(&self, runbook: &str) -> Result<Vec<SpoolRow>> {
        let runbook = runbook.to_string();
        self.call(move |c| {
            c.query(
                "SELECT d.host, d.base FROM spool_discards d JOIN runs r ON r.id = d.run_id
                 WHERE r.runbook = $1 AND NOT EXISTS
                   (SELECT 1 FROM spools s WHERE s.host = d.host AND s.base = d.base)
                 ORDER BY d.host, d.base",
                &[&runbook],
            )?
            .iter()
            .map(|r| -> Sql<SpoolRow> {
                Ok(SpoolRow {
                    host: r.try_get(0)?,
                    base: r.try_get(1)?,
                    login: None,
                })
            })
            .collect::<Sql<Vec<_>>>()
        })
    }

    fn forget_discards(&mut self, removed: &[SpoolRow]) -> Result<()> {
        if removed.is_empty() {
            return Ok(());
        }
        let hosts: Vec<String> = removed.iter().map(|d| d.host.clone()).collect();
        let bases: Vec<String> = removed.iter().map(|d| d.base.clone()).collect();
        self.write(move |c| {
            c.exec(
                "DELETE FROM spool_discards d USING unnest($1::text[], $2::text[]) AS g(host, base)
                 WHERE d.host = g.host AND d.base = g.base",
                &[&hosts, &bases],
            )
            .map(|_| ())
        })
    }

    fn save_secrets(
        &mut self,
        run_id: i64,
        rows: &[SecretRow],
        env_files: &[String],
    ) -> Result<()> {
        let rows = rows.to_vec();
        let files = serde_json::to_string(env_files).unwrap_or_else(|_| "[]".into());
        self.write(move |c| {
            c.tx(|c| {
                c.exec("DELETE FROM secrets WHERE run_id = $1", &[&run_id])?;
                for r in &rows {
                    c.exec(
                        "INSERT INTO secrets (run_id, name, state, source, reason, checked_at)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &run_id,
                            &r.name,
                            &r.state.as_str(),
                            &r.source,
                            &r.reason,
                            &now(),
                        ],
                    )?;
                }
                c.exec(
                    "UPDATE runs SET env_files = $2 WHERE id = $1",
                    &[&run_id, &files],
                )?;
                Ok(())
            })
        })
    }

    fn secrets(&self, run_id: i64) -> Result<(Vec<SecretRow>, Vec<String>)> {
        self.call(move |c| {
            let rows = c
                .query(
                    "SELECT name, state, source, reason FROM secrets WHERE run_id = $1 ORDER BY name",
                    &[&run_id],
                )?
                .iter()
                .map(|r| -> Sql<SecretRow> {
                    Ok(SecretRow {
                        name: r.try_get(0)?,
                        state: SecretState::parse(r.try_get::<_, &str>(1)?),
                        source: r.try_get(2)?,
                        reason: r.try_get(3)?,
                    })
                })
                .collect::<Sql<Vec<_>>>()?;
            let files: String = c
                .opt("SELECT env_files FROM runs WHERE id = $1", &[&run_id])?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or_else(|| "[]".into());
            Ok((rows, serde_json::from_str(&files).unwrap_or_default()))
        })
    }

    fn approve(&self, run_id: i64, step: &str, by: &str, note: Option<&str>) -> Result<()> {
        let (step, by, note) = (step.to_string(), by.to_string(), note.map(str::to_string));
        self.write(move |c| {
            c.exec(
                "INSERT INTO approvals (run_id, step_id, approved_by, approved_at, note)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id, step_id) DO UPDATE SET approved_by = $3, approved_at = $4, note = $5",
                &[&run_id, &step, &by, &now(), &note],
            )
            .map(|_| ())
        })
    }

    fn approval(&self, run_id: i64, step: &str) -> Result<Option<Approval>> {
        let step = step.to_string();
        self.call(move |c| {
            c.opt(
                "SELECT approved_by, approved_at, note FROM approvals WHERE run_id = $1 AND step_id = $2",
                &[&run_id, &step],
            )?
            .map(|r| -> Sql<Approval> {
                Ok(Approval {
                    by: r.try_get(0)?,
                    at: r.try_get(1)?,
                    note: r.try_get(2)?,
                })
            })
            .transpose()
        })
    }

    fn approvals(&self, run_id: i64) -> Result<Vec<(String, Approval)>> {
        self.call(move |c| {
            c.query(
                "SELECT step_id, approved_by, approved_at, note FROM approvals WHERE run_id = $1 ORDER BY step_id",
                &[&run_id],
            )?
            .iter()
            .map(|r| -> Sql<(String, Approval)> {
                Ok((
                    r.try_get(0)?,
                    Approval {
                        by: r.try_get(1)?,
                        at: r.try_get(2)?,
                        note: r.try_get(3)?,
                    },
                ))
            })
            .collect::<Sql<Vec<_>>>()
        })
    }

    fn save_approval(&self, run_id: i64, step: &str, a: &Approval) -> Result<()> {
        let (step, a) = (step.to_string(), a.clone());
        self.write(move |c| {
            c.exec(
                "INSERT INTO approvals (run_id, step_id, approved_by, approved_at, note)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id, step_id) DO UPDATE SET approved_by = $3, approved_at = $4, note = $5",
                &[&run_id, &step, &a.by, &a.at, &a.note],
            )
            .map(|_| ())
        })
    }

    fn insert_run_copy(&self, run: &RunRow) -> Result<i64> {
        let run = run.clone();
        self.write(move |c| {
            let taken = c
                .opt("SELECT 1 FROM runs WHERE id = $1", &[&run.id])?
                .is_some();
            let vars = serde_json::to_string(&run.vars).unwrap_or_else(|_| "[]".into());
            let fields: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                &run.runbook,
                &run.path,
                &run.state.as_str(),
                &run.started_at,
                &run.finished_at,
                &vars,
                &run.rel_path,
                &run.file_hash,
            ];
            if taken {
                let row = c.opt(
                    "INSERT INTO runs (runbook, path, state, started_at, finished_at, vars, rel_path, file_hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &fields,
                )?;
                return Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or_default());
            }
            let mut with_id: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&run.id];
            with_id.extend(fields);
            c.exec(
                "INSERT INTO runs (id, runbook, path, state, started_at, finished_at, vars, rel_path, file_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &with_id,
            )?;
            // The id was given: the next new run's comes after it.
            c.exec(
                "SELECT setval(pg_get_serial_sequence('runbook.runs', 'id'), (SELECT MAX(id) FROM runs))",
                &[],
            )?;
            Ok(run.id)
        })
    }

    fn has_copy(&self, run: &RunRow) -> Result<bool> {
        let run = run.clone();
        self.call(move |c| {
            Ok(c.opt(
                "SELECT 1 FROM runs WHERE id = $1 AND runbook = $2 AND started_at = $3",
                &[&run.id, &run.runbook, &run.started_at],
            )?
            .is_some())
        })
    }

    fn mark_moved(&self, run_id: i64, to: &str) -> Result<()> {
        let to = to.to_string();
        self.write(move |c| {
            c.exec(
                "UPDATE runs SET moved_to = $2 WHERE id = $1",
                &[&run_id, &to],
            )
            .map(|_| ())
        })
    }

    fn save_notification(&self, run_id: i64, sent: &Sent, row: &NotificationRow) -> Result<()> {
        let (sent, row) = (sent.clone(), row.clone());
        self.write(move |c| {
            c.exec(
                "INSERT INTO notifications
                   (run_id, seq, target, url_digest, message_digest, state, delivered, attempts, error, at)
                 VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM notifications WHERE run_id = $1),
                         $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &run_id,
                    &row.target,
                    &sent.url_digest,
                    &sent.message_digest,
                    &row.state,
                    &row.delivered,
                    &row.attempts,
                    &row.error,
                    &row.at,
                ],
            )
            .map(|_| ())
        })
    }

    fn was_delivered(&self, run_id: i64, sent: &Sent) -> Result<bool> {
        let sent = sent.clone();
        self.call(move |c| {
            let last = c.opt(
                "SELECT message_digest FROM notifications
                 WHERE run_id = $1 AND url_digest = $2 AND delivered ORDER BY seq DESC LIMIT 1",
                &[&run_id, &sent.url_digest],
            )?;
            Ok(last
                .map(|r| r.try_get::<_, String>(0))
                .transpose()?
                .as_deref()
                == Some(sent.message_digest.as_str()))
        })
    }

    fn notifications(&self, run_id: i64) -> Result<Vec<NotificationRow>> {
        self.call(move |c| {
            c.query(
                "SELECT target, state, delivered, attempts, error, at FROM notifications
                 WHERE run_id = $1 ORDER BY seq",
                &[&run_id],
            )?
            .iter()
            .map(|r| -> Sql<NotificationRow> {
                Ok(NotificationRow {
                    target: r.try_get(0)?,
                    state: r.try_get(1)?,
                    delivered: r.try_get(2)?,
                    attempts: r.try_get(3)?,
                    error: r.try_get(4)?,
                    at: r.try_get(5)?,
                })
            })
            .collect::<Sql<Vec<_>>>()
        })
    }
}
