//! Validation: turns the model as written into a [`Runbook`] whose ids, needs,
//! hosts, secrets and durations are known to be good (SPEC §1).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use petgraph::graph::DiGraph;

use super::load::Source;
use super::model::{
    Approval, EnvFileSpec, HostSpec, HttpSpec, NotifySpec, RunbookFile, SecretSpec, StepSpec,
    UploadSpec,
};
use crate::error::{Diagnostic, Error, Result};

/// A validated runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// The runbook's name.
    pub name: String,
    /// One-line description.
    pub description: Option<String>,
    /// The folder relative paths are resolved against.
    pub dir: PathBuf,
    /// Vars, with `--var` overrides applied.
    pub vars: IndexMap<String, serde_json::Value>,
    /// Hosts by name, the inventory's included.
    pub hosts: IndexMap<String, HostSpec>,
    /// Groups by name, as host lists (globs and the inventory resolved).
    pub groups: IndexMap<String, Vec<String>>,
    /// Where secrets are looked up after the environment.
    pub env_files: Vec<EnvFileSpec>,
    /// Declared secrets.
    pub secrets: IndexMap<String, SecretSpec>,
    /// Steps in file order; `needs` are indexes into this list.
    pub steps: Vec<Step>,
    /// Webhooks told when a run stops (their URLs still templates).
    pub notify: Vec<NotifySpec>,
    /// The file's text, for locating later (template) errors.
    pub source: Source,
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Position in the list of steps (instances count one each).
    pub index: usize,
    /// The id: the step's own, or `STEP@HOST` for an instance on a group.
    pub id: String,
    /// Position of the step as written in the file.
    pub source: usize,
    /// For an instance of a step on a group: what its instances share.
    pub family: Option<super::fleet::Family>,
    /// The step as written.
    pub spec: StepSpec,
    /// Indexes of the steps this one needs.
    pub needs: Vec<usize>,
    /// The host it runs on; `None` is local.
    pub host: Option<String>,
    /// Time limit per attempt.
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay between attempts.
    pub retry_delay: Duration,
    /// What the step does.
    pub action: Action,
    /// The question, when the step waits for an approval.
    pub approval: Option<String>,
}

