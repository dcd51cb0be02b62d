//! Ansible inventories (INI and YAML) read as hosts, groups and the host
//! variables `ansible_host`, `ansible_port`, `ansible_user` and
//! `ansible_ssh_private_key_file`, so an operator's inventory works
//! unchanged. No maintained Rust crate reads Ansible's INI dialect (host
//! lines with `key=value` variables, `[g:children]`, `[g:vars]`, ranges),
//! so it is read here; YAML goes through serde_norway like the runbook.

use indexmap::IndexMap;

/// The connection variables of one inventory host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostVars {
    /// `ansible_host`: the address; the inventory name when unset.
    pub address: Option<String>,
    /// `ansible_port`.
    pub port: Option<String>,
    /// `ansible_user`.
    pub user: Option<String>,
    /// `ansible_ssh_private_key_file`.
    pub identity_file: Option<String>,
    /// Connection variables runbook does not apply, by name: what it would
    /// show for each (`None` when a closer level set it back to plain ssh).
    /// runbook connects with plain ssh and the user's ssh config, so a host
    /// that Ansible reaches another way is refused where a step uses it,
    /// never reached by a different road in silence.
    pub unsupported: std::collections::BTreeMap<String, Option<String>>,
}

impl HostVars {
    /// Sets a connection variable. A value that starts with `-` is refused:
    /// ssh would read the address, user or key file as one of its options
    /// (`ansible_host=-oProxyCommand=...`).
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let known = [
            "ansible_host",
            "ansible_ssh_host",
            "ansible_port",
            "ansible_ssh_port",
            "ansible_user",
            "ansible_ssh_user",
            "ansible_ssh_private_key_file",
            "ansible_private_key_file",
        ];
        if known.contains(&key) && value.trim_start().starts_with('-') {
            return Err(format!(
                "`{key}` starts with `-`, which ssh would read as an option; write the host's real value"
            ));
        }
        let plain = value.trim();
        match key {
            "ansible_connection" => {
                // Also by the plugin's full name (`ansible.builtin.ssh`).
                let name = plain
                    .strip_prefix("ansible.builtin.")
                    .or_else(|| plain.strip_prefix("ansible.legacy."))
                    .unwrap_or(plain);
                let ssh = matches!(name, "ssh" | "smart" | "paramiko" | "paramiko_ssh");
                let shown = (!ssh).then(|| format!("`ansible_connection={plain}`"));
                self.unsupported.insert(key.to_string(), shown);
            }
            "ansible_ssh_common_args" | "ansible_ssh_extra_args" | "ansible_ssh_args" => {
                let shown = (!plain.is_empty()).then(|| format!("`{key}` (extra ssh options)"));
                self.unsupported.insert(key.to_string(), shown);
            }
            "ansible_password" | "ansible_ssh_pass" | "ansible_ssh_password" => {
                // Never the value: it is a password.
                let shown = (!plain.is_empty()).then(|| format!("`{key}` (password login)"));
                self.unsupported.insert(key.to_string(), shown);
            }
            _ => {}
        }
        let value = Some(value.to_string());
        match key {
            "ansible_host" | "ansible_ssh_host" => self.address = value,
            "ansible_port" | "ansible_ssh_port" => self.port = value,
            "ansible_user" | "ansible_ssh_user" => self.user = value,
            "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
                self.identity_file = value
            }
            _ => {}
        }
        Ok(())
    }

    /// `self` with what `other` sets on top.
    fn overlay(&self, other: &HostVars) -> HostVars {
        HostVars {
            address: other.address.clone().or_else(|| self.address.clone()),
            port: other.port.clone().or_else(|| self.port.clone()),
            user: other.user.clone().or_else(|| self.user.clone()),
            identity_file: other
                .identity_file
                .clone()
                .or_else(|| self.identity_file.clone()),
            unsupported: {
                let mut merged = self.unsupported.clone();
                merged.extend(other.unsupported.clone());
                merged
            },
        }
    }

    /// What this host sets that runbook does not apply, if anything.
    pub fn refused(&self) -> Option<String> {
        let shown: Vec<&str> = self
            .unsupported
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        (!shown.is_empty()).then(|| shown.join(", "))
    }
}

