//! An upload's source, read when the step runs (SPEC §14).
//!
//! The plan holds only what the runbook says of an upload (its `src`,
//! `dest`, mode, ...). The bytes are read here, by the gate when the step
//! starts, so the files a step before it built are the files sent. The
//! same reading, with secrets as placeholders, gives the source's hash that
//! decides whether a succeeded upload must ship again: [`hash_now`] is
//! asked when a pass reaches the step, never earlier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{placeholder_secrets, Rendered, RenderedAction};
use crate::runbook::template::{Context, TemplateError, Templater};
use crate::runbook::{Action, Step};

/// An upload's source files as (relative path, content), rendered when a
/// template, with one hash over all of them and their paths.
pub(super) type SourceFiles = (String, Vec<(String, Vec<u8>)>);

/// An upload's source files as read from disk: (relative path, path, bytes).
type RawFiles = Vec<(String, PathBuf, Vec<u8>)>;

fn err(message: String) -> TemplateError {
    TemplateError {
        message,
        range: None,
    }
}

/// Reads the files under `src` (or `src` itself), the excluded ones left
/// out: once per use, so what is hashed is what is sent.
fn read_raw(src: &Path, exclude: &[String]) -> Result<RawFiles, TemplateError> {
    if std::fs::symlink_metadata(src).is_err() {
        return Err(err(format!(
            "the upload source {} does not exist (it is read when the step starts: is it made by a step this one `needs`?)",
            src.display()
        )));
    }
    let mut files = Vec::new();
    collect_files(src, src, &mut files)
        .map_err(|e| err(format!("cannot read upload source {}: {e}", src.display())))?;
    let matcher = crate::action::excluder(exclude).map_err(err)?;
    let mut raw = Vec::with_capacity(files.len());
    for (rel, path) in files {
        if crate::action::excluded(&matcher, &rel, false) {
            continue;
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        raw.push((rel, path, bytes));
    }
    Ok(raw)
}

/// The files rendered when `template`, with one hash over each relative
/// path and content.
fn render(
    raw: &RawFiles,
    templater: &Templater,
    c: &minijinja::Value,
    template: bool,
) -> Result<SourceFiles, TemplateError> {
    let mut hasher = Sha256::new();
    let mut contents = Vec::with_capacity(raw.len());
    for (rel, path, bytes) in raw {
        let bytes = if template {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| err(format!("template {} is not UTF-8", path.display())))?;
            templater
                .render(text, c)
                .map_err(|e| {
                    let at = line_col(text, e.range.as_ref());
                    err(format!("in template {}{at}: {}", path.display(), e.message))
                })?
                .into_bytes()
        } else {
            bytes.clone()
        };
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(&bytes));
        contents.push((rel.clone(), bytes));
    }
    Ok((format!("{:x}", hasher.finalize()), contents))
}

/// The hash of raw files rendered with secrets as placeholders: the same
/// whatever the secret values, so a pass can compare it with the last one.
fn placeholder_hash(
    ctx: &Context,
    step: &Step,
    raw: &RawFiles,
    template: bool,
) -> Result<String, String> {
    let c = ctx.for_instance(
        &step.spec.id,
        step.host.as_deref(),
        &placeholder_secrets(step),
    );
    render(raw, &Templater::for_placeholders(), &c, template)
        .map(|(hash, _)| hash)
        .map_err(|e| e.message)
}

pub use crate::runbook::files::collect_files;

/// The source of an upload step as it is now, with secrets as
/// placeholders: its hash, or why it cannot be read. `None` for a step
/// that is not an upload.
pub fn hash_now(ctx: &Context, step: &Step, rendered: &Rendered) -> Option<Result<String, String>> {
    let RenderedAction::Upload {
        src,
        template,
        exclude,
        ..
    } = &rendered.action
    else {
        return None;
    };
    Some(
        read_raw(src, exclude)
            .map_err(|e| e.message)
            .and_then(|raw| placeholder_hash(ctx, step, &raw, *template)),
    )
}

