//! The rendered actions: what `plan` produces from a step's definition and
//! the executors in `exec` carry out, with the rules that decide whether an
//! action can be carried out at all (a URL that is one, an upload root that
//! is a folder of its own). Both layers depend on this module, and it on
//! neither.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A rendered action.
#[derive(Debug, Clone, Serialize)]
pub enum RenderedAction {
    /// A shell script.
    Run {
        /// The script text.
        script: String,
    },
    /// A copy of a local file or folder.
    Upload {
        /// Absolute local source.
        src: PathBuf,
        /// Destination path.
        dest: String,
        /// Render the source as a template.
        template: bool,
        /// File mode.
        mode: Option<u32>,
        /// Remove what is under `dest` and not in `src` (folders only).
        /// Left out of the fingerprint when false, so older runs keep theirs.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        delete: bool,
        /// Gitignore-style patterns: neither sent nor removed. Left out of
        /// the fingerprint when empty, so older runs keep theirs.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
        /// The files with their destinations and (rendered) content, read
        /// when the step starts (empty in the plan: SPEC §14).
        #[serde(skip)]
        files: Vec<FileToWrite>,
        /// The hash of the source as read when the step started, kept with
        /// the step when it succeeds. Not part of the fingerprint.
        #[serde(skip)]
        source_hash: Option<String>,
    },
    /// An HTTP request.
    Http(RenderedHttp),
    /// Nothing to do.
    Checkpoint,
}

/// A rendered HTTP request and its expectations.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedHttp {
    /// Method, upper case.
    pub method: String,
    /// URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body text (JSON bodies are serialized here).
    pub body: Option<String>,
    /// Whether the body is JSON.
    pub json: bool,
    /// The host that carries the request.
    pub via: Option<String>,
    /// Expectations.
    pub expect: crate::runbook::model::Expect,
}

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

/// The matcher of an upload's `exclude` patterns, gitignore's rules
/// (`token`, `*.log`, `logs/`, `/build`, `!keep.log`), relative to the
/// root of the source or the destination. Only these patterns: never a
/// `.gitignore` file or a global exclude.
pub fn excluder(patterns: &[String]) -> Result<ignore::gitignore::Gitignore, String> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new("/");
    for p in patterns {
        builder
            .add_line(None, p)
            .map_err(|e| format!("`exclude` pattern `{p}` is not a gitignore pattern: {e}"))?;
    }
    builder
        .build()
        .map_err(|e| format!("`exclude` patterns cannot be used: {e}"))
}

/// Whether `rel` (relative to the root, `/`-separated), or a folder it is
/// in, is excluded.
pub fn excluded(matcher: &ignore::gitignore::Gitignore, rel: &str, is_dir: bool) -> bool {
    !matcher.is_empty()
        && matcher
            .matched_path_or_any_parents(Path::new("/").join(rel), is_dir)
            .is_ignore()
}

/// Why `url` cannot be requested, in words for the operator; `None` when
/// it is an absolute http(s) URL with a host.
pub fn url_problem(url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Err(e) => Some(format!("`{url}` is not a URL ({e})")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
            "`{url}` is not an http or https URL (scheme `{}`)",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some(format!("`{url}` has no host")),
        Ok(_) => None,
    }
}

/// Why `dest` cannot be the root of a mirror, if it cannot.
pub fn unsafe_root(dest: &str) -> Option<String> {
    if dest.trim().is_empty() {
        return Some("it is empty".to_string());
    }
    let parts: Vec<&str> = dest.split('/').collect();
    if parts.contains(&"..") {
        return Some(format!("`{dest}` contains `..`; name the folder directly"));
    }
    // `link/.` would look through a symlinked dest, past its refusal.
    let names_a_folder = !parts.iter().all(|p| p.is_empty() || *p == ".");
    if names_a_folder && parts.iter().skip(1).any(|p| *p == ".") {
        return Some(format!("`{dest}` contains `.`; name the folder directly"));
    }
    if parts.iter().all(|p| p.is_empty() || *p == ".") {
        return Some(format!(
            "`{dest}` is {}, not a folder of its own",
            if dest.starts_with('/') {
                "the root of the file system"
            } else {
                "the working folder itself"
            }
        ));
    }
    None
}
