//! Remote steps that outlive the connection and the engine (SPEC §8).
//!
//! A remote `run` step starts in a session of its own on the host
//! (`setsid`), with its stdout, stderr, process group and exit status in
//! files of a spool folder under the login user's home:
//! `~/.runbook/spool/<run>-<engine key>/<step>/<attempt>/` (folders 0700,
//! files 0600). The engine records the step's folder in its state file
//! before it starts the step, so a resumed engine finds it again.
//!
//! The host's long-lived shell (see `shell.rs`) starts the step and follows
//! its files: it sends what each file gained as a chunk (`\036C<nonce> O|E
//! <len>` and that many bytes), the step's process group once (`\036P`),
//! and at the end its exit status (`\036X`). It wakes when the step writes
//! its status (a FIFO per shell, the "bell") and on a ticker otherwise, so
//! a short step costs no polling delay. Starting is idempotent: the step's
//! wrapper claims `pgid` with `set -C` (O_EXCL), so of two starts of the
//! same attempt (an engine that died mid-start, and the one that resumed)
//! one runs and the other follows it.

//!
//! The room's files: `script.rs` (the shell code and the folders' names),
//! `said.rs` (the follower's lines, parsed), `chores.rs` (removing and
//! preparing folders on a host); this file runs an attempt: start, follow,
//! reattach (`probe`), stop. It takes shells and the connection from
//! [`super::host`] and [`super::shell`], and nothing takes from it but the
//! pool.

mod chores;
mod said;
mod script;

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use chores::Chores;
pub use said::{End, Progress, Said, StreamState};
pub use script::{base, engine_key, folder_name, ROOT};

use super::connection::{until, SshError, KILL_GRACE_SECS, RECONNECT_FIRST, RECONNECT_MAX};
use super::host::Host;
use super::quote::exports;
use super::shell::{nonce, RemoteShell, MARK};
use super::{LineSink, Outcome, Stream};

/// One attempt of a remote step to run detached.
#[derive(Clone, Copy)]
pub struct Detach<'a> {
    /// The step's spool folder, relative to the home.
    pub base: &'a str,
    /// The attempt (its folder under `base`).
    pub attempt: i64,
    /// The script and its environment; `None` only follows an attempt an
    /// earlier engine started.
    pub start: Option<(&'a str, &'a [(String, String)])>,
    /// How long it may still run, counted from when the host is first
    /// reached (connecting has a timeout of its own).
    pub left: Option<Duration>,
    /// The step's timeout, for messages.
    pub timeout: Option<Duration>,
}

/// What became of a detached attempt, beyond its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It ended (or was stopped) and its spool can go once committed.
    Done,
    /// It may still run on a host that could not be reached: its spool
    /// record must stay, for a later resume.
    KeepSpool,
    /// Its process ended without an exit status and the host rebooted.
    Vanished,
    /// It was marked as never started (an earlier resume gave it up).
    Gone,
}

/// How a detached attempt ended.
pub struct Detached {
    /// For the step's row.
    pub outcome: Outcome,
    /// What to do with its spool.
    pub fate: Fate,
    /// Where following it got to (its process group, who started it).
    pub progress: Progress,
}

impl Detached {
    /// A failure with no exit code.
    pub fn failed(reason: String, fate: Fate, progress: Progress) -> Detached {
        Detached {
            outcome: Outcome::Failed {
                exit_code: None,
                reason,
            },
            fate,
            progress,
        }
    }
}

/// What a resumed engine finds of a step on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// This attempt was started there (running or finished).
    Found(i64),
    /// This attempt never started there (or its spool is gone); it is now
    /// marked so that it cannot start late.
    Gone(i64),
}

/// How following a detached step in a shell ended.
enum FollowEnd {
    /// The follower on the host said so.
    Ended(End),
    /// The connection (or the shell) went away; the step goes on.
    Lost(String),
}

/// Reaching the host for an attempt: the wait before the next try, the
/// last error, and the attempt's deadline (counted from when the host is
/// first reached).
struct Reach {
    backoff: Duration,
    lost: Option<String>,
    deadline: Option<Instant>,
}

