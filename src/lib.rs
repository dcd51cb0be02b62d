//! `runbook`: execute an operational runbook as a DAG — local and SSH steps,
//! HTTP checks, SQLite checkpoints, held steps and a handoff page.
//!
//! The binary (`src/main.rs`) is a thin shell over [`cli::run`]. The layers,
//! in the order data flows: [`runbook`] (the file as written) → [`plan`] →
//! [`scheduler`] → [`exec`] (executors) with [`secrets`], [`store`] and
//! [`report`] beside them; [`action`] holds the rendered actions that
//! `plan` makes and `exec` carries out. See ARCHITECTURE.md.

pub mod action;
pub mod cli;
pub mod dotenv;
pub mod engine;
pub mod error;
pub mod events;
pub mod exec;
pub mod plan;
pub mod report;
pub mod runbook;
pub mod scheduler;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod store;

/// Loads, validates and plans runbook text as if it were the file `path`,
/// without running anything: what `runbook validate` does. Used by the fuzz
/// target; any input must give `Ok` or a located error, never a panic.
pub fn check_text(path: &std::path::Path, text: &str) -> error::Result<()> {
    let (file, source) = runbook::load::parse_text(path, text.to_string())?;
    let book = runbook::validate::validate(file, source, &[])?;
    let templater = runbook::template::Templater::for_placeholders();
    let ctx = runbook::template::Context::new(&book.vars, minijinja::Value::from(()), 0);
    plan::build(&book, &ctx, &templater).map(|_| ())
}
