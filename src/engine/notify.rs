//! Telling the person who must act (SPEC §10): when a pass stops in one of
//! a `notify` entry's `on` states, its URL gets one POST, retried a few
//! times. A delivery that fails is said on stderr and stored for `status`;
//! it never changes the exit code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::loaded::Loaded;
use super::signals::Signals;
use super::Ctx;
use crate::error::{Error, Result};
use crate::report::{self, handoff::Handoff};
use crate::runbook::model::{NotifyFormat, NotifyOn};
use crate::secrets::Redactor;
use crate::state::RunState;
use crate::store::{NotificationRow, RunRow, Sent, Store};

/// Requests per delivery at most.
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The time limit of one request, unless `RUNBOOK_NOTIFY_TIMEOUT` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `notify` entry with its URL rendered.
struct Target {
    url: String,
    on: Vec<NotifyOn>,
    format: NotifyFormat,
}

/// The run's webhooks, and what was last announced (a `--wait` loop that
/// stays held says so once, not after every pass).
pub(super) struct Notifier {
    targets: Vec<Target>,
    timeout: Duration,
    http: reqwest::Client,
}

/// The time limit of one request: `RUNBOOK_NOTIFY_TIMEOUT`, default 10 s.
pub(super) fn timeout_from_env() -> Result<Duration> {
    match std::env::var("RUNBOOK_NOTIFY_TIMEOUT") {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(text) => humantime::parse_duration(text.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "RUNBOOK_NOTIFY_TIMEOUT={text:?} is not a duration (e.g. `10s`); fix or unset it"
                ))
            }),
    }
}

/// Where a notification went, for people: the URL's scheme, host and port,
/// never its path (a Slack webhook's path is its credential).
pub(super) fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

impl Notifier {
    /// The runbook's `notify` entries whose URL renders to something; none
    /// with `--no-notify`. A URL that reads an unset or empty environment
    /// variable sends nothing, silently: that is how a runbook makes a
    /// notification optional.
    pub(super) fn new(loaded: &Loaded, enabled: bool) -> Result<Notifier> {
        let timeout = timeout_from_env()?;
        // Redirects are not followed: a 301/302 would turn the POST into a
        // GET, and its 200 would count a lost message as delivered.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let mut targets = Vec::new();
        if enabled {
            let ctx = loaded.ctx.for_step("", &BTreeMap::new());
            for (i, spec) in loaded.runbook.notify.iter().enumerate() {
                let unset = loaded
                    .templater
                    .env_names(&spec.url)
                    .iter()
                    .any(|n| std::env::var(n).map_or(true, |v| v.trim().is_empty()));
                if unset {
                    continue;
                }
                match loaded.templater.render(&spec.url, &ctx) {
                    Ok(url) if url.trim().is_empty() => {}
                    Ok(url) => targets.push(Target {
                        url: url.trim().to_string(),
                        on: spec.on.clone(),
                        format: spec.format,
                    }),
                    Err(e) => eprintln!(
                        "warning: notify[{i}]: the url cannot be rendered ({}); no notification is sent there",
                        e.message
                    ),
                }
            }
        }
        Ok(Notifier {
            targets,
            timeout,
            http,
        })
    }

