//! One engine per run across machines (SPEC §11), on a real PostgreSQL
//! server: the lease names its holder, a silent holder is waited out and
//! taken over, an engine that lost its lease writes nothing more, racing
//! engines get one winner. Two "machines" are two host names
//! (`unshare --uts`, tests/support/machine.rs), one database.

mod support;
use std::time::{Duration, Instant};

use support::machine;
use support::postgres::Postgres;
use support::{finish, signal, wait_for, Test};

/// The lease the tests use: short, so that waiting it out is quick.
const LEASE: &str = "3s";

fn on_pg() -> (Test, &'static Postgres, String) {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", LEASE);
    (t, pg, db)
}

/// Kills a process by the pid it wrote to `file` (a step's), if any.
fn kill_from(t: &Test, file: &str) {
    if let Ok(pid) = t.read(file).trim().parse::<i32>() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

#[test]
fn a_second_machine_is_refused_at_once_naming_the_holder() {
    assert!(machine::available(), "unshare --uts is needed");
    let (t, _pg, _db) = on_pg();
    t.put_runbook(
        "slow",
        &format!(
            "steps:\n  - id: a\n    run: echo $$ > {pid}; exec sleep 30\n",
            pid = t.p("a.pid")
        ),
    );
    let first = machine::spawn(&t, "laptop", &["run", "slow"]);
    assert!(wait_for(Duration::from_secs(20), || !t
        .read("a.pid")
        .is_empty()));
    let began = Instant::now();
    let second = machine::run(&t, "desk", &["resume", "slow"]);
    let took = began.elapsed();
    second
        .code(4)
        .stderr_has("is locked by pid")
        .stderr_has("@laptop")
        .stderr_has("last heard from");
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    let status = t.status(None);
    let holder = status.holder.expect("a live run has a holder");
    assert_eq!(holder.host, "laptop");
    assert_eq!(holder.pid, first.id() as i64);
    assert!(!holder.waiting);
    t.run(&["status"])
        .code(0)
        .stdout_has("held by ")
        .stdout_has("@laptop (pid ");
    kill_from(&t, "a.pid");
    let ran = finish(first);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        t.status(None).holder.is_none(),
        "the lease is released at the end"
    );
}

#[test]
fn after_kill_9_another_machine_waits_out_the_lease_and_takes_over() {
    let (t, pg, db) = on_pg();
    t.put_runbook(
        "job",
        &format!(
            "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b >> {log}; test -e {once} || {{ touch {once}; echo $$ > {pid}; exec sleep 30; }}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n",
            log = t.p("log"),
            once = t.p("once"),
            pid = t.p("b.pid")
        ),
    );
    let mut first = machine::spawn(&t, "laptop", &["run", "job"]);
    assert!(wait_for(Duration::from_secs(20), || !t
        .read("b.pid")
        .is_empty()));
    signal(&first, "KILL");
    let _ = first.wait();
    kill_from(&t, "b.pid");
    // Refused while the holder may still renew; once it has been silent
    // for two thirds of its lease: said, waited out, taken over.
    let began = Instant::now();
    let second = loop {
        let tried = machine::run(&t, "desk", &["resume", "job"]);
        if tried.code != 4 || began.elapsed() > Duration::from_secs(20) {
            break tried;
        }
        tried.stderr_has("@laptop").stderr_has("last heard from");
        std::thread::sleep(Duration::from_millis(200));
    };
    second
        .code(0)
        .stderr_has("silent for")
        .stderr_has("for its lease to run out, then taking it over");
    let first_line = second.stdout.lines().next().unwrap_or_default().to_string();
    assert!(
        first_line.starts_with("took over run 1 from ") && first_line.contains("@laptop (pid "),
        "{second:?}"
    );
    assert!(first_line.contains(", silent for "), "{first_line}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(t.lines("log"), ["a", "b", "b", "c"]);
    // Each take grew the token: the run was taken twice.
    assert_eq!(
        pg.sql(&db, "SELECT token FROM runbook.leases WHERE run_id = 1"),
        "2"
    );
    assert!(t.status(None).holder.is_none());
}
