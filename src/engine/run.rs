//! `run` and `resume`: which run and with which vars, the run's lock, then
//! pass after pass: the notifications after each, and while the run is
//! held with `--wait`, the wait until it can go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::time::Instant;

use super::lease;
use super::loaded::{executors, Loaded};
use super::lookup::{CheckCache, SecretStates};
use super::notify::{self, Delivery, Notifier};
use super::signals::Signals;
use super::wait::{self, WaitEnd, WaitOptions};
use super::{runbook_name, sources, Ctx, RunOptions, Target};
use crate::error::{exit, Error, Result};
use crate::exec;
use crate::runbook::{load, validate};
use crate::state::RunState;
use crate::store::{RunRow, Store};

/// A run this process holds the lock of: what its passes, their
/// notifications and the waits between them share. One set of executors
/// for every pass and look: a `--wait` loop reuses the hosts' SSH masters.
pub(super) struct Session<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) store: &'a mut Store,
    pub(super) run: &'a RunRow,
    pub(super) args: &'a RunOptions,
    pub(super) loaded: Loaded,
    pub(super) execs: Arc<exec::Executors>,
    /// When the command started: `--timeout` counts from here.
    began: Instant,
    pub(super) cache: CheckCache,
    /// From here on SIGINT/SIGTERM no longer end the process: every await
    /// (lookups, notifications, the wait) listens for them.
    pub(super) signals: Signals,
}

impl Ctx {
    /// `run` (`resume` false) and `resume` (`resume` true: the target names
    /// a run, by id or by its runbook's name, and its stored file is used).
    pub fn run(&self, target: Target, fresh: bool, args: RunOptions, resume: bool) -> Result<i32> {
        let starts_new = matches!(target, Target::Name(_)) && !resume;
        let (path, previous) = self.runbook_of(&target, resume, &args)?;
        let name = checked_name(&path, &args.vars)?;
        let previous = match previous {
            Some(run) => Some(run),
            None if fresh => None,
            None => self.unfinished_run(&name)?,
        };
        let before = previous.as_ref().map_or(&[][..], |r| &r.vars[..]);
        let vars = merged_vars(before, &args.vars);
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
        let me = lease::me(true)?;
        let mut store = self.open_store()?;
        let begin = starts_new.then(|| lease::Begin {
            runbook: &loaded.runbook.name,
            path: path.to_string_lossy().to_string(),
            vars: &vars,
            fresh,
        });
        let (run, resumed) = lease::take_run(&mut store, begin, previous.as_ref(), &me, args.json)?;
        // A resume's `--var`s are kept with the run from then on (SPEC
        // §14); `begin_run` stores those of a `run` that resumes.
        if !starts_new && !args.vars.is_empty() {
            if let Err(e) = store.set_run_vars(run.id, &vars) {
                let _ = store.unlock_run(run.id, &me);
                return Err(e);
            }
        }
        if let Err(e) = super::handover::record_file(&store, run.id, &self.cwd, &path) {
            let _ = store.unlock_run(run.id, &me);
            return Err(e);
        }
        let result = runtime.block_on(self.run_locked(
            &mut store, &run, resumed, fresh, loaded, &args, &path, &vars,
        ));
        let _ = store.unlock_run(run.id, &me);
        result
    }

    /// The runbook file a `run`/`resume` loads, and the run it goes on
    /// with when it names one: `--runbook PATH`, NAME's file, or the file
    /// the run recorded as found in this checkout (SPEC §11).
    fn runbook_of(
        &self,
        target: &Target,
        resume: bool,
        args: &RunOptions,
    ) -> Result<(PathBuf, Option<RunRow>)> {
        match (target, &args.runbook) {
            (Target::Name(_), Some(given)) if !resume => Ok((self.cwd.join(given), None)),
            (Target::Name(name), None) if !resume => Ok((load::resolve(name, &self.cwd)?, None)),
            (other, given) => {
                let store = self.existing_store()?;
                let run = self.find_run(&store, other)?;
                refuse_moved(&run, "")?;
                let path = super::handover::runbook_file(&self.cwd, &run, given.as_deref())?;
                Ok((path, Some(run)))
            }
        }
    }

