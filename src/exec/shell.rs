//! A long-lived `sh` on a host that runs one step after another, so a step
//! costs one round trip instead of a new SSH channel (see bench/README.md).
//!
//! The channel's `sh -s` first turns itself into two processes: a forwarder
//! that copies the engine's lines to an inner `sh -s`, and that inner shell.
//! When the channel's input ends without the shell's goodbye token (the
//! engine died or the connection dropped), the forwarder ends the shell's
//! whole process group on the host (SIGTERM, then SIGKILL): its follower,
//! ticker and any `unless` check or command it ran. `run` steps are not in
//! it: they start detached, in sessions of their own, and go on (SPEC §8;
//! see `spool.rs` and [`RemoteShell::follow`]). A goodbye ends only the
//! shell.
//!
//! Short commands (`unless` checks, the engine's own probes) run attached,
//! through [`RemoteShell::run`]: each runs in a forked group (its environment and `cd` do not leak),
//! with stdin from /dev/null. Its stdout and its stderr each go through a
//! pipe of their own to a tagger that prefixes each line (\035 stdout, \037
//! stderr) and writes it to the channel. After the step's main process
//! exits, an end marker with a per-step nonce (and the exit code) goes down
//! each pipe; a tagger forwards it and from then on only drains its pipe into
//! /dev/null. So what a background process of the step writes after the step
//! ended never reaches the channel (it is dropped, and the writer does not
//! get SIGPIPE), and the next step does not wait for it. A timeout or an
//! interrupt kills the shell's whole process group and the shell is thrown
//! away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openssh::{ChildStderr, ChildStdin, ChildStdout, Session};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::ssh::sh_quote;
use super::{LineSink, Stream};

const MARK: char = '\u{1e}';
const OUT: char = '\u{1d}';
const ERR: char = '\u{1f}';

/// Defined once in each shell (sent after its first line):
///
/// `_rbt TAG END` copies stdin to stdout with TAG before each line until a
/// line containing END (forwarded too), then lets go of the channel and
/// drains stdin until every writer is gone.
///
/// `_rbs NONCE SCRIPT ENV` runs a step: fd 3 of the inner shell is the
/// channel. A forked group evaluates ENV (exports), runs SCRIPT with stdout
/// into the pipe of the stdout tagger and stderr (fd 4) into the pipe of the
/// stderr tagger, then writes the end markers. Each tagger is started in the
/// background by a pipeline element that exits at once, so the shell waits
/// for the step's main process, not for the drain.
const PRELUDE: &str = concat!(
    "_rbt() { while IFS= read -r l || [ -n \"$l\" ]; do printf '%s%s\\n' \"$1\" \"$l\"; case $l in *\"$2\"*) break;; esac; done; ",
    "exec >/dev/null 2>&1 3>&-; while read -r l; do :; done; }\n",
    "_rbs() { { { eval \"$3\"; sh -c \"$2\" </dev/null 2>&4 3>&- 4>&-; printf '\\036O%s %d\\n' \"$1\" \"$?\"; printf '\\036E%s\\n' \"$1\" >&4; } | ",
    "{ exec 5<&0; _rbt '\u{1d}' \"\u{1e}O$1\" <&5 5<&- 4>&- >&3 & }; } 4>&1 | ",
    "{ exec 5<&0; _rbt '\u{1f}' \"\u{1e}E$1\" <&5 5<&- & }; }\n",
);

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
    /// The line that ends the shell without killing its process group.
    bye: String,
    /// Whether the functions for detached steps are defined in it.
    detach_ready: bool,
}

/// How following a detached step in a shell ended.
pub enum FollowEnd {
    /// The follower on the host said so.
    Ended(super::spool::End),
    /// The connection (or the shell) went away; the step goes on.
    Lost(String),
}

/// How a step in a shell ended.
pub enum ShellEnd {
    /// The step exited with this code; the shell can be reused.
    Exited(i32),
    /// The connection (or the shell) went away.
    Lost(String),
}

