//! `runbook handoff`: gathers what the state and the runbook know into the
//! page of `report::handoff`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::lookup::secret_sources;
use super::*;
use crate::state::SecretState;

impl Ctx {
    /// `handoff`.
    pub fn handoff(
        &self,
        target: Target,
        output: Option<PathBuf>,
        format: report::handoff::HandoffFormat,
    ) -> Result<i32> {
        let text = self.handoff_text(&target, format)?;
        let store = self.existing_store()?;
        let run = self.find_run(&store, &target)?;
        let mut steps = store.steps(run.id)?;
        let alive = store.live_holder(run.id)?.is_some();
        let state = run.effective_state(&mut steps, alive);
        match output {
            Some(path) => {
                std::fs::write(&path, text)
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                println!(
                    "wrote the handoff for run {} ({}) to {}",
                    run.id,
                    state,
                    path.display()
                );
            }
            None => print!("{text}"),
        }
        Ok(exit::OK)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_handoff(
        &self,
        store: &Store,
        run: &RunRow,
        state: RunState,
        steps: &[StepRow],
        secret_rows: &[SecretRow],
        env_files: &[String],
        loaded: Option<&Loaded>,
    ) -> Result<report::handoff::Handoff> {
        use report::handoff::*;
        let spec_of = |id: &str| loaded.and_then(|l| l.runbook.steps.iter().find(|s| s.id == id));
        let flag = self.state_flag();
        let mut resume_command = format!("runbook resume {}{flag}", run.id);
        for f in env_files {
            resume_command.push_str(&format!(" --env-file {}", crate::exec::ssh::sh_quote(f)));
        }
        let sources: Vec<sources::Source> = match loaded {
            Some(l) => secret_sources(l, &env_files.iter().map(PathBuf::from).collect::<Vec<_>>()),
            None => vec![sources::Source::Environment],
        };
        // Secrets named by held or blocked steps, in runbook order.
        let mut names: Vec<String> = Vec::new();
        for s in steps
            .iter()
            .filter(|s| matches!(s.state, StepState::Held | StepState::Blocked))
        {
            for n in s.missing.iter().chain(&s.rejected) {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        if let Some(l) = loaded {
            names.sort_by_key(|n| l.runbook.secrets.get_index_of(n).unwrap_or(usize::MAX));
        }
        let downstream = |roots: &[String]| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            let mut frontier: Vec<String> = roots.to_vec();
            while let Some(id) = frontier.pop() {
                for s in steps
                    .iter()
                    .filter(|s| s.state == StepState::Blocked && s.needs.contains(&id))
                {
                    if !out.contains(&s.id) && !roots.contains(&s.id) {
                        out.push(s.id.clone());
                        frontier.push(s.id.clone());
                    }
                }
            }
            out
        };
        let mut owners: Vec<OwnerGroup> = Vec::new();
        for name in &names {
            let spec = loaded.and_then(|l| l.runbook.secrets.get(name));
            let row = secret_rows.iter().find(|r| &r.name == name);
            let status = row
                .map(|r| r.state)
                .filter(|s| !s.is_usable())
                .unwrap_or(SecretState::Missing);
            let found_in = row.and_then(|r| r.source.clone());
            let detail = row.and_then(|r| r.reason.clone()).unwrap_or_default();
            let reason = match status {
                SecretState::Rejected => format!(
                    "the value found in {} was refused by its check: `{detail}`; a new value is needed",
                    found_in.as_deref().unwrap_or("a source")
                ),
                SecretState::Unchecked => format!(
                    "the value found in {} could not be checked: {detail}; fix what stops the check, or supply a value that passes it",
                    found_in.as_deref().unwrap_or("a source")
                ),
                SecretState::Unavailable => format!(
                    "{detail} (fix that command, or add the entry it reads to the vault, then resume)"
                ),
                _ if detail.is_empty() || detail == "not set in any source" => "it is not set in any of the places below".to_string(),
                _ => detail,
            };
            let held_steps: Vec<String> = steps
                .iter()
                .filter(|s| {
                    s.state == StepState::Held
                        && (s.missing.contains(name) || s.rejected.contains(name))
                })
                .map(|s| s.id.clone())
                .collect();
            let mut blocked_steps = downstream(&held_steps);
            for s in steps.iter().filter(|s| {
                s.state == StepState::Blocked
                    && (s.missing.contains(name) || s.rejected.contains(name))
            }) {
                if !blocked_steps.contains(&s.id) {
                    blocked_steps.push(s.id.clone());
                }
            }
            let check = match (spec.and_then(|s| s.check.as_ref()), loaded) {
                (Some(c), Some(l)) => {
                    let placeholders: BTreeMap<String, String> = l
                        .runbook
                        .secrets
                        .keys()
                        .map(|k| (k.clone(), format!("${k}")))
                        .collect();
                    plan::render_http(&l.templater, &l.ctx.for_step("", &placeholders), &c.http).ok().map(|r| {
                        let wanted = match &r.expect.status {
                            Some(crate::runbook::model::StatusSet::One(s)) => s.to_string(),
                            Some(crate::runbook::model::StatusSet::Any(v)) => {
                                v.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
                            }
                            None => "2xx".into(),
                        };
                        format!("`{} {}` must answer with status {wanted}; it runs at the start of `runbook resume`", r.method, r.url)
                    })
                }
                _ => None,
            };
            let hosts = loaded
                .map(|l| host_targets(&l.runbook, &l.ctx))
                .unwrap_or_default();
            // A group's entry is each member's own file: only a step held
            // on one of its hosts reads it (a local step never does).
            let held_hosts: Vec<Option<&str>> = steps
                .iter()
                .filter(|s| held_steps.contains(&s.id))
                .map(|s| s.host.as_deref())
                .collect();
            let read_by_a_held_step = |src: &&sources::Source| match (src, loaded) {
                (sources::Source::Remote { host, .. }, Some(l))
                    if !held_hosts.is_empty() && !l.runbook.hosts.contains_key(host) =>
                {
                    l.runbook.groups.get(host).is_some_and(|members| {
                        held_hosts
                            .iter()
                            .any(|h| h.is_some_and(|h| members.iter().any(|m| m == h)))
                    }) || !l.runbook.groups.contains_key(host)
                }
                _ => true,
            };
            let from = spec.and_then(|s| s.from.as_ref()).map(|f| {
                let (command, _) = f.parts();
                loaded
                    .and_then(|l| {
                        l.templater
                            .render(command, &l.ctx.for_step("", &BTreeMap::new()))
                            .ok()
                    })
                    .unwrap_or_else(|| command.to_string())
            });
            let mut where_: Vec<String> = sources
                .iter()
                .filter(read_by_a_held_step)
                .filter(|src| {
                    from.is_none()
                        || matches!(
                            src,
                            sources::Source::Environment | sources::Source::EnvFileArg(_)
                        )
                })
                .map(|src| match src {
                    sources::Source::Environment => {
                        format!("the environment of whoever runs the resume command: `export {name}=...`")
                    }
                    sources::Source::EnvFileArg(p) => format!("`{}` (given with `--env-file`): a line `{name}=...`", p.display()),
                    sources::Source::Local(p) => format!("`{}` on the operator's machine: a line `{name}=...`", p.display()),
                    sources::Source::Command { command, .. } => format!("what `{command}` prints (a dotenv file): a line `{name}=...` in what it decrypts or reads"),
                    sources::Source::Remote { host, path } => {
                        let at = hosts
                            .iter()
                            .find(|h| &h.name == host)
                            .map(|h| {
                                format!(
                                    " ({}{}{})",
                                    h.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(),
                                    h.address,
                                    h.port.map(|p| format!(", port {p}")).unwrap_or_default()
                                )
                            })
                            .unwrap_or_default();
                        let group = loaded.filter(|l| {
                            l.runbook.groups.contains_key(host) && !l.runbook.hosts.contains_key(host)
                        });
                        match group {
                            Some(_) => format!("`{path}` on each host of group `{host}` (the host's own file): a line `{name}=...`"),
                            None => format!("`{path}` on host `{host}`{at}: a line `{name}=...`"),
                        }
                    }
                })
                .collect();
            if let Some(command) = from {
                where_.push(format!(
                    "what `{command}` prints (its `from`, run on the operator's machine): the value"
                ));
            }
            let owner = spec
                .and_then(|s| s.owner.clone())
                .unwrap_or_else(|| "the operator".into());
            // A hundred hosts held on one secret read as one line per step.
            let held_steps = report::fleet::short_ids(&held_steps);
            let blocked_steps = report::fleet::short_ids(&blocked_steps);
            let need = SecretNeed {
                name: name.clone(),
                description: spec.and_then(|s| s.description.clone()),
                status: status.to_string(),
                reason,
                found_in,
                sources: where_,
                check,
                held_steps,
                blocked_steps,
            };
            match owners.iter_mut().find(|g| g.owner == owner) {
                Some(g) => g.secrets.push(need),
                None => owners.push(OwnerGroup {
                    owner,
                    secrets: vec![need],
                }),
            }
        }
        let approvals = steps
            .iter()
            .filter(|s| {
                // Held, asks for an approval, and has none yet; without the
                // runbook at hand, a step held on no secret is held on one.
                let asks = match spec_of(&s.id) {
                    Some(spec) => spec.approval.is_some(),
                    None => s.missing.is_empty() && s.rejected.is_empty(),
                };
                s.state == StepState::Held
                    && asks
                    && store.approval(run.id, &s.id).ok().flatten().is_none()
            })
            .map(|s| ApprovalNeed {
                step: s.id.clone(),
                question: spec_of(&s.id)
                    .and_then(|st| {
                        let a = st.approval.as_deref()?;
                        let l = loaded?;
                        Some(
                            crate::plan::render_label(&l.templater, &l.ctx, st, a)
                                .unwrap_or_else(|_| a.to_string()),
                        )
                    })
                    .unwrap_or_else(|| format!("Approve step `{}`?", s.id)),
                command: format!(
                    "runbook approve {} {}{flag} --note \"why it is fine\"",
                    run.id, s.id
                ),
            })
            .collect();
        // The `doc` of every step not done (SPEC §6), so whoever picks the
        // run up reads what each one is for.
        let notes = steps
            .iter()
            .filter(|s| !matches!(s.state, StepState::Succeeded | StepState::Skipped))
            .filter_map(|s| {
                spec_of(&s.id)
                    .and_then(|st| st.spec.doc.clone())
                    .map(|doc| StepLine::new(s.id.clone(), doc))
            })
            .collect();
        let mut failed = Vec::new();
        let mut failed_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for s in steps
            .iter()
            .filter(|s| matches!(s.state, StepState::Failed | StepState::Interrupted))
        {
            // Past the first few instances of one step, only their names.
            if let Some(family) = report::fleet::family_of(&s.id) {
                let seen = failed_of.entry(family).or_default();
                seen.push(s.id.clone());
                if seen.len() > FAILED_SHOWN {
                    continue;
                }
            }
            let tail = if s.attempts > 0 {
                store.output(run.id, &s.id, s.attempts, Some(20))?
            } else {
                Vec::new()
            };
            failed.push(FailedStep {
                id: s.id.clone(),
                host: s.host.clone(),
                reason: s.reason.clone().unwrap_or_else(|| s.state.to_string()),
                output_tail: tail.into_iter().map(|(_, l)| l).collect(),
                logs_command: format!("runbook logs {} {}{flag}", run.id, s.id),
            });
        }
        for (family, ids) in failed_of.iter().filter(|(_, ids)| ids.len() > FAILED_SHOWN) {
            let rest = &ids[FAILED_SHOWN..];
            // The id is the step's (an id); the instances are named in prose.
            failed.push(FailedStep {
                id: family.to_string(),
                host: None,
                reason: format!(
                    "{} more instance{} failed ({}); `runbook status {}{flag} --hosts` lists them with their reasons",
                    rest.len(),
                    if rest.len() == 1 { "" } else { "s" },
                    report::fleet::short_ids(rest).join(", "),
                    run.id
                ),
                output_tail: Vec::new(),
                logs_command: format!("runbook logs {} {}{flag}", run.id, rest[0]),
            });
        }
        let line = |s: &StepRow| StepLine {
            step: None,
            hosts: Vec::new(),
            id: s.id.clone(),
            text: spec_of(&s.id)
                .and_then(|st| {
                    let title = st.spec.title.as_deref()?;
                    let l = loaded?;
                    Some(
                        crate::plan::render_label(&l.templater, &l.ctx, st, title)
                            .unwrap_or_else(|_| title.to_string()),
                    )
                })
                .or_else(|| s.reason.clone())
                .unwrap_or_default(),
        };
        Ok(Handoff {
            run_id: run.id,
            runbook: run.runbook.clone(),
            description: loaded.and_then(|l| l.runbook.description.clone()),
            state,
            started_at: run.started_at.clone(),
            finished_at: run.finished_at.clone(),
            done: collapse(
                steps
                    .iter()
                    .filter(|s| s.state.satisfies_needs())
                    .map(line)
                    .collect(),
            ),
            owners,
            approvals,
            failed,
            blocked: collapse(
                steps
                    .iter()
                    .filter(|s| s.state == StepState::Blocked)
                    .map(|s| StepLine::new(s.id.clone(), s.reason.clone().unwrap_or_default()))
                    .collect(),
            )
            .into_iter()
            .chain(not_started(steps))
            .collect(),
            notes: collapse(notes),
            resume_command,
            counts: report::handoff::Counts {
                done: steps.iter().filter(|s| s.state.satisfies_needs()).count(),
                waiting: steps.iter().filter(|s| s.state.is_waiting()).count(),
                failed: steps
                    .iter()
                    .filter(|s| s.state == StepState::Failed)
                    .count(),
                blocked: steps
                    .iter()
                    .filter(|s| s.state == StepState::Blocked)
                    .count(),
            },
        })
    }
}

/// The hosts a rolling block has not started (SPEC §15), one line per
/// reason: `rollout on web3: not started, max_fail 0 reached (web2 failed)`.
fn not_started(steps: &[crate::store::StepRow]) -> Vec<report::handoff::StepLine> {
    let mut out: Vec<report::handoff::StepLine> = Vec::new();
    for (block, hosts) in report::rolling::not_started(steps) {
        for h in hosts {
            let text = format!("{}; it goes once the hosts before it are through", h.reason);
            match out.iter_mut().find(|l| l.id == block && l.text == text) {
                Some(line) => line.hosts.push(h.host),
                None => out.push(report::handoff::StepLine {
                    id: block.clone(),
                    text,
                    step: Some(block.clone()),
                    hosts: vec![h.host],
                }),
            }
        }
    }
    out
}

/// Failed instances of one step shown with their output; the rest by name.
const FAILED_SHOWN: usize = 2;

/// Lines of instances of one step that say the same (a title, a doc, a
/// reason with the host's name in it or not) become one line naming them.
fn collapse(lines: Vec<report::handoff::StepLine>) -> Vec<report::handoff::StepLine> {
    // (step, its instances' lines as (id, text as written), the shared text)
    type Gathered = (String, Vec<(String, String)>, String);
    let mut out: Vec<Gathered> = Vec::new();
    for l in lines {
        let Some((family, host)) = l.id.split_once('@') else {
            out.push((l.id.clone(), vec![(l.id, l.text.clone())], l.text));
            continue;
        };
        // A reason that names the host's own instance reads the same for all.
        let text = l.text.replace(&format!("@{host}`"), "` on the same host");
        match out.iter_mut().find(|(f, _, t)| f == family && *t == text) {
            Some((_, ids, _)) => ids.push((l.id, l.text)),
            None => out.push((family.to_string(), vec![(l.id, l.text)], text)),
        }
    }
    out.into_iter()
        .map(|(family, mut ids, text)| {
            if ids.len() == 1 {
                let (id, written) = ids.remove(0);
                return report::handoff::StepLine::new(id, written);
            }
            let hosts = ids
                .iter()
                .filter_map(|(id, _)| id.split_once('@').map(|(_, h)| h.to_string()))
                .collect();
            report::handoff::StepLine {
                id: family.clone(),
                text,
                step: Some(family),
                hosts,
            }
        })
        .collect()
}
