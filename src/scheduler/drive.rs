//! The pass's loop: start what may start, then take what the jobs say in
//! one group commit, until nothing runs; a signal or a lost lease stops it.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fence::{lease_news, lease_ok};
use super::job::Msg;
use super::start::spawn;
use super::{Options, Pass};
use crate::error::Result;
use crate::exec;
use crate::state::StepState;

impl Pass<'_> {
    /// Starts steps and handles what they say until nothing runs; whether
    /// it was stopped by a signal.
    pub(super) async fn drive(
        &mut self,
        options: &Options,
        cancel: &CancellationToken,
        tx: mpsc::UnboundedSender<Msg>,
        rx: &mut mpsc::UnboundedReceiver<Msg>,
    ) -> Result<bool> {
        self.execs = Some(options.execs.clone());
        self.prepare_spools(&options.execs);
        let mut stopping = false;
        let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt());
        let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate());
        loop {
            stopping |= cancel.is_cancelled();
            let can_start = lease_ok(&options.lease);
            if !stopping && can_start {
                self.start_ready(options, &tx, cancel)?;
            }
            if self.running == 0 {
                if stopping || can_start || self.ready.is_empty() {
                    return Ok(stopping);
                }
                // The lease cannot be renewed: nothing starts until it can
                // again, or it runs out.
                tokio::select! {
                    _ = lease_news(&options.lease) => {}
                    _ = cancel.cancelled() => {}
                    _ = received(&mut sigint) => { stopping = true; cancel.cancel(); }
                    _ = received(&mut sigterm) => { stopping = true; cancel.cancel(); }
                }
                continue;
            }
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = self.output.due() => { self.flush_output()?; continue; }
                _ = received(&mut sigint) => { stopping = true; cancel.cancel(); continue; }
                _ = received(&mut sigterm) => { stopping = true; cancel.cancel(); continue; }
                _ = cancel.cancelled(), if !stopping => { stopping = true; continue; }
                _ = lease_news(&options.lease) => continue,
            };
            let Some(first) = msg else {
                return Ok(stopping);
            };
            // Whatever else is waiting, in one go (up to a bound), committed
            // together before anything that depends on it starts.
            self.store.begin_batch()?;
            self.on_message(first)?;
            for _ in 0..511 {
                match rx.try_recv() {
                    Ok(m) => self.on_message(m)?,
                    Err(_) => break,
                }
            }
            // What they released starts in the same transaction: a step's
            // result and its dependents' `running` rows (with their spools'
            // records) are made durable together, with one sync, before
            // any of those dependents starts.
            let jobs = if !stopping && !cancel.is_cancelled() && lease_ok(&options.lease) {
                self.begin_ready(options)?
            } else {
                Vec::new()
            };
            self.store.commit_batch()?;
            self.discard_committed();
            spawn(jobs, &tx, cancel);
        }
    }

    /// Lets the hosts remove the spool folders of the results just
    /// committed.
    pub(super) fn discard_committed(&mut self) {
        let spools = std::mem::take(&mut self.to_discard);
        if let Some(execs) = &self.execs {
            for spool in spools {
                execs.ssh.discard(&spool.host, &spool.base);
            }
        }
    }

    /// Tells each host the attempt folders its remote `run` steps will
    /// spool in, so that they are made ahead, in one go.
    fn prepare_spools(&self, execs: &exec::Executors) {
        let mut by_host: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (step, row) in self.plan.steps.iter().zip(&self.rows) {
            if let (Some(host), crate::plan::RenderedAction::Run { .. }, StepState::Pending) =
                (&step.host, &step.rendered.action, row.state)
            {
                let base = exec::spool::base(self.run_id, &self.engine_key, &step.id);
                by_host
                    .entry(host)
                    .or_default()
                    .push(format!("{base}/{}", row.attempts + 1));
            }
        }
        for (host, dirs) in by_host {
            execs.ssh.prepare(host, dirs);
        }
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