/// A step's single action.
#[derive(Debug, Clone)]
pub enum Action {
    /// A shell script.
    Run(String),
    /// A file or folder copy.
    Upload(UploadSpec),
    /// An HTTP request.
    Http(Box<HttpSpec>),
    /// No action: a join point or an approval gate.
    Checkpoint,
}

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
        refused: IndexMap::new(),
    };
    let ids: HashMap<&str, usize> = {
        let mut ids = HashMap::new();
        for (index, step) in file.steps.iter().enumerate() {
            v.check_id(index, &step.id);
            if let Some(first) = ids.insert(step.id.as_str(), index) {
                let (line, _) = source.line_col(source.step_span(first).map(|s| s.0).unwrap_or(0));
                v.push(
                    Diagnostic::new(&source.path, format!("duplicate step id `{}`", step.id))
                        .at(source.step_span(index))
                        .hint(format!("the first step with this id is on line {line}; give each step its own id")),
                );
                ids.insert(step.id.as_str(), first);
            }
        }
        ids
    };

    // A misspelt `steps:` is reported as such, not also as a missing list.
    if file.steps.is_empty() && source.problems.is_empty() {
        v.push(
            Diagnostic::new(&source.path, "the runbook has no steps")
                .at(source.key_span("steps").or(Some((0, 1))))
                .hint("add a `steps:` list with at least one step"),
        );
    }
    for name in file.hosts.keys() {
        if name == "local" {
            v.push(
                Diagnostic::new(
                    &source.path,
                    "a host cannot be named `local`: that name means this machine",
                )
                .at(source.nested_key_span("hosts", name))
                .hint("rename the host"),
            );
        }
    }
    let super::fleet::Fleet {
        hosts,
        groups,
        refused,
    } = super::fleet::hosts_and_groups(
        &file.hosts,
        &file.groups,
        file.inventory.as_ref(),
        &source,
        &mut v.diagnostics,
    );
    v.refused = refused.clone();
    for (i, env_file) in file.env_files.iter().enumerate() {
        if let EnvFileSpec::Remote(remote) = env_file {
            if !hosts.contains_key(&remote.host) && !groups.contains_key(&remote.host) {
                v.push(
                    v.unknown_host(&remote.host, &hosts, &groups)
                        .at(source.nested_key_span("env_files", "host"))
                        .hint(format!(
                            "env_files[{i}] names host `{}`; declare it under `hosts:` or `groups:`",
                            remote.host
                        )),
                );
            }
        }
    }
    for env_file in &file.env_files {
        if let EnvFileSpec::Remote(remote) = env_file {
            let members = groups
                .get(&remote.host)
                .filter(|_| !hosts.contains_key(&remote.host));
            let on = members.map_or(std::slice::from_ref(&remote.host), |m| m.as_slice());
            if let Some((h, what)) = on.iter().find_map(|h| refused.get_key_value(h)) {
                v.push(
                    Diagnostic::new(
                        &source.path,
                        format!(
                            "env_files reads a file on `{h}`, whose inventory entry sets {what}, which runbook does not apply"
                        ),
                    )
                    .at(source.nested_key_span("env_files", "host"))
                    .hint(REFUSED_HINT),
                );
            }
        }
    }
    check_secret_commands(&mut v, &file);
    v.diagnostics
        .extend(super::rolling::check(&file.steps, &source, &hosts, &groups));
    for (name, secret) in &file.secrets {
        if let Some(check) = &secret.check {
            v.check_http(None, &check.http, &hosts, &groups, None);
        }
        if !is_env_name(name) {
            v.push(
                Diagnostic::new(
                    &source.path,
                    format!("secret name `{name}` is not a valid environment variable name"),
                )
                .at(source.nested_key_span("secrets", name))
                .hint("use letters, digits and underscores, not starting with a digit"),
            );
        }
    }
    for (i, notify) in file.notify.iter().enumerate() {
        v.check_notify(i, notify);
    }
    let default_timeout = v.duration(None, "timeout", file.defaults.timeout.as_deref());
    let default_delay = v.duration(None, "retry_delay", file.defaults.retry_delay.as_deref());
    let default_retries = file.defaults.retries.unwrap_or(0);

    let mut steps = Vec::with_capacity(file.steps.len());
    let mut on_group: Vec<Option<String>> = Vec::with_capacity(file.steps.len());
    for (index, spec) in file.steps.iter().enumerate() {
        let mut needs = Vec::with_capacity(spec.needs.len());
        for need in &spec.needs {
            match ids.get(need.as_str()) {
                Some(&n) => needs.push(n),
                None => v.push(
                    Diagnostic::new(
                        &source.path,
                        format!("step `{}` needs `{need}`, but no step has that id", spec.id),
                    )
                    .at(source.step_value_span(index, "needs", need))
                    .maybe_hint(
                        nearest(need, ids.keys().copied()).map(|n| format!("did you mean `{n}`?")),
                    ),
                ),
            }
        }
        let host = match spec.on.as_deref() {
            None | Some("local") => None,
            Some(h) if hosts.contains_key(h) => Some(h.to_string()),
            Some(g) if groups.contains_key(g) => {
                // A step on an empty group would vanish from the run: no
                // instance, and what needs it would go on as if it ran.
                if groups[g].is_empty() {
                    v.push(
                        Diagnostic::new(
                            &source.path,
                            format!("step `{}` runs on group `{g}`, which has no hosts", spec.id),
                        )
                        .at(source.step_value_span(index, "on", g))
                        .hint("add hosts to the group (in `groups:` or the inventory), or remove the step"),
                    );
                }
                None
            }
            Some(h) => {
                v.push(
                    v.unknown_host(h, &hosts, &groups)
                        .at(source.step_value_span(index, "on", h)),
                );
                None
            }
        };
        let group = spec
            .on
            .as_ref()
            .filter(|g| !hosts.contains_key(*g) && groups.contains_key(*g))
            .cloned();
        let targets: &[String] = match (&host, &group) {
            (Some(h), _) => std::slice::from_ref(h),
            (None, Some(g)) => &groups[g],
            (None, None) => &[],
        };
        if let Some(h) = targets.iter().find(|h| refused.contains_key(*h)) {
            let on = spec.on.as_deref().unwrap_or_default();
            v.push(
                Diagnostic::new(
                    &source.path,
                    format!(
                        "step `{}` runs on `{h}`, whose inventory entry sets {}, which runbook does not apply",
                        spec.id, refused[h]
                    ),
                )
                .at(source.step_value_span(index, "on", on))
                .hint(REFUSED_HINT),
            );
        }
        v.check_fleet_keys(index, spec, group.as_ref().map(|g| groups[g].len()));
        // A rolling block is one node; its inner steps are the instances.
        on_group.push(group.filter(|_| !super::rolling::is_block(spec)));
        for secret in &spec.requires {
            if !file.secrets.contains_key(secret) {
                v.push(
                    Diagnostic::new(
                        &source.path,
                        format!(
                            "step `{}` requires secret `{secret}`, which is not declared",
                            spec.id
                        ),
                    )
                    .at(source.step_value_span(index, "requires", secret))
                    .maybe_hint(
                        nearest(secret, file.secrets.keys().map(String::as_str))
                            .map(|n| format!("did you mean `{n}`?"))
                            .or_else(|| {
                                Some(
                                    "declare it under `secrets:` with a description and an owner"
                                        .to_string(),
                                )
                            }),
                    ),
                );
            }
        }
        for name in spec.env.keys() {
            if !is_env_name(name) {
                v.push(
                    Diagnostic::new(
                        &source.path,
                        format!("`{name}` is not a valid environment variable name"),
                    )
                    .at(source.step_value_span(index, "env", name))
                    .hint("use letters, digits and underscores, not starting with a digit"),
                );
            }
        }
        let action = v.action(index, spec, &hosts, &groups);
        let approval = match &spec.approval {
            None | Some(Approval::Flag(false)) => None,
            Some(Approval::Flag(true)) => Some(format!("Approve step `{}`?", spec.id)),
            Some(Approval::Question(q)) => Some(q.clone()),
        };
        steps.push(Step {
            index,
            id: spec.id.clone(),
            source: index,
            family: None,
            needs,
            host,
            timeout: v
                .duration(Some(index), "timeout", spec.timeout.as_deref())
                .or(default_timeout),
            retries: spec.retries.unwrap_or(default_retries),
            retry_delay: v
                .duration(Some(index), "retry_delay", spec.retry_delay.as_deref())
                .or(default_delay)
                .unwrap_or(Duration::from_secs(5)),
            action,
            approval,
            spec: spec.clone(),
        });
    }

    super::rolling::wire_needs(&mut steps);
    // Every problem at once: a cycle among the needs that resolved is one
    // too (unless two steps share an id, so a need may not mean what the
    // writer meant).
    let distinct: HashSet<&str> = steps.iter().map(|s| s.spec.id.as_str()).collect();
    if distinct.len() == steps.len() {
        if let Some(cycle) = find_cycle(&steps) {
            let names: Vec<&str> = cycle.iter().map(|&i| steps[i].spec.id.as_str()).collect();
            let drawn = names.join(" → ");
            let first = cycle[0];
            let message = if cycle.len() == 2 {
                format!("step `{}` needs itself", names[0])
            } else {
                format!("dependency cycle: {drawn}")
            };
            v.push(
                Diagnostic::new(&source.path, message)
                    .at(source.step_value_span(first, "needs", names[1]))
                    .hint(format!(
                        "each step needs the next one in `{drawn}`; remove one of these `needs`"
                    )),
            );
        }
    }

    let steps = super::fleet::expand(steps, &on_group, &groups);
    let mut vars = file.vars;
    for (key, value) in overrides {
        vars.insert(key.clone(), serde_json::Value::String(value.clone()));
    }

    let diagnostics = v.diagnostics;
    let name = file.name.unwrap_or_else(|| {
        let stem = source
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if stem == "runbook" {
            source
                .path
                .parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or(stem)
        } else {
            stem
        }
    });
    let runbook = Runbook {
        name,
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

struct Validator<'a> {
    source: &'a Source,
    diagnostics: Vec<Diagnostic>,
    /// Inventory hosts runbook does not reach as the inventory says (see
    /// [`super::fleet::Fleet::refused`]).
    refused: IndexMap<String, String>,
}

