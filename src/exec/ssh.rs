//! SSH: one multiplexed master connection per host (system OpenSSH through
//! the `openssh` crate), opened on first use, reused by every step on that
//! host, reopened after it is lost, closed at the end of the run.
//!
//! A master exits by itself once it has had no session for the idle time
//! (`ControlPersist`, default 60 s, `RUNBOOK_SSH_IDLE` overrides it), so an
//! engine killed with SIGKILL leaves none behind for long: its remote shells
//! end their process groups when their input closes (see `shell.rs`), their
//! sessions close, and the master goes idle. Each master gets a fresh
//! control directory; a new engine never reuses a dead engine's socket, and
//! removes the directories of masters that are gone.

use openssh::Stdio;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::shell::{FollowEnd, RemoteShell, ShellEnd};
use super::spool::{End, Progress};
use super::{LineSink, Outcome};

/// One attempt of a remote step to run detached.
#[derive(Clone, Copy)]
pub struct Detach<'a> {
    /// The step's spool folder, relative to the home.
    pub base: &'a str,
    /// The attempt (its folder under `base`).
    pub attempt: i64,
    /// The script and its environment; `None` only follows an attempt an
    /// earlier engine started.
    pub start: Option<(&'a str, &'a [(String, String)])>,
    /// How long it may still run, counted from when the host is first
    /// reached (connecting has a timeout of its own).
    pub left: Option<Duration>,
    /// The step's timeout, for messages.
    pub timeout: Option<Duration>,
}

/// What became of a detached attempt, beyond its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It ended (or was stopped) and its spool can go once committed.
    Done,
    /// It may still run on a host that could not be reached: its spool
    /// record must stay, for a later resume.
    KeepSpool,
    /// Its process ended without an exit status and the host rebooted.
    Vanished,
    /// It was marked as never started (an earlier resume gave it up).
    Gone,
}

/// How a detached attempt ended.
pub struct Detached {
    /// For the step's row.
    pub outcome: Outcome,
    /// What to do with its spool.
    pub fate: Fate,
    /// Where following it got to (its process group, who started it).
    pub progress: Progress,
}

impl Detached {
    fn failed(reason: String, fate: Fate, progress: Progress) -> Detached {
        Detached {
            outcome: Outcome::Failed {
                exit_code: None,
                reason,
            },
            fate,
            progress,
        }
    }
}

/// What a resumed engine finds of a step on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// This attempt was started there (running or finished).
    Found(i64),
    /// This attempt never started there (or its spool is gone); it is now
    /// marked so that it cannot start late.
    Gone(i64),
}

/// Grace between SIGTERM and SIGKILL for a remote process group.
pub(super) const KILL_GRACE_SECS: u32 = 2;

/// Where and how to reach a host.
#[derive(Debug, Clone)]
pub struct HostTarget {
    /// Name in the runbook.
    pub name: String,
    /// Address (rendered).
    pub address: String,
    /// Login user.
    pub user: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Private key.
    pub identity_file: Option<PathBuf>,
    /// Accept unknown host keys (still refuse changed ones).
    pub accept_new: bool,
    /// known_hosts file.
    pub known_hosts_file: Option<PathBuf>,
}

impl HostTarget {
    fn describe(&self) -> String {
        format!(
            "`{}` ({}{}{})",
            self.name,
            self.user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.address,
            self.port.map(|p| format!(":{p}")).unwrap_or_default()
        )
    }
}

struct Slot {
    target: HostTarget,
    session: Mutex<Option<Arc<Session>>>,
    shells: Mutex<Vec<RemoteShell>>,
    forwards: Mutex<HashMap<(String, u16), u16>>,
    /// Spool folders whose results are committed, removed with the next
    /// command sent to one of the host's shells.
    discards: std::sync::Mutex<Vec<String>>,
    /// Attempt folders of steps about to run: to make (with the next
    /// command), and made (the unused ones go when the pool closes).
    prepared: std::sync::Mutex<(Vec<String>, Vec<String>)>,
    /// What a new connection removes before its first use: whether that is
    /// still due for the current connection, and the spool folders earlier
    /// engines left to remove (see `spool::cleanup_command`).
    cleanup: Mutex<(bool, Vec<String>)>,
    /// Spool folders removed on the host: their records can go.
    removed: std::sync::Mutex<Vec<String>>,
    /// The login user as ssh's configuration gives it, once asked.
    login: std::sync::Mutex<Option<Option<String>>>,
}

