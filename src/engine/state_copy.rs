//! `runbook state copy` (SPEC §11): runs moved from this state to another,
//! the source marked moved so one run is never resumed in two places.

use super::{Ctx, Target};
use crate::error::{exit, Error, Result};
use crate::store::{copy_run, Location, RunRow, Store};

impl Ctx {
    /// `state copy [RUN_ID|NAME...|--all] --to PATH_OR_URL`.
    pub fn state_copy(&self, targets: &[String], all: bool, to: &str) -> Result<i32> {
        let dest = Location::parse(std::ffi::OsStr::new(to), &self.cwd)?;
        if dest == self.state {
            return Err(Error::Usage(format!(
                "--to {} is the state the runs are in already; name another one",
                dest.shown()
            )));
        }
        let source = self.existing_store()?;
        let runs = self.runs_to_copy(&source, targets, all)?;
        let mut target = Store::open_at(&dest)?;
        for run in &runs {
            self.refuse_copy(&source, &target, run, &dest)?;
        }
        for run in &runs {
            let id = copy_run(&source, &mut target, run)?;
            source.mark_moved(run.id, &dest.shown())?;
            let as_id = match id == run.id {
                true => format!("run {id}"),
                false => format!("run {id} (run {} there was taken)", run.id),
            };
            println!(
                "copied run {} ({}, {}) to {} as {as_id}; resume it there: runbook resume {id} --state {}",
                run.id,
                run.runbook,
                run.state,
                dest.shown(),
                crate::exec::quote::sh_quote(&dest.shown())
            );
        }
        Ok(exit::OK)
    }

    /// The runs named (ids or runbook names: each one's latest), or all.
    fn runs_to_copy(&self, store: &Store, targets: &[String], all: bool) -> Result<Vec<RunRow>> {
        if all {
            let mut runs = store.recent_runs(i64::MAX)?;
            runs.retain(|r| r.moved_to.is_none());
            runs.reverse();
            return Ok(runs);
        }
        if targets.is_empty() {
            return Err(Error::Usage(
                "name the runs to copy (run ids or runbook names), or give --all".into(),
            ));
        }
        let mut runs: Vec<RunRow> = Vec::new();
        for t in targets {
            let run = self.find_run(store, &Target::parse(Some(t.clone())))?;
            if !runs.iter().any(|r| r.id == run.id) {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// A live run, one moved already, or one the target holds is refused
    /// before anything is copied.
    fn refuse_copy(
        &self,
        source: &Store,
        target: &Store,
        run: &RunRow,
        dest: &Location,
    ) -> Result<()> {
        if let Some(to) = &run.moved_to {
            return Err(Error::Usage(format!(
                "run {} was moved to {to} already; nothing copied",
                run.id
            )));
        }
        if let Some(h) = source.live_holder(run.id)? {
            return Err(h.locked(run.id));
        }
        if target.has_copy(run)? {
            return Err(Error::Usage(format!(
                "run {} is in {} already; nothing copied",
                run.id,
                dest.shown()
            )));
        }
        Ok(())
    }
}
