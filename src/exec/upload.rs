//! `upload`: files or folders copied to a host (or locally), written
//! atomically (temp file + rename), skipped when the content is unchanged.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::mirror::{self, Extras, Keep};
use super::ssh::{sh_quote, SshPool};
use super::{LineSink, Outcome, Stream};

/// One file to put in place.
#[derive(Debug, Clone)]
pub struct FileToWrite {
    /// Destination path.
    pub dest: String,
    /// Content (rendered when a template).
    pub bytes: Vec<u8>,
}

/// Destination paths for the files of a source: a file goes to `dest` (or
/// into it when `dest` ends in `/`), a folder's files go under `dest`.
pub fn destinations(
    src_is_dir: bool,
    dest: &str,
    files: Vec<(String, Vec<u8>)>,
    src: &Path,
) -> Vec<FileToWrite> {
    files
        .into_iter()
        .map(|(rel, bytes)| {
            let dest = if src_is_dir {
                format!("{}/{rel}", dest.trim_end_matches('/'))
            } else if dest.ends_with('/') {
                let name = src
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                format!("{dest}{name}")
            } else {
                dest.to_string()
            };
            FileToWrite { dest, bytes }
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
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

/// With `delete: true`, the root all files go under; the refusal when it is
/// no folder of its own.
fn sync_root(sync: Option<&str>) -> Result<Option<&str>, Outcome> {
    match sync {
        Some(root) => match mirror::unsafe_root(root) {
            Some(problem) => Err(failed(format!(
                "`delete: true` refuses this dest: {problem}"
            ))),
            None => Ok(Some(root)),
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
    sync: Option<&str>,
    dir: &Path,
    sink: &LineSink,
) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let mut removed = 0;
    match sync_root(sync) {
        Err(outcome) => return outcome,
        Ok(None) => {}
        Ok(Some(root)) => {
            let keep = Keep::new(root, files.iter().map(|f| f.dest.as_str()));
            let root = dir.join(root);
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

/// Writes the files on a host over its master connection.
/// With `sync`, as for `local`: the listing comes in the same round trip as
/// the hashes, and the extras are removed before anything is written.
pub async fn remote(
    pool: &SshPool,
    host: &str,
    files: &[FileToWrite],
    mode: Option<u32>,
    sync: Option<&str>,
    sink: &LineSink,
) -> Outcome {
    let sync = match sync_root(sync) {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    // One round trip learns the hash and mode of every destination (and,
    // when mirroring, what is under the root).
    let mut check = String::from("i=0\nfor f in");
    for f in files {
        check.push(' ');
        check.push_str(&sh_quote(&f.dest));
    }
    check.push_str(
        "; do if [ -f \"$f\" ]; then h=$(sha256sum < \"$f\" 2>/dev/null | cut -d' ' -f1); \
         m=$(stat -c %a \"$f\" 2>/dev/null); printf '%s %s %s\\n' \"$i\" \"${h:-none}\" \"${m:-none}\"; fi; i=$((i+1)); done\n",
    );
    if let Some(root) = sync {
        check.push_str(&mirror::list_script(root));
    }
    let (code, out, err) = match pool.output(host, &check, None).await {
        Ok(r) => r,
        Err(e) => return failed(e.0),
    };
    let (hashes, listing) = match sync {
        None => (&out[..], None),
        Some(root) => {
            let marker = mirror::LISTING.as_bytes();
            match out.windows(marker.len()).position(|w| w == marker) {
                Some(at) => (&out[..at], Some((root, &out[at + marker.len()..]))),
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
    let mut removed = 0;
    if let Some((root, listing)) = listing {
        if code != 0 {
            return failed(format!(
                "cannot list {root} on `{host}` (exit {code}): {}",
                err.trim()
            ));
        }
        let keep = Keep::new(root, files.iter().map(|f| f.dest.as_str()));
        extras = match mirror::parse_listing(root, listing, &keep, sink) {
            Ok(e) => e,
            Err(reason) => return failed(reason),
        };
        removed = match mirror::remote_remove(pool, host, root, &extras, sink).await {
            Ok(n) => n,
            Err(reason) => return failed(reason),
        };
    }
    let prefix = sync.map(|r| format!("{}/", r.trim_end_matches('/')));
    let mut remote: Vec<Option<(String, Option<u32>)>> = vec![None; files.len()];
    for line in String::from_utf8_lossy(hashes).lines() {
        let mut parts = line.split_whitespace();
        if let (Some(i), Some(h), Some(m)) = (parts.next(), parts.next(), parts.next()) {
            if let Ok(i) = i.parse::<usize>() {
                if i < remote.len() {
                    remote[i] = Some((h.to_string(), u32::from_str_radix(m, 8).ok()));
                }
            }
        }
    }
    let mut written = 0;
    let mut chmods = Vec::new();
    for (f, there) in files.iter().zip(&remote) {
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
            continue;
        }
        let keep_mode = mode.or(there.as_ref().and_then(|(_, m)| *m));
        let chmod = keep_mode
            .map(|m| format!(" && chmod {m:o} \"$t\""))
            .unwrap_or_default();
        let script = format!(
            "d={d}; t=\"$(dirname -- \"$d\")/.$(basename -- \"$d\").runbook-tmp.$$\"; \
             mkdir -p -- \"$(dirname -- \"$d\")\" && cat > \"$t\"{chmod} && mv -f -- \"$t\" \"$d\" || {{ rm -f -- \"$t\"; exit 1; }}",
            d = sh_quote(&f.dest)
        );
        match pool.output(host, &script, Some(&f.bytes)).await {
            Ok((0, _, _)) => {
                written += 1;
                let _ = sink.send((
                    Stream::Stdout,
                    format!("wrote {} ({} bytes)", f.dest, f.bytes.len()),
                ));
            }
            Ok((code, _, err)) => {
                return Outcome::Failed {
                    exit_code: Some(code),
                    reason: format!("cannot write {} on `{host}`: {}", f.dest, err.trim()),
                }
            }
            Err(e) => {
                return Outcome::Failed {
                    exit_code: None,
                    reason: e.0,
                }
            }
        }
    }
    if !chmods.is_empty() {
        if let Err(e) = pool.output(host, &chmods.join(" && "), None).await {
            return Outcome::Failed {
                exit_code: None,
                reason: e.0,
            };
        }
    }
    summary(written, files.len(), removed)
}
