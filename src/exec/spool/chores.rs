//! The spool's housekeeping on one host: folders to remove once their
//! results are committed, attempt folders to make ahead, and what a new
//! connection removes, in the background ahead of its first command
//! (folders earlier engines left, empty prepared folders).

use tokio::sync::Mutex;

use super::script;
use crate::exec::connection::SshError;
use crate::exec::host::Host;
use crate::exec::shell::{RemoteShell, ShellEnd};

/// One host's spool housekeeping.
#[derive(Default)]
pub struct Chores {
    /// Spool folders whose results are committed: to remove (sent after
    /// the next detached step's command, so that the host removes them
    /// while the engine commits that step), and sent (removed again, in
    /// the foreground, when the pool closes: only then are they known to
    /// be gone, and their records in the state can go).
    discards: std::sync::Mutex<(Vec<String>, Vec<String>)>,
    /// Attempt folders of steps about to run: to make (with the next
    /// detached step's command), and made (the unused ones go when the pool
    /// closes).
    prepared: std::sync::Mutex<(Vec<String>, Vec<String>)>,
    /// The connection whose cleanup was sent (0: none yet), and the spool
    /// folders earlier engines left to remove.
    cleanup: Mutex<(u64, Vec<String>)>,
    /// Those folders once their cleanup was sent: removed again in the
    /// foreground when the pool closes, and only then are their records
    /// forgotten.
    left_sent: std::sync::Mutex<Vec<String>>,
    /// Spool folders removed on the host: their records can go.
    removed: std::sync::Mutex<Vec<String>>,
}

impl Chores {
    /// A shell of the host; the first one on a new connection is sent the
    /// removal of what earlier engines left (see
    /// [`script::cleanup_preamble`]) ahead of its first command, in the
    /// background, with no wait for a reply.
    pub async fn shell(&self, host: &Host) -> Result<RemoteShell, SshError> {
        let mut shell = host.shell().await?;
        let mut cleanup = self.cleanup.lock().await;
        if shell.connection <= cleanup.0 {
            return Ok(shell);
        }
        let command = script::cleanup_preamble(&cleanup.1, &self.own_run_folders());
        if let Err(e) = shell.send(&command).await {
            drop(cleanup);
            let message = format!("lost the SSH connection to {}: {e}", host.describe());
            host.settle(shell, &ShellEnd::Lost(e.to_string())).await;
            return Err(SshError(message));
        }
        let bases = std::mem::take(&mut cleanup.1);
        if let Ok(mut sent) = self.left_sent.lock() {
            sent.extend(bases);
        }
        cleanup.0 = shell.connection;
        Ok(shell)
    }

    /// The run folders of this engine's prepared attempt folders.
    fn own_run_folders(&self) -> Vec<String> {
        let mut runs: Vec<String> = match self.prepared.lock() {
            Ok(p) => {
                p.0.iter()
                    .chain(&p.1)
                    .filter_map(|d| script::run_folder(d))
                    .map(str::to_string)
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        runs.sort();
        runs.dedup();
        runs
    }

    /// Notes a spool folder an earlier engine left to remove (its record in
    /// the state); folders that are not spool folders are ignored.
    pub fn remove_left(&self, base: String) {
        if !script::is_spool_folder(&base) {
            return;
        }
        if let Ok(mut c) = self.cleanup.try_lock() {
            c.1.push(base);
        }
    }

    /// Notes that a step's result is committed: its spool folder goes
    /// after the next detached step's command (or when the pool closes).
    pub fn discard(&self, base: &str) {
        if let Ok(mut d) = self.discards.lock() {
            d.0.push(base.to_string());
        }
    }

    /// Notes the attempt folders of steps about to run: they are made in
    /// the background with the next detached step's command.
    pub fn prepare(&self, dirs: Vec<String>) {
        if let Ok(mut p) = self.prepared.lock() {
            p.0.extend(dirs);
        }
    }

    /// What goes before the next detached step's command (the folders to
    /// make ahead) and after it (the committed folders to remove, in the
    /// background once the step has ended there).
    pub fn around(&self) -> (String, String) {
        let prepare = match self.prepared.lock() {
            Ok(mut p) => {
                let dirs = std::mem::take(&mut p.0);
                let cmd = script::prepare_command(&dirs);
                p.1.extend(dirs);
                cmd
            }
            Err(_) => String::new(),
        };
        let discard = match self.discards.lock() {
            Ok(mut d) => {
                let bases = std::mem::take(&mut d.0);
                let cmd = script::discard_command(&bases, true);
                d.1.extend(bases);
                cmd
            }
            Err(_) => String::new(),
        };
        (prepare, discard)
    }

    /// Notes folders removed on the host.
    pub fn removed_now(&self, bases: Vec<String>) {
        if let Ok(mut r) = self.removed.lock() {
            r.extend(bases);
        }
    }

    /// The folders removed since the last call.
    pub fn removed(&self) -> Vec<String> {
        self.removed
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// At the end of the run, through an idle shell, in the foreground:
    /// removes the prepared folders no step used and every committed
    /// folder (again, for those sent already).
    pub async fn close(&self, host: &Host) {
        let made = self
            .prepared
            .lock()
            .map(|mut p| std::mem::take(&mut p.1))
            .unwrap_or_default();
        let discards: Vec<String> = self
            .discards
            .lock()
            .map(|mut d| {
                let (mut pending, sent) = std::mem::take(&mut *d);
                pending.extend(sent);
                pending
            })
            .unwrap_or_default();
        let mut discards = discards;
        if let Ok(mut left) = self.left_sent.lock() {
            discards.append(&mut left);
        }
        let command = format!(
            "{}{}",
            script::unprepare_command(&made),
            script::discard_command(&discards, false)
        );
        if command.is_empty() {
            return;
        }
        let Some(mut shell) = host.idle_shell().await else {
            return;
        };
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let limit = std::time::Duration::from_secs(5);
        if let Ok(end) = tokio::time::timeout(limit, shell.run(&command, &[], &tx)).await {
            if let ShellEnd::Exited(_) = end {
                self.removed_now(discards);
            }
            host.settle(shell, &end).await;
        }
    }
}