    /// The runbook's latest run, when it is unfinished: a run without
    /// `--fresh` goes on with it (refused when it was moved elsewhere).
    fn unfinished_run(&self, name: &str) -> Result<Option<RunRow>> {
        let run = Store::open_existing_at(&self.state)?
            .and_then(|s| s.latest_run(Some(name)).ok().flatten())
            .filter(|r| r.state.is_unfinished());
        if let Some(run) = &run {
            refuse_moved(run, "; `runbook run --fresh` starts a new run here")?;
        }
        Ok(run)
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
        let began = Instant::now();
        // Templates (in the runbook or in uploaded files) may name run.id:
        // render again with the real one.
        let loaded = if loaded.ctx.run_id == run.id {
            loaded
        } else {
            self.load(path, vars, run.id)?
        };
        let execs = Arc::new(executors(&loaded)?);
        // Spool folders earlier engines of this runbook committed but may
        // not have removed (killed first) go at the next connection.
        let left = store.spool_discards(&run.runbook)?;
        execs
            .ssh
            .remove_left(left.into_iter().map(|d| (d.host, d.base)));
        let notifier = Notifier::new(&loaded, args.notify)?;
        let mut session = Session {
            ctx: self,
            store,
            run,
            args,
            loaded,
            execs,
            began,
            cache: CheckCache::default(),
            signals: Signals::new(),
        };
        let result = session.passes(resumed, fresh && !resumed, &notifier).await;
        if let Ok(execs) = Arc::try_unwrap(session.execs) {
            execs.ssh.close().await;
            forget_removed(session.store, &execs.ssh);
        }
        result
    }
}

/// Forgets the records of the spool folders the hosts removed; one that
/// cannot be forgotten now is removed again (harmlessly) next time.
fn forget_removed(store: &mut Store, ssh: &exec::ssh::SshPool) {
    let removed: Vec<crate::store::SpoolRow> = ssh
        .removed()
        .into_iter()
        .map(|(host, base)| crate::store::SpoolRow {
            host,
            base,
            login: None,
        })
        .collect();
    if let Err(e) = store.forget_discards(&removed) {
        tracing::warn!(error = %e, "could not forget the removed spool folders");
    }
}

/// A run `state copy` moved is resumed where it went, never here (exit 4).
fn refuse_moved(run: &RunRow, new: &str) -> Result<()> {
    match &run.moved_to {
        Some(to) => Err(Error::Moved {
            run_id: run.id,
            to: to.clone(),
            new: new.to_string(),
        }),
        None => Ok(()),
    }
}

/// The runbook's name, once its `--var` names are checked against it.
fn checked_name(path: &Path, vars: &[(String, String)]) -> Result<String> {
    let (file, source) = load::load(path)?;
    validate::check_var_names(&file, &source, vars)?;
    Ok(runbook_name(file.name.as_deref(), &source.path))
}

/// The vars a resumed run started with, with the ones given now over them.
fn merged_vars(before: &[(String, String)], given: &[(String, String)]) -> Vec<(String, String)> {
    let mut vars = before.to_vec();
    vars.retain(|(k, _)| !given.iter().any(|(n, _)| n == k));
    vars.extend(given.iter().cloned());
    vars
}

