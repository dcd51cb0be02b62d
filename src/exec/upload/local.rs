//! An upload on this machine: the mirror's extras removed first, then
//! each changed file written beside its destination and renamed over it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{failed, sha, summary, sync_root, FileToWrite, Sync};
use crate::exec::mirror::{self, Keep};
use crate::exec::{LineSink, Outcome, Stream};

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
    let removed = match sync_root(sync).and_then(|s| remove_extras(s, files, dir, sink)) {
        Ok(n) => n,
        Err(outcome) => return outcome,
    };
    let mut written = 0;
    for f in files {
        match put(f, mode, dir, sink) {
            Ok(true) => written += 1,
            Ok(false) => {}
            Err(outcome) => return outcome,
        }
    }
    summary(written, files.len(), removed)
}

/// With `delete: true`, removes what is under the root and not among the
/// files; the number removed.
fn remove_extras(
    sync: Option<Sync<'_>>,
    files: &[FileToWrite],
    dir: &Path,
    sink: &LineSink,
) -> Result<usize, Outcome> {
    let Some(sync) = sync else {
        return Ok(0);
    };
    let keep = Keep::new(
        sync.root,
        files.iter().map(|f| f.dest.as_str()),
        sync.exclude,
    )
    .map_err(failed)?;
    let root = dir.join(sync.root);
    let extras = mirror::local_extras(&root, &keep, sink).map_err(failed)?;
    mirror::local_remove(&root, &extras, sink).map_err(failed)
}

/// Puts one file in place unless it is already (then only its mode is
/// set, if the step gives one); whether it was written.
fn put(f: &FileToWrite, mode: Option<u32>, dir: &Path, sink: &LineSink) -> Result<bool, Outcome> {
    let dest = dir.join(&f.dest);
    let current = std::fs::read(&dest).ok();
    let existing_mode = std::fs::metadata(&dest)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777);
    if current.as_deref().map(sha) == Some(sha(&f.bytes)) {
        if let (Some(mode), Some(existing)) = (mode, existing_mode) {
            if mode != existing {
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| failed(format!("cannot chmod {}: {e}", dest.display())))?;
            }
        }
        let _ = sink.send((Stream::Stdout, format!("unchanged {}", f.dest)));
        return Ok(false);
    }
    write_atomically(&dest, &f.bytes, mode.or(existing_mode))
        .map_err(|e| failed(format!("cannot write {}: {e}", dest.display())))?;
    let _ = sink.send((
        Stream::Stdout,
        format!("wrote {} ({} bytes)", f.dest, f.bytes.len()),
    ));
    Ok(true)
}

/// Writes `bytes` to a temporary file beside `dest` (with `mode`) and
/// renames it over `dest`.
fn write_atomically(dest: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
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
    std::fs::write(&tmp, bytes)?;
    if let Some(m) = mode {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))?;
    }
    std::fs::rename(&tmp, dest)
}
