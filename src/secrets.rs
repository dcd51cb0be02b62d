//! Secrets: where values are looked up, and redaction of every captured line
//! (SPEC §7). Values live only in memory.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, MatchKind};

/// Shortest value that is redacted; shorter ones would mangle ordinary text.
const MIN_REDACTED_LEN: usize = 3;

/// Shortest line of a multi-line value that is also redacted on its own
/// (measured without its leading and trailing whitespace). Shorter lines,
/// such as the `{` and `}` of a JSON credential, carry next to no secret and
/// would mangle every brace in all output.
pub const MIN_LINE_LEN: usize = 8;

/// Replaces secret values with `[REDACTED:NAME]`: every value whole, and
/// each line of a multi-line value, in one leftmost-longest pass, so a value
/// that contains another is never half-redacted.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// All patterns at once; `None` when there is nothing to redact.
    matcher: Option<AhoCorasick>,
    /// The marker for each pattern, by pattern index.
    markers: Vec<String>,
    /// The patterns, for a text cut short inside one.
    patterns: Vec<String>,
    /// The automaton could not be built: every text is withheld.
    broken: bool,
}

/// Values every redactor of this process redacts besides its secrets: the
/// state database's password (SPEC §11).
static ALWAYS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Makes every redactor made from now on in this process redact `value`
/// as `[REDACTED:NAME]` (the state database's password).
pub fn redact_always(name: &str, value: &str) {
    let mut always = ALWAYS.lock().unwrap_or_else(|p| p.into_inner());
    if !always.iter().any(|(_, v)| v == value) {
        always.push((name.to_string(), value.to_string()));
    }
}

impl Redactor {
    /// A redactor for the given name → value pairs (and the values of
    /// [`redact_always`]).
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let always = ALWAYS.lock().map(|a| a.clone()).unwrap_or_default();
        let mut all: Vec<(&str, &str)> = Vec::new();
        for (n, v) in secrets {
            all.push((n, v));
        }
        all.extend(always.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let secrets = all;
        // Whole values first: where a value equals another's line, the
        // whole value's name is the one shown.
        let whole = secrets
            .iter()
            .filter(|(_, v)| v.len() >= MIN_REDACTED_LEN)
            .map(|&(n, v)| (v, n));
        // A JSON credential's string fields, as `from_json` gives them to a
        // template: decoded, so a `private_key` with `\n` escapes becomes
        // the PEM lines a step may print.
        let leaves: Vec<(String, &str)> = secrets
            .iter()
            .flat_map(|&(n, v)| json_strings(v).into_iter().map(move |s| (s, n)))
            .collect();
        // A value inside a URL, as an error message quotes it (reqwest shows
        // the URL percent-encoded: a space, `<`, a non-ASCII letter).
        let encoded: Vec<(String, &str)> = secrets
            .iter()
            .filter(|(_, v)| v.len() >= MIN_REDACTED_LEN)
            .flat_map(|&(n, v)| url_forms(v).into_iter().map(move |f| (f, n)))
            .collect();
        let whole = whole.chain(encoded.iter().map(|(f, n)| (f.as_str(), *n)));
        let mut parts: Vec<(&str, &str)> = Vec::new();
        for (value, name) in secrets
            .iter()
            .map(|&(n, v)| (v, n))
            .chain(leaves.iter().map(|(s, n)| (s.as_str(), *n)))
        {
            parts.push((value.trim(), name));
            if value.contains('\n') {
                parts.extend(value.lines().map(|l| (l.trim(), name)));
            }
        }
        let lines = parts.into_iter().filter(|(p, _)| p.len() >= MIN_LINE_LEN);
        let mut patterns: Vec<&str> = Vec::new();
        let mut markers = Vec::new();
        for (pattern, name) in whole.chain(lines) {
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
                markers.push(format!("[REDACTED:{name}]"));
            }
        }
        if patterns.is_empty() {
            return Redactor::default();
        }
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
        {
            Ok(matcher) => Redactor {
                matcher: Some(matcher),
                markers,
                patterns: patterns.into_iter().map(str::to_string).collect(),
                broken: false,
            },
            Err(_) => Redactor {
                broken: true,
                ..Redactor::default()
            },
        }
    }

    /// The text with every secret value, and every long enough line of a
    /// multi-line value, replaced. A text cut short with `…` (a response
    /// body's preview) that ends inside a value has that start replaced too.
    pub fn redact(&self, text: &str) -> String {
        let out = match &self.matcher {
            Some(m) => m.replace_all(text, &self.markers),
            None if self.broken => {
                return "[REDACTED: the redactor could not be built]".to_string()
            }
            None => return text.to_string(),
        };
        match out.strip_suffix('…').and_then(|body| self.cut_inside(body)) {
            Some((at, i)) => format!("{}{}…", &out[..at], self.markers[i]),
            None => out,
        }
    }

    /// Where `text` ends with the start of a pattern (at least
    /// `MIN_CUT_LEN` bytes of it): the earliest such position, and the pattern.
    fn cut_inside(&self, text: &str) -> Option<(usize, usize)> {
        const MIN_CUT_LEN: usize = 4;
        let mut best: Option<(usize, usize)> = None;
        for (i, p) in self.patterns.iter().enumerate() {
            let from = text.len().saturating_sub(p.len().saturating_sub(1));
            let until = text.len().saturating_sub(MIN_CUT_LEN);
            for at in from..=until {
                if best.is_some_and(|(b, _)| b <= at) {
                    break;
                }
                if text.is_char_boundary(at) && p.starts_with(&text[at..]) {
                    best = Some((at, i));
                    break;
                }
            }
        }
        best
    }
}

