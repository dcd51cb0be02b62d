//! Finding a runbook file and parsing it (YAML → model). This is the only
//! module that knows which YAML crate is in use.

use std::path::{Path, PathBuf};

use super::model::RunbookFile;
use crate::error::{Diagnostic, Error, Result};

pub use super::source::Source;

/// Resolves a runbook argument: `runbooks/NAME.yaml`, `runbooks/NAME/runbook.yaml`,
/// or a path when it contains `/` or ends in `.yaml`/`.yml`.
pub fn resolve(arg: &str, base: &Path) -> Result<PathBuf> {
    if arg.contains('/') || arg.ends_with(".yaml") || arg.ends_with(".yml") {
        let path = base.join(arg);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::Usage(format!(
            "runbook file {} not found",
            path.display()
        )));
    }
    let candidates = [
        base.join("runbooks").join(format!("{arg}.yaml")),
        base.join("runbooks").join(arg).join("runbook.yaml"),
    ];
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    let known = list(base);
    let hint = super::suggest::nearest(arg, known.iter().map(|(n, _)| n.as_str()))
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_else(|| "; `runbook list` shows the runbooks found".to_string());
    Err(Error::Usage(format!(
        "no runbook named `{arg}`: looked for {} and {}{hint}",
        candidates[0].display(),
        candidates[1].display()
    )))
}

/// Runbooks found under `base/runbooks`, as (name, path), sorted by name.
pub fn list(base: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(base.join("runbooks")) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_file() {
            if let Some(stem) = name.strip_suffix(".yaml") {
                found.push((stem.to_string(), path));
            }
        } else if path.join("runbook.yaml").is_file() {
            found.push((name, path.join("runbook.yaml")));
        }
    }
    found.sort();
    found
}

/// Reads and parses a runbook file. Syntax errors, type errors and unknown
/// keys come back as a located diagnostic.
pub fn load(path: &Path) -> Result<(RunbookFile, Source)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read runbook {}", path.display()), e))?;
    parse_text(path, text)
}

/// Parses runbook text as if it came from `path`. A problem serde stops at
/// (an unknown key, a bad value) is recorded, its entry blanked out and the
/// text parsed again, so that one pass finds every such problem; the ones
/// found ride in [`Source::problems`] for validation to report with its own.
pub fn parse_text(path: &Path, text: String) -> Result<(RunbookFile, Source)> {
    let ids = super::recover::step_ids(&text);
    let mut working = Source {
        path: path.to_path_buf(),
        text: text.clone(),
        step_starts: Vec::new(),
        step_places: Vec::new(),
        problems: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut tried = std::collections::HashSet::new();
    let file = loop {
        let err = match parse(&working.text) {
            Ok(file) => break Some(file),
            Err(err) => err,
        };
        let diagnostic = yaml_diagnostic(&working, &err, &ids);
        let unknown = unknown_field(&err.to_string()).is_some();
        let at = diagnostic.span.map(|(at, _)| at);
        problems.push(diagnostic);
        let next = at
            .filter(|_| err.location().is_some() && super::recover::more_allowed(problems.len()))
            .and_then(|at| super::recover::entry_start(&working.text, at, unknown))
            .filter(|at| tried.insert(*at));
        match next {
            Some(at) => working.text = super::recover::blank_entry(&working.text, at),
            None => break None,
        }
    };
    let Some(mut file) = file else {
        return Err(Error::Invalid {
            diagnostics: problems,
            source_text: text,
        });
    };
    let mut source = Source {
        path: path.to_path_buf(),
        text,
        step_starts: Vec::new(),
        step_places: Vec::new(),
        problems,
    };
    // A rolling block's inner steps follow it, as their `id:` lines do.
    file.steps = super::rolling::flatten(std::mem::take(&mut file.steps));
    source.index_steps(file.steps.iter().map(|s| s.id.as_str()));
    source.place_steps(&file.steps);
    Ok((file, source))
}

fn parse(text: &str) -> Result<RunbookFile, serde_norway::Error> {
    if text.trim().is_empty() {
        return Ok(RunbookFile::default());
    }
    serde_norway::from_str(text)
}

fn yaml_diagnostic(
    source: &Source,
    err: &serde_norway::Error,
    ids: &[Option<String>],
) -> Diagnostic {
    let full = err.to_string();
    // The crate appends " at line L column C"; the span carries that instead.
    let message = match full.find(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full.clone(),
    };
    // `steps[3].http: ...` names the step by its id too.
    let message = match message.split_once(": ") {
        Some((place, rest)) if place.starts_with("steps[") && !place.contains(' ') => {
            format!("{}: {rest}", super::recover::name_step(place, ids))
        }
        _ => message,
    };
    let span = err
        .location()
        .map(|loc| {
            // The location's index counts characters; find the byte offset
            // from its line and column instead.
            let start = source.offset_of(loc.line(), loc.column());
            (start, source.token_len(start))
        })
        .or_else(|| {
            // Alias expansion errors carry no place: point at the first alias.
            let at = source
                .text
                .find(['*'])
                .filter(|_| message.contains("repetition limit"))?;
            Some((at, source.token_len(at)))
        })
        .or(Some((0, source.token_len(0))));
    let mut diagnostic = Diagnostic::new(&source.path, message.clone()).at(span);
    if let Some(unknown) = unknown_field(&message) {
        let place = message
            .split(": unknown field")
            .next()
            .filter(|p| *p != message)
            .map(str::to_string);
        diagnostic.message = match place {
            Some(place) => format!("unknown key `{unknown}` in {place}"),
            None => format!("unknown key `{unknown}`"),
        };
        let expected = expected_fields(&message);
        diagnostic = diagnostic.maybe_hint(
            super::suggest::nearest(&unknown, expected.iter().map(String::as_str))
                .map(|n| format!("did you mean `{n}`?"))
                .or_else(|| {
                    (!expected.is_empty())
                        .then(|| format!("allowed keys here: {}", expected.join(", ")))
                }),
        );
    } else if message.contains("repetition limit") {
        diagnostic = diagnostic.hint(
            "YAML aliases expand to too much data; write the values out instead of nesting aliases",
        );
    } else if message.contains("did not match any variant") {
        diagnostic = diagnostic.hint(
            "check the value's shape against the runbook format (`runbook schema` prints it)",
        );
    }
    diagnostic
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = &message[message.find("unknown field `")? + "unknown field `".len()..];
    Some(rest[..rest.find('`')?].to_string())
}

fn expected_fields(message: &str) -> Vec<String> {
    let Some(i) = message.find("expected ") else {
        return Vec::new();
    };
    message[i..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}
