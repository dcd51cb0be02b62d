//! `runbook`: thin entry point. Parses arguments, runs the command, maps the
//! result to an exit code.

use std::io::IsTerminal;

use clap::Parser;

use runbook::{cli, error, report};

fn main() {
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .complete();
    let cli = cli::Cli::parse();
    if !cli.command.runs_steps() {
        // A command that only reports ends quietly when its reader goes
        // away (`runbook logs 7 x | head`), like any Unix tool. A run keeps
        // going: its steps and checkpoints must not die with a pager.
        // SAFETY: no other thread exists yet; the default disposition is
        // always a valid handler.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if cli.verbose { "info" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let color = cli.color.enabled(std::io::stderr().is_terminal());
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            report_error(&err, color);
            err.exit_code()
        }
    };
    std::process::exit(code);
}

fn report_error(err: &error::Error, color: bool) {
    match err {
        error::Error::Invalid {
            diagnostics,
            source_text,
        } => {
            eprint!(
                "{}",
                report::diagnostic::render(diagnostics, source_text, color)
            );
            eprintln!(
                "error: {} problem{} found; nothing was run",
                diagnostics.len(),
                if diagnostics.len() == 1 { "" } else { "s" }
            );
        }
        other => eprintln!("error: {other}"),
    }
}
