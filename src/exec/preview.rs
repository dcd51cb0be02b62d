//! What an upload would change, for the dry run (SPEC §14): the files it
//! would write (new or changed) and, with `delete: true`, remove. It reads
//! the destination with the same hashing and listing scripts the upload
//! itself runs, and writes nothing, here or on the host.

use std::path::Path;

use super::mirror::{self, Keep};
use super::quote::sh_quote;
use super::ssh::SshPool;
use super::upload::{hash_script, parse_hashes, run_script, sha, FileToWrite, Sync};

/// One file an upload would write.
#[derive(Debug)]
pub struct Change {
    /// Its destination.
    pub dest: String,
    /// Whether it does not exist there yet.
    pub new: bool,
    /// What is there now, when it is text (for `--diff`).
    pub old_text: Option<String>,
}

/// What an upload would do to its destination.
#[derive(Debug, Default)]
pub struct Preview {
    /// Files it would write.
    pub write: Vec<Change>,
    /// Files and folders it would remove (`delete: true`).
    pub remove: Vec<String>,
}

/// Reads the destination of an upload, on `host` or under `dir` here.
/// `want_text` fetches what a changed text file holds now, for a diff.
pub async fn preview(
    pool: &SshPool,
    host: Option<&str>,
    files: &[FileToWrite],
    sync: Option<Sync<'_>>,
    dir: &Path,
    want_text: bool,
) -> Result<Preview, String> {
    match host {
        None => local(files, sync, dir, want_text),
        Some(host) => remote(pool, host, files, sync, want_text).await,
    }
}

fn keep_of(files: &[FileToWrite], sync: Sync<'_>) -> Result<Keep, String> {
    Keep::new(
        sync.root,
        files.iter().map(|f| f.dest.as_str()),
        sync.exclude,
    )
}

/// The extras' paths under their root, files first.
fn under(root: &str, extras: mirror::Extras) -> Vec<String> {
    let root = root.trim_end_matches('/');
    extras
        .files
        .into_iter()
        .chain(extras.dirs)
        .map(|rel| format!("{root}/{rel}"))
        .collect()
}

fn text(bytes: &[u8]) -> Option<String> {
    (bytes.len() <= 256 * 1024)
        .then(|| String::from_utf8(bytes.to_vec()).ok())
        .flatten()
}

fn local(
    files: &[FileToWrite],
    sync: Option<Sync<'_>>,
    dir: &Path,
    want_text: bool,
) -> Result<Preview, String> {
    let mut out = Preview::default();
    for f in files {
        let current = std::fs::read(dir.join(&f.dest)).ok();
        if current.as_deref().map(sha) == Some(sha(&f.bytes)) {
            continue;
        }
        out.write.push(Change {
            dest: f.dest.clone(),
            new: current.is_none(),
            old_text: current.as_deref().filter(|_| want_text).and_then(text),
        });
    }
    if let Some(sync) = sync {
        let keep = keep_of(files, sync)?;
        let (sink, _lines) = tokio::sync::mpsc::unbounded_channel();
        let extras = mirror::local_extras(&dir.join(sync.root), &keep, &sink)?;
        out.remove = under(sync.root, extras);
    }
    Ok(out)
}

async fn remote(
    pool: &SshPool,
    host: &str,
    files: &[FileToWrite],
    sync: Option<Sync<'_>>,
    want_text: bool,
) -> Result<Preview, String> {
    let mut script = hash_script(files);
    if let Some(s) = sync {
        script.push_str(&mirror::list_script(s.root));
    }
    let (_, out, err) = run_script(pool, host, &script).await.map_err(|e| e.0)?;
    let marker = mirror::LISTING.as_bytes();
    let at = out.windows(marker.len()).position(|w| w == marker);
    let hashes = &out[..at.unwrap_or(out.len())];
    let mut preview = Preview::default();
    for (f, there) in files.iter().zip(parse_hashes(hashes, files.len())) {
        if there.as_ref().is_some_and(|(h, _)| *h == sha(&f.bytes)) {
            continue;
        }
        let old_text = match (&there, want_text) {
            (Some(_), true) => {
                let cat = format!("cat -- {}", sh_quote(&f.dest));
                let (code, bytes, _) = pool.output(host, &cat, None).await.map_err(|e| e.0)?;
                (code == 0).then(|| text(&bytes)).flatten()
            }
            _ => None,
        };
        preview.write.push(Change {
            dest: f.dest.clone(),
            new: there.is_none(),
            old_text,
        });
    }
    if let Some(s) = sync {
        let Some(at) = at else {
            return Err(format!(
                "cannot list {} on `{host}`: {}",
                s.root,
                err.trim()
            ));
        };
        let keep = keep_of(files, s)?;
        let (sink, _lines) = tokio::sync::mpsc::unbounded_channel();
        let extras = mirror::parse_listing(s.root, &out[at + marker.len()..], &keep, &sink)?;
        preview.remove = under(s.root, extras);
    }
    Ok(preview)
}
