//! The handoff as one self-contained HTML page (SPEC §10): the same content
//! as the Markdown, inline CSS, no scripts, nothing fetched from elsewhere,
//! readable on a phone. Every text from the run (secret names, step ids,
//! reasons, output) is escaped: it is untrusted.

use super::handoff::Handoff;
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

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text, with the Markdown's `code` spans as `<code>`.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let parts: Vec<&str> = escaped.split('`').collect();
    if parts.len() < 3 || parts.len().is_multiple_of(2) {
        // No pair of backticks, or an odd one out: leave them as written.
        return escaped;
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

fn codes(ids: &[String]) -> String {
    ids.iter().map(|s| code(s)).collect::<Vec<_>>().join(", ")
}

/// The page.
pub fn to_html(h: &Handoff) -> String {
    let mut b = String::new();
    let title = format!("Handoff: {} — run {} is {}", h.runbook, h.run_id, h.state);
    b.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    b.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    b.push_str(&format!("<title>{}</title>\n", escape(&title)));
    b.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    b.push_str(&format!(
        "<h1>Handoff: {} — run {} is <span class=\"state {}\">{}</span></h1>\n",
        escape(&h.runbook),
        h.run_id,
        h.state,
        h.state
    ));
    if let Some(d) = &h.description {
        b.push_str(&format!("<blockquote>{}</blockquote>\n", inline(d)));
    }
    let when = h.finished_at.as_deref().unwrap_or(&h.started_at);
    let (done, rest) = h.header_counts();
    let rest = match rest {
        Some(rest) => format!("; {rest}."),
        None => ". Nothing is waiting for anyone.".to_string(),
    };
    b.push_str(&format!(
        "<p>Run {} of {} (started {}) stopped <strong>{}</strong> at {}. {done}{rest}</p>\n",
        h.run_id,
        code(&h.runbook),
        escape(&h.started_at),
        h.state,
        escape(when),
    ));
    needed(&mut b, h);
    failed(&mut b, h);
    if !h.blocked.is_empty() {
        b.push_str("<h2>Blocked</h2>\n<p>These run by themselves once what they wait for is done:</p>\n<ul>\n");
        for s in &h.blocked {
            b.push_str(&format!(
                "<li>{}: {}</li>\n",
                code(&s.label()),
                inline(&s.text)
            ));
        }
        b.push_str("</ul>\n");
    }
    if !h.done.is_empty() {
        b.push_str("<h2>Done</h2>\n<ul>\n");
        for s in &h.done {
            b.push_str(&format!(
                "<li>{} {}</li>\n",
                code(&s.label()),
                inline(&s.text)
            ));
        }
        b.push_str("</ul>\n");
    }
    b.push_str("<h2>Then</h2>\n");
    if h.state == RunState::Succeeded {
        b.push_str("<p>Nothing: the run is complete.</p>\n");
    } else {
        b.push_str("<p>When the above is done, continue the run (only what is not done yet runs again):</p>\n");
        b.push_str(&format!("<pre>{}</pre>\n", escape(&h.resume_command)));
        b.push_str("<p>It exits 0 when everything is done, 3 if something still waits for a person (run <code>runbook handoff</code> again to see what), 1 if a step failed.</p>\n");
    }
    b.push_str("</body>\n</html>\n");
    b
}

/// What is needed: secrets by owner, approvals, notes.
fn needed(b: &mut String, h: &Handoff) {
    if !h.owners.is_empty() || !h.approvals.is_empty() {
        b.push_str("<h2>What is needed</h2>\n");
    }
    for group in &h.owners {
        b.push_str(&format!("<h3>From {}</h3>\n", escape(&group.owner)));
        for s in &group.secrets {
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
                unblocks.push_str(&format!(", and after them {}", codes(&s.blocked_steps)));
            }
            b.push_str(&format!(
                "<p><strong>It unblocks:</strong> {unblocks}</p>\n</div>\n"
            ));
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
    if !h.notes.is_empty() {
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
}

fn failed(b: &mut String, h: &Handoff) {
    if h.failed.is_empty() {
        return;
    }
    b.push_str("<h2>Failed steps</h2>\n");
    for f in &h.failed {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_escaped() {
        assert_eq!(
            escape("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(inline("see `<b>` now"), "see <code>&lt;b&gt;</code> now");
        assert_eq!(inline("a ` b"), "a ` b");
    }
}
