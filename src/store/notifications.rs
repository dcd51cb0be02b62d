//! Notifications sent when a run stopped (SPEC §10), so `status` can say
//! whether the person who must act was told.

use rusqlite::params;
use serde::Serialize;

use super::{now, AtPath, Store};
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

impl Store {
    /// Records a delivery (or its failure).
    pub fn save_notification(
        &self,
        run_id: i64,
        target: &str,
        state: &str,
        delivered: bool,
        attempts: i64,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO notifications (run_id, seq, target, state, delivered, attempts, error, at)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM notifications WHERE run_id = ?1),
                         ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run_id, target, state, delivered, attempts, error, now()],
            )
            .at(&self.path)?;
        Ok(())
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
