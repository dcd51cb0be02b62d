//! Each step's action (`run`, `upload`, `http`), HTTP requests wherever
//! they are (a step, a secret's check), notify URLs, and durations.

use std::time::Duration;

use super::{Action, Validator, REFUSED_HINT};
use crate::error::Diagnostic;
use crate::runbook::fleet::Fleet;
use crate::runbook::model::{HttpSpec, NotifySpec, StepSpec};

impl Validator<'_> {
    /// A duration as written, or a problem (a negative one, a zero timeout).
    pub(super) fn duration(
        &mut self,
        step: Option<usize>,
        key: &str,
        text: Option<&str>,
    ) -> Option<Duration> {
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

    /// The one action of step `index`, checked.
    pub(super) fn action(&mut self, index: usize, spec: &StepSpec, fleet: &Fleet) -> Action {
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
            self.check_http(Some(index), http, fleet, spec.on.as_deref());
            return Action::Http(Box::new(http.clone()));
        }
        match &spec.run {
            Some(script) => Action::Run(script.clone()),
            None => Action::Checkpoint,
        }
    }

    /// A notify URL may read `vars` and `env`, never a secret (it is
    /// rendered outside any step); a plain one must be an http(s) URL.
    pub(super) fn check_notify(&mut self, index: usize, notify: &NotifySpec) {
        let span = self.notify_url_span(index);
        let templater = crate::runbook::template::Templater::new();
        if !templater.secret_names(&notify.url, false).is_empty() {
            self.push(
                Diagnostic::new(
                    &self.source.path,
                    format!("notify url `{}` reads a secret", notify.url),
                )
                .at(span)
                .hint("a notify URL is rendered with `vars` and `env` only; put the webhook URL in an environment variable: `{{ env.SLACK_WEBHOOK }}`"),
            );
        } else if !crate::runbook::template::is_template(&notify.url)
            && !notify.url.trim().is_empty()
        {
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

    /// An HTTP request (a step's or a secret check's) is well formed.
    pub(super) fn check_http(
        &mut self,
        step: Option<usize>,
        http: &HttpSpec,
        fleet: &Fleet,
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
        let (hosts, groups) = (&fleet.hosts, &fleet.groups);
        let own = |via: &str| {
            step.is_some()
                && (crate::runbook::template::is_template(via)
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
            } else if !fleet.hosts.contains_key(via) {
                let d = self.unknown_host(via, fleet).at(span("via"));
                self.push(d);
            } else if let Some(what) = fleet.refused.get(via) {
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
