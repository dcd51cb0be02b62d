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
use crate::report::live::{HumanReporter, Verbosity};
use crate::report::{self, JsonReporter, Reporter};
use crate::runbook::template::{Context, Templater};
use crate::runbook::{load, validate, Runbook};
use crate::scheduler::{self, Gate, Hold};
use crate::secrets::{self, Redactor, Values};
use crate::state::{RunState, StepState};
use crate::store::{ProcessId, RunRow, StepRow, Store};

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
    pub fn run(&self, target: Target, fresh: bool, args: RunArgs) -> Result<i32> {
        let (path, previous) = match &target {
            Target::Name(name) => (load::resolve(name, &self.cwd)?, None),
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
        let dotenv = self.read_env_files(&loaded.runbook, &args.env_files)?;
        let values = Values::resolve(loaded.runbook.secrets.keys().map(String::as_str), &dotenv);

        if args.dry_run {
            return self.dry_run(&loaded, previous.as_ref(), &values);
        }

        let mut store = self.open_store()?;
        let me = ProcessId::current();
        let (run, resumed) = match &target {
            Target::Name(_) => store.begin_run(
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
        let result = self.run_locked(
            &mut store, &run, resumed, fresh, loaded, values, &args, &path, &vars,
        );
        let _ = store.unlock_run(run.id, &me);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn run_locked(
        &self,
        store: &mut Store,
        run: &RunRow,
        resumed: bool,
        fresh: bool,
        loaded: Loaded,
        values: Values,
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
        let mut reporter: Box<dyn Reporter> = if args.json {
            Box::new(JsonReporter)
        } else {
            Box::new(HumanReporter::new(self.verbosity, &loaded.runbook.name))
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
        let mut gate = EngineGate {
            loaded: &loaded,
            values,
            approvals,
            redactor: Arc::new(Redactor::default()),
        };
        gate.redactor = Arc::new(gate.values.redactor());
        let execs = Arc::new(exec::Executors {
            ssh: exec::ssh::SshPool::new(host_targets(&loaded.runbook, &loaded.ctx)),
            http: exec::http::client(),
            dir: loaded.runbook.dir.clone(),
        });
        let options = scheduler::Options {
            jobs: args.jobs as usize,
            execs: execs.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the async runtime", e))?;
        let state = runtime.block_on(async {
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
            state
        })?;
        Ok(state.exit_code())
    }

    fn read_env_files(
        &self,
        runbook: &Runbook,
        extra: &[PathBuf],
    ) -> Result<Vec<BTreeMap<String, String>>> {
        let mut maps = Vec::new();
        for file in extra {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::Usage(format!("cannot read --env-file {}: {e}", file.display()))
            })?;
            maps.push(
                secrets::parse_dotenv(&text)
                    .map_err(|e| Error::Usage(format!("--env-file {}: {e}", file.display())))?,
            );
        }
        for spec in &runbook.env_files {
            if let crate::runbook::model::EnvFileSpec::Local(rel) = spec {
                let path = runbook.dir.join(rel);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    match secrets::parse_dotenv(&text) {
                        Ok(map) => maps.push(map),
                        Err(e) => tracing::warn!("env file {}: {e}", path.display()),
                    }
                }
            }
        }
        Ok(maps)
    }

    fn dry_run(&self, loaded: &Loaded, previous: Option<&RunRow>, values: &Values) -> Result<i32> {
        let stored: HashMap<String, StepRow> = match (previous, Store::open_existing(&self.state)?)
        {
            (Some(run), Some(store)) => store
                .steps(run.id)?
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            _ => HashMap::new(),
        };
        let approvals: HashMap<String, String> =
            match (previous, Store::open_existing(&self.state)?) {
                (Some(run), Some(store)) => stored
                    .keys()
                    .filter_map(|id| {
                        let a = store.approval(run.id, id).ok().flatten()?;
                        Some((
                            id.clone(),
                            format!(
                                "approved by {} at {}{}",
                                a.by,
                                a.at,
                                a.note.map(|n| format!(": {n}")).unwrap_or_default()
                            ),
                        ))
                    })
                    .collect(),
                _ => HashMap::new(),
            };
        let plan = &loaded.plan;
        let mut verdict: Vec<&'static str> = vec![""; plan.steps.len()];
        let order = petgraph::algo::toposort(&plan.graph, None).unwrap_or_default();
        match previous {
            Some(run) => println!(
                "dry run: would resume run {} of {} ({})",
                run.id, loaded.runbook.name, run.state
            ),
            None => println!("dry run: would start a new run of {}", loaded.runbook.name),
        }
        let mut lines = vec![String::new(); plan.steps.len()];
        for node in order {
            let i = plan.graph[node];
            let step = &plan.steps[i];
            let spec = &loaded.runbook.steps[i];
            let done = stored.get(&step.id).is_some_and(|r| {
                r.state.satisfies_needs()
                    && r.fingerprint.as_deref() == Some(step.fingerprint.as_str())
            });
            let upstream_stuck = step
                .needs
                .iter()
                .any(|&n| matches!(verdict[n], "held" | "blocked"));
            let missing: Vec<&str> = step
                .requires
                .iter()
                .filter(|s| values.get(s).is_none())
                .map(String::as_str)
                .collect();
            let (v, why) = if done {
                ("done", String::new())
            } else if upstream_stuck {
                ("blocked", "a step it needs would be held".to_string())
            } else if !missing.is_empty() {
                ("held", format!("missing {}", missing.join(", ")))
            } else if spec.approval.is_some() && !approvals.contains_key(&step.id) {
                ("held", "waiting for approval".to_string())
            } else if let Some(approved) = approvals.get(&step.id).filter(|_| step.rendered.when) {
                ("run", approved.clone())
            } else if !step.rendered.when {
                ("skipped", "`when` is false".to_string())
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
            lines[i] = format!(
                "  {label:<17} {}{}",
                step.id,
                if why.is_empty() {
                    String::new()
                } else {
                    format!("  ({why})")
                }
            );
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
            print!("{}", report::status::to_table(&run, state, &steps));
        }
        Ok(exit::OK)
    }

    /// `handoff`.
    pub fn handoff(&self, _target: Target, _output: Option<PathBuf>, _json: bool) -> Result<i32> {
        Err(Error::Usage(
            "`runbook handoff` is not available in this build yet".into(),
        ))
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
    pub fn graph(&self, name: &str, format: GraphFormat) -> Result<i32> {
        let path = load::resolve(name, &self.cwd)?;
        let loaded = self.load(&path, &[], 0)?;
        print!("{}", graph_text(&loaded.runbook, format));
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
        .map(|(name, h)| exec::ssh::HostTarget {
            name: name.clone(),
            address: templater
                .render(&h.address, &base)
                .unwrap_or_else(|_| h.address.clone()),
            user: h.user.clone(),
            port: h.port,
            identity_file: h
                .identity_file
                .as_deref()
                .map(|p| expand_path(p, &runbook.dir)),
            accept_new: h.known_hosts == crate::runbook::model::KnownHosts::AcceptNew,
            known_hosts_file: h
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
            let address = templater.render(&h.address, &base).unwrap_or_default();
            (
                name.clone(),
                serde_json::json!({ "name": name, "address": address, "user": h.user, "port": h.port.unwrap_or(22) }),
            )
        })
        .collect();
    Context {
        hosts: minijinja::Value::from_serialize(&hosts),
        ..bare
    }
}

struct EngineGate<'a> {
    loaded: &'a Loaded,
    values: Values,
    approvals: Vec<String>,
    redactor: Arc<Redactor>,
}

impl Gate for EngineGate<'_> {
    fn prepare(&mut self, i: usize) -> std::result::Result<Rendered, Hold> {
        let step = &self.loaded.runbook.steps[i];
        let planned = &self.loaded.plan.steps[i];
        let mut hold = Hold {
            missing: planned
                .requires
                .iter()
                .filter(|s| self.values.get(s).is_none())
                .cloned()
                .collect(),
            ..Hold::default()
        };
        if step.approval.is_some() && !self.approvals.contains(&planned.id) {
            hold.approval = step.approval.clone();
        }
        if hold.is_held() {
            return Err(hold);
        }
        if planned.requires.is_empty() {
            return Ok(planned.rendered.clone());
        }
        let secrets: BTreeMap<String, String> = planned
            .requires
            .iter()
            .filter_map(|s| self.values.get(s).map(|v| (s.clone(), v.to_string())))
            .collect();
        Ok(plan::render_step(
            &self.loaded.templater,
            &self.loaded.ctx,
            &self.loaded.runbook,
            step,
            &secrets,
        )
        .unwrap_or_else(|_| planned.rendered.clone()))
    }

    fn redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }
}

/// The graph as DOT or Mermaid.
pub fn graph_text(runbook: &Runbook, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n",
                runbook.name.replace('"', "'")
            ));
            for s in &runbook.steps {
                let label = s
                    .spec
                    .title
                    .clone()
                    .unwrap_or_else(|| s.spec.id.clone())
                    .replace('"', "'");
                out.push_str(&format!("  \"{}\" [label=\"{}\"];\n", s.spec.id, label));
            }
            for s in &runbook.steps {
                for &n in &s.needs {
                    out.push_str(&format!(
                        "  \"{}\" -> \"{}\";\n",
                        runbook.steps[n].spec.id, s.spec.id
                    ));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for s in &runbook.steps {
                let label = s
                    .spec
                    .title
                    .clone()
                    .unwrap_or_else(|| s.spec.id.clone())
                    .replace('"', "'");
                out.push_str(&format!("  {}[\"{}\"]\n", mermaid_id(&s.spec.id), label));
            }
            for s in &runbook.steps {
                for &n in &s.needs {
                    out.push_str(&format!(
                        "  {} --> {}\n",
                        mermaid_id(&runbook.steps[n].spec.id),
                        mermaid_id(&s.spec.id)
                    ));
                }
            }
        }
    }
    out
}

fn mermaid_id(id: &str) -> String {
    format!("s_{}", id.replace('-', "_"))
}

#[allow(dead_code)]
fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
