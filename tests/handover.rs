//! A run handed over (SPEC §11, issue 23 point 3): two "machines" (two
//! host names, `unshare --uts`) with two checkouts of the same runbook in
//! different folders, one PostgreSQL database. What the first did is done
//! for the second: status, handoff, approve, resume, reset and logs from
//! the second rerun nothing; a remote step the first started is reattached
//! when the second logs in as the same user, and named, not rerun, when not.

mod support;
use std::time::Duration;
use support::machine;
use support::postgres::{Postgres, PASSWORD};
use support::sshd::Sshd;
use support::{finish, signal, wait_for, Test};

/// A checkout of the runbook on a machine of its own (SPEC §11), through
/// tests/support/machine.rs.
struct Machine {
    name: &'static str,
    checkout: Test,
}

impl Machine {
    fn run(&self, args: &[&str]) -> support::Ran {
        machine::run(&self.checkout, self.name, args)
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        machine::spawn(&self.checkout, self.name, args)
    }

    fn status(&self) -> support::Status {
        let ran = self.run(&["status", "--json"]);
        assert_eq!(ran.code, 0, "{ran:?}");
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
    }
}

/// Two checkouts (machine `laptop` in one folder, `desk` in another) of
/// one runbook, one database.
struct Two {
    a: Machine,
    b: Machine,
    flag: String,
}

fn two(runbook: &str) -> Option<Two> {
    if !machine::available() {
        eprintln!("skipped: no UTS namespace here (unshare --uts needs root)");
        return None;
    }
    let pg = Postgres::shared();
    let db = pg.new_database();
    let url = pg.url(&db);
    let checkout = || {
        let t = Test::new()
            .env("RUNBOOK_STATE", &url)
            .env("RUNBOOK_LEASE", "2s");
        t.put_runbook("deploy", runbook);
        t.write("files/app.conf", "port = 8080\n");
        t
    };
    let flag = format!(" --state '{}'", pg.url_without_password(&db));
    Some(Two {
        a: Machine {
            name: "laptop",
            checkout: checkout(),
        },
        b: Machine {
            name: "desk",
            checkout: checkout(),
        },
        flag,
    })
}

fn hosts(sshd: &Sshd) -> String {
    format!(
        "vars:\n  login: {user}\n  key: {key}\nhosts:\n  box:\n    address: 127.0.0.1\n    port: {port}\n    user: \"{{{{ vars.login }}}}\"\n    identity_file: \"{{{{ vars.key }}}}\"\n    known_hosts_file: {known}\n",
        user = sshd.user,
        key = sshd.client_key().display(),
        port = sshd.port,
        known = sshd.known_hosts().display(),
    )
}

#[test]
fn a_held_run_finished_from_another_machine_reruns_nothing_done() {
    let sshd = Sshd::start();
    let shared = Test::new();
    let journal = shared.p("journal");
    let dest = shared.p("shipped/app.conf");
    let runbook = format!(
        "{hosts}steps:\n  - id: a\n    run: echo a >> {journal}\n  - id: up\n    on: box\n    upload:\n      src: ../files/app.conf\n      dest: {dest}\n  - id: r\n    on: box\n    run: echo r >> {journal}\n  - id: gate\n    needs: [a, up, r]\n    approval: Ship it?\n  - id: after\n    needs: [gate]\n    run: echo after >> {journal}\n",
        hosts = hosts(&sshd)
    );
    let Some(m) = two(&runbook) else { return };
    m.a.run(&["run", "deploy"]).code(3);
    assert_eq!(shared.lines("journal"), ["a", "r"]);
    // The second machine, its own checkout and key, the same database.
    std::fs::copy(sshd.client_key(), m.b.checkout.path().join("key")).unwrap();
    let key = m.b.checkout.p("key");
    let s = m.b.status();
    assert_eq!(s.state, "held");
    assert_eq!(s.state_of("gate"), "held");
    let page = m.b.run(&["handoff"]);
    page.code(0)
        .stdout_has(&format!("runbook resume 1{}", m.flag))
        .stdout_has("runbook approve 1 gate");
    assert!(!page.stdout.contains(PASSWORD), "{}", page.stdout);
    m.b.run(&["approve", "1", "gate"])
        .code(0)
        .stdout_has("as root@desk");
    let s = m.b.status();
    assert_eq!(s.step("gate").approved_by.as_deref(), Some("root@desk"));
    assert!(s.step("gate").approved_at.is_some());
    m.b.run(&["resume", "--var", &format!("key={key}")]).code(0);
    assert_eq!(
        shared.lines("journal"),
        ["a", "r", "after"],
        "something ran again"
    );
    let s = m.b.status();
    for step in ["a", "up", "r"] {
        assert_eq!(s.step(step).attempts, 1, "{step}: {:?}", s.step(step));
    }
    m.b.run(&["handoff"])
        .code(0)
        .stdout_has("approved by root@desk");
    m.b.run(&["status"])
        .code(0)
        .stdout_has("approved: gate by root@desk");
    m.b.run(&["logs", "1", "after"]).code(0).stdout_has("");
    // Reset from the second machine: only what it names runs again.
    m.b.run(&["reset", "1", "after"]).code(0);
    m.b.run(&["resume"]).code(0);
    assert_eq!(shared.lines("journal"), ["a", "r", "after", "after"]);
    // And back on the first machine, from its own checkout: all done.
    m.a.run(&["resume"]).code(0);
    assert_eq!(shared.lines("journal"), ["a", "r", "after", "after"]);
    // `--by` names whoever approves.
    m.b.run(&["reset", "1", "gate"]).code(0);
    m.b.run(&["approve", "1", "gate", "--by", "lukas"])
        .code(0)
        .stdout_has("as lukas");
    assert_eq!(
        m.b.status().step("gate").approved_by.as_deref(),
        Some("lukas")
    );
}

