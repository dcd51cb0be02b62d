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
//! see `spool/`, which sends its commands and reads its answers through
//! [`RemoteShell::send`], [`RemoteShell::read_line`] and
//! [`RemoteShell::read_exact`]). A goodbye ends only the shell. This room
//! knows nothing of spools or of the pool.
//!
//! Short commands (`unless` checks, the engine's own probes) run attached,
//! through [`RemoteShell::run`]: each runs in a forked group (its
//! environment and `cd` do not leak),
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
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::connection::KILL_GRACE_SECS;
use super::quote::{exports, sh_quote};
use super::{LineSink, Stream};

/// The byte before every marker line the host's shell code writes.
pub const MARK: char = '\u{1e}';
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
    /// Which of its host's connections that is (they are counted).
    pub connection: u64,
    child: openssh::Child<Arc<Session>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: BufReader<ChildStderr>,
    /// The remote process group of the shell and everything it starts.
    pub pgid: String,
    /// The line that ends the shell without killing its process group.
    bye: String,
    /// Set by the spool once its functions are defined in this shell.
    pub detach_ready: bool,
}

/// How a step in a shell ended.
pub enum ShellEnd {
    /// The step exited with this code; the shell can be reused.
    Exited(i32),
    /// The connection (or the shell) went away.
    Lost(String),
}

/// One line of an attached command's channel (its trailing newline gone),
/// as the taggers wrote it.
#[derive(Debug, PartialEq, Eq)]
pub enum Tagged<'a> {
    /// A line the command wrote on this stream.
    Line(Stream, &'a str),
    /// The end marker of a stream, after the text of a last line that had
    /// no newline (empty when there was none); stdout's carries the exit
    /// code, `None` when it cannot be read.
    End {
        /// Which stream ended.
        stream: Stream,
        /// Text before the marker on the same line.
        before: &'a str,
        /// The exit code (stdout's marker only).
        code: Option<i32>,
    },
    /// A line with no tag: the shell itself complained (it could not fork).
    Untagged(&'a str),
}

/// Reads one line of an attached command's channel for the command whose
/// nonce is `nonce` (markers of any other nonce are plain text).
pub fn parse_tagged<'a>(line: &'a str, nonce: &str) -> Tagged<'a> {
    let (stream, text) = if let Some(text) = line.strip_prefix(OUT) {
        (Stream::Stdout, text)
    } else if let Some(text) = line.strip_prefix(ERR) {
        (Stream::Stderr, text)
    } else {
        return Tagged::Untagged(line);
    };
    let marker = match stream {
        Stream::Stdout => format!("{MARK}O{nonce} "),
        Stream::Stderr => format!("{MARK}E{nonce}"),
    };
    match text.find(&marker) {
        None => Tagged::Line(stream, text),
        Some(at) => Tagged::End {
            stream,
            before: &text[..at],
            code: match stream {
                Stream::Stdout => text[at + marker.len()..].trim().parse().ok(),
                Stream::Stderr => None,
            },
        },
    }
}

static NONCE: AtomicU64 = AtomicU64::new(0);

/// A token no other command of this engine uses, for its markers.
pub fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let h = sha2::Sha256::digest(format!("{t}-{n}-{}", std::process::id()).as_bytes());
    format!("{h:x}")[..16].to_string()
}

/// The first line a shell is sent: it learns its process group, says it
/// on stderr, and becomes the forwarder and the inner shell (see the
/// module notes). One line: the outer shell reads all of it before it runs
/// any of it, so the forwarder's `read` gets every later byte. `kill -SIG
/// -PGID` (no `--`) is the form dash's builtin accepts too.
fn hello(bye: &str) -> String {
    format!(
        "pg=$(cut -d' ' -f5 /proc/$$/stat 2>/dev/null || ps -o pgid= -p $$ 2>/dev/null); set -- $pg; pg=$1; \
         printf '\\036PGID %s\\n' \"$pg\" >&2; exec 2>&1; \
         {{ while IFS= read -r l || [ -n \"$l\" ]; do [ \"$l\" = {bye} ] && exit 0; printf '%s\\n' \"$l\"; done; \
         case $pg in ''|*[!0-9]*) exit 1;; esac; trap '' TERM; kill -TERM -$pg; sleep {grace}; kill -KILL -$pg; }} | sh -s 3>&1; exit\n",
        bye = sh_quote(bye),
        grace = KILL_GRACE_SECS,
    )
}

