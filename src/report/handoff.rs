//! The handoff page (SPEC §6): what a person must do to finish a run, written
//! so that someone who reads only this page can do it.

use serde::Serialize;

use crate::state::RunState;

/// How `handoff` writes the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HandoffFormat {
    /// Markdown, for a chat or an issue.
    #[default]
    Markdown,
    /// The page as data.
    Json,
    /// One self-contained HTML page (inline CSS, no scripts), for a browser or a phone.
    Html,
}

/// The page in a format.
pub fn render(h: &Handoff, format: HandoffFormat) -> String {
    match format {
        HandoffFormat::Markdown => to_markdown(h),
        HandoffFormat::Json => serde_json::to_string_pretty(h).unwrap_or_default() + "\n",
        HandoffFormat::Html => super::html::to_html(h),
    }
}

/// The handoff as data (`handoff --json`).
#[derive(Debug, Serialize)]
pub struct Handoff {
    /// Run id.
    pub run_id: i64,
    /// Runbook name.
    pub runbook: String,
    /// Runbook description.
    pub description: Option<String>,
    /// Run state.
    pub state: RunState,
    /// Start.
    pub started_at: String,
    /// End of the last pass.
    pub finished_at: Option<String>,
    /// Steps done (succeeded or skipped).
    pub done: Vec<StepLine>,
    /// What each owner must supply.
    pub owners: Vec<OwnerGroup>,
    /// Steps waiting for an approval.
    pub approvals: Vec<ApprovalNeed>,
    /// Steps that failed, with the tail of their output.
    pub failed: Vec<FailedStep>,
    /// Steps blocked behind held or failed ones.
    pub blocked: Vec<StepLine>,
    /// Notes the runbook author wrote for the person taking over.
    pub notes: Vec<StepLine>,
    /// The command that continues the run.
    pub resume_command: String,
    /// How many steps (each instance on a host counted once) are done,
    /// wait for a person, failed and are blocked: the lists above collapse
    /// a step's instances into one line, these do not.
    pub counts: Counts,
}

/// Steps per state, each instance of a step on a group counted once.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Succeeded or skipped.
    pub done: usize,
    /// Held: a secret or an approval.
    pub waiting: usize,
    /// Failed.
    pub failed: usize,
    /// Blocked behind held or failed ones.
    pub blocked: usize,
}

/// A step and a line about it.
#[derive(Debug, Serialize)]
pub struct StepLine {
    /// Step id, or an instance's `STEP@HOST`; for the instances of one
    /// step gathered on one line, the step's id (an id, never prose).
    pub id: String,
    /// Title or reason.
    pub text: String,
    /// For instances gathered on one line: the step they are of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For instances gathered on one line: their hosts, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl StepLine {
    /// A line about one step or instance.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        StepLine {
            id: id.into(),
            text: text.into(),
            step: None,
            hosts: Vec::new(),
        }
    }

    /// What people read: the id, or `STEP on HOST, HOST` for gathered
    /// instances.
    pub fn label(&self) -> String {
        match &self.step {
            Some(step) if !self.hosts.is_empty() => {
                format!("{step} on {}", self.hosts.join(", "))
            }
            _ => self.id.clone(),
        }
    }
}

/// The secrets one person must supply.
#[derive(Debug, Serialize)]
pub struct OwnerGroup {
    /// Who.
    pub owner: String,
    /// What.
    pub secrets: Vec<SecretNeed>,
}

/// One secret a person must supply.
#[derive(Debug, Serialize)]
pub struct SecretNeed {
    /// Name.
    pub name: String,
    /// What it is.
    pub description: Option<String>,
    /// `missing`, `rejected`, `unchecked` or `unavailable`.
    pub status: String,
    /// Why, in words.
    pub reason: String,
    /// Where the current (bad) value was found.
    pub found_in: Option<String>,
    /// Where the engine looks, in order.
    pub sources: Vec<String>,
    /// How the engine checks it.
    pub check: Option<String>,
    /// Steps waiting on it directly.
    pub held_steps: Vec<String>,
    /// Steps that run once those do.
    pub blocked_steps: Vec<String>,
}

/// A step that waits for an approval.
#[derive(Debug, Serialize)]
pub struct ApprovalNeed {
    /// Step id.
    pub step: String,
    /// The question.
    pub question: String,
    /// The command that approves it.
    pub command: String,
}

/// A failed step.
#[derive(Debug, Serialize)]
pub struct FailedStep {
    /// Step id.
    pub id: String,
    /// Host, when remote.
    pub host: Option<String>,
    /// Why it failed.
    pub reason: String,
    /// Last lines of its output.
    pub output_tail: Vec<String>,
    /// The command that shows everything.
    pub logs_command: String,
}

