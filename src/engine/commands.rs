//! The commands other than run/resume/handoff: status, approve, reset,
//! logs, validate, graph, list.

use std::collections::HashMap;

use super::*;

impl Ctx {
    /// `status`.
    pub fn status(&self, target: Target, json: bool, all_hosts: bool) -> Result<i32> {
        let store = self.existing_store()?;
        let view = self.status_view(&store, &target)?;
        if json {
            let doc = view.to_json();
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            print!(
                "{}{}{}",
                report::status::to_table(
                    &view.run,
                    view.state,
                    &view.steps,
                    &self.palette(),
                    all_hosts
                ),
                report::status::holder_line(view.holder.as_ref()),
                report::notify::status_lines(&view.notifications)
            );
            if let Some(to) = &view.run.moved_to {
                println!(
                    "moved to {to} (runbook state copy): resume it there with --state {}",
                    crate::exec::quote::sh_quote(to)
                );
            }
            for (step, a) in &view.approvals {
                println!("approved: {step} by {} at {}", a.by, a.at);
            }
        }
        Ok(exit::OK)
    }

    /// `approve`.
    pub fn approve(
        &self,
        run_id: i64,
        step: &str,
        note: Option<&str>,
        by: Option<&str>,
    ) -> Result<i32> {
        println!("{}", self.approve_as(run_id, step, note, by)?);
        Ok(exit::OK)
    }

