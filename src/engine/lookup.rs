//! Secrets for a pass: where they are looked up, what their checks say,
//! and what that holds.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::loaded::Loaded;
use super::sources;
use crate::exec;
use crate::scheduler::Hold;
use crate::state::SecretState;
use crate::store::{SecretRow, StepRow};

/// Secrets as a pass sees them: values in memory, states for the store.
pub(super) struct SecretStates {
    pub(super) lookup: sources::Lookup,
    pub(super) rows: Vec<SecretRow>,
    /// Hosts with sources of their own (an `env_files` entry on a group
    /// they belong to): what was found for each, and its states.
    pub(super) per_host: BTreeMap<String, (sources::Lookup, Vec<SecretRow>)>,
}

impl SecretStates {
    /// The values a step on `host` (or a local one) sees.
    pub(super) fn values_for(&self, host: Option<&str>) -> &crate::secrets::Values {
        match host.and_then(|h| self.per_host.get(h)) {
            Some((lookup, _)) => &lookup.values,
            None => &self.lookup.values,
        }
    }

    /// A redactor for every value found, on any host.
    pub(super) fn redactor(&self) -> crate::secrets::Redactor {
        let all = std::iter::once(&self.lookup)
            .chain(self.per_host.values().map(|(l, _)| l))
            .flat_map(|l| l.values.as_map().iter())
            .map(|(n, v)| (n.as_str(), v.as_str()));
        crate::secrets::Redactor::new(all)
    }

    /// What holds a step on `host` (or a local one) that requires these secrets.
    pub(super) fn hold_for(&self, requires: &[String], host: Option<&str>) -> Hold {
        let rows = match host.and_then(|h| self.per_host.get(h)) {
            Some((_, rows)) => rows,
            None => &self.rows,
        };
        let mut hold = Hold::default();
        for name in requires {
            match rows.iter().find(|r| &r.name == name) {
                Some(r) if r.state == SecretState::Missing => hold.missing.push(name.clone()),
                Some(r) if r.state == SecretState::Unavailable => {
                    hold.missing.push(name.clone());
                    hold.unavailable
                        .push((name.clone(), r.reason.clone().unwrap_or_default()));
                }
                Some(r) if r.state == SecretState::Rejected => hold.rejected.push((
                    name.clone(),
                    format!("was rejected: {}", r.reason.clone().unwrap_or_default()),
                )),
                Some(r) if r.state == SecretState::Unchecked => hold.rejected.push((
                    name.clone(),
                    format!(
                        "could not be checked: {}",
                        r.reason.clone().unwrap_or_default()
                    ),
                )),
                Some(_) => {}
                None => hold.missing.push(name.clone()),
            }
        }
        hold
    }
}

/// The secrets required by steps that will run in this pass.
pub(super) fn needed_secrets(loaded: &Loaded, rows: &[StepRow]) -> Vec<String> {
    let mut needed: Vec<String> = loaded
        .plan
        .steps
        .iter()
        .zip(rows)
        .filter(|(_, r)| !r.state.satisfies_needs())
        .flat_map(|(s, _)| s.requires.clone())
        .collect();
    needed.sort();
    needed.dedup();
    needed
}

/// Where secrets are looked up, in order: the environment, `--env-file`
/// files, then the runbook's `env_files` (an entry on a group as written,
/// for the handoff to show).
pub(super) fn secret_sources(loaded: &Loaded, env_files: &[PathBuf]) -> Vec<sources::Source> {
    sources_on(loaded, env_files, None, true)
}

/// The sources a step on `host` (or a local step) reads: an `env_files`
/// entry on a group is that host's own file when the host is in the group,
/// and is left out otherwise.
fn sources_on(
    loaded: &Loaded,
    env_files: &[PathBuf],
    host: Option<&str>,
    keep_groups: bool,
) -> Vec<sources::Source> {
    let mut sources = vec![sources::Source::Environment];
    sources.extend(
        env_files
            .iter()
            .map(|p| sources::Source::EnvFileArg(p.clone())),
    );
    let base = loaded.ctx.for_step("", &BTreeMap::new());
    for spec in &loaded.runbook.env_files {
        sources.push(match spec {
            crate::runbook::model::EnvFileSpec::Command(c) => sources::Source::Command {
                command: loaded
                    .templater
                    .render(&c.command, &base)
                    .unwrap_or_else(|_| c.command.clone()),
                timeout: command_timeout(c.timeout.as_deref()),
            },
            crate::runbook::model::EnvFileSpec::Local(rel) => {
                sources::Source::Local(loaded.runbook.dir.join(rel))
            }
            crate::runbook::model::EnvFileSpec::Remote(r) => {
                let on = match loaded.runbook.groups.get(&r.host) {
                    Some(_) if loaded.runbook.hosts.contains_key(&r.host) => r.host.clone(),
                    Some(_) if keep_groups => r.host.clone(),
                    Some(members) => match host.filter(|h| members.iter().any(|m| m == h)) {
                        Some(h) => h.to_string(),
                        None => continue,
                    },
                    None => r.host.clone(),
                };
                // A group's entry is rendered for each host: `step.host`
                // names it, so hosts sharing a file system can differ.
                let c = if on == r.host {
                    base.clone()
                } else {
                    loaded.ctx.for_instance("", Some(&on), &BTreeMap::new())
                };
                if on == r.host
                    && loaded.runbook.groups.contains_key(&on)
                    && !loaded.runbook.hosts.contains_key(&on)
                {
                    // A group's entry as written: each host renders its own.
                    sources.push(sources::Source::Remote {
                        host: on,
                        path: r.path.clone(),
                    });
                    continue;
                }
                sources::Source::Remote {
                    path: loaded
                        .templater
                        .render(&r.path, &c)
                        .unwrap_or_else(|_| r.path.clone()),
                    host: on,
                }
            }
        });
    }
    sources
}

