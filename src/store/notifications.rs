//! Notifications sent when a run stopped (SPEC §10), so `status` can say
//! whether the person who must act was told.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{AtPath, Store};
use crate::error::Result;

/// One delivery of a notification to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationRow {
    /// Where it went: the URL's scheme, host and port only (a webhook's
    /// path is often its credential).
    pub target: String,
    /// The run state it announced.
    pub state: String,
    /// Whether the webhook accepted it (a 2xx answer).
    pub delivered: bool,
    /// Requests made.
    pub attempts: i64,
    /// Why it was not delivered.
    pub error: Option<String>,
    /// When the last attempt ended.
    pub at: String,
}

/// Which message went where, as digests (never the URL, never the text).
#[derive(Debug, Clone)]
pub struct Sent {
    /// SHA-256 of the webhook URL, hex.
    pub url_digest: String,
    /// SHA-256 of the message (state and summary), hex.
    pub message_digest: String,
}

impl Store {
    /// Records a delivery (or its failure).
    pub fn save_notification(&self, run_id: i64, sent: &Sent, row: &NotificationRow) -> Result<()> {
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
    pub fn was_delivered(&self, run_id: i64, sent: &Sent) -> Result<bool> {
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
    pub fn notifications(&self, run_id: i64) -> Result<Vec<NotificationRow>> {
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
