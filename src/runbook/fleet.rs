//! Fleets (SPEC §9): hosts and groups from the runbook and its inventory,
//! each group resolved to a list of hosts (expanding a step on a group is
//! `expand.rs`'s).

use indexmap::IndexMap;

use super::inventory::{self, glob_match, is_glob};
use super::model::{HostSpec, InventorySpec, Scalar, Serial};
use super::source::Source;
use super::suggest::nearest;
use crate::error::Diagnostic;

pub use super::book::Family;

/// Hosts, groups, and the inventory hosts runbook cannot reach as their
/// inventory says.
pub struct Fleet {
    /// The runbook's hosts with the inventory's added.
    pub hosts: IndexMap<String, HostSpec>,
    /// Groups as resolved host lists.
    pub groups: IndexMap<String, Vec<String>>,
    /// Inventory hosts that set a connection variable runbook does not
    /// apply (`ansible_connection=local`, extra ssh options, a password),
    /// with what they set: refused where something runs on them.
    pub refused: IndexMap<String, String>,
}

/// The hosts of the runbook with those of its inventory added (the
/// runbook's own entries win), and its groups as resolved host lists.
/// Problems are pushed to `diagnostics`.
pub fn hosts_and_groups(
    hosts: &IndexMap<String, HostSpec>,
    groups: &IndexMap<String, Vec<String>>,
    inventory: Option<&InventorySpec>,
    source: &Source,
    diagnostics: &mut Vec<Diagnostic>,
) -> Fleet {
    let mut fleet = Fleet {
        hosts: hosts.clone(),
        groups: IndexMap::new(),
        refused: IndexMap::new(),
    };
    if let Some(spec) = inventory {
        if let Err(d) = fleet.add_inventory(spec, hosts, source) {
            diagnostics.push(d);
        }
    }
    for (name, members) in groups {
        let at = source.nested_key_span("groups", name);
        if name == "local" || fleet.hosts.contains_key(name) || name.contains('@') {
            diagnostics.push(
                Diagnostic::new(
                    &source.path,
                    format!("group `{name}` cannot be named like that: `local` or a host has that name, or it has an `@`"),
                )
                .at(at)
                .hint("rename the group"),
            );
            continue;
        }
        let mut resolved = Vec::new();
        for member in members {
            let matched = fleet.members(member);
            if matched.is_empty() {
                diagnostics.push(fleet.no_host(name, member, source).at(at));
            }
            for h in matched {
                if !resolved.contains(&h) {
                    resolved.push(h);
                }
            }
        }
        fleet.groups.insert(name.clone(), resolved);
    }
    if !fleet.groups.contains_key("all") && !fleet.hosts.contains_key("all") {
        let all = fleet.hosts.keys().cloned().collect();
        fleet.groups.insert("all".into(), all);
    }
    fleet
}

impl Fleet {
    /// Adds the hosts and groups of the inventory `spec` names; the
    /// runbook's own `hosts` win. `Err` when it cannot be read.
    fn add_inventory(
        &mut self,
        spec: &InventorySpec,
        hosts: &IndexMap<String, HostSpec>,
        source: &Source,
    ) -> Result<(), Diagnostic> {
        let dir = source.path.parent().unwrap_or(std::path::Path::new("."));
        let path = dir.join(spec.path());
        let inv = inventory::read(&path, spec.path()).map_err(|e| {
            Diagnostic::new(&source.path, format!("inventory {}: {e}", path.display()))
                .at(source.key_span("inventory"))
                .hint("an Ansible inventory in INI or YAML form, relative to the runbook's folder")
        })?;
        let (known_hosts, known_hosts_file) = match spec {
            InventorySpec::Path(_) => (Default::default(), None),
            InventorySpec::Full(o) => (o.known_hosts, o.known_hosts_file.clone()),
        };
        for (name, vars) in inv.hosts {
            if let Some(what) = vars.refused().filter(|_| !hosts.contains_key(&name)) {
                self.refused.insert(name.clone(), what);
            }
            self.hosts.entry(name.clone()).or_insert(HostSpec {
                address: vars.address.unwrap_or(name),
                user: vars.user,
                port: vars.port.map(Scalar::Str),
                identity_file: vars.identity_file,
                known_hosts,
                known_hosts_file: known_hosts_file.clone(),
                vars: vars.vars,
            });
        }
        for (name, members) in inv.groups {
            if !hosts.contains_key(&name) {
                self.groups.insert(name, members);
            }
        }
        Ok(())
    }

    /// The hosts one group member names: a glob of host names, a host, or
    /// a group resolved before it (the inventory's).
    fn members(&self, member: &str) -> Vec<String> {
        if is_glob(member) {
            self.hosts
                .keys()
                .filter(|h| glob_match(member, h))
                .cloned()
                .collect()
        } else if self.hosts.contains_key(member) {
            vec![member.to_string()]
        } else if let Some(g) = self.groups.get(member) {
            g.clone()
        } else {
            Vec::new()
        }
    }

