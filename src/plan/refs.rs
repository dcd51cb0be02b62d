//! Which secrets a step's templates name, read from their syntax (not by
//! rendering them): what `requires` must list, and what a hold waits on.

use super::placeholder_secrets;
use crate::runbook::files::collect_files;
use crate::runbook::template::{Context, Templater};
use crate::runbook::{Action, Runbook, Step};

/// The secrets a step's templates use, as (field, name), read from the
/// templates' syntax: `cat secrets.json` uses none. Uploaded template files
/// count, under `src`.
pub fn secret_refs(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
) -> Vec<(String, String)> {
    let spec = &step.spec;
    let mut texts: Vec<(&str, String, bool)> = Vec::new();
    if let Some(when) = &spec.when {
        texts.push(("when", when.clone(), true));
    }
    if let Some(unless) = &spec.unless {
        texts.push(("unless", unless.clone(), false));
    }
    texts.extend(spec.env.values().map(|v| ("env", v.as_text(), false)));
    match &step.action {
        Action::Run(script) => texts.push(("run", script.clone(), false)),
        Action::Http(http) => {
            texts.extend(http_templates(http).into_iter().map(|t| ("http", t, false)))
        }
        Action::Upload(upload) => {
            texts.push(("src", upload.src.clone(), false));
            texts.push(("dest", upload.dest.clone(), false));
            if upload.template {
                texts.extend(
                    template_files(templater, ctx, runbook, step, &upload.src)
                        .into_iter()
                        .map(|t| ("src", t, false)),
                );
            }
        }
        Action::Checkpoint => {}
    }
    let mut refs: Vec<(String, String)> = Vec::new();
    for (field, text, condition) in texts {
        for name in templater.secret_names(&text, condition) {
            if !refs.iter().any(|(_, n)| *n == name) {
                refs.push((field.to_string(), name));
            }
        }
    }
    refs
}

/// The secrets an HTTP request (a step's, or a secret's check) uses.
pub fn http_secret_refs(
    templater: &Templater,
    http: &crate::runbook::model::HttpSpec,
) -> Vec<String> {
    let mut names: Vec<String> = http_templates(http)
        .iter()
        .flat_map(|t| templater.secret_names(t, false))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every templated text of an HTTP request.
fn http_templates(http: &crate::runbook::model::HttpSpec) -> Vec<String> {
    fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
            _ => {}
        }
    }
    let mut out = vec![http.url.clone()];
    out.extend(http.headers.values().map(|v| v.as_text()));
    out.extend(http.body.iter().cloned());
    if let Some(json) = &http.json {
        json_strings(json, &mut out);
    }
    let expect = &http.expect;
    for texts in [&expect.body_contains, &expect.body_not_contains]
        .into_iter()
        .flatten()
    {
        out.extend(texts.items().into_iter().map(str::to_string));
    }
    for value in expect.json.iter().flat_map(|m| m.values()) {
        json_strings(value, &mut out);
    }
    out
}

/// The text of an upload's template files (those that can be read as text;
/// what cannot is reported when the step is rendered).
fn template_files(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    src: &str,
) -> Vec<String> {
    let c = ctx.for_instance(
        &step.spec.id,
        step.host.as_deref(),
        &placeholder_secrets(step),
    );
    let Ok(src) = templater.render(src, &c) else {
        return Vec::new();
    };
    let root = runbook.dir.join(src);
    let mut files = Vec::new();
    if collect_files(&root, &root, &mut files).is_err() {
        return Vec::new();
    }
    files
        .into_iter()
        .filter_map(|(_, path)| std::fs::read_to_string(path).ok())
        .collect()
}
