//! What the follower of a detached step says on the host's shell, parsed:
//! its process group, chunks of its output files, its end; and where the
//! engine has got to in each stream. Pure: no I/O.

use crate::exec::Stream;

/// What the follower on the host says, parsed from its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// The attempt's process group, and whether this follower started it.
    Group { pgid: String, started: bool },
    /// A chunk of this many bytes of a stream follows.
    Chunk { stream: Stream, len: usize },
    /// The end: an exit code, or why there is none.
    End(End),
}

/// How following an attempt ended on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The step exited with this code.
    Exited(i32),
    /// It wrote no exit status and the host rebooted since it started (or
    /// it never recorded its process group).
    Vanished,
    /// Its process group is gone, with no exit status, in the boot it
    /// started in: it was killed from outside (by hand, the OOM killer).
    Killed,
    /// The attempt was marked as never started (see `probe_script`).
    Gone,
    /// The host has no `setsid`.
    Unsupported,
    /// The spool folder could not be made (`make`) or written in: a file in
    /// its way, a full disk. What the host said. The step did not start.
    NoSpool {
        /// Whether it was making the folder (or else writing in it).
        make: bool,
        /// The host's error message.
        error: String,
    },
}

/// Parses a follower line (without its leading `\036`) for `nonce`.
pub fn parse(line: &str, nonce: &str) -> Option<Said> {
    let kind = line.chars().next()?;
    let rest = line[1..].strip_prefix(nonce)?.strip_prefix(' ')?;
    match kind {
        'P' => {
            let mut parts = rest.split_whitespace();
            let pgid = parts.next()?.to_string();
            let started = parts.next()? == "started";
            pgid.chars()
                .all(|c| c.is_ascii_digit())
                .then_some(Said::Group { pgid, started })
        }
        'C' => {
            let mut parts = rest.split_whitespace();
            let stream = match parts.next()? {
                "O" => Stream::Stdout,
                "E" => Stream::Stderr,
                _ => return None,
            };
            let len = parts.next()?.parse().ok()?;
            Some(Said::Chunk { stream, len })
        }
        'X' => Some(Said::End(match rest.trim() {
            spool if spool.starts_with("nospool") => {
                let detail = spool["nospool".len()..].trim_start();
                let (make, error) = match detail.split_once(' ') {
                    Some(("make", e)) => (true, e),
                    Some(("write", e)) => (false, e),
                    _ => (true, detail),
                };
                End::NoSpool {
                    make,
                    error: error.trim().to_string(),
                }
            }
            "lost" => End::Vanished,
            "killed" => End::Killed,
            "gone" => End::Gone,
            "nosetsid" => End::Unsupported,
            code => End::Exited(code.parse().ok()?),
        })),
        _ => None,
    }
}

/// One stream of an attempt as the engine has it: bytes received so far
/// and the line not yet ended.
#[derive(Debug, Default, Clone)]
pub struct StreamState {
    /// Bytes of the spool file received.
    pub offset: u64,
    partial: Vec<u8>,
}

impl StreamState {
    /// Takes a chunk; returns the lines it completes.
    pub fn take(&mut self, bytes: &[u8]) -> Vec<String> {
        self.offset += bytes.len() as u64;
        let mut lines = Vec::new();
        for b in bytes {
            if *b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                let mut text = String::from_utf8_lossy(&line).to_string();
                if text.ends_with('\r') {
                    text.pop();
                }
                lines.push(text);
            } else {
                self.partial.push(*b);
            }
        }
        lines
    }

    /// The last line, when the stream ended without a newline.
    pub fn rest(&mut self) -> Option<String> {
        (!self.partial.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.partial)).to_string())
    }
}

/// Where following an attempt has got to; survives reconnections.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Standard output.
    pub out: StreamState,
    /// Standard error.
    pub err: StreamState,
    /// The attempt's process group on the host, once known.
    pub pgid: Option<String>,
    /// Whether this engine started it (false: it was running already).
    pub started: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_once_and_whole() {
        let mut s = StreamState::default();
        assert_eq!(s.take(b"one\ntw"), vec!["one"]);
        assert_eq!(s.take(b"o\r\nthr"), vec!["two"]);
        assert_eq!(s.offset, 12);
        assert_eq!(s.take(b""), Vec::<String>::new());
        assert_eq!(s.rest().as_deref(), Some("thr"));
        assert_eq!(s.rest(), None);
    }

    #[test]
    fn follower_lines_parse_for_their_nonce_only() {
        use crate::exec::Stream;
        assert_eq!(
            parse("Pn1 123 started", "n1"),
            Some(Said::Group {
                pgid: "123".into(),
                started: true
            })
        );
        assert_eq!(parse("Pn2 123 started", "n1"), None);
        assert_eq!(
            parse("Cn1 E 42", "n1"),
            Some(Said::Chunk {
                stream: Stream::Stderr,
                len: 42
            })
        );
        assert_eq!(parse("Xn1 3", "n1"), Some(Said::End(End::Exited(3))));
        assert_eq!(parse("Xn1 lost", "n1"), Some(Said::End(End::Vanished)));
        assert_eq!(parse("Xn1 killed", "n1"), Some(Said::End(End::Killed)));
        assert_eq!(parse("Pn1 1;rm 1 x", "n1"), None);
        assert_eq!(
            parse(
                "Xn1 nospool make mkdir: cannot create directory 'x': Not a directory",
                "n1"
            ),
            Some(Said::End(End::NoSpool {
                make: true,
                error: "mkdir: cannot create directory 'x': Not a directory".into()
            }))
        );
        assert_eq!(
            parse(
                "Xn1 nospool write cat: write error: No space left on device",
                "n1"
            ),
            Some(Said::End(End::NoSpool {
                make: false,
                error: "cat: write error: No space left on device".into()
            }))
        );
    }
}