/// An inventory: hosts with their variables, and groups as host lists
/// (children already folded in).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Hosts in the order they first appear, with group variables applied.
    pub hosts: IndexMap<String, HostVars>,
    /// Group → its hosts, children included, in order.
    pub groups: IndexMap<String, Vec<String>>,
}

/// What is being read, before children and variables are resolved.
#[derive(Default)]
struct Raw {
    hosts: IndexMap<String, HostVars>,
    members: IndexMap<String, Vec<String>>,
    children: IndexMap<String, Vec<String>>,
    vars: IndexMap<String, HostVars>,
}

impl Raw {
    fn group(&mut self, name: &str) {
        self.members.entry(name.to_string()).or_default();
    }

    fn add_host(&mut self, group: &str, host: &str, vars: HostVars) {
        let entry = self.hosts.entry(host.to_string()).or_default();
        *entry = entry.overlay(&vars);
        let members = self.members.entry(group.to_string()).or_default();
        if !members.iter().any(|h| h == host) {
            members.push(host.to_string());
        }
    }

    /// Folds children into their parents and applies group variables
    /// (`all`'s first, then each group's, then the host's own).
    fn resolve(mut self) -> Result<Inventory, String> {
        let names: Vec<String> = self
            .members
            .keys()
            .chain(self.children.keys())
            .cloned()
            .collect();
        for name in &names {
            self.group(name);
        }
        let mut groups = IndexMap::new();
        for name in self.members.keys() {
            let mut out = Vec::new();
            let mut path = Vec::new();
            self.collect(name, &mut out, &mut path)?;
            groups.insert(name.clone(), out);
        }
        let mut all: Vec<String> = self.hosts.keys().cloned().collect();
        all.dedup();
        groups.insert("all".to_string(), all);
        // As Ansible: a child group's vars win over its parent's (deeper
        // groups apply later), groups of one depth in name order.
        let mut order: Vec<(usize, &String)> = groups
            .keys()
            .filter(|g| *g != "all")
            .map(|g| (self.depth(g, 0), g))
            .collect();
        order.sort();
        let mut hosts = IndexMap::new();
        for (host, own) in &self.hosts {
            let mut vars = self.vars.get("all").cloned().unwrap_or_default();
            for (_, group) in &order {
                let (group, members) = (*group, &groups[*group]);
                if members.contains(host) {
                    if let Some(gv) = self.vars.get(group) {
                        vars = vars.overlay(gv);
                    }
                }
            }
            hosts.insert(host.clone(), vars.overlay(own));
        }
        Ok(Inventory { hosts, groups })
    }

    /// How many `children` links lie above a group (its longest path from
    /// a group that is no one's child). Cycles are refused before this.
    fn depth(&self, group: &str, seen: usize) -> usize {
        if seen > self.children.len() {
            return seen;
        }
        self.children
            .iter()
            .filter(|(_, kids)| kids.iter().any(|k| k == group))
            .map(|(parent, _)| {
                if parent == "all" {
                    1
                } else {
                    1 + self.depth(parent, seen + 1)
                }
            })
            .max()
            .unwrap_or(0)
    }

    fn collect(
        &self,
        group: &str,
        out: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        if path.iter().any(|p| p == group) {
            return Err(format!(
                "groups `{}` contain each other through `children`",
                path.join("` → `")
            ));
        }
        path.push(group.to_string());
        for host in self.members.get(group).into_iter().flatten() {
            if !out.contains(host) {
                out.push(host.clone());
            }
        }
        for child in self.children.get(group).into_iter().flatten() {
            self.collect(child, out, path)?;
        }
        path.pop();
        Ok(())
    }
}

/// Reads an inventory's text: YAML when the file is `.yml`/`.yaml` or its
/// text is a YAML mapping, INI otherwise. The error says where.
pub fn parse(name: &str, text: &str) -> Result<Inventory, String> {
    let yaml = name.ends_with(".yml")
        || name.ends_with(".yaml")
        || text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .is_some_and(|l| l.ends_with(':') || l == "---");
    if yaml {
        parse_yaml(text)
    } else {
        parse_ini(text)
    }
}

