//! The commands, put together from the layers: load → validate → plan →
//! store → scheduler → reports.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{Cli, GraphFormat, RunArgs};
use crate::error::{exit, Error, Result};
use crate::events::Event;
use crate::exec;
use crate::plan::{self, Plan, Rendered};
use crate::report::live::LiveReporter;
use crate::report::plain::PlainReporter;
use crate::report::style::{ColorChoice, Palette};
use crate::report::Verbosity;
use crate::report::{self, JsonReporter, Reporter};
use crate::runbook::template::{Context, Templater};
use crate::runbook::{load, validate, Runbook};
use crate::scheduler::{self, Gate, Hold};
use crate::secrets::{self, Redactor};
use crate::state::{RunState, StepState};
use crate::store::{ProcessId, RunRow, SecretRow, StepRow, Store};

/// Which run a command is about.
#[derive(Debug, Clone)]
pub enum Target {
    /// The latest run of any runbook.
    Latest,
    /// A runbook name or path.
    Name(String),
    /// A run id.
    RunId(i64),
}

impl Target {
    /// `None` → latest; digits → run id; anything else → a name.
    pub fn parse(arg: Option<String>) -> Target {
        match arg {
            None => Target::Latest,
            Some(a) => match a.parse::<i64>() {
                Ok(id) => Target::RunId(id),
                Err(_) => Target::Name(a),
            },
        }
    }
}

/// What every command needs: where the state lives, how loud to be.
pub struct Ctx {
    state: PathBuf,
    cwd: PathBuf,
    verbosity: Verbosity,
    color: ColorChoice,
}

/// A runbook loaded, validated and planned.
struct Loaded {
    runbook: Runbook,
    plan: Plan,
    templater: Templater,
    ctx: Context,
}

