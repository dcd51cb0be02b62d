//! `upload`: files or folders copied to a host (or locally), written
//! atomically (temp file + rename), skipped when the content is unchanged.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::mirror::{self, Extras, Keep};
use super::ssh::{sh_quote, until, SshPool, RECONNECT_FIRST, RECONNECT_MAX};
use super::{LineSink, Outcome, Stream};
pub use crate::action::FileToWrite;
use tokio::time::Instant;

pub(super) fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn summary(written: usize, total: usize, removed: usize) -> Outcome {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let note = if written == 0 && removed == 0 {
        format!(
            "unchanged ({total} file{} already up to date)",
            plural(total)
        )
    } else if removed == 0 {
        format!("{written} of {total} file{} written", plural(total))
    } else {
        format!(
            "{written} of {total} file{} written, {removed} removed",
            plural(total)
        )
    };
    Outcome::Succeeded {
        exit_code: None,
        note: Some(note),
    }
}

fn failed(reason: String) -> Outcome {
    Outcome::Failed {
        exit_code: None,
        reason,
    }
}

/// A `delete: true` upload's mirror: the root all files go under, and the
/// `exclude` patterns whose paths under it are kept.
#[derive(Debug, Clone, Copy)]
pub struct Sync<'a> {
    /// The upload's `dest`.
    pub root: &'a str,
    /// The upload's `exclude` patterns.
    pub exclude: &'a [String],
}

