//! N test hosts that are really separate (`fleet.sh` beside this file): as
//! root, a network namespace per host with its own veth address and its
//! own sshd; otherwise one sshd per loopback address 127.0.0.K. Stopped by
//! pid, and the namespaces deleted, on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A running fleet of hosts `h1`..`hN`.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    /// (name, address, port) per host.
    pub hosts: Vec<(String, String, u16)>,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/fleet.sh");

impl Fleet {
    /// Starts `n` hosts; panics (fails the test) when it cannot.
    pub fn start(n: usize) -> Fleet {
        let dir = tempfile::Builder::new().prefix("fleet").tempdir().unwrap();
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg("up")
            .arg(dir.path())
            .arg(n.to_string())
            .output()
            .expect("fleet.sh runs");
        let mut fleet = Fleet {
            hosts: Vec::new(),
            dir,
        };
        assert!(
            out.status.success(),
            "fleet.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = std::fs::read_to_string(fleet.dir.path().join("hosts.tsv")).unwrap();
        fleet.hosts = table
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
            })
            .collect();
        fleet
    }

    /// `netns` or `loopback`.
    pub fn mode(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mode"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The hosts as `hosts:` entries of a runbook (indented two spaces).
    pub fn hosts_yaml(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runbook-hosts.yaml")).unwrap()
    }

    /// The hosts as an Ansible INI inventory (group `fleet`).
    pub fn inventory_ini(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("inventory.ini")).unwrap()
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// Host names, `h1`..`hN`.
    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.0.clone()).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}