    /// After a pass that ended in `state`: sends the notifications its
    /// targets ask for, unless the same was already announced. A signal
    /// stops the deliveries still under way (recorded as not delivered).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn after_pass(
        &self,
        ctx: &Ctx,
        store: &Store,
        run: &RunRow,
        state: RunState,
        loaded: &Loaded,
        redactor: &Redactor,
        signals: &mut Signals,
    ) -> Result<Delivery> {
        if !self.targets.iter().any(|t| t.wants(state)) {
            return Ok(Delivery::Done);
        }
        let run = store.run(run.id)?.unwrap_or_else(|| run.clone());
        let steps = store.steps(run.id)?;
        let (secret_rows, env_files) = store.secrets(run.id)?;
        let page = ctx.build_handoff(
            store,
            &run,
            state,
            &steps,
            &secret_rows,
            &env_files,
            Some(loaded),
        )?;
        let handoff_command = format!("runbook handoff {}{}", run.id, ctx.state_flag());
        let summary = report::notify::summary(&page, &handoff_command);
        let due = self.due(store, run.id, state, &summary)?;
        // All at once: the total wait is the slowest target's, not their sum.
        let sends: Vec<Send> = due
            .iter()
            .map(|(t, _)| self.send(t, t.body(&page, &summary, redactor)))
            .collect();
        let mut stopped = false;
        for ((t, sent), send) in due.iter().zip(sends) {
            let (attempts, error) = send.outcome(&mut stopped, signals).await;
            let row = outcome_row(t, state, attempts, error, stopped, run.id);
            store.save_notification(run.id, sent, &row)?;
        }
        Ok(if stopped {
            Delivery::Stopped
        } else {
            Delivery::Done
        })
    }

    /// The targets that want `state` and have not had this message yet (a
    /// `--wait` loop that stays held, a resume that changed nothing: a
    /// message that already reached a URL is not sent there again).
    fn due(
        &self,
        store: &Store,
        run_id: i64,
        state: RunState,
        summary: &str,
    ) -> Result<Vec<(&Target, Sent)>> {
        let mut due = Vec::new();
        for t in self.targets.iter().filter(|t| t.wants(state)) {
            let sent = Sent {
                url_digest: hex_digest(&t.url),
                message_digest: hex_digest(&format!("{state}\n{summary}")),
            };
            if !store.was_delivered(run_id, &sent)? {
                due.push((t, sent));
            }
        }
        Ok(due)
    }

    /// One delivery of `body` to `target`, started on its own task.
    fn send(&self, target: &Target, body: serde_json::Value) -> Send {
        let (http, url, timeout) = (self.http.clone(), target.url.clone(), self.timeout);
        let tried = Arc::new(AtomicU32::new(0));
        let counter = tried.clone();
        let task = tokio::spawn(async move { deliver(&http, &url, body, timeout, &counter).await });
        Send { task, tried }
    }
}

impl Target {
    /// Whether a pass that ended in `state` is one this target is told of.
    fn wants(&self, state: RunState) -> bool {
        self.on.iter().any(|o| match o {
            NotifyOn::Held => state == RunState::Held,
            NotifyOn::Failed => state == RunState::Failed,
            NotifyOn::Succeeded => state == RunState::Succeeded,
            NotifyOn::Interrupted => state == RunState::Interrupted,
        })
    }

    /// The message in this target's format, every string redacted.
    fn body(&self, page: &Handoff, summary: &str, redactor: &Redactor) -> serde_json::Value {
        let mut body = match self.format {
            NotifyFormat::Json => report::notify::json_body(page, summary),
            // Redacted before it is escaped, or a value with `&`, `<` or
            // `>` would no longer match.
            NotifyFormat::Slack => report::notify::slack_body(&redactor.redact(summary)),
        };
        redact(&mut body, redactor);
        body
    }
}

/// A delivery under way: its task, and how many requests it has made.
struct Send {
    task: tokio::task::JoinHandle<(u32, Option<String>)>,
    tried: Arc<AtomicU32>,
}

impl Send {
    /// (attempts made, why it failed). Once a signal has come (`stopped`),
    /// this and every later delivery is aborted where it is.
    async fn outcome(mut self, stopped: &mut bool, signals: &mut Signals) -> (u32, Option<String>) {
        if *stopped {
            self.task.abort();
            return (self.tried.load(Ordering::SeqCst), Some(STOPPED.to_string()));
        }
        tokio::select! {
            done = &mut self.task => done.unwrap_or_else(|e| {
                (0, Some(format!("the delivery task failed: {e}")))
            }),
            _ = signals.received() => {
                *stopped = true;
                self.task.abort();
                (self.tried.load(Ordering::SeqCst), Some(STOPPED.to_string()))
            }
        }
    }
}