/// With `delete: true`, the mirror; the refusal when its root is no folder
/// of its own.
fn sync_root(sync: Option<Sync<'_>>) -> Result<Option<Sync<'_>>, Outcome> {
    match sync {
        Some(s) => match mirror::unsafe_root(s.root) {
            Some(problem) => Err(failed(format!(
                "`delete: true` refuses this dest: {problem}"
            ))),
            None => Ok(Some(s)),
        },
        None => Ok(None),
    }
}

/// Writes the files on this machine.
/// With `sync` (the dest of a `delete: true` upload), what is under it and
/// not among `files` is removed first.
pub fn local(
    files: &[FileToWrite],
    mode: Option<u32>,
    sync: Option<Sync<'_>>,
    dir: &Path,
    sink: &LineSink,
) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let mut removed = 0;
    match sync_root(sync) {
        Err(outcome) => return outcome,
        Ok(None) => {}
        Ok(Some(sync)) => {
            let keep = match Keep::new(
                sync.root,
                files.iter().map(|f| f.dest.as_str()),
                sync.exclude,
            ) {
                Ok(k) => k,
                Err(reason) => return failed(reason),
            };
            let root = dir.join(sync.root);
            let extras = match mirror::local_extras(&root, &keep, sink) {
                Ok(e) => e,
                Err(reason) => return failed(reason),
            };
            removed = match mirror::local_remove(&root, &extras, sink) {
                Ok(n) => n,
                Err(reason) => return failed(reason),
            };
        }
    }
    let mut written = 0;
    for f in files {
        let dest = dir.join(&f.dest);
        let current = std::fs::read(&dest).ok();
        let existing_mode = std::fs::metadata(&dest)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777);
        if current.as_deref().map(sha) == Some(sha(&f.bytes)) {
            if let (Some(mode), Some(existing)) = (mode, existing_mode) {
                if mode != existing {
                    if let Err(e) =
                        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    {
                        return Outcome::Failed {
                            exit_code: None,
                            reason: format!("cannot chmod {}: {e}", dest.display()),
                        };
                    }
                }
            }
            let _ = sink.send((Stream::Stdout, format!("unchanged {}", f.dest)));
            continue;
        }
        let result = (|| -> std::io::Result<()> {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = dest.with_file_name(format!(
                ".{}.runbook-tmp.{}",
                dest.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                std::process::id()
            ));
            std::fs::write(&tmp, &f.bytes)?;
            if let Some(m) = mode.or(existing_mode) {
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))?;
            }
            std::fs::rename(&tmp, &dest)
        })();
        if let Err(e) = result {
            return Outcome::Failed {
                exit_code: None,
                reason: format!("cannot write {}: {e}", dest.display()),
            };
        }
        written += 1;
        let _ = sink.send((
            Stream::Stdout,
            format!("wrote {} ({} bytes)", f.dest, f.bytes.len()),
        ));
    }
    summary(written, files.len(), removed)
}

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
    let (host, files, mode) = (up.host, up.files, up.mode);
    // One round trip learns the hash and mode of every destination (and,
    // when mirroring, what is under the root).
    let mut check = hash_script(files);
    if let Some(s) = sync {
        check.push_str(&mirror::list_script(s.root));
    }
    let (code, out, err) = match run_script(pool, host, &check).await {
        Ok(r) => r,
        Err(e) => return failed(e.0),
    };
    let (hashes, listing) = match sync {
        None => (&out[..], None),
        Some(Sync { root, exclude }) => {
            let marker = mirror::LISTING.as_bytes();
            match out.windows(marker.len()).position(|w| w == marker) {
                Some(at) => (&out[..at], Some((root, exclude, &out[at + marker.len()..]))),
                None => {
                    return failed(format!(
                        "cannot list {root} on `{host}` (exit {code}): {}",
                        err.trim()
                    ))
                }
            }
        }
    };
    let mut extras = Extras::default();
    if let Some((root, exclude, listing)) = listing {
        if code != 0 {
            return failed(format!(
                "cannot list {root} on `{host}` (exit {code}): {}",
                err.trim()
            ));
        }
        let keep = match Keep::new(root, files.iter().map(|f| f.dest.as_str()), exclude) {
            Ok(k) => k,
            Err(reason) => return failed(reason),
        };
        extras = match mirror::parse_listing(root, listing, &keep, sink) {
            Ok(e) => e,
            Err(reason) => return failed(reason),
        };
        *removed += match mirror::remote_remove(pool, host, root, &extras, sink).await {
            Ok(n) => n,
            Err(reason) => return failed(reason),
        };
    }
    let prefix = sync.map(|s| format!("{}/", s.root.trim_end_matches('/')));
    let remote = parse_hashes(hashes, files.len());
    let mut chmods = Vec::new();
    let mut to_write: Vec<(&FileToWrite, Option<u32>)> = Vec::new();
    let mut carried = 0;
    for ((f, there), tried) in files.iter().zip(&remote).zip(tried.iter_mut()) {
        let shadowed = prefix
            .as_deref()
            .and_then(|p| f.dest.strip_prefix(p))
            .is_some_and(|rel| extras.shadows(rel));
        let same = !shadowed && there.as_ref().is_some_and(|(h, _)| *h == sha(&f.bytes));
        if same {
            if let (Some(mode), Some((_, Some(existing)))) = (mode, there) {
                if mode != *existing {
                    chmods.push(format!("chmod {mode:o} {}", sh_quote(&f.dest)));
                }
            }
            let _ = sink.send((Stream::Stdout, format!("unchanged {}", f.dest)));
            if *tried {
                carried += 1;
            }
            continue;
        }
        *tried = true;
        to_write.push((f, mode.or(there.as_ref().and_then(|(_, m)| *m))));
    }
    let written = match write_remote(pool, host, &to_write, sink).await {
        Ok(n) => n,
        Err(outcome) => return outcome,
    };
    if !chmods.is_empty() {
        if let Err(e) = pool.output(host, &chmods.join(" && "), None).await {
            return Outcome::Failed {
                exit_code: None,
                reason: e.0,
            };
        }
    }
    summary(written + carried, files.len(), *removed)
}

/// What is known of a destination on the host: its hash and mode.
type Existing = Option<(String, Option<u32>)>;

/// A script that prints `E I` for each destination I that is a file, then
/// the hashes of those files (one `sha256sum`), then their modes (one
/// `stat`): a constant number of processes however many files there are.
pub(super) fn hash_script(files: &[FileToWrite]) -> String {
    let mut script = String::from("i=0; set --\nfor f in");
    for f in files {
        script.push(' ');
        script.push_str(&sh_quote(&f.dest));
    }
    script.push_str(
        "; do if [ -f \"$f\" ]; then set -- \"$@\" \"$f\"; echo \"E $i\"; fi; i=$((i+1)); done\n\
         echo '#H'\n\
         if [ $# -gt 0 ]; then sha256sum -- \"$@\" 2>/dev/null; echo '#M'; stat -c %a -- \"$@\" 2>/dev/null; else echo '#M'; fi\n\
         echo '#END'\n",
    );
    script
}