#[test]
fn a_remote_step_started_on_one_machine_is_reattached_from_another() {
    let sshd = Sshd::start();
    let shared = Test::new();
    let effect = shared.p("effect");
    let runbook = format!(
        "{hosts}steps:\n  - id: build\n    on: box\n    run: |\n      echo first >> {effect}\n      sleep 3\n      echo second >> {effect}\n  - id: after\n    needs: [build]\n    run: echo after >> {effect}\n",
        hosts = hosts(&sshd)
    );
    let Some(m) = two(&runbook) else { return };
    let child = m.a.spawn(&["run", "deploy"]);
    assert!(
        wait_for(Duration::from_secs(20), || shared
            .read("effect")
            .contains("first")),
        "the step did not start"
    );
    signal(&child, "KILL");
    let _ = finish(child);
    // Silent past two thirds of its lease, the holder is waited out.
    std::thread::sleep(Duration::from_millis(1500));
    // Logging in as another user, the step's spool is out of reach: it is
    // named with the user to log in as, and not run a second time.
    let other = m.b.run(&["resume", "--var", "login=nobody"]);
    // The laptop's engine is silent: its lease is waited out, then taken.
    other.code(1).stdout_has("took over run 1 from root@laptop");
    let said = format!("{}{}", other.stdout, other.stderr);
    assert!(
        said.contains(&format!("resume logging in as {}", sshd.user)),
        "{said}"
    );
    let s = m.b.status();
    assert_eq!(s.state_of("build"), "failed");
    assert!(
        s.reason_of("build").contains("logged in as"),
        "{}",
        s.reason_of("build")
    );
    // As the same user: reattached, its output and result followed.
    m.b.run(&["resume", "--var", &format!("login={}", sshd.user)])
        .code(0);
    assert_eq!(shared.lines("effect"), ["first", "second", "after"]);
    let s = m.b.status();
    assert_eq!(s.state_of("build"), "succeeded");
    assert_eq!(s.step("build").attempts, 1, "{:?}", s.step("build"));
    assert!(
        s.reason_of("build").contains("reattached"),
        "{}",
        s.reason_of("build")
    );
}

#[test]
fn a_runbook_found_nowhere_is_named_and_runbook_path_gives_it() {
    let t = Test::new();
    t.put_runbook(
        "deploy",
        &format!(
            "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b >> {log}; test -e {fixed}\n",
            log = t.p("log"),
            fixed = t.p("fixed")
        ),
    );
    t.run(&["run", "deploy"]).code(1);
    // The checkout laid out otherwise: the file is elsewhere.
    std::fs::create_dir_all(t.path().join("ops")).unwrap();
    std::fs::rename(
        t.path().join("runbooks/deploy.yaml"),
        t.path().join("ops/deploy.yaml"),
    )
    .unwrap();
    t.write("fixed", "");
    t.run(&["resume"])
        .code(2)
        .stderr_has("`runbooks/deploy.yaml` under this folder")
        .stderr_has("--runbook PATH");
    assert_eq!(t.lines("log"), ["a", "b"], "something ran");
    t.run(&["resume", "--runbook", "ops/deploy.yaml"]).code(0);
    assert_eq!(t.lines("log"), ["a", "b", "b"]);
}