    /// Records the approval of a step (or of each instance of a step on a
    /// group) by `by`, or by `user@host` of this process; returns the line
    /// `approve` prints.
    /// `runbook approve` and `runbook serve` both come here.
    pub fn approve_as(
        &self,
        run_id: i64,
        step: &str,
        note: Option<&str>,
        by: Option<&str>,
    ) -> Result<String> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, &Target::RunId(run_id))?;
        let steps = store.steps(run.id)?;
        let targets = step_or_instances(&steps, step);
        if targets.is_empty() {
            return Err(unknown_step(&run, step, &steps));
        }
        let written = report::fleet::family_of(step).unwrap_or(step);
        // An approval only means something for a step that asks for one.
        let path = handover::runbook_file(&self.cwd, &run, None);
        if let Ok((file, _)) = path.and_then(|p| load::load(&p)) {
            let asks = file
                .steps
                .iter()
                .find(|s| s.id == written)
                .map(|s| s.approval.is_some());
            if asks == Some(false) {
                return Err(Error::Usage(format!(
                    "step `{step}` of run {} does not ask for approval (it has no `approval:`); \
                     `runbook status {}` shows the steps that wait for one",
                    run.id, run.id
                )));
            }
        }
        let user = match by.map(str::trim) {
            Some("") => {
                return Err(Error::Usage(
                    "--by needs a name (who approves, e.g. --by lukas)".into(),
                ))
            }
            Some(name) => name.to_string(),
            None => user_at_host(),
        };
        for target in &targets {
            store.approve(run.id, target, &user, note)?;
        }
        let what = match targets.len() {
            1 => format!("`{}`", targets[0]),
            n => format!("`{step}` on {n} hosts"),
        };
        // An engine waiting on the run (`--wait`) takes it up by itself: a
        // live holder of a run stored as held is one (SQLite's lock does not
        // record the waiting; PostgreSQL's lease does).
        let waiting = |h: &crate::store::LockHolder| h.waiting || run.state == RunState::Held;
        if let Some(h) = store.live_holder(run.id)?.filter(waiting) {
            return Ok(format!(
                "approved {what} of run {} as {user}; the engine waiting on it ({}, pid {}) goes on by itself",
                run.id,
                h.who(),
                h.pid
            ));
        }
        Ok(format!(
            "approved {what} of run {} as {user}; continue with: runbook resume {}{}",
            run.id,
            run.id,
            self.state_flag()
        ))
    }

    /// `reset`.
    pub fn reset(&self, run_id: i64, step: &str) -> Result<i32> {
        let (run_id, reset) = self.reset_steps(run_id, step)?;
        println!(
            "reset {} of run {run_id} to pending: {}",
            crate::report::count(reset.len(), "step"),
            reset.join(", ")
        );
        println!(
            "continue with: runbook resume {run_id}{}",
            self.state_flag()
        );
        Ok(exit::OK)
    }

    /// Sends a step and all that depends on it back to pending, unless a
    /// live engine holds the run; returns the steps reset. `runbook reset`
    /// and `runbook serve` both come here.
    pub fn reset_steps(&self, run_id: i64, step: &str) -> Result<(i64, Vec<String>)> {
        let mut store = self.existing_store()?;
        let run = self.find_run(&store, &Target::RunId(run_id))?;
        let me = super::lease::me(false)?;
        store.lock_run(run.id, &me)?;
        let mut steps = store.steps(run.id)?;
        let mut reset = step_or_instances(&steps, step);
        // A rolling block: the whole rollout, every host's instances.
        reset.extend(block_instances(&steps, step));
        if reset.is_empty() {
            let _ = store.unlock_run(run.id, &me);
            return Err(unknown_step(&run, step, &steps));
        }
        let mut i = 0;
        while i < reset.len() {
            let current = reset[i].clone();
            for s in &steps {
                if s.needs.contains(&current) && !reset.contains(&s.id) {
                    reset.push(s.id.clone());
                }
            }
            i += 1;
        }
        if let Err(e) = self.stop_remote(&store, &run, &reset) {
            let _ = store.unlock_run(run.id, &me);
            return Err(e);
        }
        for s in steps.iter_mut().filter(|s| reset.contains(&s.id)) {
            s.state = StepState::Pending;
            s.reason = Some(format!("reset (with `{step}`)"));
            s.fingerprint = None;
        }
        store.save_steps(run.id, &steps, false)?;
        store.set_run_state(run.id, RunState::Interrupted)?;
        store.unlock_run(run.id, &me)?;
        Ok((run.id, reset))
    }

    /// Stops what the given steps still run on their hosts (started by an
    /// engine that died: SPEC §8) and forgets their spools.
    fn stop_remote(&self, store: &Store, run: &RunRow, steps: &[String]) -> Result<()> {
        let mut spools = Vec::new();
        for id in steps {
            if let Some(spool) = store.spool(run.id, id)? {
                spools.push((id.clone(), spool));
            }
        }
        if spools.is_empty() {
            return Ok(());
        }
        let path = handover::runbook_file(&self.cwd, run, None)?;
        let loaded = self.load(&path, &run.vars, run.id)?;
        let execs = executors(&loaded)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the async runtime", e))?;
        let result = runtime.block_on(async {
            for (id, spool) in &spools {
                if let Err(e) = execs.ssh.stop_spool(&spool.host, &spool.base).await {
                    return Err(Error::Usage(format!(
                        "step `{id}` of run {} may still run on `{}` and could not be stopped there: {}; reset again once the host can be reached",
                        run.id, spool.host, e.0
                    )));
                }
                store.drop_spool(run.id, id)?;
                println!("stopped `{id}` on `{}`", spool.host);
            }
            Ok(())
        });
        runtime.block_on(execs.ssh.close());
        result
    }

    /// `logs`.
    pub fn logs(&self, run_id: i64, step: &str, attempt: Option<i64>) -> Result<i32> {
        use std::io::Write;
        let lines = self.log_lines(run_id, step, attempt)?;
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        Ok(exit::OK)
    }

    /// The captured lines `logs` prints, of the latest attempt or of `attempt`.
    pub fn log_lines(&self, run_id: i64, step: &str, attempt: Option<i64>) -> Result<Vec<String>> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, &Target::RunId(run_id))?;
        let steps = store.steps(run.id)?;
        let block = block_instances(&steps, step);
        if !block.is_empty() {
            return instance_lines(&store, run.id, &steps, &block, attempt);
        }
        let Some(row) = steps.iter().find(|s| s.id == step) else {
            let instances = step_or_instances(&steps, step);
            if instances.is_empty() {
                return Err(unknown_step(&run, step, &steps));
            }
            return instance_lines(&store, run.id, &steps, &instances, attempt);
        };
        if row.attempts < 1 {
            // As for a fleet's instance that has not started.
            return match attempt {
                None => Ok(vec![format!("({step} has not started: it is {})", row.state)]),
                Some(n) => Err(Error::Usage(format!(
                    "step `{step}` of run {} has not started (it is {}): there is no attempt {n} to show",
                    run.id, row.state
                ))),
            };
        }
        let attempt = attempt.unwrap_or(row.attempts);
        if attempt < 1 || attempt > row.attempts {
            return Err(Error::Usage(format!(
                "step `{step}` of run {} has {}; pick --attempt 1..={}",
                run.id,
                crate::report::count(row.attempts.max(0) as usize, "attempt"),
                row.attempts
            )));
        }
        Ok(store
            .output(run.id, step, attempt, None)?
            .into_iter()
            .map(|(_, line)| line)
            .collect())
    }

    /// `validate`.
    pub fn validate(&self, name: &str, vars: &[(String, String)]) -> Result<i32> {
        let path = load::resolve(name, &self.cwd)?;
        let (file, source) = load::load(&path)?;
        validate::check_var_names(&file, &source, vars)?;
        let loaded = self.load(&path, vars, 0)?;
        let r = &loaded.runbook;
        // The steps as written; a step on a group is one, its instances apart.
        let written = r
            .steps
            .iter()
            .map(|s| s.source)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // A rolling block is a step as written, and no instance.
        let blocks = r
            .steps
            .iter()
            .filter(|s| crate::runbook::rolling::is_block(&s.spec))
            .count();
        let (written, all) = (written - blocks, r.steps.len() - blocks);
        let instances = if written == all {
            String::new()
        } else {
            format!(" ({})", report::count(all, "instance"))
        };
        let blocks = if blocks == 0 {
            String::new()
        } else {
            format!(", {}", report::count(blocks, "rolling block"))
        };
        println!(
            "{}: ok ({}{instances}{blocks}, {}, {}){}",
            path.display(),
            report::count(written, "step"),
            report::count(r.hosts.len(), "host"),
            report::count(r.secrets.len(), "secret"),
            r.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        Ok(exit::OK)
    }

    /// `graph`.
    pub fn graph(&self, name: &str, format: GraphFormat, run: Option<i64>) -> Result<i32> {
        let path = load::resolve(name, &self.cwd)?;
        let loaded = self.load(&path, &[], 0)?;
        let states: HashMap<String, StepState> = match run {
            None => HashMap::new(),
            Some(id) => {
                let store = self.existing_store()?;
                let run = self.find_run(&store, &Target::RunId(id))?;
                let mut steps = store.steps(run.id)?;
                let alive = store.live_holder(run.id)?.is_some();
                run.effective_state(&mut steps, alive);
                steps.into_iter().map(|s| (s.id, s.state)).collect()
            }
        };
        let titles: HashMap<String, String> = loaded
            .runbook
            .steps
            .iter()
            .filter_map(|st| {
                let title = st.spec.title.as_deref()?;
                let text = plan::render_label(&loaded.templater, &loaded.ctx, st, title)
                    .unwrap_or_else(|_| title.to_string());
                Some((st.spec.id.clone(), text))
            })
            .collect();
        print!(
            "{}",
            report::graph::render(&loaded.runbook, &titles, format, &states)
        );
        Ok(exit::OK)
    }

    /// `list`.
    pub fn list(&self) -> Result<i32> {
        let found = load::list(&self.cwd);
        if found.is_empty() {
            println!("no runbooks under {}", self.cwd.join("runbooks").display());
        } else {
            println!("runbooks:");
            for (name, path) in &found {
                let rel = path.strip_prefix(&self.cwd).unwrap_or(path);
                println!("  {name:<24} {}", rel.display());
            }
        }
        if let Some(store) = Store::open_existing_at(&self.state)? {
            let runs = store.recent_runs(10)?;
            if !runs.is_empty() {
                println!("recent runs:");
                for run in runs {
                    // A run `reset` sent steps of back to pending is
                    // `interrupted` (SPEC §3), but nothing stopped it.
                    let mut state = run.state.as_str();
                    if run.state == RunState::Interrupted {
                        let steps = store.steps(run.id)?;
                        let stopped = steps.iter().any(|s| s.state == StepState::Interrupted);
                        if !stopped && steps.iter().any(report::status::was_reset) {
                            state = "reset";
                        }
                    }
                    println!(
                        "  {:>5}  {:<24} {:<12} {}",
                        run.id, run.runbook, state, run.started_at
                    );
                }
            }
        }
        Ok(exit::OK)
    }
}