impl Ctx {
    /// From the global options.
    pub fn new(cli: &Cli) -> Result<Ctx> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", e))?;
        let state = cli
            .state
            .clone()
            .unwrap_or_else(|| PathBuf::from("state/runbook.db"));
        let verbosity = if cli.quiet {
            Verbosity::Quiet
        } else if cli.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Ok(Ctx {
            state: cwd.join(state),
            cwd,
            verbosity,
            color: cli.color,
        })
    }

    fn open_store(&self) -> Result<Store> {
        Store::open(&self.state)
    }

    fn existing_store(&self) -> Result<Store> {
        Store::open_existing(&self.state)?.ok_or_else(|| {
            Error::Usage(format!(
                "no state file at {}: nothing has run here yet (start with `runbook run NAME`)",
                self.state.display()
            ))
        })
    }

    fn load(&self, path: &Path, vars: &[(String, String)], run_id: i64) -> Result<Loaded> {
        let (file, source) = load::load(path)?;
        let runbook = validate::validate(file, source, vars)?;
        let templater = Templater::new();
        let ctx = context(&runbook, &templater, run_id);
        let plan = plan::build(&runbook, &ctx, &templater)?;
        Ok(Loaded {
            runbook,
            plan,
            templater,
            ctx,
        })
    }

    /// Finds the run a target names.
    fn find_run(&self, store: &Store, target: &Target) -> Result<RunRow> {
        let found = match target {
            Target::Latest => store.latest_run(None)?,
            Target::RunId(id) => store.run(*id)?,
            Target::Name(name) => {
                let runbook_name = match load::resolve(name, &self.cwd) {
                    Ok(path) => load::load(&path)
                        .map(|(f, s)| runbook_name(f.name.as_deref(), &s.path))
                        .unwrap_or_else(|_| name.clone()),
                    Err(_) => name.clone(),
                };
                store.latest_run(Some(&runbook_name))?
            }
        };
        found.ok_or_else(|| match target {
            Target::RunId(id) => Error::Usage(format!(
                "no run {id} in {}; `runbook list` shows the recent runs",
                self.state.display()
            )),
            Target::Name(n) => Error::Usage(format!(
                "runbook `{n}` has no runs yet; start one with `runbook run {n}`"
            )),
            Target::Latest => Error::Usage("no runs yet; start one with `runbook run NAME`".into()),
        })
    }

    /// `run` and `resume`.
    /// `run` (`resume` false) and `resume` (`resume` true: the target names
    /// a run, by id or by its runbook's name, and its stored file is used).
    pub fn run(&self, target: Target, fresh: bool, args: RunArgs, resume: bool) -> Result<i32> {
        let starts_new = matches!(target, Target::Name(_)) && !resume;
        let (path, previous) = match &target {
            Target::Name(name) if !resume => (load::resolve(name, &self.cwd)?, None),
            other => {
                let store = self.existing_store()?;
                let run = self.find_run(&store, other)?;
                (PathBuf::from(&run.path), Some(run))
            }
        };
        let name_for_lookup = {
            let (file, source) = load::load(&path)?;
            runbook_name(file.name.as_deref(), &source.path)
        };
        // The vars a resumed run started with, plus the ones given now.
        let previous = match previous {
            Some(run) => Some(run),
            None if fresh => None,
            None => Store::open_existing(&self.state)?
                .and_then(|s| s.latest_run(Some(&name_for_lookup)).ok().flatten())
                .filter(|r| r.state.is_unfinished()),
        };
        let mut vars = previous
            .as_ref()
            .map(|r| r.vars.clone())
            .unwrap_or_default();
        vars.retain(|(k, _)| !args.vars.iter().any(|(n, _)| n == k));
        vars.extend(args.vars.iter().cloned());
        let loaded = self.load(&path, &vars, previous.as_ref().map(|r| r.id).unwrap_or(0))?;
        for file in &args.env_files {
            if !file.is_file() {
                return Err(Error::Usage(format!(
                    "--env-file {} does not exist",
                    file.display()
                )));
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the async runtime", e))?;

        if args.dry_run {
            return runtime.block_on(self.dry_run(&loaded, previous.as_ref(), &args));
        }

        let mut store = self.open_store()?;
        let me = ProcessId::current();
        let (run, resumed) = match &target {
            Target::Name(_) if starts_new => store.begin_run(
                &loaded.runbook.name,
                &path.to_string_lossy(),
                &vars,
                fresh,
                &me,
            )?,
            _ => {
                let run = previous
                    .clone()
                    .ok_or_else(|| Error::Usage("no run to resume".into()))?;
                store.lock_run(run.id, &me)?;
                store.set_run_state(run.id, RunState::Running)?;
                (run, true)
            }
        };
        let result = runtime.block_on(self.run_locked(
            &mut store, &run, resumed, fresh, loaded, &args, &path, &vars,
        ));
        let _ = store.unlock_run(run.id, &me);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_locked(
        &self,
        store: &mut Store,
        run: &RunRow,
        resumed: bool,
        fresh: bool,
        loaded: Loaded,
        args: &RunArgs,
        path: &Path,
        vars: &[(String, String)],
    ) -> Result<i32> {
        // Templates (in the runbook or in uploaded files) may name run.id:
        // render again with the real one.
        let loaded = if loaded.ctx.run_id == run.id {
            loaded
        } else {
            self.load(path, vars, run.id)?
        };
        let rows = scheduler::prepare_rows(store, run.id, &loaded.plan, fresh && !resumed)?;
        let execs = Arc::new(executors(&loaded));
        let needed = needed_secrets(&loaded, &rows);
        let secrets = resolve_secrets(&loaded, &execs, &args.env_files, &needed).await;
        let env_files: Vec<String> = args
            .env_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        store.save_secrets(run.id, &secrets.rows, &env_files)?;
        let palette = self.palette();
        let flag = self.state_flag();
        let mut reporter: Box<dyn Reporter> = if args.json {
            Box::new(JsonReporter)
        } else if std::io::stdout().is_terminal() && self.verbosity != Verbosity::Quiet {
            Box::new(LiveReporter::new(self.verbosity, palette, &flag))
        } else {
            Box::new(PlainReporter::new(self.verbosity, palette, &flag))
        };
        reporter.event(&Event::RunStarted {
            run_id: run.id,
            runbook: loaded.runbook.name.clone(),
            resumed,
            steps: rows.len(),
            done: rows.iter().filter(|r| r.state.satisfies_needs()).count(),
        });
        let approvals = rows
            .iter()
            .filter_map(|r| {
                store
                    .approval(run.id, &r.id)
                    .ok()
                    .flatten()
                    .map(|_| r.id.clone())
            })
            .collect();
        let redactor = Arc::new(secrets.lookup.values.redactor());
        let mut gate = EngineGate {
            loaded: &loaded,
            secrets: &secrets,
            approvals,
            redactor,
        };
        let options = scheduler::Options {
            jobs: args.jobs as usize,
            execs: execs.clone(),
        };
        let state = scheduler::run_pass(
            &loaded.plan,
            store,
            run.id,
            rows,
            &mut gate,
            reporter.as_mut(),
            &options,
        )
        .await;
        drop(options);
        if let Ok(execs) = Arc::try_unwrap(execs) {
            execs.ssh.close().await;
        }
        Ok(state?.exit_code())
    }

    async fn dry_run(
        &self,
        loaded: &Loaded,
        previous: Option<&RunRow>,
        args: &RunArgs,
    ) -> Result<i32> {
        let existing = Store::open_existing(&self.state)?;
        let (stored, approvals): (HashMap<String, StepRow>, HashMap<String, String>) =
            match (previous, &existing) {
                (Some(run), Some(store)) => {
                    let stored: HashMap<String, StepRow> = store
                        .steps(run.id)?
                        .into_iter()
                        .map(|r| (r.id.clone(), r))
                        .collect();
                    let approvals = stored
                        .keys()
                        .filter_map(|id| {
                            let a = store.approval(run.id, id).ok().flatten()?;
                            let note = a.note.map(|n| format!(": {n}")).unwrap_or_default();
                            Some((
                                id.clone(),
                                format!("approved by {} at {}{note}", a.by, a.at),
                            ))
                        })
                        .collect();
                    (stored, approvals)
                }
                _ => (HashMap::new(), HashMap::new()),
            };
        let plan = &loaded.plan;
        let done = |i: usize| {
            let step = &plan.steps[i];
            stored.get(&step.id).is_some_and(|r| {
                r.state.satisfies_needs()
                    && r.fingerprint.as_deref() == Some(step.fingerprint.as_str())
            })
        };
        let needed: Vec<String> = {
            let mut n: Vec<String> = (0..plan.steps.len())
                .filter(|&i| !done(i))
                .flat_map(|i| plan.steps[i].requires.clone())
                .collect();
            n.sort();
            n.dedup();
            n
        };
        let execs = executors(loaded);
        let secrets = resolve_secrets(loaded, &execs, &args.env_files, &needed).await;
        execs.ssh.close().await;
        match previous {
            Some(run) => println!(
                "dry run: would resume run {} of {} ({})",
                run.id, loaded.runbook.name, run.state
            ),
            None => println!("dry run: would start a new run of {}", loaded.runbook.name),
        }
        for row in &secrets.rows {
            let place = row
                .source
                .as_deref()
                .map(|s| format!(" in {s}"))
                .unwrap_or_default();
            let why = row
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!("  secret {:<24} {}{place}{why}", row.name, row.state);
        }
        let mut verdict: Vec<&'static str> = vec![""; plan.steps.len()];
        let mut lines = vec![String::new(); plan.steps.len()];
        for node in petgraph::algo::toposort(&plan.graph, None).unwrap_or_default() {
            let i = plan.graph[node];
            let step = &plan.steps[i];
            let hold = secrets.hold_for(&step.requires);
            let (v, why) = if done(i) {
                ("done", String::new())
            } else if step
                .needs
                .iter()
                .any(|&n| matches!(verdict[n], "held" | "blocked"))
            {
                ("blocked", "a step it needs would be held".to_string())
            } else if hold.is_held() {
                ("held", hold.reason())
            } else if loaded.runbook.steps[i].approval.is_some()
                && !approvals.contains_key(&step.id)
            {
                ("held", "waiting for approval".to_string())
            } else if !step.rendered.when {
                ("skipped", "`when` is false".to_string())
            } else if let Some(approved) = approvals.get(&step.id) {
                ("run", approved.clone())
            } else {
                (
                    "run",
                    step.host
                        .as_deref()
                        .map(|h| format!("on {h}"))
                        .unwrap_or_default(),
                )
            };
            verdict[i] = v;
            let label = match v {
                "run" => "would run",
                "done" => "done",
                "held" => "would be held",
                "blocked" => "would be blocked",
                _ => "would be skipped",
            };
            let why = if why.is_empty() {
                String::new()
            } else {
                format!("  ({why})")
            };
            lines[i] = format!("  {label:<17} {}{why}", step.id);
        }
        for line in lines {
            println!("{line}");
        }
        println!("nothing was changed");
        Ok(exit::OK)
    }

    /// `status`.
    pub fn status(&self, target: Target, json: bool) -> Result<i32> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, &target)?;
        let mut steps = store.steps(run.id)?;
        let alive = store.live_holder(run.id)?.is_some();
        let state = report::status::effective(&run, &mut steps, alive);
        if json {
            let doc = report::status::to_json(&run, state, &steps);
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            print!(
                "{}",
                report::status::to_table(&run, state, &steps, &self.palette())
            );
        }
        Ok(exit::OK)
    }

    /// `handoff`.
    pub fn handoff(&self, target: Target, output: Option<PathBuf>, json: bool) -> Result<i32> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, &target)?;
        let mut steps = store.steps(run.id)?;
        let alive = store.live_holder(run.id)?.is_some();
        let state = report::status::effective(&run, &mut steps, alive);
        let (secret_rows, env_files) = store.secrets(run.id)?;
        // The runbook gives descriptions, owners, sources and docs; the page
        // still says what the state knows when the file no longer loads.
        let loaded = self.load(Path::new(&run.path), &run.vars, run.id).ok();
        let page = self.build_handoff(
            &store,
            &run,
            state,
            &steps,
            &secret_rows,
            &env_files,
            loaded.as_ref(),
        )?;
        let text = if json {
            serde_json::to_string_pretty(&page).unwrap_or_default() + "\n"
        } else {
            report::handoff::to_markdown(&page)
        };
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

    /// Colours for stdout.
    fn palette(&self) -> Palette {
        Palette {
            color: self.color.enabled(std::io::stdout().is_terminal()),
        }
    }

    /// The global options a printed command needs to find this state again.
    fn state_flag(&self) -> String {
        let default = self.cwd.join("state/runbook.db");
        if self.state == default {
            String::new()
        } else {
            format!(
                " --state {}",
                crate::exec::ssh::sh_quote(&self.state.display().to_string())
            )
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build_handoff(
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
        let spec_of =
            |id: &str| loaded.and_then(|l| l.runbook.steps.iter().find(|s| s.spec.id == id));
        let flag = self.state_flag();
        let mut resume_command = format!("runbook resume {}{flag}", run.id);
        for f in env_files {
            resume_command.push_str(&format!(" --env-file {}", crate::exec::ssh::sh_quote(f)));
        }
        let sources: Vec<secrets::Source> = match loaded {
            Some(l) => secret_sources(l, &env_files.iter().map(PathBuf::from).collect::<Vec<_>>()),
            None => vec![secrets::Source::Environment],
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
                .map(|r| r.state.clone())
                .filter(|s| s != "found" && s != "accepted")
                .unwrap_or_else(|| "missing".into());
            let found_in = row.and_then(|r| r.source.clone());
            let detail = row.and_then(|r| r.reason.clone()).unwrap_or_default();
            let reason = match status.as_str() {
                "rejected" => format!(
                    "the value found in {} was refused by its check: `{detail}`; a new value is needed",
                    found_in.as_deref().unwrap_or("a source")
                ),
                "unchecked" => format!(
                    "the value found in {} could not be checked: {detail}; fix what stops the check, or supply a value that passes it",
                    found_in.as_deref().unwrap_or("a source")
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
            let where_: Vec<String> = sources
                .iter()
                .map(|src| match src {
                    secrets::Source::Environment => {
                        format!("the environment of whoever runs the resume command: `export {name}=...`")
                    }
                    secrets::Source::EnvFileArg(p) => format!("`{}` (given with `--env-file`): a line `{name}=...`", p.display()),
                    secrets::Source::Local(p) => format!("`{}` on the operator's machine: a line `{name}=...`", p.display()),
                    secrets::Source::Remote { host, path } => {
                        let at = hosts
                            .iter()
                            .find(|h| &h.name == host)
                            .map(|h| {
                                format!(
                                    " ({}{}, port {})",
                                    h.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(),
                                    h.address,
                                    h.port.unwrap_or(22)
                                )
                            })
                            .unwrap_or_default();
                        format!("`{path}` on host `{host}`{at}: a line `{name}=...`")
                    }
                })
                .collect();
            let owner = spec
                .and_then(|s| s.owner.clone())
                .unwrap_or_else(|| "the operator".into());
            let need = SecretNeed {
                name: name.clone(),
                description: spec.and_then(|s| s.description.clone()),
                status,
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
                s.state == StepState::Held
                    && s.reason
                        .as_deref()
                        .unwrap_or("")
                        .contains("waiting for approval")
            })
            .map(|s| ApprovalNeed {
                step: s.id.clone(),
                question: spec_of(&s.id)
                    .and_then(|st| st.approval.clone())
                    .unwrap_or_else(|| format!("Approve step `{}`?", s.id)),
                command: format!(
                    "runbook approve {} {}{flag} --note \"why it is fine\"",
                    run.id, s.id
                ),
            })
            .collect();
        let notes = steps
            .iter()
            .filter(|s| report::handoff::is_waiting(s.state))
            .filter_map(|s| {
                spec_of(&s.id)
                    .and_then(|st| st.spec.doc.clone())
                    .map(|doc| StepLine {
                        id: s.id.clone(),
                        text: doc,
                    })
            })
            .collect();
        let mut failed = Vec::new();
        for s in steps
            .iter()
            .filter(|s| matches!(s.state, StepState::Failed | StepState::Interrupted))
        {
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
        let line = |s: &StepRow| StepLine {
            id: s.id.clone(),
            text: spec_of(&s.id)
                .and_then(|st| {
                    let title = st.spec.title.as_deref()?;
                    let l = loaded?;
                    let c = l.ctx.for_step(&st.spec.id, &BTreeMap::new());
                    Some(
                        l.templater
                            .render(title, &c)
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
            done: steps
                .iter()
                .filter(|s| s.state.satisfies_needs())
                .map(line)
                .collect(),
            owners,
            approvals,
            failed,
            blocked: steps
                .iter()
                .filter(|s| s.state == StepState::Blocked)
                .map(|s| StepLine {
                    id: s.id.clone(),
                    text: s.reason.clone().unwrap_or_default(),
                })
                .collect(),
            notes,
            resume_command,
        })
    }

    /// `approve`.
    pub fn approve(&self, run_id: i64, step: &str, note: Option<&str>) -> Result<i32> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, &Target::RunId(run_id))?;
        let steps = store.steps(run.id)?;
        if !steps.iter().any(|s| s.id == step) {
            return Err(unknown_step(&run, step, &steps));
        }
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
        store.approve(run.id, step, &user, note)?;
        println!(
            "approved `{step}` of run {} as {user}; continue with: runbook resume {}",
            run.id, run.id
        );
        Ok(exit::OK)
    }

    /// `reset`.
    pub fn reset(&self, run_id: i64, step: &str) -> Result<i32> {
        let mut store = self.existing_store()?;
        let run = self.find_run(&store, &Target::RunId(run_id))?;
        let me = ProcessId::current();
        store.lock_run(run.id, &me)?;
        let mut steps = store.steps(run.id)?;
        if !steps.iter().any(|s| s.id == step) {
            let _ = store.unlock_run(run.id, &me);
            return Err(unknown_step(&run, step, &steps));
        }
        let mut reset = vec![step.to_string()];
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
        for s in steps.iter_mut().filter(|s| reset.contains(&s.id)) {
            s.state = StepState::Pending;
            s.reason = Some(format!("reset (with `{step}`)"));
            s.fingerprint = None;
        }
        store.save_steps(run.id, &steps, false)?;
        store.set_run_state(run.id, RunState::Interrupted)?;
        store.unlock_run(run.id, &me)?;
        println!(
            "reset {} step(s) of run {} to pending: {}",
            reset.len(),
            run.id,
            reset.join(", ")
        );
        println!("continue with: runbook resume {}", run.id);
        Ok(exit::OK)
    }

    /// `logs`.
    pub fn logs(&self, run_id: i64, step: &str, attempt: Option<i64>) -> Result<i32> {
        let store = self.existing_store()?;
        let run = self.find_run(&store, &Target::RunId(run_id))?;
        let steps = store.steps(run.id)?;
        let Some(row) = steps.iter().find(|s| s.id == step) else {
            return Err(unknown_step(&run, step, &steps));
        };
        let attempt = attempt.unwrap_or(row.attempts);
        if attempt < 1 || attempt > row.attempts {
            return Err(Error::Usage(format!(
                "step `{step}` of run {} has {} attempt(s); pick --attempt 1..={}",
                run.id, row.attempts, row.attempts
            )));
        }
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (_, line) in store.output(run.id, step, attempt, None)? {
            let _ = writeln!(out, "{line}");
        }
        Ok(exit::OK)
    }

    /// `validate`.
    pub fn validate(&self, name: &str, vars: &[(String, String)]) -> Result<i32> {
        let path = load::resolve(name, &self.cwd)?;
        let loaded = self.load(&path, vars, 0)?;
        let r = &loaded.runbook;
        println!(
            "{}: ok ({} steps, {} hosts, {} secrets){}",
            path.display(),
            r.steps.len(),
            r.hosts.len(),
            r.secrets.len(),
            r.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        let _ = (&loaded.templater, &loaded.ctx);
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
                report::status::effective(&run, &mut steps, alive);
                steps.into_iter().map(|s| (s.id, s.state)).collect()
            }
        };
        print!(
            "{}",
            report::graph::render(&loaded.runbook, format, &states)
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
        if let Some(store) = Store::open_existing(&self.state)? {
            let runs = store.recent_runs(10)?;
            if !runs.is_empty() {
                println!("recent runs:");
                for run in runs {
                    println!(
                        "  {:>5}  {:<24} {:<12} {}",
                        run.id,
                        run.runbook,
                        run.state.as_str(),
                        run.started_at
                    );
                }
            }
        }
        Ok(exit::OK)
    }
}

fn unknown_step(run: &RunRow, step: &str, steps: &[StepRow]) -> Error {
    let hint = validate::nearest(step, steps.iter().map(|s| s.id.as_str()))
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default();
    Error::Usage(format!("run {} has no step `{step}`{hint}", run.id))
}

fn runbook_name(declared: Option<&str>, path: &Path) -> String {
    if let Some(n) = declared {
        return n.to_string();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if stem == "runbook" {
        if let Some(dir) = path.parent().and_then(|p| p.file_name()) {
            return dir.to_string_lossy().to_string();
        }
    }
    stem
}

/// Where each host is, with its address rendered and `~` expanded.
fn host_targets(runbook: &Runbook, ctx: &Context) -> Vec<exec::ssh::HostTarget> {
    let base = ctx.for_step("", &BTreeMap::new());
    let templater = Templater::new();
    runbook
        .hosts
        .iter()
        .map(|(name, h)| {
            let r =
                plan::render_host(&templater, &base, h).unwrap_or_else(|_| plan::RenderedHost {
                    address: h.address.clone(),
                    user: h.user.clone(),
                    port: 22,
                    identity_file: h.identity_file.clone(),
                    known_hosts_file: h.known_hosts_file.clone(),
                });
            (name, h, r)
        })
        .map(|(name, h, r)| exec::ssh::HostTarget {
            name: name.clone(),
            address: r.address,
            user: r.user,
            port: Some(r.port),
            identity_file: r
                .identity_file
                .as_deref()
                .map(|p| expand_path(p, &runbook.dir)),
            accept_new: h.known_hosts == crate::runbook::model::KnownHosts::AcceptNew,
            known_hosts_file: r
                .known_hosts_file
                .as_deref()
                .map(|p| expand_path(p, &runbook.dir)),
        })
        .collect()
}

/// `~/x` → `$HOME/x`; a relative path is relative to the runbook's folder.
fn expand_path(path: &str, dir: &Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    dir.join(path)
}

/// The template context: vars, env, and hosts with rendered addresses.
fn context(runbook: &Runbook, templater: &Templater, run_id: i64) -> Context {
    let bare = Context::new(&runbook.vars, minijinja::Value::from(()), run_id);
    let base = bare.for_step("", &BTreeMap::new());
    let hosts: BTreeMap<String, serde_json::Value> = runbook
        .hosts
        .iter()
        .map(|(name, h)| {
            let r = plan::render_host(templater, &base, h).ok();
            (
                name.clone(),
                serde_json::json!({
                    "name": name,
                    "address": r.as_ref().map(|r| r.address.clone()),
                    "user": r.as_ref().and_then(|r| r.user.clone()),
                    "port": r.as_ref().map(|r| r.port),
                }),
            )
        })
        .collect();
    Context {
        hosts: minijinja::Value::from_serialize(&hosts),
        ..bare
    }
}

/// Secrets as a pass sees them: values in memory, states for the store.
struct SecretStates {
    lookup: secrets::Lookup,
    rows: Vec<SecretRow>,
}

impl SecretStates {
    /// What holds a step that requires these secrets.
    fn hold_for(&self, requires: &[String]) -> Hold {
        let mut hold = Hold::default();
        for name in requires {
            match self.rows.iter().find(|r| &r.name == name) {
                Some(r) if r.state == "missing" => hold.missing.push(name.clone()),
                Some(r) if r.state == "rejected" => hold.rejected.push((
                    name.clone(),
                    format!("was rejected: {}", r.reason.clone().unwrap_or_default()),
                )),
                Some(r) if r.state == "unchecked" => hold.rejected.push((
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
fn needed_secrets(loaded: &Loaded, rows: &[StepRow]) -> Vec<String> {
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
fn secret_sources(loaded: &Loaded, env_files: &[PathBuf]) -> Vec<secrets::Source> {
    let mut sources = vec![secrets::Source::Environment];
    sources.extend(
        env_files
            .iter()
            .map(|p| secrets::Source::EnvFileArg(p.clone())),
    );
    let base = loaded.ctx.for_step("", &BTreeMap::new());
    for spec in &loaded.runbook.env_files {
        sources.push(match spec {
            crate::runbook::model::EnvFileSpec::Local(rel) => {
                secrets::Source::Local(loaded.runbook.dir.join(rel))
            }
            crate::runbook::model::EnvFileSpec::Remote(r) => secrets::Source::Remote {
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

/// Looks every declared secret up, and checks the ones this pass needs.
async fn resolve_secrets(
    loaded: &Loaded,
    execs: &exec::Executors,
    env_files: &[PathBuf],
    needed: &[String],
) -> SecretStates {
    let declared: Vec<String> = loaded.runbook.secrets.keys().cloned().collect();
    if declared.is_empty() {
        return SecretStates {
            lookup: secrets::Lookup::default(),
            rows: Vec::new(),
        };
    }
    let sources = secret_sources(loaded, env_files);
    let lookup = secrets::lookup(&sources, &declared, execs).await;
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
                    state: "missing".into(),
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
            (Some(_), Some(check)) if needed.contains(name) => {
                let verdict = secrets::check(
                    execs,
                    &loaded.templater,
                    &loaded.ctx,
                    &check.http,
                    &lookup.values,
                )
                .await;
                let (state, reason) = match verdict {
                    secrets::Verdict::Accepted => ("accepted", None),
                    secrets::Verdict::Rejected(r) => ("rejected", Some(r)),
                    secrets::Verdict::Unchecked(r) => ("unchecked", Some(r)),
                };
                SecretRow {
                    name: name.clone(),
                    state: state.into(),
                    source,
                    reason,
                }
            }
            (Some(_), _) => SecretRow {
                name: name.clone(),
                state: "found".into(),
                source,
                reason: None,
            },
        };
        rows.push(row);
    }
    SecretStates { lookup, rows }
}

/// The run's executors: SSH connections, HTTP client, local folder.
fn executors(loaded: &Loaded) -> exec::Executors {
    exec::Executors {
        ssh: exec::ssh::SshPool::new(host_targets(&loaded.runbook, &loaded.ctx)),
        http: exec::http::client(),
        dir: loaded.runbook.dir.clone(),
    }
}

struct EngineGate<'a> {
    loaded: &'a Loaded,
    secrets: &'a SecretStates,
    approvals: Vec<String>,
    redactor: Arc<Redactor>,
}

impl Gate for EngineGate<'_> {
    fn prepare(&mut self, i: usize) -> std::result::Result<Rendered, Hold> {
        let step = &self.loaded.runbook.steps[i];
        let planned = &self.loaded.plan.steps[i];
        let mut hold = self.secrets.hold_for(&planned.requires);
        if step.approval.is_some() && !self.approvals.contains(&planned.id) {
            hold.approval = step.approval.clone();
        }
        if hold.is_held() {
            return Err(hold);
        }
        if planned.requires.is_empty() {
            return Ok(planned.rendered.clone());
        }
        let values: BTreeMap<String, String> = planned
            .requires
            .iter()
            .filter_map(|s| {
                self.secrets
                    .lookup
                    .values
                    .get(s)
                    .map(|v| (s.clone(), v.to_string()))
            })
            .collect();
        Ok(plan::render_step(
            &self.loaded.templater,
            &self.loaded.ctx,
            &self.loaded.runbook,
            step,
            &values,
        )
        .unwrap_or_else(|_| planned.rendered.clone()))
    }

    fn waiting_on(&self, i: usize) -> Hold {
        self.secrets.hold_for(&self.loaded.plan.steps[i].requires)
    }

    fn redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }
}

#[allow(dead_code)]
fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