/// A command's timeout as written (validated), or the default.
fn command_timeout(text: Option<&str>) -> std::time::Duration {
    text.and_then(|t| humantime::parse_duration(t.trim()).ok())
        .unwrap_or(super::secret_commands::DEFAULT_TIMEOUT)
}

/// The commands of a new look: a fresh runner, and each `from` rendered.
fn commands_of(loaded: &Loaded) -> sources::Commands {
    let base = loaded.ctx.for_step("", &BTreeMap::new());
    let from = loaded
        .runbook
        .secrets
        .iter()
        .filter_map(|(name, spec)| {
            let (command, timeout) = spec.from.as_ref()?.parts();
            let rendered = loaded
                .templater
                .render(command, &base)
                .map(|c| (c, command_timeout(timeout)))
                .map_err(|e| format!("`{command}` cannot be rendered: {}", e.message));
            Some((name.clone(), rendered))
        })
        .collect();
    sources::Commands {
        runner: super::secret_commands::Runner::new(&loaded.runbook.dir),
        from,
    }
}

/// What the checks said about the values seen, so a value that did not
/// change is not checked again (a `--wait` loop looks secrets up every
/// interval). Keyed by name and a digest of the value; never the value.
/// A check that could not be made is not kept: it is tried again.
#[derive(Debug, Default)]
pub(super) struct CheckCache {
    verdicts: HashMap<String, ([u8; 32], sources::Verdict)>,
}

impl CheckCache {
    /// A digest of a value (or of the values a check reads), to compare
    /// without keeping it.
    pub(super) fn digest(value: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(value.as_bytes()).into()
    }

    fn get(&self, name: &str, value: &str) -> Option<sources::Verdict> {
        self.verdicts
            .get(name)
            .filter(|(d, _)| *d == Self::digest(value))
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, name: &str, value: &str, verdict: &sources::Verdict) {
        if matches!(verdict, sources::Verdict::Unchecked(_)) {
            self.verdicts.remove(name);
        } else {
            self.verdicts
                .insert(name.to_string(), (Self::digest(value), verdict.clone()));
        }
    }
}

/// Looks every declared secret up, and checks the ones this pass needs:
/// once for local steps and single hosts, and once more for each host that
/// has sources of its own (an `env_files` entry on its group), at the same
/// time.
/// A check is not made again when `cache` has the verdict for the same value.
pub(super) async fn resolve_secrets(
    loaded: &Loaded,
    execs: &Arc<exec::Executors>,
    env_files: &[PathBuf],
    needed: &[String],
    cache: &mut CheckCache,
) -> SecretStates {
    let declared: Vec<String> = loaded.runbook.secrets.keys().cloned().collect();
    if declared.is_empty() {
        return SecretStates {
            lookup: sources::Lookup::default(),
            rows: Vec::new(),
            per_host: BTreeMap::new(),
        };
    }
    let base = sources_on(loaded, env_files, None, false);
    let commands = commands_of(loaded);
    let lookup = sources::lookup(&base, &declared, execs, &commands).await;
    let rows = states_of(loaded, execs, &lookup, needed, cache).await;
    // Hosts of steps that require secrets and read sources of their own.
    let mut hosts: Vec<String> = loaded
        .plan
        .steps
        .iter()
        .filter(|s| !s.requires.is_empty())
        .filter_map(|s| s.host.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        let own = sources_on(loaded, env_files, Some(&host), false);
        if own == base {
            continue;
        }
        let (execs, declared) = (execs.clone(), declared.clone());
        let commands = commands.clone();
        tasks.spawn(async move {
            let lookup = sources::lookup(&own, &declared, &execs, &commands).await;
            (host, lookup)
        });
    }
    let mut per_host = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((host, lookup)) = done {
            let rows = states_of(loaded, execs, &lookup, needed, cache).await;
            per_host.insert(host, (lookup, rows));
        }
    }
    SecretStates {
        rows: stored_rows(rows, &per_host),
        lookup,
        per_host,
    }
}

