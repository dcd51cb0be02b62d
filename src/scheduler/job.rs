//! One step's work, run as its own task: the `unless` probe, the attempts
//! with their retries, and each attempt's lines, redacted before they leave.
//! A job reports to the scheduler's pass only through [`Msg`].

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::exec::{self, Outcome, Stream};
use crate::plan::{Rendered, RenderedAction};
use crate::secrets::Redactor;

/// What a job tells the pass, in order: an attempt starts, the lines it
/// prints (already redacted), and once, how the step ended. The pass
/// commits the waiting lines and the step's row before it reports an
/// attempt or releases a step's dependents; lines in between are committed
/// in batches (at least every 500 ms).
pub(super) enum Msg {
    Attempt {
        step: usize,
        attempt: i64,
        /// On a retry, why the previous attempt failed.
        why: Option<String>,
        /// On a retry, how the previous attempt ended: exit code and reason.
        previous: Option<(Option<i32>, String)>,
    },
    Output {
        step: usize,
        attempt: i64,
        stream: Stream,
        line: String,
    },
    /// A resumed engine found the step's attempt on its host, started by
    /// an earlier engine: the attempt's stored lines are replaced by what
    /// its spool holds, read again from the start.
    Reattach { step: usize, attempt: i64 },
    Done {
        step: usize,
        outcome: Outcome,
        /// The step may still run on a host that could not be reached: its
        /// spool record stays, so that a resume finds it.
        keep_spool: bool,
    },
}

/// How long a reattached step whose timeout passed while no engine watched
/// is followed before it is stopped: one that ended in time on its host is
/// collected (its status and output), not called timed out.
const REATTACH_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A remote `run` step's spool on its host (SPEC §8).
pub(super) struct JobSpool {
    /// Its folder, relative to the login user's home.
    pub(super) base: String,
    /// Started by an earlier engine that died: find it and follow it.
    pub(super) reattach: bool,
    /// How long ago it was started (a reattached step's timeout counts
    /// from then).
    pub(super) elapsed: std::time::Duration,
    /// A spool of an earlier definition (or host) of the step, still
    /// running: stopped before this one starts.
    pub(super) stale: Option<crate::store::SpoolRow>,
}

/// One step to run, with everything it needs.
pub(super) struct Job {
    pub(super) step: usize,
    pub(super) first_attempt: i64,
    pub(super) rendered: Rendered,
    pub(super) host: Option<String>,
    pub(super) execs: Arc<exec::Executors>,
    pub(super) redactor: Arc<Redactor>,
    /// Set for a remote `run` step: it runs detached from the connection.
    pub(super) spool: Option<JobSpool>,
}

/// A note added to an outcome's reason.
fn noted(outcome: Outcome, note: &str) -> Outcome {
    match outcome {
        Outcome::Succeeded { exit_code, note: n } => Outcome::Succeeded {
            exit_code,
            note: Some(match n {
                Some(n) => format!("{n}; {note}"),
                None => note.to_string(),
            }),
        },
        Outcome::Failed { exit_code, reason } => Outcome::Failed {
            exit_code,
            reason: format!("{reason} ({note})"),
        },
        Outcome::Interrupted => Outcome::Interrupted,
    }
}

impl Job {
    pub(super) async fn run(self, tx: mpsc::UnboundedSender<Msg>, cancel: CancellationToken) {
        let (outcome, keep_spool) = match self.reattach(&tx, &cancel).await {
            Err(done) => done,
            Ok((first, spent, note)) => {
                let (outcome, keep) = self.attempts(first, spent, &tx, &cancel).await;
                match note {
                    Some(note) => (noted(outcome, &note), keep),
                    None => (outcome, keep),
                }
            }
        };
        let _ = tx.send(Msg::Done {
            step: self.step,
            outcome,
            keep_spool,
        });
    }