/// What is stored of one delivery; one that failed is said on stderr.
fn outcome_row(
    t: &Target,
    state: RunState,
    attempts: u32,
    error: Option<String>,
    stopped: bool,
    run_id: i64,
) -> NotificationRow {
    let target = shown(&t.url);
    if let Some(e) = &error {
        let then = if stopped {
            "the next resume sends it again"
        } else {
            "the run goes on"
        };
        eprintln!(
            "warning: the {state} notification to {target} was not delivered after {}: {e}; {then} (`runbook status {}` shows it)",
            crate::report::count(attempts as usize, "attempt"),
            run_id
        );
    }
    NotificationRow {
        target,
        state: state.to_string(),
        delivered: error.is_none(),
        attempts: attempts.into(),
        error,
        at: crate::store::now(),
    }
}

/// Why a delivery cut short by Ctrl-C did not arrive.
const STOPPED: &str = "stopped by a signal before the webhook accepted it";

/// How the notifications after a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Every one was sent or given up on.
    Done,
    /// SIGINT or SIGTERM came while one was under way.
    Stopped,
}

/// POSTs `body` to `url` until it is accepted (2xx) or the attempts are
/// spent; (attempts made, why it failed).
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
    timeout: Duration,
    tried: &AtomicU32,
) -> (u32, Option<String>) {
    if let Some(problem) = crate::action::url_problem(url) {
        return (0, Some(problem.replace(url, &shown(url))));
    }
    let mut backoff = FIRST_BACKOFF;
    let mut why = String::new();
    for attempt in 1..=ATTEMPTS {
        tried.store(attempt, Ordering::SeqCst);
        let sent = http.post(url).json(&body).timeout(timeout).send().await;
        match sent {
            Ok(r) if r.status().is_success() => return (attempt, None),
            Ok(r) => {
                let status = r.status();
                if status.is_redirection() {
                    // Not followed; it will say the same next time.
                    return (
                        attempt,
                        Some(format!(
                            "the webhook answered {status}, a redirect (not followed: give the URL it redirects to)"
                        )),
                    );
                }
                why = format!("the webhook answered {status}");
                // A wrong address or a revoked hook does not heal by itself.
                let lasting = status.is_client_error()
                    && status != reqwest::StatusCode::REQUEST_TIMEOUT
                    && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
                if lasting {
                    return (attempt, Some(why));
                }
            }
            Err(e) if e.is_timeout() => {
                why = format!("no answer within {}", humantime::format_duration(timeout));
            }
            Err(e) => {
                // reqwest's message names the URL; only its origin is shown.
                // Its causes say what went wrong (refused, DNS, TLS).
                let e = e.without_url();
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    text.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                why = text;
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    (ATTEMPTS, Some(why))
}

/// Every string of the body passed through the redactor: the page is made
/// from redacted rows already; this makes sure of it.
fn redact(value: &mut serde_json::Value, redactor: &Redactor) {
    match value {
        serde_json::Value::String(s) => *s = redactor.redact(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, redactor)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact(v, redactor)),
        _ => {}
    }
}

/// SHA-256, hex.
fn hex_digest(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(on: Vec<NotifyOn>) -> Target {
        Target {
            url: "https://hooks.example/services/T0/B0/secret-path".into(),
            on,
            format: NotifyFormat::Json,
        }
    }

    #[test]
    fn a_target_wants_only_the_states_it_names() {
        let t = target(vec![NotifyOn::Held, NotifyOn::Failed]);
        assert!(t.wants(RunState::Held) && t.wants(RunState::Failed));
        assert!(!t.wants(RunState::Succeeded) && !t.wants(RunState::Interrupted));
        assert!(!target(Vec::new()).wants(RunState::Held));
    }

    #[test]
    fn a_delivery_row_names_the_origin_never_the_path() {
        let t = target(vec![NotifyOn::Failed]);
        let sent = outcome_row(&t, RunState::Failed, 1, None, false, 7);
        assert_eq!(sent.target, "https://hooks.example");
        assert!(sent.delivered && sent.error.is_none() && sent.attempts == 1);
        let lost = outcome_row(
            &t,
            RunState::Failed,
            4,
            Some("the webhook answered 500".into()),
            false,
            7,
        );
        assert!(!lost.delivered && lost.attempts == 4 && lost.state == "failed");
    }
}