fn steps_list(ids: &[String]) -> String {
    ids.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Handoff {
    /// The header every format states: what is done, and what waits for a
    /// person, failed or is blocked (each instance counted once).
    pub fn header_counts(&self) -> (String, Option<String>) {
        let c = &self.counts;
        let done = match c.done {
            1 => "1 step is done".to_string(),
            n => format!("{n} steps are done"),
        };
        let rest = (c.waiting > 0 || c.failed > 0 || c.blocked > 0).then(|| {
            format!(
                "{} wait for a person, {} failed, {} are blocked behind them",
                c.waiting, c.failed, c.blocked
            )
        });
        (done, rest)
    }
}

/// The page as Markdown.
pub fn to_markdown(h: &Handoff) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "# Handoff: {} — run {} is {}\n\n",
        h.runbook, h.run_id, h.state
    ));
    if let Some(d) = &h.description {
        md.push_str(&format!("> {d}\n\n"));
    }
    let when = h.finished_at.as_deref().unwrap_or(&h.started_at);
    let (done, rest) = h.header_counts();
    md.push_str(&format!(
        "Run {} of `{}` (started {}) stopped **{}** at {when}. {done}",
        h.run_id, h.runbook, h.started_at, h.state,
    ));
    match rest {
        Some(rest) => md.push_str(&format!("; {rest}.\n\n")),
        None => md.push_str(". Nothing is waiting for anyone.\n\n"),
    }

    if !h.owners.is_empty() || !h.approvals.is_empty() {
        md.push_str("## What is needed\n\n");
    }
    for group in &h.owners {
        md.push_str(&format!("### From {}\n\n", group.owner));
        for s in &group.secrets {
            md.push_str(&format!("#### `{}` — {}\n\n", s.name, s.status));
            if let Some(d) = &s.description {
                md.push_str(&format!("{d}\n\n"));
            }
            md.push_str(&format!("- **Why it is held:** {}\n", s.reason));
            md.push_str("- **Where to put it** (the engine looks in this order and takes the first non-empty value; one place is enough):\n");
            for (i, src) in s.sources.iter().enumerate() {
                md.push_str(&format!("  {}. {src}\n", i + 1));
            }
            if let Some(c) = &s.check {
                md.push_str(&format!("- **How the engine checks it:** {c}\n"));
            }
            let mut unblocks = steps_list(&s.held_steps);
            if !s.blocked_steps.is_empty() {
                unblocks.push_str(&format!(
                    ", and after them {}",
                    steps_list(&s.blocked_steps)
                ));
            }
            md.push_str(&format!("- **It unblocks:** {unblocks}\n\n"));
        }
    }
    if !h.approvals.is_empty() {
        md.push_str("### Approvals\n\n");
        for a in &h.approvals {
            md.push_str(&format!(
                "- `{}`: {}\n  Approve with `{}`\n",
                a.step, a.question, a.command
            ));
        }
        md.push('\n');
    }
    if !h.notes.is_empty() {
        md.push_str("### About the steps not done\n\n");
        for n in &h.notes {
            md.push_str(&format!(
                "- `{}`: {}\n",
                n.id,
                n.text.trim().replace('\n', "\n  ")
            ));
        }
        md.push('\n');
    }
    if !h.failed.is_empty() {
        md.push_str("## Failed steps\n\n");
        for f in &h.failed {
            let on = f
                .host
                .as_deref()
                .map(|h| format!(" on `{h}`"))
                .unwrap_or_default();
            md.push_str(&format!("### `{}`{on}\n\n{}\n\n", f.id, f.reason));
            if !f.output_tail.is_empty() {
                md.push_str("Last lines of its output:\n\n```text\n");
                for l in &f.output_tail {
                    md.push_str(l);
                    md.push('\n');
                }
                md.push_str("```\n\n");
            }
            md.push_str(&format!("Full output: `{}`\n\n", f.logs_command));
        }
    }
    if !h.blocked.is_empty() {
        md.push_str("## Blocked\n\nThese run by themselves once what they wait for is done:\n\n");
        for b in &h.blocked {
            md.push_str(&format!("- `{}`: {}\n", b.label(), b.text));
        }
        md.push('\n');
    }
    if !h.done.is_empty() {
        md.push_str("## Done\n\n");
        for d in &h.done {
            let line = format!("- `{}` {}", d.label(), d.text);
            md.push_str(line.trim_end());
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str("## Then\n\n");
    if h.state == RunState::Succeeded {
        md.push_str("Nothing: the run is complete.\n");
    } else {
        md.push_str(&format!(
            "When the above is done, continue the run (only what is not done yet runs again):\n\n```sh\n{}\n```\n\n\
             It exits 0 when everything is done, 3 if something still waits for a person (run `runbook handoff` again to see what), 1 if a step failed.\n",
            h.resume_command
        ));
    }
    md
}
