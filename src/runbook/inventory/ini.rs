//! The INI form of an Ansible inventory.

use super::{check_name, HostVars, Raw};

/// The INI dialect: `[group]`, `[group:vars]`, `[group:children]`, host
/// lines with `key=value` variables, `#`/`;` comments, `web[01:10]` ranges.
pub(super) fn parse_ini(text: &str) -> Result<Raw, String> {
    let mut parser = Parser {
        raw: Raw::default(),
        section: Section::Hosts("ungrouped".to_string()),
        defined: ["all", "ungrouped"].map(String::from).into(),
        used: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        match line.strip_prefix('[') {
            Some(head) => parser.header(n + 1, line, head).map_err(at)?,
            None => parser.line(n + 1, line).map_err(at)?,
        }
    }
    parser.finish()
}

/// The kind of section a line is in, and its group.
enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// An INI inventory read so far.
struct Parser {
    raw: Raw,
    section: Section,
    /// Groups given a `[g]` or `[g:children]` section.
    defined: std::collections::HashSet<String>,
    /// The lines that name a group (`[g:vars]`, a child), as (line, kind,
    /// group): Ansible refuses an undefined one.
    used: Vec<(usize, &'static str, String)>,
}

impl Parser {
    /// A section header, `[name]` or `[name:kind]`, then only a comment
    /// (as Ansible reads it); `head` is what follows the `[`.
    fn header(&mut self, n: usize, line: &str, head: &str) -> Result<(), String> {
        let (head, after) = head
            .split_once(']')
            .ok_or_else(|| format!("`{line}` opens a section but has no `]`"))?;
        let after = after.trim();
        if !after.is_empty() && !after.starts_with('#') {
            return Err(format!(
                "`{line}`: only a `#` comment may follow a section header"
            ));
        }
        let head = head.trim();
        self.section = match head.split_once(':') {
            None => Section::Hosts(head.to_string()),
            Some((g, "vars")) => Section::Vars(g.to_string()),
            Some((g, "children")) => Section::Children(g.to_string()),
            Some((_, other)) => {
                return Err(format!(
                    "unknown section kind `:{other}` (use `:vars` or `:children`)"
                ))
            }
        };
        match &self.section {
            Section::Hosts(g) | Section::Children(g) => {
                self.defined.insert(g.clone());
                self.raw.group(g)
            }
            Section::Vars(g) => self.used.push((n, "vars", g.clone())),
        }
        check_name(head.split(':').next().unwrap_or(head))
    }

    /// A line inside the current section.
    fn line(&mut self, n: usize, line: &str) -> Result<(), String> {
        match &self.section {
            Section::Hosts(group) => {
                let group = group.clone();
                self.host_line(&group, line)
            }
            Section::Vars(group) => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| format!("{} is not `key=value`", shown(line, line)))?;
                // As Ansible: the whole rest of the line, a quoted value
                // unquoted (`deploy user` stays two words).
                let v = unquote(v.trim());
                let vars = self.raw.vars.entry(group.clone()).or_default();
                vars.set(k.trim(), &v)
            }
            Section::Children(group) => {
                check_name(line)?;
                let group = group.clone();
                self.used.push((n, "children", line.to_string()));
                self.raw.group(line);
                let children = self.raw.children.entry(group).or_default();
                children.push(line.to_string());
                Ok(())
            }
        }
    }

    /// A host line: a name (or a range of names, or `name:port`) and its
    /// `key=value` variables.
    fn host_line(&mut self, group: &str, line: &str) -> Result<(), String> {
        let words = shlex::split(line)
            .ok_or_else(|| format!("unbalanced quotes in {}", shown(line, line)))?;
        let Some((host, rest)) = words.split_first() else {
            return Ok(());
        };
        let mut vars = HostVars::default();
        // `web1:2222`: Ansible's host:port form (an IPv6 address, with more
        // colons, is left alone).
        let host = match host.rsplit_once(':') {
            Some((name, port))
                if !name.contains(':')
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                vars.set("ansible_port", port)?;
                name
            }
            _ => host.as_str(),
        };
        for word in rest {
            let (k, v) = word.split_once('=').ok_or_else(|| {
                format!(
                    "{} is not a `key=value` host variable (quote a value with spaces)",
                    shown(word, line)
                )
            })?;
            vars.set(k, v)?;
        }
        for host in expand_range(host)? {
            check_name(&host)?;
            self.raw.add_host(group, &host, vars.clone());
        }
        Ok(())
    }

    /// The inventory, once every group a line names is known to be defined.
    fn finish(self) -> Result<Raw, String> {
        for (line, kind, group) in self.used {
            if !self.defined.contains(&group) {
                return Err(match kind {
                    "vars" => format!("line {line}: `[{group}:vars]` is for a group that is never defined (Ansible refuses it too): add a `[{group}]` section"),
                    _ => format!("line {line}: child group `{group}` is never defined (Ansible refuses it too): add a `[{group}]` section"),
                });
            }
        }
        Ok(self.raw)
    }
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