impl Session<'_> {
    /// Pass after pass until the run stops for good; its exit code.
    async fn passes(
        &mut self,
        mut resumed: bool,
        mut fresh: bool,
        notifier: &Notifier,
    ) -> Result<i32> {
        loop {
            let (state, secrets) = self.pass(resumed, fresh).await?;
            let lease = self.store.keep_lease(self.run.id)?;
            if let Some(l) = lease.filter(|l| state == RunState::Interrupted && l.take_ran_out()) {
                // Stopped because the lease ran out: back if nobody took over.
                lease::regain(&l).await?;
                eprintln!(
                    "the database answers again and nobody took run {} over: going on",
                    self.run.id
                );
                (resumed, fresh) = (true, false);
                self.store.set_run_state(self.run.id, RunState::Running)?;
                continue;
            }
            if state == RunState::Interrupted {
                // The signal that stopped the pass is not the one that
                // stops its notifications.
                self.signals.take().await;
            }
            if self.notify(notifier, state, &secrets).await == Delivery::Stopped {
                return Ok(exit::INTERRUPTED);
            }
            let Some(options) = self.args.wait.filter(|_| state == RunState::Held) else {
                return Ok(state.exit_code());
            };
            match self.wait(options, &secrets).await? {
                WaitEnd::Ready => {
                    resumed = true;
                    fresh = false;
                    self.store.set_run_state(self.run.id, RunState::Running)?;
                }
                WaitEnd::TimedOut => {
                    self.say(&format!(
                        "stopped waiting: --timeout passed; the run is still held: {}",
                        self.resume_later()
                    ));
                    return Ok(exit::HELD);
                }
                WaitEnd::Interrupted => {
                    self.say(&format!(
                        "stopped waiting (signal); the run is still held: {}",
                        self.resume_later()
                    ));
                    return Ok(exit::INTERRUPTED);
                }
                WaitEnd::SteppedAside(by) => {
                    self.say(&format!(
                        "stepped aside: {by} takes run {} over",
                        self.run.id
                    ));
                    return Ok(exit::HELD);
                }
            }
        }
    }

    /// The notifications after a pass that ended in `state`. One that
    /// cannot be sent or recorded is a warning: the run goes on.
    async fn notify(
        &mut self,
        notifier: &Notifier,
        state: RunState,
        secrets: &SecretStates,
    ) -> Delivery {
        let redactor = secrets.redactor();
        let (ctx, run, loaded) = (self.ctx, self.run, &self.loaded);
        match notifier
            .after_pass(
                ctx,
                self.store,
                run,
                state,
                loaded,
                &redactor,
                &mut self.signals,
            )
            .await
        {
            Ok(delivery) => delivery,
            Err(e) => {
                eprintln!("warning: the notifications could not be sent or recorded: {e}");
                Delivery::Done
            }
        }
    }

    /// A held run's wait (`--wait`) until it can go on, `--timeout` passes
    /// or a signal comes.
    async fn wait(&mut self, options: WaitOptions, secrets: &SecretStates) -> Result<WaitEnd> {
        let waiter = wait::Waiter {
            loaded: &self.loaded,
            execs: &self.execs,
            env_files: &self.args.env_files,
            options,
            deadline: options.timeout.map(|t| self.began + t),
        };
        let (json, run_id) = (self.args.json, self.run.id);
        let mut say = |line: &str| say_line(json, run_id, line);
        waiter
            .until_ready(
                self.store,
                run_id,
                secrets,
                &mut self.cache,
                &mut self.signals,
                &mut say,
            )
            .await
    }

    /// What to type once the wait is given up: the summary under `--wait`
    /// named no resume.
    fn resume_later(&self) -> String {
        let flag = self.ctx.state_flag();
        format!(
            "once a person has acted, runbook resume {}{flag}",
            self.run.id
        )
    }

    fn say(&self, line: &str) {
        say_line(self.args.json, self.run.id, line)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_var_given_now_replaces_the_runs_and_the_rest_are_kept_in_order() {
        let before = pairs(&[("size", "s"), ("host", "a"), ("tag", "1")]);
        let given = pairs(&[("host", "b"), ("new", "x")]);
        assert_eq!(
            merged_vars(&before, &given),
            pairs(&[("size", "s"), ("tag", "1"), ("host", "b"), ("new", "x")])
        );
        assert_eq!(merged_vars(&[], &given), given);
    }
}
