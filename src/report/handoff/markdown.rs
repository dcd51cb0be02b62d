//! The handoff model as Markdown, for a chat or an issue: one function per
//! section of the page, in the order the page has them.

use super::model::{FailedStep, Handoff, SecretNeed};
use crate::state::RunState;

/// The page as Markdown.
pub fn to_markdown(h: &Handoff) -> String {
    let mut md = String::new();
    header(&mut md, h);
    needed(&mut md, h);
    notes(&mut md, h);
    if !h.failed.is_empty() {
        md.push_str("## Failed steps\n\n");
        for f in &h.failed {
            failed(&mut md, f);
        }
    }
    blocked(&mut md, h);
    done(&mut md, h);
    then(&mut md, h);
    md
}

fn steps_list(ids: &[String]) -> String {
    ids.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The title, the description, and where the run stands.
fn header(md: &mut String, h: &Handoff) {
    md.push_str(&format!(
        "# Handoff: {} — run {} {}\n\n",
        h.runbook,
        h.run_id,
        h.standing()
    ));
    if let Some(d) = &h.description {
        md.push_str(&format!("> {d}\n\n"));
    }
    let when = h.finished_at.as_deref().unwrap_or(&h.started_at);
    let counts = h.counts_sentences();
    if h.was_reset() {
        md.push_str(&format!(
            "Run {} of `{}` (started {}, last pass ended {when}) was **reset**. {counts}\n\n",
            h.run_id, h.runbook, h.started_at,
        ));
    } else {
        md.push_str(&format!(
            "Run {} of `{}` (started {}) stopped **{}** at {when}. {counts}\n\n",
            h.run_id, h.runbook, h.started_at, h.state,
        ));
    }
}

/// What is needed: the secrets by owner, then the approvals.
fn needed(md: &mut String, h: &Handoff) {
    if !h.owners.is_empty() || !h.approvals.is_empty() {
        md.push_str("## What is needed\n\n");
    }
    for group in &h.owners {
        md.push_str(&format!("### From {}\n\n", group.owner));
        for s in &group.secrets {
            secret(md, s);
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
}

/// One secret: why it is held, where to put it, its check, what it unblocks.
fn secret(md: &mut String, s: &SecretNeed) {
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
            ", and after {} {}",
            s.after(),
            steps_list(&s.blocked_steps)
        ));
    }
    md.push_str(&format!("- **It unblocks:** {unblocks}\n\n"));
}

/// What the author wrote about the steps not done.
fn notes(md: &mut String, h: &Handoff) {
    if h.notes.is_empty() {
        return;
    }
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

/// One failed step, with the last lines of its output.
fn failed(md: &mut String, f: &FailedStep) {
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

fn blocked(md: &mut String, h: &Handoff) {
    if h.blocked.is_empty() {
        return;
    }
    md.push_str("## Blocked\n\nThese run by themselves once what they wait for is done:\n\n");
    for b in &h.blocked {
        md.push_str(&format!("- `{}`: {}\n", b.label(), b.text));
    }
    md.push('\n');
}

fn done(md: &mut String, h: &Handoff) {
    if h.done.is_empty() {
        return;
    }
    md.push_str("## Done\n\n");
    for d in &h.done {
        // No trailing space when a step has no note.
        let line = format!("- `{}` {}", d.label(), d.text);
        md.push_str(line.trim_end());
        md.push('\n');
    }
    md.push('\n');
}

/// The command that continues the run, and what its exit code says.
fn then(md: &mut String, h: &Handoff) {
    md.push_str("## Then\n\n");
    if h.state == RunState::Succeeded {
        md.push_str("Nothing: the run is complete.\n");
    } else {
        let when = match h.asks_anything() {
            true => "When the above is done, continue",
            false => "Continue",
        };
        md.push_str(&format!(
            "{when} the run (only what is not done yet runs again):\n\n```sh\n{}\n```\n\n\
             It exits 0 when everything is done, 3 if something still waits for a person (run `runbook handoff` again to see what), 1 if a step failed.\n",
            h.resume_command
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::sample;
    use super::*;

    fn section(f: fn(&mut String, &Handoff), h: &Handoff) -> String {
        let mut md = String::new();
        f(&mut md, h);
        md
    }

    #[test]
    fn the_header_says_where_the_run_stands() {
        let md = section(header, &sample());
        assert!(
            md.starts_with("# Handoff: deploy — run 7 is held\n\n> Ship it.\n\n"),
            "{md}"
        );
        assert!(md.contains("stopped **held** at 2026-12-03T10:05:00Z. 1 step is done; 1 waits for a person, 1 failed and 2 are blocked behind them.\n"), "{md}");
    }

    #[test]
    fn what_is_needed_lists_secrets_by_owner_then_approvals() {
        let md = section(needed, &sample());
        let from = md.find("### From Lukas").unwrap();
        let token = md.find("#### `TOKEN` — missing").unwrap();
        let approvals = md.find("### Approvals").unwrap();
        assert!(from < token && token < approvals, "{md}");
        assert!(
            md.contains("  1. the environment: `export TOKEN=...`\n"),
            "{md}"
        );
        assert!(
            md.contains("- **It unblocks:** `deploy@w1`, and after it `check`\n"),
            "{md}"
        );
        assert!(md.contains("- `approve`: Ship?\n  Approve with `runbook approve 7 approve`\n"));
    }

    #[test]
    fn notes_failed_blocked_and_done_each_in_their_words() {
        let h = sample();
        assert_eq!(
            section(notes, &h),
            "### About the steps not done\n\n- `check`: Checks\n  the site.\n\n"
        );
        let mut md = String::new();
        failed(&mut md, &h.failed[0]);
        assert!(
            md.starts_with("### `build` on `w1`\n\nexit code 2\n\n"),
            "{md}"
        );
        assert!(md.contains("```text\nno space left\n```\n"), "{md}");
        assert!(md.ends_with("Full output: `runbook logs 7 build`\n\n"));
        assert!(section(blocked, &h).contains("- `deploy on w1, w2`: `build` failed\n"));
        assert_eq!(section(done, &h), "## Done\n\n- `fetch` Fetch the code\n\n");
        let mut bare = sample();
        bare.done[0].text = String::new();
        assert_eq!(section(done, &bare), "## Done\n\n- `fetch`\n\n");
    }

    #[test]
    fn then_is_the_resume_command_unless_the_run_is_complete() {
        let mut h = sample();
        assert!(section(then, &h).contains("```sh\nrunbook resume 7\n```"));
        h.state = RunState::Succeeded;
        assert_eq!(
            section(then, &h),
            "## Then\n\nNothing: the run is complete.\n"
        );
    }

    #[test]
    fn the_page_is_its_sections_in_order() {
        let md = to_markdown(&sample());
        let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s} in {md}"));
        assert!(at("# Handoff") < at("## What is needed"));
        assert!(at("## What is needed") < at("### About the steps not done"));
        assert!(at("### About the steps not done") < at("## Failed steps"));
        assert!(at("## Failed steps") < at("## Blocked"));
        assert!(at("## Blocked") < at("## Done"));
        assert!(at("## Done") < at("## Then"));
    }
}
