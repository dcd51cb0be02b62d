//! Notifications sent when a run stopped (SPEC §10), so `status` can say
//! whether the person who must act was told.

use serde::Serialize;

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
