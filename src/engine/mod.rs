//! The commands, put together from the layers: load → validate → plan →
//! store → scheduler → reports. Here: what every command shares (the
//! state, the target run, the options); `run`/`resume` in `run.rs`, one
//! pass in `pass.rs`, the runbook as a command loads it in `loaded.rs`, the
//! other commands in `commands.rs`, the handoff in `handoff/`, secret
//! lookup in `lookup.rs`.

mod commands;
mod dry_run;
mod fleet;
mod gate;
mod handoff;
mod handover;
mod lease;
mod loaded;
mod lookup;
mod notify;
mod pass;
mod run;
mod secret_commands;
mod signals;
mod sources;
mod state_copy;
mod views;
mod wait;

pub use commands::{os_user, user_at_host};
use loaded::{executors, Loaded};
pub use views::{RunSummary, StatusView};
pub use wait::WaitOptions;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::error::{exit, Error, Result};
use crate::plan;
use crate::report;
use crate::report::graph::GraphFormat;
use crate::report::style::{ColorChoice, Palette};
use crate::report::Verbosity;
use crate::runbook::{load, validate};
use crate::state::{RunState, StepState};
use crate::store::{Location, RunRow, SecretRow, StepRow, Store};

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
    /// `--runbook PATH`: the runbook file, instead of the one the run
    /// recorded (SPEC §11).
    pub runbook: Option<PathBuf>,
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
        let state = Location::parse(given.as_os_str(), &cwd)?;
        if let Some(pw) = state.password() {
            // A step that prints it (cat ~/.pgpass) is redacted like a secret.
            crate::secrets::redact_always("STATE_PASSWORD", pw);
        }
        Ok(Ctx {
            state,
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
                crate::exec::quote::sh_quote(&self.state.shown())
            )
        }
    }
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
