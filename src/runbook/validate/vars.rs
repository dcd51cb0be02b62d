//! `--var` names checked against what the runbook declares and reads.

use crate::error::{Diagnostic, Error, Result};
use crate::runbook::files::collect_files;
use crate::runbook::model::RunbookFile;
use crate::runbook::source::Source;
use crate::runbook::suggest::nearest;
use crate::runbook::template::is_template;

/// Refuses a `--var` that names no var of the runbook: one neither declared
/// under `vars:` nor read by one of its templates as `vars.NAME` or
/// `vars['NAME']`, in the runbook or in a file it uploads with
/// `template: true`. A typo such as `--var hots=prod` would otherwise be
/// dropped in silence and the run would go on with the default, on a
/// production server. When a template reads `vars` in a way that names no
/// var (`vars[key]`, `vars|items`) or the uploaded template's path is itself
/// a template, any name may be read, and none is refused.
pub fn check_var_names(
    file: &RunbookFile,
    source: &Source,
    given: &[(String, String)],
) -> Result<()> {
    if given.iter().all(|(name, _)| file.vars.contains_key(name)) {
        return Ok(());
    }
    let mut read = VarsRead::default();
    read.scan(&source.text);
    // `when` may be a bare expression, without `{{ }}`.
    for when in file.steps.iter().filter_map(|s| s.when.as_deref()) {
        if !is_template(when) {
            read.scan_expression(when);
        }
    }
    let dir = source.path.parent().unwrap_or(std::path::Path::new("."));
    for upload in file.steps.iter().filter_map(|s| s.upload.as_ref()) {
        if !upload.template {
            continue;
        }
        if is_template(&upload.src) {
            read.any = true;
            continue;
        }
        let src = dir.join(&upload.src);
        let mut files = Vec::new();
        // An unreadable source is reported by validation, with its place.
        let _ = collect_files(&src, &src, &mut files);
        for (_, path) in files {
            if let Ok(text) = std::fs::read_to_string(&path) {
                read.scan(&text);
            }
        }
    }
    if read.any {
        return Ok(());
    }
    let diagnostics: Vec<Diagnostic> = given
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !file.vars.contains_key(*name) && !read.names.contains(*name))
        .map(|name| {
            let declared: Vec<&str> = file.vars.keys().map(String::as_str).collect();
            let mut hint = match nearest(name, declared.iter().copied()) {
                Some(near) => format!("did you mean `--var {near}=...`? "),
                None => String::new(),
            };
            if declared.is_empty() {
                hint.push_str("this runbook declares no vars; ");
            } else {
                hint.push_str(&format!("its vars: {}; ", declared.join(", ")));
            }
            hint.push_str(
                "a `--var` must name a var declared under `vars:` or used as `vars.NAME`",
            );
            Diagnostic::new(
                &source.path,
                format!("`--var {name}` names no var of this runbook"),
            )
            .at(source.key_span("vars"))
            .hint(hint)
        })
        .collect();
    if diagnostics.is_empty() {
        return Ok(());
    }
    // Problems found while parsing come first, as validation would list them.
    let diagnostics = source.problems.iter().cloned().chain(diagnostics).collect();
    Err(Error::Invalid {
        diagnostics,
        source_text: source.text.clone(),
    })
}

/// The vars that templates read by name, and whether one reads `vars` in a
/// way that may read any of them.
#[derive(Default)]
struct VarsRead {
    names: std::collections::HashSet<String>,
    any: bool,
}

impl VarsRead {
    /// Reads the `{{ }}` and `{% %}` blocks of `text`.
    fn scan(&mut self, text: &str) {
        let mut rest = text;
        while let Some(open) = rest.find(['{']) {
            let after = &rest[open + 1..];
            let close = match after.chars().next() {
                Some('{') => "}}",
                Some('%') => "%}",
                _ => {
                    rest = after;
                    continue;
                }
            };
            let body = &after[1..];
            let end = body.find(close).unwrap_or(body.len());
            self.scan_expression(&body[..end]);
            rest = &body[end..];
        }
    }

    /// Finds `vars` in one template expression: `vars.NAME` and
    /// `vars['NAME']` (spaces allowed) name a var; any other use may read any.
    fn scan_expression(&mut self, expr: &str) {
        let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        for (at, _) in expr.match_indices("vars") {
            let before = expr[..at].trim_end().chars().next_back();
            if expr[..at].chars().next_back().is_some_and(is_ident) || before == Some('.') {
                continue;
            }
            let after = &expr[at + 4..];
            if after.chars().next().is_some_and(is_ident) {
                continue;
            }
            let after = after.trim_start();
            let name = if let Some(attr) = after.strip_prefix('.') {
                let attr = attr.trim_start();
                let len = attr.find(|c: char| !is_ident(c)).unwrap_or(attr.len());
                Some(&attr[..len])
            } else if let Some(index) = after.strip_prefix('[') {
                let index = index.trim_start();
                index
                    .chars()
                    .next()
                    .filter(|q| *q == '\'' || *q == '"')
                    .and_then(|q| {
                        let inner = &index[1..];
                        let end = inner.find(q)?;
                        inner[end + 1..]
                            .trim_start()
                            .starts_with(']')
                            .then(|| &inner[..end])
                    })
            } else {
                None
            };
            match name {
                Some(n) if !n.is_empty() => {
                    self.names.insert(n.to_string());
                }
                _ => self.any = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VarsRead;

    #[test]
    fn a_var_is_used_only_by_its_whole_name() {
        let read = |text: &str| {
            let mut r = VarsRead::default();
            r.scan(text);
            r
        };
        let r = read("vars:\n  a: 1\nrun: echo {{ vars.host_name }} {{ myvars.port }} {{ vars['user'] }} vars.outside");
        assert!(!r.any);
        assert!(r.names.contains("host_name") && r.names.contains("user"));
        assert!(!r.names.contains("host") && !r.names.contains("port"));
        assert!(!r.names.contains("outside"));
        let r = read("{{ vars[\"k\"]|quote }}{{vars.k2}}{% if vars [ 'k3' ] %}{{ vars . k4 }}");
        assert!(!r.any);
        for k in ["k", "k2", "k3", "k4"] {
            assert!(r.names.contains(k), "{k}");
        }
        assert!(read("{% for k, v in vars|items %}{{ k }}{% endfor %}").any);
        assert!(read("{{ vars[key] }}").any);
        assert!(!read("{{ x.vars }} {{ secrets.vars }}").any);
    }
}
