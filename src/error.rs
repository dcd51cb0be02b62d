//! The errors users see, and the exit codes they map to (SPEC §4).

use std::path::PathBuf;

/// Process exit codes.
pub mod exit {
    /// Every step succeeded or was skipped.
    pub const OK: i32 = 0;
    /// A step failed.
    pub const FAILED: i32 = 1;
    /// Invalid input or usage.
    pub const USAGE: i32 = 2;
    /// A human must act.
    pub const HELD: i32 = 3;
    /// The run is locked by another live process.
    pub const LOCKED: i32 = 4;
    /// Stopped by SIGINT/SIGTERM.
    pub const INTERRUPTED: i32 = 130;
}

/// One problem in a runbook file, with its place when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Byte offset and length of the offending text, when known.
    pub span: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a place in the file.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            span: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Points the diagnostic at a span of the source.
    pub fn at(mut self, span: Option<(usize, usize)>) -> Self {
        self.span = span;
        self
    }

    /// Adds a hint that says what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint only when there is one.
    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

/// Errors the commands report; each maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runbook is invalid; nothing ran.
    #[error("{} in the runbook", match .diagnostics.len() { 1 => "1 problem".to_string(), n => format!("{n} problems") })]
    Invalid {
        /// The problems found, with the file's text for rendering.
        diagnostics: Vec<Diagnostic>,
        /// The source text of the file, to show the offending lines.
        source_text: String,
    },
    /// Bad command-line usage or a name that does not resolve.
    #[error("{0}")]
    Usage(String),
    /// Another live process holds the run.
    #[error("run {run_id} is locked by pid {pid} on {host} (since {since}); wait for it to finish or stop that process")]
    Locked {
        /// The locked run.
        run_id: i64,
        /// Holder's pid.
        pid: i64,
        /// Holder's host name.
        host: String,
        /// When the lock was taken.
        since: String,
    },
    /// The state database could not be used.
    #[error("state database {path}: {source}")]
    Store {
        /// Path of the database file.
        path: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL state database could not be used (SPEC §11).
    #[error("state database {at}: {message}")]
    Db {
        /// The state URL, without its password.
        at: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid { .. } | Error::Usage(_) => exit::USAGE,
            Error::Locked { .. } => exit::LOCKED,
            Error::Store { .. } | Error::Db { .. } | Error::Io { .. } => exit::FAILED,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result type of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
