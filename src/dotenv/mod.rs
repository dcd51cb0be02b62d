//! Dotenv files read as Docker Compose v2 reads them (compose-go's `dotenv`
//! package and its `template` interpolation): the same values, the same
//! quoting, escapes, comments and `${…}` forms, and the same refusals. No
//! crate reads `.env` this way (dotenvy differs on interpolation, escapes,
//! comments and the lines it refuses), so the rules are written here from
//! compose-go's, one by one; tests/conformance/dotenv holds cases checked
//! against the real `docker compose`.
//!
//! A refusal names the file and the line and never quotes a value.

use std::collections::BTreeMap;

mod interpolate;

/// Where names that a file interpolates are looked up before the file's own
/// earlier lines (Compose: the process environment first).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads `text` (a dotenv file called `file` in messages) as Compose does.
/// `environment` is consulted first for every `$NAME` and every bare `NAME`
/// line; `None` looks names up in the file's own earlier lines only (a file
/// read on a host). An error is `file:line: what is wrong`.
pub fn parse(
    text: &str,
    file: &str,
    environment: Option<Lookup<'_>>,
) -> Result<BTreeMap<String, String>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let none = |_: &str| None;
    let mut p = Parser {
        line: 1,
        env: environment.unwrap_or(&none),
    };
    let mut out = BTreeMap::new();
    p.parse(text, &mut out).map_err(|(line, what)| {
        format!("{file}:{line}: {what} (Docker Compose refuses this file too)")
    })?;
    Ok(out)
}

/// Reads a local file's text with the process environment consulted first.
pub fn parse_local(text: &str, file: &str) -> Result<BTreeMap<String, String>, String> {
    parse(text, file, Some(&|k: &str| std::env::var(k).ok()))
}

/// A refusal: the line it is on and what is wrong.
type Refusal = (usize, String);

struct Parser<'e> {
    line: usize,
    env: Lookup<'e>,
}

/// Compose's `isSpace`: blanks other than the line break.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

