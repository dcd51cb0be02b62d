//! Compose's interpolation of a dotenv value (compose-go's `template`
//! package): `$$`, `$NAME`, `${NAME}`, `${NAME:-d}`, `${NAME-d}`,
//! `${NAME:?e}`, `${NAME?e}`, `${NAME:+a}`, `${NAME+a}`; a name defined
//! nowhere is empty, as Compose renders an unset variable; `${` that starts
//! none of these is refused.

/// Looks a name up; `None` when it is not set.
pub(super) type Mapping<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What a `$` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found<'s> {
    /// `$$`.
    Escaped,
    /// `$NAME`.
    Named(&'s str),
    /// `${…}`, its text between the braces.
    Braced(&'s str),
    /// `${` that is none of the forms.
    Invalid,
}

fn is_start(c: &u8) -> bool {
    c.is_ascii_alphabetic() || *c == b'_'
}

fn name_end(b: &[u8], from: usize) -> usize {
    from + b[from..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count()
}

fn is_op(c: &u8) -> bool {
    matches!(c, b'-' | b'+' | b'?')
}

/// The next `$` form at or after `from`: its start, its end and what it is
/// (Compose's pattern, whose `${NAME<op>…}` reaches the last `}` of the line).
fn next_match(s: &str, from: usize) -> Option<(usize, usize, Found<'_>)> {
    let b = s.as_bytes();
    let mut i = from;
    while let Some(off) = s[i..].find('$') {
        let start = i + off;
        let n = start + 1;
        match b.get(n) {
            Some(b'$') => return Some((start, n + 1, Found::Escaped)),
            Some(c) if is_start(c) => {
                let e = name_end(b, n);
                return Some((start, e, Found::Named(&s[n..e])));
            }
            Some(b'{') => return Some(braced(s, start)),
            _ => i = n,
        }
    }
    None
}

/// `${…}` at `start`.
fn braced(s: &str, start: usize) -> (usize, usize, Found<'_>) {
    let b = s.as_bytes();
    let ns = start + 2;
    if b.get(ns).is_some_and(is_start) {
        let ne = name_end(b, ns);
        let op_len = match (b.get(ne), b.get(ne + 1)) {
            (Some(b':'), Some(c)) if is_op(c) => 2,
            (Some(c), _) if is_op(c) => 1,
            _ => 0,
        };
        if op_len > 0 {
            let tail = ne + op_len;
            let line_end = s[tail..].find('\n').map_or(s.len(), |k| tail + k);
            if let Some(k) = s[tail..line_end].rfind('}') {
                let end = tail + k + 1;
                return (start, end, Found::Braced(&s[ns..end - 1]));
            }
        }
        if b.get(ne) == Some(&b'}') {
            return (start, ne + 1, Found::Braced(&s[ns..ne]));
        }
    }
    (start, ns, Found::Invalid)
}

/// Where the `${` that starts `s` closes, counting nested braces as
/// Compose does (the byte after each `{` is skipped).
fn first_closing(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut open, mut i) = (0i32, 0);
    while i < b.len() {
        if b[i] == b'}' {
            open -= 1;
            if open == 0 {
                return Some(i);
            }
        }
        if b[i] == b'{' {
            open += 1;
            i += 1;
        }
        i += 1;
    }
    None
}

/// `template` with every form replaced; the first refusal if any.
pub(super) fn substitute(template: &str, mapping: Mapping<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let (mut last, mut first_err) = (0, None);
    while let Some((start, end, found)) = next_match(template, last) {
        out.push_str(&template[last..start]);
        match replace(&template[start..end], found, mapping) {
            Ok(v) => out.push_str(&v),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        last = end;
    }
    out.push_str(&template[last..]);
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

const INVALID: &str = "an interpolation `${` that is not `${NAME}`, `${NAME:-default}`, \
`${NAME-default}`, `${NAME:?error}`, `${NAME?error}`, `${NAME:+alt}` or `${NAME+alt}` \
(write `$$` for a literal `$`)";

fn replace(sub: &str, found: Found<'_>, mapping: Mapping<'_>) -> Result<String, String> {
    match found {
        Found::Escaped => Ok("$".to_string()),
        Found::Named(name) => Ok(mapping(name).unwrap_or_default()),
        Found::Invalid => Err(INVALID.to_string()),
        Found::Braced(_) => {
            let (cut, rest) = match first_closing(sub) {
                Some(i) => (&sub[..=i], &sub[i + 1..]),
                None => (sub, ""),
            };
            let Some((0, _, Found::Braced(inner))) = next_match(cut, 0) else {
                return Err(INVALID.to_string());
            };
            match apply(inner, mapping)? {
                Some(value) => Ok(value + &substitute(rest, mapping)?),
                None => Ok(mapping(inner).unwrap_or_default()),
            }
        }
    }
}

/// The operator form of `inner` (`NAME:-d` and the rest); `None` for a
/// bare `NAME`.
fn apply(inner: &str, mapping: Mapping<'_>) -> Result<Option<String>, String> {
    let name_len = name_end(inner.as_bytes(), 0);
    let after = &inner[name_len..];
    let sep = [":?", "?", ":-", "-", ":+", "+"]
        .into_iter()
        .find(|s| after.starts_with(s));
    let Some(sep) = sep else { return Ok(None) };
    let name = &inner[..name_len];
    let word = &after[sep.len()..];
    let value = mapping(name);
    let empty = value.as_deref().is_none_or(str::is_empty);
    Ok(Some(match sep {
        ":?" | "?" if value.is_none() || (sep == ":?" && empty) => {
            let reason = substitute(word, mapping)?;
            return Err(if reason.is_empty() {
                format!("required variable {name} is missing a value")
            } else {
                format!("required variable {name} is missing a value: {reason}")
            });
        }
        ":-" | "-" if value.is_none() || (sep == ":-" && empty) => substitute(word, mapping)?,
        ":+" | "+" if value.is_some() && (sep == "+" || !empty) => substitute(word, mapping)?,
        _ => value.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(t: &str) -> Result<String, String> {
        let m = |k: &str| match k {
            "A" => Some("1".to_string()),
            "E" => Some(String::new()),
            _ => None,
        };
        substitute(t, &m)
    }

    #[test]
    fn forms() {
        assert_eq!(sub("$A_x").unwrap(), "");
        assert_eq!(sub("${A}_x").unwrap(), "1_x");
        assert_eq!(sub("${A:-2}_${A}").unwrap(), "1_1");
        assert_eq!(sub("${E:-d}|${E-d}|${U-d}").unwrap(), "d||d");
        assert_eq!(sub("${E:+a}|${E+a}|${A:+a}").unwrap(), "|a|a");
        assert_eq!(sub("${U:-${A}x}").unwrap(), "1x");
        assert_eq!(sub("$$A $1 $").unwrap(), "$A $1 $");
        assert!(sub("${1}").is_err());
        assert!(sub("${A:x}").is_err());
        assert!(sub("${E:?why}").unwrap_err().contains("why"));
        assert_eq!(sub("${E?why}").unwrap(), "");
    }
}