/// The connections of one run.
pub struct SshPool {
    slots: HashMap<String, Slot>,
    control_dir: PathBuf,
    idle: NonZeroUsize,
}

/// How long a master with no session stays up, unless `RUNBOOK_SSH_IDLE`
/// says otherwise.
const DEFAULT_IDLE_SECS: usize = 60;

/// The idle time of masters: `RUNBOOK_SSH_IDLE` (a duration such as `5s`
/// or `2m`, whole seconds, at least 1 s) or the default. Checked before a
/// run starts so that a bad value leaves no run behind.
pub fn idle_from_env() -> Result<NonZeroUsize, String> {
    let Ok(text) = std::env::var("RUNBOOK_SSH_IDLE") else {
        return Ok(NonZeroUsize::new(DEFAULT_IDLE_SECS).unwrap_or(NonZeroUsize::MIN));
    };
    humantime::parse_duration(text.trim())
        .ok()
        .and_then(|d| usize::try_from(d.as_secs()).ok())
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| {
            format!(
                "RUNBOOK_SSH_IDLE={text:?} is not a duration of at least 1s (e.g. `60s`, `5m`); fix or unset it"
            )
        })
}

/// A control directory of our own (`$TMPDIR/runbook-ssh-UID`, mode 0700),
/// or the temp dir itself when that cannot be made safely.
fn control_dir() -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let tmp = std::env::temp_dir();
    let uid = nix::unistd::getuid().as_raw();
    let dir = tmp.join(format!("runbook-ssh-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0 => dir,
        _ => tmp,
    }
}

/// Removes the directories (`.ssh-connection*`) of masters that are gone:
/// the socket refuses connections, or there is none and the directory is
/// older than any connection attempt. Live masters (another engine's, or a
/// dead engine's that is still idling out) are left alone.
fn remove_stale_control_dirs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(".ssh-connection")
        {
            continue;
        }
        let path = entry.path();
        let socket = path.join("master");
        let stale = if socket.exists() {
            std::os::unix::net::UnixStream::connect(&socket).is_err()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(120))
        };
        if stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The `user` ssh would log in to the target as (`ssh -G`, which reads
/// the configuration and connects nowhere).
fn ssh_config_user(t: &HostTarget) -> Option<String> {
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-G");
    if let Some(port) = t.port {
        cmd.arg("-p").arg(port.to_string());
    }
    let out = cmd
        .arg("--")
        .arg(&t.address)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("user ").map(|u| u.trim().to_string()))
        .filter(|u| !u.is_empty())
}

/// A failure to reach or use a host.
#[derive(Debug, Clone)]
pub struct SshError(pub String);

impl SshPool {
    /// A pool for these hosts; nothing connects until first use. Fails
    /// when `RUNBOOK_SSH_IDLE` is set to something that is not a duration.
    pub fn new(targets: Vec<HostTarget>) -> Result<Self, String> {
        let idle = idle_from_env()?;
        let slots = targets
            .into_iter()
            .map(|t| {
                (
                    t.name.clone(),
                    Slot {
                        target: t,
                        session: Mutex::new(None),
                        shells: Mutex::new(Vec::new()),
                        forwards: Mutex::new(HashMap::new()),
                        discards: std::sync::Mutex::new(Vec::new()),
                        prepared: std::sync::Mutex::new((Vec::new(), Vec::new())),
                        cleanup: Mutex::new((true, Vec::new())),
                        removed: std::sync::Mutex::new(Vec::new()),
                        login: std::sync::Mutex::new(None),
                    },
                )
            })
            .collect();
        Ok(SshPool {
            slots,
            control_dir: control_dir(),
            idle,
        })
    }

    /// The user this engine logs in to `host` as: the host's `user`, else
    /// what ssh's configuration makes of it (`ssh -G`: a `User` line in
    /// ~/.ssh/config, or the local user). A remote step's spool is in that
    /// user's home (SPEC §8, §11). `None` when it cannot be told.
    pub fn login_user(&self, host: &str) -> Option<String> {
        let slot = self.slot(host).ok()?;
        if let Some(user) = &slot.target.user {
            return Some(user.clone());
        }
        let mut cache = slot.login.lock().ok()?;
        if cache.is_none() {
            *cache = Some(ssh_config_user(&slot.target));
        }
        cache.clone().flatten()
    }

    fn slot(&self, host: &str) -> Result<&Slot, SshError> {
        self.slots
            .get(host)
            .ok_or_else(|| SshError(format!("host `{host}` is not declared")))
    }

