//! Model → plan: every step's definition rendered, fingerprinted, and placed
//! in a petgraph DAG that the scheduler walks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Diagnostic, Error, Result};
use crate::runbook::template::{Context, TemplateError, Templater};
use crate::runbook::{Action, Runbook, Step};

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
    /// Secrets it requires.
    pub requires: Vec<String>,
    /// Its definition rendered with secrets as placeholders.
    pub rendered: Rendered,
    /// Hash of `rendered`: a change means the step must run again.
    pub fingerprint: String,
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
}

/// A rendered action.
#[derive(Debug, Clone, Serialize)]
pub enum RenderedAction {
    /// A shell script.
    Run {
        /// The script text.
        script: String,
    },
    /// A copy of a local file or folder.
    Upload {
        /// Absolute local source.
        src: PathBuf,
        /// Destination path.
        dest: String,
        /// Render the source as a template.
        template: bool,
        /// File mode.
        mode: Option<u32>,
        /// Remove what is under `dest` and not in `src` (folders only).
        /// Left out of the fingerprint when false, so older runs keep theirs.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        delete: bool,
        /// Hash of what will be written, so a changed source reruns the step.
        content_hash: String,
        /// The files with their destinations and (rendered) content.
        #[serde(skip)]
        files: Vec<crate::exec::upload::FileToWrite>,
    },
    /// An HTTP request.
    Http(RenderedHttp),
    /// Nothing to do.
    Checkpoint,
}

/// A rendered HTTP request and its expectations.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedHttp {
    /// Method, upper case.
    pub method: String,
    /// URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body text (JSON bodies are serialized here).
    pub body: Option<String>,
    /// Whether the body is JSON.
    pub json: bool,
    /// The host that carries the request.
    pub via: Option<String>,
    /// Expectations.
    pub expect: crate::runbook::model::Expect,
}

/// The whole plan.
pub struct Plan {
    /// Steps in file order.
    pub steps: Vec<PlannedStep>,
    /// The DAG: an edge goes from a step to each step that needs it.
    pub graph: DiGraph<usize, ()>,
}

