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
    /// The run is held by another live engine, or this engine lost its
    /// lease (SPEC §11).
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
    /// Another live engine holds the run.
    #[error("run {run_id} is locked by pid {pid} of {who}, last heard from {heard}; wait for it to finish or stop that process{then}")]
    Locked {
        /// The locked run.
        run_id: i64,
        /// Holder's pid.
        pid: i64,
        /// Holder's `user@host`.
        who: String,
        /// When it was last heard from (`3s ago (2026-…Z)`).
        heard: String,
        /// What happens if it is gone (a lease: taken over once silent).
        then: String,
    },
    /// The holder of the run's lease has not renewed it for a while: the
    /// lease runs out in `left_ms` (SPEC §11).
    #[error("run {run_id} is held by pid {pid} of {who}, silent for {silent}; its lease runs out in {left}, then `runbook resume {run_id}` takes the run over")]
    Silent {
        /// The run.
        run_id: i64,
        /// Holder's pid.
        pid: i64,
        /// Holder's `user@host`.
        who: String,
        /// How long it has been silent, as shown.
        silent: String,
        /// How long until its lease runs out, as shown.
        left: String,
        /// The same, in milliseconds.
        left_ms: u64,
    },
    /// The holder waits (`--wait`) and was asked to step aside.
    #[error("run {run_id} is held by pid {pid} of {who}, which waits (--wait); it was asked to step aside: try again in a moment")]
    Asked {
        /// The run.
        run_id: i64,
        /// Holder's pid.
        pid: i64,
        /// Holder's `user@host`.
        who: String,
    },
    /// Another engine took the run over: this one wrote nothing more
    /// (its lease's fencing token is no longer the run's).
    #[error(
        "run {run_id} was taken over by {by}; this engine lost its lease and wrote nothing more"
    )]
    LeaseLost {
        /// The run.
        run_id: i64,
        /// The new holder (`user@host (pid N)`), or what is known.
        by: String,
    },
    /// The run was moved to another state by `state copy` (SPEC §11).
    #[error("run {run_id} was moved to {to} (runbook state copy): resume it there with `runbook resume {run_id} --state '{to}'`{new}")]
    Moved {
        /// The run.
        run_id: i64,
        /// Where it went (no password).
        to: String,
        /// How to start a new run here instead, when that applies.
        new: String,
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
            Error::Locked { .. }
            | Error::Silent { .. }
            | Error::Asked { .. }
            | Error::LeaseLost { .. }
            | Error::Moved { .. } => exit::LOCKED,
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
