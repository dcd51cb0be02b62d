//! `upload` with `delete: true`: what is under `dest` and not in `src` is
//! removed, so `dest` mirrors `src`. Only paths strictly under `dest` are
//! ever named, symlinks are removed as links and never followed, and a
//! `dest` that is empty, `/`, `.` or climbs with `..` is refused.

use std::collections::BTreeSet;
use std::path::Path;

use super::quote::sh_quote;
use super::ssh::SshPool;
use super::{LineSink, Stream};
pub use crate::action::unsafe_root;

/// What a mirror keeps: the source's files (relative paths) and every
/// folder that leads to one.
pub struct Keep {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
    /// The upload's `exclude` patterns: what they match is kept too.
    exclude: ignore::gitignore::Gitignore,
}

impl Keep {
    /// From the destinations of the files to write under `root`.
    pub fn new<'a>(
        root: &str,
        dests: impl Iterator<Item = &'a str>,
        exclude: &[String],
    ) -> Result<Keep, String> {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        let mut files = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        for dest in dests {
            let Some(rel) = dest.strip_prefix(&prefix) else {
                continue;
            };
            let mut at = 0;
            while let Some(i) = rel[at..].find('/') {
                dirs.insert(rel[..at + i].to_string());
                at += i + 1;
            }
            files.insert(rel.to_string());
        }
        let exclude = crate::action::excluder(exclude)?;
        Ok(Keep {
            files,
            dirs,
            exclude,
        })
    }
}

/// What to remove, relative to the root: non-folders (files, symlinks,
/// anything else), then folders, deepest first.
#[derive(Debug, Default)]
pub struct Extras {
    /// Files, symlinks and other non-folders.
    pub files: Vec<String>,
    /// Folders, deepest first.
    pub dirs: Vec<String>,
}

impl Extras {
    fn pick(keep: &Keep, files: Vec<String>, mut dirs: Vec<String>) -> Extras {
        let excluded = |rel: &str, is_dir| crate::action::excluded(&keep.exclude, rel, is_dir);
        // The folders that hold an excluded path stay, with it.
        let mut shelter = BTreeSet::new();
        let mut shelter_parents = |rel: &str| {
            let mut at = rel.len();
            while let Some(i) = rel[..at].rfind('/') {
                shelter.insert(rel[..i].to_string());
                at = i;
            }
        };
        let mut extra_files = Vec::new();
        for f in files {
            if excluded(&f, false) {
                shelter_parents(&f);
            } else if !keep.files.contains(&f) {
                extra_files.push(f);
            }
        }
        dirs.retain(|d| {
            let out = excluded(d, true);
            if out {
                shelter_parents(d);
            }
            !out
        });
        dirs.retain(|d| !keep.dirs.contains(d) && !shelter.contains(d));
        let files = extra_files;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        Extras { files, dirs }
    }

    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Whether removing the extras takes away what was found at `rel` (a
    /// symlink or file in the place of one of its folders, a folder in its
    /// place): then it must be written even when its hash matched.
    pub fn shadows(&self, rel: &str) -> bool {
        self.dirs.iter().any(|d| d == rel)
            || self.files.iter().any(|f| {
                rel.len() > f.len()
                    && rel.starts_with(f.as_str())
                    && rel.as_bytes()[f.len()] == b'/'
            })
    }
}

/// The extras under a local root; `Err` when the root is a symlink (not
/// followed) or cannot be read. A missing root has none.
pub fn local_extras(root: &Path, keep: &Keep, sink: &LineSink) -> Result<Extras, String> {
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Extras::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", root.display())),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(symlink_root(&root.display().to_string()))
        }
        Ok(m) if !m.is_dir() => return Ok(Extras::default()),
        Ok(_) => {}
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let Ok(name) = entry.file_name().into_string() else {
                let _ = sink.send((Stream::Stderr, not_utf8(&entry.path().display())));
                continue;
            };
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // file_type() does not follow symlinks.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                stack.push((entry.path(), path.clone()));
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(Extras::pick(keep, files, dirs))
}

