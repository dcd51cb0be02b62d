//! Fleets (SPEC §9): hosts and groups from the runbook and its inventory,
//! and a step `on` a group expanded into one instance per host, named
//! `STEP@HOST`, with its `needs` rewired per host.

use indexmap::IndexMap;

use super::inventory::{self, glob_match, is_glob};
use super::load::Source;
use super::model::{HostSpec, InventorySpec, Scalar, Serial};
use super::validate::{nearest, Step};
use crate::error::Diagnostic;

/// What a step instance shares with the other instances of its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The step's id as written (`deploy` for `deploy@web1`).
    pub step: String,
    /// The group it runs on.
    pub group: String,
    /// How many hosts the group has.
    pub size: usize,
    /// At most this many instances run at once.
    pub serial: Option<usize>,
    /// Failed instances allowed before no further instance starts.
    pub max_fail: u32,
    /// For an inner step of a rolling block: its host's batch (SPEC §15).
    /// `serial` and `max_fail` above are then the block's to apply.
    pub roll: Option<super::rolling::Roll>,
}

/// The instance id of a step on a host.
pub fn instance_id(step: &str, host: &str) -> String {
    format!("{step}@{host}")
}

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
    let mut all_hosts = hosts.clone();
    let mut all_groups: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut refused = IndexMap::new();
    if let Some(spec) = inventory {
        let dir = source.path.parent().unwrap_or(std::path::Path::new("."));
        let path = dir.join(spec.path());
        let read = inventory::read(&path, spec.path());
        match read {
            Ok(inv) => {
                let (known_hosts, known_hosts_file) = match spec {
                    InventorySpec::Path(_) => (Default::default(), None),
                    InventorySpec::Full(o) => (o.known_hosts, o.known_hosts_file.clone()),
                };
                for (name, vars) in inv.hosts {
                    if let Some(what) = vars.refused().filter(|_| !hosts.contains_key(&name)) {
                        refused.insert(name.clone(), what);
                    }
                    all_hosts.entry(name.clone()).or_insert(HostSpec {
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
                        all_groups.insert(name, members);
                    }
                }
            }
            Err(e) => diagnostics.push(
                Diagnostic::new(
                    &source.path,
                    format!("inventory {}: {e}", path.display()),
                )
                .at(source.key_span("inventory"))
                .hint("an Ansible inventory in INI or YAML form, relative to the runbook's folder"),
            ),
        }
    }
    for (name, members) in groups {
        let at = source.nested_key_span("groups", name);
        if name == "local" || all_hosts.contains_key(name) || name.contains('@') {
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
            let matched: Vec<String> = if is_glob(member) {
                all_hosts
                    .keys()
                    .filter(|h| glob_match(member, h))
                    .cloned()
                    .collect()
            } else if all_hosts.contains_key(member) {
                vec![member.clone()]
            } else if let Some(g) = all_groups.get(member) {
                g.clone()
            } else {
                Vec::new()
            };
            if matched.is_empty() {
                let names = all_hosts
                    .keys()
                    .chain(all_groups.keys())
                    .map(String::as_str);
                diagnostics.push(
                    Diagnostic::new(
                        &source.path,
                        format!("group `{name}`: `{member}` names no host"),
                    )
                    .at(at)
                    .maybe_hint(
                        (!is_glob(member))
                            .then(|| nearest(member, names))
                            .flatten()
                            .map(|n| format!("did you mean `{n}`?"))
                            .or_else(|| {
                                Some("list host names from `hosts:` or the inventory, or globs such as `web*`".into())
                            }),
                    ),
                );
            }
            for h in matched {
                if !resolved.contains(&h) {
                    resolved.push(h);
                }
            }
        }
        all_groups.insert(name.clone(), resolved);
    }
    if !all_groups.contains_key("all") && !all_hosts.contains_key("all") {
        all_groups.insert("all".into(), all_hosts.keys().cloned().collect());
    }
    Fleet {
        hosts: all_hosts,
        groups: all_groups,
        refused,
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

/// Expands each step whose `groups[i]` is set into one instance per host
/// of that group; `needs` between two group steps that share a host are
/// per host, any other need on a group step waits for all its instances.
/// Indexes in the result are positions in the returned list.
pub fn expand(
    steps: Vec<Step>,
    on_group: &[Option<String>],
    groups: &IndexMap<String, Vec<String>>,
) -> Vec<Step> {
    if on_group.iter().all(Option::is_none) {
        return steps;
    }
    // A rolling block's inner steps take its hosts in its order.
    let rolls = super::rolling::settings(&steps, groups);
    // Where each written step's instances start, and their hosts.
    let mut first = Vec::with_capacity(steps.len());
    let mut hosts_of: Vec<Option<&Vec<String>>> = Vec::with_capacity(steps.len());
    let mut next = 0;
    for (i, _) in steps.iter().enumerate() {
        first.push(next);
        let hosts = on_group[i].as_ref().and_then(|g| groups.get(g));
        let hosts = match &rolls[i] {
            Some((ordered, _, _)) if hosts.is_some() => Some(ordered),
            _ => hosts,
        };
        next += hosts.map_or(1, Vec::len);
        hosts_of.push(hosts);
    }
    let mut out = Vec::with_capacity(next);
    for (i, step) in steps.into_iter().enumerate() {
        let needs_for = |host: Option<&str>| -> Vec<usize> {
            let mut needs = Vec::new();
            for &n in &step.needs {
                match hosts_of[n] {
                    None => needs.push(first[n]),
                    Some(nh) => match host.and_then(|h| nh.iter().position(|x| x == h)) {
                        Some(k) => needs.push(first[n] + k),
                        None => needs.extend(first[n]..first[n] + nh.len()),
                    },
                }
            }
            needs
        };
        match (hosts_of[i], &on_group[i]) {
            (Some(hosts), Some(group)) => {
                let serial = step
                    .spec
                    .serial
                    .as_ref()
                    .and_then(|s| serial_limit(s, hosts.len()).ok());
                let roll = rolls[i].as_ref();
                for (k, host) in hosts.iter().enumerate() {
                    let mut instance = step.clone();
                    instance.index = out.len();
                    instance.id = instance_id(&step.spec.id, host);
                    instance.needs = needs_for(Some(host));
                    instance.host = Some(host.clone());
                    instance.family = Some(Family {
                        step: step.spec.id.clone(),
                        group: group.clone(),
                        size: hosts.len(),
                        serial,
                        max_fail: step.spec.max_fail.unwrap_or(0),
                        roll: roll.map(|(_, serial, max_fail)| super::rolling::Roll {
                            block: step.spec.block.clone().unwrap_or_default(),
                            batch: k / serial,
                            max_fail: *max_fail,
                        }),
                    });
                    out.push(instance);
                }
            }
            _ => {
                let mut single = step.clone();
                single.index = out.len();
                single.needs = needs_for(None);
                out.push(single);
            }
        }
    }
    out
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
