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
    /// Every variable set at this level, as written (INI values as text),
    /// for templates as `host.vars`.
    pub vars: IndexMap<String, serde_json::Value>,
}

impl HostVars {
    /// Sets a connection variable. A value that starts with `-` is refused:
    /// ssh would read the address, user or key file as one of its options
    /// (`ansible_host=-oProxyCommand=...`).
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.set_value(key, value, serde_json::Value::String(value.to_string()))
    }

    /// Sets a variable whose value is `json` (`text` when it is a scalar).
    fn set_value(&mut self, key: &str, value: &str, json: serde_json::Value) -> Result<(), String> {
        self.vars.insert(key.to_string(), json);
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
            vars: {
                // Ansible's default `hash_behaviour=replace`: a name set
                // closer replaces the whole value.
                let mut merged = self.vars.clone();
                merged.extend(other.vars.clone());
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
    fn resolve(mut self, files: &files::VarsFiles) -> Result<Inventory, String> {
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
        // As Ansible: `ungrouped` holds the hosts in no other group.
        let grouped = |h: &String| {
            groups
                .iter()
                .any(|(g, m)| g != "ungrouped" && g != "all" && m.contains(h))
        };
        let ungrouped: Vec<String> = all.iter().filter(|h| !grouped(h)).cloned().collect();
        groups.insert("ungrouped".to_string(), ungrouped);
        groups.insert("all".to_string(), all);
        // As Ansible: a child group's vars win over its parent's (deeper
        // groups apply later), groups of one depth in name order.
        let mut order: Vec<(usize, &String)> = groups
            .keys()
            .filter(|g| *g != "all")
            .map(|g| (self.depth(g, 0), g))
            .collect();
        order.sort();
        // Ansible's order (ansible-core's default VARIABLE_PRECEDENCE, then
        // host vars): the inventory's `all` vars, each group's inventory
        // vars, `group_vars/all`, each group's `group_vars`, the host's own
        // line, `host_vars`.
        let mut hosts = IndexMap::new();
        let none = HostVars::default();
        for (host, own) in &self.hosts {
            let mut vars = self.vars.get("all").cloned().unwrap_or_default();
            let mine: Vec<&String> = order
                .iter()
                .map(|(_, g)| *g)
                .filter(|g| groups[*g].contains(host))
                .collect();
            for group in &mine {
                vars = vars.overlay(self.vars.get(*group).unwrap_or(&none));
            }
            vars = vars.overlay(files.groups.get("all").unwrap_or(&none));
            for group in &mine {
                vars = vars.overlay(files.groups.get(*group).unwrap_or(&none));
            }
            let vars = vars.overlay(own);
            hosts.insert(
                host.clone(),
                vars.overlay(files.hosts.get(host).unwrap_or(&none)),
            );
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
/// text is a YAML mapping and it reads as YAML, INI otherwise. The error
/// says where.
pub fn parse(name: &str, text: &str) -> Result<Inventory, String> {
    let mut inv = parse_raw(name, text)?.resolve(&files::VarsFiles::default())?;
    jinja::render(&mut inv);
    Ok(inv)
}

/// Reads the inventory file at `path` with the `group_vars/` and
/// `host_vars/` beside it. `name` is how the file is named in the runbook.
pub fn read(path: &std::path::Path, name: &str) -> Result<Inventory, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let raw = parse_raw(name, &text)?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut inv = raw.resolve(&files::VarsFiles::read(dir)?)?;
    jinja::render(&mut inv);
    Ok(inv)
}

fn parse_raw(name: &str, text: &str) -> Result<Raw, String> {
    let yaml = name.ends_with(".yml")
        || name.ends_with(".yaml")
        || text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .is_some_and(|l| l.ends_with(':') || l == "---");
    if !yaml {
        return ini::parse_ini(text);
    }
    // As Ansible: when the YAML reader cannot read it, the INI reader
    // tries (INI text, with its `[section]` lines, in a file named `.yml`).
    let sections = text.lines().any(|l| l.trim_start().starts_with('['));
    match yaml::parse_yaml(text) {
        Err(e) if sections => ini::parse_ini(text).map_err(|_| e),
        read => read,
    }
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
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if !ok {
        return Err(format!(
            "`{name}` is not a usable host or group name (letters, digits, `.`, `_`, `-` and `:`, not starting with `-`)"
        ));
    }
    Ok(())
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

mod files;
mod ini;
mod jinja;
mod yaml;

#[cfg(test)]
mod tests;
