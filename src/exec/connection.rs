//! The SSH connection to a host: one multiplexed master (system OpenSSH
//! through the `openssh` crate) with a control socket of its own, how long
//! it idles, what a failure to connect says, and the pace of reconnecting.
//! Opening, reusing and forgetting masters is [`super::host`]'s; this room
//! knows nothing of shells or steps.
//!
//! A master exits by itself once it has had no session for the idle time
//! (`ControlPersist`, default 60 s, `RUNBOOK_SSH_IDLE` overrides it), so an
//! engine killed with SIGKILL leaves none behind for long. Each master gets
//! a fresh control directory; a new engine never reuses a dead engine's
//! socket, and removes the directories of masters that are gone.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};

use super::quote::sh_quote;

/// Grace between SIGTERM and SIGKILL for a remote process group.
pub const KILL_GRACE_SECS: u32 = 2;

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
    /// The host as messages name it: `name` (user@address:port).
    pub fn describe(&self) -> String {
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

/// The `user` ssh would log in to the target as (`ssh -G`, which reads
/// the configuration and connects nowhere).
pub(super) fn ssh_config_user(t: &HostTarget) -> Option<String> {
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
pub(super) fn control_dir() -> PathBuf {
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
pub(super) fn remove_stale_control_dirs(dir: &Path) {
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

/// [`remove_stale_control_dirs`] once per engine, before its first
/// connection, on a blocking thread: the directories it removes are dead
/// engines', and the live masters it would try are this engine's own (1
/// step on 100 hosts made 3,482 connects to master sockets, on the
/// runtime's threads, while connecting; 200 now).
pub(super) async fn remove_stale_control_dirs_once(dir: &Path) {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let dir = dir.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || remove_stale_control_dirs(&dir)).await;
        })
        .await;
}

/// Opens a master connection to `t` with its control socket in
/// `control_dir`, idling out after `idle` seconds with no session.
pub(super) async fn connect(
    t: &HostTarget,
    control_dir: &Path,
    idle: NonZeroUsize,
) -> Result<Session, SshError> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(if t.accept_new {
        KnownHosts::Add
    } else {
        KnownHosts::Strict
    })
    .connect_timeout(Duration::from_secs(15))
    .server_alive_interval(Duration::from_secs(15))
    .control_directory(control_dir)
    .control_persist(ControlPersist::IdleFor(idle));
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

/// A connection failure in one line: which host, what ssh said, what to do.
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
}
