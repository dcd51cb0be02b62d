//! The INI form of an Ansible inventory.

use super::{check_name, HostVars, Raw};

/// The INI dialect: `[group]`, `[group:vars]`, `[group:children]`, host
/// lines with `key=value` variables, `#`/`;` comments, `web[01:10]` ranges.
pub(super) fn parse_ini(text: &str) -> Result<Raw, String> {
    enum Section {
        Hosts(String),
        Vars(String),
        Children(String),
    }
    let mut raw = Raw::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    // Groups given a `[g]` or `[g:children]` section, and the lines that
    // name a group (`[g:vars]`, a child): Ansible refuses an undefined one.
    let mut defined: std::collections::HashSet<String> =
        ["all", "ungrouped"].map(String::from).into();
    let mut used: Vec<(usize, &str, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[') {
            // As Ansible: `[name]` or `[name:kind]`, then only a comment.
            let (head, after) = head
                .split_once(']')
                .ok_or_else(|| at(format!("`{line}` opens a section but has no `]`")))?;
            let after = after.trim();
            if !after.is_empty() && !after.starts_with('#') {
                return Err(at(format!(
                    "`{line}`: only a `#` comment may follow a section header"
                )));
            }
            let head = head.trim();
            section = match head.split_once(':') {
                None => Section::Hosts(head.to_string()),
                Some((g, "vars")) => Section::Vars(g.to_string()),
                Some((g, "children")) => Section::Children(g.to_string()),
                Some((_, other)) => {
                    return Err(at(format!(
                        "unknown section kind `:{other}` (use `:vars` or `:children`)"
                    )))
                }
            };
            match &section {
                Section::Hosts(g) | Section::Children(g) => {
                    defined.insert(g.clone());
                    raw.group(g)
                }
                Section::Vars(g) => used.push((n + 1, "vars", g.clone())),
            }
            check_name(head.split(':').next().unwrap_or(head)).map_err(at)?;
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = shlex::split(line)
                    .ok_or_else(|| at(format!("unbalanced quotes in {}", shown(line, line))))?;
                let Some((host, rest)) = words.split_first() else {
                    continue;
                };
                let mut vars = HostVars::default();
                // `web1:2222`: Ansible's host:port form (an IPv6 address,
                // with more colons, is left alone).
                let host = match host.rsplit_once(':') {
                    Some((name, port))
                        if !name.contains(':')
                            && !port.is_empty()
                            && port.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        vars.set("ansible_port", port).map_err(at)?;
                        name
                    }
                    _ => host.as_str(),
                };
                for word in rest {
                    let (k, v) = word.split_once('=').ok_or_else(|| {
                        at(format!(
                            "{} is not a `key=value` host variable (quote a value with spaces)",
                            shown(word, line)
                        ))
                    })?;
                    vars.set(k, v).map_err(at)?;
                }
                for host in expand_range(host).map_err(at)? {
                    check_name(&host).map_err(at)?;
                    raw.add_host(group, &host, vars.clone());
                }
            }
            Section::Vars(group) => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| at(format!("{} is not `key=value`", shown(line, line))))?;
                // As Ansible: the whole rest of the line, a quoted value
                // unquoted (`deploy user` stays two words).
                let v = unquote(v.trim());
                raw.vars
                    .entry(group.clone())
                    .or_default()
                    .set(k.trim(), &v)
                    .map_err(at)?;
            }
            Section::Children(group) => {
                check_name(line).map_err(at)?;
                used.push((n + 1, "children", line.to_string()));
                raw.group(line);
                raw.children
                    .entry(group.clone())
                    .or_default()
                    .push(line.to_string());
            }
        }
    }
    for (line, kind, group) in used {
        if !defined.contains(&group) {
            return Err(match kind {
                "vars" => format!("line {line}: `[{group}:vars]` is for a group that is never defined (Ansible refuses it too): add a `[{group}]` section"),
                _ => format!("line {line}: child group `{group}` is never defined (Ansible refuses it too): add a `[{group}]` section"),
            });
        }
    }
    Ok(raw)
}

/// A value as Ansible's `literal_eval` reads it: a quoted string or a
/// number, each with an optional `#` comment after it, gives the string or
/// the number; anything else is the text as it is (`deploy user`).
fn unquote(v: &str) -> String {
    let ends = |rest: &str| {
        let rest = rest.trim();
        rest.is_empty() || rest.starts_with('#')
    };
    for q in ['"', '\''] {
        if let Some(body) = v.strip_prefix(q) {
            if let Some((inner, rest)) = body.split_once(q) {
                if ends(rest) && !inner.contains('\\') {
                    return inner.to_string();
                }
            }
        }
    }
    match v.split_once('#') {
        Some((n, _)) if n.trim().parse::<i64>().is_ok() => n.trim().to_string(),
        _ => v.to_string(),
    }
}

/// An INI line, or a word of it, for an error message: the text in
/// backquotes, or, when the line may hold a password (it names a variable
/// with `pass` in it), only that it is not shown.
fn shown(text: &str, line: &str) -> String {
    if line.to_ascii_lowercase().contains("pass") {
        "a line that sets a password (not shown)".to_string()
    } else {
        format!("`{text}`")
    }
}

/// `web[01:03]` → web01, web02, web03; `db[a:c]` → dba, dbb, dbc.
pub(super) fn expand_range(host: &str) -> Result<Vec<String>, String> {
    let (Some(open), Some(close)) = (host.find('['), host.find(']')) else {
        return Ok(vec![host.to_string()]);
    };
    let bad = || format!("`{host}` is not a host range like `web[01:10]`");
    if close < open {
        return Err(bad());
    }
    let (head, tail) = (&host[..open], &host[close + 1..]);
    let (from, to) = host[open + 1..close].split_once(':').ok_or_else(bad)?;
    // `[01:20:2]`: every second host, as Ansible reads it.
    let (to, stride) = match to.split_once(':') {
        Some((to, stride)) => (to, stride.parse::<usize>().map_err(|_| bad())?),
        None => (to, 1),
    };
    if stride == 0 {
        return Err(bad());
    }
    let mut out = Vec::new();
    if let (Ok(a), Ok(b)) = (from.parse::<u64>(), to.parse::<u64>()) {
        if b < a || b - a > 100_000 {
            return Err(bad());
        }
        let width = if from.starts_with('0') { from.len() } else { 0 };
        for i in (a..=b).step_by(stride) {
            out.extend(expand_range(&format!("{head}{i:0width$}{tail}"))?);
            if out.len() > 100_000 {
                return Err(format!("`{host}` makes more than 100,000 hosts"));
            }
        }
    } else {
        let (a, b) = (from.chars().next(), to.chars().next());
        match (a, b) {
            (Some(a), Some(b)) if from.len() == 1 && to.len() == 1 && a <= b => {
                for c in (a..=b).step_by(stride) {
                    out.extend(expand_range(&format!("{head}{c}{tail}"))?);
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}