/// The ways a URL may show `value` percent-encoded, other than as it is: in
/// a query and in a path as the `url` crate writes them, and with every
/// byte but the unreserved ones encoded (a space as `%20` or `+`).
fn url_forms(value: &str) -> Vec<String> {
    let mut forms = Vec::new();
    if let Ok(mut u) = reqwest::Url::parse("http://h/") {
        u.set_query(Some(value));
        forms.extend(u.query().map(str::to_string));
        u.set_query(None);
        u.set_path(value);
        forms.push(u.path().trim_start_matches('/').to_string());
    }
    let mut all = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            all.push(b as char);
        } else {
            all.push_str(&format!("%{b:02X}"));
        }
    }
    forms.push(all.replace("%20", "+"));
    forms.push(all);
    forms.retain(|f| f != value && f.len() >= MIN_REDACTED_LEN);
    forms.sort();
    forms.dedup();
    forms
}

/// The string values inside a JSON object or array (at any depth); none
/// when the text is not JSON or is a bare scalar.
fn json_strings(text: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(doc @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) =
        serde_json::from_str::<serde_json::Value>(text)
    {
        walk(&doc, &mut out);
    }
    out
}

/// Values found, by name, from the sources in order (first non-empty wins).
#[derive(Debug, Default, Clone)]
pub struct Values {
    values: BTreeMap<String, String>,
}

impl Values {
    /// Values by name.
    pub fn from_map(values: BTreeMap<String, String>) -> Self {
        Values { values }
    }

    /// Every value by name.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// The value of a secret, if found.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A redactor for every value found.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.values.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_percent_encoded_in_a_url_is_redacted() {
        let r = Redactor::new([("T", "a b<c>ü/?")]);
        for shown in [
            "http://h/x?key=a%20b%3Cc%3E%C3%BC/?",
            "http://h/a%20b%3Cc%3E%C3%BC/%3F",
            "key=a+b%3Cc%3E%C3%BC%2F%3F&x=1",
            "key=a%20b%3Cc%3E%C3%BC%2F%3F",
        ] {
            assert!(r.redact(shown).contains("[REDACTED:T]"), "{shown}");
            assert!(!r.redact(shown).contains("%20b"), "{shown}");
        }
        // A value no URL encodes differently adds no pattern.
        assert_eq!(url_forms("ghp_abc123"), Vec::<String>::new());
    }

    #[test]
    fn redacts_longest_first() {
        let r = Redactor::new([("A", "abcdef"), ("B", "abcdefgh")]);
        assert_eq!(
            r.redact("x abcdefgh y abcdef"),
            "x [REDACTED:B] y [REDACTED:A]"
        );
    }

    #[test]
    fn a_value_inside_another_is_never_half_redacted() {
        // B contains A in its middle: a replace loop that did A first (or
        // the shorter first) would leave "pre-[REDACTED:A]-post" behind.
        let r = Redactor::new([("A", "token123"), ("B", "pre-token123-post")]);
        assert_eq!(
            r.redact("pre-token123-post and token123"),
            "[REDACTED:B] and [REDACTED:A]"
        );
    }

    #[test]
    fn a_marker_is_never_redacted_again() {
        // One pass: the marker written for API_TOKEN is not searched for
        // the value of A (a loop of `replace` would mangle it).
        let r = Redactor::new([("A", "TOKEN"), ("API_TOKEN", "zzzzzzzzzz")]);
        assert_eq!(
            r.redact("zzzzzzzzzz TOKEN"),
            "[REDACTED:API_TOKEN] [REDACTED:A]"
        );
    }

    #[test]
    fn multi_line_values_whole_and_line_by_line() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAbC\n-----END KEY-----";
        let r = Redactor::new([("PEM", pem)]);
        assert_eq!(r.redact(pem), "[REDACTED:PEM]");
        assert_eq!(
            r.redact("key: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "key: [REDACTED:PEM]"
        );
        // A line shorter than MIN_LINE_LEN is left alone on its own.
        assert_eq!(r.redact("AbC"), "AbC");
        // Lines joined by spaces (an HTTP body preview) are all caught.
        assert_eq!(
            r.redact("body: -----BEGIN KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "body: [REDACTED:PEM] [REDACTED:PEM]"
        );
    }

    #[test]
    fn a_preview_cut_inside_a_value_hides_its_start() {
        let r = Redactor::new([("K", "abcdefghijklmnop")]);
        assert_eq!(r.redact("body: x abcdefgh…"), "body: x [REDACTED:K]…");
        // Without the cut mark, or under the minimum, text is left alone.
        assert_eq!(r.redact("body: x abcdefgh"), "body: x abcdefgh");
        assert_eq!(r.redact("body: x abc…"), "body: x abc…");
    }

    #[test]
    fn braces_of_a_json_credential_are_not_redacted_everywhere() {
        let json = "{\n  \"private_key\": \"abc-very-secret-xyz\"\n}";
        let r = Redactor::new([("SA", json)]);
        assert_eq!(r.redact("{ } []"), "{ } []");
        assert_eq!(
            r.redact("    \"private_key\": \"abc-very-secret-xyz\""),
            "    [REDACTED:SA]"
        );
    }
}