enum Reached {
    Shell(Box<RemoteShell>),
    /// The first try to start the step failed: nothing runs there.
    Failed(String),
    /// The deadline passed or the engine was stopped first.
    GaveUp,
}

impl Reach {
    /// A shell on the host, trying again with backoff after the attempt
    /// was started (it runs on there), until the deadline or `cancel`.
    async fn shell(
        &mut self,
        host: &Host,
        chores: &Chores,
        step: &Detach<'_>,
        cancel: &CancellationToken,
    ) -> Reached {
        loop {
            let got = tokio::select! {
                s = chores.shell(host) => Some(s),
                _ = until(self.deadline) => None,
                _ = cancel.cancelled() => None,
            };
            match got {
                Some(Ok(shell)) => {
                    if self.deadline.is_none() {
                        self.deadline = step.left.map(|t| Instant::now() + t);
                    }
                    return Reached::Shell(Box::new(shell));
                }
                Some(Err(e)) if self.lost.is_none() && step.start.is_some() => {
                    return Reached::Failed(e.0)
                }
                Some(Err(e)) => {
                    self.lost = Some(e.0);
                    tokio::select! {
                        _ = tokio::time::sleep(self.backoff) => {}
                        _ = until(self.deadline) => {}
                        _ = cancel.cancelled() => {}
                    }
                    self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
                }
                None => return Reached::GaveUp,
            }
        }
    }
}

/// Runs one attempt of a remote step detached from the connection (SPEC
/// §8): starts it in its spool folder unless it was started there already,
/// and follows it to its end. A lost connection is reconnected with
/// backoff until the deadline; the deadline or `cancel` stop the step's
/// process group on the host and remove its spool folder.
pub async fn run(
    host: &Host,
    chores: &Chores,
    step: Detach<'_>,
    cancel: &CancellationToken,
    sink: &LineSink,
) -> Detached {
    let mut progress = Progress::default();
    let mut reach = Reach {
        backoff: RECONNECT_FIRST,
        lost: None,
        deadline: None,
    };
    loop {
        let mut shell = match reach.shell(host, chores, &step, cancel).await {
            Reached::Shell(shell) => *shell,
            Reached::Failed(e) => return Detached::failed(e, Fate::Done, progress),
            Reached::GaveUp => return unreachable_end(host, &step, cancel, reach.lost, progress),
        };
        let around = chores.around();
        let ended = tokio::select! {
            end = follow(&mut shell, &around, &step, &mut progress, sink) => Some(end),
            _ = until(reach.deadline) => None,
            _ = cancel.cancelled() => None,
        };
        match ended {
            Some(FollowEnd::Ended(end)) => {
                host.put_back(shell).await;
                let folder = format!("~/{}/{}", step.base, step.attempt);
                return ended_as(host, &folder, end, progress);
            }
            Some(FollowEnd::Lost(e)) => {
                let session = shell.session.clone();
                drop(shell);
                host.forget(&session).await;
                tracing::warn!(host = %host.target.name, error = %e, "lost the SSH connection while a step ran there; reconnecting");
                reach.lost = Some(e);
                reach.backoff = RECONNECT_FIRST;
            }
            None => {
                drop(shell);
                return stopped(host, &step, cancel, progress).await;
            }
        }
    }
}

/// The deadline passed or the engine was stopped while the step ran: its
/// process group on the host is stopped and its spool removed.
async fn stopped(
    host: &Host,
    step: &Detach<'_>,
    cancel: &CancellationToken,
    progress: Progress,
) -> Detached {
    let stopped = stop(host, step.base).await;
    let mut outcome = if cancel.is_cancelled() {
        Outcome::Interrupted
    } else {
        Outcome::Failed {
            exit_code: None,
            reason: format!(
                "timed out after {} on {}",
                humantime::format_duration(step.timeout.unwrap_or_default()),
                host.describe()
            ),
        }
    };
    let fate = match stopped {
        Ok(()) => Fate::Done,
        Err(e) => {
            if let Outcome::Failed { reason, .. } = &mut outcome {
                reason.push_str(&format!(
                    "; it could not be stopped there ({}) and may still run",
                    e.0
                ));
            }
            Fate::KeepSpool
        }
    };
    Detached {
        outcome,
        fate,
        progress,
    }
}

