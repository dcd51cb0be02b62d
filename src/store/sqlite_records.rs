//! The SQLite backend's records beside the run and its steps: captured
//! output, spools, secrets' states, approvals, notifications.

use rusqlite::{params, Connection, OptionalExtension};

use super::sqlite::{AtPath, Sqlite};
use super::{
    now, Approval, NotificationRow, Records, RunRow, SecretRow, Sent, SpoolRow, OUTPUT_LINES_KEPT,
};
use crate::error::Result;
use crate::state::SecretState;

/// Records a step's spool folder as one to remove on its host.
const DISCARD_SPOOL: &str = "INSERT OR IGNORE INTO spool_discards (run_id, host, base)
     SELECT run_id, host, base FROM spools WHERE run_id = ?1 AND step_id = ?2";
/// Forgets a step's spool record.
const DROP_SPOOL: &str = "DELETE FROM spools WHERE run_id = ?1 AND step_id = ?2";

impl Records for Sqlite {
    fn set_run_file(
        &self,
        run_id: i64,
        path: &str,
        rel_path: Option<&str>,
        file_hash: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET path = ?2, rel_path = ?3, file_hash = ?4 WHERE id = ?1",
                params![run_id, path, rel_path, file_hash],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Appends captured lines of one attempt.
    fn append_output(
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
    fn trim_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()> {
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
    fn output(
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
    fn output_since(
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
    fn clear_output(&self, run_id: i64, step: &str, attempt: i64) -> Result<()> {
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
    /// A folder it replaces (an earlier definition's, on another host) is
    /// recorded to remove; the new one is no longer one to remove.
    fn save_spool(&self, run_id: i64, step: &str, spool: &SpoolRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO spool_discards (run_id, host, base)
                 SELECT run_id, host, base FROM spools
                 WHERE run_id = ?1 AND step_id = ?2 AND (host <> ?3 OR base <> ?4)",
                params![run_id, step, spool.host, spool.base],
            )
            .at(&self.path)?;
        self.conn
            .execute(
                "DELETE FROM spool_discards WHERE host = ?1 AND base = ?2",
                params![spool.host, spool.base],
            )
            .at(&self.path)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO spools (run_id, step_id, host, base, login) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, step, spool.host, spool.base, spool.login],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Where a step of a run spools on its host, if it was started there and
    /// its result is not yet committed.
    fn spool(&self, run_id: i64, step: &str) -> Result<Option<SpoolRow>> {
        self.conn
            .query_row(
                "SELECT host, base, login FROM spools WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
                |r| {
                    Ok(SpoolRow {
                        host: r.get(0)?,
                        base: r.get(1)?,
                        login: r.get(2)?,
                    })
                },
            )
            .optional()
            .at(&self.path)
    }

    /// Forgets a step's spool (its result is committed, or it was stopped).
    fn drop_spool(&self, run_id: i64, step: &str) -> Result<()> {
        // The record of what to remove first: a crash between the two
        // leaves both rows (removing a folder twice is harmless), never
        // neither.
        for sql in [DISCARD_SPOOL, DROP_SPOOL] {
            self.conn
                .execute(sql, params![run_id, step])
                .at(&self.path)?;
        }
        Ok(())
    }

    /// Forgets the spools of steps whose results are committed (a crash
    /// between the two writes cannot happen, but an old file may hold
    /// such rows); one transaction.
    fn drop_spools(&mut self, run_id: i64, steps: &[&str]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        for step in steps {
            for sql in [DISCARD_SPOOL, DROP_SPOOL] {
                tx.execute(sql, params![run_id, step]).at(&path)?;
            }
        }
        tx.commit().at(&path)
    }

    fn spool_discards(&self, runbook: &str) -> Result<Vec<SpoolRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.host, d.base FROM spool_discards d JOIN runs r ON r.id = d.run_id
                 WHERE r.runbook = ?1 AND NOT EXISTS
                   (SELECT 1 FROM spools s WHERE s.host = d.host AND s.base = d.base)
                 ORDER BY d.host, d.base",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([runbook], |r| {
                Ok(SpoolRow {
                    host: r.get(0)?,
                    base: r.get(1)?,
                    login: None,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }

    fn forget_discards(&mut self, removed: &[SpoolRow]) -> Result<()> {
        if removed.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .at(&path)?;
        for d in removed {
            tx.execute(
                "DELETE FROM spool_discards WHERE host = ?1 AND base = ?2",
                params![d.host, d.base],
            )
            .at(&path)?;
        }
        tx.commit().at(&path)
    }

    /// Replaces what is known about a run's secrets.
    fn save_secrets(
        &mut self,
        run_id: i64,
        rows: &[SecretRow],
        env_files: &[String],
    ) -> Result<()> {
        let path = self.path.clone();
        super::sqlite::in_tx(&self.conn, |tx| {
            tx.execute("DELETE FROM secrets WHERE run_id = ?1", [run_id])?;
            for r in rows {
                tx.execute(
                    "INSERT INTO secrets (run_id, name, state, source, reason, checked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![run_id, r.name, r.state.as_str(), r.source, r.reason, now()],
                )?;
            }
            tx.execute(
                "UPDATE runs SET env_files = ?2 WHERE id = ?1",
                params![
                    run_id,
                    serde_json::to_string(env_files).unwrap_or_else(|_| "[]".into())
                ],
            )?;
            Ok(())
        })
        .at(&path)
    }

    /// What the last pass learned about a run's secrets, and its --env-file paths.
    fn secrets(&self, run_id: i64) -> Result<(Vec<SecretRow>, Vec<String>)> {
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
    fn approve(&self, run_id: i64, step: &str, by: &str, note: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO approvals (run_id, step_id, approved_by, approved_at, note) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, step, by, now(), note],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// The approval of a step, if given.
    fn approval(&self, run_id: i64, step: &str) -> Result<Option<Approval>> {
        self.conn
            .query_row(
                "SELECT approved_by, approved_at, note FROM approvals WHERE run_id = ?1 AND step_id = ?2",
                params![run_id, step],
                |r| Ok(Approval { by: r.get(0)?, at: r.get(1)?, note: r.get(2)? }),
            )
            .optional()
            .at(&self.path)
    }

    fn approvals(&self, run_id: i64) -> Result<Vec<(String, Approval)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT step_id, approved_by, approved_at, note FROM approvals WHERE run_id = ?1 ORDER BY step_id",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get(0)?,
                    Approval {
                        by: r.get(1)?,
                        at: r.get(2)?,
                        note: r.get(3)?,
                    },
                ))
            })
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.path)
    }

    fn save_approval(&self, run_id: i64, step: &str, a: &Approval) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO approvals (run_id, step_id, approved_by, approved_at, note) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, step, a.by, a.at, a.note],
            )
            .at(&self.path)?;
        Ok(())
    }

    fn insert_run_copy(&self, run: &RunRow) -> Result<i64> {
        let taken = self
            .conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [run.id], |_| Ok(()))
            .optional()
            .at(&self.path)?
            .is_some();
        let id = (!taken).then_some(run.id);
        self.conn
            .execute(
                "INSERT INTO runs (id, runbook, path, state, started_at, finished_at, vars, rel_path, file_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    run.runbook,
                    run.path,
                    run.state.as_str(),
                    run.started_at,
                    run.finished_at,
                    serde_json::to_string(&run.vars).unwrap_or_else(|_| "[]".into()),
                    run.rel_path,
                    run.file_hash
                ],
            )
            .at(&self.path)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn has_copy(&self, run: &RunRow) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM runs WHERE id = ?1 AND runbook = ?2 AND started_at = ?3",
                params![run.id, run.runbook, run.started_at],
                |_| Ok(()),
            )
            .optional()
            .at(&self.path)?
            .is_some())
    }

    fn mark_moved(&self, run_id: i64, to: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET moved_to = ?2 WHERE id = ?1",
                params![run_id, to],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Records a delivery (or its failure).
    fn save_notification(&self, run_id: i64, sent: &Sent, row: &NotificationRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO notifications
                   (run_id, seq, target, url_digest, message_digest, state, delivered, attempts, error, at)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM notifications WHERE run_id = ?1),
                         ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run_id,
                    row.target,
                    sent.url_digest,
                    sent.message_digest,
                    row.state,
                    row.delivered,
                    row.attempts,
                    row.error,
                    row.at
                ],
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Whether this message already reached this URL for this run.
    fn was_delivered(&self, run_id: i64, sent: &Sent) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT message_digest FROM notifications
                 WHERE run_id = ?1 AND url_digest = ?2 AND delivered ORDER BY seq DESC LIMIT 1",
                params![run_id, sent.url_digest],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(|last| last.as_deref() == Some(sent.message_digest.as_str()))
            .at(&self.path)
    }

    /// A run's deliveries, oldest first.
    fn notifications(&self, run_id: i64) -> Result<Vec<NotificationRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT target, state, delivered, attempts, error, at FROM notifications
                 WHERE run_id = ?1 ORDER BY seq",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(NotificationRow {
                    target: r.get(0)?,
                    state: r.get(1)?,
                    delivered: r.get(2)?,
                    attempts: r.get(3)?,
                    error: r.get(4)?,
                    at: r.get(5)?,
                })
            })
            .at(&self.path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(&self.path)?;
        Ok(rows)
    }
}
