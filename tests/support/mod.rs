//! Test harness: a temp project folder with runbooks, the built binary, and
//! expectations stated fluently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub mod browser;
pub mod compose_env;
pub mod fleet;
pub mod http;
pub mod machine;
pub mod postgres;
pub mod sandbox;
pub mod sshd;
pub mod web;
pub mod webhook;

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Whether the suites run with their state in PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("RUNBOOK_TEST_STATE").is_ok_and(|v| v == "postgres")
}

/// A scenario in its own temp folder.
pub struct Test {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// The database on the shared server, when on PostgreSQL.
    pg_db: Option<String>,
}

/// What a command did.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// `status --json`, as the SPEC fixes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub run_id: i64,
    pub runbook: String,
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub steps: Vec<StepStatus>,
    /// Deliveries of the runbook's notifications (absent when none).
    #[serde(default)]
    pub notifications: Vec<Notification>,
    /// The live engine that holds the run (SPEC §11), null when none.
    pub holder: Option<Holder>,
    /// Where `state copy` moved the run (absent when it was not).
    #[serde(default)]
    pub moved_to: Option<String>,
}

/// `status --json`'s `holder`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: i64,
    pub last_seen: String,
    pub waiting: bool,
}

/// One delivery in `status --json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    pub target: String,
    pub state: String,
    pub delivered: bool,
    pub attempts: i64,
    pub error: Option<String>,
    pub at: String,
}

/// One step of `status --json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepStatus {
    pub id: String,
    pub state: String,
    pub needs: Vec<String>,
    pub on: String,
    pub attempts: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub missing: Vec<String>,
    pub rejected: Vec<String>,
    /// Secrets whose command failed (SPEC §13).
    #[serde(default)]
    pub unavailable: Vec<String>,
    /// The host (fleets: `"host"` on every step entry); null when local.
    #[serde(default)]
    pub host: Option<String>,
    /// Each attempt's record (SPEC §14).
    pub attempt_history: Vec<AttemptRecord>,
    /// The rolling block it is or belongs to (SPEC §15).
    #[serde(default)]
    pub block: Option<String>,
    /// Who approved it and when (SPEC §11); absent when not approved.
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approved_at: Option<String>,
}

/// One attempt in `status --json`'s `attempt_history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub started_at: String,
    pub duration_ms: i64,
}

impl Status {
    /// The step with this id.
    pub fn step(&self, id: &str) -> &StepStatus {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id} in status: {self:#?}"))
    }

    /// The state of a step.
    pub fn state_of(&self, id: &str) -> &str {
        &self.step(id).state
    }

    /// The reason of a step ("" when it has none).
    pub fn reason_of(&self, id: &str) -> String {
        self.step(id).reason.clone().unwrap_or_default()
    }
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    /// An empty project folder.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("runbook-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("runbooks")).expect("runbooks dir");
        let mut env = Vec::new();
        let mut pg_db = None;
        if on_postgres() {
            let pg = postgres::Postgres::shared();
            let db = pg.new_database();
            env.push(("RUNBOOK_STATE".to_string(), pg.url(&db)));
            pg_db = Some(db);
        }
        Test { dir, env, pg_db }
    }

    /// What a printed command adds to name this test's state: nothing for
    /// the default file, ` --state 'URL'` (no password) on PostgreSQL.
    pub fn state_flag(&self) -> String {
        match &self.pg_db {
            Some(db) => format!(
                " --state '{}'",
                postgres::Postgres::shared().url_without_password(db)
            ),
            None => String::new(),
        }
    }

    /// Everything the state holds, as bytes to search: each file under
    /// `state/`, or on PostgreSQL a `pg_dump` of the test's database.
    pub fn state_bytes(&self) -> Vec<(String, Vec<u8>)> {
        match &self.pg_db {
            Some(db) => vec![(
                format!("database {db}"),
                postgres::Postgres::shared().dump(db),
            )],
            None => walk_files(&self.path().join("state"))
                .into_iter()
                .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
                .collect(),
        }
    }

    /// Whether this test's state is in PostgreSQL (the core suites run
    /// again with `RUNBOOK_TEST_STATE=postgres`, on one shared server).
    pub fn on_postgres(&self) -> bool {
        self.env.iter().any(|(k, _)| k == "RUNBOOK_STATE")
    }

    /// Writes `runbooks/NAME.yaml`.
    pub fn runbook(self, name: &str, yaml: &str) -> Self {
        self.write(&format!("runbooks/{name}.yaml"), yaml);
        self
    }

    /// Writes (or rewrites) `runbooks/NAME.yaml` in place.
    pub fn put_runbook(&self, name: &str, yaml: &str) {
        self.write(&format!("runbooks/{name}.yaml"), yaml);
    }

    /// Writes a file under the project folder, creating folders.
    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
    }

    /// Sets an environment variable for every command.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The project folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path under the project folder, as a string for runbooks.
    pub fn p(&self, rel: &str) -> String {
        self.path().join(rel).display().to_string()
    }

    /// Reads a file under the project folder ("" when absent).
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    /// Lines of a file under the project folder.
    pub fn lines(&self, rel: &str) -> Vec<String> {
        self.read(rel).lines().map(str::to_string).collect()
    }

    /// The command, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("RUNBOOK_STATE")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Ran {
        let output = self.command(args).output().expect("run binary");
        Ran::from(output)
    }

    /// Starts the binary in the background, output piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary")
    }

    /// The environment the test's commands get beyond the caller's (the
    /// state URL and password when on PostgreSQL), for a command that is
    /// not the binary itself (a pipeline through `sh -c`).
    pub fn extra_env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `status --json` of a target (or the latest run).
    pub fn status(&self, target: Option<&str>) -> Status {
        let mut args = vec!["status", "--json"];
        args.extend(target);
        let ran = self.run(&args);
        assert_eq!(ran.code, 0, "status failed: {ran:?}");
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("bad status JSON ({e}): {}", ran.stdout))
    }

    /// The state file path.
    pub fn state_file(&self) -> PathBuf {
        self.path().join("state/runbook.db")
    }
}

impl From<Output> for Ran {
    fn from(output: Output) -> Self {
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        }
    }
}

impl Ran {
    /// Asserts the exit code.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts stdout contains `text`.
    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts stderr contains `text`.
    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts stdout does not contain `text`.
    #[track_caller]
    pub fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stdout.contains(text),
            "stdout has {text:?}\nstdout:\n{}",
            self.stdout
        );
        self
    }

    /// Asserts stderr does not contain `text`.
    #[track_caller]
    pub fn stderr_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stderr.contains(text),
            "stderr has {text:?}\nstderr:\n{}",
            self.stderr
        );
        self
    }
}

/// Waits until `cond` holds, up to `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for a child and collects its output.
pub fn finish(child: Child) -> Ran {
    Ran::from(child.wait_with_output().expect("wait"))
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A loopback server that accepts TCP connections and never says a word
/// (an HTTP server or an sshd that hangs); its port.
pub fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("port").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// Every live process as (pid, fields of /proc/PID/stat after the name:
/// state, ppid, pgrp, ...).
pub fn processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
            out.push((pid, rest.split_whitespace().map(str::to_string).collect()));
        }
    }
    out
}

/// Waits until the async `cond` holds, up to `limit`.
pub async fn wait_for_async<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().await
}
