//! Finding a runbook file and parsing it (YAML → model). This is the only
//! module that knows which YAML crate is in use.

use std::path::{Path, PathBuf};

use super::model::RunbookFile;
use crate::error::{Diagnostic, Error, Result};

mod located;

/// The text of a runbook file, kept for error locations.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path of the file as found.
    pub path: PathBuf,
    /// Its full text.
    pub text: String,
    /// Byte offset where each step's block starts, in step order.
    step_starts: Vec<usize>,
    /// Each step's id and place as written (`steps[3]`), in step order.
    step_places: Vec<(String, String)>,
    /// Problems found while parsing that were stepped over (an unknown key,
    /// a bad value) so that the rest could be checked too; validation
    /// reports them with its own.
    pub problems: Vec<Diagnostic>,
}

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
    let hint = crate::runbook::validate::nearest(arg, known.iter().map(|(n, _)| n.as_str()))
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
            crate::runbook::validate::nearest(&unknown, expected.iter().map(String::as_str))
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

impl Source {
    /// Finds where each step's block starts, scanning `id:` lines in order so
    /// that duplicate ids each get their own place.
    pub fn index_steps<'a>(&mut self, ids: impl Iterator<Item = &'a str>) {
        let mut from = self.find_key_line("steps").map(|(s, _)| s).unwrap_or(0);
        let mut starts = Vec::new();
        for id in ids {
            match self.find_id_line(id, from) {
                Some(at) => {
                    starts.push(at);
                    from = self.line_end(at);
                }
                None => starts.push(from),
            }
        }
        self.step_starts = starts;
    }

    /// Span of the `id: X` value of step number `index`.
    pub fn step_span(&self, index: usize) -> Option<(usize, usize)> {
        let start = *self.step_starts.get(index)?;
        let line = &self.text[start..self.line_end(start)];
        let after_key = line.find("id:")? + 3;
        let rest = &line[after_key..];
        let lead = rest.len() - rest.trim_start().len();
        let value = rest
            .trim()
            .split([',', '}', '#'])
            .next()
            .unwrap_or("")
            .trim();
        Some((start + after_key + lead, value.len().max(1)))
    }

    /// Span of `key:` inside step number `index`.
    pub fn step_key_span(&self, index: usize, key: &str) -> Option<(usize, usize)> {
        let (start, end) = self.step_block(index)?;
        self.find_key_in(key, start, end)
            .or_else(|| self.step_span(index))
    }

    /// Span of the first `needle` token inside the value of `key` in step number `index`.
    pub fn step_value_span(&self, index: usize, key: &str, needle: &str) -> Option<(usize, usize)> {
        let (start, end) = self.step_block(index)?;
        let (key_at, _) = self.find_key_in(key, start, end)?;
        if needle.is_empty() {
            return Some((key_at, key.len()));
        }
        let hay = &self.text[key_at..end];
        let mut from = 0;
        while let Some(i) = hay[from..].find(needle) {
            let at = from + i;
            let before = hay[..at].chars().next_back();
            let after = hay[at + needle.len()..].chars().next();
            let boundary = |c: Option<char>| !matches!(c, Some(c) if c.is_alphanumeric() || c == '_' || c == '-');
            if boundary(before) && boundary(after) && at > 0 {
                return Some((key_at + at, needle.len()));
            }
            from = at + needle.len();
        }
        Some((key_at, key.len()))
    }

    /// Span of a top-level (or any) `key:` line in the file.
    pub fn key_span(&self, key: &str) -> Option<(usize, usize)> {
        self.find_key_in(key, 0, self.text.len())
    }

    /// Span of `key:` nested after the line of `parent:`.
    pub fn nested_key_span(&self, parent: &str, key: &str) -> Option<(usize, usize)> {
        let (p, _) = self.key_span(parent)?;
        self.find_key_in(key, p, self.text.len())
            .or(Some((p, parent.len())))
    }

    /// Byte offset of a 1-based line and 1-based character column.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let line_start = if line <= 1 {
            0
        } else {
            self.text
                .match_indices('\n')
                .nth(line - 2)
                .map(|(i, _)| i + 1)
                .unwrap_or(self.text.len())
        };
        let rest = &self.text[line_start..];
        line_start
            + rest
                .char_indices()
                .nth(column.saturating_sub(1))
                .map(|(i, _)| i)
                .unwrap_or(rest.len())
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (line, col)
    }

    /// Where `needle` first appears in a step from its `key` on (a name
    /// inside a template); the key itself when it does not.
    pub fn step_needle_span(
        &self,
        index: usize,
        key: &str,
        needle: &str,
    ) -> Option<(usize, usize)> {
        let at = self.step_key_span(index, key)?;
        let (_, end) = self.step_block(index)?;
        self.text
            .get(at.0..end)
            .and_then(|t| t.find(needle))
            .map(|i| (at.0 + i, needle.len()))
            .or(Some(at))
    }

    fn step_block(&self, index: usize) -> Option<(usize, usize)> {
        let start = *self.step_starts.get(index)?;
        let end = self
            .step_starts
            .get(index + 1)
            .copied()
            .filter(|&e| e > start)
            .unwrap_or(self.text.len());
        let line_start = self.text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        Some((line_start, end))
    }

    fn find_id_line(&self, id: &str, from: usize) -> Option<usize> {
        let mut offset = from;
        for line in self.text[from..].split_inclusive('\n') {
            let trimmed = line.trim_start().trim_start_matches('-').trim_start();
            let trimmed = trimmed.trim_start_matches('{').trim_start();
            if let Some(rest) = trimmed.strip_prefix("id:") {
                let value = rest
                    .trim()
                    .split([',', '}', '#'])
                    .next()
                    .unwrap_or("")
                    .trim();
                let value = value.trim_matches(['"', '\'']);
                if value == id {
                    return Some(offset + line.len() - line.trim_start().len());
                }
            }
            offset += line.len();
        }
        None
    }

    fn find_key_in(&self, key: &str, start: usize, end: usize) -> Option<(usize, usize)> {
        let hay = &self.text[start..end];
        let mut offset = start;
        for line in hay.split_inclusive('\n') {
            let body = line.trim_start();
            let body_at = line.len() - body.len();
            let body2 = body.trim_start_matches('-').trim_start();
            let at2 = body_at + (body.len() - body2.len());
            if body2.starts_with(key) && body2[key.len()..].trim_start().starts_with(':') {
                return Some((offset + at2, key.len()));
            }
            // Flow mappings: `{ a: 1, key: 2 }`.
            for pat in [
                format!("{{ {key}:"),
                format!(", {key}:"),
                format!("{{{key}:"),
                format!(",{key}:"),
            ] {
                if let Some(i) = line.find(&pat) {
                    return Some((offset + i + pat.len() - key.len() - 1, key.len()));
                }
            }
            offset += line.len();
        }
        None
    }

    fn find_key_line(&self, key: &str) -> Option<(usize, usize)> {
        self.key_span(key)
    }

    fn line_end(&self, offset: usize) -> usize {
        self.text[offset..]
            .find('\n')
            .map(|i| offset + i)
            .unwrap_or(self.text.len())
    }

    fn token_len(&self, start: usize) -> usize {
        let rest = &self.text[start..self.line_end(start)];
        rest.find(|c: char| c == ':' || c.is_whitespace())
            .unwrap_or(rest.len())
            .max(1)
    }
}
