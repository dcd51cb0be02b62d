//! One host as the engine holds it: its master connection (opened on first
//! use, reused by every step there, forgotten when it fails so the next use
//! reconnects, closed at the end of the run), the long-lived shells idle
//! on it, and raw commands over the master. It takes connections from
//! [`super::connection`] and shells from [`super::shell`], and knows
//! nothing of spools, forwards or the pool of hosts.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openssh::{Session, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use super::connection::{self, HostTarget, SshError, KILL_GRACE_SECS};
use super::shell::{RemoteShell, ShellEnd};

/// A host's connection and idle shells.
pub struct Host {
    /// Where and how to reach it.
    pub target: HostTarget,
    session: Mutex<Option<Arc<Session>>>,
    shells: Mutex<Vec<RemoteShell>>,
    /// Master connections opened so far: the number of the current one.
    opened: AtomicU64,
    control_dir: PathBuf,
    idle: NonZeroUsize,
    /// The login user as ssh's configuration gives it, once asked.
    login: std::sync::Mutex<Option<Option<String>>>,
}

/// What a short command printed: exit code, stdout, stderr.
pub type Captured = (i32, Vec<u8>, String);

impl Host {
    /// A host not connected yet.
    pub fn new(target: HostTarget, control_dir: PathBuf, idle: NonZeroUsize) -> Host {
        Host {
            target,
            session: Mutex::new(None),
            shells: Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
            control_dir,
            idle,
            login: std::sync::Mutex::new(None),
        }
    }

    /// The user this engine logs in as: the host's `user`, else what ssh's
    /// configuration makes of it (`ssh -G`: a `User` line in
    /// ~/.ssh/config, or the local user). A remote step's spool is in that
    /// user's home (SPEC §8, §11). `None` when it cannot be told.
    pub fn login_user(&self) -> Option<String> {
        if let Some(user) = &self.target.user {
            return Some(user.clone());
        }
        let mut cache = self.login.lock().ok()?;
        if cache.is_none() {
            *cache = Some(connection::ssh_config_user(&self.target));
        }
        cache.clone().flatten()
    }

    /// The host as messages name it.
    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// The number of the current master connection (0: none opened yet);
    /// a new number is a new connection, whose forwards are new too.
    pub fn connection(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }

    /// The master connection, opened if needed.
    pub async fn session(&self) -> Result<Arc<Session>, SshError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        connection::remove_stale_control_dirs_once(&self.control_dir).await;
        let session =
            Arc::new(connection::connect(&self.target, &self.control_dir, self.idle).await?);
        tracing::info!(host = %self.target.name, "ssh master connection opened");
        *guard = Some(session.clone());
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(session)
    }

    /// Forgets a connection that failed (and its shells), so the next use
    /// reconnects.
    pub async fn forget(&self, broken: &Arc<Session>) {
        let mut guard = self.session.lock().await;
        if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, broken)) {
            *guard = None;
            self.shells.lock().await.clear();
        }
    }

    /// Whether the master connection `session` dropped (it no longer
    /// answers); a dropped one is forgotten, so the next use reconnects.
    pub async fn dropped(&self, session: &Arc<Session>) -> bool {
        if session.check().await.is_ok() {
            return false;
        }
        self.forget(session).await;
        true
    }

    /// An idle shell, or a new one (reconnecting once if the master turns
    /// out to be gone).
    pub async fn shell(&self) -> Result<RemoteShell, SshError> {
        if let Some(shell) = self.shells.lock().await.pop() {
            return Ok(shell);
        }
        let mut last = String::new();
        for _ in 0..2 {
            let session = self.session().await?;
            match RemoteShell::start(session.clone(), self.connection()).await {
                Ok(shell) => return Ok(shell),
                Err(e) => {
                    last = e;
                    self.forget(&session).await;
                }
            }
        }
        Err(SshError(format!(
            "cannot start a shell on {}: {last}",
            self.describe()
        )))
    }

    /// A shell back after a command: idle again if its connection is still
    /// the current one.
    pub async fn put_back(&self, shell: RemoteShell) {
        let current = self.session.lock().await.clone();
        if current.is_some_and(|s| Arc::ptr_eq(&s, &shell.session)) {
            self.shells.lock().await.push(shell);
        }
    }

    /// A shell whose command ended: put back, or forgotten with its
    /// connection when that was lost.
    pub async fn settle(&self, shell: RemoteShell, end: &ShellEnd) {
        match end {
            ShellEnd::Exited(_) => self.put_back(shell).await,
            ShellEnd::Lost(_) => {
                let session = shell.session.clone();
                drop(shell);
                self.forget(&session).await;
            }
        }
    }

    /// Runs a short command in one of the given shell and returns its exit
    /// code and output (text only); the shell is settled.
    pub async fn capture(
        &self,
        mut shell: RemoteShell,
        command: &str,
    ) -> Result<Captured, SshError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let end = shell.run(command, &[], &tx).await;
        drop(tx);
        let (mut out, mut err) = (Vec::new(), String::new());
        while let Ok((stream, line)) = rx.try_recv() {
            match stream {
                super::Stream::Stdout => {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                super::Stream::Stderr => {
                    err.push_str(&line);
                    err.push('\n');
                }
            }
        }
        let result = match &end {
            ShellEnd::Exited(code) => Ok((*code, out, err)),
            ShellEnd::Lost(e) => Err(SshError(format!(
                "lost the SSH connection to {}: {e}",
                self.describe()
            ))),
        };
        self.settle(shell, &end).await;
        result
    }

    /// Starts a remote command over the master; reconnects once when the
    /// master turns out to be gone.
    pub async fn spawn(
        &self,
        command: &str,
        stdin: bool,
    ) -> Result<(Arc<Session>, openssh::Child<Arc<Session>>), SshError> {
        let mut last = String::new();
        for _ in 0..2 {
            let session = self.session().await?;
            let mut cmd = Session::to_raw_command(session.clone(), command);
            cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match cmd.spawn().await {
                Ok(child) => return Ok((session, child)),
                Err(e) => {
                    last = e.to_string();
                    self.forget(&session).await;
                }
            }
        }
        Err(SshError(format!(
            "cannot start a command on {}: {last}",
            self.describe()
        )))
    }

    /// Runs a command over a channel of its own with `input` on its stdin
    /// and returns its exit code and output.
    pub async fn feed(&self, command: &str, input: &[u8]) -> Result<Captured, SshError> {
        let (session, mut child) = self.spawn(command, true).await?;
        if let Some(mut stdin) = child.stdin().take() {
            let written = stdin.write_all(input).await;
            let _ = stdin.shutdown().await;
            drop(stdin);
            if written.is_err() {
                self.forget(&session).await;
                return Err(SshError(format!(
                    "lost the SSH connection to {} while sending data",
                    self.describe()
                )));
            }
        }
        let (mut stdout, mut stderr) = (child.stdout().take(), child.stderr().take());
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            String::from_utf8_lossy(&buf).to_string()
        };
        let (out, err) = tokio::join!(read_out, read_err);
        match child.wait().await {
            Ok(status) => Ok((status.code().unwrap_or(-1), out, err)),
            Err(e) => {
                self.forget(&session).await;
                Err(SshError(format!(
                    "lost the SSH connection to {}: {e}",
                    self.describe()
                )))
            }
        }
    }

    /// Ends a remote process group (SIGTERM, then SIGKILL).
    pub async fn kill_group(&self, pgid: &str) {
        if pgid.is_empty() || !pgid.chars().all(|c| c.is_ascii_digit()) {
            tracing::warn!(
                host = %self.target.name,
                "no process group known for the remote step; only its channel is closed"
            );
            return;
        }
        let script = format!(
            "kill -TERM -{pgid} 2>/dev/null; i=0; while [ $i -lt {g} ] && kill -0 -{pgid} 2>/dev/null; do sleep 1; i=$((i+1)); done; kill -KILL -{pgid} 2>/dev/null; true",
            g = KILL_GRACE_SECS
        );
        if let Ok((_, child)) = self.spawn(&script, false).await {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Runs `script` (named `what` in errors) over a channel of its own
    /// and waits for it (up to `limit`): Ok when it exited 0.
    pub async fn run_raw(&self, what: &str, script: &str, limit: Duration) -> Result<(), SshError> {
        let (_, child) = self.spawn(script, false).await?;
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(SshError(format!("{what} exited with {status}"))),
            Ok(Err(e)) => Err(SshError(e.to_string())),
            Err(_) => Err(SshError(format!("{what} did not finish"))),
        }
    }

    /// Closes the idle shells and the master connection.
    pub async fn close(&self) {
        for shell in self.shells.lock().await.drain(..) {
            shell.close().await;
        }
        if let Some(session) = self.session.lock().await.take() {
            if let Ok(session) = Arc::try_unwrap(session) {
                let _ = session.close().await;
            }
        }
    }

    /// An idle shell if there is one (nothing connects).
    pub async fn idle_shell(&self) -> Option<RemoteShell> {
        self.shells.lock().await.pop()
    }
}
