//! The state database goes away while a run goes on (SPEC §11, issue 23
//! point 5): restarted (stopped and started again from the harness, what
//! `pg_ctl restart -m fast` does), the engine's connections killed
//! server-side (`pg_terminate_backend`), and gone for good. Each on a real
//! PostgreSQL server; the restarts on a server of the test's own.

mod support;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::machine;
use support::postgres::Postgres;
use support::{finish, wait_for, Test};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Six steps in a chain, each logging `ID START_MS` then sleeping a bit.
fn chain(t: &Test) -> String {
    let mut yaml = String::from("steps:\n");
    for i in 1..=6 {
        let needs = if i > 1 {
            format!("\n    needs: [s{}]", i - 1)
        } else {
            String::new()
        };
        yaml.push_str(&format!(
            "  - id: s{i}{needs}\n    run: echo s{i} $(date +%s%3N) >> {log}; sleep 0.7\n",
            log = t.p("log")
        ));
    }
    yaml
}

/// Each step's start times, in ms since the epoch.
fn starts(t: &Test) -> Vec<(String, u128)> {
    t.lines("log")
        .iter()
        .filter_map(|l| {
            let (id, ms) = l.split_once(' ')?;
            Some((id.to_string(), ms.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_restarted_database_is_reconnected_no_step_starts_meanwhile_and_no_one_takes_the_run() {
    let mut pg = Postgres::start();
    let db = pg.new_database();
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", "6s")
        .env("RUNBOOK_DB_RETRY", "30s");
    t.put_runbook("chain", &chain(&t));
    let engine = machine::spawn(&t, "laptop", &["run", "chain"]);
    assert!(wait_for(Duration::from_secs(20), || starts(&t).len() == 2));
    let down = now_ms();
    pg.stop();
    // Meanwhile another machine cannot even reach the database.
    machine::run(&t, "desk", &["resume", "chain"])
        .code(1)
        .stderr_has("127.0.0.1");
    std::thread::sleep(Duration::from_millis(1500));
    pg.boot(false);
    let up = now_ms();
    // Back up: the lease still holds, so the other machine is refused.
    let other = machine::run(&t, "desk", &["resume", "chain"]);
    other.code(4).stderr_has("@laptop");
    let ran = finish(engine);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr
            .contains("lost the connection to the state database"),
        "{ran:?}"
    );
    assert!(
        ran.stderr
            .contains("connected to the state database again after"),
        "{ran:?}"
    );
    let starts = starts(&t);
    let ids: Vec<&str> = starts.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2", "s3", "s4", "s5", "s6"], "each step once");
    for (id, at) in &starts {
        assert!(
            *at < down || *at > up,
            "{id} started at {at} while the database was down ({down}..{up})"
        );
    }
    assert_eq!(t.status(None).state, "succeeded");
    eprintln!(
        "down {}ms; {}",
        up - down,
        ran.stderr
            .lines()
            .find(|l| l.contains("again after"))
            .unwrap_or_default()
    );
}

#[test]
fn connections_killed_server_side_are_opened_again_and_the_run_goes_on() {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", "6s");
    t.put_runbook("chain", &chain(&t));
    let engine = t.spawn(&["run", "chain"]);
    assert!(wait_for(Duration::from_secs(20), || starts(&t).len() == 2));
    let killed = pg.sql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    );
    assert!(
        killed.parse::<u32>().unwrap() >= 2,
        "the engine's and its lease's: {killed}"
    );
    // While it reconnects, another machine does not take the run.
    machine::run(&t, "desk", &["resume", "chain"])
        .code(4)
        .stderr_has("is locked by pid");
    let ran = finish(engine);
    assert_eq!(ran.code, 0, "{ran:?}");
    let ids: Vec<String> = starts(&t).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["s1", "s2", "s3", "s4", "s5", "s6"], "each step once");
    assert_eq!(t.status(None).state, "succeeded");
}

#[test]
fn a_database_gone_for_good_stops_the_run_exit_1_and_resume_goes_on_later() {
    let mut pg = Postgres::start();
    let db = pg.new_database();
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", "3s")
        .env("RUNBOOK_DB_RETRY", "2s");
    t.put_runbook("chain", &chain(&t));
    let engine = t.spawn(&["run", "chain"]);
    assert!(wait_for(Duration::from_secs(20), || starts(&t).len() == 2));
    pg.stop();
    let began = Instant::now();
    let ran = finish(engine);
    let took = began.elapsed();
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr.contains(&format!("127.0.0.1:{}/{db}", pg.port)),
        "names the database: {ran:?}"
    );
    assert!(ran.stderr.contains("RUNBOOK_DB_RETRY"), "{ran:?}");
    assert!(!ran.stderr.contains(support::postgres::PASSWORD));
    assert!(!ran.stdout.contains(support::postgres::PASSWORD));
    assert!(took < Duration::from_secs(15), "{took:?}");
    let before = starts(&t).len();
    assert!(
        before <= 3,
        "no step started after the database went: {:?}",
        starts(&t)
    );
    pg.boot(false);
    let again = t.run(&["resume", "chain"]);
    again.code(0);
    let ids: Vec<String> = starts(&t).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.last().map(String::as_str), Some("s6"));
    assert_eq!(t.status(None).state, "succeeded");
    eprintln!(
        "gone for good: exit 1 after {took:?}; {}",
        ran.stderr.trim()
    );
}

#[test]
fn an_engine_whose_lease_ran_out_stops_its_steps_and_goes_on_when_nobody_took_over() {
    let mut pg = Postgres::start();
    let db = pg.new_database();
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", "2s")
        .env("RUNBOOK_DB_RETRY", "30s");
    t.put_runbook(
        "long",
        &format!(
            "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b-start >> {log}; sleep 6; echo b-done >> {log}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n",
            log = t.p("log")
        ),
    );
    let engine = t.spawn(&["run", "long"]);
    assert!(wait_for(Duration::from_secs(20), || t.lines("log").len() == 2));
    pg.stop();
    // Past the lease by the engine's clock: its local step is stopped.
    std::thread::sleep(Duration::from_millis(3500));
    pg.boot(false);
    let ran = finish(engine);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr.contains("nobody took run 1 over: going on"),
        "{ran:?}"
    );
    assert_eq!(
        t.lines("log"),
        ["a", "b-start", "b-start", "b-done", "c"],
        "b stopped when the lease ran out, then run again"
    );
    assert_eq!(t.status(None).state, "succeeded");
    eprintln!("lease ran out: {}", ran.stderr.trim());
}
