//! A step `on` a group expanded into one instance per host, named
//! `STEP@HOST`, with its `needs` rewired per host (SPEC §9), and the inner
//! steps of a rolling block given their host's batch (SPEC §15). This is
//! the one place steps are expanded: validation calls it last, and every
//! layer below sees plain steps.

use indexmap::IndexMap;

use super::book::{Family, Roll, Step};
use super::fleet::serial_limit;
use super::rolling::settings;

/// The instance id of a step on a host.
pub fn instance_id(step: &str, host: &str) -> String {
    format!("{step}@{host}")
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
    let rolls = settings(&steps, groups);
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
                        roll: roll.map(|(_, serial, max_fail)| Roll {
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