/// The deadline passed or the engine was stopped while the host could
/// not be reached: the step may still run there, so its spool is kept
/// for a later resume to find.
fn unreachable_end(
    host: &Host,
    step: &Detach<'_>,
    cancel: &CancellationToken,
    lost: Option<String>,
    progress: Progress,
) -> Detached {
    // Still connecting for a start: nothing was sent, nothing runs.
    let fate = if lost.is_none() && step.start.is_some() {
        Fate::Done
    } else {
        Fate::KeepSpool
    };
    let timeout = humantime::format_duration(step.timeout.unwrap_or_default());
    if cancel.is_cancelled() {
        return Detached {
            outcome: Outcome::Interrupted,
            fate,
            progress,
        };
    }
    if fate == Fate::Done {
        let reason = format!(
            "timed out after {timeout} on {} (while connecting)",
            host.describe()
        );
        return Detached::failed(reason, fate, progress);
    }
    let why = lost.unwrap_or_else(|| "no connection".into());
    Detached::failed(
        format!(
            "lost the SSH connection to {} and could not reconnect within the step's timeout ({timeout}): {why}; the step may still run there, and `runbook resume` picks it up again",
            host.describe(),
        ),
        Fate::KeepSpool,
        progress,
    )
}

/// How an attempt whose follower ended is reported; `folder` is its
/// spool folder, as the user would type it.
fn ended_as(host: &Host, folder: &str, end: End, progress: Progress) -> Detached {
    let on = host.describe();
    let failed = |reason: String, fate: Fate| {
        let outcome = Outcome::Failed {
            exit_code: None,
            reason,
        };
        (outcome, fate)
    };
    let (outcome, fate) = match end {
        End::Exited(0) => (
            Outcome::Succeeded {
                exit_code: Some(0),
                note: None,
            },
            Fate::Done,
        ),
        End::Exited(code) => (
            Outcome::Failed {
                exit_code: Some(code),
                reason: format!("exited with code {code} on {on}"),
            },
            Fate::Done,
        ),
        End::Vanished => failed(
            format!("the step's process on {on} ended without an exit status (the host rebooted)"),
            Fate::Vanished,
        ),
        End::Killed => failed(
            format!("the step's process on {on} was killed from outside (it ended without an exit status; the host did not reboot)"),
            Fate::Done,
        ),
        End::Gone => failed(format!("the step was stopped on {on}"), Fate::Gone),
        End::Unsupported => failed(
            format!("{on} has no `setsid` (util-linux or busybox); remote steps need it to outlive the connection"),
            Fate::Done,
        ),
        End::NoSpool { make, error } => {
            failed(no_spool_reason(&on, folder, make, &error), Fate::Done)
        }
    };
    Detached {
        outcome,
        fate,
        progress,
    }
}

