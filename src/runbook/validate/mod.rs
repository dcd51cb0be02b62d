//! Validation: turns the model as written into a [`Runbook`] whose ids, needs,
//! hosts, secrets and durations are known to be good (SPEC §1).
//!
//! One pass, in the order problems are listed: the steps' ids, the top
//! level (hosts, the inventory, `env_files`, secrets, notify), then each
//! step (`steps.rs`: its needs, where it runs, what it requires, its action
//! and durations), then the graph (`graph.rs`: cycles). `vars.rs` checks
//! `--var` names apart, before anything runs.

mod actions;
mod graph;
mod hosts;
mod secrets;
mod steps;
mod vars;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::expand::expand;
use super::fleet::{self, Fleet};
use super::model::RunbookFile;
use super::rolling;
use super::source::Source;
use crate::error::{Diagnostic, Error, Result};

pub use super::book::{Action, Runbook, Step};
pub use super::suggest::nearest;
pub use graph::find_cycle;
pub use vars::check_var_names;

/// Validates a parsed runbook. `overrides` are `--var` values.
pub fn validate(
    file: RunbookFile,
    source: Source,
    overrides: &[(String, String)],
) -> Result<Runbook> {
    let (runbook, diagnostics) = validate_all(file, source, overrides);
    if !diagnostics.is_empty() {
        return Err(Error::Invalid {
            diagnostics,
            source_text: runbook.source.text.clone(),
        });
    }
    Ok(runbook)
}

/// Validates a parsed runbook and returns it with every problem found (the
/// parse's, then validation's), so that a caller may look for more in what
/// is valid (the templates) before reporting them all at once.
pub fn validate_all(
    file: RunbookFile,
    source: Source,
    overrides: &[(String, String)],
) -> (Runbook, Vec<Diagnostic>) {
    let mut v = Validator {
        source: &source,
        diagnostics: source.problems.clone(),
    };
    let ids = v.step_ids(&file.steps);
    v.check_top_level(&file);
    let fleet = fleet::hosts_and_groups(
        &file.hosts,
        &file.groups,
        file.inventory.as_ref(),
        &source,
        &mut v.diagnostics,
    );
    v.check_env_files(&file.env_files, &fleet);
    secrets::check_secret_commands(&mut v, &file);
    let rolling = rolling::check(&file.steps, &source, &fleet.hosts, &fleet.groups);
    v.diagnostics.extend(rolling);
    v.check_secrets(&file, &fleet);
    for (i, notify) in file.notify.iter().enumerate() {
        v.check_notify(i, notify);
    }
    let (mut steps, on_group) = v.steps(&file, &ids, &fleet);
    rolling::wire_needs(&mut steps);
    // Every problem at once: a cycle among the needs that resolved is one
    // too (unless two steps share an id, so a need may not mean what the
    // writer meant).
    let distinct: HashSet<&str> = steps.iter().map(|s| s.spec.id.as_str()).collect();
    if distinct.len() == steps.len() {
        v.check_cycle(&steps);
    }
    let steps = expand(steps, &on_group, &fleet.groups);
    let diagnostics = v.diagnostics;
    let mut vars = file.vars;
    for (key, value) in overrides {
        vars.insert(key.clone(), serde_json::Value::String(value.clone()));
    }
    let Fleet { hosts, groups, .. } = fleet;
    let runbook = Runbook {
        name: file.name.unwrap_or_else(|| name_from_path(&source.path)),
        description: file.description,
        dir: source.path.parent().map(PathBuf::from).unwrap_or_default(),
        vars,
        hosts,
        groups,
        env_files: file.env_files,
        secrets: file.secrets,
        steps,
        notify: file.notify,
        source,
    };
    let diagnostics = runbook.source.locate_steps(diagnostics);
    (runbook, diagnostics)
}

/// A runbook without `name:` is named after its file, or after its folder
/// when the file is `runbook.yaml`.
fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if stem == "runbook" {
        path.parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or(stem)
    } else {
        stem
    }
}

/// The problems found so far, and what every check needs to place them.
struct Validator<'a> {
    source: &'a Source,
    diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    fn problem(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.source.path, message)
    }

    /// A runbook with no steps, a host named `local`.
    fn check_top_level(&mut self, file: &RunbookFile) {
        // A misspelt `steps:` is reported as such, not also as a missing list.
        if file.steps.is_empty() && self.source.problems.is_empty() {
            let d = self
                .problem("the runbook has no steps")
                .at(self.source.key_span("steps").or(Some((0, 1))))
                .hint("add a `steps:` list with at least one step");
            self.push(d);
        }
        if file.hosts.contains_key("local") {
            let d = self
                .problem("a host cannot be named `local`: that name means this machine")
                .at(self.source.nested_key_span("hosts", "local"))
                .hint("rename the host");
            self.push(d);
        }
    }
}

/// What to do about an inventory host runbook would reach another way than
/// its inventory says.
const REFUSED_HINT: &str = "runbook reaches hosts with plain ssh and your ssh config (~/.ssh/config), with key login only: put ssh options such as ProxyJump in ~/.ssh/config, run this machine's steps with `on: local`, or declare the host under `hosts:` (which wins over the inventory) or leave it out of this step's group";

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use crate::error::Error;

    /// The messages `runbook validate` would print for `yaml`.
    fn problems(yaml: &str) -> Vec<String> {
        match crate::check_text(std::path::Path::new("/tmp/rb-unit/r.yaml"), yaml) {
            Ok(()) => Vec::new(),
            Err(Error::Invalid { diagnostics, .. }) => {
                diagnostics.iter().map(|d| d.message.clone()).collect()
            }
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn a_cycle_is_named_in_order() {
        let got = problems("steps:\n  - id: a\n    needs: [c]\n  - id: b\n    needs: [a]\n  - id: c\n    needs: [b]\n  - id: free\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("a → c → b → a") || got[0].contains("a → b → c → a"),
            "{got:?}"
        );
    }

    #[test]
    fn secret_use_is_read_from_template_syntax() {
        let head = "secrets:\n  TOKEN: { description: t }\nsteps:\n  - id: s\n";
        // Words that only look like a use are fine.
        assert!(problems(&format!(
            "{head}    run: cat secrets.json\n    doc: see secrets.yaml\n"
        ))
        .is_empty());
        // A use without `requires`, and an undeclared one, are not.
        let used = problems(&format!("{head}    run: echo {{{{ secrets.TOKEN }}}}\n"));
        assert!(used.iter().any(|m| m.contains("requires")), "{used:?}");
        let nope = problems(&format!(
            "{head}    requires: [TOKEN]\n    run: echo {{{{ secrets.NOPE }}}}\n"
        ));
        assert!(nope.iter().any(|m| m.contains("NOPE")), "{nope:?}");
    }

    #[test]
    fn bad_durations_and_urls_are_problems() {
        let got = problems("steps:\n  - id: s\n    timeout: 10 parsecs\n    run: 'true'\n");
        assert!(got.len() == 1 && got[0].contains("bad duration"), "{got:?}");
        let got = problems("steps:\n  - id: h\n    http: { url: \"localhost:80/x\" }\n");
        assert!(
            got.len() == 1 && got[0].contains("not an http or https URL"),
            "{got:?}"
        );
        assert!(
            problems("steps:\n  - id: h\n    http: { url: \"http://127.0.0.1:80/x\" }\n")
                .is_empty()
        );
    }
}
