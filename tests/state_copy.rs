//! `runbook state copy` (SPEC §11, issue 23 point 4): runs moved between
//! an SQLite file and a PostgreSQL database, either way, with their steps,
//! attempts, output and approvals; the source marked moved, so the run is
//! resumed in one place only.

mod support;
use std::time::Duration;
use support::postgres::{Postgres, PASSWORD};
use support::{finish, signal, wait_for, Test};

fn failing(t: &Test) -> String {
    format!(
        "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: ship\n    needs: [a]\n    approval: Ship?\n  - id: b\n    needs: [ship]\n    run: echo said-b; echo b >> {log}; test -e {fixed}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n",
        log = t.p("log"),
        fixed = t.p("fixed")
    )
}

/// `status --json` without the times and where the run is.
fn comparable(ran: &support::Ran) -> serde_json::Value {
    assert_eq!(ran.code, 0, "{ran:?}");
    let mut doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    if let Some(map) = doc.as_object_mut() {
        map.remove("moved_to");
    }
    doc
}

#[test]
fn a_run_moves_from_sqlite_to_postgres_and_is_resumed_only_there() {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let url = pg.url(&db);
    let shown = pg.url_without_password(&db);
    let t = Test::new();
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(3);
    t.run(&["approve", "1", "ship", "--by", "lukas"]).code(0);
    t.run(&["resume"]).code(1);
    let before = comparable(&t.run(&["status", "--json"]));
    let copied = t.run(&["state", "copy", "1", "--to", &url]);
    copied
        .code(0)
        .stdout_has(&format!("copied run 1 (f, failed) to {shown} as run 1"));
    assert!(!copied.stdout.contains(PASSWORD), "{}", copied.stdout);
    // There: the same run, step for step, output and approval kept.
    let there = |args: &[&str]| {
        let mut all = vec!["--state", url.as_str()];
        all.extend(args);
        t.run(&all)
    };
    assert_eq!(comparable(&there(&["status", "--json"])), before);
    there(&["logs", "1", "b"]).code(0).stdout_has("said-b");
    there(&["status"])
        .code(0)
        .stdout_has("approved: ship by lukas");
    // Here: marked moved; resume and run refused, naming where it went.
    let s = t.status(None);
    assert_eq!(s.moved_to.as_deref(), Some(shown.as_str()));
    t.run(&["status"])
        .code(0)
        .stdout_has(&format!("moved to {shown}"));
    let refused = t.run(&["resume"]);
    refused
        .code(4)
        .stderr_has(&format!("run 1 was moved to {shown}"));
    assert!(!refused.stderr.contains(PASSWORD), "{}", refused.stderr);
    t.run(&["run", "f"]).code(4).stderr_has("run --fresh");
    t.run(&["state", "copy", "1", "--to", &url])
        .code(2)
        .stderr_has("moved to");
    // Resumed there: only what was not done runs.
    t.write("fixed", "");
    there(&["resume", "1"]).code(0);
    assert_eq!(t.lines("log"), ["a", "b", "b", "c"]);
    // A new run here is a new run.
    t.run(&["run", "f", "--fresh"]).code(3).stdout_has("run 2");
}

#[test]
fn runs_move_from_postgres_to_sqlite_under_a_new_id_when_theirs_is_taken() {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let url = pg.url(&db);
    let t = Test::new().env("RUNBOOK_STATE", &url);
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(3);
    t.put_runbook(
        "slow",
        &format!(
            "steps:\n  - id: s\n    run: touch {}; sleep 30\n",
            t.p("started")
        ),
    );
    // The file already has a run 1 of its own.
    let file = t.p("other/runbook.db");
    t.put_runbook("g", &failing(&t));
    t.run(&["--state", &file, "run", "g"]).code(3);
    // A live run is refused, and nothing is copied.
    let child = t.spawn(&["run", "slow"]);
    assert!(wait_for(Duration::from_secs(20), || t
        .path()
        .join("started")
        .exists()));
    t.run(&["state", "copy", "--all", "--to", &file])
        .code(4)
        .stderr_has("run 2 is locked");
    signal(&child, "TERM");
    let _ = finish(child);
    let copied = t.run(&["state", "copy", "--all", "--to", &file]);
    copied
        .code(0)
        .stdout_has("copied run 1 (f, held)")
        .stdout_has("as run 2 (run 1 there was taken)")
        .stdout_has("copied run 2 (slow, interrupted)")
        .stdout_has("as run 3 (run 2 there was taken)");
    // The copy goes on in the file; the database's runs are moved.
    t.run(&["--state", &file, "approve", "2", "ship"]).code(0);
    t.write("fixed", "");
    t.run(&["--state", &file, "resume", "2"]).code(0);
    assert_eq!(t.lines("log"), ["a", "a", "b", "c"]);
    t.run(&["resume", "1"]).code(4).stderr_has("was moved to");
    // A new run in the file after the copies gets the next id.
    t.run(&["--state", &file, "run", "f", "--fresh"])
        .code(3)
        .stdout_has("run 4");
}
