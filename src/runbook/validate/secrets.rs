//! Secrets: their names, their checks, the commands that print them
//! (which must read none), and the secrets each step requires.

use super::{is_env_name, Validator};
use crate::error::Diagnostic;
use crate::runbook::fleet::Fleet;
use crate::runbook::model::{EnvFileSpec, RunbookFile, StepSpec};
use crate::runbook::suggest::nearest;
use crate::runbook::template::Templater;

impl Validator<'_> {
    /// Each secret's check and name.
    pub(super) fn check_secrets(&mut self, file: &RunbookFile, fleet: &Fleet) {
        for (name, secret) in &file.secrets {
            if let Some(check) = &secret.check {
                self.check_http(None, &check.http, fleet, None);
            }
            if !is_env_name(name) {
                let d = self
                    .problem(format!(
                        "secret name `{name}` is not a valid environment variable name"
                    ))
                    .at(self.source.nested_key_span("secrets", name))
                    .hint("use letters, digits and underscores, not starting with a digit");
                self.push(d);
            }
        }
    }

    /// Each secret step `index` requires is declared.
    pub(super) fn check_requires(&mut self, index: usize, spec: &StepSpec, file: &RunbookFile) {
        for secret in &spec.requires {
            if file.secrets.contains_key(secret) {
                continue;
            }
            let hint = nearest(secret, file.secrets.keys().map(String::as_str))
                .map(|n| format!("did you mean `{n}`?"))
                .unwrap_or_else(|| {
                    "declare it under `secrets:` with a description and an owner".to_string()
                });
            let d = self
                .problem(format!(
                    "step `{}` requires secret `{secret}`, which is not declared",
                    spec.id
                ))
                .at(self.source.step_value_span(index, "requires", secret))
                .hint(hint);
            self.push(d);
        }
    }
}

/// Each secret command (`from`, `env_files` `command`) reads no secret
/// (it is rendered before any value is known, and its text is shown) and
/// has a `timeout` that is a duration (SPEC §13).
pub(super) fn check_secret_commands(v: &mut Validator, file: &RunbookFile) {
    let from = file.secrets.iter().filter_map(|(name, s)| {
        let (command, timeout) = s.from.as_ref()?.parts();
        let span = v.source.nested_key_span("secrets", name);
        Some((span, command.to_string(), timeout.map(str::to_string)))
    });
    let files = file.env_files.iter().filter_map(|e| match e {
        EnvFileSpec::Command(c) => Some((
            v.source.nested_key_span("env_files", "command"),
            c.command.clone(),
            c.timeout.clone(),
        )),
        _ => None,
    });
    let templater = Templater::new();
    let mut found = Vec::new();
    for (span, command, timeout) in from.chain(files) {
        if !templater.secret_names(&command, false).is_empty() {
            found.push(
                Diagnostic::new(
                    &v.source.path,
                    format!("secret command `{command}` reads a secret"),
                )
                .at(span)
                .hint("a secret command is rendered with `vars` and `env` only, before any value is known, and its text is shown; let the tool read its own credentials (`VAULT_TOKEN`, `OP_SERVICE_ACCOUNT_TOKEN`) from the environment"),
            );
        }
        if let Some(e) = timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t.trim()).err().map(|e| (t, e)))
        {
            found.push(
                Diagnostic::new(
                    &v.source.path,
                    format!(
                        "bad duration `{}` for a secret command's `timeout`: {}",
                        e.0, e.1
                    ),
                )
                .at(span)
                .hint("write a number with a unit, e.g. `10s`; the default is 30s"),
            );
        }
    }
    for d in found {
        v.push(d);
    }
}
