//! Secrets for a pass: where they are looked up, what their checks say,
//! and what that holds.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::sources;
use super::Loaded;
use crate::exec;
use crate::scheduler::Hold;
use crate::state::SecretState;
use crate::store::{SecretRow, StepRow};

/// Secrets as a pass sees them: values in memory, states for the store.
pub(super) struct SecretStates {
    pub(super) lookup: sources::Lookup,
    pub(super) rows: Vec<SecretRow>,
}

impl SecretStates {
    /// What holds a step that requires these secrets.
    pub(super) fn hold_for(&self, requires: &[String]) -> Hold {
        let mut hold = Hold::default();
        for name in requires {
            match self.rows.iter().find(|r| &r.name == name) {
                Some(r) if r.state == SecretState::Missing => hold.missing.push(name.clone()),
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
/// files, then the runbook's `env_files`.
pub(super) fn secret_sources(loaded: &Loaded, env_files: &[PathBuf]) -> Vec<sources::Source> {
    let mut sources = vec![sources::Source::Environment];
    sources.extend(
        env_files
            .iter()
            .map(|p| sources::Source::EnvFileArg(p.clone())),
    );
    let base = loaded.ctx.for_step("", &BTreeMap::new());
    for spec in &loaded.runbook.env_files {
        sources.push(match spec {
            crate::runbook::model::EnvFileSpec::Local(rel) => {
                sources::Source::Local(loaded.runbook.dir.join(rel))
            }
            crate::runbook::model::EnvFileSpec::Remote(r) => sources::Source::Remote {
                host: r.host.clone(),
                path: loaded
                    .templater
                    .render(&r.path, &base)
                    .unwrap_or_else(|_| r.path.clone()),
            },
        });
    }
    sources
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

/// Looks every declared secret up, and checks the ones this pass needs
/// (unless `cache` has the verdict for the same value).
pub(super) async fn resolve_secrets(
    loaded: &Loaded,
    execs: &exec::Executors,
    env_files: &[PathBuf],
    needed: &[String],
    cache: &mut CheckCache,
) -> SecretStates {
    let declared: Vec<String> = loaded.runbook.secrets.keys().cloned().collect();
    if declared.is_empty() {
        return SecretStates {
            lookup: sources::Lookup::default(),
            rows: Vec::new(),
        };
    }
    let sources = secret_sources(loaded, env_files);
    let lookup = sources::lookup(&sources, &declared, execs).await;
    let mut rows = Vec::new();
    for (name, spec) in &loaded.runbook.secrets {
        let source = lookup.found_in.get(name).cloned();
        let row = match (lookup.values.get(name), &spec.check) {
            (None, _) => {
                let problems: Vec<String> = lookup
                    .problems
                    .iter()
                    .map(|(s, p)| format!("{s}: {p}"))
                    .collect();
                SecretRow {
                    name: name.clone(),
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
    SecretStates { lookup, rows }
}
