//! State in PostgreSQL (SPEC §11): the same run, the same answers as the
//! SQLite file; the password never shown; bad URLs, a wrong password, a
//! newer schema and a read-only role each a clear error. One real server
//! (Debian's PostgreSQL, as a non-root user) for the whole file.

mod support;
use support::postgres::{Postgres, PASSWORD};
use support::Test;

fn failing(t: &Test) -> String {
    format!(
        "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b >> {log}; test -e {fixed}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n",
        log = t.p("log"),
        fixed = t.p("fixed")
    )
}

/// A project whose state is a new database on the shared server.
fn on_pg() -> (Test, &'static Postgres, String) {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let t = Test::new().env("RUNBOOK_STATE", &pg.url(&db));
    (t, pg, db)
}

/// `status --json` without what differs from one pass to the next.
fn comparable(t: &Test) -> serde_json::Value {
    let ran = t.run(&["status", "--json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let mut doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    strip_times(&mut doc);
    doc
}

fn strip_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for key in [
                "started_at",
                "finished_at",
                "duration_ms",
                "at",
                "last_seen",
            ] {
                if map.contains_key(key) {
                    map.insert(key.into(), serde_json::Value::Null);
                }
            }
            map.values_mut().for_each(strip_times);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_times),
        _ => {}
    }
}

