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

/// A TCP proxy on loopback in front of the database: cut, it drops every
/// connection and refuses new ones (one engine cut off from the database,
/// the others not: a partition).
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, l) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for down in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut live = l.lock().unwrap();
                live.push(down.try_clone().unwrap());
                live.push(up.try_clone().unwrap());
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, live }
    }

    fn cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            for s in self.live.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn an_engine_cut_off_from_the_database_while_another_takes_over_writes_nothing_and_exits_4() {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let proxy = Proxy::start(pg.port);
    let through = pg
        .url(&db)
        .replace(&format!(":{}/", pg.port), &format!(":{}/", proxy.port));
    let t = Test::new()
        .env("RUNBOOK_STATE", &pg.url(&db))
        .env("RUNBOOK_LEASE", "2s")
        .env("RUNBOOK_DB_RETRY", "30s");
    t.put_runbook(
        "long",
        &format!(
            "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b-start >> {log}; sleep 5; echo b-done >> {log}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n",
            log = t.p("log")
        ),
    );
    let mut cmd = t.command(&["run", "long"]);
    cmd.env("RUNBOOK_STATE", &through);
    let cut_off = machine::on("laptop", &cmd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || t.lines("log").len() == 2));
    proxy.cut(true);
    // The other machine waits the lease out, takes over and finishes.
    std::thread::sleep(Duration::from_millis(2500));
    let other = machine::run(&t, "desk", &["resume", "long"]);
    other.code(0).stdout_has("took over run 1 from root@laptop");
    let rows = |pg: &Postgres| {
        pg.sql(
            &db,
            "SELECT string_agg(id || state || attempts, ',' ORDER BY id) || (SELECT count(*) FROM runbook.output)::text FROM runbook.steps",
        )
    };
    let before = rows(pg);
    proxy.cut(false);
    let ran = finish(cut_off);
    assert_eq!(ran.code, 4, "{ran:?}");
    assert!(
        ran.stderr.contains("was taken over by root@desk"),
        "{ran:?}"
    );
    assert_eq!(rows(pg), before, "the cut-off engine wrote");
    let log = t.lines("log");
    assert_eq!(log.iter().filter(|l| *l == "c").count(), 1, "{log:?}");
    assert!(
        !log[..3].contains(&"b-done".to_string()),
        "its b was stopped: {log:?}"
    );
    eprintln!("cut off: {}", ran.stderr.trim());
}
