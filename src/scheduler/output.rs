//! Captured output on its way to the store: lines wait in a buffer and
//! are committed together, often enough that a killed engine loses little.

use super::Pass;
use crate::error::Result;
use crate::store::Store;

/// Captured output is committed at least this often while steps run, so a
/// killed engine loses at most this much of what its steps printed.
const OUTPUT_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// ... and whenever this many lines are waiting.
const OUTPUT_FLUSH_LINES: usize = 1000;

/// Captured lines not yet committed, and when the oldest of them arrived.
#[derive(Default)]
pub(super) struct OutputBuffer {
    lines: Vec<(String, i64, &'static str, String)>,
    since: Option<tokio::time::Instant>,
}

impl OutputBuffer {
    pub(super) fn push(&mut self, line: (String, i64, &'static str, String)) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.lines.push(line);
    }

    /// Whether enough lines wait that they are committed now.
    pub(super) fn full(&self) -> bool {
        self.lines.len() >= OUTPUT_FLUSH_LINES
    }

    /// Completes when the oldest waiting line is due to be committed.
    pub(super) async fn due(&self) {
        match self.since {
            Some(since) => tokio::time::sleep_until(since + OUTPUT_FLUSH_EVERY).await,
            None => std::future::pending().await,
        }
    }

    /// Commits the waiting lines and trims their attempts, in one
    /// transaction (the open group commit's, or one of its own), so no
    /// attempt's output is left untrimmed; nothing when none wait.
    pub(super) fn flush(&mut self, store: &mut Store, run_id: i64) -> Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let own = !store.in_batch();
        if own {
            store.begin_batch()?;
        }
        match self.write(store, run_id) {
            Ok(()) if own => store.commit_batch()?,
            Ok(()) => {}
            Err(e) => {
                if own {
                    store.rollback_batch();
                }
                return Err(e);
            }
        }
        self.lines.clear();
        self.since = None;
        Ok(())
    }

    fn write(&self, store: &mut Store, run_id: i64) -> Result<()> {
        store.append_output(run_id, &self.lines)?;
        // Kept to its last lines as it goes, so an attempt cut off by a
        // crash is no longer than one that ended.
        let mut attempts: Vec<(&str, i64)> = self
            .lines
            .iter()
            .map(|(step, attempt, _, _)| (step.as_str(), *attempt))
            .collect();
        attempts.sort_unstable();
        attempts.dedup();
        for (step, attempt) in attempts {
            store.trim_output(run_id, step, attempt)?;
        }
        Ok(())
    }
}

impl Pass<'_> {
    /// Commits the lines waiting now.
    pub(super) fn flush_output(&mut self) -> Result<()> {
        self.output.flush(self.store, self.run_id)
    }
}