/// Renders a step's templates with the given secrets. The error names the field.
pub fn render_step(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    secrets: &BTreeMap<String, String>,
) -> std::result::Result<Rendered, (String, TemplateError)> {
    let c = ctx.for_step(&step.spec.id, secrets);
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
        Action::Http(http) => RenderedAction::Http(
            render_http(templater, &c, http).map_err(|e| ("http".to_string(), e))?,
        ),
        Action::Upload(upload) => {
            let src = runbook.dir.join(r("src", &upload.src)?);
            let (content_hash, files) = read_source(templater, &c, &src, upload.template)
                .map_err(|e| ("src".to_string(), e))?;
            let dest = r("dest", &upload.dest)?;
            if upload.delete {
                check_delete(&src, &dest)?;
            }
            let files = crate::exec::upload::destinations(src.is_dir(), &dest, files, &src);
            RenderedAction::Upload {
                src,
                dest,
                files,
                delete: upload.delete,
                template: upload.template,
                mode: upload
                    .mode
                    .as_deref()
                    .and_then(|m| u32::from_str_radix(m, 8).ok()),
                content_hash,
            }
        }
    };
    let host = step.host.as_ref().and_then(|h| {
        let r = render_host(templater, &c, &runbook.hosts[h]).ok()?;
        Some(format!(
            "{}@{}:{}",
            r.user.unwrap_or_default(),
            r.address,
            r.port
        ))
    });
    Ok(Rendered {
        when,
        unless,
        env,
        timeout: step.timeout,
        retries: step.retries,
        retry_delay: step.retry_delay,
        action,
        host,
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
    if !src.is_dir() {
        return fail(
            "delete",
            format!(
                "`delete: true` applies to folders only, and {} is not a folder: remove `delete`, or upload the folder",
                src.display()
            ),
        );
    }
    if let Some(problem) = crate::exec::mirror::unsafe_root(dest) {
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
    /// Port.
    pub port: u16,
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
    let port = match &spec.port {
        None => 22,
        Some(p) => {
            let text = templater.render(&p.as_text(), c)?;
            text.trim().parse::<u16>().map_err(|_| TemplateError {
                message: format!("port `{text}` is not a port number (1-65535)"),
                range: None,
            })?
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

/// An upload's source files as (relative path, content), rendered when a
/// template, with one hash over all of them and their paths.
type SourceFiles = (String, Vec<(String, Vec<u8>)>);

fn read_source(
    templater: &Templater,
    c: &minijinja::Value,
    src: &std::path::Path,
    template: bool,
) -> std::result::Result<SourceFiles, TemplateError> {
    let err = |m: String| TemplateError {
        message: m,
        range: None,
    };
    let mut hasher = Sha256::new();
    let mut files = Vec::new();
    let mut contents = Vec::new();
    collect_files(src, src, &mut files)
        .map_err(|e| err(format!("cannot read upload source {}: {e}", src.display())))?;
    for (rel, path) in files {
        let bytes = std::fs::read(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let bytes = if template {
            let text = String::from_utf8(bytes)
                .map_err(|_| err(format!("template {} is not UTF-8", path.display())))?;
            templater
                .render(&text, c)
                .map_err(|e| err(format!("in template {}: {}", path.display(), e.message)))?
                .into_bytes()
        } else {
            bytes
        };
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(&bytes));
        contents.push((rel, bytes));
    }
    Ok((format!("{:x}", hasher.finalize()), contents))
}

/// Files under `root` (or `root` itself), as (relative path, path), sorted.
pub fn collect_files(
    root: &std::path::Path,
    path: &std::path::Path,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push((rel, path.to_path_buf()));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        collect_files(root, &entry.path(), out)?;
    }
    Ok(())
}

/// Placeholder values for a step's secrets, used for validation and fingerprints.
pub fn placeholder_secrets(step: &Step) -> BTreeMap<String, String> {
    step.spec
        .requires
        .iter()
        .map(|s| (s.clone(), format!("[secret:{s}]")))
        .collect()
}

/// Builds the plan. Template errors (an undefined name, a secret the step
/// does not require) are validation errors.
pub fn build(runbook: &Runbook, ctx: &Context, templater: &Templater) -> Result<Plan> {
    let mut diagnostics = Vec::new();
    let mut steps = Vec::with_capacity(runbook.steps.len());
    let mut graph = DiGraph::with_capacity(runbook.steps.len(), runbook.steps.len());
    let nodes: Vec<NodeIndex> = (0..runbook.steps.len())
        .map(|i| graph.add_node(i))
        .collect();
    for step in &runbook.steps {
        for secret in secret_refs(&step.spec) {
            if !step.spec.requires.contains(&secret) {
                let declared = runbook.secrets.contains_key(&secret);
                diagnostics.push(
                    Diagnostic::new(
                        &runbook.source.path,
                        if declared {
                            format!("step `{}` uses secret `{secret}` but does not list it in `requires`", step.spec.id)
                        } else {
                            format!("step `{}` uses `secrets.{secret}`, which is not declared", step.spec.id)
                        },
                    )
                    .at(runbook.source.step_span(step.index))
                    .hint(if declared {
                        format!("add `requires: [{secret}]` to the step, so it is held while the secret is missing")
                    } else {
                        "declare it under `secrets:` and list it in the step's `requires`".to_string()
                    }),
                );
            }
        }
        let rendered = match render_step(templater, ctx, runbook, step, &placeholder_secrets(step))
        {
            Ok(r) => r,
            Err((field, e)) => {
                diagnostics.push(template_diagnostic(runbook, step, &field, &e));
                continue;
            }
        };
        for &need in &step.needs {
            graph.add_edge(nodes[need], nodes[step.index], ());
        }
        let fingerprint = fingerprint(&rendered);
        steps.push(PlannedStep {
            id: step.spec.id.clone(),
            needs: step.needs.clone(),
            dependents: Vec::new(),
            host: step.host.clone(),
            requires: step.spec.requires.clone(),
            rendered,
            fingerprint,
        });
    }
    let all_secrets: BTreeMap<String, String> = runbook
        .secrets
        .keys()
        .map(|s| (s.clone(), format!("[secret:{s}]")))
        .collect();
    for (name, spec) in &runbook.secrets {
        if let Some(check) = &spec.check {
            if let Err(e) = render_http(templater, &ctx.for_step("", &all_secrets), &check.http) {
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

fn template_diagnostic(
    runbook: &Runbook,
    step: &Step,
    field: &str,
    e: &TemplateError,
) -> Diagnostic {
    let span = match (&e.range, field) {
        (Some(range), "run" | "unless" | "when") => runbook
            .source
            .step_key_span(step.index, field)
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
            .or_else(|| runbook.source.step_key_span(step.index, field)),
        _ => runbook.source.step_key_span(step.index, field),
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
        "names available in templates: vars, env, secrets (those the step requires), hosts, run.id, step.id".to_string()
    }
}

/// Names used as `secrets.NAME` or `secrets["NAME"]` in any of a step's templates.
pub fn secret_refs(spec: &crate::runbook::model::StepSpec) -> Vec<String> {
    let text = serde_json::to_string(spec).unwrap_or_default();
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("secrets") {
        rest = &rest[i + "secrets".len()..];
        let name: String = if let Some(r) = rest.strip_prefix('.') {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        } else if let Some(r) = rest
            .strip_prefix("[\\\"")
            .or_else(|| rest.strip_prefix("['"))
        {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        } else {
            continue;
        };
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn fingerprint(rendered: &Rendered) -> String {
    let json = serde_json::to_vec(rendered).unwrap_or_default();
    format!("{:x}", Sha256::digest(&json))[..16].to_string()
}
