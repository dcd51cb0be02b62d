//! SSH: the pool of a run's hosts, what the rest of the engine calls. Each
//! host is its connection and shells ([`super::host`]), its spool's
//! housekeeping ([`super::spool::Chores`]) and its port forwards
//! ([`super::forward`]); the pool picks the host by name and runs attached
//! commands, detached steps ([`super::spool`]), short commands and
//! forwards on it.
//!
//! The rooms point one way: `ssh` (this pool) → `spool`, `forward` →
//! `host` → `shell` → `connection`; each takes its quoting from `quote`.
//!
//! An engine killed with SIGKILL leaves nothing running on a host but its
//! detached steps: its remote shells end their process groups when their
//! input closes (see `shell.rs`), their sessions close, and the masters go
//! idle and exit (see `connection.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openssh::Session;
use tokio_util::sync::CancellationToken;

pub use super::connection::{
    idle_from_env, until, HostTarget, SshError, RECONNECT_FIRST, RECONNECT_MAX,
};
pub use super::spool::{Detach, Detached, Fate, Probe};

use super::connection;
use super::forward::Forwards;
use super::host::{Captured, Host};
use super::shell::{RemoteShell, ShellEnd};
use super::spool::{self, Chores};
use super::{LineSink, Outcome};

/// One host of the pool.
struct Slot {
    host: Host,
    chores: Chores,
    forwards: Forwards,
}

/// The connections of one run.
pub struct SshPool {
    slots: HashMap<String, Slot>,
}

impl SshPool {
    /// A pool for these hosts; nothing connects until first use. Fails
    /// when `RUNBOOK_SSH_IDLE` is set to something that is not a duration.
    pub fn new(targets: Vec<HostTarget>) -> Result<Self, String> {
        let idle = idle_from_env()?;
        let control_dir = connection::control_dir();
        let slots = targets
            .into_iter()
            .map(|t| {
                let slot = Slot {
                    host: Host::new(t.clone(), control_dir.clone(), idle),
                    chores: Chores::default(),
                    forwards: Forwards::default(),
                };
                (t.name, slot)
            })
            .collect();
        Ok(SshPool { slots })
    }

    /// The user this engine logs in to `host` as (see
    /// [`Host::login_user`]).
    pub fn login_user(&self, host: &str) -> Option<String> {
        self.slot(host).ok()?.host.login_user()
    }

    fn slot(&self, host: &str) -> Result<&Slot, SshError> {
        self.slots
            .get(host)
            .ok_or_else(|| SshError(format!("host `{host}` is not declared")))
    }

    /// A shell on the host (see [`Chores::shell`]).
    async fn shell(&self, host: &str) -> Result<(&Slot, RemoteShell), SshError> {
        let slot = self.slot(host)?;
        Ok((slot, slot.chores.shell(&slot.host).await?))
    }

    /// The host's master connection, opened if needed.
    pub async fn session(&self, host: &str) -> Result<Arc<Session>, SshError> {
        self.slot(host)?.host.session().await
    }

    /// Whether the master connection `session` to the host dropped (it no
    /// longer answers); a dropped one is forgotten, so the next use
    /// reconnects.
    pub async fn dropped(&self, host: &str, session: &Arc<Session>) -> bool {
        match self.slot(host) {
            Ok(slot) => slot.host.dropped(session).await,
            Err(_) => true,
        }
    }

    /// Closes every master connection (removing the spool folders still
    /// to be removed first, through an idle shell).
    pub async fn close(&self) {
        for slot in self.slots.values() {
            slot.chores.close(&slot.host).await;
            slot.host.close().await;
        }
    }