/// Fills an upload's files from its source as it is now, rendered with the
/// step's real secret values, and records the source's hash (made with
/// placeholders, as [`hash_now`] makes it, so the next pass can compare).
/// Called when the step starts. Other steps are left as they are.
pub fn load(
    templater: &Templater,
    ctx: &Context,
    step: &Step,
    secrets: &BTreeMap<String, String>,
    rendered: &mut Rendered,
) -> Result<(), String> {
    if !matches!(step.action, Action::Upload(_)) {
        return Ok(());
    }
    let RenderedAction::Upload {
        src,
        dest,
        template,
        delete,
        files,
        source_hash,
        exclude,
        ..
    } = &mut rendered.action
    else {
        return Ok(());
    };
    // Read once: the hash kept for the next pass is of the bytes sent.
    let raw = read_raw(src, exclude).map_err(|e| e.message)?;
    if *delete && !src.is_dir() {
        return Err(format!(
            "`delete: true` applies to folders only, and {} is not a folder: remove `delete`, or upload the folder",
            src.display()
        ));
    }
    let hash = placeholder_hash(ctx, step, &raw, *template)?;
    let c = ctx.for_instance(&step.spec.id, step.host.as_deref(), secrets);
    let (_, contents) = render(&raw, templater, &c, *template).map_err(|e| e.message)?;
    *files = crate::action::destinations(src.is_dir(), dest, contents, src);
    *source_hash = Some(hash);
    Ok(())
}

/// The fingerprint a step had under runbook 0.1 of this round's start,
/// when an upload's fingerprint held the hash of its source: a run made
/// then keeps its finished uploads through the upgrade (SPEC §14).
pub fn legacy_fingerprint(rendered: &Rendered, source_hash: &str) -> Option<String> {
    let mut json = serde_json::to_value(rendered).ok()?;
    let upload = json.get_mut("action")?.get_mut("Upload")?.as_object_mut()?;
    if upload.contains_key("exclude") {
        return None;
    }
    upload.insert(
        "content_hash".to_string(),
        serde_json::Value::String(source_hash.to_string()),
    );
    let bytes = serde_json::to_vec(&json).ok()?;
    Some(format!("{:x}", Sha256::digest(&bytes))[..16].to_string())
}

/// `:LINE:COL` of the failing expression in a template file, when known.
fn line_col(text: &str, range: Option<&std::ops::Range<usize>>) -> String {
    let Some(before) = range.and_then(|r| text.get(..r.start)) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!(":{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An upload's action as the previous version serialized it.
    #[derive(serde::Serialize)]
    struct OldUpload<'a> {
        src: &'a Path,
        dest: &'a str,
        template: bool,
        mode: Option<u32>,
        content_hash: &'a str,
    }

    #[derive(serde::Serialize)]
    enum OldAction<'a> {
        Upload(OldUpload<'a>),
    }

    #[derive(serde::Serialize)]
    struct OldRendered<'a> {
        when: bool,
        unless: Option<String>,
        env: Vec<(String, String)>,
        timeout: Option<Duration>,
        retries: u32,
        retry_delay: Duration,
        action: OldAction<'a>,
        host: Option<String>,
    }

    #[test]
    fn the_legacy_fingerprint_is_the_one_the_previous_version_stored() {
        let src = PathBuf::from("/srv/book/files/app.conf.j2");
        let rendered = Rendered {
            when: true,
            unless: None,
            env: vec![("A".into(), "1".into())],
            timeout: Some(Duration::from_secs(30)),
            retries: 1,
            retry_delay: Duration::from_secs(2),
            action: RenderedAction::Upload {
                src: src.clone(),
                dest: "/etc/app.conf".into(),
                template: true,
                mode: Some(0o640),
                delete: false,
                exclude: Vec::new(),
                files: Vec::new(),
                source_hash: None,
            },
            host: Some("deploy@10.0.0.1:22".into()),
            place: None,
        };
        let old = OldRendered {
            when: true,
            unless: None,
            env: vec![("A".into(), "1".into())],
            timeout: Some(Duration::from_secs(30)),
            retries: 1,
            retry_delay: Duration::from_secs(2),
            action: OldAction::Upload(OldUpload {
                src: &src,
                dest: "/etc/app.conf",
                template: true,
                mode: Some(0o640),
                content_hash: "abc123",
            }),
            host: Some("deploy@10.0.0.1:22".into()),
        };
        let bytes = serde_json::to_vec(&old).unwrap();
        let expected = format!("{:x}", Sha256::digest(&bytes))[..16].to_string();
        assert_eq!(legacy_fingerprint(&rendered, "abc123"), Some(expected));
        assert_ne!(
            legacy_fingerprint(&rendered, "abc124"),
            legacy_fingerprint(&rendered, "abc123")
        );
    }
}
