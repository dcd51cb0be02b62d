//! A `runbook serve` started by a test, on a free loopback port, and
//! stopped (by its pid) when dropped.

use std::io::{BufRead, BufReader};
use std::process::Child;

use super::Test;

/// A running `runbook serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The access token printed on the first line.
    pub token: String,
}

impl Server {
    /// Starts `runbook serve --listen 127.0.0.1:0` in the test's folder,
    /// on the state the test's runs used: its SQLite file, or with
    /// `RUNBOOK_TEST_STATE=postgres` its PostgreSQL database (and then no
    /// file was written).
    pub fn start(t: &Test) -> Server {
        // A test of its own may choose PostgreSQL; else the suite's choice.
        assert!(t.on_postgres() || !super::on_postgres());
        assert_eq!(
            t.state_file().exists(),
            !t.on_postgres(),
            "the runs' state is not where the test asked for it"
        );
        let mut child = t.spawn(&["serve", "--listen", "127.0.0.1:0"]);
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("first line");
        let url = first.trim();
        let (base, token) = url
            .split_once("/?token=")
            .unwrap_or_else(|| panic!("first line is not the URL with the token: {first:?}"));
        Server {
            child,
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    /// A URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
