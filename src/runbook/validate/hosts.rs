//! Where things run: hosts and groups named by `env_files`, by steps
//! (`on:`) and their fleet keys, and inventory hosts runbook refuses.

use super::{Validator, REFUSED_HINT};
use crate::error::Diagnostic;
use crate::runbook::fleet::{serial_limit, Fleet};
use crate::runbook::model::{EnvFileSpec, StepSpec};
use crate::runbook::suggest::nearest;

/// Where a step runs, as written: on one host, on each host of a group, or
/// here (neither).
pub(super) struct Target {
    /// The host, for a step on one host.
    pub host: Option<String>,
    /// The group, for a step on a group.
    pub group: Option<String>,
}

impl Validator<'_> {
    /// A name that is neither a host nor a group, with the nearest one.
    pub(super) fn unknown_host(&self, name: &str, fleet: &Fleet) -> Diagnostic {
        let what = if fleet.groups.keys().any(|g| g != "all") {
            "host or group"
        } else {
            "host"
        };
        let names = fleet.hosts.keys().chain(fleet.groups.keys());
        self.problem(format!("unknown {what} `{name}`")).maybe_hint(
            nearest(name, names.map(String::as_str))
                .map(|n| format!("did you mean `{n}`?"))
                .or_else(|| {
                    Some("declare it under `hosts:` or `groups:`, or use `local`".to_string())
                }),
        )
    }

    /// Each remote dotenv file is on a known host (or group), none refused.
    pub(super) fn check_env_files(&mut self, env_files: &[EnvFileSpec], fleet: &Fleet) {
        let remotes = || {
            env_files.iter().filter_map(|e| match e {
                EnvFileSpec::Remote(remote) => Some(remote),
                _ => None,
            })
        };
        let span = self.source.nested_key_span("env_files", "host");
        for (i, env_file) in env_files.iter().enumerate() {
            let EnvFileSpec::Remote(remote) = env_file else {
                continue;
            };
            let host = &remote.host;
            if !fleet.hosts.contains_key(host) && !fleet.groups.contains_key(host) {
                let d = self.unknown_host(host, fleet).at(span).hint(format!(
                    "env_files[{i}] names host `{host}`; declare it under `hosts:` or `groups:`"
                ));
                self.push(d);
            }
        }
        for remote in remotes() {
            let members = fleet
                .groups
                .get(&remote.host)
                .filter(|_| !fleet.hosts.contains_key(&remote.host));
            let on = members.map_or(std::slice::from_ref(&remote.host), |m| m.as_slice());
            if let Some((h, what)) = on.iter().find_map(|h| fleet.refused.get_key_value(h)) {
                let d = self
                    .problem(format!(
                        "env_files reads a file on `{h}`, whose inventory entry sets {what}, which runbook does not apply"
                    ))
                    .at(span)
                    .hint(REFUSED_HINT);
                self.push(d);
            }
        }
    }

    /// Where step `index` runs: `on:` names a host, a group with hosts, or
    /// `local`; a refused host is a problem; `serial` and `max_fail` only
    /// on a group.
    pub(super) fn target(&mut self, index: usize, spec: &StepSpec, fleet: &Fleet) -> Target {
        let host = match spec.on.as_deref() {
            None | Some("local") => None,
            Some(h) if fleet.hosts.contains_key(h) => Some(h.to_string()),
            Some(g) if fleet.groups.contains_key(g) => {
                // A step on an empty group would vanish from the run: no
                // instance, and what needs it would go on as if it ran.
                if fleet.groups[g].is_empty() {
                    let d = self
                        .problem(format!("step `{}` runs on group `{g}`, which has no hosts", spec.id))
                        .at(self.source.step_value_span(index, "on", g))
                        .hint("add hosts to the group (in `groups:` or the inventory), or remove the step");
                    self.push(d);
                }
                None
            }
            Some(h) => {
                let d = self
                    .unknown_host(h, fleet)
                    .at(self.source.step_value_span(index, "on", h));
                self.push(d);
                None
            }
        };
        let group = spec
            .on
            .as_ref()
            .filter(|g| !fleet.hosts.contains_key(*g) && fleet.groups.contains_key(*g))
            .cloned();
        let target = Target { host, group };
        self.check_refused(index, spec, fleet, &target);
        let size = target.group.as_ref().map(|g| fleet.groups[g].len());
        self.check_fleet_keys(index, spec, size);
        target
    }

    /// No host a step runs on is one runbook refuses.
    fn check_refused(&mut self, index: usize, spec: &StepSpec, fleet: &Fleet, target: &Target) {
        let targets: &[String] = match (&target.host, &target.group) {
            (Some(h), _) => std::slice::from_ref(h),
            (None, Some(g)) => &fleet.groups[g],
            (None, None) => &[],
        };
        if let Some(h) = targets.iter().find(|h| fleet.refused.contains_key(*h)) {
            let on = spec.on.as_deref().unwrap_or_default();
            let d = self
                .problem(format!(
                    "step `{}` runs on `{h}`, whose inventory entry sets {}, which runbook does not apply",
                    spec.id, fleet.refused[h]
                ))
                .at(self.source.step_value_span(index, "on", on))
                .hint(REFUSED_HINT);
            self.push(d);
        }
    }

    /// `serial` and `max_fail` belong to steps on a group, and `serial` is a
    /// count or a percentage.
    fn check_fleet_keys(&mut self, index: usize, spec: &StepSpec, group_size: Option<usize>) {
        for (key, given) in [
            ("serial", spec.serial.is_some()),
            ("max_fail", spec.max_fail.is_some()),
        ] {
            if given && group_size.is_none() {
                let d = self
                    .problem(format!(
                        "step `{}` has `{key}` but does not run on a group",
                        spec.id
                    ))
                    .at(self.source.step_key_span(index, key))
                    .hint(
                        "set `on:` to a group from `groups:` or the inventory, or remove the key",
                    );
                self.push(d);
            }
        }
        if let (Some(serial), Some(size)) = (&spec.serial, group_size) {
            if let Err(e) = serial_limit(serial, size) {
                let d = self
                    .problem(format!("step `{}`: {e}", spec.id))
                    .at(self.source.step_key_span(index, "serial"))
                    .hint("write a number of hosts (1, 2, ...) or a percentage such as \"25%\"");
                self.push(d);
            }
        }
    }
}
