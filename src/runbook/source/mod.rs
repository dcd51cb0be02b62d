//! The text of a runbook file and the places in it: where a key, a step
//! or a value is, for every diagnostic to point at (SPEC §1).

use std::path::PathBuf;

use crate::error::Diagnostic;

mod located;

/// The text of a runbook file, kept for error locations.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path of the file as found.
    pub path: PathBuf,
    /// Its full text.
    pub text: String,
    /// Byte offset where each step's block starts, in step order.
    pub(super) step_starts: Vec<usize>,
    /// Each step's id and place as written (`steps[3]`), in step order.
    pub(super) step_places: Vec<(String, String)>,
    /// Problems found while parsing that were stepped over (an unknown key,
    /// a bad value) so that the rest could be checked too; validation
    /// reports them with its own.
    pub problems: Vec<Diagnostic>,
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

    pub(super) fn token_len(&self, start: usize) -> usize {
        let rest = &self.text[start..self.line_end(start)];
        rest.find(|c: char| c == ':' || c.is_whitespace())
            .unwrap_or(rest.len())
            .max(1)
    }
}
