//! An upload on a host: the hashes of what is there, the mirror's extras
//! removed, the changed files written in one round trip; across dropped
//! connections, within the step's timeout.

use std::time::Duration;

use tokio::time::Instant;

use super::script::{hash_script, parse_hashes, write_script, Existing};
use super::{failed, sha, summary, sync_root, FileToWrite, Sync};
use crate::exec::connection::{until, SshError, RECONNECT_FIRST, RECONNECT_MAX};
use crate::exec::mirror::{self, Extras, Keep};
use crate::exec::quote::sh_quote;
use crate::exec::ssh::SshPool;
use crate::exec::{LineSink, Outcome, Stream};

/// What is being put on a host: the files, their mode, and with `delete:
/// true` the root that mirrors them.
pub struct Remote<'a> {
    /// The host's name in the runbook.
    pub host: &'a str,
    /// The files and their destinations.
    pub files: &'a [FileToWrite],
    /// The step's `mode`.
    pub mode: Option<u32>,
    /// The mirror of a `delete: true` upload.
    pub sync: Option<Sync<'a>>,
    /// The step's timeout: the whole upload, reconnections included.
    pub timeout: Option<Duration>,
}

/// Writes the files on a host over its master connection.
/// With `sync`, as for `local`: the listing comes in the same round trip as
/// the hashes, and the extras are removed before anything is written.
///
/// When the connection drops mid-way, the step is not failed: the engine
/// reconnects (0.2 s, doubling to 5 s, within the step's timeout) and
/// starts over, and the hashes skip every file already in place; a file
/// cut short was never visible at its destination. Only a host that cannot
/// be reached again before the timeout fails the step. A host that cannot
/// be reached at all at first fails it at once, as for `run` steps.
pub async fn remote(pool: &SshPool, up: Remote<'_>, sink: &LineSink) -> Outcome {
    let sync = match sync_root(up.sync) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let host = up.host;
    let deadline = up.timeout.map(|t| Instant::now() + t);
    let mut tried = vec![false; up.files.len()];
    let mut removed = 0;
    let mut backoff = RECONNECT_FIRST;
    let mut lost: Option<String> = None;
    let mut reconnects = 0;
    loop {
        let session = tokio::select! {
            s = pool.session(host) => s,
            _ = until(deadline) => return timed_out(host, &up, lost),
        };
        let session = match session {
            Ok(s) => s,
            Err(e) if lost.is_none() => return failed(e.0),
            Err(e) => {
                lost = Some(e.0);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = until(deadline) => return timed_out(host, &up, lost),
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        let outcome = tokio::select! {
            o = remote_once(pool, &up, sync, (&mut tried, &mut removed), sink) => o,
            _ = until(deadline) => return timed_out(host, &up, None),
        };
        match outcome {
            Outcome::Failed { reason, .. } if pool.dropped(host, &session).await => {
                tracing::warn!(host, error = %reason, "lost the SSH connection during an upload; reconnecting");
                let _ = sink.send((
                    Stream::Stderr,
                    format!("lost the SSH connection to `{host}` during the upload ({reason}); reconnecting"),
                ));
                lost = Some(reason);
                backoff = RECONNECT_FIRST;
                reconnects += 1;
            }
            Outcome::Succeeded { exit_code, note } if reconnects > 0 => {
                let again = if reconnects == 1 {
                    "once".to_string()
                } else {
                    format!("{reconnects} times")
                };
                return Outcome::Succeeded {
                    exit_code,
                    note: Some(format!(
                        "{}; the SSH connection was lost and re-established {again}",
                        note.unwrap_or_default()
                    )),
                };
            }
            other => return other,
        }
    }
}

/// The step's timeout passed: while the host could not be reached again
/// (`lost`), or mid-transfer.
fn timed_out(host: &str, up: &Remote<'_>, lost: Option<String>) -> Outcome {
    let timeout = humantime::format_duration(up.timeout.unwrap_or_default());
    failed(match lost {
        Some(why) => format!(
            "lost the SSH connection to `{host}` during the upload and could not reconnect within the step's timeout ({timeout}): {why}; the files already in place stay, none is half-written, and `runbook resume` writes the rest"
        ),
        None => format!(
            "timed out after {timeout} on `{host}` during the upload; the files already in place stay, none is half-written"
        ),
    })
}

/// What one round trip found on the host: each destination's hash and
/// mode, and, when mirroring, the extras under the root.
struct Found {
    remote: Vec<Existing>,
    extras: Extras,
}

/// The files to write (with the mode each gets), the `chmod`s of files
/// in place, and how many files an earlier pass wrote.
type Writes<'f> = (Vec<(&'f FileToWrite, Option<u32>)>, Vec<String>, usize);

