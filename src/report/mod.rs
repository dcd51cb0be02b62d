//! Everything the user reads: live output, status, diagnostics, NDJSON events.

pub mod diagnostic;
pub mod fleet;
pub mod graph;
pub mod handoff;
pub mod html;
pub mod live;
pub mod live_block;
pub mod notify;
pub mod plain;
pub mod rolling;
pub mod status;
pub mod style;
pub mod summary;

use crate::events::Event;

/// How much a reporter prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only the summary.
    Quiet,
    /// Step results and output lines.
    Normal,
    /// Also every attempt start, and every output line on a terminal.
    Verbose,
}

pub use crate::events::Reporter;

/// NDJSON: one event per line on stdout.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

/// A duration in milliseconds, for people.
pub fn human_ms(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `1 step`, `2 steps`, `0 hosts`: a count with its noun, singular for one.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