/// Starts the attempt in `step.base/step.attempt` unless it was started
/// there already (no `step.start`: only follows it), and follows its spool
/// from `progress` to its end, sending its lines to `sink`. `around.0`
/// is sent before it (folders to make), `around.1` after it (folders to
/// remove, which the shell reads once the step has ended). A dropped
/// future leaves the shell unusable, and the step runs on.
async fn follow(
    shell: &mut RemoteShell,
    around: &(String, String),
    step: &Detach<'_>,
    progress: &mut Progress,
    sink: &LineSink,
) -> FollowEnd {
    let nonce = nonce();
    let mut block = String::new();
    if !shell.detach_ready {
        block.push_str(&script::prelude());
    }
    block.push_str(&around.0);
    let exports = step.start.map(|(_, env)| exports(env)).unwrap_or_default();
    block.push_str(&script::follow_command(
        &nonce,
        step.base,
        step.attempt,
        (progress.out.offset, progress.err.offset),
        step.start.map(|(script, _)| (script, exports.as_str())),
    ));
    block.push_str(&around.1);
    if let Err(e) = shell.send(&block).await {
        return FollowEnd::Lost(e.to_string());
    }
    shell.detach_ready = true;
    let mut buf = Vec::new();
    loop {
        match shell.read_line(&mut buf).await {
            Ok(0) => return FollowEnd::Lost("the connection closed".into()),
            Ok(_) => {}
            Err(e) => return FollowEnd::Lost(e.to_string()),
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        let said = line.strip_prefix(MARK).and_then(|l| said::parse(l, &nonce));
        match said {
            Some(Said::Group { pgid, started }) => {
                progress.pgid = Some(pgid);
                progress.started.get_or_insert(started);
            }
            Some(Said::Chunk { stream, len }) => {
                if let Err(e) = take_chunk(shell, stream, len, progress, sink).await {
                    return FollowEnd::Lost(e.to_string());
                }
            }
            Some(Said::End(end)) => {
                for (stream, state) in [
                    (Stream::Stdout, &mut progress.out),
                    (Stream::Stderr, &mut progress.err),
                ] {
                    if let Some(text) = state.rest() {
                        let _ = sink.send((stream, text));
                    }
                }
                return FollowEnd::Ended(end);
            }
            // The shell itself complained (e.g. a full disk on the host).
            None => {
                let _ = sink.send((Stream::Stderr, line.to_string()));
            }
        }
    }
}

/// Reads a chunk of `len` bytes of a stream and sends the lines it
/// completes.
async fn take_chunk(
    shell: &mut RemoteShell,
    stream: Stream,
    len: usize,
    progress: &mut Progress,
    sink: &LineSink,
) -> std::io::Result<()> {
    let mut chunk = vec![0; len];
    shell.read_exact(&mut chunk).await?;
    let state = match stream {
        Stream::Stdout => &mut progress.out,
        Stream::Stderr => &mut progress.err,
    };
    for text in state.take(&chunk) {
        let _ = sink.send((stream, text));
    }
    Ok(())
}

/// Finds the latest attempt of a step started on the host at or after
/// `attempt` (see `script::probe_script`).
pub async fn probe(
    host: &Host,
    chores: &Chores,
    base: &str,
    attempt: i64,
) -> Result<Probe, SshError> {
    let shell = chores.shell(host).await?;
    let (code, out, err) = host
        .capture(shell, &script::probe_script(base, attempt))
        .await?;
    let text = String::from_utf8_lossy(&out);
    let mut words = text.split_whitespace();
    match (
        code,
        words.next(),
        words.next().and_then(|n| n.parse().ok()),
    ) {
        (0, Some("found"), Some(n)) => Ok(Probe::Found(n)),
        (0, Some("gone"), Some(n)) => Ok(Probe::Gone(n)),
        _ => Err(SshError(format!(
            "cannot look for the step's spool on {}: {}",
            host.describe(),
            err.trim()
        ))),
    }
}

/// Stops every attempt of a step still running on the host (its whole
/// process group) and removes its spool folder.
pub async fn stop(host: &Host, base: &str) -> Result<(), SshError> {
    let script = script::stop_script(base, KILL_GRACE_SECS);
    host.run_raw("the stop script", &script, Duration::from_secs(15))
        .await
}

/// Why a step could not start because its spool folder could not be made
/// or written: the host, the folder, the host's error (its cause first:
/// `mkdir: cannot create directory 'X': No space left on device` gives
/// `No space left on device (mkdir: cannot create directory 'X')`), and
/// what to do.
fn no_spool_reason(host: &str, folder: &str, make: bool, error: &str) -> String {
    let error = error.trim();
    let said = match error.rsplit_once(": ") {
        Some((context, cause)) if !cause.is_empty() => format!("{cause} ({context})"),
        _ if error.is_empty() => "no error message".to_string(),
        _ => error.to_string(),
    };
    let doing = if make {
        "cannot make the spool folder"
    } else {
        "cannot write in the spool folder"
    };
    format!(
        "{doing} {folder} on {host}: {said}; the step was not started: free space on the host or make `~/.runbook/spool` a folder the login user can write (nothing else in its way), then `runbook resume`"
    )
}