/// One pass of [`remote`]: the hashes, then what changed. `tried` marks
/// the files an earlier pass set out to write: found in place now, they
/// count as written; `removed` counts the extras removed by every pass.
async fn remote_once(
    pool: &SshPool,
    up: &Remote<'_>,
    sync: Option<Sync<'_>>,
    (tried, removed): (&mut [bool], &mut usize),
    sink: &LineSink,
) -> Outcome {
    let host = up.host;
    let found = match look(pool, up, sync, sink).await {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    if let Some(s) = sync {
        *removed += match mirror::remote_remove(pool, host, s.root, &found.extras, sink).await {
            Ok(n) => n,
            Err(reason) => return failed(reason),
        };
    }
    let (to_write, chmods, carried) = writes(up, sync, &found, tried, sink);
    let written = match write_remote(pool, host, &to_write, sink).await {
        Ok(n) => n,
        Err(outcome) => return outcome,
    };
    if !chmods.is_empty() {
        if let Err(e) = pool.output(host, &chmods.join(" && "), None).await {
            return failed(e.0);
        }
    }
    summary(written + carried, up.files.len(), *removed)
}

/// One round trip learns the hash and mode of every destination (and,
/// when mirroring, what is under the root).
async fn look(
    pool: &SshPool,
    up: &Remote<'_>,
    sync: Option<Sync<'_>>,
    sink: &LineSink,
) -> Result<Found, Outcome> {
    let (host, files) = (up.host, up.files);
    let mut check = hash_script(files);
    if let Some(s) = sync {
        check.push_str(&mirror::list_script(s.root));
    }
    let (code, out, err) = run_script(pool, host, &check)
        .await
        .map_err(|e| failed(e.0))?;
    let Some(Sync { root, exclude }) = sync else {
        let remote = parse_hashes(&out, files.len());
        return Ok(Found {
            remote,
            extras: Extras::default(),
        });
    };
    let cannot_list = || {
        failed(format!(
            "cannot list {root} on `{host}` (exit {code}): {}",
            err.trim()
        ))
    };
    let marker = mirror::LISTING.as_bytes();
    let at = out
        .windows(marker.len())
        .position(|w| w == marker)
        .ok_or_else(cannot_list)?;
    if code != 0 {
        return Err(cannot_list());
    }
    let keep = Keep::new(root, files.iter().map(|f| f.dest.as_str()), exclude).map_err(failed)?;
    let listing = &out[at + marker.len()..];
    let extras = mirror::parse_listing(root, listing, &keep, sink).map_err(failed)?;
    Ok(Found {
        remote: parse_hashes(&out[..at], files.len()),
        extras,
    })
}

/// Which files to write (those not in place, or shadowed by an extra),
/// which modes to set on the ones in place, and how many files in place
/// an earlier pass wrote; says `unchanged` for each file in place.
fn writes<'f>(
    up: &Remote<'f>,
    sync: Option<Sync<'_>>,
    found: &Found,
    tried: &mut [bool],
    sink: &LineSink,
) -> Writes<'f> {
    let prefix = sync.map(|s| format!("{}/", s.root.trim_end_matches('/')));
    let (mut to_write, mut chmods, mut carried) = (Vec::new(), Vec::new(), 0);
    for ((f, there), tried) in up.files.iter().zip(&found.remote).zip(tried.iter_mut()) {
        let shadowed = prefix
            .as_deref()
            .and_then(|p| f.dest.strip_prefix(p))
            .is_some_and(|rel| found.extras.shadows(rel));
        let same = !shadowed && there.as_ref().is_some_and(|(h, _)| *h == sha(&f.bytes));
        if !same {
            *tried = true;
            to_write.push((f, up.mode.or(there.as_ref().and_then(|(_, m)| *m))));
            continue;
        }
        if let (Some(mode), Some((_, Some(existing)))) = (up.mode, there) {
            if mode != *existing {
                chmods.push(format!("chmod {mode:o} {}", sh_quote(&f.dest)));
            }
        }
        let _ = sink.send((Stream::Stdout, format!("unchanged {}", f.dest)));
        if *tried {
            carried += 1;
        }
    }
    (to_write, chmods, carried)
}

/// Runs a script on the host: in its long-lived shell when it is small, or
/// fed to `sh -s` on a channel of its own when it is too long to be one
/// command-line argument (Linux allows 128 KiB).
pub async fn run_script(
    pool: &SshPool,
    host: &str,
    script: &str,
) -> Result<(i32, Vec<u8>, String), SshError> {
    if script.len() < 64 * 1024 {
        pool.output(host, script, None).await
    } else {
        pool.output(host, "sh -s", Some(script.as_bytes())).await
    }
}

/// Writes the changed files on the host over one channel (one round trip,
/// however many files); the number written.
async fn write_remote(
    pool: &SshPool,
    host: &str,
    files: &[(&FileToWrite, Option<u32>)],
    sink: &LineSink,
) -> Result<usize, Outcome> {
    if files.is_empty() {
        return Ok(0);
    }
    let script = write_script(files);
    let (code, out, err) = pool
        .output(host, "sh -s", Some(script.as_bytes()))
        .await
        .map_err(|e| failed(e.0))?;
    let mut written = 0;
    let mut failed_at = None;
    for line in String::from_utf8_lossy(&out).lines() {
        let index = |p: &str| line.strip_prefix(p).and_then(|i| i.parse::<usize>().ok());
        if let Some(i) = index("fail ") {
            failed_at = Some(i);
        }
        let Some((f, _)) = index("ok ").and_then(|i| files.get(i)) else {
            continue;
        };
        written += 1;
        let _ = sink.send((
            Stream::Stdout,
            format!("wrote {} ({} bytes)", f.dest, f.bytes.len()),
        ));
    }
    if failed_at.is_none() && out.starts_with(b"fail folders") {
        return Err(Outcome::Failed {
            exit_code: Some(code),
            reason: format!("cannot make the folders on `{host}`: {}", err.trim()),
        });
    }
    if code != 0 || written < files.len() {
        let dest = files
            .get(failed_at.unwrap_or(written))
            .map(|(f, _)| f.dest.as_str())
            .unwrap_or("?");
        return Err(Outcome::Failed {
            exit_code: Some(code),
            reason: format!("cannot write {dest} on `{host}`: {}", err.trim()),
        });
    }
    Ok(written)
}
