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

impl Redactor {
    /// A redactor for the given name → value pairs.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let secrets: Vec<(&str, &str)> = secrets.into_iter().collect();
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
    /// The value of a secret, if found.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A redactor for every value found.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.values.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }
}

/// Parses dotenv text (via dotenvy's parser rules) into a map.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (k, v) = item.map_err(|e| e.to_string())?;
        map.insert(k, v);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn dotenv_parses_quotes() {
        let m = parse_dotenv("A=1\nB=\"two words\"\n# c\nexport C='x'\n").unwrap();
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
    }
}

/// A place secret values are looked up, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The environment of the `runbook` process.
    Environment,
    /// A file given with `--env-file`.
    EnvFileArg(std::path::PathBuf),
    /// A local dotenv file from the runbook's `env_files`.
    Local(std::path::PathBuf),
    /// A dotenv file on a host, read over SSH.
    Remote {
        /// Host name.
        host: String,
        /// Path on the host.
        path: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Environment => f.write_str("the environment of the `runbook` process"),
            Source::EnvFileArg(p) => write!(f, "{} (given with --env-file)", p.display()),
            Source::Local(p) => write!(f, "{} (local file)", p.display()),
            Source::Remote { host, path } => write!(f, "{path} on host `{host}`"),
        }
    }
}

/// Where each value was found, and what went wrong reading a source.
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    /// The values found.
    pub values: Values,
    /// Name → the source it came from (its display text).
    pub found_in: BTreeMap<String, String>,
    /// Sources that could not be read, with why (a missing file is not a problem).
    pub problems: Vec<(String, String)>,
}

/// Reads the sources in order until every wanted name has a non-empty
/// value; later sources are not read once nothing is missing.
pub async fn lookup(
    sources: &[Source],
    wanted: &[String],
    execs: &crate::exec::Executors,
) -> Lookup {
    let mut out = Lookup::default();
    let mut values = BTreeMap::new();
    for source in sources {
        let missing: Vec<&String> = wanted.iter().filter(|w| !values.contains_key(*w)).collect();
        if missing.is_empty() {
            break;
        }
        let map: BTreeMap<String, String> = match source {
            Source::Environment => missing
                .iter()
                .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
                .collect(),
            Source::EnvFileArg(path) | Source::Local(path) => match std::fs::read_to_string(path) {
                Ok(text) => match parse_dotenv(&text) {
                    Ok(map) => map,
                    Err(e) => {
                        out.problems
                            .push((source.to_string(), format!("cannot parse: {e}")));
                        continue;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.problems.push((source.to_string(), e.to_string()));
                    continue;
                }
            },
            Source::Remote { host, path } => {
                let command = format!(
                    "if [ -f {p} ]; then cat {p}; else exit 3; fi",
                    p = crate::exec::ssh::sh_quote(path)
                );
                match execs.ssh.output(host, &command, None).await {
                    Ok((0, bytes, _)) => match parse_dotenv(&String::from_utf8_lossy(&bytes)) {
                        Ok(map) => map,
                        Err(e) => {
                            out.problems
                                .push((source.to_string(), format!("cannot parse: {e}")));
                            continue;
                        }
                    },
                    Ok((3, _, _)) => continue,
                    Ok((code, _, err)) => {
                        out.problems.push((
                            source.to_string(),
                            format!("cannot read it (exit {code}): {}", err.trim()),
                        ));
                        continue;
                    }
                    Err(e) => {
                        out.problems.push((source.to_string(), e.0));
                        continue;
                    }
                }
            }
        };
        for name in missing {
            if let Some(v) = map.get(name).filter(|v| !v.is_empty()) {
                values.insert(name.clone(), v.clone());
                out.found_in.insert(name.clone(), source.to_string());
            }
        }
    }
    out.values = Values { values };
    out
}

/// What a secret's check said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream accepted the value.
    Accepted,
    /// The upstream refused it: status and a short message.
    Rejected(String),
    /// The check could not be made (no connection, a missing input).
    Unchecked(String),
}

/// Runs a secret's HTTP check with the values found.
pub async fn check(
    execs: &crate::exec::Executors,
    templater: &crate::runbook::template::Templater,
    ctx: &crate::runbook::template::Context,
    spec: &crate::runbook::model::HttpSpec,
    values: &Values,
) -> Verdict {
    let redactor = values.redactor();
    let missing: Vec<String> = crate::plan::http_secret_refs(templater, spec)
        .into_iter()
        .filter(|n| values.get(n).is_none())
        .collect();
    if !missing.is_empty() {
        return Verdict::Unchecked(format!(
            "its check also needs {}, which {} missing",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        ));
    }
    let c = ctx.for_step("", &values.values);
    let request = match crate::plan::render_http(templater, &c, spec) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::Unchecked(
                redactor.redact(&format!("its check cannot be rendered: {}", e.message)),
            )
        }
    };
    let url = match &request.via {
        Some(host) => match execs.tunnel_url(host, &request.url).await {
            Ok(u) => u,
            Err(e) => return Verdict::Unchecked(e),
        },
        None => request.url.clone(),
    };
    match crate::exec::http::send(
        &execs.http,
        &request,
        &url,
        Some(std::time::Duration::from_secs(20)),
    )
    .await
    {
        Err(e) => Verdict::Unchecked(
            redactor.redact(&format!("{} {} failed: {e}", request.method, request.url)),
        ),
        Ok(response) => match crate::exec::http::unmet(&request.expect, &response) {
            None => Verdict::Accepted,
            Some(_) => Verdict::Rejected(redactor.redact(&format!(
                "{} {}",
                response.status,
                short_message(&response.body, &redactor)
            ))),
        },
    }
}

/// The upstream's own words from an error body: a JSON `message`/`error`,
/// or the first part of the text.
/// Redacted after decoding (JSON escapes could hide a value from the
/// redactor) and cut with `…`, so a value cut short is redacted too.
fn short_message(body: &str, redactor: &Redactor) -> String {
    const SHORT: usize = 120;
    let text = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|doc| {
            [
                "/message",
                "/error/message",
                "/error",
                "/errors/0/message",
                "/errors/0/msg",
                "/errors/0",
            ]
            .iter()
            .find_map(|p| doc.pointer(p).and_then(|v| v.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "));
    let text = redactor.redact(&text);
    if text.chars().count() > SHORT {
        redactor.redact(&format!(
            "{}…",
            text.chars().take(SHORT).collect::<String>()
        ))
    } else {
        text
    }
}