/// Each secret command (`from`, `env_files` `command`) reads no secret
/// (it is rendered before any value is known, and its text is shown) and
/// has a `timeout` that is a duration (SPEC §13).
fn check_secret_commands(v: &mut Validator, file: &RunbookFile) {
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
    let templater = super::template::Templater::new();
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

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    fn check_id(&mut self, index: usize, id: &str) {
        let mut chars = id.chars();
        let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            self.push(
                Diagnostic::new(&self.source.path, format!("step id `{id}` is not allowed"))
                    .at(self.source.step_span(index))
                    .hint("ids are lowercase letters, digits, `_` and `-`, starting with a letter or digit"),
            );
        }
    }

    fn unknown_host(
        &self,
        name: &str,
        hosts: &IndexMap<String, HostSpec>,
        groups: &IndexMap<String, Vec<String>>,
    ) -> Diagnostic {
        let what = if groups.keys().any(|g| g != "all") {
            "host or group"
        } else {
            "host"
        };
        Diagnostic::new(&self.source.path, format!("unknown {what} `{name}`")).maybe_hint(
            nearest(name, hosts.keys().chain(groups.keys()).map(String::as_str))
                .map(|n| format!("did you mean `{n}`?"))
                .or_else(|| {
                    Some("declare it under `hosts:` or `groups:`, or use `local`".to_string())
                }),
        )
    }

    /// `serial` and `max_fail` belong to steps on a group, and `serial` is a
    /// count or a percentage.
    fn check_fleet_keys(&mut self, index: usize, spec: &StepSpec, group_size: Option<usize>) {
        for (key, given) in [
            ("serial", spec.serial.is_some()),
            ("max_fail", spec.max_fail.is_some()),
        ] {
            if given && group_size.is_none() {
                self.push(
                    Diagnostic::new(
                        &self.source.path,
                        format!("step `{}` has `{key}` but does not run on a group", spec.id),
                    )
                    .at(self.source.step_key_span(index, key))
                    .hint(
                        "set `on:` to a group from `groups:` or the inventory, or remove the key",
                    ),
                );
            }
        }
        if let (Some(serial), Some(size)) = (&spec.serial, group_size) {
            if let Err(e) = super::fleet::serial_limit(serial, size) {
                self.push(
                    Diagnostic::new(&self.source.path, format!("step `{}`: {e}", spec.id))
                        .at(self.source.step_key_span(index, "serial"))
                        .hint(
                            "write a number of hosts (1, 2, ...) or a percentage such as \"25%\"",
                        ),
                );
            }
        }
    }

    fn duration(&mut self, step: Option<usize>, key: &str, text: Option<&str>) -> Option<Duration> {
        let text = text?;
        let parsed = match humantime::parse_duration(text.trim()) {
            _ if text.trim().starts_with('-') => Err("a duration cannot be negative".to_string()),
            Ok(d) if d.is_zero() && key == "timeout" => Err(
                "a timeout of zero would stop the step at once; leave `timeout` out for no limit"
                    .to_string(),
            ),
            Ok(d) => Ok(d),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                let span = match step {
                    Some(i) => self.source.step_key_span(i, key),
                    None => self.source.nested_key_span("defaults", key),
                };
                self.push(
                    Diagnostic::new(
                        &self.source.path,
                        format!("bad duration `{text}` for `{key}`: {e}"),
                    )
                    .at(span)
                    .hint("write a positive number with a unit, e.g. `30s`, `5m`, `1h 30m`"),
                );
                None
            }
        }
    }

    fn action(
        &mut self,
        index: usize,
        spec: &StepSpec,
        hosts: &IndexMap<String, HostSpec>,
        groups: &IndexMap<String, Vec<String>>,
    ) -> Action {
        let given: Vec<&str> = [
            spec.run.as_ref().map(|_| "run"),
            spec.upload.as_ref().map(|_| "upload"),
            spec.http.as_ref().map(|_| "http"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            self.push(
                Diagnostic::new(
                    &self.source.path,
                    format!(
                        "step `{}` has {} actions ({}); a step does exactly one thing",
                        spec.id,
                        given.len(),
                        given.join(", ")
                    ),
                )
                .at(self.source.step_key_span(index, given[1]))
                .hint("split it into two steps, the second one `needs` the first"),
            );
        }
        if let Some(upload) = &spec.upload {
            if let Some(mode) = &upload.mode {
                if u32::from_str_radix(mode, 8).is_err() || mode.len() > 4 || mode.is_empty() {
                    self.push(
                        Diagnostic::new(&self.source.path, format!("bad file mode `{mode}`"))
                            .at(self.source.step_key_span(index, "mode"))
                            .hint("write it in octal as a string, e.g. \"0644\""),
                    );
                }
            }
            return Action::Upload(upload.clone());
        }
        if let Some(http) = &spec.http {
            self.check_http(Some(index), http, hosts, groups, spec.on.as_deref());
            return Action::Http(Box::new(http.clone()));
        }
        match &spec.run {
            Some(script) => Action::Run(script.clone()),
            None => Action::Checkpoint,
        }
    }

    /// A notify URL may read `vars` and `env`, never a secret (it is
    /// rendered outside any step); a plain one must be an http(s) URL.
    fn check_notify(&mut self, index: usize, notify: &NotifySpec) {
        let span = self.notify_url_span(index);
        let templater = super::template::Templater::new();
        if !templater.secret_names(&notify.url, false).is_empty() {
            self.push(
                Diagnostic::new(
                    &self.source.path,
                    format!("notify url `{}` reads a secret", notify.url),
                )
                .at(span)
                .hint("a notify URL is rendered with `vars` and `env` only; put the webhook URL in an environment variable: `{{ env.SLACK_WEBHOOK }}`"),
            );
        } else if !super::template::is_template(&notify.url) && !notify.url.trim().is_empty() {
            let url = notify.url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                self.push(
                    Diagnostic::new(
                        &self.source.path,
                        format!("notify url `{url}` is not an http or https URL"),
                    )
                        .at(span)
                        .hint("write the webhook's full address, e.g. `https://hooks.example.com/T0/B0/x`, or `{{ env.SLACK_WEBHOOK }}`"),
                );
            }
        }
    }

    /// The `url:` of notify entry `index`: every entry has one, so it is
    /// the index-th `url:` from the `notify:` key on.
    fn notify_url_span(&self, index: usize) -> Option<(usize, usize)> {
        let (start, len) = self.source.key_span("notify")?;
        let mut offset = start;
        let mut seen = 0;
        for line in self.source.text[start..].split_inclusive('\n') {
            if let Some(at) = line.find("url:") {
                if seen == index {
                    return Some((offset + at, 3));
                }
                seen += 1;
            }
            offset += line.len();
        }
        Some((start, len))
    }

    fn check_http(
        &mut self,
        step: Option<usize>,
        http: &HttpSpec,
        hosts: &IndexMap<String, HostSpec>,
        groups: &IndexMap<String, Vec<String>>,
        on: Option<&str>,
    ) {
        let span = |key: &str| match step {
            Some(i) => self.source.step_key_span(i, key),
            None => self.source.nested_key_span("secrets", key),
        };
        if let Some(method) = &http.method {
            const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
            if !METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                let d =
                    Diagnostic::new(&self.source.path, format!("unknown HTTP method `{method}`"))
                        .at(span("method"))
                        .hint(format!("use one of {}", METHODS.join(", ")));
                self.push(d);
            }
        }
        if http.body.is_some() && http.json.is_some() {
            let d = Diagnostic::new(
                &self.source.path,
                "an http request has both `body` and `json`",
            )
            .at(span("json"))
            .hint("keep one of them");
            self.push(d);
        }
        // On a group, `{{ step.host }}` or the group's name is each
        // instance's own host; a template is checked once rendered (plan).
        let own = |via: &str| {
            step.is_some()
                && (super::template::is_template(via)
                    || on == Some(via) && groups.contains_key(via) && !hosts.contains_key(via))
        };
        if let Some(via) = http.via.as_ref().filter(|v| !own(v)) {
            if groups.contains_key(via) && !hosts.contains_key(via) {
                let d = Diagnostic::new(
                    &self.source.path,
                    format!("`via: {via}` names a group, and this step does not run on it"),
                )
                .at(span("via"))
                .hint(format!("on a step `on: {via}`, `via: {via}` (or `{{{{ step.host }}}}`) means each instance's own host; elsewhere name one host"));
                self.push(d);
            } else if !hosts.contains_key(via) {
                let d = self.unknown_host(via, hosts, groups).at(span("via"));
                self.push(d);
            } else if let Some(what) = self.refused.get(via) {
                let d = Diagnostic::new(
                    &self.source.path,
                    format!(
                        "an http request goes `via: {via}`, whose inventory entry sets {what}, which runbook does not apply"
                    ),
                )
                .at(span("via"))
                .hint(REFUSED_HINT);
                self.push(d);
            }
        }
        for pointer in http.expect.json.iter().flat_map(|m| m.keys()) {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                let d = Diagnostic::new(
                    &self.source.path,
                    format!("`{pointer}` is not a JSON pointer"),
                )
                .at(span("json"))
                .hint(format!("JSON pointers start with `/`, e.g. `/{pointer}`"));
                self.push(d);
            }
        }
    }
}