    /// Group `group`'s member `member` names no host.
    fn no_host(&self, group: &str, member: &str, source: &Source) -> Diagnostic {
        let names = self
            .hosts
            .keys()
            .chain(self.groups.keys())
            .map(String::as_str);
        Diagnostic::new(
            &source.path,
            format!("group `{group}`: `{member}` names no host"),
        )
        .maybe_hint(
            (!is_glob(member))
                .then(|| nearest(member, names))
                .flatten()
                .map(|n| format!("did you mean `{n}`?"))
                .or_else(|| {
                    Some(
                        "list host names from `hosts:` or the inventory, or globs such as `web*`"
                            .into(),
                    )
                }),
        )
    }
}

/// The number of hosts a `serial` allows at once in a group of `size`;
/// `Err` says what is wrong with it.
pub fn serial_limit(serial: &Serial, size: usize) -> Result<usize, String> {
    match serial {
        Serial::Count(0) => Err("`serial: 0` would never start a host; use 1 or more".into()),
        Serial::Count(n) => Ok(*n as usize),
        Serial::Percent(text) => {
            let pct = text
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| {
                    format!("`serial: {text}` is neither a number nor a percentage such as \"25%\"")
                })?;
            Ok(((size as f64 * pct / 100.0).ceil() as usize).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn book(yaml: &str) -> Result<crate::runbook::Runbook, Vec<String>> {
        let path = std::path::Path::new("/tmp/rb-unit/r.yaml");
        let (file, source) = crate::runbook::load::parse_text(path, yaml.to_string())
            .map_err(|e| vec![e.to_string()])?;
        crate::runbook::validate::validate(file, source, &[]).map_err(|e| match e {
            Error::Invalid { diagnostics, .. } => diagnostics
                .iter()
                .map(|d| format!("{} | {}", d.message, d.hint.clone().unwrap_or_default()))
                .collect(),
            other => vec![other.to_string()],
        })
    }

    const HOSTS: &str = "hosts:\n  w1: { address: a }\n  w2: { address: b }\n  db: { address: c }\ngroups:\n  web: [w*]\n";

    #[test]
    fn needs_are_per_host_between_groups_and_on_all_instances_otherwise() {
        let b = book(&format!("{HOSTS}steps:\n  - id: pre\n  - id: deploy\n    on: web\n    needs: [pre]\n  - id: check\n    on: all\n    needs: [deploy]\n  - id: migrate\n    on: db\n    needs: [deploy]\n  - id: done\n    needs: [check]\n")).unwrap();
        let step = |id: &str| b.steps.iter().find(|s| s.id == id).unwrap();
        let needs = |id: &str| -> Vec<String> {
            step(id)
                .needs
                .iter()
                .map(|&n| b.steps[n].id.clone())
                .collect()
        };
        assert_eq!(needs("deploy@w2"), ["pre"]);
        assert_eq!(needs("check@w1"), ["deploy@w1"]);
        // db is not in `web`: it waits for every deploy.
        assert_eq!(needs("check@db"), ["deploy@w1", "deploy@w2"]);
        assert_eq!(needs("migrate"), ["deploy@w1", "deploy@w2"]);
        assert_eq!(needs("done"), ["check@w1", "check@w2", "check@db"]);
        let family = step("deploy@w1").family.clone().unwrap();
        assert_eq!((family.step.as_str(), family.size), ("deploy", 2));
        assert!(b.steps.iter().enumerate().all(|(i, s)| s.index == i));
    }

    #[test]
    fn serial_is_a_count_or_a_percentage_rounded_up() {
        assert_eq!(serial_limit(&Serial::Count(3), 10), Ok(3));
        assert_eq!(serial_limit(&Serial::Percent("25%".into()), 10), Ok(3));
        assert_eq!(serial_limit(&Serial::Percent("1%".into()), 10), Ok(1));
        assert!(serial_limit(&Serial::Count(0), 10).is_err());
        assert!(serial_limit(&Serial::Percent("lots".into()), 10).is_err());
        assert!(serial_limit(&Serial::Percent("150%".into()), 10).is_err());
    }

    #[test]
    fn fleet_keys_and_names_are_checked() {
        let errs = book(&format!("{HOSTS}steps:\n  - id: a\n    on: db\n    serial: 1\n  - id: b\n    on: web\n    serial: half\n  - id: c\n    on: wbe\n")).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("`serial` but does not run on a group")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("neither a number nor a percentage")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("unknown host or group `wbe`")
                    && e.contains("did you mean `web`?")),
            "{errs:?}"
        );
        let errs = book(
            "hosts:\n  web1: { address: a }\ngroups:\n  web: [wbe1, 'x*']\nsteps:\n  - id: a\n",
        )
        .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("`wbe1` names no host") && e.contains("did you mean `web1`?")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("`x*` names no host")),
            "{errs:?}"
        );
    }
}
