//! Command-line definitions and dispatch; no engine logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine;
use crate::error::Result;
use crate::report::graph::GraphFormat;
use crate::report::handoff::HandoffFormat;
use crate::report::style::ColorChoice;
use crate::report::Verbosity;

/// Execute an operational runbook as a DAG, with checkpoints and handoffs.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, about, long_about = None)]
pub struct Cli {
    /// State: an SQLite file (default: state/runbook.db under the current
    /// directory) or a postgres:// URL.
    #[arg(
        long,
        global = true,
        env = "RUNBOOK_STATE",
        hide_env_values = true,
        value_name = "PATH_OR_URL"
    )]
    pub state: Option<PathBuf>,
    /// Print more: every attempt start.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print only the summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour the output: auto (a terminal without NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by `run` and `resume`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Override a var: `--var key=value` (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// A dotenv file to look secrets up in, after the environment (repeatable).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Steps run in parallel at most.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Validate, resolve secrets and print what would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: a unified diff of each text file an upload would change (secret values redacted).
    #[arg(long, requires = "dry_run")]
    pub diff: bool,
    /// Print one JSON event per line.
    #[arg(long)]
    pub json: bool,
    /// Only the steps on these hosts: names, groups or globs, comma separated (`web1,db*`).
    #[arg(long, value_name = "PATTERN")]
    pub limit: Vec<String>,
    /// While the run is held, look the held secrets and approvals up again
    /// and go on by itself as soon as a held step can.
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// With --wait: look again this often (default 30s, backing off to 5m).
    #[arg(long, requires = "wait", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Option<std::time::Duration>,
    /// With --wait: stop waiting after this long (exit 3, the run stays held).
    #[arg(long, requires = "wait", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<std::time::Duration>,
    /// Send no notification (the runbook's `notify:` entries) for this command.
    #[arg(long)]
    pub no_notify: bool,
    /// The runbook file to use, instead of the one the run recorded (its
    /// path relative to the folder it was started in): a run handed over
    /// from another machine whose checkout is laid out otherwise.
    #[arg(long, value_name = "PATH")]
    pub runbook: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a runbook; resumes its latest unfinished run unless --fresh.
    #[command(
        after_help = "Example:\n  runbook run hetzner-parity --var deploy_dir=/opt/stack --jobs 8"
    )]
    Run {
        /// Runbook name (runbooks/NAME.yaml or runbooks/NAME/runbook.yaml) or path.
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(runbook_names))]
        name: String,
        /// Start a new run even when the latest one is unfinished.
        #[arg(long)]
        fresh: bool,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Resume a run (the latest one, or of NAME, or RUN_ID).
    #[command(after_help = "Example:\n  runbook resume hetzner-parity")]
    Resume {
        /// Runbook name or run id; default: the latest run.
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(runbook_names))]
        target: Option<String>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Show where a run stands.
    #[command(after_help = "Example:\n  runbook status hetzner-parity --json")]
    Status {
        /// Runbook name or run id; default: the latest run.
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(runbook_names))]
        target: Option<String>,
        /// Print the JSON document.
        #[arg(long)]
        json: bool,
        /// List every instance of a step on a group, not only those that have not succeeded.
        #[arg(long)]
        hosts: bool,
    },
    /// Write the page for the person who must act.
    #[command(
        after_help = "Example:\n  runbook handoff hetzner-parity -o handoff.md\n  runbook handoff hetzner-parity --format html -o handoff.html"
    )]
    Handoff {
        /// Runbook name or run id; default: the latest run.
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(runbook_names))]
        target: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print the handoff as JSON (short for `--format json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format: markdown, json, or html (one self-contained page).
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<HandoffFormat>,
    },
    /// Approve a step that waits for approval.
    #[command(
        after_help = "Example:\n  runbook approve 7 restart-prod --note \"maintenance window ok\""
    )]
    Approve {
        /// Run id.
        run_id: i64,
        /// Step id.
        step: String,
        /// A note stored with the approval.
        #[arg(long)]
        note: Option<String>,
        /// Who approves (default: user@host of this machine).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Send a step and everything that depends on it back to pending.
    #[command(after_help = "Example:\n  runbook reset 7 rebuild && runbook resume 7")]
    Reset {
        /// Run id.
        run_id: i64,
        /// Step id.
        step: String,
    },
    /// Print a step's captured output.
    #[command(after_help = "Example:\n  runbook logs 7 rebuild --attempt 2")]
    Logs {
        /// Run id.
        run_id: i64,
        /// Step id.
        step: String,
        /// Attempt number; default: the latest.
        #[arg(long)]
        attempt: Option<i64>,
    },
    /// Check a runbook without running anything.
    #[command(after_help = "Example:\n  runbook validate hetzner-parity")]
    Validate {
        /// Runbook name or path.
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(runbook_names))]
        name: String,
        /// Override a var.
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Print the step graph.
    #[command(after_help = "Example:\n  runbook graph hetzner-parity --format mermaid")]
    Graph {
        /// Runbook name or path.
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(runbook_names))]
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Colour each step by its state in this run.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<i64>,
    },
    /// Serve the runs of the state file to a browser, live (pages and a JSON API).
    #[command(
        after_help = "Example:\n  runbook serve\n  runbook serve --listen 127.0.0.1:9000\n  runbook serve --listen 0.0.0.0:7070 --token-file /etc/runbook/web-token"
    )]
    Serve {
        /// Address and port to listen on; a non-loopback one needs --token-file.
        #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR:PORT")]
        listen: String,
        /// Read the access token from this file (its first line) instead of making one and printing it.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Work on the state itself: `state copy` moves runs to another state.
    #[command(subcommand)]
    State(StateCommand),
    /// List the runbooks found and the recent runs.
    #[command(after_help = "Example:\n  runbook list")]
    List,
    /// Print the JSON Schema of the runbook format (for editors).
    #[command(after_help = "Example:\n  runbook schema > runbooks/runbook.schema.json")]
    Schema,
    /// Print shell completions (commands, options and runbook names).
    #[command(
        after_help = "Example:\n  runbook completions bash > ~/.local/share/bash-completion/completions/runbook"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// `runbook state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy runs to another state (SQLite file or postgres:// URL) and mark
    /// them moved here, so each is resumed in one place only.
    #[command(
        after_help = "Example:\n  runbook state copy 7 --to 'postgres://runbook@db.internal/ops?sslmode=verify-full'\n  runbook --state 'postgres://runbook@db.internal/ops' state copy --all --to state/runbook.db"
    )]
    Copy {
        /// Run ids or runbook names (each one's latest run).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        runs: Vec<String>,
        /// Every run of the state not moved already.
        #[arg(long)]
        all: bool,
        /// The state to copy them to: a path (SQLite) or a postgres:// URL.
        #[arg(long, value_name = "PATH_OR_URL")]
        to: String,
    },
}

