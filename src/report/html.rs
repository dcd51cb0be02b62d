//! Text from a run in HTML: every text from the run (secret names, step
//! ids, reasons, output) is untrusted and goes through `escape`; `inline`
//! turns the Markdown's `code` spans into `<code>`. The handoff page
//! (`handoff::html`) and the web view (`serve`) take from here.

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
pub fn inline(text: &str) -> String {
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

/// Text as one `<code>` span.
pub fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

/// Ids as `<code>` spans, comma-separated.
pub fn codes(ids: &[String]) -> String {
    ids.iter().map(|s| code(s)).collect::<Vec<_>>().join(", ")
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