#[test]
fn a_run_fails_and_resumes_on_postgres_as_on_sqlite() {
    let (t, pg, db) = on_pg();
    t.put_runbook("f", &failing(&t));
    let lite = Test::new();
    lite.put_runbook("f", &failing(&lite).replace(&lite.p(""), &t.p("")));
    // Both write to t's log; one at a time.
    t.run(&["run", "f"]).code(1);
    lite.run(&["run", "f"]).code(1);
    assert_eq!(comparable(&t), comparable(&lite));
    assert_eq!(
        t.run(&["status"]).stdout.lines().count(),
        lite.run(&["status"]).stdout.lines().count()
    );
    t.write("fixed", "");
    t.run(&["resume", "f"]).code(0).stdout_has("resuming run 1");
    lite.run(&["resume", "f"])
        .code(0)
        .stdout_has("resuming run 1");
    assert_eq!(comparable(&t), comparable(&lite));
    let log = t.lines("log");
    assert_eq!(log.iter().filter(|l| *l == "a").count(), 2, "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "b").count(), 4, "{log:?}");
    t.run(&["logs", "1", "a"]).code(0);
    t.run(&["list"]).code(0).stdout_has("f");
    // runbook's tables are in a schema of its own, and nowhere else.
    let schemas = pg.sql(
        &db,
        "SELECT string_agg(DISTINCT table_schema, ',' ORDER BY table_schema) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    );
    assert_eq!(schemas, "runbook");
    assert_eq!(
        pg.sql(&db, "SELECT version FROM runbook.schema_version"),
        "4"
    );
}

#[test]
fn the_password_reaches_no_step_no_output_and_no_error() {
    let (t, pg, db) = on_pg();
    let t = t.env("PGPASSWORD", PASSWORD).env("PGHOST", "elsewhere");
    t.put_runbook(
        "e",
        &format!("steps:\n  - id: env\n    run: env > {}\n", t.p("env.txt")),
    );
    let ran = t.run(&["run", "e"]);
    ran.code(0);
    let env = t.read("env.txt");
    assert!(!env.contains(PASSWORD), "{env}");
    assert!(!env.contains("RUNBOOK_STATE"), "{env}");
    assert!(!env.lines().any(|l| l.starts_with("PG")), "{env}");
    let mut seen = ran.stdout + &ran.stderr;
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["handoff"],
        vec!["list"],
        vec!["--help"],
        vec!["run", "--help"],
    ] {
        let r = t.run(&args);
        seen += &r.stdout;
        seen += &r.stderr;
    }
    // An error that names the state: a database that does not exist.
    let bad = Test::new().env(
        "RUNBOOK_STATE",
        &pg.url(&db).replace(&format!("/{db}?"), "/nosuchdb?"),
    );
    let r = bad.run(&["status"]);
    r.code(1).stderr_has("nosuchdb");
    seen += &r.stderr;
    assert!(!seen.contains(PASSWORD), "{seen}");
    assert!(
        seen.contains(&format!("postgres://postgres@127.0.0.1:{}", pg.port))
            || seen.contains("nosuchdb")
    );
}

#[test]
fn the_password_comes_from_pgpassword_or_pgpass() {
    use std::os::unix::fs::PermissionsExt;
    let pg = Postgres::shared();
    let db = pg.new_database();
    let url = pg.url_without_password(&db);
    let t = Test::new()
        .env("RUNBOOK_STATE", &url)
        .env("PGPASSWORD", PASSWORD)
        .runbook("p", "steps:\n  - id: a\n    run: 'true'\n");
    t.run(&["run", "p"]).code(0);
    let pgpass = t.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:postgres:{PASSWORD}\n", pg.port),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let t2 = Test::new()
        .env("RUNBOOK_STATE", &url)
        .env("PGPASSFILE", &pgpass.display().to_string());
    t2.run(&["status"]).code(0).stdout_has("succeeded");
    // Without any password: refused, said so, exit 1.
    let t3 = Test::new()
        .env("RUNBOOK_STATE", &url)
        .env("PGPASSFILE", "/nonexistent");
    t3.run(&["status"])
        .code(1)
        .stderr_has("password")
        .stderr_has("PGPASSFILE /nonexistent (there is no such file)")
        .stderr_lacks("~/.pgpass");
    // A pgpass file others may read is ignored, as libpq does, and said so.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    t2.run(&["status"])
        .code(1)
        .stderr_has("(ignored: others may read it; chmod 0600 it)");
}

#[test]
fn a_wrong_password_says_so_without_showing_it() {
    let pg = Postgres::shared();
    let db = pg.new_database();
    let url = pg.url(&db).replace(PASSWORD, "not-the-Password-42");
    let t = Test::new()
        .env("RUNBOOK_STATE", &url)
        .env("PGPASSWORD", "not-the-Password-43")
        .runbook("p", "steps:\n  - id: a\n    run: 'true'\n");
    let r = t.run(&["run", "p"]);
    r.code(1)
        .stderr_has("password authentication failed")
        .stderr_has("the password sent came from the URL (it goes before PGPASSWORD")
        .stderr_lacks("no line for");
    assert!(!r.stderr.contains("not-the-Password-4"), "{}", r.stderr);
}

/// A refused password is said to come from where it was found: the URL,
/// PGPASSWORD, or the pgpass file's line (never the password itself).
#[test]
fn a_refused_password_names_where_it_came_from() {
    use std::os::unix::fs::PermissionsExt;
    let pg = Postgres::shared();
    let db = pg.new_database();
    let url = pg.url_without_password(&db);
    let wrong = "not-the-Password-44";
    let env_pw = Test::new()
        .env("RUNBOOK_STATE", &url)
        .env("PGPASSWORD", wrong)
        .env("PGPASSFILE", "/nonexistent");
    let r = env_pw.run(&["status"]);
    r.code(1)
        .stderr_has("password authentication failed")
        .stderr_has("(as role postgres): the password sent came from PGPASSWORD (it goes before the pgpass file): check it there")
        .stderr_lacks("no line for")
        .stderr_lacks(wrong);
    // The matching line is the third: a comment and another server's first.
    let lines = format!(
        "# ops\nelsewhere:5432:*:postgres:other-Password-45\n127.0.0.1:{}:*:postgres:{wrong}\n",
        pg.port
    );
    let (home, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (file, named) in [
        (dir.path().join("pgpass"), "PGPASSFILE "),
        (home.path().join(".pgpass"), ""),
    ] {
        std::fs::write(&file, &lines).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut t = Test::new().env("RUNBOOK_STATE", &url);
        t = match named {
            "" => t.env("HOME", &home.path().display().to_string()),
            _ => t.env("PGPASSFILE", &file.display().to_string()),
        };
        let r = t.run(&["status"]);
        r.code(1)
            .stderr_has("password authentication failed")
            .stderr_has(&format!(
                "the password sent came from line 3 of {named}{}: check it there",
                file.display()
            ))
            .stderr_lacks("no line for")
            .stderr_lacks(wrong)
            .stderr_lacks("other-Password-45");
    }
    // No line for this server: none found, and said so as before.
    let none = dir.path().join("none");
    std::fs::write(&none, "elsewhere:5432:*:postgres:other-Password-45\n").unwrap();
    std::fs::set_permissions(&none, std::fs::Permissions::from_mode(0o600)).unwrap();
    Test::new()
        .env("RUNBOOK_STATE", &url)
        .env("PGPASSFILE", &none.display().to_string())
        .run(&["status"])
        .code(1)
        .stderr_has(&format!(
            "(no line for host 127.0.0.1 port {} database {db} as user postgres)",
            pg.port
        ))
        .stderr_lacks("came from");
}

#[test]
fn malformed_urls_and_unknown_parameters_are_usage_errors() {
    let t = Test::new().runbook("p", "steps:\n  - id: a\n    run: echo ran > ran\n");
    for (url, says) in [
        ("postgres://h:99999/db", "port"),
        ("postgres://h/db?sslmode=maybe", "sslmode=maybe"),
        (
            "postgres://h/db?sslmod=require",
            "unknown parameter \"sslmod\" (known: sslmode, sslrootcert, host, connect_timeout, application_name); did you mean `sslmode`?",
        ),
        ("postgresql://u:pw@h/db?%zz=1", "hex"),
    ] {
        let r = t.run(&["--state", url, "run", "p"]);
        r.code(2).stderr_has(says);
        assert!(!r.stderr.contains(":pw@"), "{}", r.stderr);
    }
    assert!(t.read("ran").is_empty(), "a step ran");
}

#[test]
fn an_unreachable_server_is_an_error_naming_it() {
    let t = Test::new().runbook("p", "steps:\n  - id: a\n    run: 'true'\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u:pw@127.0.0.1:{port}/ops?sslmode=disable&connect_timeout=2");
    let r = t.run(&["--state", &url, "run", "p"]);
    r.code(1)
        .stderr_has(&format!("host 127.0.0.1 port {port} database ops"));
    assert!(!r.stderr.contains(":pw@"), "{}", r.stderr);
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let (t, pg, db) = on_pg();
    t.put_runbook("p", "steps:\n  - id: a\n    run: 'true'\n");
    t.run(&["run", "p"]).code(0);
    pg.sql(&db, "UPDATE runbook.schema_version SET version = 99");
    t.run(&["status"])
        .code(1)
        .stderr_has("version 99")
        .stderr_has("(4)");
}

#[test]
fn a_read_only_role_reads_and_cannot_write() {
    let (t, pg, db) = on_pg();
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(1);
    pg.sql(
        &db,
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; GRANT USAGE ON SCHEMA runbook TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA runbook TO reader",
    );
    let url = format!(
        "postgres://reader:reader-pw@127.0.0.1:{}/{db}?sslmode=disable",
        pg.port
    );
    let r = Test::new().env("RUNBOOK_STATE", &url);
    r.put_runbook("f", &failing(&t));
    r.run(&["status"]).code(0).stdout_has("failed");
    r.run(&["status", "--json"]).code(0);
    r.run(&["list"]).code(0);
    r.run(&["logs", "1", "a"]).code(0);
    r.run(&["handoff"]).code(0);
    t.write("fixed", "");
    let w = r.run(&["resume", "f"]);
    w.code(1).stderr_has("reader");
    assert_eq!(t.lines("log").iter().filter(|l| *l == "c").count(), 0);
}

#[test]
fn a_step_that_prints_the_password_has_it_redacted_in_output_logs_and_the_database() {
    let (t, pg, db) = on_pg();
    t.write("pw.txt", &format!("the password is {PASSWORD}\n"));
    t.put_runbook(
        "leak",
        &format!("steps:\n  - id: leak\n    run: cat {}\n", t.p("pw.txt")),
    );
    let ran = t.run(&["run", "leak"]);
    ran.code(0);
    let logs = t.run(&["logs", "1", "leak"]);
    logs.code(0)
        .stdout_has("the password is [REDACTED:STATE_PASSWORD]");
    let json = t.run(&["run", "leak", "--fresh", "--json"]);
    let dump = String::from_utf8_lossy(&pg.dump(&db)).to_string();
    for (what, text) in [
        ("run", ran.stdout + &ran.stderr),
        ("logs", logs.stdout.clone()),
        ("--json", json.stdout + &json.stderr),
        ("the database", dump),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "{what} holds the password: {text}"
        );
    }
}

#[test]
fn a_table_changed_by_hand_is_an_error_not_a_panic() {
    let (t, pg, db) = on_pg();
    t.put_runbook("p", "steps:\n  - id: a\n    run: 'true'\n");
    t.run(&["run", "p"]).code(0);
    pg.sql(
        &db,
        "ALTER TABLE runbook.steps ALTER COLUMN attempts TYPE text USING attempts::text",
    );
    let r = t.run(&["status"]);
    r.code(1)
        .stderr_has("not as runbook made it")
        .stderr_has("changed by hand");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
}

#[test]
fn a_local_step_writes_its_row_three_times_on_postgres() {
    // Made running (with its first attempt counted), settled: the rows of
    // a 20-step chain are written 20 times at the start and twice per step
    // after (was three times: the attempt's own write).
    let (t, pg, db) = on_pg();
    let mut yaml = String::from("steps:\n");
    for i in 0..20 {
        yaml.push_str(&format!("  - id: s{i}\n    run: 'true'\n"));
        if i > 0 {
            yaml.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    t.put_runbook("chain", &yaml);
    t.run(&["run", "chain"]).code(0);
    let written = || -> i64 {
        pg.sql(
            &db,
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE schemaname = 'runbook' AND relname = 'steps'",
        )
        .parse()
        .unwrap_or(0)
    };
    // The engine's session counts its writes when it ends, just after the
    // command exits: read until two reads agree.
    let mut last = -1;
    support::wait_for(std::time::Duration::from_secs(10), || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = written();
        let same = now == last && now > 0;
        last = now;
        same
    });
    assert_eq!(last, 60, "writes of the steps' rows over 20 steps");
    let status = t.status(None);
    assert_eq!(status.state, "succeeded");
    for step in &status.steps {
        assert_eq!(step.attempts, 1, "{step:?}");
        assert_eq!(step.attempt_history.len(), 1, "{step:?}");
    }
}
