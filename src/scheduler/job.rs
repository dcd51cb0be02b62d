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
    },
    Output {
        step: usize,
        attempt: i64,
        stream: Stream,
        line: String,
    },
    Done {
        step: usize,
        outcome: Outcome,
    },
}

/// One step to run, with everything it needs.
pub(super) struct Job {
    pub(super) step: usize,
    pub(super) first_attempt: i64,
    pub(super) rendered: Rendered,
    pub(super) host: Option<String>,
    pub(super) execs: Arc<exec::Executors>,
    pub(super) redactor: Arc<Redactor>,
}

impl Job {
    pub(super) async fn run(self, tx: mpsc::UnboundedSender<Msg>, cancel: CancellationToken) {
        let outcome = self.attempts(&tx, &cancel).await;
        let _ = tx.send(Msg::Done {
            step: self.step,
            outcome,
        });
    }

    async fn attempts(
        &self,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> Outcome {
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
                    return Outcome::Succeeded {
                        exit_code: Some(0),
                        note: Some("already satisfied (`unless` exited 0)".into()),
                    }
                }
                Outcome::Interrupted => return Outcome::Interrupted,
                Outcome::Failed { .. } => {}
            }
        }
        let mut attempt = self.first_attempt;
        let last = self.first_attempt + i64::from(r.retries);
        loop {
            let _ = tx.send(Msg::Attempt {
                step: self.step,
                attempt,
            });
            let outcome = self.once(attempt, tx, cancel).await;
            match outcome {
                Outcome::Failed { .. } if attempt < last => {
                    tokio::select! {
                        _ = tokio::time::sleep(r.retry_delay) => {}
                        _ = cancel.cancelled() => return Outcome::Interrupted,
                    }
                    attempt += 1;
                }
                Outcome::Failed { exit_code, reason } if attempt > self.first_attempt => {
                    let tries = attempt - self.first_attempt + 1;
                    return Outcome::Failed {
                        exit_code,
                        reason: format!("{reason} (after {tries} attempts)"),
                    };
                }
                other => return other,
            }
        }
    }

    async fn once(
        &self,
        attempt: i64,
        tx: &mpsc::UnboundedSender<Msg>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let (sink, mut lines) = mpsc::unbounded_channel::<(Stream, String)>();
        let forward = {
            let tx = tx.clone();
            let redactor = self.redactor.clone();
            let step = self.step;
            tokio::spawn(async move {
                while let Some((stream, line)) = lines.recv().await {
                    let line = redactor.redact(&line);
                    let _ = tx.send(Msg::Output {
                        step,
                        attempt,
                        stream,
                        line,
                    });
                }
            })
        };
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
                ..
            } => {
                let sync = delete.then_some(dest.as_str());
                tokio::select! {
                    outcome = self.execs.upload(host, files, *mode, sync, &sink) => outcome,
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
