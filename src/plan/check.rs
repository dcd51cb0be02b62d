//! What makes a plan invalid, found in one pass over the runbook, each
//! problem a diagnostic naming file:line and what to do: a secret used but
//! not listed, a template that does not render with placeholders, a URL
//! that is not one, a `via` that names no host, an upload source whose
//! templates fail, a secret's `check`, a host's fields.

use std::collections::BTreeMap;

use super::host::render_host;
use super::http::render_http;
use super::refs::secret_refs;
use super::render::{render_label, render_step};
use super::{placeholder_secrets, source, via, Rendered, RenderedAction};
use crate::error::{Diagnostic, Error};
use crate::runbook::template::{placeholder, Context, TemplateError, Templater};
use crate::runbook::{Runbook, Step};

/// How a secret's placeholder value starts.
const SECRET_PLACEHOLDER: &str = "[secret:";

/// A step's problems, added to `problems`; its definition rendered with
/// placeholders when it renders.
pub(super) fn step(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    problems: &mut Vec<Diagnostic>,
) -> Option<Rendered> {
    let misused = unlisted_secrets(templater, ctx, runbook, step, problems);
    let rendered = match render_step(templater, ctx, runbook, step, &placeholder_secrets(step)) {
        Ok(r) => r,
        Err((field, e)) => {
            // An unlisted secret is undefined here too: said once, above.
            if !(misused && e.message.contains("`secrets.")) {
                problems.push(template_diagnostic(runbook, step, &field, &e));
            }
            return None;
        }
    };
    for (field, text) in [("approval", &step.approval), ("title", &step.spec.title)] {
        if let Some(Err(e)) = text
            .as_deref()
            .map(|t| render_label(templater, ctx, step, t))
        {
            problems.push(template_diagnostic(runbook, step, field, &e));
        }
    }
    problems.extend(url_diagnostic(runbook, step, &rendered));
    problems.extend(via::diagnostic(runbook, step, &rendered));
    problems.extend(source_diagnostic(ctx, runbook, step, &rendered));
    Some(rendered)
}

/// The secrets a step's templates use that its `requires` does not list
/// (declared or not), one problem each; whether there was one.
fn unlisted_secrets(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    problems: &mut Vec<Diagnostic>,
) -> bool {
    let mut misused = false;
    for (field, secret) in secret_refs(templater, ctx, runbook, step) {
        if step.spec.requires.contains(&secret) {
            continue;
        }
        misused = true;
        let declared = runbook.secrets.contains_key(&secret);
        problems.push(
            Diagnostic::new(
                &runbook.source.path,
                if declared {
                    format!("step `{}`, `{field}`: uses secret `{secret}` but does not list it in `requires`", step.spec.id)
                } else {
                    format!("step `{}`, `{field}`: uses `secrets.{secret}`, which is not declared", step.spec.id)
                },
            )
            .at(runbook.source.step_needle_span(step.source, &field, &format!("secrets.{secret}")))
            .hint(if declared {
                format!("add `requires: [{secret}]` to the step, so it is held while the secret is missing")
            } else {
                "declare it under `secrets:` and list it in the step's `requires`".to_string()
            }),
        );
    }
    misused
}

/// Each secret's `check` request, rendered with every secret a
/// placeholder: a URL that is not one, a template that fails.
pub(super) fn secret_checks(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    problems: &mut Vec<Diagnostic>,
) {
    let all_secrets: BTreeMap<String, String> = runbook
        .secrets
        .keys()
        .map(|s| (s.clone(), placeholder(s)))
        .collect();
    for (name, spec) in &runbook.secrets {
        let Some(check) = &spec.check else {
            continue;
        };
        let rendered = render_http(templater, &ctx.for_step("", &all_secrets), &check.http);
        if let Some(problem) = rendered
            .as_ref()
            .ok()
            .filter(|r| !r.url.contains(SECRET_PLACEHOLDER))
            .and_then(|r| crate::action::url_problem(&r.url))
        {
            problems.push(
                Diagnostic::new(
                    &runbook.source.path,
                    format!("secret `{name}`, `check`: {problem}"),
                )
                .at(runbook.source.nested_key_span("secrets", name))
                .hint("write an absolute URL such as https://api.example.com/user"),
            );
        }
        if let Err(e) = rendered {
            problems.push(
                Diagnostic::new(
                    &runbook.source.path,
                    format!("secret `{name}`, `check`: {}", e.message),
                )
                .at(runbook.source.nested_key_span("secrets", name))
                .hint(undefined_hint(&e.message)),
            );
        }
    }
}

