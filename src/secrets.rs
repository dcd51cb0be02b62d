//! Secrets: where values are looked up, and redaction of every captured line
//! (SPEC §7). Values live only in memory.

use std::collections::BTreeMap;

/// Shortest value that is redacted; shorter ones would mangle ordinary text.
const MIN_REDACTED_LEN: usize = 3;

/// Replaces secret values with `[REDACTED:NAME]`.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// (value, marker), longest value first so a value containing another wins.
    values: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor for the given name → value pairs.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut values: Vec<(String, String)> = secrets
            .into_iter()
            .filter(|(_, v)| v.len() >= MIN_REDACTED_LEN)
            .map(|(n, v)| (v.to_string(), format!("[REDACTED:{n}]")))
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
        values.dedup_by(|a, b| a.0 == b.0);
        Redactor { values }
    }

    /// The text with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, marker) in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), marker);
            }
        }
        out
    }
}

/// Values found, by name, from the sources in order (first non-empty wins).
#[derive(Debug, Default, Clone)]
pub struct Values {
    values: BTreeMap<String, String>,
}

impl Values {
    /// Looks up each wanted name in the environment, then in each dotenv
    /// map in order. Empty values count as missing.
    pub fn resolve<'a>(
        wanted: impl IntoIterator<Item = &'a str>,
        files: &[BTreeMap<String, String>],
    ) -> Values {
        let mut values = BTreeMap::new();
        for name in wanted {
            let from_env = std::env::var(name).ok().filter(|v| !v.is_empty());
            let found = from_env.or_else(|| {
                files
                    .iter()
                    .find_map(|f| f.get(name).filter(|v| !v.is_empty()).cloned())
            });
            if let Some(v) = found {
                values.insert(name.to_string(), v);
            }
        }
        Values { values }
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
    fn dotenv_parses_quotes() {
        let m = parse_dotenv("A=1\nB=\"two words\"\n# c\nexport C='x'\n").unwrap();
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
    }
}
