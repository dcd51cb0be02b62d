//! Phase 3 of a pass: the run's state, committed and announced.

use super::Pass;
use crate::error::Result;
use crate::events::Event;
use crate::state::{RunState, StepState};

impl Pass<'_> {
    /// Phase 3: the run's state, committed and announced. Returns the
    /// state of what this pass could do: a pass that finished the hosts of
    /// its `--limit` succeeded, while the run, with other hosts' instances
    /// still pending, stays unfinished (interrupted) for a later pass.
    pub(super) fn finish(mut self, stopping: bool) -> Result<RunState> {
        if !stopping {
            self.note_waiting()?;
        }
        let (pass, stored) = if stopping {
            (RunState::Interrupted, RunState::Interrupted)
        } else {
            // Pending rows after a pass that was not stopped were left on
            // purpose: outside --limit, over a max_fail budget, or after them.
            let pass = RunState::from_steps(
                self.rows
                    .iter()
                    .map(|r| r.state)
                    .filter(|s| *s != StepState::Pending),
            );
            let open = self.rows.iter().any(|r| r.state == StepState::Pending);
            let stored = if open && pass == RunState::Succeeded {
                RunState::Interrupted
            } else {
                pass
            };
            (pass, stored)
        };
        self.store.set_run_state(self.run_id, stored)?;
        let pending = self
            .rows
            .iter()
            .filter(|r| r.state == StepState::Pending)
            // A block's own row is no step of its own (its hosts are).
            .filter(|r| r.block.as_deref() != Some(r.id.as_str()))
            .map(|r| r.id.clone())
            .collect();
        self.reporter.event(&Event::RunFinished {
            run_id: self.run_id,
            state: stored,
            pending,
        });
        Ok(pass)
    }
}