/// Each host whose connection fields do not render.
pub(super) fn hosts(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    problems: &mut Vec<Diagnostic>,
) {
    for (name, spec) in &runbook.hosts {
        if let Err(e) = render_host(templater, &ctx.for_step("", &BTreeMap::new()), spec) {
            problems.push(
                Diagnostic::new(
                    &runbook.source.path,
                    format!("host `{name}`: {}", e.message),
                )
                .at(runbook.source.nested_key_span("hosts", name))
                .hint(undefined_hint(&e.message)),
            );
        }
    }
}

/// The error for a plan with problems, each said once: the instances of a
/// step on a group share theirs.
pub(super) fn invalid(runbook: &Runbook, problems: Vec<Diagnostic>) -> Error {
    let mut unique: Vec<Diagnostic> = Vec::with_capacity(problems.len());
    for d in problems {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    Error::Invalid {
        diagnostics: runbook.source.locate_steps(unique),
        source_text: runbook.source.text.clone(),
    }
}

/// An upload source that exists now is read (with placeholders) to check
/// its templates; one that does not exist is accepted when the step has
/// `needs` (an earlier step may make it) and checked when it starts.
fn source_diagnostic(
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    rendered: &Rendered,
) -> Option<Diagnostic> {
    let RenderedAction::Upload { src, .. } = &rendered.action else {
        return None;
    };
    if std::fs::symlink_metadata(src).is_err() && !step.needs.is_empty() {
        return None;
    }
    let message = source::hash_now(ctx, step, rendered)?.err()?;
    if !message.contains("does not exist") {
        let e = TemplateError {
            message,
            range: None,
        };
        let mut d = template_diagnostic(runbook, step, "src", &e);
        if !step.needs.is_empty() {
            // The file is checked as it is now; a step it needs may write
            // it again before it is sent (a copy left by an earlier run).
            let hint = d.hint.take().unwrap_or_default();
            d.hint = Some(format!(
                "{hint}; the file is checked as it is now: if a step this one needs writes it, this copy is left from an earlier run: remove it, and it is checked when the upload starts"
            ));
        }
        return Some(d);
    }
    Some(
        Diagnostic::new(
            &runbook.source.path,
            format!("step `{}`, `src`: {message}", step.spec.id),
        )
        .at(runbook.source.step_key_span(step.source, "src"))
        .hint("create it, or add `needs:` naming the step that builds it (it is then read when the upload starts)"),
    )
}

/// A URL that is known before the run (it uses no secret) and is not one.
/// URLs built from secrets are checked when the step runs.
fn url_diagnostic(runbook: &Runbook, step: &Step, rendered: &Rendered) -> Option<Diagnostic> {
    let RenderedAction::Http(http) = &rendered.action else {
        return None;
    };
    if http.url.contains(SECRET_PLACEHOLDER) {
        return None;
    }
    let problem = crate::action::url_problem(&http.url)?;
    Some(
        Diagnostic::new(
            &runbook.source.path,
            format!("step `{}`, `url`: {problem}", step.spec.id),
        )
        .at(runbook.source.step_key_span(step.source, "url"))
        .hint("write an absolute URL such as http://127.0.0.1:8000/health"),
    )
}

fn template_diagnostic(
    runbook: &Runbook,
    step: &Step,
    field: &str,
    e: &TemplateError,
) -> Diagnostic {
    let span = match (&e.range, field) {
        (Some(range), "run" | "unless" | "when") => runbook
            .source
            .step_key_span(step.source, field)
            .and_then(|(at, _)| {
                let raw = match field {
                    "run" => step.spec.run.as_deref(),
                    "unless" => step.spec.unless.as_deref(),
                    _ => step.spec.when.as_deref(),
                }?;
                let needle = raw.get(range.clone())?;
                let found = runbook.source.text[at..].find(needle)?;
                Some((at + found, needle.len()))
            })
            .or_else(|| runbook.source.step_key_span(step.source, field)),
        _ => runbook.source.step_key_span(step.source, field),
    };
    Diagnostic::new(
        &runbook.source.path,
        format!("step `{}`, `{field}`: {}", step.spec.id, e.message),
    )
    .at(span)
    .hint(undefined_hint(&e.message))
}

/// Every fixed name the renderer gives a template
/// ([`Context::for_instance`]; `vars`, `env`, `secrets` and `hosts` are
/// open maps). `host` is there only on a step on a host or a group; the
/// unit test below holds this list to the renderer.
const TEMPLATE_NAMES: &[&str] = &[
    "vars",
    "env",
    "secrets",
    "hosts",
    "run.id",
    "step.id",
    "step.host",
    "host.name",
    "host.address",
    "host.user",
    "host.port",
    "host.vars",
];

fn undefined_hint(message: &str) -> String {
    if message.contains("`env.") {
        return "set that environment variable, or give a fallback with `| default(\"...\")`"
            .to_string();
    }
    if message.contains("`vars.") {
        return "declare it under `vars:` or pass `--var name=value`".to_string();
    }
    // The name the message quotes: `step.hots` is undefined.
    let used = message.split('`').nth(1).unwrap_or_default();
    let mut hint = String::new();
    if used == "host" || used.starts_with("host.") {
        hint.push_str("`host` is defined only on a step with `on:` (a host or a group); ");
    } else if let Some(near) =
        crate::runbook::suggest::nearest(used, TEMPLATE_NAMES.iter().copied())
    {
        hint.push_str(&format!("did you mean `{near}`? "));
    }
    hint.push_str(
        "names available in templates: vars, env, secrets (those the step requires), hosts, run.id, step.id, step.host (the host's name, empty on a local step); on a step with `on:` also host (host.name, host.address, host.user, host.port, host.vars)",
    );
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of a context, nested maps' fields as `map.field`.
    fn names(v: &minijinja::Value, prefix: &str, out: &mut Vec<String>) {
        let Ok(keys) = v.try_iter() else { return };
        for k in keys {
            let key = k.to_string();
            let full = format!("{prefix}{key}");
            match v.get_attr(&key).ok() {
                Some(inner) if ["run", "step", "host"].contains(&full.as_str()) => {
                    names(&inner, &format!("{full}."), out)
                }
                _ => out.push(full),
            }
        }
    }

    #[test]
    fn the_hint_lists_what_the_renderer_gives_a_step_on_a_host() {
        let hosts = serde_json::json!({"web1": {"name": "web1", "address": "a", "user": "", "port": "", "vars": {}}});
        let ctx = Context::new(
            &indexmap::IndexMap::new(),
            minijinja::Value::from_serialize(&hosts),
            1,
        );
        let mut got = Vec::new();
        names(
            &ctx.for_instance("a", Some("web1"), &BTreeMap::new()),
            "",
            &mut got,
        );
        got.sort();
        let mut want: Vec<String> = TEMPLATE_NAMES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        let hint = undefined_hint("`step.hots` is undefined");
        assert!(hint.starts_with("did you mean `step.host`? "), "{hint}");
        for n in TEMPLATE_NAMES {
            assert!(hint.contains(n), "{n} missing from {hint}");
        }
        assert!(undefined_hint("`host.name` is undefined").starts_with("`host` is defined only"));
        assert!(!undefined_hint("`nope` is undefined").contains("did you mean"));
    }
}
