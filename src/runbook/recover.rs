//! Every parse problem at once: serde stops at the first unknown key or bad
//! value, so the entry it names is blanked out (replaced by spaces, so every
//! offset stays where it was) and the text is parsed again, up to a limit.

/// How many problems one pass collects before it stops looking.
const MAX_PROBLEMS: usize = 50;

/// Where the entry that holds byte `at` starts, when the problem can be
/// stepped over: the key itself, or the key before a bad value on its line.
pub fn entry_start(text: &str, at: usize, unknown_key: bool) -> Option<usize> {
    let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    if unknown_key {
        return Some(at);
    }
    // A bad value: the `key:` before it on the same line.
    let before = &text[line_start..at];
    let colon = before.rfind(':')?;
    let head = &before[..colon];
    let key_at = head
        .rfind(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '-')
        .map(|i| i + 1)
        .unwrap_or(0);
    let key = &head[key_at..];
    if key.is_empty() || key.contains(['"', '\'']) {
        return None;
    }
    Some(line_start + key_at)
}

/// The text with the mapping entry starting at byte `at` replaced by spaces
/// (newlines kept): the rest of a flow entry up to its `,` or `}`, or a block
/// entry's line and every line indented under it.
pub fn blank_entry(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let prefix = text[line_start..at].trim_end();
    let end = if prefix.ends_with('{') || prefix.ends_with(',') {
        flow_entry_end(text, at)
    } else {
        block_entry_end(text, at, at - line_start)
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..at]);
    for c in text[at..end].chars() {
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    out.push_str(&text[end..]);
    out
}

fn flow_entry_end(text: &str, at: usize) -> usize {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in text[at..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') if depth == 0 => return at + i,
            (None, '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => return at + i + 1,
            _ => {}
        }
    }
    text.len()
}

fn block_entry_end(text: &str, at: usize, column: usize) -> usize {
    let first_end = text[at..].find('\n').map(|i| at + i).unwrap_or(text.len());
    let value_on_line = text[at..first_end]
        .split_once(':')
        .map(|(_, v)| !v.trim().is_empty() && !v.trim_start().starts_with('#'))
        .unwrap_or(true);
    let mut end = first_end;
    let mut pos = first_end;
    while pos < text.len() {
        let line_from = pos + 1;
        let line_end = text[line_from..]
            .find('\n')
            .map(|i| line_from + i)
            .unwrap_or(text.len());
        let line = &text[line_from..line_end];
        let body = line.trim_start();
        let indent = line.len() - body.len();
        let inside = body.is_empty()
            || body.starts_with('#')
            || indent > column
            || (indent == column && body.starts_with('-') && !value_on_line);
        if !inside {
            break;
        }
        if !body.is_empty() && !body.starts_with('#') {
            end = line_end;
        }
        pos = line_end;
        if line_end == text.len() {
            break;
        }
    }
    end
}

/// Whether another problem may still be looked for.
pub fn more_allowed(found: usize) -> bool {
    found < MAX_PROBLEMS
}

/// The id of step number `index` as the YAML says it, read without the
/// runbook format's rules (so it works on text that does not parse as one).
pub fn step_ids(text: &str) -> Vec<Option<String>> {
    let Ok(value) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return Vec::new();
    };
    value
        .get("steps")
        .and_then(|s| s.as_sequence())
        .map(|steps| {
            steps
                .iter()
                .map(|s| s.get("id").and_then(|i| i.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `steps[3].http` → `step "check" (steps[3].http)` when step 3 has an id.
pub fn name_step(place: &str, ids: &[Option<String>]) -> String {
    let Some(rest) = place.strip_prefix("steps[") else {
        return place.to_string();
    };
    let Some(close) = rest.find(']') else {
        return place.to_string();
    };
    match rest[..close]
        .parse::<usize>()
        .ok()
        .and_then(|i| ids.get(i)?.clone())
    {
        Some(id) => format!("step {id:?} ({place})"),
        None => place.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_entry_and_what_is_under_it_are_blanked() {
        let text = "a: 1\nbad:\n  - x\n  - y\nc: 2\n";
        let at = text.find("bad").unwrap();
        let out = blank_entry(text, at);
        assert_eq!(out.len(), text.len());
        assert!(!out.contains("bad") && !out.contains('x') && out.contains("c: 2"));
    }

    #[test]
    fn a_flow_entry_is_blanked_up_to_its_comma() {
        let text = "h: { url: \"x,y\", bad: 2, m: GET }\n";
        let out = blank_entry(text, text.find("bad").unwrap());
        assert!(out.contains("url: \"x,y\",") && out.contains("m: GET") && !out.contains("bad"));
        let last = "h: { url: u, bad: [1, 2] }\n";
        let out = blank_entry(last, last.find("bad").unwrap());
        assert!(out.contains('}') && !out.contains("bad"));
    }

    #[test]
    fn a_sequence_at_the_keys_indent_belongs_to_it() {
        let text = "bad:\n- x\nc: 1\n";
        let out = blank_entry(text, 0);
        assert!(!out.contains('x') && out.contains("c: 1"));
    }

    #[test]
    fn steps_are_named_by_id() {
        let ids = step_ids("steps:\n  - id: a\n  - id: b\n    bogus: 1\n");
        assert_eq!(name_step("steps[1]", &ids), "step \"b\" (steps[1])");
        assert_eq!(name_step("defaults", &ids), "defaults");
    }
}