/// The INI dialect: `[group]`, `[group:vars]`, `[group:children]`, host
/// lines with `key=value` variables, `#`/`;` comments, `web[01:10]` ranges.
fn parse_ini(text: &str) -> Result<Inventory, String> {
    enum Section {
        Hosts(String),
        Vars(String),
        Children(String),
    }
    let mut raw = Raw::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[') {
            let head = head
                .strip_suffix(']')
                .ok_or_else(|| at(format!("`{line}` opens a section but has no `]`")))?
                .trim();
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
                Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => raw.group(g),
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
                        vars.port = Some(port.to_string());
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
                let v = v.trim();
                let v = shlex::split(v)
                    .and_then(|w| w.into_iter().next())
                    .unwrap_or_else(|| v.to_string());
                raw.vars
                    .entry(group.clone())
                    .or_default()
                    .set(k.trim(), &v)
                    .map_err(at)?;
            }
            Section::Children(group) => {
                check_name(line).map_err(at)?;
                raw.group(line);
                raw.children
                    .entry(group.clone())
                    .or_default()
                    .push(line.to_string());
            }
        }
    }
    raw.resolve()
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
fn expand_range(host: &str) -> Result<Vec<String>, String> {
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

/// Host and group names: letters, digits, `.`, `_`, `-` and `:` (IPv6),
/// not starting with `-`. A name reaches ssh as the address when there is
/// no `ansible_host`, and templates as `step.host`, so nothing a shell or
/// ssh would read more into (`$(...)`, `;`, quotes, a leading `-`).
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if !ok {
        return Err(format!(
            "`{name}` is not a usable host or group name (letters, digits, `.`, `_`, `-` and `:`, not starting with `-`)"
        ));
    }
    Ok(())
}

/// The YAML form: top-level groups (usually `all`), each with `hosts`
/// (name → variables), `vars` and `children` (name → group).
fn parse_yaml(text: &str) -> Result<Inventory, String> {
    use serde_norway::Value;
    let doc: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut raw = Raw::default();
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            // `!vault |` and other tags: the tagged value (an encrypted
            // password is still a password login).
            Value::Tagged(t) => scalar(&t.value),
            _ => None,
        }
    }
    fn vars_of(v: &Value) -> Result<HostVars, String> {
        let mut vars = HostVars::default();
        if let Value::Mapping(map) = v {
            for (k, v) in map {
                if let (Some(k), Some(v)) = (k.as_str(), scalar(v)) {
                    vars.set(k, &v)?;
                }
            }
        }
        Ok(vars)
    }
    fn group(raw: &mut Raw, name: &str, body: &Value) -> Result<(), String> {
        check_name(name)?;
        raw.group(name);
        let map = match body {
            Value::Mapping(m) => m,
            Value::Null => return Ok(()),
            _ => {
                return Err(format!(
                    "group `{name}` is not a mapping of hosts, vars and children"
                ))
            }
        };
        for (key, value) in map {
            match key.as_str() {
                Some("hosts") => {
                    if let Value::Mapping(hosts) = value {
                        for (h, v) in hosts {
                            let h = scalar(h).ok_or_else(|| {
                                format!("group `{name}`: a host name is not text")
                            })?;
                            for host in expand_range(&h)? {
                                check_name(&host)?;
                                raw.add_host(name, &host, vars_of(v)?);
                            }
                        }
                    } else if !matches!(value, Value::Null) {
                        return Err(format!("group `{name}`: `hosts` is not a mapping"));
                    }
                }
                Some("vars") => {
                    let vars = vars_of(value)?;
                    let entry = raw.vars.entry(name.to_string()).or_default();
                    *entry = entry.overlay(&vars);
                }
                Some("children") => {
                    if let Value::Mapping(children) = value {
                        for (c, body) in children {
                            let c = scalar(c).ok_or_else(|| {
                                format!("group `{name}`: a child group name is not text")
                            })?;
                            raw.children
                                .entry(name.to_string())
                                .or_default()
                                .push(c.clone());
                            group(raw, &c, body)?;
                        }
                    } else if !matches!(value, Value::Null) {
                        return Err(format!("group `{name}`: `children` is not a mapping"));
                    }
                }
                other => {
                    return Err(format!(
                        "group `{name}`: unknown key `{}` (a group has hosts, vars and children)",
                        other.unwrap_or("?")
                    ))
                }
            }
        }
        Ok(())
    }
    match &doc {
        Value::Mapping(top) => {
            for (name, body) in top {
                let name = scalar(name).ok_or("a top-level group name is not text")?;
                group(&mut raw, &name, body)?;
            }
        }
        Value::Null => {}
        _ => return Err("the inventory is not a mapping of groups (e.g. `all:`)".into()),
    }
    raw.resolve()
}