    /// The host's master connection, opened if needed.
    pub async fn session(&self, host: &str) -> Result<Arc<Session>, SshError> {
        let slot = self.slot(host)?;
        let mut guard = slot.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        remove_stale_control_dirs(&self.control_dir);
        let session = Arc::new(self.connect(&slot.target).await?);
        tracing::info!(host, "ssh master connection opened");
        *guard = Some(session.clone());
        slot.forwards.lock().await.clear();
        slot.cleanup.lock().await.0 = true;
        Ok(session)
    }

    /// Forgets a connection that failed, so the next use reconnects.
    pub async fn forget(&self, host: &str, broken: &Arc<Session>) {
        if let Ok(slot) = self.slot(host) {
            let mut guard = slot.session.lock().await;
            if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, broken)) {
                *guard = None;
                slot.shells.lock().await.clear();
            }
        }
    }

    /// Whether the master connection `session` to the host dropped (it no
    /// longer answers); a dropped one is forgotten, so the next use
    /// reconnects.
    pub async fn dropped(&self, host: &str, session: &Arc<Session>) -> bool {
        if session.check().await.is_ok() {
            return false;
        }
        self.forget(host, session).await;
        true
    }

    async fn connect(&self, t: &HostTarget) -> Result<Session, SshError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(if t.accept_new {
            KnownHosts::Add
        } else {
            KnownHosts::Strict
        })
        .connect_timeout(Duration::from_secs(15))
        .server_alive_interval(Duration::from_secs(15))
        .control_directory(&self.control_dir)
        .control_persist(ControlPersist::IdleFor(self.idle));
        if let Some(user) = &t.user {
            b.user(user.clone());
        }
        if let Some(port) = t.port {
            b.port(port);
        }
        if let Some(key) = &t.identity_file {
            b.keyfile(key);
        }
        if let Some(file) = &t.known_hosts_file {
            b.user_known_hosts_file(ssh_option_path(file));
        }
        b.connect_mux(&t.address)
            .await
            .map_err(|e| SshError(connect_message(t, &e)))
    }

    /// Closes every master connection (removing the spool folders still
    /// to be removed first, through an idle shell).
    pub async fn close(&self) {
        for (host, slot) in &self.slots {
            let made = slot
                .prepared
                .lock()
                .map(|mut p| std::mem::take(&mut p.1))
                .unwrap_or_default();
            let discards = self.take_discards(host);
            let discard = format!(
                "{}{}",
                super::spool::unprepare_command(&made),
                super::spool::discard_command(&discards, false)
            );
            if !discard.is_empty() {
                if let Some(shell) = slot.shells.lock().await.last_mut() {
                    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
                    let ran =
                        tokio::time::timeout(Duration::from_secs(5), shell.run(&discard, &[], &tx))
                            .await;
                    if let Ok(ShellEnd::Exited(_)) = ran {
                        self.removed_on(host, discards);
                    }
                }
            }
            for shell in slot.shells.lock().await.drain(..) {
                shell.close().await;
            }
            if let Some(session) = slot.session.lock().await.take() {
                if let Ok(session) = Arc::try_unwrap(session) {
                    let _ = session.close().await;
                }
            }
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
        let mut shell = match self.shell(host).await {
            Ok(shell) => shell,
            Err(e) => {
                return Outcome::Failed {
                    exit_code: None,
                    reason: e.0,
                }
            }
        };
        let deadline = super::deadline(timeout);
        let pgid = shell.pgid.clone();
        let session = shell.session.clone();
        let ended = tokio::select! {
            end = shell.run(script, env, sink) => Some(end),
            _ = deadline => None,
            _ = cancel.cancelled() => None,
        };
        match ended {
            Some(ShellEnd::Exited(code)) => {
                self.put_back(host, shell).await;
                if code == 0 {
                    Outcome::Succeeded {
                        exit_code: Some(0),
                        note: None,
                    }
                } else {
                    Outcome::Failed {
                        exit_code: Some(code),
                        reason: format!("exited with code {code} on {}", self.describe(host)),
                    }
                }
            }
            Some(ShellEnd::Lost(e)) => {
                drop(shell);
                self.forget(host, &session).await;
                Outcome::Failed {
                    exit_code: None,
                    reason: format!("lost the SSH connection to {} while the step ran ({e}); the next attempt reconnects", self.describe(host)),
                }
            }
            None => {
                drop(shell);
                self.kill_group(host, Some(&pgid)).await;
                if cancel.is_cancelled() {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed {
                        exit_code: None,
                        reason: format!(
                            "timed out after {} on {}",
                            humantime::format_duration(timeout.unwrap_or_default()),
                            self.describe(host)
                        ),
                    }
                }
            }
        }
    }

    /// Runs one attempt of a remote step detached from the connection
    /// (SPEC §8; see `spool.rs`): starts it in its spool folder unless it
    /// was started there already, and follows it to its end. A lost
    /// connection is reconnected with backoff until the deadline; the
    /// deadline or `cancel` stop the step's process group on the host and
    /// remove its spool folder.
    pub async fn run_detached(
        &self,
        host: &str,
        step: Detach<'_>,
        cancel: &CancellationToken,
        sink: &LineSink,
    ) -> Detached {
        let mut progress = Progress::default();
        let mut backoff = RECONNECT_FIRST;
        let mut lost: Option<String> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let shell = tokio::select! {
                s = self.shell(host) => Some(s),
                _ = until(deadline) => None,
                _ = cancel.cancelled() => None,
            };
            let mut shell = match shell {
                Some(Ok(shell)) => {
                    if deadline.is_none() {
                        deadline = step.left.map(|t| tokio::time::Instant::now() + t);
                    }
                    shell
                }
                Some(Err(e)) if lost.is_none() && step.start.is_some() => {
                    return Detached::failed(e.0, Fate::Done, progress);
                }
                Some(Err(e)) => {
                    lost = Some(e.0);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = until(deadline) => {}
                        _ = cancel.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    continue;
                }
                None => return self.unreachable_end(host, &step, cancel, lost, progress),
            };
            let session = shell.session.clone();
            let discards = self.take_discards(host);
            let before = format!(
                "{}{}",
                self.take_prepared(host),
                super::spool::discard_command(&discards, true)
            );
            let start = step.start;
            let ended = tokio::select! {
                end = shell.follow(&before, step.base, step.attempt, start, &mut progress, sink) => Some(end),
                _ = until(deadline) => None,
                _ = cancel.cancelled() => None,
            };
            match ended {
                Some(FollowEnd::Ended(end)) => {
                    // The shell read the removals before it answered.
                    self.removed_on(host, discards);
                    self.put_back(host, shell).await;
                    let folder = format!("~/{}/{}", step.base, step.attempt);
                    return self.ended(host, &folder, end, progress);
                }
                Some(FollowEnd::Lost(e)) => {
                    drop(shell);
                    self.forget(host, &session).await;
                    self.requeue(host, discards);
                    tracing::warn!(host, error = %e, "lost the SSH connection while a step ran there; reconnecting");
                    lost = Some(e);
                    backoff = RECONNECT_FIRST;
                }
                None => {
                    drop(shell);
                    self.requeue(host, discards);
                    let stopped = self.stop_spool(host, step.base).await;
                    let mut outcome = if cancel.is_cancelled() {
                        Outcome::Interrupted
                    } else {
                        Outcome::Failed {
                            exit_code: None,
                            reason: format!(
                                "timed out after {} on {}",
                                humantime::format_duration(step.timeout.unwrap_or_default()),
                                self.describe(host)
                            ),
                        }
                    };
                    let fate = match stopped {
                        Ok(()) => Fate::Done,
                        Err(e) => {
                            if let Outcome::Failed { reason, .. } = &mut outcome {
                                reason.push_str(&format!(
                                    "; it could not be stopped there ({}) and may still run",
                                    e.0
                                ));
                            }
                            Fate::KeepSpool
                        }
                    };
                    return Detached {
                        outcome,
                        fate,
                        progress,
                    };
                }
            }
        }
    }

    /// The deadline passed or the engine was stopped while the host could
    /// not be reached: the step may still run there, so its spool is kept
    /// for a later resume to find.
    fn unreachable_end(
        &self,
        host: &str,
        step: &Detach<'_>,
        cancel: &CancellationToken,
        lost: Option<String>,
        progress: Progress,
    ) -> Detached {
        // Still connecting for a start: nothing was sent, nothing runs.
        let fate = if lost.is_none() && step.start.is_some() {
            Fate::Done
        } else {
            Fate::KeepSpool
        };
        if cancel.is_cancelled() {
            return Detached {
                outcome: Outcome::Interrupted,
                fate,
                progress,
            };
        }
        if fate == Fate::Done {
            return Detached::failed(
                format!(
                    "timed out after {} on {} (while connecting)",
                    humantime::format_duration(step.timeout.unwrap_or_default()),
                    self.describe(host)
                ),
                fate,
                progress,
            );
        }
        let why = lost.unwrap_or_else(|| "no connection".into());
        Detached::failed(
            format!(
                "lost the SSH connection to {} and could not reconnect within the step's timeout ({}): {why}; the step may still run there, and `runbook resume` picks it up again",
                self.describe(host),
                humantime::format_duration(step.timeout.unwrap_or_default())
            ),
            Fate::KeepSpool,
            progress,
        )
    }

    /// How an attempt whose follower ended is reported; `folder` is its
    /// spool folder, as the user would type it.
    fn ended(&self, host: &str, folder: &str, end: End, progress: Progress) -> Detached {
        let (outcome, fate) = match end {
            End::Exited(0) => (
                Outcome::Succeeded {
                    exit_code: Some(0),
                    note: None,
                },
                Fate::Done,
            ),
            End::Exited(code) => (
                Outcome::Failed {
                    exit_code: Some(code),
                    reason: format!("exited with code {code} on {}", self.describe(host)),
                },
                Fate::Done,
            ),
            End::Vanished => (
                Outcome::Failed {
                    exit_code: None,
                    reason: format!(
                        "the step's process on {} ended without an exit status (the host rebooted)",
                        self.describe(host)
                    ),
                },
                Fate::Vanished,
            ),
            End::Killed => (
                Outcome::Failed {
                    exit_code: None,
                    reason: format!(
                        "the step's process on {} was killed from outside (it ended without an exit status; the host did not reboot)",
                        self.describe(host)
                    ),
                },
                Fate::Done,
            ),
            End::Gone => (
                Outcome::Failed {
                    exit_code: None,
                    reason: format!("the step was stopped on {}", self.describe(host)),
                },
                Fate::Gone,
            ),
            End::Unsupported => (
                Outcome::Failed {
                    exit_code: None,
                    reason: format!(
                        "{} has no `setsid` (util-linux or busybox); remote steps need it to outlive the connection",
                        self.describe(host)
                    ),
                },
                Fate::Done,
            ),
            End::NoSpool { make, error } => (
                Outcome::Failed {
                    exit_code: None,
                    reason: no_spool_reason(&self.describe(host), folder, make, &error),
                },
                Fate::Done,
            ),
        };
        Detached {
            outcome,
            fate,
            progress,
        }
    }

    /// Finds the latest attempt of a step started on the host at or after
    /// `attempt` (see `spool::probe_script`).
    pub async fn probe(&self, host: &str, base: &str, attempt: i64) -> Result<Probe, SshError> {
        let (code, out, err) = self
            .capture(host, &super::spool::probe_script(base, attempt))
            .await?;
        let text = String::from_utf8_lossy(&out);
        let mut words = text.split_whitespace();
        let found = match (
            code,
            words.next(),
            words.next().and_then(|n| n.parse().ok()),
        ) {
            (0, Some("found"), Some(n)) => Probe::Found(n),
            (0, Some("gone"), Some(n)) => Probe::Gone(n),
            _ => {
                return Err(SshError(format!(
                    "cannot look for the step's spool on {}: {}",
                    self.describe(host),
                    err.trim()
                )))
            }
        };
        Ok(found)
    }

    /// Stops every attempt of a step still running on the host (its whole
    /// process group) and removes its spool folder.
    pub async fn stop_spool(&self, host: &str, base: &str) -> Result<(), SshError> {
        let script = super::spool::stop_script(base, KILL_GRACE_SECS);
        let (_, child) = self.spawn(host, &script, false).await?;
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(SshError(format!("the stop script exited with {status}"))),
            Ok(Err(e)) => Err(SshError(e.to_string())),
            Err(_) => Err(SshError("the stop script did not finish".into())),
        }
    }

    /// Notes that a step's result is committed: its spool folder goes with
    /// the next command sent to the host (or when the pool closes).
    pub fn discard(&self, host: &str, base: &str) {
        if let Ok(slot) = self.slot(host) {
            if let Ok(mut list) = slot.discards.lock() {
                list.push(base.to_string());
            }
        }
    }

    fn take_discards(&self, host: &str) -> Vec<String> {
        self.slot(host)
            .ok()
            .and_then(|slot| {
                slot.discards
                    .lock()
                    .ok()
                    .map(|mut l| std::mem::take(&mut *l))
            })
            .unwrap_or_default()
    }

    /// Notes the attempt folders of steps about to run on the host: they
    /// are made in the background with the next detached step's command.
    pub fn prepare(&self, host: &str, dirs: Vec<String>) {
        if let Ok(slot) = self.slot(host) {
            if let Ok(mut p) = slot.prepared.lock() {
                p.0.extend(dirs);
            }
        }
    }

    fn take_prepared(&self, host: &str) -> String {
        let Ok(slot) = self.slot(host) else {
            return String::new();
        };
        let Ok(mut p) = slot.prepared.lock() else {
            return String::new();
        };
        let dirs = std::mem::take(&mut p.0);
        let cmd = super::spool::prepare_command(&dirs);
        p.1.extend(dirs);
        cmd
    }

    /// Puts back removals that may not have run (they are idempotent).
    fn requeue(&self, host: &str, bases: Vec<String>) {
        if let Ok(slot) = self.slot(host) {
            if let Ok(mut list) = slot.discards.lock() {
                list.extend(bases);
            }
        }
    }

    /// Spool folders earlier engines left to remove on hosts (their
    /// records in the state): each goes, with the empty attempt folders a
    /// killed engine prepared, when this pool first uses a connection to
    /// its host, before anything runs there. Folders that are not spool
    /// folders are ignored.
    pub fn remove_left(&self, left: impl IntoIterator<Item = (String, String)>) {
        for (host, base) in left {
            if !super::spool::is_spool_folder(&base) {
                continue;
            }
            if let Ok(slot) = self.slot(host.as_str()) {
                if let Ok(mut c) = slot.cleanup.try_lock() {
                    c.1.push(base);
                }
            }
        }
    }

    /// The spool folders removed on their hosts since the last call, as
    /// (host, folder): their records can go.
    pub fn removed(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for (host, slot) in &self.slots {
            if let Ok(mut r) = slot.removed.lock() {
                all.extend(r.drain(..).map(|b| (host.clone(), b)));
            }
        }
        all
    }

    fn removed_on(&self, host: &str, bases: Vec<String>) {
        if let Ok(slot) = self.slot(host) {
            if let Ok(mut r) = slot.removed.lock() {
                r.extend(bases);
            }
        }
    }

    /// An idle shell on the host, or a new one; on a new connection, the
    /// first one removes what earlier engines left (see `remove_left`)
    /// before anyone uses it.
    async fn shell(&self, host: &str) -> Result<RemoteShell, SshError> {
        let slot = self.slot(host)?;
        let mut shell = self.any_shell(host, slot).await?;
        let mut cleanup = slot.cleanup.lock().await;
        if cleanup.0 {
            let command = super::spool::cleanup_command(&cleanup.1);
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            match shell.run(&command, &[], &tx).await {
                ShellEnd::Exited(_) => {
                    let bases = std::mem::take(&mut cleanup.1);
                    self.removed_on(host, bases);
                    cleanup.0 = false;
                }
                ShellEnd::Lost(e) => {
                    let session = shell.session.clone();
                    drop(shell);
                    drop(cleanup);
                    self.forget(host, &session).await;
                    return Err(SshError(format!(
                        "lost the SSH connection to {}: {e}",
                        self.describe(host)
                    )));
                }
            }
        }
        Ok(shell)
    }

    async fn any_shell(&self, host: &str, slot: &Slot) -> Result<RemoteShell, SshError> {
        if let Some(shell) = slot.shells.lock().await.pop() {
            return Ok(shell);
        }
        let mut last = String::new();
        for _ in 0..2 {
            let session = self.session(host).await?;
            match RemoteShell::start(session.clone()).await {
                Ok(shell) => return Ok(shell),
                Err(e) => {
                    last = e;
                    self.forget(host, &session).await;
                }
            }
        }
        Err(SshError(format!(
            "cannot start a shell on {}: {last}",
            self.describe(host)
        )))
    }

    async fn put_back(&self, host: &str, shell: RemoteShell) {
        if let Ok(slot) = self.slot(host) {
            let current = slot.session.lock().await.clone();
            if current.is_some_and(|s| Arc::ptr_eq(&s, &shell.session)) {
                slot.shells.lock().await.push(shell);
            }
        }
    }

    /// Ends the remote process group of a step (SIGTERM, then SIGKILL).
    async fn kill_group(&self, host: &str, pgid: Option<&str>) {
        let Some(pgid) = pgid.filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        else {
            tracing::warn!(
                host,
                "no process group known for the remote step; only its channel is closed"
            );
            return;
        };
        let script = format!(
            "kill -TERM -{pgid} 2>/dev/null; i=0; while [ $i -lt {g} ] && kill -0 -{pgid} 2>/dev/null; do sleep 1; i=$((i+1)); done; kill -KILL -{pgid} 2>/dev/null; true",
            g = KILL_GRACE_SECS
        );
        if let Ok((_, child)) = self.spawn(host, &script, false).await {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Starts a remote command over the host's master; reconnects once when
    /// the master turns out to be gone.
    async fn spawn(
        &self,
        host: &str,
        command: &str,
        stdin: bool,
    ) -> Result<(Arc<Session>, openssh::Child<Arc<Session>>), SshError> {
        let mut last = String::new();
        for _ in 0..2 {
            let session = self.session(host).await?;
            let mut cmd = Session::to_raw_command(session.clone(), command);
            cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match cmd.spawn().await {
                Ok(child) => return Ok((session, child)),
                Err(e) => {
                    last = e.to_string();
                    self.forget(host, &session).await;
                }
            }
        }
        Err(SshError(format!(
            "cannot start a command on {}: {last}",
            self.describe(host)
        )))
    }

    /// Runs a short command in one of the host's shells and returns its
    /// exit code and output, line by line (text only).
    async fn capture(&self, host: &str, command: &str) -> Result<(i32, Vec<u8>, String), SshError> {
        let mut shell = self.shell(host).await?;
        let session = shell.session.clone();
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
        match end {
            ShellEnd::Exited(code) => {
                self.put_back(host, shell).await;
                Ok((code, out, err))
            }
            ShellEnd::Lost(e) => {
                self.forget(host, &session).await;
                Err(SshError(format!(
                    "lost the SSH connection to {}: {e}",
                    self.describe(host)
                )))
            }
        }
    }

    /// Runs a short command and returns (exit code, stdout) — for uploads,
    /// env files and checks. `input` goes to its stdin.
    pub async fn output(
        &self,
        host: &str,
        command: &str,
        input: Option<&[u8]>,
    ) -> Result<(i32, Vec<u8>, String), SshError> {
        if input.is_none() {
            return self.capture(host, command).await;
        }
        let (session, mut child) = self.spawn(host, command, input.is_some()).await?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin().take()) {
            let (w, _) = tokio::join!(
                async {
                    let r = stdin.write_all(data).await;
                    let _ = stdin.shutdown().await;
                    drop(stdin);
                    r
                },
                async {}
            );
            if w.is_err() {
                self.forget(host, &session).await;
                return Err(SshError(format!(
                    "lost the SSH connection to {} while sending data",
                    self.describe(host)
                )));
            }
        }
        let mut stdout = child.stdout().take();
        let mut stderr = child.stderr().take();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = tokio::io::AsyncReadExt::read_to_end(s, &mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = tokio::io::AsyncReadExt::read_to_end(s, &mut buf).await;
            }
            String::from_utf8_lossy(&buf).to_string()
        };
        let (out, err) = tokio::join!(read_out, read_err);
        match child.wait().await {
            Ok(status) => Ok((status.code().unwrap_or(-1), out, err)),
            Err(e) => {
                self.forget(host, &session).await;
                Err(SshError(format!(
                    "lost the SSH connection to {}: {e}",
                    self.describe(host)
                )))
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
        let mut session = self.session(host).await?;
        if session.check().await.is_err() {
            // The master idled out (no session for the idle time) or died:
            // its forwards went with it.
            self.forget(host, &session).await;
            session = self.session(host).await?;
        }
        let slot = self.slot(host)?;
        let mut forwards = slot.forwards.lock().await;
        let key = (remote_host.to_string(), remote_port);
        if let Some(port) = forwards.get(&key) {
            return Ok(*port);
        }
        let local =
            free_port().map_err(|e| SshError(format!("cannot find a free local port: {e}")))?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], local));
        let connect = openssh::Socket::TcpSocket {
            host: remote_host.to_string().into(),
            port: remote_port,
        };
        session
            .request_port_forward(openssh::ForwardType::Local, listen, connect)
            .await
            .map_err(|e| {
                SshError(format!(
                    "cannot forward a port over {} to {remote_host}:{remote_port}: {e}",
                    self.describe(host)
                ))
            })?;
        forwards.insert(key, local);
        Ok(local)
    }

    fn describe(&self, host: &str) -> String {
        self.slots
            .get(host)
            .map(|s| s.target.describe())
            .unwrap_or_else(|| format!("`{host}`"))
    }
}

