//! `runbook state copy` (SPEC §11): a run, with its steps, attempts,
//! output, approvals, secrets' states, spools and notifications, from one
//! state into another, either way between SQLite and PostgreSQL, in one
//! transaction on the target.

use super::{RunRow, Sent, Store};
use crate::error::Result;

/// Copies `run` from `from` into `to`; returns the id it got there (its
/// own when free). Nothing is written to `to` unless all of it is.
pub fn copy_run(from: &Store, to: &mut Store, run: &RunRow) -> Result<i64> {
    to.begin_batch()?;
    match write_copy(from, to, run) {
        Ok(id) => {
            to.commit_batch()?;
            Ok(id)
        }
        Err(e) => {
            to.rollback_batch();
            Err(e)
        }
    }
}

fn write_copy(from: &Store, to: &mut Store, run: &RunRow) -> Result<i64> {
    let id = to.insert_run_copy(run)?;
    let steps = from.steps(run.id)?;
    to.save_steps(id, &steps, false)?;
    for (step, attempts) in from.attempt_history(run.id)? {
        for a in &attempts {
            to.save_attempt(id, &step, a)?;
        }
    }
    for s in &steps {
        for attempt in 1..=s.attempts {
            let lines: Vec<(String, i64, &'static str, String)> = from
                .output(run.id, &s.id, attempt, None)?
                .into_iter()
                .map(|(stream, line)| {
                    let stream = if stream == "stderr" {
                        "stderr"
                    } else {
                        "stdout"
                    };
                    (s.id.clone(), attempt, stream, line)
                })
                .collect();
            if !lines.is_empty() {
                to.append_output(id, &lines)?;
            }
        }
        if let Some(spool) = from.spool(run.id, &s.id)? {
            to.save_spool(id, &s.id, &spool)?;
        }
    }
    for (step, a) in from.approvals(run.id)? {
        to.save_approval(id, &step, &a)?;
    }
    let (secrets, env_files) = from.secrets(run.id)?;
    to.save_secrets(id, &secrets, &env_files)?;
    for n in from.notifications(run.id)? {
        // Which message went where is kept as digests the copy cannot
        // read back: a message already sent may be sent once more.
        let sent = Sent {
            url_digest: String::new(),
            message_digest: String::new(),
        };
        to.save_notification(id, &sent, &n)?;
    }
    Ok(id)
}
