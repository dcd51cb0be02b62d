//! The hetzner-parity sandbox for end-to-end tests: a server with its own
//! sshd and a real Docker Engine, started by the runbook's own
//! `sandbox/up.sh`. As root (CI), the server gets a network namespace and a
//! dockerd of its own, so its port 8000 is reachable only through the SSH
//! tunnel. The tests read the engine's real state with `docker inspect`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

/// A running sandbox; stopped (and its namespace removed) on drop.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub args: Vec<String>,
    pub netns: Option<String>,
}

/// The repository's runbooks/hetzner-parity folder.
/// The 13 services of the unified compose file (US-001, US-007).
pub const SERVICES: [&str; 13] = [
    "open-webui",
    "mcp-proxy",
    "auth-service",
    "admin-portal",
    "postgres",
    "redis",
    "mcp-filesystem",
    "mcp-github",
    "mcp-clickup",
    "mcp-trello",
    "mcp-sonarqube",
    "mcp-excel",
    "mcp-dashboard",
];

/// A container's environment (`docker inspect`'s `Config.Env`) as a map.
pub fn env_map(container: &Value) -> BTreeMap<String, String> {
    container["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

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
        let started = Instant::now();
        let out = cmd.output().expect("run up.sh");
        eprintln!("sandbox up in {:.1}s", started.elapsed().as_secs_f64());
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

    /// The port mcp-proxy is published on (inside the server).
    pub fn proxy_port(&self) -> u16 {
        8000
    }

    /// `state/sandbox/env`: DOCKER_HOST and COMPOSE_PROJECT_NAME.
    pub fn engine_env(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.root().join("env"))
            .expect("the sandbox's env file")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The docker CLI against the sandbox's engine; its stdout. Fails the test
    /// when docker fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .envs(self.engine_env())
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `docker inspect` of one object.
    pub fn inspect(&self, what: &str) -> Value {
        let v: Value = serde_json::from_str(&self.docker(&["inspect", what])).unwrap();
        v[0].clone()
    }

    /// The compose project's containers that are running: service -> id.
    pub fn running(&self) -> BTreeMap<String, String> {
        let project = format!(
            "label=com.docker.compose.project={}",
            self.engine_env()["COMPOSE_PROJECT_NAME"]
        );
        let out = self.docker(&[
            "ps",
            "--filter",
            &project,
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, id)| (s.to_string(), id.to_string()))
            .collect()
    }

    /// `docker inspect` of the running container of a compose service.
    pub fn container(&self, service: &str) -> Value {
        let id = self
            .running()
            .remove(service)
            .unwrap_or_else(|| panic!("no running container for {service}"));
        self.inspect(&id)
    }

    /// The environment a service's running container was created with.
    pub fn env_of(&self, service: &str) -> BTreeMap<String, String> {
        env_map(&self.container(service))
    }

    /// The host bindings of a container port, e.g. "8000/tcp": (ip, port) pairs.
    pub fn published(&self, service: &str, port: &str) -> BTreeSet<(String, String)> {
        let c = self.container(service);
        c["NetworkSettings"]["Ports"][port]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| {
                        (
                            b["HostIp"].as_str().unwrap_or("").to_string(),
                            b["HostPort"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(runbook_dir().join("sandbox/down.sh"))
            .arg(self.root())
            .status();
    }
}