    /// Runs `script` with `sh` on the host, with `env` passed so that no
    /// value can break out of its quoting. Uses an idle shell of the host
    /// (or starts one); a timeout or interrupt ends the shell's whole
    /// process group on the host.
    pub async fn run(
        &self,
        host: &str,
        script: &str,
        env: &[(String, String)],
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        sink: &LineSink,
    ) -> Outcome {
        let (slot, mut shell) = match self.shell(host).await {
            Ok(got) => got,
            Err(e) => {
                return Outcome::Failed {
                    exit_code: None,
                    reason: e.0,
                }
            }
        };
        let pgid = shell.pgid.clone();
        let ended = tokio::select! {
            end = shell.run(script, env, sink) => Some(end),
            _ = super::deadline(timeout) => None,
            _ = cancel.cancelled() => None,
        };
        let on = slot.host.describe();
        let Some(end) = ended else {
            drop(shell);
            slot.host.kill_group(&pgid).await;
            if cancel.is_cancelled() {
                return Outcome::Interrupted;
            }
            let took = humantime::format_duration(timeout.unwrap_or_default());
            return Outcome::Failed {
                exit_code: None,
                reason: format!("timed out after {took} on {on}"),
            };
        };
        let outcome = match &end {
            ShellEnd::Exited(0) => Outcome::Succeeded {
                exit_code: Some(0),
                note: None,
            },
            ShellEnd::Exited(code) => Outcome::Failed {
                exit_code: Some(*code),
                reason: format!("exited with code {code} on {on}"),
            },
            ShellEnd::Lost(e) => Outcome::Failed {
                exit_code: None,
                reason: format!("lost the SSH connection to {on} while the step ran ({e}); the next attempt reconnects"),
            },
        };
        slot.host.settle(shell, &end).await;
        outcome
    }

    /// Runs one attempt of a remote step detached from the connection
    /// (SPEC §8; see [`spool::run`]).
    pub async fn run_detached(
        &self,
        host: &str,
        step: Detach<'_>,
        cancel: &CancellationToken,
        sink: &LineSink,
    ) -> Detached {
        match self.slot(host) {
            Ok(slot) => spool::run(&slot.host, &slot.chores, step, cancel, sink).await,
            Err(e) => Detached::failed(e.0, Fate::Done, Default::default()),
        }
    }

    /// Finds the latest attempt of a step started on the host at or after
    /// `attempt` (see [`spool::probe`]).
    pub async fn probe(&self, host: &str, base: &str, attempt: i64) -> Result<Probe, SshError> {
        let slot = self.slot(host)?;
        spool::probe(&slot.host, &slot.chores, base, attempt).await
    }

    /// Stops every attempt of a step still running on the host (its whole
    /// process group) and removes its spool folder.
    pub async fn stop_spool(&self, host: &str, base: &str) -> Result<(), SshError> {
        spool::stop(&self.slot(host)?.host, base).await
    }

    /// Notes that a step's result is committed: its spool folder goes with
    /// a later detached step's command to the host, in a batch (within 2 s
    /// while steps run there), or when the pool closes.
    pub fn discard(&self, host: &str, base: &str) {
        if let Ok(slot) = self.slot(host) {
            slot.chores.discard(base);
        }
    }

    /// Notes the attempt folders of steps about to run on the host: they
    /// are made in the background with the next detached step's command.
    pub fn prepare(&self, host: &str, dirs: Vec<String>) {
        if let Ok(slot) = self.slot(host) {
            slot.chores.prepare(dirs);
        }
    }

    /// Spool folders earlier engines left to remove on hosts (their
    /// records in the state), as (host, folder): each goes, with the empty
    /// attempt folders a killed engine prepared, sent ahead of the first
    /// command on a connection to its host (in the background there: no
    /// reply is waited for), and again when the pool closes; only then do
    /// their records go.
    pub fn remove_left(&self, left: impl IntoIterator<Item = (String, String)>) {
        for (host, base) in left {
            if let Ok(slot) = self.slot(&host) {
                slot.chores.remove_left(base);
            }
        }
    }

    /// The spool folders removed on their hosts since the last call, as
    /// (host, folder): their records can go.
    pub fn removed(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (name, slot) in &self.slots {
            all.extend(slot.chores.removed().into_iter().map(|b| (name.clone(), b)));
        }
        all
    }

    /// Runs a short command and returns (exit code, stdout, stderr) — for
    /// uploads, env files and checks. `input` goes to its stdin (over a
    /// channel of its own); without it, the command runs in a shell.
    pub async fn output(
        &self,
        host: &str,
        command: &str,
        input: Option<&[u8]>,
    ) -> Result<Captured, SshError> {
        match input {
            Some(data) => self.slot(host)?.host.feed(command, data).await,
            None => {
                let (slot, shell) = self.shell(host).await?;
                slot.host.capture(shell, command).await
            }
        }
    }

    /// A local port forwarded over the host's master to `remote_host:remote_port`
    /// as the host sees it; opened once per run and target.
    pub async fn forward(
        &self,
        host: &str,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<u16, SshError> {
        let slot = self.slot(host)?;
        slot.forwards
            .forward(&slot.host, remote_host, remote_port)
            .await
    }
}
