//! Local commands: `sh -c` in a process group of their own, so a timeout or
//! an interrupt ends the command and everything it started.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{LineSink, Outcome, Stream};

/// Time a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Time to keep reading output after the shell exits, for lines its
/// background children still write to the inherited pipes.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// A local shell command.
pub struct LocalCommand<'a> {
    /// The script for `sh -c`.
    pub script: &'a str,
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// Working directory.
    pub dir: &'a Path,
    /// Time limit.
    pub timeout: Option<Duration>,
}

/// `RUNBOOK_STATE` and the `PG*` variables: never passed on to a step.
pub fn is_engine_var(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name == b"RUNBOOK_STATE" || name.starts_with(b"PG")
}

/// Runs the command to completion, timeout or cancellation.
pub async fn run(cmd: LocalCommand<'_>, cancel: &CancellationToken, sink: &LineSink) -> Outcome {
    let mut command = Command::new("sh");
    // The state's URL and the PostgreSQL client's variables (PGPASSWORD
    // above all) are the engine's, not the step's (SPEC §11); a step's
    // own `env` may still set them.
    for (name, _) in std::env::vars_os() {
        if is_engine_var(&name) {
            command.env_remove(&name);
        }
    }
    command
        .arg("-c")
        .arg(cmd.script)
        .current_dir(cmd.dir)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Outcome::Failed {
                exit_code: None,
                reason: format!("cannot start sh: {e}"),
            }
        }
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let out = tokio::spawn(pump(child.stdout.take(), Stream::Stdout, sink.clone()));
    let err = tokio::spawn(pump(child.stderr.take(), Stream::Stderr, sink.clone()));

    let deadline = super::deadline(cmd.timeout);
    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => match status.code() {
                Some(0) => Outcome::Succeeded { exit_code: Some(0), note: None },
                Some(code) => Outcome::Failed { exit_code: Some(code), reason: format!("exited with code {code}") },
                None => Outcome::Failed { exit_code: None, reason: describe_signal(&status) },
            },
            Err(e) => Outcome::Failed { exit_code: None, reason: format!("cannot wait for the command: {e}") },
        },
        _ = deadline => {
            stop_group(pgid, &mut child).await;
            Outcome::Failed {
                exit_code: None,
                reason: format!("timed out after {}", humantime::format_duration(cmd.timeout.unwrap_or_default())),
            }
        }
        _ = cancel.cancelled() => {
            stop_group(pgid, &mut child).await;
            Outcome::Interrupted
        }
    };
    for pump in [out, err] {
        let _ = tokio::time::timeout(DRAIN_GRACE, pump).await;
    }
    outcome
}

/// SIGTERM to the whole group, then SIGKILL after a grace period.
async fn stop_group(pgid: Option<Pid>, child: &mut tokio::process::Child) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        // Children that ignored SIGTERM while the shell exited.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let _ = child.wait().await;
}

fn describe_signal(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(sig) => format!(
            "killed by signal {}",
            Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| sig.to_string())
        ),
        None => "ended without an exit code".to_string(),
    }
}

/// Reads lines from a pipe and sends them on, lossily decoded.
pub async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, stream: Stream, sink: LineSink) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                if sink.send((stream, line)).is_err() {
                    return;
                }
            }
        }
    }
}
