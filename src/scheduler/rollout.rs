//! The rolling block's turn (SPEC §15): an instance of a block's inner
//! step starts only when its host's batch is the open one; the next batch
//! opens when every host of the open one has finished the whole block,
//! unless more hosts failed than `max_fail` allows, after which no further
//! batch starts and the hosts left stay pending, each saying why.
//!
//! Everything is read from the rows as they are, so a resume goes on from
//! where the rollout stopped: the open batch is the first with a host
//! whose block is not finished.

use crate::error::Result;
use crate::events::Event;
use crate::plan::Plan;
use crate::state::StepState;
use crate::store::StepRow;

/// Whether an instance may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Not in a block, or its host's batch is open.
    Go,
    /// Its host's batch is not open yet.
    Wait,
    /// The block stopped at `max_fail`: it stays pending.
    Stopped,
}

/// The blocks of a plan and where each one's rollout is.
pub(super) struct Rollouts {
    blocks: Vec<Block>,
    /// Per plan step: its block and host (indexes) when it is an instance
    /// of a block's inner step.
    of: Vec<Option<(usize, usize)>>,
}

struct Block {
    max_fail: u32,
    /// Hosts in the block's order.
    hosts: Vec<Host>,
    /// The batch that may run (past the last one when all are done).
    open: usize,
    /// Set once more hosts failed than `max_fail` allows.
    stopped: bool,
}

struct Host {
    name: String,
    batch: usize,
    /// Its instances of the block's inner steps (plan indexes), those
    /// outside this pass's `--limit` left out.
    steps: Vec<usize>,
}

impl Rollouts {
    /// The blocks of `plan`, each open at its first batch with a host whose
    /// block is not finished.
    pub(super) fn new(plan: &Plan, rows: &[StepRow], excluded: &[bool]) -> Rollouts {
        let mut names: Vec<String> = Vec::new();
        let mut blocks: Vec<Block> = Vec::new();
        let mut of = vec![None; plan.steps.len()];
        for (i, step) in plan.steps.iter().enumerate() {
            let Some(roll) = step.family.as_ref().and_then(|f| f.roll.as_ref()) else {
                continue;
            };
            let b = match names.iter().position(|n| *n == roll.block) {
                Some(b) => b,
                None => {
                    names.push(roll.block.clone());
                    blocks.push(Block {
                        max_fail: roll.max_fail,
                        hosts: Vec::new(),
                        open: 0,
                        stopped: false,
                    });
                    blocks.len() - 1
                }
            };
            let host = step.host.clone().unwrap_or_default();
            let hosts = &mut blocks[b].hosts;
            let h = match hosts.iter().position(|x| x.name == host) {
                Some(h) => h,
                None => {
                    hosts.push(Host {
                        name: host,
                        batch: roll.batch,
                        steps: Vec::new(),
                    });
                    hosts.len() - 1
                }
            };
            if !excluded.get(i).copied().unwrap_or(false) {
                hosts[h].steps.push(i);
            }
            of[i] = Some((b, h));
        }
        let mut rollouts = Rollouts { blocks, of };
        let _ = rollouts.advance(rows);
        rollouts
    }

    /// Whether step `i` may start now.
    pub(super) fn turn(&self, i: usize) -> Turn {
        let Some((b, h)) = self.of.get(i).copied().flatten() else {
            return Turn::Go;
        };
        let block = &self.blocks[b];
        if block.stopped {
            Turn::Stopped
        } else if block.hosts[h].batch <= block.open {
            Turn::Go
        } else {
            Turn::Wait
        }
    }

    /// Opens the next batch of each block whose open batch is finished, or
    /// stops the block when too many of its hosts failed. Returns the
    /// pending instances a stop leaves, with the reason each is to show.
    pub(super) fn advance(&mut self, rows: &[StepRow]) -> Vec<(usize, String)> {
        let mut left = Vec::new();
        for block in self.blocks.iter_mut().filter(|b| !b.stopped) {
            let batches = block.hosts.iter().map(|h| h.batch + 1).max().unwrap_or(0);
            while block.open < batches {
                let open = block.open;
                let mut in_batch = block.hosts.iter().filter(|h| h.batch == open);
                if !in_batch.all(|h| finished(h, rows)) {
                    break;
                }
                let failed: Vec<&str> = block
                    .hosts
                    .iter()
                    .filter(|h| h.steps.iter().any(|&s| rows[s].state == StepState::Failed))
                    .map(|h| h.name.as_str())
                    .collect();
                if failed.len() as u32 > block.max_fail {
                    block.stopped = true;
                    let reason = format!(
                        "not started, max_fail {} reached ({} failed)",
                        block.max_fail,
                        failed.join(", ")
                    );
                    for h in block.hosts.iter().filter(|h| h.batch > open) {
                        for &s in &h.steps {
                            if rows[s].state == StepState::Pending {
                                left.push((s, reason.clone()));
                            }
                        }
                    }
                    break;
                }
                block.open += 1;
            }
        }
        left
    }
}

impl super::Pass<'_> {
    /// Opens the next batch of each rolling block that finished one, and
    /// says on the hosts a block stopped at `max_fail` leaves why they did
    /// not start (they stay pending, for a resume).
    pub(super) fn stop_rollouts(&mut self) -> Result<()> {
        let left = self.rollouts.advance(&self.rows);
        self.leave(left)
    }

    /// At the end of a pass that was not stopped: the hosts of a block
    /// that wait for an earlier batch still going (held) say so.
    pub(super) fn note_waiting(&mut self) -> Result<()> {
        let left = self.rollouts.waiting(&self.rows);
        self.leave(left)
    }

    fn leave(&mut self, left: Vec<(usize, String)>) -> Result<()> {
        for (i, reason) in left {
            let row = &mut self.rows[i];
            row.reason = Some(reason);
            self.store.save_step(self.run_id, row)?;
            // Said as the state it is left in, so the summary names it.
            self.reporter.event(&Event::StepFinished {
                run_id: self.run_id,
                step: row.id.clone(),
                host: row.host.clone(),
                state: StepState::Pending,
                attempts: row.attempts,
                duration_ms: None,
                exit_code: None,
                reason: row.reason.clone(),
            });
        }
        Ok(())
    }
}

impl Rollouts {
    /// The pending instances of hosts whose batch has not opened in a block
    /// that has not stopped, with the batch they wait for.
    pub(super) fn waiting(&self, rows: &[StepRow]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for block in self.blocks.iter().filter(|b| !b.stopped) {
            let open: Vec<&str> = block
                .hosts
                .iter()
                .filter(|h| h.batch == block.open && !finished(h, rows))
                .map(|h| h.name.as_str())
                .collect();
            if open.is_empty() {
                continue;
            }
            let reason = format!(
                "not started: waits for {} to finish the block",
                open.join(", ")
            );
            for h in block.hosts.iter().filter(|h| h.batch > block.open) {
                out.extend(
                    h.steps
                        .iter()
                        .filter(|&&s| rows[s].state == StepState::Pending)
                        .map(|&s| (s, reason.clone())),
                );
            }
        }
        out
    }
}

/// Whether a host has gone through the whole block: each of its
/// instances succeeded, was skipped, failed or was blocked (a held one
/// waits for a person, and the rollout with it).
fn finished(host: &Host, rows: &[StepRow]) -> bool {
    host.steps.iter().all(|&s| {
        matches!(
            rows[s].state,
            StepState::Succeeded | StepState::Skipped | StepState::Failed | StepState::Blocked
        )
    })
}