/// Shells with completions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let negative = text.trim().strip_prefix('-');
    if negative.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())) {
        return Err(format!(
            "`{text}` is not a duration (it cannot be negative); write e.g. `30s`, `5m`"
        ));
    }
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".to_string()),
        Err(e) => Err(format!(
            "`{text}` is not a duration ({e}); write e.g. `30s`, `5m`"
        )),
    }
}

fn parse_var(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Prints the completion script of a shell. Completion itself is dynamic:
/// the script calls `runbook` back, which lists commands, options and the
/// runbook names found under the current directory.
fn completions(shell: Shell) -> Result<i32> {
    let name = match shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
    };
    let shells = clap_complete::env::Shells::builtins();
    let Some(completer) = shells.completer(name) else {
        return Err(crate::error::Error::Usage(format!(
            "no completions for {name}"
        )));
    };
    let mut out = Vec::new();
    completer
        .write_registration("COMPLETE", "runbook", "runbook", "runbook", &mut out)
        .map_err(|e| crate::error::Error::io("cannot write the completion script", e))?;
    print!("{}", String::from_utf8_lossy(&out));
    Ok(crate::error::exit::OK)
}

/// Completes runbook names from `runbooks/` under the current directory.
pub fn runbook_names(current: &std::ffi::OsStr) -> Vec<clap_complete::engine::CompletionCandidate> {
    let current = current.to_string_lossy();
    let cwd = std::env::current_dir().unwrap_or_default();
    crate::runbook::load::list(&cwd)
        .into_iter()
        .filter(|(n, _)| n.starts_with(current.as_ref()))
        .map(|(n, _)| clap_complete::engine::CompletionCandidate::new(n))
        .collect()
}

impl From<RunArgs> for engine::RunOptions {
    fn from(a: RunArgs) -> Self {
        engine::RunOptions {
            vars: a.vars,
            env_files: a.env_files,
            jobs: a.jobs,
            dry_run: a.dry_run,
            diff: a.diff,
            json: a.json,
            limit: a.limit,
            wait: a.wait.then_some(engine::WaitOptions {
                interval: a.interval,
                timeout: a.timeout,
            }),
            notify: !a.no_notify,
            runbook: a.runbook,
        }
    }
}

impl Command {
    /// Whether the command runs steps or serves (and must outlive a closed stdout).
    pub fn runs_steps(&self) -> bool {
        match self {
            Command::Run { args, .. } | Command::Resume { args, .. } => !args.dry_run,
            // The server outlives the reader of its first lines.
            Command::Serve { .. } => true,
            _ => false,
        }
    }
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let ctx = engine::Ctx::new(&engine::Globals {
        state: cli.state.clone(),
        verbosity,
        color: cli.color,
    })?;
    match cli.command {
        Command::Run { name, fresh, args } => {
            ctx.run(engine::Target::Name(name), fresh, args.into(), false)
        }
        Command::Resume { target, args } => {
            ctx.run(engine::Target::parse(target), false, args.into(), true)
        }
        Command::Status {
            target,
            json,
            hosts,
        } => ctx.status(engine::Target::parse(target), json, hosts),
        Command::Handoff {
            target,
            output,
            json,
            format,
        } => {
            let format = match (json, format) {
                (true, _) => HandoffFormat::Json,
                (false, f) => f.unwrap_or_default(),
            };
            ctx.handoff(engine::Target::parse(target), output, format)
        }
        Command::Approve {
            run_id,
            step,
            note,
            by,
        } => ctx.approve(run_id, &step, note.as_deref(), by.as_deref()),
        Command::Reset { run_id, step } => ctx.reset(run_id, &step),
        Command::Logs {
            run_id,
            step,
            attempt,
        } => ctx.logs(run_id, &step, attempt),
        Command::Validate { name, vars } => ctx.validate(&name, &vars),
        Command::Graph { name, format, run } => ctx.graph(&name, format, run),
        Command::List => ctx.list(),
        Command::State(StateCommand::Copy { runs, all, to }) => ctx.state_copy(&runs, all, &to),
        Command::Serve { listen, token_file } => {
            crate::serve::serve(ctx, crate::serve::ServeOptions { listen, token_file })
        }
        Command::Schema => {
            let schema = schemars::schema_for!(crate::runbook::model::RunbookFile);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(crate::error::exit::OK)
        }
        Command::Completions { shell } => completions(shell),
    }
}
