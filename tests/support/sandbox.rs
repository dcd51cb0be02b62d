//! The hetzner-parity sandbox for end-to-end tests: a simulated server with
//! its own sshd, started by the runbook's own `sandbox/up.sh`. As root (CI),
//! the server gets a network namespace of its own, so its port 8000 is
//! reachable only through the SSH tunnel.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running sandbox; stopped (and its namespace removed) on drop.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub args: Vec<String>,
    pub netns: Option<String>,
}

/// The repository's runbooks/hetzner-parity folder.
pub fn runbook_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/hetzner-parity")
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl Sandbox {
    /// Starts a sandbox; fails the test when it cannot.
    pub fn start() -> Sandbox {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("sandbox")
            .tempdir()
            .unwrap();
        let has_ip = Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists();
        let netns = (is_root() && has_ip).then(|| {
            format!(
                "rbsb-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            )
        });
        let mut cmd = Command::new(runbook_dir().join("sandbox/up.sh"));
        cmd.env("SANDBOX_DIR", dir.path().join("sb"));
        if let Some(ns) = &netns {
            cmd.env("SANDBOX_NETNS", ns);
        }
        let out = cmd.output().expect("run up.sh");
        if !out.status.success() {
            // Take down whatever it made (a namespace, processes) before failing.
            let _ = Command::new(runbook_dir().join("sandbox/down.sh"))
                .arg(dir.path().join("sb"))
                .status();
        }
        assert!(
            out.status.success(),
            "sandbox up.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let args = std::fs::read_to_string(dir.path().join("sb/runbook-args"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        Sandbox { dir, args, netns }
    }

    /// The sandbox's state folder.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("sb")
    }

    /// The server's deploy dir.
    pub fn deploy(&self) -> PathBuf {
        self.root().join("server/opt/mcp-stack")
    }

    /// Appends the tokens the simulated upstreams accept to the server's .env.
    pub fn give_valid_tokens(&self) {
        let valid =
            std::fs::read_to_string(runbook_dir().join("sandbox/valid-tokens.env")).unwrap();
        let env = self.deploy().join(".env");
        let mut text = std::fs::read_to_string(&env).unwrap();
        text.push_str(&valid);
        std::fs::write(&env, text).unwrap();
    }

    /// The port the simulated mcp-proxy listens on (inside the server).
    pub fn proxy_port(&self) -> u16 {
        std::fs::read_to_string(self.root().join("proxy.port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(runbook_dir().join("sandbox/down.sh"))
            .arg(self.root())
            .status();
    }
}