/// The rows the store keeps, one per secret: a secret that some hosts
/// miss is missing (or rejected), and its reason names those hosts.
fn stored_rows(
    base: Vec<SecretRow>,
    per_host: &BTreeMap<String, (sources::Lookup, Vec<SecretRow>)>,
) -> Vec<SecretRow> {
    if per_host.is_empty() {
        return base;
    }
    base.into_iter()
        .map(|row| {
            if row.state.is_usable() {
                return row;
            }
            let of_host = |h: &(sources::Lookup, Vec<SecretRow>)| {
                h.1.iter().find(|r| r.name == row.name).cloned()
            };
            let bad: Vec<(&String, SecretRow)> = per_host
                .iter()
                .filter_map(|(h, v)| of_host(v).map(|r| (h, r)))
                .filter(|(_, r)| !r.state.is_usable())
                .collect();
            if bad.is_empty() {
                return SecretRow {
                    state: SecretState::Found,
                    source: Some("each host's own env file".into()),
                    reason: None,
                    ..row
                };
            }
            if row.state == SecretState::Unavailable {
                // The same local command for every host: its own words.
                return row;
            }
            let first = bad[0].1.clone();
            let names: Vec<&str> = bad.iter().map(|(h, _)| h.as_str()).collect();
            SecretRow {
                reason: Some(format!(
                    "{} on {} host{} ({}); {}",
                    first.state,
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    super::fleet::short_list(&names),
                    first.reason.unwrap_or_default()
                )),
                ..first
            }
        })
        .collect()
}

/// The row of a secret no source gave: unavailable when a command that
/// should give it failed (its reason redacted), missing otherwise.
fn not_found(name: &str, lookup: &sources::Lookup) -> SecretRow {
    if let Some(why) = lookup.unavailable.get(name) {
        return SecretRow {
            name: name.to_string(),
            state: SecretState::Unavailable,
            source: None,
            reason: Some(lookup.values.redactor().redact(why)),
        };
    }
    let problems: Vec<String> = lookup
        .problems
        .iter()
        .map(|(s, p)| format!("{s}: {p}"))
        .collect();
    SecretRow {
        name: name.to_string(),
        state: SecretState::Missing,
        source: None,
        reason: Some(if problems.is_empty() {
            "not set in any source".to_string()
        } else {
            format!(
                "not found; some sources could not be read ({})",
                problems.join("; ")
            )
        }),
    }
}

/// Each declared secret's state from what one lookup found; checks run
/// for the secrets this pass needs.
async fn states_of(
    loaded: &Loaded,
    execs: &exec::Executors,
    lookup: &sources::Lookup,
    needed: &[String],
    cache: &mut CheckCache,
) -> Vec<SecretRow> {
    let mut rows = Vec::new();
    for (name, spec) in &loaded.runbook.secrets {
        let source = lookup.found_in.get(name).cloned();
        let row = match (lookup.values.get(name), &spec.check) {
            (None, _) => not_found(name, lookup),
            (Some(value), Some(check)) if needed.contains(name) => {
                // The check may read other secrets too: its verdict holds for
                // these values together.
                let key: String = std::iter::once(name.clone())
                    .chain(crate::plan::http_secret_refs(
                        &loaded.templater,
                        &check.http,
                    ))
                    .map(|n| {
                        let v = if &n == name {
                            Some(value)
                        } else {
                            lookup.values.get(&n)
                        };
                        format!("{n}={}\0", v.unwrap_or(""))
                    })
                    .collect();
                let value = key.as_str();
                let verdict = match cache.get(name, value) {
                    Some(v) => v,
                    None => {
                        let v = sources::check(
                            execs,
                            &loaded.templater,
                            &loaded.ctx,
                            &check.http,
                            &lookup.values,
                        )
                        .await;
                        cache.put(name, value, &v);
                        v
                    }
                };
                let (state, reason) = match verdict {
                    sources::Verdict::Accepted => (SecretState::Accepted, None),
                    sources::Verdict::Rejected(r) => (SecretState::Rejected, Some(r)),
                    sources::Verdict::Unchecked(r) => (SecretState::Unchecked, Some(r)),
                };
                SecretRow {
                    name: name.clone(),
                    state,
                    source,
                    reason,
                }
            }
            (Some(_), _) => SecretRow {
                name: name.clone(),
                state: SecretState::Found,
                source,
                reason: None,
            },
        };
        rows.push(row);
    }
    rows
}
