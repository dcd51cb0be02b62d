//! A long-lived `sh` on a host that runs one step after another, so a step
//! costs one round trip instead of a new SSH channel (see bench/README.md).
//!
//! Each step runs in a subshell (its environment and `cd` do not leak), with
//! stdin from /dev/null; after it, the shell prints an end marker with a
//! per-step nonce and the exit code on stdout, and the marker on stderr, so
//! both streams are known to be drained. A timeout or an interrupt kills the
//! shell's whole process group and the shell is thrown away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openssh::{ChildStderr, ChildStdin, ChildStdout, Session};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::ssh::sh_quote;
use super::{LineSink, Stream};

const MARK: char = '\u{1e}';
const TAG: char = '\u{1f}';

/// A shell on a host, idle between steps.
pub struct RemoteShell {
    /// The master connection it runs over.
    pub session: Arc<Session>,
    child: openssh::Child<Arc<Session>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: BufReader<ChildStderr>,
    /// The remote process group of the shell and everything it starts.
    pub pgid: String,
}

/// How a step in a shell ended.
pub enum ShellEnd {
    /// The step exited with this code; the shell can be reused.
    Exited(i32),
    /// The connection (or the shell) went away.
    Lost(String),
}

static NONCE: AtomicU64 = AtomicU64::new(0);

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let h = sha2::Sha256::digest(format!("{t}-{n}-{}", std::process::id()).as_bytes());
    format!("{h:x}")[..16].to_string()
}

use sha2::Digest;

impl RemoteShell {
    /// Starts `sh -s` over the session and learns its process group.
    pub async fn start(session: Arc<Session>) -> Result<RemoteShell, String> {
        let mut cmd = Session::to_raw_command(session.clone(), "sh -s");
        cmd.stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let mut child = cmd.spawn().await.map_err(|e| e.to_string())?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            return Err("the remote shell has no pipes".into());
        };
        let mut shell = RemoteShell {
            session,
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: BufReader::new(stderr),
            pgid: String::new(),
        };
        let hello = "printf '\\036PGID %s\\n' \"$(cut -d' ' -f5 /proc/$$/stat 2>/dev/null || ps -o pgid= -p $$ 2>/dev/null)\" >&2; exec 2>&1\n";
        shell
            .stdin
            .write_all(hello.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        shell.stdin.flush().await.map_err(|e| e.to_string())?;
        let mut line = String::new();
        shell
            .stderr
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        match line.trim_end().strip_prefix(&format!("{MARK}PGID ")) {
            Some(pgid) => shell.pgid = pgid.trim().to_string(),
            None => return Err(format!("the remote shell did not start (it said {line:?})")),
        }
        Ok(shell)
    }

    /// Runs one script to its end, forwarding its lines. Cancel-safe only
    /// in the sense that a dropped future leaves the shell unusable.
    pub async fn run(
        &mut self,
        script: &str,
        env: &[(String, String)],
        sink: &LineSink,
    ) -> ShellEnd {
        let nonce = nonce();
        // The step's stdout goes straight to the shell's stdout (fd 3); its
        // stderr, then the exit code line, go through a pipe to a loop that
        // tags each line with \037. Everything arrives on one stream, and the
        // end marker is one small write: no Nagle stall between two streams.
        let mut block = String::from("(\n");
        for (k, v) in env {
            // Names are validated as [A-Za-z_][A-Za-z0-9_]*; values are quoted.
            block.push_str(&format!("{k}={}; export {k}\n", sh_quote(v)));
        }
        block.push_str(&format!(
            "{{ sh -c {} </dev/null 2>&1 1>&3 3>&-; printf '\\036END{nonce} %d\\n' \"$?\"; }} | \
             while IFS= read -r l || [ -n \"$l\" ]; do printf '\\037%s\\n' \"$l\"; done\n) 3>&1\n",
            sh_quote(script)
        ));
        if let Err(e) = async {
            self.stdin.write_all(block.as_bytes()).await?;
            self.stdin.flush().await
        }
        .await
        {
            return ShellEnd::Lost(e.to_string());
        }
        let marker = format!("{TAG}{MARK}END{nonce} ");
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match self.stdout.read_until(b'\n', &mut buf).await {
                Ok(0) => {
                    return ShellEnd::Lost("the connection closed before the step ended".into())
                }
                Ok(_) => {}
                Err(e) => return ShellEnd::Lost(e.to_string()),
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(at) = line.find(&marker) {
                if at > 0 {
                    let _ = sink.send((Stream::Stdout, line[..at].to_string()));
                }
                return match line[at + marker.len()..].trim().parse() {
                    Ok(code) => ShellEnd::Exited(code),
                    Err(_) => ShellEnd::Lost("no exit code from the remote shell".into()),
                };
            }
            match line.strip_prefix(TAG) {
                Some(err) => {
                    let _ = sink.send((Stream::Stderr, err.to_string()));
                }
                None => {
                    let _ = sink.send((Stream::Stdout, line.to_string()));
                }
            }
        }
    }

    /// Ends the shell (when it is no longer wanted).
    pub async fn close(mut self) {
        let _ = self.stdin.write_all(b"exit 0\n").await;
        let _ = self.stdin.flush().await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(500), self.child.wait()).await;
    }
}
