//! What a notification says (SPEC §10): a short Markdown summary of the
//! handoff, and the two bodies, `json` and `slack`.

use super::handoff::Handoff;
use crate::state::RunState;

/// A few lines of Markdown: the run, what is needed and from whom, what
/// failed, and the command that continues it. Sent as Slack's `text` and as
/// the `summary` of the JSON body. `handoff_command` shows the full page.
pub fn summary(h: &Handoff, handoff_command: &str) -> String {
    // `*x*` is bold in Slack's mrkdwn and italic in Markdown: readable in both.
    let mut md = format!("`{}`: run {} is *{}*", h.runbook, h.run_id, h.state);
    if let Some(d) = &h.description {
        md.push_str(&format!(" ({d})"));
    }
    md.push('\n');
    for group in &h.owners {
        let names: Vec<String> = group
            .secrets
            .iter()
            .map(|s| format!("`{}` ({})", s.name, s.status))
            .collect();
        md.push_str(&format!(
            "- needed from {}: {}\n",
            group.owner,
            names.join(", ")
        ));
    }
    for a in &h.approvals {
        md.push_str(&format!(
            "- approval for `{}`: {} — `{}`\n",
            a.step, a.question, a.command
        ));
    }
    for f in &h.failed {
        md.push_str(&format!("- failed: `{}`: {}\n", f.id, f.reason));
    }
    if !h.blocked.is_empty() {
        md.push_str(&format!(
            "- {} blocked behind them; {} done\n",
            super::count(h.counts.blocked, "step"),
            h.counts.done
        ));
    }
    match h.state {
        RunState::Succeeded => md.push_str(&format!(
            "All {} done.\n",
            super::count(h.counts.done, "step")
        )),
        _ => md.push_str(&format!(
            "Details: `{handoff_command}`. Then continue with: `{}`\n",
            h.resume_command
        )),
    }
    md
}

/// The `json` body: run, state, summary, the handoff as data and the
/// command that continues the run.
pub fn json_body(h: &Handoff, summary: &str) -> serde_json::Value {
    serde_json::json!({
        "run_id": h.run_id,
        "runbook": h.runbook,
        "state": h.state,
        "summary": summary,
        "handoff": h,
        "resume": h.resume_command,
    })
}

/// The `slack` body: `{"text": markdown}`, which Slack, Mattermost,
/// Rocket.Chat and Teams' Slack-compatible incoming webhooks accept. `&`,
/// `<` and `>` are escaped as Slack asks: text from a run (an upstream's
/// error body in a reason) never becomes a `<!channel>` mention or a
/// `<url|text>` link.
pub fn slack_body(summary: &str) -> serde_json::Value {
    let text = summary
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    serde_json::json!({ "text": text })
}

/// The notifications under the status table: the last one per target and
/// state, and every one that was not delivered.
pub fn status_lines(rows: &[crate::store::NotificationRow]) -> String {
    let mut out = String::new();
    for (i, n) in rows.iter().enumerate() {
        let later = rows[i + 1..]
            .iter()
            .any(|m| m.target == n.target && m.state == n.state);
        if later && n.delivered {
            continue;
        }
        match &n.error {
            None => out.push_str(&format!(
                "notified {} (run {}) at {}\n",
                n.target, n.state, n.at
            )),
            Some(e) => out.push_str(&format!(
                "NOT notified {} (run {}) at {}: {e} ({})\n",
                n.target,
                n.state,
                n.at,
                super::count(n.attempts.max(0) as usize, "attempt")
            )),
        }
    }
    out
}