impl Parser<'_> {
    fn parse(&mut self, src: &str, out: &mut BTreeMap<String, String>) -> Result<(), Refusal> {
        let mut cut = src;
        while let Some(start) = self.statement_start(cut) {
            let at = self.line;
            let (key, left, inherited) = self.key_name(start)?;
            if key.contains(' ') {
                return Err((at, format!("the name `{key}` contains a space")));
            }
            if inherited {
                if let Some(v) = self.resolve(out, key) {
                    out.insert(key.to_string(), v);
                }
                cut = left;
                continue;
            }
            if key.is_empty() {
                // Compose puts the file into its environment, which takes
                // no empty name (`setenv: invalid argument`).
                return Err((
                    at,
                    "a value without a name (a line `=…`, or a last line with no `=` and no newline)"
                        .to_string(),
                ));
            }
            let (value, left) = self.value(left, out, at, key)?;
            out.insert(key.to_string(), value);
            cut = left;
        }
        Ok(())
    }

    /// A name's value: the environment first, then the file's earlier lines.
    fn resolve(&self, out: &BTreeMap<String, String>, name: &str) -> Option<String> {
        (self.env)(name).or_else(|| out.get(name).cloned())
    }

    /// Skips blanks (counting lines) and comment lines; `None` at the end.
    fn statement_start<'s>(&mut self, mut src: &'s str) -> Option<&'s str> {
        loop {
            let mut pos = None;
            for (i, c) in src.char_indices() {
                if c == '\n' {
                    self.line += 1;
                }
                if !c.is_whitespace() {
                    pos = Some(i);
                    break;
                }
            }
            src = &src[pos?..];
            if !src.starts_with('#') {
                return Some(src);
            }
            src = &src[src.find('\n')?..];
        }
    }

    /// The name of a statement, the rest after its `=`/`:`, and whether it
    /// is a bare name (a line `NAME` takes the environment's value).
    fn key_name<'s>(&mut self, mut src: &'s str) -> Result<(&'s str, &'s str, bool), Refusal> {
        if let Some(rest) = src.strip_prefix("export") {
            if rest.starts_with(['\t', '\n', '\u{c}', '\r', ' ']) {
                src = rest.trim_start_matches(is_space);
            }
        }
        let (mut key, mut offset, mut inherited) = ("", 0, false);
        for (i, c) in src.char_indices() {
            if is_space(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    key = &src[..i];
                    offset = i + 1;
                    inherited = c == '\n';
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphabetic() || c.is_numeric() => {}
                c => {
                    return Err((
                        self.line,
                        format!(
                            "unexpected character {c:?} in the variable name `{}`",
                            &src[..i + c.len_utf8()]
                        ),
                    ))
                }
            }
        }
        if src.is_empty() {
            return Err((self.line, "`export` without a name".to_string()));
        }
        if inherited && !key.contains(' ') {
            self.line += 1;
        }
        Ok((
            key.trim_end(),
            src[offset..].trim_start_matches(is_space),
            inherited,
        ))
    }

    /// A value (quoted or not) and the rest of the text after it.
    fn value<'s>(
        &mut self,
        src: &'s str,
        out: &BTreeMap<String, String>,
        at: usize,
        key: &str,
    ) -> Result<(String, &'s str), Refusal> {
        let quote = match src.as_bytes().first() {
            Some(q @ (b'"' | b'\'')) => *q,
            _ => {
                let (value, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = value.split(" #").next().unwrap_or("").trim_end();
                let v = self
                    .expand(value, out)
                    .map_err(|e| (at, format!("{key}: {e}")))?;
                return Ok((v, rest));
            }
        };
        let bytes = src.as_bytes();
        let mut chars: Vec<u8> = Vec::new();
        let mut escaped = false;
        for (i, &c) in bytes.iter().enumerate().skip(1) {
            if c == b'\n' {
                self.line += 1;
            }
            if c != quote {
                if !escaped && c == b'\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push(b'\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            // Only ASCII bytes were dropped, so the rest is still UTF-8.
            let mut value = String::from_utf8_lossy(&chars).into_owned();
            if quote == b'"' {
                value = self
                    .expand(&unescape(&value), out)
                    .map_err(|e| (at, format!("{key}: {e}")))?;
            }
            return Ok((value, &src[i + 1..]));
        }
        let q = quote as char;
        Err((
            at,
            format!("the value of {key} opens a {q} quote that is never closed"),
        ))
    }

    /// Compose's interpolation of a value.
    fn expand(&self, value: &str, out: &BTreeMap<String, String>) -> Result<String, String> {
        let mapping = |name: &str| self.resolve(out, name);
        interpolate::substitute(value, &mapping)
    }
}

/// The escapes of a double-quoted value (`\n`, `\t`, `\\`, `\"`, `\$`,
/// octal `\0NNN`, …); any other backslash stays as it is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(n) = after.chars().next() else {
            out.push('\\');
            rest = after;
            break;
        };
        let simple = match n {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '$' => Some("$$"),
            '"' => Some("\""),
            '\\' => Some("\\"),
            'c' => Some("\\c"),
            _ => None,
        };
        if let Some(text) = simple {
            out.push_str(text);
            rest = &after[1..];
        } else if n == '0' {
            let digits: String = after[1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .take(3)
                .collect();
            let octal = (digits.len() == 3)
                .then(|| u32::from_str_radix(&digits, 8).ok())
                .flatten()
                .filter(|v| *v <= 255)
                .and_then(char::from_u32);
            match octal {
                Some(c) => out.push(c),
                None => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
            rest = &after[1 + digits.len()..];
        } else {
            out.push('\\');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> BTreeMap<String, String> {
        parse(text, ".env", None).unwrap()
    }

    #[test]
    fn values_as_compose_reads_them() {
        let m =
            read("A=1\nB=$A\nC=${A:-1}_${B}\nD=a b #c\nE=\"x#y\"#z\nF=b\t#c\nG=\\n\nH=\"a\\tb\"\n");
        assert_eq!(m["B"], "1");
        assert_eq!(m["C"], "1_1");
        assert_eq!(m["D"], "a b");
        assert_eq!(m["E"], "x#y");
        assert_eq!(m["F"], "b\t#c");
        assert_eq!(m["G"], "\\n");
        assert_eq!(m["H"], "a\tb");
    }

    #[test]
    fn refusals_name_the_line_and_never_the_value() {
        let e = parse("A=1\n\nB=\"secret-value\n", "x.env", None).unwrap_err();
        assert!(e.starts_with("x.env:3: "), "{e}");
        assert!(!e.contains("secret-value"), "{e}");
        let e = parse("A=1\nB C=2\n", "x.env", None).unwrap_err();
        assert!(e.starts_with("x.env:2: "), "{e}");
        let e = parse("A=${NOPE:?needed}\n", "x.env", None).unwrap_err();
        assert!(e.contains("NOPE") && e.contains("needed"), "{e}");
    }

    #[test]
    fn the_environment_comes_first_when_given() {
        let env = |k: &str| (k == "X").then(|| "env".to_string());
        let m = parse("X=file\nY=$X\nX\n", "f", Some(&env)).unwrap();
        assert_eq!(m["Y"], "env");
        let m = parse("X=file\nY=$X\n", "f", None).unwrap();
        assert_eq!(m["Y"], "file");
    }

    #[test]
    fn octal_and_unknown_escapes() {
        assert_eq!(unescape("\\0123\\c\\x\\01"), "S\\c\\x\\1");
    }
}
