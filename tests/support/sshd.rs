//! A real OpenSSH server on 127.0.0.1 for tests: host and client keys and a
//! known_hosts file made in a temp dir, a free port, key auth only. Stops
//! (with every session it forked) on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running sshd.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    child: Option<Child>,
    /// `HOME` in the server's sessions, when not the login user's own.
    home: Option<PathBuf>,
    /// Run (sh) before the server starts, in a mount namespace of its own.
    setup: Option<String>,
}

const SSHD: &str = "/usr/sbin/sshd";

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs")
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    /// Starts a server; panics (fails the test) when it cannot.
    pub fn start() -> Sshd {
        Sshd::start_with(None, None)
    }

    /// Starts a server whose sessions have `home` as `HOME` (so a test can
    /// break the spool under it without touching the real home), after
    /// running `setup` (sh) in a private mount namespace that the server
    /// and its sessions live in: what `setup` mounts is seen only by them
    /// and goes away with them.
    pub fn start_in(home: &Path, setup: &str) -> Sshd {
        Sshd::start_with(Some(home.to_path_buf()), Some(setup.to_string()))
    }

    fn start_with(home: Option<PathBuf>, setup: Option<String>) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (.ci/run does)"
        );
        let dir = tempfile::Builder::new().prefix("sshd").tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        if nix_is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let mut sshd = Sshd {
            dir,
            port: 0,
            user: nix_user(),
            child: None,
            home,
            setup,
        };
        // A free port may be taken by another test before sshd binds it: retry.
        for _ in 0..5 {
            sshd.port = free_port();
            sshd.write_config();
            if sshd.try_launch() {
                return sshd;
            }
        }
        panic!("sshd did not start; log:\n{}", sshd.log());
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let port = self.port;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel VERBOSE\nMaxSessions 100\nMaxStartups 100\n\
             Subsystem sftp internal-sftp\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        let config = match &self.home {
            Some(home) => format!("{config}SetEnv HOME={}\n", home.display()),
            None => config,
        };
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .unwrap();
    }

    /// Starts sshd on the configured port; false when it could not bind.
    fn try_launch(&mut self) -> bool {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))
            .unwrap();
        let mut command = match &self.setup {
            None => {
                let mut c = Command::new(SSHD);
                c.args(["-D", "-e", "-f"]).arg(d.join("sshd_config"));
                c
            }
            Some(setup) => {
                // unshare and sh exec: the child's pid is sshd's.
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg(format!("set -e\n{setup}\nexec {SSHD} -D -e -f \"$0\""))
                    .arg(d.join("sshd_config"));
                c
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let port = self.port;
        let up = super::wait_for(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(None))
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        // The port must be this sshd's, not another test's that took it.
        if up && matches!(child.try_wait(), Ok(None)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    fn launch(&mut self) {
        assert!(
            self.try_launch(),
            "sshd did not restart; log:\n{}",
            self.log()
        );
    }

    /// Stops the server and every session it forked (a dropped network).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            for p in descendants(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The network goes away, the host stays: the server and its
    /// per-connection processes end (by pid), the shells they ran do not.
    pub fn cut(&mut self) {
        self.drop_connections();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The connections drop, the server stays up: its per-connection
    /// processes are killed (by pid); how many there were.
    pub fn drop_connections(&self) -> usize {
        let conns = self.connection_processes();
        for pid in &conns {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        conns.len()
    }

    /// Starts it again after `cut` (or `stop`), same port and keys.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// The per-connection processes of this server (its descendants that
    /// are sshd itself, not the shells they run).
    pub fn connection_processes(&self) -> Vec<i32> {
        let Some(root) = self.child.as_ref().map(|c| c.id() as i32) else {
            return Vec::new();
        };
        let comm =
            |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        descendants(root)
            .into_iter()
            .filter(|p| comm(*p).starts_with("sshd"))
            .collect()
    }

    /// Starts it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The sshd log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// How many logins the server accepted.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A `hosts:` entry for a runbook.
    pub fn host_yaml(&self, name: &str) -> String {
        format!(
            "  {name}:\n    address: 127.0.0.1\n    port: {}\n    user: {}\n    identity_file: {}\n    known_hosts_file: {}\n",
            self.port,
            self.user,
            self.client_key().display(),
            self.known_hosts().display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn descendants(root: i32) -> Vec<i32> {
    let table = super::processes();
    let mut all = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, fields) in &table {
            if fields.get(1).and_then(|s| s.parse::<i32>().ok()) == Some(p) {
                all.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    all
}

fn nix_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