impl RemoteShell {
    /// Starts `sh -s` over the session (the host's connection number
    /// `connection`), learns its process group, and sets up the forwarder
    /// and the inner shell (see the module notes).
    pub async fn start(session: Arc<Session>, connection: u64) -> Result<RemoteShell, String> {
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
            connection,
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: BufReader::new(stderr),
            pgid: String::new(),
            bye: format!("{MARK}BYE{}", nonce()),
            detach_ready: false,
        };
        let hello = hello(&shell.bye);
        shell.send(&hello).await.map_err(|e| e.to_string())?;
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
        shell.send(PRELUDE).await.map_err(|e| e.to_string())?;
        Ok(shell)
    }

    /// Sends text to the inner shell, as it is.
    pub async fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.stdin.write_all(text.as_bytes()).await?;
        self.stdin.flush().await
    }

    /// Reads one line of the shell's stdout into `buf` (cleared first),
    /// newline included; 0 at the end of the channel.
    pub async fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        buf.clear();
        self.stdout.read_until(b'\n', buf).await
    }

    /// Reads exactly `buf.len()` bytes of the shell's stdout.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.stdout.read_exact(buf).await.map(|_| ())
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
        if let Err(e) = self.send(&block).await {
            return ShellEnd::Lost(e.to_string());
        }
        let (mut code, mut err_done) = (None, false);
        let mut buf = Vec::new();
        loop {
            match self.read_line(&mut buf).await {
                Ok(0) => {
                    return ShellEnd::Lost("the connection closed before the step ended".into())
                }
                Ok(_) => {}
                Err(e) => return ShellEnd::Lost(e.to_string()),
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            match parse_tagged(line, &nonce) {
                Tagged::Line(stream, text) => {
                    let _ = sink.send((stream, text.to_string()));
                }
                Tagged::Untagged(text) => {
                    let _ = sink.send((Stream::Stderr, text.to_string()));
                }
                Tagged::End {
                    stream,
                    before,
                    code: exit,
                } => {
                    if !before.is_empty() {
                        let _ = sink.send((stream, before.to_string()));
                    }
                    match (stream, exit) {
                        (Stream::Stdout, Some(c)) => code = Some(c),
                        (Stream::Stdout, None) => {
                            return ShellEnd::Lost("no exit code from the remote shell".into())
                        }
                        (Stream::Stderr, _) => err_done = true,
                    }
                }
            }
            if let (Some(code), true) = (code, err_done) {
                return ShellEnd::Exited(code);
            }
        }
    }

    /// Ends the shell (when it is no longer wanted), leaving what its steps
    /// started in the background running.
    pub async fn close(mut self) {
        let bye = format!("{}\n", self.bye);
        let _ = self.send(&bye).await;
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(500), self.child.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines_parse_by_stream_and_nonce() {
        let out = |t: &str| format!("{OUT}{t}");
        let err = |t: &str| format!("{ERR}{t}");
        assert_eq!(
            parse_tagged(&out("hello"), "n1"),
            Tagged::Line(Stream::Stdout, "hello")
        );
        assert_eq!(
            parse_tagged(&err("oops"), "n1"),
            Tagged::Line(Stream::Stderr, "oops")
        );
        // The end of stdout, with the exit code; after a last line with no
        // newline.
        assert_eq!(
            parse_tagged(&out(&format!("{MARK}On1 3")), "n1"),
            Tagged::End {
                stream: Stream::Stdout,
                before: "",
                code: Some(3)
            }
        );
        assert_eq!(
            parse_tagged(&out(&format!("tail{MARK}On1 0")), "n1"),
            Tagged::End {
                stream: Stream::Stdout,
                before: "tail",
                code: Some(0)
            }
        );
        assert_eq!(
            parse_tagged(&out(&format!("{MARK}On1 x")), "n1"),
            Tagged::End {
                stream: Stream::Stdout,
                before: "",
                code: None
            }
        );
        assert_eq!(
            parse_tagged(&err(&format!("e{MARK}En1")), "n1"),
            Tagged::End {
                stream: Stream::Stderr,
                before: "e",
                code: None
            }
        );
        // Another command's marker (a step that printed one) is text.
        let forged = out(&format!("{MARK}On2 0"));
        assert_eq!(
            parse_tagged(&forged, "n1"),
            Tagged::Line(Stream::Stdout, &forged[OUT.len_utf8()..])
        );
        assert_eq!(
            parse_tagged("sh: cannot fork", "n1"),
            Tagged::Untagged("sh: cannot fork")
        );
    }

    #[test]
    fn the_shell_code_parses() {
        for script in [PRELUDE.to_string(), hello("x'y")] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}\n{out:?}");
        }
    }
}
