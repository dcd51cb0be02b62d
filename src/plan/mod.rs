//! Model → plan: every step's definition rendered, fingerprinted, and placed
//! in a petgraph DAG that the scheduler walks.

use std::collections::BTreeMap;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

pub use crate::action::{RenderedAction, RenderedHttp};
pub use source::collect_files;

mod fingerprint;
pub mod source;
mod via;
use crate::error::{Diagnostic, Error, Result};
use crate::runbook::template::{placeholder, Context, TemplateError, Templater};
use crate::runbook::{Action, Runbook, Step};
use fingerprint::{fingerprint, legacy_fingerprint};
use via::via_of;

/// A step ready to be scheduled.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// The step id.
    pub id: String,
    /// Indexes of the steps it needs.
    pub needs: Vec<usize>,
    /// Indexes of the steps that need it.
    pub dependents: Vec<usize>,
    /// The host it runs on; `None` is local.
    pub host: Option<String>,
    /// For an instance of a step on a group: what its instances share.
    pub family: Option<crate::runbook::fleet::Family>,
    /// The rolling block it is (the block's checkpoint) or is an instance
    /// of an inner step of (SPEC §15).
    pub block: Option<String>,
    /// Secrets it requires.
    pub requires: Vec<String>,
    /// Its definition rendered with secrets as placeholders.
    pub rendered: Rendered,
    /// Hash of what `rendered` does, the same on every machine (SPEC §11):
    /// a change means the step must run again.
    pub fingerprint: String,
    /// The hash this step had before fingerprints left out how this
    /// machine reaches its host (the upload's absolute source, the login
    /// user): a stored one is taken for [`PlannedStep::fingerprint`].
    pub legacy_fingerprint: String,
}

/// A step's definition with every template rendered.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    /// `when`, evaluated.
    pub when: bool,
    /// `unless`, rendered.
    pub unless: Option<String>,
    /// `env`, rendered.
    pub env: Vec<(String, String)>,
    /// Time limit per attempt.
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay between attempts.
    pub retry_delay: Duration,
    /// What it does.
    pub action: RenderedAction,
    /// The host as addressed, so a moved host reruns its steps.
    pub host: Option<String>,
    /// The host as the fingerprint names it, the same from any machine:
    /// its name, address and port (not the login user).
    #[serde(skip)]
    pub place: Option<String>,
}

/// The whole plan.
pub struct Plan {
    /// Steps in file order.
    pub steps: Vec<PlannedStep>,
    /// The DAG: an edge goes from a step to each step that needs it.
    pub graph: DiGraph<usize, ()>,
}

/// A step's `approval` question and `title`, rendered (SPEC §14). They are
/// shown to people, so they see no secret: `secrets.NAME` is undefined here.
pub fn render_label(
    templater: &Templater,
    ctx: &Context,
    step: &Step,
    text: &str,
) -> std::result::Result<String, TemplateError> {
    let c = ctx.for_instance(&step.spec.id, step.host.as_deref(), &BTreeMap::new());
    templater.render(text, &c)
}

