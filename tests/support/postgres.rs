//! A real PostgreSQL server for tests (Debian's `postgresql` package):
//! `initdb` and `postgres` run as a non-root user (`nobody` when the tests
//! run as root) in a temporary folder it owns, listening on a free
//! loopback port, password authentication (scram) for TCP. Each test gets
//! a database of its own.
//!
//! [`Postgres::start`] is a server of the test's own, stopped on drop by
//! its pid. [`Postgres::shared`] is one server for a whole test binary
//! (the core suites run on it): it is started from a thread that lives as
//! long as the binary, with `setpriv --pdeathsig`, so it ends with the
//! binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser's password (a test value).
pub const PASSWORD: &str = "pg-test-Secret-7f3a";

/// A running server.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    pid: Option<u32>,
    owned: Option<Child>,
}

/// The folder of Debian's PostgreSQL programs (`/usr/lib/postgresql/N/bin`),
/// the newest when several are installed.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is missing: install postgresql (.ci/run does)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    // SAFETY-free: read from /proc instead of libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(0)
}

/// Removes the folders of shared servers whose test binary has ended
/// (a static is never dropped, and its server went with its binary).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("runbook-pg"));
        let owner = std::fs::read_to_string(path.join("owner")).unwrap_or_default();
        if named && !owner.is_empty() && !Path::new(&format!("/proc/{}", owner.trim())).exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// `cmd` as the server's user: `nobody` under root, else as we are.
fn as_server_user(program: &Path, pdeathsig: bool) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
        if pdeathsig {
            c.arg("--pdeathsig=QUIT");
        }
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// A server of this test's own, stopped on drop.
    pub fn start() -> Postgres {
        Postgres::launch(false)
    }

    /// The binary's one shared server.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            // The server's parent-death signal fires when the thread that
            // started it ends: this one never does.
            std::thread::spawn(move || {
                let pg = Postgres::launch(true);
                tx.send(pg).unwrap();
                loop {
                    std::thread::park();
                }
            });
            rx.recv().expect("shared PostgreSQL started")
        })
    }

    fn launch(shared: bool) -> Postgres {
        let bin = bin_dir();
        sweep_stale();
        let dir = tempfile::Builder::new()
            .prefix("runbook-pg")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::write(dir.join("owner"), std::process::id().to_string()).unwrap();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL folder failed");
        }
        let out = as_server_user(&bin.join("initdb"), false)
            .args(["-D"])
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        let mut pg = Postgres {
            dir,
            port: free_port(),
            bin,
            pid: None,
            owned: None,
        };
        pg.boot(shared);
        pg
    }

    /// Starts the postmaster on the data folder (again, after a stop).
    pub fn boot(&mut self, shared: bool) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        let child = as_server_user(&self.bin.join("postgres"), shared)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "fsync=on", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.pid = Some(child.id());
        self.owned = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "PostgreSQL did not come up: {}",
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown) and waits for it, by its pid.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.owned.take() {
            // setpriv execs postgres, so the child's pid is the postmaster's.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        self.pid = None;
    }

    /// Runs SQL as the superuser on `db`; panics with psql's output on failure.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .env_remove("PGPASSFILE")
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Everything in `db`, as `pg_dump` writes it (plain SQL).
    pub fn dump(&self, db: &str) -> Vec<u8> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                db,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A new, empty database; its name.
    pub fn new_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The state URL of `db` as the superuser, password in the URL.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The same URL without the password (it then comes from PGPASSWORD).
    pub fn url_without_password(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
