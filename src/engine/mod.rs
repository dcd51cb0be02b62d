//! The commands, put together from the layers: load → validate → plan →
//! store → scheduler → reports. `run`/`resume` live here; the other
//! commands in `commands.rs`, the handoff in `handoff.rs`, secret lookup in
//! `lookup.rs`.

mod commands;
mod dry_run;
mod fleet;
mod gate;
mod handoff;
mod lookup;
mod notify;
mod secret_commands;
mod sources;
mod views;
mod wait;

pub use commands::os_user;
use gate::EngineGate;
use lookup::{needed_secrets, resolve_secrets, CheckCache};
pub use views::{RunSummary, StatusView};
pub use wait::WaitOptions;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{exit, Error, Result};
use crate::events::Event;
use crate::exec;
use crate::plan::{self, Plan};
use crate::report::graph::GraphFormat;
use crate::report::live::LiveReporter;
use crate::report::plain::PlainReporter;
use crate::report::style::{ColorChoice, Palette};
use crate::report::Verbosity;
use crate::report::{self, JsonReporter, Reporter};
use crate::runbook::template::{Context, Templater};
use crate::runbook::{load, validate, Runbook};
use crate::scheduler;
use crate::state::{RunState, StepState};
use crate::store::{Location, ProcessId, RunRow, SecretRow, StepRow, Store};

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
    state: Location,
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

/// The options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The state file (default `state/runbook.db` under the current folder).
    pub state: Option<PathBuf>,
    /// How much to print.
    pub verbosity: Verbosity,
    /// When to colour.
    pub color: ColorChoice,
}

/// The options of `run` and `resume`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--var` values, in order.
    pub vars: Vec<(String, String)>,
    /// `--env-file` files, in order.
    pub env_files: Vec<PathBuf>,
    /// Parallel steps at most.
    pub jobs: u16,
    /// Print what would run, change nothing.
    pub dry_run: bool,
    /// With `dry_run`: a diff of each text file an upload would change.
    pub diff: bool,
    /// NDJSON events instead of the human view.
    pub json: bool,
    /// `--limit`: host names, group names or globs; only steps on those
    /// hosts (and local steps) run. Empty: every host.
    pub limit: Vec<String>,
    /// `--wait`: while held, look again and go on by itself.
    pub wait: Option<WaitOptions>,
    /// Send the runbook's notifications (`--no-notify` turns them off).
    pub notify: bool,
}