/// Renders a step's templates with the given secrets. The error names the field.
pub fn render_step(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    secrets: &BTreeMap<String, String>,
) -> std::result::Result<Rendered, (String, TemplateError)> {
    let c = ctx.for_instance(&step.spec.id, step.host.as_deref(), secrets);
    let r = |field: &str, text: &str| {
        templater
            .render(text, &c)
            .map_err(|e| (field.to_string(), e))
    };
    let when = match &step.spec.when {
        Some(cond) => templater
            .condition(cond, &c)
            .map_err(|e| ("when".to_string(), e))?,
        None => true,
    };
    let unless = step
        .spec
        .unless
        .as_deref()
        .map(|u| r("unless", u))
        .transpose()?;
    let env = step
        .spec
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), r("env", &v.as_text())?)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let action = match &step.action {
        Action::Run(script) => RenderedAction::Run {
            script: r("run", script)?,
        },
        Action::Checkpoint => RenderedAction::Checkpoint,
        Action::Http(http) => {
            let mut rendered =
                render_http(templater, &c, http).map_err(|e| ("http".to_string(), e))?;
            rendered.via = via_of(templater, &c, step, http.via.as_deref())
                .map_err(|e| ("via".to_string(), e))?;
            RenderedAction::Http(rendered)
        }
        Action::Upload(upload) => {
            // The definition only: the source is read when the step starts
            // (source::load), so what an earlier step built is what ships.
            let src = runbook.dir.join(r("src", &upload.src)?);
            let dest = r("dest", &upload.dest)?;
            if upload.delete {
                check_delete(&src, &dest)?;
            }
            crate::action::excluder(&upload.exclude).map_err(|message| {
                (
                    "exclude".to_string(),
                    TemplateError {
                        message,
                        range: None,
                    },
                )
            })?;
            RenderedAction::Upload {
                src,
                dest,
                files: Vec::new(),
                delete: upload.delete,
                exclude: upload.exclude.clone(),
                template: upload.template,
                mode: upload
                    .mode
                    .as_deref()
                    .and_then(|m| u32::from_str_radix(m, 8).ok()),
                source_hash: None,
            }
        }
    };
    let addressed = step.host.as_ref().and_then(|h| {
        let r = render_host(templater, &c, &runbook.hosts[h]).ok()?;
        // A host that gives no port has none in its fingerprint (ssh's
        // configuration decides it); one that gives a port keeps the form.
        let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
        Some((
            format!("{}@{}{port}", r.user.unwrap_or_default(), r.address),
            format!("{h} {}{port}", r.address),
        ))
    });
    let (host, place) = addressed.unzip();
    Ok(Rendered {
        when,
        unless,
        env,
        timeout: step.timeout,
        retries: step.retries,
        retry_delay: step.retry_delay,
        action,
        host,
        place,
    })
}

/// `delete: true` needs a folder source and a destination that is a folder
/// of its own (never empty, `/` or `.`). The error names the field at fault.
fn check_delete(
    src: &std::path::Path,
    dest: &str,
) -> std::result::Result<(), (String, TemplateError)> {
    let fail = |field: &str, message: String| {
        Err((
            field.to_string(),
            TemplateError {
                message,
                range: None,
            },
        ))
    };
    // A source that does not exist yet is checked when the step starts.
    if src.exists() && !src.is_dir() {
        return fail(
            "delete",
            format!(
                "`delete: true` applies to folders only, and {} is not a folder: remove `delete`, or upload the folder",
                src.display()
            ),
        );
    }
    if let Some(problem) = crate::action::unsafe_root(dest) {
        return fail(
            "dest",
            format!("`delete: true` refuses this dest: {problem}"),
        );
    }
    Ok(())
}

/// A host's connection fields with templates rendered.
#[derive(Debug, Clone)]
pub struct RenderedHost {
    /// Address.
    pub address: String,
    /// Login user.
    pub user: Option<String>,
    /// Port, when the runbook or inventory gives one (else ssh's own
    /// configuration decides, as for Ansible).
    pub port: Option<u16>,
    /// Private key, when one is set (an empty value means none).
    pub identity_file: Option<String>,
    /// known_hosts file, when one is set.
    pub known_hosts_file: Option<String>,
}

/// Renders `address`, `user` and `port` of a host.
pub fn render_host(
    templater: &Templater,
    c: &minijinja::Value,
    spec: &crate::runbook::model::HostSpec,
) -> std::result::Result<RenderedHost, TemplateError> {
    let address = templater
        .render(&spec.address, c)
        .map_err(|e| TemplateError {
            message: format!("address: {}", e.message),
            ..e
        })?;
    let user = spec
        .user
        .as_deref()
        .map(|u| templater.render(u, c))
        .transpose()?;
    // ssh would read these as one of its options (`-oProxyCommand=...`).
    for (what, value) in [("address", Some(&address)), ("user", user.as_ref())] {
        if value.is_some_and(|v| v.trim_start().starts_with('-')) {
            return Err(TemplateError {
                message: format!(
                    "{what} starts with `-`, which ssh would read as an option; write the host's real {what}"
                ),
                range: None,
            });
        }
    }
    let port = match &spec.port {
        None => None,
        Some(p) => {
            let text = templater.render(&p.as_text(), c)?;
            Some(text.trim().parse::<u16>().map_err(|_| TemplateError {
                message: format!("port `{text}` is not a port number (1-65535)"),
                range: None,
            })?)
        }
    };
    let optional = |v: &Option<String>| -> std::result::Result<Option<String>, TemplateError> {
        Ok(v.as_deref()
            .map(|t| templater.render(t, c))
            .transpose()?
            .filter(|s| !s.trim().is_empty()))
    };
    Ok(RenderedHost {
        address,
        user: user.filter(|u| !u.trim().is_empty()),
        port,
        identity_file: optional(&spec.identity_file)?,
        known_hosts_file: optional(&spec.known_hosts_file)?,
    })
}

