//! Executors: one per action. They know nothing of the DAG or the store;
//! they run one attempt and report lines and an outcome.

pub mod http;
pub mod local;

use tokio::sync::mpsc::UnboundedSender;

/// Which stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where an executor sends the lines it captures.
pub type LineSink = UnboundedSender<(Stream, String)>;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The work was done.
    Succeeded {
        /// Exit code of the command, when there was one.
        exit_code: Option<i32>,
        /// A note for the reason column (e.g. "unchanged").
        note: Option<String>,
    },
    /// The work failed.
    Failed {
        /// Exit code of the command, when there was one.
        exit_code: Option<i32>,
        /// Why, in one line.
        reason: String,
    },
    /// The engine was stopped while it ran.
    Interrupted,
}