impl Ctx {
    /// From the global options.
    pub fn new(globals: &Globals) -> Result<Ctx> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", e))?;
        let given = globals
            .state
            .clone()
            .unwrap_or_else(|| PathBuf::from("state/runbook.db"));
        Ok(Ctx {
            state: Location::parse(given.as_os_str(), &cwd)?,
            cwd,
            verbosity: globals.verbosity,
            color: globals.color,
        })
    }

    fn open_store(&self) -> Result<Store> {
        Store::open_at(&self.state)
    }

    fn existing_store(&self) -> Result<Store> {
        Store::open_existing_at(&self.state)?.ok_or_else(|| {
            Error::Usage(format!(
                "no state at {}: nothing has run here yet (start with `runbook run NAME`)",
                self.state.shown()
            ))
        })
    }

    fn load(&self, path: &Path, vars: &[(String, String)], run_id: i64) -> Result<Loaded> {
        let (file, source) = load::load(path)?;
        let (runbook, mut problems) = validate::validate_all(file, source, vars);
        let templater = Templater::new();
        let ctx = context(&runbook, &templater, run_id);
        let built = plan::build(&runbook, &ctx, &Templater::for_placeholders());
        // Every problem at once: the templates' along with validation's.
        if !problems.is_empty() {
            if let Err(Error::Invalid { diagnostics, .. }) = built {
                for d in diagnostics {
                    if !problems.contains(&d) {
                        problems.push(d);
                    }
                }
            }
            return Err(Error::Invalid {
                diagnostics: problems,
                source_text: runbook.source.text.clone(),
            });
        }
        let plan = built?;
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
                self.state.shown()
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
    pub fn run(&self, target: Target, fresh: bool, args: RunOptions, resume: bool) -> Result<i32> {
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
            validate::check_var_names(&file, &source, &args.vars)?;
            runbook_name(file.name.as_deref(), &source.path)
        };
        // The vars a resumed run started with, plus the ones given now.
        let previous = match previous {
            Some(run) => Some(run),
            None if fresh => None,
            None => Store::open_existing_at(&self.state)?
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
            sources::check_env_file_arg(file)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the async runtime", e))?;

        if args.dry_run {
            return runtime.block_on(self.dry_run(&loaded, previous.as_ref(), &args));
        }

        exec::ssh::idle_from_env().map_err(Error::Usage)?;
        // Bad settings are refused before a run is recorded.
        notify::timeout_from_env()?;
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
        args: &RunOptions,
        path: &Path,
        vars: &[(String, String)],
    ) -> Result<i32> {
        let began = tokio::time::Instant::now();
        // Templates (in the runbook or in uploaded files) may name run.id:
        // render again with the real one.
        let loaded = if loaded.ctx.run_id == run.id {
            loaded
        } else {
            self.load(path, vars, run.id)?
        };
        // One set of executors for every pass and look of this command: a
        // `--wait` loop reuses the hosts' SSH masters.
        let execs = Arc::new(executors(&loaded)?);
        let notifier = notify::Notifier::new(&loaded, args.notify)?;
        let mut cache = CheckCache::default();
        // From here on SIGINT/SIGTERM no longer end the process: every
        // await below (lookups, notifications, the wait) listens for them.
        let mut signals = wait::Signals::new();
        let mut resumed = resumed;
        let mut fresh = fresh && !resumed;
        let result = loop {
            let (state, secrets) = match self
                .pass(
                    store,
                    run,
                    resumed,
                    fresh,
                    &loaded,
                    args,
                    &execs,
                    &mut cache,
                    &mut signals,
                )
                .await
            {
                Ok(done) => done,
                Err(e) => break Err(e),
            };
            if state == RunState::Interrupted {
                // The signal that stopped the pass is not the one that
                // stops its notifications.
                signals.take().await;
            }
            let redactor = secrets.redactor();
            match notifier
                .after_pass(self, store, run, state, &loaded, &redactor, &mut signals)
                .await
            {
                Ok(notify::Delivery::Done) => {}
                Ok(notify::Delivery::Stopped) => break Ok(exit::INTERRUPTED),
                Err(e) => {
                    eprintln!("warning: the notifications could not be sent or recorded: {e}")
                }
            }
            let Some(options) = args.wait.filter(|_| state == RunState::Held) else {
                break Ok(state.exit_code());
            };
            let waiter = wait::Waiter {
                loaded: &loaded,
                execs: &execs,
                env_files: &args.env_files,
                options,
                deadline: options.timeout.map(|t| began + t),
            };
            let json = args.json;
            let mut say = |line: &str| say_line(json, run.id, line);
            match waiter
                .until_ready(store, run.id, &secrets, &mut cache, &mut signals, &mut say)
                .await
            {
                Ok(wait::WaitEnd::Ready) => {
                    resumed = true;
                    fresh = false;
                    if let Err(e) = store.set_run_state(run.id, RunState::Running) {
                        break Err(e);
                    }
                }
                Ok(wait::WaitEnd::TimedOut) => {
                    say("stopped waiting: --timeout passed; the run is still held");
                    break Ok(exit::HELD);
                }
                Ok(wait::WaitEnd::Interrupted) => {
                    say("stopped waiting (signal); the run is still held");
                    break Ok(exit::INTERRUPTED);
                }
                Err(e) => break Err(e),
            }
        };
        if let Ok(execs) = Arc::try_unwrap(execs) {
            execs.ssh.close().await;
        }
        result
    }

    /// One pass: the steps reset to what must run, secrets looked up, the
    /// scheduler over the DAG. The run's state at the end, and the secrets
    /// as this pass saw them.
    #[allow(clippy::too_many_arguments)]
    async fn pass(
        &self,
        store: &mut Store,
        run: &RunRow,
        resumed: bool,
        fresh: bool,
        loaded: &Loaded,
        args: &RunOptions,
        execs: &Arc<exec::Executors>,
        cache: &mut CheckCache,
        signals: &mut wait::Signals,
    ) -> Result<(RunState, lookup::SecretStates)> {
        let excluded = fleet::excluded(&loaded.runbook, &loaded.plan, &args.limit)?;
        let source_now = |i: usize| {
            plan::source::hash_now(
                &loaded.ctx,
                &loaded.runbook.steps[i],
                &loaded.plan.steps[i].rendered,
            )
        };
        let rows = scheduler::prepare_rows_limited(
            store,
            run.id,
            &loaded.plan,
            fresh,
            &excluded,
            &source_now,
        )?;
        let needed = needed_secrets(loaded, &rows);
        // A lookup can take a while (SSH, checks): a signal meanwhile stops
        // the pass before any step starts.
        let secrets = tokio::select! {
            s = resolve_secrets(loaded, execs, &args.env_files, &needed, cache) => Some(s),
            _ = signals.received() => None,
        };
        let secrets = match secrets {
            Some(s) if !signals.take().await => s,
            _ => {
                store.set_run_state(run.id, RunState::Interrupted)?;
                eprintln!(
                    "stopped (signal) while looking up secrets, before any step started; `runbook resume {}{}` goes on",
                    run.id,
                    self.state_flag()
                );
                let none = lookup::SecretStates {
                    lookup: Default::default(),
                    rows: Vec::new(),
                    per_host: Default::default(),
                };
                return Ok((RunState::Interrupted, none));
            }
        };
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
            let blocks = loaded
                .plan
                .steps
                .iter()
                .filter(|s| s.family.is_some())
                .filter_map(|s| Some((s.id.clone(), s.block.clone()?)))
                .collect();
            Box::new(LiveReporter::new(self.verbosity, palette, &flag).with_blocks(blocks))
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
        let redactor = Arc::new(secrets.redactor());
        let mut gate = EngineGate {
            loaded,
            secrets: &secrets,
            approvals,
            redactor,
        };
        let options = scheduler::Options {
            jobs: args.jobs as usize,
            execs: execs.clone(),
            excluded,
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
        .await?;
        Ok((state, secrets))
    }

    /// Colours for stdout.
    fn palette(&self) -> Palette {
        Palette {
            color: self.color.enabled(std::io::stdout().is_terminal()),
        }
    }

    /// The global options a printed command needs to find this state again.
    fn state_flag(&self) -> String {
        let default = Location::File(self.cwd.join("state/runbook.db"));
        if self.state == default {
            String::new()
        } else {
            format!(
                " --state {}",
                crate::exec::ssh::sh_quote(&self.state.shown())
            )
        }
    }
}

/// A line of the `--wait` loop: plain, or an NDJSON `wait` event.
fn say_line(json: bool, run_id: i64, line: &str) {
    use std::io::Write;
    let text = if json {
        serde_json::json!({"event": "wait", "run_id": run_id, "message": line}).to_string()
    } else {
        line.to_string()
    };
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn unknown_step(run: &RunRow, step: &str, steps: &[StepRow]) -> Error {
    let instances: Vec<&str> = steps
        .iter()
        .filter(|s| report::fleet::family_of(&s.id) == Some(step))
        .map(|s| s.id.as_str())
        .collect();
    if !instances.is_empty() {
        return Error::Usage(format!(
            "`{step}` runs on {} in run {}: name one instance, such as `{}` (`runbook status {} --hosts` lists them)",
            report::count(instances.len(), "host"),
            run.id,
            instances[0],
            run.id
        ));
    }
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
                    port: None,
                    identity_file: h.identity_file.clone(),
                    known_hosts_file: h.known_hosts_file.clone(),
                });
            (name, h, r)
        })
        .map(|(name, h, r)| exec::ssh::HostTarget {
            name: name.clone(),
            address: r.address,
            user: r.user,
            port: r.port,
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
                    // Empty when not given (SPEC §14): ssh's configuration decides.
                    "user": r.as_ref().and_then(|r| r.user.clone()).unwrap_or_default(),
                    "port": r.as_ref().and_then(|r| r.port).map(|p| p.to_string()).unwrap_or_default(),
                    "vars": h.vars,
                }),
            )
        })
        .collect();
    Context {
        hosts: minijinja::Value::from_serialize(&hosts),
        ..bare
    }
}

/// The run's executors: SSH connections, HTTP client, local folder.
fn executors(loaded: &Loaded) -> Result<exec::Executors> {
    raise_open_files(loaded.runbook.hosts.len());
    Ok(exec::Executors {
        ssh: exec::ssh::SshPool::new(host_targets(&loaded.runbook, &loaded.ctx))
            .map_err(Error::Usage)?,
        http: exec::http::client(),
        dir: loaded.runbook.dir.clone(),
    })
}

/// A fleet holds a master connection, a shell and their pipes per host:
/// a few hundred hosts pass the common soft limit of 1,024 open files, so
/// the soft limit is raised towards the hard one (never above it).
fn raise_open_files(hosts: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = (hosts as u64).saturating_mul(16).saturating_add(256);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < wanted {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
        }
    }
}