/// Renders an HTTP request (also used by secret checks).
pub fn render_http(
    templater: &Templater,
    c: &minijinja::Value,
    http: &crate::runbook::model::HttpSpec,
) -> std::result::Result<RenderedHttp, TemplateError> {
    let headers = http
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), templater.render(&v.as_text(), c)?)))
        .collect::<std::result::Result<Vec<_>, TemplateError>>()?;
    let (body, json) = match (&http.body, &http.json) {
        (Some(b), _) => (Some(templater.render(b, c)?), false),
        (None, Some(j)) => (Some(render_json(templater, c, j)?.to_string()), true),
        (None, None) => (None, false),
    };
    Ok(RenderedHttp {
        method: http
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase(),
        url: templater.render(&http.url, c)?,
        headers,
        body,
        json,
        via: http.via.clone(),
        expect: crate::runbook::model::Expect {
            status: http.expect.status.clone(),
            body_contains: http
                .expect
                .body_contains
                .as_ref()
                .map(|t| t.try_map(|s| templater.render(s, c)))
                .transpose()?,
            body_not_contains: http
                .expect
                .body_not_contains
                .as_ref()
                .map(|t| t.try_map(|s| templater.render(s, c)))
                .transpose()?,
            json: http
                .expect
                .json
                .as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| Ok((k.clone(), render_json(templater, c, v)?)))
                        .collect::<std::result::Result<_, TemplateError>>()
                })
                .transpose()?,
        },
    })
}

fn render_json(
    templater: &Templater,
    c: &minijinja::Value,
    value: &serde_json::Value,
) -> std::result::Result<serde_json::Value, TemplateError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) => J::String(templater.render(s, c)?),
        J::Array(items) => J::Array(
            items
                .iter()
                .map(|v| render_json(templater, c, v))
                .collect::<std::result::Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(templater, c, v)?)))
                .collect::<std::result::Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// How a secret's placeholder value starts.
const SECRET_PLACEHOLDER: &str = "[secret:";

/// Placeholder values for a step's secrets, used for validation and fingerprints.
pub fn placeholder_secrets(step: &Step) -> BTreeMap<String, String> {
    step.spec
        .requires
        .iter()
        .map(|s| (s.clone(), placeholder(s)))
        .collect()
}

