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

/// Every row of every table in runbook's schema, table by table, to
/// compare before and after: a write of any kind shows.
fn rows(pg: &Postgres, db: &str) -> String {
    let tables = pg.sql(
        db,
        "SELECT string_agg(table_name, ' ' ORDER BY table_name) FROM information_schema.tables
         WHERE table_schema = 'runbook' AND table_type = 'BASE TABLE'",
    );
    assert!(tables.contains("spool_discards"), "{tables}");
    tables
        .split_whitespace()
        .map(|table| {
            let all = pg.sql(
                db,
                &format!(
                    "SELECT string_agg(r::text, ' ; ' ORDER BY r::text) FROM runbook.{table} r"
                ),
            );
            format!("{table}: {all}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_frozen_holder_is_taken_over_and_when_it_wakes_writes_nothing_and_exits_4() {
    let (t, pg, db) = on_pg();
    t.put_runbook(
        "job",
        &format!(
            "steps:\n  - id: a\n    run: echo a >> {log}; sleep 2; echo done\n  - id: b\n    needs: [a]\n    run: echo b >> {log}\n",
            log = t.p("log")
        ),
    );
    let first = machine::spawn(&t, "laptop", &["run", "job"]);
    assert!(wait_for(Duration::from_secs(20), || t.lines("log").len() == 1));
    signal(&first, "STOP");
    // Frozen past its lease (its step goes on and ends meanwhile).
    std::thread::sleep(Duration::from_millis(3300));
    let second = machine::run(&t, "desk", &["resume", "job"]);
    second.code(0).stdout_has("took over run 1 from ");
    assert_eq!(t.lines("log"), ["a", "a", "b"]);
    let before = rows(pg, &db);
    signal(&first, "CONT");
    let woke = finish(first);
    assert_eq!(woke.code, 4, "{woke:?}");
    assert!(
        woke.stderr.contains("was taken over by root@desk (pid "),
        "{woke:?}"
    );
    assert!(woke.stderr.contains("wrote nothing more"), "{woke:?}");
    assert_eq!(rows(pg, &db), before, "the woken engine wrote");
    assert_eq!(t.lines("log"), ["a", "a", "b"], "the woken engine ran b");
    assert_eq!(t.status(None).state, "succeeded");
}

/// f50ac5f: the fence fails in the middle of a group commit (on the spool
/// record of a remote step the woken engine starts, a statement whose
/// answer is needed), not at its COMMIT. The holder is frozen while its
/// lease is made to look an hour old in the database, as a machine
/// suspended for an hour leaves it (its monotonic clock stopped, so when
/// it wakes its lease looks fine to it and it starts the next step). The
/// run's other host, `h1`, has a committed spool folder whose record
/// (`spool_discards`) the taker, never connecting to `h1`, leaves: the
/// woken engine removes that folder as it closes, and must not forget its
/// record, nor write anything else, once the fence failed mid-batch.
#[test]
fn a_fence_failing_mid_group_commit_ends_it_and_the_woken_engine_writes_nothing() {
    assert!(machine::available(), "unshare --uts is needed");
    let sshd = support::sshd::Sshd::start();
    let pg = Postgres::shared();
    let db = pg.new_database();
    // A lease no renewal of the frozen engine comes within the test to
    // tell it that it was taken over: the fence must.
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", "300s");
    t.put_runbook(
        "job",
        &format!(
            "hosts:\n{h1}{h2}steps:\n  - id: z\n    on: h1\n    run: echo z >> {log}\n  - id: a\n    needs: [z]\n    run: echo a >> {log}; sleep 1\n  - id: b\n    needs: [a]\n    on: h2\n    run: echo b >> {log}\n",
            h1 = sshd.host_yaml("h1"),
            h2 = sshd.host_yaml("h2"),
            log = t.p("log")
        ),
    );
    let first = machine::spawn(&t, "laptop", &["run", "job"]);
    assert!(wait_for(Duration::from_secs(30), || t.lines("log").len() == 2));
    signal(&first, "STOP");
    pg.sql(
        &db,
        "UPDATE runbook.leases SET renewed_at = renewed_at - interval '1 hour'",
    );
    let second = machine::run(&t, "desk", &["resume", "job"]);
    second
        .code(0)
        .stdout_has("took over run 1 from ")
        .stdout_has("@laptop (pid ");
    assert_eq!(t.lines("log"), ["z", "a", "a", "b"]);
    let left = "SELECT count(*) FROM runbook.spool_discards WHERE host = 'h1'";
    assert_eq!(pg.sql(&db, left), "1", "z's folder record left for h1");
    // The frozen engine's own `a` (sleep 1) ended while the taker ran.
    let before = rows(pg, &db);
    signal(&first, "CONT");
    let woke = finish(first);
    assert_eq!(woke.code, 4, "{woke:?}");
    assert!(
        woke.stderr.contains("was taken over by root@desk (pid "),
        "{woke:?}"
    );
    assert_eq!(rows(pg, &db), before, "the woken engine wrote");
    assert_eq!(pg.sql(&db, left), "1", "the woken engine forgot a record");
    assert_eq!(
        t.lines("log"),
        ["z", "a", "a", "b"],
        "the woken engine ran b"
    );
    assert_eq!(t.status(None).state, "succeeded");
}

#[test]
fn an_engine_in_wait_steps_aside_for_another_machine() {
    let (t, _pg, _db) = on_pg();
    t.put_runbook(
        "held",
        &format!(
            "secrets:\n  TOKEN:\n    description: a token\nsteps:\n  - id: a\n    requires: [TOKEN]\n    run: echo a >> {log}\n",
            log = t.p("log")
        ),
    );
    let waiting = machine::spawn(
        &t,
        "laptop",
        &["run", "held", "--wait", "--interval", "30s"],
    );
    assert!(
        wait_for(Duration::from_secs(20), || {
            let r = t.run(&["status", "--json"]);
            r.code == 0 && r.stdout.contains("\"waiting\": true")
        }),
        "the waiting engine's lease says it waits"
    );
    let mut cmd = t.command(&["resume", "held"]);
    cmd.env("TOKEN", "value");
    let began = Instant::now();
    let taker = support::Ran::from(machine::on("desk", &cmd).output().unwrap());
    taker.code(0);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert!(
        taker
            .stderr
            .contains("which waits (--wait): asked it to step aside"),
        "{taker:?}"
    );
    let aside = finish(waiting);
    assert_eq!(aside.code, 3, "{aside:?}");
    assert!(
        aside.stdout.contains("stepped aside: root@desk (pid ")
            && aside.stdout.contains("takes run 1 over"),
        "{aside:?}"
    );
    assert_eq!(t.lines("log"), ["a"]);
}

#[test]
fn twenty_racing_resumes_one_winner_each_and_the_step_runs_once_per_round() {
    let (t, _pg, _db) = on_pg();
    t.put_runbook(
        "race",
        &format!(
            "steps:\n  - id: a\n    run: echo a >> {log}; sleep 0.5\n",
            log = t.p("log")
        ),
    );
    t.run(&["run", "race"]).code(0);
    let mut refused = 0;
    for round in 1..=20 {
        t.run(&["reset", "1", "a"]).code(0);
        let one = machine::spawn(&t, "laptop", &["resume", "race"]);
        let two = machine::spawn(&t, "desk", &["resume", "race"]);
        let (one, two) = (finish(one), finish(two));
        let ran = [&one, &two]
            .iter()
            .filter(|r| r.stdout.contains("▶ a"))
            .count();
        assert_eq!(ran, 1, "round {round}: {one:?} {two:?}");
        for r in [&one, &two] {
            assert!(r.code == 0 || r.code == 4, "round {round}: {r:?}");
            if r.code == 4 {
                assert!(r.stderr.contains("is locked by pid"), "{r:?}");
                refused += 1;
            }
        }
        assert_eq!(
            t.lines("log").len(),
            round + 1,
            "round {round}: {one:?} {two:?}"
        );
    }
    eprintln!(
        "{refused} of 20 rounds: the loser was refused (exit 4); else it came after the winner"
    );
}