/// `export` lines for a step's environment.
fn exports(env: &[(String, String)]) -> String {
    let mut exports = String::new();
    for (k, v) in env {
        // Names are validated as [A-Za-z_][A-Za-z0-9_]*; values are quoted.
        exports.push_str(&format!("{k}={}; export {k}\n", sh_quote(v)));
    }
    exports
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
    /// Starts `sh -s` over the session, learns its process group, and sets
    /// up the forwarder and the inner shell (see the module notes).
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
            bye: format!("{MARK}BYE{}", nonce()),
            detach_ready: false,
        };
        // One line: the outer shell reads all of it before it runs any of
        // it, so the forwarder's `read` gets every later byte. `kill -SIG
        // -PGID` (no `--`) is the form dash's builtin accepts too.
        let hello = format!(
            "pg=$(cut -d' ' -f5 /proc/$$/stat 2>/dev/null || ps -o pgid= -p $$ 2>/dev/null); set -- $pg; pg=$1; \
             printf '\\036PGID %s\\n' \"$pg\" >&2; exec 2>&1; \
             {{ while IFS= read -r l || [ -n \"$l\" ]; do [ \"$l\" = {bye} ] && exit 0; printf '%s\\n' \"$l\"; done; \
             case $pg in ''|*[!0-9]*) exit 1;; esac; trap '' TERM; kill -TERM -$pg; sleep {grace}; kill -KILL -$pg; }} | sh -s 3>&1; exit\n",
            bye = sh_quote(&shell.bye),
            grace = super::ssh::KILL_GRACE_SECS,
        );
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
        // Only now: sent with the first line, the outer shell could have
        // read it too.
        shell
            .stdin
            .write_all(PRELUDE.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        shell.stdin.flush().await.map_err(|e| e.to_string())?;
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
        let block = format!(
            "_rbs {nonce} {} {}\n",
            sh_quote(script),
            sh_quote(&exports(env))
        );
        if let Err(e) = async {
            self.stdin.write_all(block.as_bytes()).await?;
            self.stdin.flush().await
        }
        .await
        {
            return ShellEnd::Lost(e.to_string());
        }
        let out_end = format!("{MARK}O{nonce} ");
        let err_end = format!("{MARK}E{nonce}");
        let mut code = None;
        let mut err_done = false;
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
            if let Some(text) = line.strip_prefix(OUT) {
                match text.find(&out_end) {
                    Some(at) => {
                        if at > 0 {
                            let _ = sink.send((Stream::Stdout, text[..at].to_string()));
                        }
                        match text[at + out_end.len()..].trim().parse() {
                            Ok(c) => code = Some(c),
                            Err(_) => {
                                return ShellEnd::Lost("no exit code from the remote shell".into())
                            }
                        }
                    }
                    None => {
                        let _ = sink.send((Stream::Stdout, text.to_string()));
                    }
                }
            } else if let Some(text) = line.strip_prefix(ERR) {
                match text.find(&err_end) {
                    Some(at) => {
                        if at > 0 {
                            let _ = sink.send((Stream::Stderr, text[..at].to_string()));
                        }
                        err_done = true;
                    }
                    None => {
                        let _ = sink.send((Stream::Stderr, text.to_string()));
                    }
                }
            } else {
                // Untagged: the shell itself complained (e.g. it could not fork).
                let _ = sink.send((Stream::Stderr, line.to_string()));
            }
            if let (Some(code), true) = (code, err_done) {
                return ShellEnd::Exited(code);
            }
        }
    }

    /// Starts a detached step in attempt folder `base/attempt` unless it was
    /// started there already (`start` None: only follows it), and follows
    /// its spool from `progress` to its end, sending its lines to `sink`.
    /// `before` is sent first (spool folders to remove). Cancel-safe in the
    /// sense of `run`: a dropped future leaves the shell unusable, and the
    /// step runs on.
    pub async fn follow(
        &mut self,
        before: &str,
        base: &str,
        attempt: i64,
        start: Option<(&str, &[(String, String)])>,
        progress: &mut super::spool::Progress,
        sink: &LineSink,
    ) -> FollowEnd {
        use super::spool::{self, Said};
        let nonce = nonce();
        let mut block = String::new();
        if !self.detach_ready {
            block.push_str(&spool::prelude());
        }
        block.push_str(before);
        let exports = start.map(|(_, env)| exports(env)).unwrap_or_default();
        block.push_str(&spool::follow_command(
            &nonce,
            base,
            attempt,
            (progress.out.offset, progress.err.offset),
            start.map(|(script, _)| (script, exports.as_str())),
        ));
        if let Err(e) = async {
            self.stdin.write_all(block.as_bytes()).await?;
            self.stdin.flush().await
        }
        .await
        {
            return FollowEnd::Lost(e.to_string());
        }
        self.detach_ready = true;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match self.stdout.read_until(b'\n', &mut buf).await {
                Ok(0) => return FollowEnd::Lost("the connection closed".into()),
                Ok(_) => {}
                Err(e) => return FollowEnd::Lost(e.to_string()),
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            let said = line
                .strip_prefix(MARK)
                .and_then(|l| spool::parse(l, &nonce));
            match said {
                Some(Said::Group { pgid, started }) => {
                    progress.pgid = Some(pgid);
                    progress.started.get_or_insert(started);
                }
                Some(Said::Chunk { stream, len }) => {
                    let mut chunk = vec![0; len];
                    if let Err(e) = self.stdout.read_exact(&mut chunk).await {
                        return FollowEnd::Lost(e.to_string());
                    }
                    let state = match stream {
                        Stream::Stdout => &mut progress.out,
                        Stream::Stderr => &mut progress.err,
                    };
                    for text in state.take(&chunk) {
                        let _ = sink.send((stream, text));
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

    /// Ends the shell (when it is no longer wanted), leaving what its steps
    /// started in the background running.
    pub async fn close(mut self) {
        let bye = format!("{}\n", self.bye);
        let _ = self.stdin.write_all(bye.as_bytes()).await;
        let _ = self.stdin.flush().await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(500), self.child.wait()).await;
    }
}