/// Builds the plan. Template errors (an undefined name, a secret the step
/// does not require) are validation errors. Secrets are placeholders here:
/// `templater` is [`Templater::for_placeholders`].
pub fn build(runbook: &Runbook, ctx: &Context, templater: &Templater) -> Result<Plan> {
    let mut diagnostics = Vec::new();
    let mut steps = Vec::with_capacity(runbook.steps.len());
    let mut graph = DiGraph::with_capacity(runbook.steps.len(), runbook.steps.len());
    let nodes: Vec<NodeIndex> = (0..runbook.steps.len())
        .map(|i| graph.add_node(i))
        .collect();
    for step in &runbook.steps {
        let mut misused = false;
        for (field, secret) in secret_refs(templater, ctx, runbook, step) {
            if step.spec.requires.contains(&secret) {
                continue;
            }
            misused = true;
            let declared = runbook.secrets.contains_key(&secret);
            diagnostics.push(
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
        let rendered = match render_step(templater, ctx, runbook, step, &placeholder_secrets(step))
        {
            Ok(r) => r,
            Err((field, e)) => {
                // An unlisted secret is undefined here too: said once, above.
                if !(misused && e.message.contains("`secrets.")) {
                    diagnostics.push(template_diagnostic(runbook, step, &field, &e));
                }
                continue;
            }
        };
        for (field, text) in [("approval", &step.approval), ("title", &step.spec.title)] {
            if let Some(Err(e)) = text
                .as_deref()
                .map(|t| render_label(templater, ctx, step, t))
            {
                diagnostics.push(template_diagnostic(runbook, step, field, &e));
            }
        }
        if let Some(d) = url_diagnostic(runbook, step, &rendered) {
            diagnostics.push(d);
        }
        if let Some(d) = via::diagnostic(runbook, step, &rendered) {
            diagnostics.push(d);
        }
        if let Some(d) = source_diagnostic(ctx, runbook, step, &rendered) {
            diagnostics.push(d);
        }
        for &need in &step.needs {
            graph.add_edge(nodes[need], nodes[step.index], ());
        }
        let fingerprint = fingerprint(&rendered, &runbook.dir);
        let legacy_fingerprint = legacy_fingerprint(&rendered);
        steps.push(PlannedStep {
            id: step.id.clone(),
            family: step.family.clone(),
            block: step.spec.block.clone().or_else(|| {
                crate::runbook::rolling::is_block(&step.spec).then(|| step.spec.id.clone())
            }),
            needs: step.needs.clone(),
            dependents: Vec::new(),
            host: step.host.clone(),
            requires: step.spec.requires.clone(),
            rendered,
            fingerprint,
            legacy_fingerprint,
        });
    }
    let all_secrets: BTreeMap<String, String> = runbook
        .secrets
        .keys()
        .map(|s| (s.clone(), placeholder(s)))
        .collect();
    for (name, spec) in &runbook.secrets {
        if let Some(check) = &spec.check {
            let rendered = render_http(templater, &ctx.for_step("", &all_secrets), &check.http);
            if let Some(problem) = rendered
                .as_ref()
                .ok()
                .filter(|r| !r.url.contains(SECRET_PLACEHOLDER))
                .and_then(|r| crate::action::url_problem(&r.url))
            {
                diagnostics.push(
                    Diagnostic::new(
                        &runbook.source.path,
                        format!("secret `{name}`, `check`: {problem}"),
                    )
                    .at(runbook.source.nested_key_span("secrets", name))
                    .hint("write an absolute URL such as https://api.example.com/user"),
                );
            }
            if let Err(e) = rendered {
                diagnostics.push(
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
    for (name, spec) in &runbook.hosts {
        if let Err(e) = render_host(templater, &ctx.for_step("", &BTreeMap::new()), spec) {
            diagnostics.push(
                Diagnostic::new(
                    &runbook.source.path,
                    format!("host `{name}`: {}", e.message),
                )
                .at(runbook.source.nested_key_span("hosts", name))
                .hint(undefined_hint(&e.message)),
            );
        }
    }
    if !diagnostics.is_empty() {
        // The instances of a step on a group share their problems: each once.
        let mut unique: Vec<Diagnostic> = Vec::with_capacity(diagnostics.len());
        for d in diagnostics {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        let diagnostics = runbook.source.locate_steps(unique);
        return Err(Error::Invalid {
            diagnostics,
            source_text: runbook.source.text.clone(),
        });
    }
    for i in 0..steps.len() {
        for n in steps[i].needs.clone() {
            steps[n].dependents.push(i);
        }
    }
    Ok(Plan { steps, graph })
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

fn undefined_hint(message: &str) -> String {
    if message.contains("`env.") {
        "set that environment variable, or give a fallback with `| default(\"...\")`".to_string()
    } else if message.contains("`vars.") {
        "declare it under `vars:` or pass `--var name=value`".to_string()
    } else {
        "names available in templates: vars, env, secrets (those the step requires), hosts, host (on a step with `on:`), run.id, step.id".to_string()
    }
}

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
