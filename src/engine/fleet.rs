//! `--limit`: which steps a pass leaves out because their host is not named.

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::runbook::inventory::{glob_match, is_glob};
use crate::runbook::{validate, Runbook};

/// Per planned step, whether `--limit` leaves it out. Patterns are host
/// names, group names or globs (of host or group names), each given as comma-separated lists; a
/// pattern that names no host is a usage error. Local steps always run.
pub(super) fn excluded(runbook: &Runbook, plan: &Plan, limit: &[String]) -> Result<Vec<bool>> {
    let patterns: Vec<&str> = limit
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let mut chosen: Vec<&str> = Vec::new();
    for pattern in &patterns {
        let before = chosen.len();
        for host in runbook.hosts.keys() {
            let hit = if is_glob(pattern) {
                // As Ansible's: a glob picks hosts by name or by group
                // (never by `all`: `--limit 'a*'` is not every host).
                glob_match(pattern, host)
                    || runbook.groups.iter().any(|(group, members)| {
                        group != "all" && glob_match(pattern, group) && members.contains(host)
                    })
            } else {
                host == pattern
                    || runbook
                        .groups
                        .get(*pattern)
                        .is_some_and(|members| members.contains(host))
            };
            if hit && !chosen.contains(&host.as_str()) {
                chosen.push(host);
            }
        }
        let matched_group = runbook.groups.contains_key(*pattern);
        if chosen.len() == before && !matched_group && !runbook.hosts.contains_key(*pattern) {
            let hint = validate::nearest(
                pattern,
                runbook
                    .hosts
                    .keys()
                    .chain(runbook.groups.keys())
                    .map(String::as_str),
            )
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
            return Err(Error::Usage(format!(
                "--limit `{pattern}` names no host of runbook {}{hint}",
                runbook.name
            )));
        }
    }
    Ok(plan
        .steps
        .iter()
        .map(|s| s.host.as_deref().is_some_and(|h| !chosen.contains(&h)))
        .collect())
}

/// A list of names cut to fit one line: `h1, h2, h3, … (20)`.
pub(super) fn short_list(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!("{}, … ({} in all)", names[..SHOWN].join(", "), names.len())
    }
}