/// The steps on a dependency cycle, in order, the first repeated at the end;
/// `None` when the graph is acyclic.
pub fn find_cycle(steps: &[Step]) -> Option<Vec<usize>> {
    let mut graph = DiGraph::<usize, ()>::with_capacity(steps.len(), steps.len());
    let nodes: Vec<_> = (0..steps.len()).map(|i| graph.add_node(i)).collect();
    for step in steps {
        for &need in &step.needs {
            graph.add_edge(nodes[step.index], nodes[need], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: std::collections::HashSet<usize> = scc.iter().map(|n| graph[*n]).collect();
        let start = *members.iter().min()?;
        // Walk needs inside the component until we come back to the start.
        let mut path = vec![start];
        let mut seen = std::collections::HashSet::from([start]);
        let mut current = start;
        loop {
            let next = steps[current]
                .needs
                .iter()
                .copied()
                .filter(|n| members.contains(n))
                .find(|&n| n == start || !seen.contains(&n))
                .or_else(|| {
                    steps[current]
                        .needs
                        .iter()
                        .copied()
                        .find(|n| members.contains(n))
                })?;
            path.push(next);
            if next == start {
                return Some(path);
            }
            if !seen.insert(next) {
                // Entered a smaller loop: cut the path to it.
                let at = path.iter().position(|&p| p == next)?;
                return Some(path[at..].to_vec());
            }
            current = next;
        }
    }
    None
}

/// What to do about an inventory host runbook would reach another way than
/// its inventory says.
const REFUSED_HINT: &str = "runbook reaches hosts with plain ssh and your ssh config (~/.ssh/config), with key login only: put ssh options such as ProxyJump in ~/.ssh/config, run this machine's steps with `on: local`, or declare the host under `hosts:` (which wins over the inventory) or leave it out of this step's group";

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
        if !super::template::is_template(when) {
            read.scan_expression(when);
        }
    }
    let dir = source.path.parent().unwrap_or(std::path::Path::new("."));
    for upload in file.steps.iter().filter_map(|s| s.upload.as_ref()) {
        if !upload.template {
            continue;
        }
        if super::template::is_template(&upload.src) {
            read.any = true;
            continue;
        }
        let src = dir.join(&upload.src);
        let mut files = Vec::new();
        // An unreadable source is reported by validation, with its place.
        let _ = crate::plan::collect_files(&src, &src, &mut files);
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

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (word.len().max(c.len()) / 3).max(1) && *d < word.len())
        .min()
        .map(|(_, c)| c)
}

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
    fn a_var_is_used_only_by_its_whole_name() {
        let read = |text: &str| {
            let mut r = super::VarsRead::default();
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