/// The output of [`hash_script`], by file index. When a file could not be
/// read (fewer hashes or modes than files), nothing is trusted: every file
/// counts as changed and is written again, which is always safe.
pub(super) fn parse_hashes(out: &[u8], count: usize) -> Vec<Existing> {
    let text = String::from_utf8_lossy(out);
    let mut lines = text.lines();
    let present: Vec<usize> = lines
        .by_ref()
        .take_while(|l| *l != "#H")
        .filter_map(|l| l.strip_prefix("E ")?.parse().ok())
        .collect();
    let hashes: Vec<String> = lines
        .by_ref()
        .take_while(|l| *l != "#M")
        .map(|l| {
            // sha256sum escapes an odd name and marks its line with `\`.
            let l = l.strip_prefix('\\').unwrap_or(l);
            l.chars().take(64).collect()
        })
        .collect();
    let modes: Vec<Option<u32>> = lines
        .take_while(|l| *l != "#END")
        .map(|l| u32::from_str_radix(l.trim(), 8).ok())
        .collect();
    let mut existing = vec![None; count];
    if hashes.len() == present.len() && modes.len() == present.len() {
        for ((i, hash), mode) in present.into_iter().zip(hashes).zip(modes) {
            if let Some(slot) = existing.get_mut(i) {
                *slot = Some((hash, mode));
            }
        }
    }
    existing
}

/// Runs a script on the host: in its long-lived shell when it is small, or
/// fed to `sh -s` on a channel of its own when it is too long to be one
/// command-line argument (Linux allows 128 KiB).
pub(super) async fn run_script(
    pool: &SshPool,
    host: &str,
    script: &str,
) -> Result<(i32, Vec<u8>, String), super::ssh::SshError> {
    if script.len() < 64 * 1024 {
        pool.output(host, script, None).await
    } else {
        pool.output(host, "sh -s", Some(script.as_bytes())).await
    }
}

/// Ends the here-documents of [`write_script`]; base64 text never holds `_`.
const DATA_END: &str = "RUNBOOK_DATA_END";