/// Whether `name` matches a glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether a name contains glob characters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_hosts_groups_children_vars_and_ranges() {
        let inv = parse(
            "hosts",
            "lone ansible_host=10.0.0.9\n[web]\nweb[1:2] ansible_port=2201\n[db]\ndb1 ansible_host=10.0.0.20 ansible_user='pg admin'\n[prod:children]\nweb\ndb\n[prod:vars]\nansible_user=deploy\nansible_ssh_private_key_file=~/.ssh/k\n",
        )
        .unwrap();
        assert_eq!(inv.groups["web"], ["web1", "web2"]);
        assert_eq!(inv.groups["prod"], ["web1", "web2", "db1"]);
        assert_eq!(inv.groups["ungrouped"], ["lone"]);
        assert_eq!(inv.groups["all"].len(), 4);
        assert_eq!(inv.hosts["web1"].user.as_deref(), Some("deploy"));
        assert_eq!(inv.hosts["web2"].port.as_deref(), Some("2201"));
        assert_eq!(inv.hosts["db1"].user.as_deref(), Some("pg admin"));
        assert_eq!(inv.hosts["lone"].user, None);
        assert_eq!(inv.hosts["db1"].identity_file.as_deref(), Some("~/.ssh/k"));
    }

    #[test]
    fn ssh_by_its_full_plugin_name_is_plain_ssh() {
        let inv = parse(
            "i.ini",
            "a ansible_connection=ansible.builtin.ssh\nb ansible_connection=ansible.legacy.ssh\nc ansible_connection=ansible.builtin.local\n",
        )
        .unwrap();
        assert_eq!(inv.hosts["a"].refused(), None);
        assert_eq!(inv.hosts["b"].refused(), None);
        assert_eq!(
            inv.hosts["c"].refused().as_deref(),
            Some("`ansible_connection=ansible.builtin.local`")
        );
    }

    #[test]
    fn yaml_inventory() {
        let inv = parse(
            "inv.yml",
            "all:\n  vars: { ansible_user: ops }\n  hosts:\n    solo: { ansible_host: 10.1.1.1 }\n  children:\n    web:\n      hosts:\n        web01: { ansible_host: 10.0.0.1, ansible_port: 2222 }\n        web02:\n    db:\n      hosts: { db01: }\n      vars: { ansible_user: postgres }\n",
        )
        .unwrap();
        assert_eq!(inv.groups["web"], ["web01", "web02"]);
        assert_eq!(inv.groups["all"], ["solo", "web01", "web02", "db01"]);
        assert_eq!(inv.hosts["web01"].port.as_deref(), Some("2222"));
        assert_eq!(inv.hosts["web02"].user.as_deref(), Some("ops"));
        assert_eq!(inv.hosts["db01"].user.as_deref(), Some("postgres"));
    }

    #[test]
    fn bad_inventories_say_where() {
        let e = parse("hosts", "[web\nweb1\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
        let e = parse("hosts", "[web]\nweb1 port\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("key=value"), "{e}");
        let e = parse("hosts", "[a:children]\nb\n[b:children]\na\n").unwrap_err();
        assert!(e.contains("contain each other"), "{e}");
        assert!(parse("x.yml", "all: [1, 2]\n").is_err());
    }

    #[test]
    fn a_range_with_a_stride_takes_every_nth_host() {
        let inv = parse("hosts", "[web]\nweb[01:06:2]\n").unwrap();
        assert_eq!(inv.groups["web"], ["web01", "web03", "web05"]);
        assert!(parse("hosts", "[web]\nweb[1:6:0]\n").is_err());
        // Two ranges in one name multiply: bounded, not a hang.
        let e = parse("hosts", "[web]\nw[0:99999]x[0:99999]\n").unwrap_err();
        assert!(e.contains("100,000"), "{e}");
    }

    #[test]
    fn a_host_variable_that_would_read_as_an_ssh_option_is_refused() {
        for line in [
            "h1 ansible_host=-oProxyCommand=touch/tmp/x",
            "h1 ansible_user=-oProxyCommand=x",
            "h1 ansible_ssh_private_key_file=-F/tmp/cfg",
        ] {
            let e = parse("hosts", &format!("[web]\n{line}\n")).unwrap_err();
            assert!(e.starts_with("line 2:") && e.contains("`-`"), "{e}");
        }
        let e = parse("hosts", "[web:vars]\nansible_host=-oX=y\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse(
            "i.yml",
            "all:\n  hosts:\n    h1: { ansible_user: -lroot }\n",
        )
        .unwrap_err();
        assert!(e.contains("`-`"), "{e}");
    }

    #[test]
    fn ini_host_port_form_and_inline_comments() {
        let inv = parse(
            "hosts",
            "[web]\nw1 ansible_host=10.0.0.1 # primary\nw2:2222 ansible_host=10.0.0.2\nw3:2200 ansible_port=2201\n[web:vars]\nansible_user=\"deploy\" # who\n",
        )
        .unwrap();
        assert_eq!(inv.groups["web"], ["w1", "w2", "w3"]);
        assert_eq!(inv.hosts["w1"].address.as_deref(), Some("10.0.0.1"));
        assert_eq!(inv.hosts["w2"].port.as_deref(), Some("2222"));
        assert_eq!(inv.hosts["w3"].port.as_deref(), Some("2201"));
        assert_eq!(inv.hosts["w1"].user.as_deref(), Some("deploy"));
    }

    #[test]
    fn a_child_groups_vars_win_over_its_parents_as_in_ansible() {
        // The parent's vars come after the child's in the file.
        let inv = parse(
            "hosts",
            "[web]\nw1\n[web:vars]\nansible_user=www\n[prod:children]\nweb\n[prod:vars]\nansible_user=deploy\nansible_port=2200\n[db]\nd1\n[prod:children]\ndb\n",
        )
        .unwrap();
        assert_eq!(inv.hosts["w1"].user.as_deref(), Some("www"));
        assert_eq!(inv.hosts["w1"].port.as_deref(), Some("2200"));
        assert_eq!(inv.hosts["d1"].user.as_deref(), Some("deploy"));
        // And in YAML, a parent listed after its children.
        let inv = parse(
            "i.yml",
            "all:\n  children:\n    prod:\n      children:\n        web:\n          hosts: { w1: }\n          vars: { ansible_user: www }\n      vars: { ansible_user: deploy }\n  vars: { ansible_user: nobody }\n",
        )
        .unwrap();
        assert_eq!(inv.hosts["w1"].user.as_deref(), Some("www"));
    }

    #[test]
    fn host_names_a_shell_or_ssh_would_read_more_into_are_refused() {
        for name in [
            "web$(touch x)",
            "w;rm",
            "-oProxyCommand",
            "a`id`",
            "w'1",
            "a/b",
            "w@1",
        ] {
            let e = parse("hosts", &format!("[web]\n\"{name}\"\n")).unwrap_err();
            assert!(e.starts_with("line 2:"), "{name}: {e}");
        }
        let e = parse("i.yml", "all:\n  hosts:\n    \"a;b\":\n").unwrap_err();
        assert!(e.contains("`a;b`"), "{e}");
        let inv = parse("hosts", "[web]\nweb-1.example.com\nfe80::1\n10.0.0.1\n").unwrap();
        assert_eq!(inv.groups["web"].len(), 3);
    }

    #[test]
    fn globs() {
        assert!(glob_match("web*", "web12"));
        assert!(glob_match("w?b1", "web1"));
        assert!(!glob_match("web*", "db1"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
    }
}