/// Removes the extras under a local root, reporting each one.
pub fn local_remove(root: &Path, extras: &Extras, sink: &LineSink) -> Result<usize, String> {
    for f in &extras.files {
        let path = root.join(f);
        // remove_file on a symlink removes the link, never its target.
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        let _ = sink.send((Stream::Stdout, format!("removed {}", path.display())));
    }
    for d in &extras.dirs {
        let path = root.join(d);
        std::fs::remove_dir(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        let _ = sink.send((Stream::Stdout, format!("removed {}/", path.display())));
    }
    Ok(extras.files.len() + extras.dirs.len())
}

fn not_utf8(path: &dyn std::fmt::Display) -> String {
    format!("kept {path}: its name is not UTF-8, so it cannot be named safely")
}

fn symlink_root(root: &str) -> String {
    format!(
        "{root} is a symlink; `delete: true` does not follow symlinks: point dest at the real folder"
    )
}

/// The marker between the hash lines and the listing in the check's output.
pub const LISTING: &str = "--runbook-listing--\n";

/// Shell that lists everything under `root` without following symlinks:
/// NUL-terminated `./path` records (non-folders, a `D` record, folders; an
/// `E` record when `find` failed), all passed through one `od` as hex so any
/// byte, a newline too, survives the line-based channel. A symlinked root
/// prints `link`, a missing one `none`.
pub fn list_script(root: &str) -> String {
    format!(
        "printf '%s' {marker}; r={root}; \
         if [ -L \"$r\" ]; then echo link; \
         elif [ ! -d \"$r\" ]; then echo none; \
         else cd -- \"$r\" && {{ find . -mindepth 1 ! -type d -print0 || printf 'E\\0'; printf 'D\\0'; \
         find . -mindepth 1 -type d -print0 || printf 'E\\0'; }} | od -An -v -tx1; fi\n",
        marker = sh_quote(LISTING),
        root = sh_quote(root.trim_end_matches('/')),
    )
}

/// Parses what `list_script` printed. Names that are not UTF-8 cannot be
/// quoted back safely: they are reported and kept.
pub fn parse_listing(
    root: &str,
    out: &[u8],
    keep: &Keep,
    sink: &LineSink,
) -> Result<Extras, String> {
    let text = String::from_utf8_lossy(out);
    match text.trim() {
        "link" => return Err(symlink_root(root)),
        "none" => return Ok(Extras::default()),
        _ => {}
    }
    let bytes = text
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("unexpected listing of {root}"))?;
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut in_dirs = false;
    for rec in bytes.split(|b| *b == 0) {
        match rec {
            b"" => continue,
            b"D" => {
                in_dirs = true;
                continue;
            }
            b"E" => return Err(format!("cannot list everything under {root}")),
            _ => {}
        }
        let Ok(name) = std::str::from_utf8(rec) else {
            let _ = sink.send((
                Stream::Stderr,
                not_utf8(&format!(
                    "{}/{}",
                    root.trim_end_matches('/'),
                    String::from_utf8_lossy(rec)
                )),
            ));
            continue;
        };
        let bad = || format!("unexpected listing of {root}: {name:?}");
        let rel = name.strip_prefix("./").ok_or_else(bad)?;
        if rel.is_empty()
            || rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad());
        }
        if in_dirs {
            dirs.push(rel.to_string());
        } else {
            files.push(rel.to_string());
        }
    }
    Ok(Extras::pick(keep, files, dirs))
}

/// Removes the extras under a remote root, every path quoted and relative
/// to the root, a bounded number of bytes per command.
pub async fn remote_remove(
    pool: &SshPool,
    host: &str,
    root: &str,
    extras: &Extras,
    sink: &LineSink,
) -> Result<usize, String> {
    let root = root.trim_end_matches('/');
    let cd = format!("cd -- {} || exit 1", sh_quote(root));
    let mut batches: Vec<(String, Vec<String>)> = Vec::new();
    for (cmd, list, slash) in [
        ("rm -f --", &extras.files, ""),
        ("rmdir --", &extras.dirs, "/"),
    ] {
        let mut line = String::new();
        let mut names = Vec::new();
        for rel in list {
            if line.len() > 60_000 {
                batches.push((format!("{cd}; {cmd}{line}"), std::mem::take(&mut names)));
                line.clear();
            }
            line.push(' ');
            line.push_str(&sh_quote(&format!("./{rel}")));
            names.push(format!("{root}/{rel}{slash}"));
        }
        if !names.is_empty() {
            batches.push((format!("{cd}; {cmd}{line}"), names));
        }
    }
    let mut removed = 0;
    for (script, names) in batches {
        match pool.output(host, &script, None).await {
            Ok((0, _, _)) => {}
            Ok((code, _, err)) => {
                return Err(format!(
                    "cannot remove under {root} on `{host}` (exit {code}): {}",
                    err.trim()
                ))
            }
            Err(e) => return Err(e.0),
        }
        for name in names {
            let _ = sink.send((Stream::Stdout, format!("removed {name}")));
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_roots_are_refused() {
        for bad in [
            "",
            " ",
            "/",
            "//",
            "/./",
            ".",
            "./",
            "/opt/../",
            "a/../b",
            "/opt/link/.",
            "a/./b",
        ] {
            assert!(unsafe_root(bad).is_some(), "{bad:?} accepted");
        }
        for good in ["/opt/stack", "/opt/stack/", "www", "./www"] {
            assert!(unsafe_root(good).is_none(), "{good:?} refused");
        }
    }

    #[test]
    fn keep_holds_files_and_their_folders() {
        let keep = Keep::new("/d/", ["/d/a/b/c.txt", "/d/x"].into_iter(), &[]).unwrap();
        let extras = Extras::pick(
            &keep,
            vec!["a/b/c.txt".into(), "a/old".into(), "x".into()],
            vec!["a".into(), "a/b".into(), "gone".into(), "gone/deep".into()],
        );
        assert_eq!(extras.files, vec!["a/old".to_string()]);
        assert_eq!(
            extras.dirs,
            vec!["gone/deep".to_string(), "gone".to_string()]
        );
    }
}