/// One POSIX shell word for any text (the `shlex` crate's quoting, the same
/// as the templates' `quote` filter). A NUL byte cannot reach a shell at all,
/// so it is dropped.
pub fn sh_quote(value: &str) -> String {
    let value = if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(value)
    };
    match shlex::try_quote(&value) {
        Ok(quoted) => quoted.into_owned(),
        // Only a NUL byte makes it fail, and there is none left.
        Err(_) => String::from("''"),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The first wait before reconnecting to a host whose connection dropped
/// during a step; it doubles up to [`RECONNECT_MAX`], within the step's
/// timeout (`run` and `upload` steps alike).
pub const RECONNECT_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Waits until `deadline`, or forever without one (a step with no timeout).
pub async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Why a step could not start because its spool folder could not be made
/// or written: the host, the folder, the host's error (its cause first:
/// `mkdir: cannot create directory 'X': No space left on device` gives
/// `No space left on device (mkdir: cannot create directory 'X')`), and
/// what to do.
fn no_spool_reason(host: &str, folder: &str, make: bool, error: &str) -> String {
    let error = error.trim();
    let said = match error.rsplit_once(": ") {
        Some((context, cause)) if !cause.is_empty() => format!("{cause} ({context})"),
        _ if error.is_empty() => "no error message".to_string(),
        _ => error.to_string(),
    };
    let doing = if make {
        "cannot make the spool folder"
    } else {
        "cannot write in the spool folder"
    };
    format!(
        "{doing} {folder} on {host}: {said}; the step was not started: free space on the host or make `~/.runbook/spool` a folder the login user can write (nothing else in its way), then `runbook resume`"
    )
}

/// A connection failure in one line: which host, what ssh said, what to do.
/// A path as one value of an ssh `-o` option: ssh splits an option's value
/// at spaces (`UserKnownHostsFile=/my dir/kh` names two files) and expands
/// `%` tokens in it, so the path goes in double quotes, with `"` and `\`
/// escaped and `%` doubled.
fn ssh_option_path(path: &std::path::Path) -> PathBuf {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    PathBuf::from(out)
}

fn connect_message(t: &HostTarget, e: &openssh::Error) -> String {
    let detail = {
        let text = super::error_chain(e);
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let file = t
        .known_hosts_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    // As a shell word in the commands suggested (the default keeps its `~`).
    let file_arg = match &t.known_hosts_file {
        Some(_) => sh_quote(&file),
        None => file.clone(),
    };
    let key_target = match t.port {
        Some(port) if port != 22 => format!("[{}]:{port}", t.address),
        _ => t.address.clone(),
    };
    let port_arg = t.port.map(|p| format!("-p {p} ")).unwrap_or_default();
    if detail.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || detail.contains("Host key for") && detail.contains("has changed")
    {
        format!(
            "host key of {} has CHANGED compared with {file}; nothing was run there. If the server was reinstalled, verify its new key out of band, then remove the old one with `ssh-keygen -R '{key_target}' -f {file_arg}`",
            t.describe()
        )
    } else if detail.contains("Host key verification failed")
        || detail.contains("No ") && detail.contains("host key is known")
    {
        format!(
            "host key of {} is not in {file}; nothing was run there. Check the server's fingerprint, then trust it with `ssh-keyscan {port_arg}{} >> {file_arg}` (or set `known_hosts: accept-new` on the host)",
            t.describe(),
            t.address
        )
    } else if detail.contains("Permission denied") {
        format!(
            "cannot log in to {}: {detail}; check `user` and `identity_file`",
            t.describe()
        )
    } else {
        format!("cannot reach {}: {detail}", t.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_control_dirs_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".ssh-connectionSTALE");
        let live = dir.path().join(".ssh-connectionLIVE");
        let other = dir.path().join("unrelated");
        for d in [&stale, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        // A socket whose listener is gone (a master killed with SIGKILL).
        drop(std::os::unix::net::UnixListener::bind(stale.join("master")).unwrap());
        let _listener = std::os::unix::net::UnixListener::bind(live.join("master")).unwrap();
        remove_stale_control_dirs(dir.path());
        assert!(!stale.exists());
        assert!(live.join("master").exists());
        assert!(other.exists());
    }

    #[test]
    fn quoting_survives_hostile_values() {
        // Each value, quoted, is one word that `sh` gives back unchanged.
        for value in [
            "a'b",
            "$(x)\n`y`",
            "",
            "plain",
            "it's \"x\" $HOME \\ ; rm -rf / # !",
            "'\''",
            "tab\tand\u{e9}",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s|' {}", sh_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{value}|"));
        }
        assert_eq!(sh_quote("a\0b"), sh_quote("ab"));
    }
}