/// One `sh` script that writes every file, with as few processes as it
/// can. First, in one block: the folders are made, an empty temporary file
/// is created beside each destination (no process) and the modes are set
/// on them per group. Then, file by file, its content is decoded from a
/// base64 here-document into its temporary file (truncating keeps the
/// mode; a mode without `u+w` or with set-ID bits is set only now, as
/// writing would be refused or clear them) and at once renamed over its
/// destination, so a reader never sees
/// a partial file, and a transfer cut short keeps every file already in
/// place. It prints `ok I` after file I is in place, `fail I` when file I
/// could not be written, and leaves no temporary file behind however it
/// ends.
///
/// Every part is one `{ ... }` group: `sh` reads its input as it runs, and
/// at an early end of input it would run a half-received command line (a
/// `mv` to a truncated name) or a here-document cut short; a group cut
/// short is a syntax error instead, and nothing of it runs.
fn write_script(files: &[(&FileToWrite, Option<u32>)]) -> String {
    use base64::Engine as _;
    use std::collections::{BTreeMap, BTreeSet};
    let split = |dest: &str| -> (String, String) {
        match dest.rsplit_once('/') {
            Some(("", name)) => ("/".to_string(), name.to_string()),
            Some((dir, name)) => (dir.to_string(), name.to_string()),
            None => (".".to_string(), dest.to_string()),
        }
    };
    // '…/.NAME.runbook-tmp.'$$ : quoted as data, the shell's pid appended.
    let temps: Vec<String> = files
        .iter()
        .map(|(f, _)| {
            let (dir, name) = split(&f.dest);
            format!("{}$$", sh_quote(&format!("{dir}/.{name}.runbook-tmp.")))
        })
        .collect();
    let dirs: BTreeSet<String> = files.iter().map(|(f, _)| split(&f.dest).0).collect();
    let mut script = String::from("{\nclean() {\n");
    for chunk in temps.chunks(200) {
        script.push_str(&format!("  rm -f -- {}\n", chunk.join(" ")));
    }
    // Also when the script is cut short (the connection dropped or the
    // engine stopped mid-transfer): the shell meets the end of its input,
    // exits, and removes the temporary files. A closed channel must not
    // kill the shell (SIGPIPE on its next `echo`) before it has cleaned up.
    script.push_str("}\ntrap clean EXIT\ntrap '' PIPE\n");
    for chunk in dirs.iter().collect::<Vec<_>>().chunks(200) {
        let quoted: Vec<String> = chunk.iter().map(|d| sh_quote(d)).collect();
        script.push_str(&format!(
            "mkdir -p -- {} || {{ echo 'fail folders'; exit 1; }}\n",
            quoted.join(" ")
        ));
    }
    // `mv` would put the file inside a folder (or a link to one) in the way.
    for (i, (f, _)) in files.iter().enumerate() {
        script.push_str(&format!(
            "if [ -d {d} ]; then echo 'fail {i}'; echo 'it is a folder' >&2; exit 1; fi\n",
            d = sh_quote(&f.dest)
        ));
    }
    for (i, temp) in temps.iter().enumerate() {
        script.push_str(&format!(
            "true > {temp} || {{ echo 'fail {i}'; exit 1; }}\n"
        ));
    }
    // A mode the login user could not write the content under (no `u+w`)
    // or that writing would clear (set-user-ID, set-group-ID): the
    // temporary file gets the mode with `u+w` and without those bits, and
    // the mode itself once its content is in (one more process per file,
    // for these only).
    let late = |mode: u32| mode & 0o200 == 0 || mode & 0o6000 != 0;
    let mut by_mode: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, (_, mode)) in files.iter().enumerate() {
        if let Some(m) = mode {
            let early = if late(*m) { (m & 0o777) | 0o200 } else { *m };
            by_mode.entry(early).or_default().push(i);
        }
    }
    for (mode, indexes) in by_mode {
        for chunk in indexes.chunks(200) {
            let names: Vec<&str> = chunk.iter().map(|&i| temps[i].as_str()).collect();
            script.push_str(&format!(
                "chmod {mode:o} {} || {{ echo 'fail {}'; exit 1; }}\n",
                names.join(" "),
                chunk[0]
            ));
        }
    }
    script.push_str("}\n");
    let engine = base64::engine::general_purpose::STANDARD;
    for (i, (f, mode)) in files.iter().enumerate() {
        let chmod = match mode {
            Some(m) if late(*m) => format!("chmod {m:o} {} && ", temps[i]),
            _ => String::new(),
        };
        script.push_str(&format!(
            "{{ base64 -d > {t} <<'{DATA_END}' && {chmod}mv -f -- {t} {d} && echo 'ok {i}' || {{ echo 'fail {i}'; exit 1; }}\n",
            t = temps[i],
            d = sh_quote(&f.dest)
        ));
        let encoded = engine.encode(&f.bytes);
        for chunk in encoded.as_bytes().chunks(76) {
            script.push_str(&String::from_utf8_lossy(chunk));
            script.push('\n');
        }
        script.push_str(DATA_END);
        script.push_str("\n}\n");
    }
    script
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

#[cfg(test)]
mod tests {
    use super::parse_hashes;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn hashes_and_modes_go_to_the_files_that_exist() {
        let out = format!("E 0\nE 2\n#H\n{H1}  /a\n\\{H2}  /odd\\nname\n#M\n644\n600\n#END\n");
        let got = parse_hashes(out.as_bytes(), 3);
        assert_eq!(got[0], Some((H1.to_string(), Some(0o644))));
        assert_eq!(got[1], None);
        assert_eq!(got[2], Some((H2.to_string(), Some(0o600))));
    }

    #[test]
    fn a_file_that_could_not_be_read_makes_every_file_count_as_changed() {
        // Two files exist, but only one hash came back.
        let out = format!("E 0\nE 1\n#H\n{H1}  /a\n#M\n644\n600\n#END\n");
        assert_eq!(parse_hashes(out.as_bytes(), 2), vec![None, None]);
    }
}