    /// For a step an earlier engine started on its host: follows it to its
    /// end (`Err`: the step is done), or says from which attempt to run it
    /// again and why (its spool is gone, or its process vanished).
    async fn reattach(
        &self,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> Result<(i64, u32, Option<String>), (Outcome, bool)> {
        let (Some(spool), Some(host)) = (&self.spool, self.host.as_deref()) else {
            return Ok((self.first_attempt, 0, None));
        };
        if let Some(stale) = &spool.stale {
            if let Err(e) = self.execs.ssh.stop_spool(&stale.host, &stale.base).await {
                tracing::warn!(host = %stale.host, error = %e.0, "could not stop the earlier definition's process");
            }
        }
        if !spool.reattach {
            return Ok((self.first_attempt, 0, None));
        }
        let recorded = (self.first_attempt - 1).max(1);
        let found = self.execs.ssh.probe(host, &spool.base, recorded).await;
        let attempt = match found {
            Err(e) => {
                let reason = format!(
                    "{}; it was started there by an earlier engine, and `runbook resume` looks again",
                    e.0
                );
                return Err((
                    Outcome::Failed {
                        exit_code: None,
                        reason,
                    },
                    true,
                ));
            }
            Ok(exec::ssh::Probe::Gone(n)) => {
                let why = format!(
                    "started again: its spool on `{host}` was gone (host rebooted or cleaned?)"
                );
                return Ok((n + 1, 0, Some(why)));
            }
            Ok(exec::ssh::Probe::Found(n)) => n,
        };
        let _ = tx.send(Msg::Reattach {
            step: self.step,
            attempt,
        });
        let left = self
            .rendered
            .timeout
            .map(|t| t.saturating_sub(spool.elapsed).max(REATTACH_GRACE));
        let d = self.detached(attempt, false, left, tx, cancel).await;
        match d.fate {
            exec::ssh::Fate::Vanished | exec::ssh::Fate::Gone => {
                let why = match &d.outcome {
                    Outcome::Failed { reason, .. } => format!("started again: {reason}"),
                    _ => "started again".to_string(),
                };
                Ok((attempt + 1, 0, Some(why)))
            }
            // The reattached attempt failed and retries are left: they run.
            exec::ssh::Fate::Done
                if self.rendered.retries > 0 && matches!(d.outcome, Outcome::Failed { .. }) =>
            {
                let why = match &d.outcome {
                    Outcome::Failed { reason, .. } => {
                        format!("attempt {attempt} (reattached) failed: {reason}")
                    }
                    _ => String::new(),
                };
                Ok((attempt + 1, 1, Some(why)))
            }
            fate => Err((
                noted(d.outcome, "reattached"),
                fate == exec::ssh::Fate::KeepSpool,
            )),
        }
    }

    /// One attempt of a remote `run` step, detached on its host: started
    /// (`start`) or only followed, with its lines forwarded.
    async fn detached(
        &self,
        attempt: i64,
        start: bool,
        timeout: Option<std::time::Duration>,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> exec::ssh::Detached {
        let (sink, forward) = self.forwarder(attempt, tx);
        let r = &self.rendered;
        let script = match &r.action {
            RenderedAction::Run { script } => script.as_str(),
            _ => "",
        };
        let base = self.spool.as_ref().map(|s| s.base.as_str()).unwrap_or("");
        let step = exec::ssh::Detach {
            base,
            attempt,
            start: start.then_some((script, r.env.as_slice())),
            left: timeout,
            timeout: r.timeout,
        };
        let host = self.host.as_deref().unwrap_or("");
        let mut d = self.execs.ssh.run_detached(host, step, cancel, &sink).await;
        drop(sink);
        let _ = forward.await;
        if let Outcome::Failed { reason, .. } = &mut d.outcome {
            *reason = self.redactor.redact(reason);
        }
        d
    }

    /// A sink whose lines go to the pass as one attempt's, redacted.
    fn forwarder(
        &self,
        attempt: i64,
        tx: &mpsc::UnboundedSender<Msg>,
    ) -> (exec::LineSink, tokio::task::JoinHandle<()>) {
        let (sink, mut lines) = mpsc::unbounded_channel::<(Stream, String)>();
        let tx = tx.clone();
        let redactor = self.redactor.clone();
        let step = self.step;
        let forward = tokio::spawn(async move {
            while let Some((stream, line)) = lines.recv().await {
                let line = redactor.redact(&line);
                let _ = tx.send(Msg::Output {
                    step,
                    attempt,
                    stream,
                    line,
                });
            }
        });
        (sink, forward)
    }

    /// Runs attempts from `first`, with the step's retries less `spent`.
    async fn attempts(
        &self,
        first: i64,
        spent: u32,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> (Outcome, bool) {
        let r = &self.rendered;
        if let Some(unless) = &r.unless {
            let (sink, mut lines) = mpsc::unbounded_channel();
            let outcome = self
                .execs
                .command(
                    self.host.as_deref(),
                    unless,
                    &r.env,
                    r.timeout,
                    cancel,
                    &sink,
                )
                .await;
            drop(sink);
            while lines.try_recv().is_ok() {}
            match outcome {
                Outcome::Succeeded { .. } => {
                    let note = Some("already satisfied (`unless` exited 0)".into());
                    return (
                        Outcome::Succeeded {
                            exit_code: Some(0),
                            note,
                        },
                        false,
                    );
                }
                Outcome::Interrupted => return (Outcome::Interrupted, false),
                Outcome::Failed { .. } => {}
            }
        }
        let mut attempt = first;
        let last = first + i64::from(r.retries.saturating_sub(spent));
        let mut why = None;
        let mut previous = None;
        loop {
            let _ = tx.send(Msg::Attempt {
                step: self.step,
                attempt,
                why: why.take(),
                previous: previous.take(),
            });
            let (outcome, keep) = match (&r.action, &self.spool) {
                (RenderedAction::Run { .. }, Some(_)) => {
                    let d = self.detached(attempt, true, r.timeout, tx, cancel).await;
                    (d.outcome, d.fate == exec::ssh::Fate::KeepSpool)
                }
                _ => (self.once(attempt, tx, cancel).await, false),
            };
            match outcome {
                // A step that may still run on an unreachable host is not
                // tried again beside itself.
                Outcome::Failed { reason, exit_code } if attempt < last && !keep => {
                    tokio::select! {
                        _ = tokio::time::sleep(r.retry_delay) => {}
                        _ = cancel.cancelled() => return (Outcome::Interrupted, false),
                    }
                    why = Some(format!(
                        "attempt {}: attempt {attempt} {reason}",
                        attempt + 1
                    ));
                    previous = Some((exit_code, reason));
                    attempt += 1;
                }
                Outcome::Failed { exit_code, reason } if attempt > first => {
                    let tries = attempt - first + 1;
                    let reason = format!("{reason} (after {tries} attempts)");
                    return (Outcome::Failed { exit_code, reason }, keep);
                }
                other => return (other, keep),
            }
        }
    }

    async fn once(
        &self,
        attempt: i64,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let (sink, forward) = self.forwarder(attempt, tx);
        let r = &self.rendered;
        let host = self.host.as_deref();
        let outcome = match &r.action {
            RenderedAction::Run { script } => {
                self.execs
                    .command(host, script, &r.env, r.timeout, cancel, &sink)
                    .await
            }
            RenderedAction::Checkpoint => Outcome::Succeeded {
                exit_code: None,
                note: None,
            },
            // A request or a transfer is dropped mid-way when the engine is
            // stopped: dropping the future closes its connection or channel.
            RenderedAction::Http(http) => {
                tokio::select! {
                    outcome = self.execs.http(http, r.timeout, &sink) => outcome,
                    _ = cancel.cancelled() => Outcome::Interrupted,
                }
            }
            RenderedAction::Upload {
                files,
                mode,
                dest,
                delete,
                exclude,
                ..
            } => {
                let sync = delete.then_some(exec::upload::Sync {
                    root: dest.as_str(),
                    exclude,
                });
                tokio::select! {
                    outcome = self.execs.upload(host, files, *mode, sync, r.timeout, &sink) => outcome,
                    _ = cancel.cancelled() => Outcome::Interrupted,
                }
            }
        };
        drop(sink);
        let _ = forward.await;
        match outcome {
            Outcome::Failed { exit_code, reason } => Outcome::Failed {
                exit_code,
                reason: self.redactor.redact(&reason),
            },
            other => other,
        }
    }
}
