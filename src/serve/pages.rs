//! The pages for people: the list of runs, one run, a step's output. One
//! self-contained document each (inline CSS and script, nothing loaded
//! from elsewhere), readable at phone width; minijinja escapes every value.

use std::sync::OnceLock;

use minijinja::{context, Environment};

use super::adapter::RunView;
use super::graph;
use crate::engine::RunSummary;
use crate::report::human_ms;
use crate::state::StepState;

const CSS: &str = include_str!("page.css");
const LAYOUT: &str = include_str!("layout.html");
const RUNS: &str = include_str!("runs.html");
const RUN: &str = include_str!("run.html");
const RUN_BODY: &str = include_str!("run_body.html");
const OUTPUT: &str = include_str!("output.html");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("layout.html", LAYOUT),
            ("runs.html", RUNS),
            ("run.html", RUN),
            ("run_body.html", RUN_BODY),
            ("output.html", OUTPUT),
        ] {
            // The templates are part of the binary; a broken one fails the tests.
            let _ = env.add_template(name, text);
        }
        env.add_global("css", CSS);
        env
    })
}

fn render(name: &str, ctx: minijinja::Value) -> String {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => html,
        Err(e) => format!(
            "<!doctype html><p>page {name} failed: {}</p>",
            crate::report::html::escape(&e.to_string())
        ),
    }
}

/// Milliseconds between two RFC 3339 times, or from `from` to now.
fn between(from: &str, to: Option<&str>) -> Option<i64> {
    let start = humantime::parse_rfc3339_weak(from).ok()?;
    let end = match to {
        Some(t) => humantime::parse_rfc3339_weak(t).ok()?,
        None => std::time::SystemTime::now(),
    };
    end.duration_since(start).ok().map(|d| d.as_millis() as i64)
}

/// The list of runs.
pub fn runs(runs: &[RunSummary]) -> String {
    let rows: Vec<_> = runs
        .iter()
        .map(|r| {
            context! {
                id => r.run_id,
                runbook => r.runbook,
                state => r.state.as_str(),
                started => r.started_at,
                duration => between(&r.started_at, r.finished_at.as_deref()).map(human_ms),
                holder => r.holder,
                waiting_on => r.waiting_on.join(", "),
            }
        })
        .collect();
    render("runs.html", context! { title => "runs", rows })
}

/// Where a row ran: its host; a rolling block's own row runs on none and
/// names its hosts, `rolling, 3 hosts`.
fn host_of(view: &RunView, row: &crate::store::StepRow) -> Option<String> {
    if !crate::report::rolling::is_checkpoint(row) {
        return row.host.clone();
    }
    let hosts: std::collections::BTreeSet<&str> = view
        .steps
        .iter()
        .filter(|r| r.block == row.block && r.id != row.id)
        .filter_map(|r| r.host.as_deref())
        .collect();
    Some(format!(
        "rolling, {}",
        crate::report::count(hosts.len(), "host")
    ))
}

fn run_ctx(view: &RunView) -> minijinja::Value {
    let run_id = view.doc["run_id"].as_i64().unwrap_or_default();
    let has = |id: &str| view.steps.iter().any(|s| s.id == id);
    let svg = graph::svg(&view.steps, |id| {
        if has(id) {
            format!("/runs/{run_id}/steps/{}", urlencode(id))
        } else {
            format!("#g-{}", urlencode(id))
        }
    });
    let engine_free = view.state != crate::state::RunState::Running;
    let steps: Vec<_> = view
        .steps
        .iter()
        .map(|s| {
            let approvable = s.state == StepState::Held
                && s.reason.as_deref().is_some_and(|r| r.contains("waiting for approval"));
            // Who approved it (SPEC §11), unless its reason says so already.
            let approved = approved_line(view, &s.id)
                .filter(|_| !s.reason.as_deref().is_some_and(|r| r.starts_with("approved by")));
            context! {
                id => s.id,
                url => urlencode(&s.id),
                family => crate::report::fleet::family_of(&s.id).map(urlencode),
                state => s.state.as_str(),
                colour => graph::colour(s.state),
                reason => s.reason,
                attempts => s.attempts,
                host => host_of(view, s),
                duration => s.duration_ms.or_else(|| {
                    (s.state == StepState::Running).then(|| s.started_at.as_deref().and_then(|t| between(t, None))).flatten()
                }).map(human_ms),
                approvable,
                approved,
                resettable => engine_free && s.state != StepState::Pending,
            }
        })
        .collect();
    context! {
        run_id,
        runbook => view.runbook,
        state => view.state.as_str(),
        colour => run_colour(view.state),
        started => view.started_at,
        duration => between(&view.started_at, view.finished_at.as_deref()).map(human_ms),
        svg,
        steps,
    }
}

/// `approved by WHO at WHEN` of a step, from the status document's
/// `approved_by` and `approved_at`.
fn approved_line(view: &RunView, id: &str) -> Option<String> {
    let steps = view.doc["steps"].as_array()?;
    let step = steps.iter().find(|s| s["id"].as_str() == Some(id))?;
    let by = step["approved_by"].as_str()?;
    match step["approved_at"].as_str() {
        Some(at) => Some(format!("approved by {by} at {at}")),
        None => Some(format!("approved by {by}")),
    }
}

fn run_colour(state: crate::state::RunState) -> &'static str {
    use crate::state::RunState::*;
    graph::colour(match state {
        Running => StepState::Running,
        Succeeded => StepState::Succeeded,
        Failed => StepState::Failed,
        Held => StepState::Held,
        Interrupted => StepState::Interrupted,
    })
}

/// One run's page.
pub fn run(view: &RunView) -> String {
    let ctx = run_ctx(view);
    let title = format!(
        "run {} · {}",
        ctx.get_attr("run_id").unwrap_or_default(),
        view.runbook
    );
    render("run.html", context! { title, ..ctx })
}

/// The part of the run page that a change replaces.
pub fn run_body(view: &RunView) -> String {
    render("run_body.html", run_ctx(view))
}

/// A step's output page.
pub fn output(view: &RunView, run_id: i64, step: &str, text: &str) -> String {
    let row = view.steps.iter().find(|s| s.id == step);
    render(
        "output.html",
        context! {
            title => format!("{step} · run {run_id}"),
            run_id,
            runbook => view.runbook,
            step,
            state => row.map(|s| s.state.as_str()),
            colour => row.map(|s| graph::colour(s.state)),
            attempt => row.map(|s| s.attempts),
            text,
        },
    )
}

/// Percent-encodes a path segment.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