/// The step named, or, for a step on a group named without a host, each
/// of its instances; empty when the run has neither.
/// `logs` of a step on a group: each instance's output under its host's
/// name (`== web1 (deploy@web1) ==`), in host order; the latest attempt of
/// each, or attempt `attempt` where it has one.
fn instance_lines(
    store: &Store,
    run_id: i64,
    steps: &[StepRow],
    instances: &[String],
    attempt: Option<i64>,
) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for id in instances {
        let Some(row) = steps.iter().find(|s| &s.id == id) else {
            continue;
        };
        let host = id.split_once('@').map(|(_, h)| h).unwrap_or(id);
        lines.push(format!("== {host} ({id}) =="));
        let n = attempt.unwrap_or(row.attempts);
        if row.attempts == 0 {
            lines.push(format!("({id} has not started)"));
        } else if n < 1 || n > row.attempts {
            lines.push(format!(
                "({id} has {}; no attempt {n})",
                crate::report::count(row.attempts.max(0) as usize, "attempt")
            ));
        } else {
            lines.extend(
                store
                    .output(run_id, id, n, None)?
                    .into_iter()
                    .map(|(_, l)| l),
            );
        }
    }
    Ok(lines)
}

/// The instances of a rolling block's inner steps (SPEC §15), host by
/// host in the block's order, each host's in step order; empty when `step`
/// is no block.
fn block_instances(steps: &[StepRow], step: &str) -> Vec<String> {
    let mut inner: Vec<&StepRow> = steps
        .iter()
        .filter(|s| s.block.as_deref() == Some(step) && s.id != step)
        .collect();
    let mut hosts: Vec<&str> = Vec::new();
    for s in &inner {
        if let Some(h) = s.host.as_deref().filter(|h| !hosts.contains(h)) {
            hosts.push(h);
        }
    }
    inner.sort_by_key(|s| hosts.iter().position(|h| Some(*h) == s.host.as_deref()));
    inner.into_iter().map(|s| s.id.clone()).collect()
}

fn step_or_instances(steps: &[StepRow], step: &str) -> Vec<String> {
    if steps.iter().any(|s| s.id == step) {
        return vec![step.to_string()];
    }
    steps
        .iter()
        .filter(|s| report::fleet::family_of(&s.id) == Some(step))
        .map(|s| s.id.clone())
        .collect()
}

/// `user@host` of this process: who an approval is recorded under.
pub fn user_at_host() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{}@{host}", os_user())
}

/// The OS user running this process.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}
