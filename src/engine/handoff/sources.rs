//! Where a held secret can be put: the places the engine looks, in its
//! order, as the person supplying it reads them.

use std::collections::BTreeMap;

use super::Facts;
use crate::engine::sources::Source;
use crate::runbook::model::SecretSpec;

/// The places for secret `name`, in the order the engine reads them:
/// only those a step held on it reads, and, when the secret has a `from`,
/// only the environment and `--env-file` before the command itself.
pub(super) fn places(
    f: &Facts,
    name: &str,
    spec: Option<&SecretSpec>,
    sources: &[Source],
    held_steps: &[String],
) -> Vec<String> {
    // A group's entry is each member's own file: only a step held
    // on one of its hosts reads it (a local step never does).
    let held_hosts: Vec<Option<&str>> = f
        .steps
        .iter()
        .filter(|s| held_steps.contains(&s.id))
        .map(|s| s.host.as_deref())
        .collect();
    let from = spec.and_then(|s| s.from.as_ref()).map(|from| {
        let (command, _) = from.parts();
        f.loaded
            .and_then(|l| {
                l.templater
                    .render(command, &l.ctx.for_step("", &BTreeMap::new()))
                    .ok()
            })
            .unwrap_or_else(|| command.to_string())
    });
    let mut places: Vec<String> = sources
        .iter()
        .filter(|src| read_by_a_held_step(f, src, &held_hosts))
        .filter(|src| from.is_none() || matches!(src, Source::Environment | Source::EnvFileArg(_)))
        .map(|src| place(f, name, src))
        .collect();
    if let Some(command) = from {
        places.push(format!(
            "what `{command}` prints (its `from`, run on the operator's machine): the value"
        ));
    }
    places
}

/// Whether a step held on one of `held_hosts` reads `src`: a file on a
/// group is read only by a step on one of the group's hosts.
fn read_by_a_held_step(f: &Facts, src: &Source, held_hosts: &[Option<&str>]) -> bool {
    match (src, f.loaded) {
        (Source::Remote { host, .. }, Some(l))
            if !held_hosts.is_empty() && !l.runbook.hosts.contains_key(host) =>
        {
            l.runbook.groups.get(host).is_some_and(|members| {
                held_hosts
                    .iter()
                    .any(|h| h.is_some_and(|h| members.iter().any(|m| m == h)))
            }) || !l.runbook.groups.contains_key(host)
        }
        _ => true,
    }
}

/// One place, in words.
fn place(f: &Facts, name: &str, src: &Source) -> String {
    match src {
        Source::Environment => {
            format!("the environment of whoever runs the resume command: `export {name}=...`")
        }
        Source::EnvFileArg(p) => format!(
            "`{}` (given with `--env-file`): a line `{name}=...`",
            p.display()
        ),
        Source::Local(p) => format!(
            "`{}` on the operator's machine: a line `{name}=...`",
            p.display()
        ),
        Source::Command { command, .. } => format!(
            "what `{command}` prints (a dotenv file): a line `{name}=...` in what it decrypts or reads"
        ),
        Source::Remote { host, path } => {
            let group = f.loaded.is_some_and(|l| {
                l.runbook.groups.contains_key(host) && !l.runbook.hosts.contains_key(host)
            });
            if group {
                format!("`{path}` on each host of group `{host}` (the host's own file): a line `{name}=...`")
            } else {
                format!("`{path}` on host `{host}`{}: a line `{name}=...`", at(f, host))
            }
        }
    }
}

/// ` (user@address, port N)` of a host in the runbook, or nothing.
fn at(f: &Facts, host: &str) -> String {
    let hosts = f
        .loaded
        .map(|l| crate::engine::loaded::host_targets(&l.runbook, &l.ctx))
        .unwrap_or_default();
    hosts
        .iter()
        .find(|h| h.name == host)
        .map(|h| {
            format!(
                " ({}{}{})",
                h.user
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default(),
                h.address,
                h.port.map(|p| format!(", port {p}")).unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, row};
    use super::*;
    use crate::state::StepState;

    #[test]
    fn every_place_in_the_engines_order_in_words() {
        let steps = [row("deploy", StepState::Held)];
        let f = facts(&steps, "");
        let sources = [
            Source::Environment,
            Source::EnvFileArg("my.env".into()),
            Source::Local("secrets/.env".into()),
            Source::Command {
                command: "sops -d s.env".into(),
                timeout: std::time::Duration::from_secs(5),
            },
            Source::Remote {
                host: "web1".into(),
                path: "/etc/app.env".into(),
            },
        ];
        let held = vec!["deploy".to_string()];
        let places = places(&f, "TOKEN", None, &sources, &held);
        assert_eq!(
            places,
            [
                "the environment of whoever runs the resume command: `export TOKEN=...`",
                "`my.env` (given with `--env-file`): a line `TOKEN=...`",
                "`secrets/.env` on the operator's machine: a line `TOKEN=...`",
                "what `sops -d s.env` prints (a dotenv file): a line `TOKEN=...` in what it decrypts or reads",
                // Without the runbook, the host's address is not known.
                "`/etc/app.env` on host `web1`: a line `TOKEN=...`",
            ]
        );
    }
}
