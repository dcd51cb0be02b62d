//! The handoff model as one self-contained HTML page (SPEC §10): the same
//! content as the Markdown, inline CSS, no scripts, nothing fetched from
//! elsewhere, readable on a phone; every text from the run escaped
//! (`report::html`). One function per section, in the page's order.

use super::model::{FailedStep, Handoff, SecretNeed, StepLine};
use crate::report::html::{code, codes, escape, inline};
use crate::state::RunState;

const STYLE: &str = "\
body{font:16px/1.5 -apple-system,system-ui,'Segoe UI',Roboto,sans-serif;margin:0;padding:1rem;color:#1b1f24;background:#fff;max-width:48rem}\
h1{font-size:1.4rem;line-height:1.25}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}\
h3{font-size:1.05rem}h4{font-size:1rem;margin-bottom:.3rem}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:#f3f4f6;border-radius:4px}\
code{padding:.1em .3em;overflow-wrap:anywhere}\
pre{padding:.75rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
.state{display:inline-block;padding:0 .5em;border-radius:1em;color:#fff;background:#57606a}\
.held{background:#9a6700}.failed{background:#cf222e}.succeeded{background:#1a7f37}\
.secret{border-left:4px solid #9a6700;padding-left:.75rem;margin:1rem 0}\
blockquote{margin:0;padding-left:.75rem;color:#57606a;border-left:4px solid #d0d7de}\
li{margin:.2rem 0}\
";

/// The page.
pub fn to_html(h: &Handoff) -> String {
    let mut b = String::new();
    head(&mut b, h);
    header(&mut b, h);
    needed(&mut b, h);
    notes(&mut b, h);
    if !h.failed.is_empty() {
        b.push_str("<h2>Failed steps</h2>\n");
        for f in &h.failed {
            failed(&mut b, f);
        }
    }
    lines(
        &mut b,
        "Blocked",
        Some("These run by themselves once what they wait for is done:"),
        &h.blocked,
        ": ",
    );
    lines(&mut b, "Done", None, &h.done, " ");
    then(&mut b, h);
    b.push_str("</body>\n</html>\n");
    b
}

/// The document's head: title, viewport, the inline style.
fn head(b: &mut String, h: &Handoff) {
    let title = format!("Handoff: {} — run {} {}", h.runbook, h.run_id, h.standing());
    b.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    b.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    b.push_str(&format!("<title>{}</title>\n", escape(&title)));
    b.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
}

/// The title, the description, and where the run stands.
fn header(b: &mut String, h: &Handoff) {
    b.push_str(&format!(
        "<h1>Handoff: {} — run {} {} <span class=\"state {}\">{}</span></h1>\n",
        escape(&h.runbook),
        h.run_id,
        if h.was_reset() { "was" } else { "is" },
        h.state,
        if h.was_reset() {
            "reset".to_string()
        } else {
            h.state.to_string()
        }
    ));
    if let Some(d) = &h.description {
        b.push_str(&format!("<blockquote>{}</blockquote>\n", inline(d)));
    }
    let when = h.finished_at.as_deref().unwrap_or(&h.started_at);
    let counts = escape(&h.counts_sentences());
    let stood = match h.was_reset() {
        true => format!(
            "(started {}, last pass ended {}) was <strong>reset</strong>",
            escape(&h.started_at),
            escape(when)
        ),
        false => format!(
            "(started {}) stopped <strong>{}</strong> at {}",
            escape(&h.started_at),
            h.state,
            escape(when)
        ),
    };
    b.push_str(&format!(
        "<p>Run {} of {} {stood}. {counts}</p>\n",
        h.run_id,
        code(&h.runbook),
    ));
}

/// What is needed: the secrets by owner, then the approvals.
fn needed(b: &mut String, h: &Handoff) {
    if !h.owners.is_empty() || !h.approvals.is_empty() {
        b.push_str("<h2>What is needed</h2>\n");
    }
    for group in &h.owners {
        b.push_str(&format!("<h3>From {}</h3>\n", escape(&group.owner)));
        for s in &group.secrets {
            secret(b, s);
        }
    }
    if !h.approvals.is_empty() {
        b.push_str("<h3>Approvals</h3>\n<ul>\n");
        for a in &h.approvals {
            b.push_str(&format!(
                "<li>{}: {}<br>Approve with <code>{}</code></li>\n",
                code(&a.step),
                inline(&a.question),
                escape(&a.command)
            ));
        }
        b.push_str("</ul>\n");
    }
}

/// One secret: why it is held, where to put it, its check, what it unblocks.
fn secret(b: &mut String, s: &SecretNeed) {
    b.push_str("<div class=\"secret\">\n");
    b.push_str(&format!(
        "<h4>{} — {}</h4>\n",
        code(&s.name),
        escape(&s.status)
    ));
    if let Some(d) = &s.description {
        b.push_str(&format!("<p>{}</p>\n", inline(d)));
    }
    b.push_str(&format!(
        "<p><strong>Why it is held:</strong> {}</p>\n",
        inline(&s.reason)
    ));
    b.push_str("<p><strong>Where to put it</strong> (the engine looks in this order and takes the first non-empty value; one place is enough):</p>\n<ol>\n");
    for src in &s.sources {
        b.push_str(&format!("<li>{}</li>\n", inline(src)));
    }
    b.push_str("</ol>\n");
    if let Some(c) = &s.check {
        b.push_str(&format!(
            "<p><strong>How the engine checks it:</strong> {}</p>\n",
            inline(c)
        ));
    }
    let mut unblocks = codes(&s.held_steps);
    if !s.blocked_steps.is_empty() {
        unblocks.push_str(&format!(
            ", and after {} {}",
            s.after(),
            codes(&s.blocked_steps)
        ));
    }
    b.push_str(&format!(
        "<p><strong>It unblocks:</strong> {unblocks}</p>\n</div>\n"
    ));
}

/// What the author wrote about the steps not done.
fn notes(b: &mut String, h: &Handoff) {
    if h.notes.is_empty() {
        return;
    }
    b.push_str("<h3>About the steps not done</h3>\n<ul>\n");
    for n in &h.notes {
        b.push_str(&format!(
            "<li>{}: {}</li>\n",
            code(&n.id),
            inline(n.text.trim())
        ));
    }
    b.push_str("</ul>\n");
}

/// One failed step, with the last lines of its output.
fn failed(b: &mut String, f: &FailedStep) {
    let on = f
        .host
        .as_deref()
        .map(|host| format!(" on {}", code(host)))
        .unwrap_or_default();
    b.push_str(&format!(
        "<h3>{}{on}</h3>\n<p>{}</p>\n",
        code(&f.id),
        inline(&f.reason)
    ));
    if !f.output_tail.is_empty() {
        b.push_str("<p>Last lines of its output:</p>\n<pre>");
        for l in &f.output_tail {
            b.push_str(&escape(l));
            b.push('\n');
        }
        b.push_str("</pre>\n");
    }
    b.push_str(&format!(
        "<p>Full output: <code>{}</code></p>\n",
        escape(&f.logs_command)
    ));
}

/// A section of step lines (blocked, done): heading, intro, one item each.
fn lines(b: &mut String, title: &str, intro: Option<&str>, lines: &[StepLine], sep: &str) {
    if lines.is_empty() {
        return;
    }
    b.push_str(&format!("<h2>{title}</h2>\n"));
    if let Some(intro) = intro {
        b.push_str(&format!("<p>{intro}</p>\n"));
    }
    b.push_str("<ul>\n");
    for s in lines {
        b.push_str(&format!(
            "<li>{}{sep}{}</li>\n",
            code(&s.label()),
            inline(&s.text)
        ));
    }
    b.push_str("</ul>\n");
}

/// The command that continues the run, and what its exit code says.
fn then(b: &mut String, h: &Handoff) {
    b.push_str("<h2>Then</h2>\n");
    if h.state == RunState::Succeeded {
        b.push_str("<p>Nothing: the run is complete.</p>\n");
    } else {
        let when = match h.asks_anything() {
            true => "When the above is done, continue",
            false => "Continue",
        };
        b.push_str(&format!(
            "<p>{when} the run (only what is not done yet runs again):</p>\n"
        ));
        b.push_str(&format!("<pre>{}</pre>\n", escape(&h.resume_command)));
        b.push_str("<p>It exits 0 when everything is done, 3 if something still waits for a person (run <code>runbook handoff</code> again to see what), 1 if a step failed.</p>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::sample;
    use super::*;

    fn section(f: fn(&mut String, &Handoff), h: &Handoff) -> String {
        let mut b = String::new();
        f(&mut b, h);
        b
    }

    #[test]
    fn head_and_header_escape_the_runbooks_name() {
        let mut h = sample();
        h.runbook = "<b>x</b>".into();
        let head = section(head, &h);
        assert!(
            head.contains("<title>Handoff: &lt;b&gt;x&lt;/b&gt; — run 7 is held</title>"),
            "{head}"
        );
        assert!(head.contains("<style>") && !head.contains("<script"));
        let top = section(header, &h);
        assert!(top.starts_with("<h1>Handoff: &lt;b&gt;x&lt;/b&gt; — run 7 is <span class=\"state held\">held</span></h1>\n<blockquote>Ship it.</blockquote>"), "{top}");
        assert!(
            top.contains(
                "1 step is done; 1 waits for a person, 1 failed and 2 are blocked behind them.</p>"
            ),
            "{top}"
        );
    }

    #[test]
    fn what_is_needed_and_the_notes() {
        let h = sample();
        let needed = section(needed, &h);
        assert!(needed.contains("<h3>From Lukas</h3>\n<div class=\"secret\">\n<h4><code>TOKEN</code> — missing</h4>"), "{needed}");
        assert!(
            needed.contains("<li>the environment: <code>export TOKEN=...</code></li>"),
            "{needed}"
        );
        assert!(
            needed.contains("<code>deploy@w1</code>, and after it <code>check</code>"),
            "{needed}"
        );
        assert!(needed.contains("<li><code>approve</code>: Ship?<br>Approve with <code>runbook approve 7 approve</code></li>"));
        assert_eq!(section(notes, &h), "<h3>About the steps not done</h3>\n<ul>\n<li><code>check</code>: Checks\nthe site.</li>\n</ul>\n");
    }

    #[test]
    fn failed_blocked_done_and_then() {
        let mut h = sample();
        let mut b = String::new();
        failed(&mut b, &h.failed[0]);
        assert!(
            b.starts_with("<h3><code>build</code> on <code>w1</code></h3>\n<p>exit code 2</p>"),
            "{b}"
        );
        assert!(b.contains("<pre>no space left\n</pre>"));
        let page = to_html(&h);
        assert!(page.contains("<h2>Blocked</h2>\n<p>These run by themselves once what they wait for is done:</p>\n<ul>\n<li><code>deploy on w1, w2</code>: <code>build</code> failed</li>"), "{page}");
        assert!(
            page.contains("<h2>Done</h2>\n<ul>\n<li><code>fetch</code> Fetch the code</li>"),
            "{page}"
        );
        assert!(page.ends_with("1 if a step failed.</p>\n</body>\n</html>\n"));
        h.state = RunState::Succeeded;
        assert_eq!(
            section(then, &h),
            "<h2>Then</h2>\n<p>Nothing: the run is complete.</p>\n"
        );
    }
}
