//! Fleets (SPEC §9, issue 15): one runbook over many hosts, each host a
//! network namespace with its own sshd (loopback addresses when not root).

mod support;
use support::fleet::Fleet;
use support::Test;

/// A runbook over the fleet's hosts with `groups:` and `steps`.
fn runbook(fleet: &Fleet, groups: &str, steps: &str) -> String {
    format!(
        "hosts:\n{}groups:\n{groups}steps:\n{steps}",
        fleet.hosts_yaml()
    )
}

/// `hosts:` with h1..=hN, all on one loopback sshd (cheaper than a fleet
/// when the hosts need not be apart).
fn hosts_on_one_sshd(sshd: &support::sshd::Sshd, n: usize) -> String {
    let mut hosts = String::from("hosts:\n");
    for i in 1..=n {
        hosts.push_str(&format!(
            "  h{i}: {{ address: 127.0.0.1, port: {}, user: {}, identity_file: {}, known_hosts_file: {} }}\n",
            sshd.port,
            sshd.user,
            sshd.client_key().display(),
            sshd.known_hosts().display()
        ));
    }
    hosts
}

/// The line of a dry run's output that names step `id`.
fn line_of(stdout: &str, id: &str) -> String {
    stdout
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == id))
        .unwrap_or_else(|| panic!("no line for {id} in {stdout}"))
        .to_string()
}

/// Lines of a log the steps append to (all namespaces share the file system).
fn log_lines(t: &Test, name: &str) -> Vec<String> {
    let mut lines = t.lines(name);
    lines.sort();
    lines
}

#[test]
fn a_group_from_yaml_runs_once_per_host_each_on_its_own_address() {
    let fleet = Fleet::start(3);
    let t = Test::new();
    let log = t.p("log");
    let steps = format!(
        "  - id: deploy\n    on: web\n    run: echo \"{{{{ step.host }}}} $SSH_CONNECTION\" | cut -d' ' -f1,4 >> {log}\n  - id: check\n    on: web\n    needs: [deploy]\n    run: echo check {{{{ step.host }}}} >> {log}\n  - id: done\n    needs: [check]\n    run: echo done >> {log}\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: [h*]\n", &steps));
    // validate counts the steps as written, the instances apart.
    t.run(&["validate", "r"])
        .code(0)
        .stdout_has("ok (3 steps (7 instances), 3 hosts, 0 secrets)");
    t.run(&["run", "r", "--jobs", "8"]).code(0);
    let lines = log_lines(&t, "log");
    let expected_addresses: Vec<String> = fleet
        .hosts
        .iter()
        .map(|(n, a, _)| format!("{n} {a}"))
        .collect();
    for e in &expected_addresses {
        assert!(lines.contains(e), "{e} missing from {lines:?}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("check ")).count(), 3);
    assert_eq!(t.lines("log").last().map(String::as_str), Some("done"));
    let s = t.status(None);
    assert_eq!(s.state_of("deploy@h2"), "succeeded");
    assert_eq!(s.step("check@h3").needs, vec!["deploy@h3".to_string()]);
    assert_eq!(
        s.step("done").needs,
        vec!["check@h1", "check@h2", "check@h3"]
    );
    // The graph draws each step once, with its host count.
    let graph = t.run(&["graph", "r"]);
    graph
        .code(0)
        .stdout_has("\"deploy\" [label=\"deploy @web (3 hosts)\"];")
        .stdout_lacks("h2");
    assert_eq!(graph.stdout.matches("\"deploy\" -> \"check\"").count(), 1);
}

#[test]
fn groups_from_ini_and_yaml_inventories() {
    let fleet = Fleet::start(3);
    let t = Test::new();
    let log = t.p("log");
    t.write("runbooks/hosts.ini", &fleet.inventory_ini());
    // The same hosts as a YAML inventory, in two groups with a parent.
    let mut yaml = String::from("all:\n  children:\n    front:\n      hosts:\n");
    for (i, (name, addr, port)) in fleet.hosts.iter().enumerate() {
        if i == 2 {
            yaml.push_str("    back:\n      hosts:\n");
        }
        yaml.push_str(&format!(
            "        {name}: {{ ansible_host: {addr}, ansible_port: {port} }}\n"
        ));
    }
    yaml.push_str(&format!(
        "    everything:\n      children: {{ front: , back: }}\n  vars:\n    ansible_user: {}\n    ansible_ssh_private_key_file: {}\n",
        whoami(),
        fleet.client_key().display()
    ));
    t.write("runbooks/hosts.yml", &yaml);
    let kh = fleet.known_hosts().display().to_string();
    for (inventory, group, expect) in [
        ("hosts.ini", "fleet", 3),
        ("hosts.yml", "front", 2),
        ("hosts.yml", "everything", 3),
    ] {
        std::fs::remove_file(t.p("log")).ok();
        t.put_runbook(
            "r",
            &format!("inventory: {{ path: {inventory}, known_hosts_file: {kh} }}\nsteps:\n  - id: hello\n    on: {group}\n    run: echo {{{{ step.host }}}} >> {log}\n"),
        );
        t.run(&["run", "r", "--fresh"]).code(0);
        assert_eq!(log_lines(&t, "log").len(), expect, "{inventory} {group}");
    }
    // An unknown group is a located validation error with a did-you-mean.
    t.put_runbook(
        "bad",
        &format!("inventory: {{ path: hosts.yml, known_hosts_file: {kh} }}\nsteps:\n  - id: hello\n    on: frnt\n    run: 'true'\n"),
    );
    t.run(&["validate", "bad"])
        .code(2)
        .stderr_has("unknown host or group `frnt`")
        .stderr_has("did you mean `front`?")
        .stderr_has("bad.yaml:4:9");
}

fn whoami() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_slow_host_does_not_hold_back_a_fast_one() {
    let fleet = Fleet::start(2);
    let t = Test::new();
    let log = t.p("log");
    let steps = format!(
        "  - id: build\n    on: web\n    run: \"if [ {{{{ step.host }}}} = h1 ]; then sleep 2; fi; echo build {{{{ step.host }}}} >> {log}\"\n  - id: start\n    on: web\n    needs: [build]\n    run: echo start {{{{ step.host }}}} >> {log}\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: [h1, h2]\n", &steps));
    t.run(&["run", "r"]).code(0);
    // h2 went through its whole DAG while h1 was still building.
    assert_eq!(
        t.lines("log"),
        vec!["build h2", "start h2", "build h1", "start h1"]
    );
}

#[test]
fn a_failure_on_one_host_of_20_blocks_only_that_host_and_resume_reruns_only_it() {
    let fleet = Fleet::start(20);
    let t = Test::new();
    let (log, fixed) = (t.p("log"), t.p("fixed"));
    let steps = format!(
        "  - id: deploy\n    on: all\n    max_fail: 20\n    run: \"echo deploy {{{{ step.host }}}} >> {log}; [ {{{{ step.host }}}} != h7 ] || [ -e {fixed} ]\"\n  - id: check\n    on: all\n    needs: [deploy]\n    run: echo check {{{{ step.host }}}} >> {log}\n  - id: report\n    needs: [check]\n    run: echo report >> {log}\n"
    );
    t.put_runbook(
        "r",
        &format!("hosts:\n{}steps:\n{steps}", fleet.hosts_yaml()),
    );
    t.run(&["run", "r", "--jobs", "8"]).code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("deploy@h7"), "failed");
    assert_eq!(s.state_of("check@h7"), "blocked");
    assert_eq!(s.state_of("report"), "blocked");
    for h in fleet.names().iter().filter(|h| *h != "h7") {
        assert_eq!(s.state_of(&format!("check@{h}")), "succeeded", "{h}");
    }
    assert_eq!(s.step("deploy@h7").host.as_deref(), Some("h7"));
    let count = |what: &str| t.lines("log").iter().filter(|l| *l == what).count();
    assert_eq!(t.lines("log").len(), 20 + 19);
    std::fs::write(&fixed, "").unwrap();
    t.run(&["resume", "--jobs", "8"]).code(0);
    // Only h7's instances ran again; the report ran once.
    assert_eq!(count("deploy h7"), 2);
    assert_eq!(count("check h7"), 1);
    assert_eq!(count("deploy h3"), 1);
    assert_eq!(count("report"), 1);
    assert_eq!(t.lines("log").len(), 20 + 19 + 3);
    // Logs and reset take an instance's id.
    t.run(&["reset", "1", "check@h3"]).code(0);
    assert_eq!(t.status(None).state_of("check@h3"), "pending");
    assert_eq!(t.status(None).state_of("check@h4"), "succeeded");
}

#[test]
fn serial_1_never_overlaps_two_hosts() {
    let fleet = Fleet::start(5);
    let t = Test::new();
    let (log, lock) = (t.p("log"), t.p("lock"));
    let steps = format!(
        // Every host connected first, and all ready at once behind `gate`.
        "  - id: warm\n    on: web\n    run: 'true'\n  - id: gate\n    needs: [warm]\n  - id: roll\n    on: web\n    needs: [gate]\n    serial: 1\n    run: \"if mkdir {lock}; then sleep 0.3; rmdir {lock}; else echo OVERLAP >> {log}; sleep 0.3; fi; echo roll {{{{ step.host }}}} >> {log}\"\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: ['h*']\n", &steps));
    t.run(&["run", "r", "--jobs", "8"]).code(0);
    let lines = t.lines("log");
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(!lines.iter().any(|l| l == "OVERLAP"), "{lines:?}");
    // "25%" of 5 hosts is 2 at once: overlap happens, so the check above can fail.
    std::fs::remove_file(&log).ok();
    t.put_runbook(
        "r",
        &runbook(
            &fleet,
            "  web: ['h*']\n",
            &steps.replace("serial: 1", "serial: \"40%\""),
        ),
    );
    t.run(&["run", "r", "--fresh", "--jobs", "8"]).code(0);
    assert!(t.lines("log").iter().any(|l| l == "OVERLAP"));
}

#[test]
fn max_fail_2_stops_starting_instances_after_the_third_failure() {
    let fleet = Fleet::start(8);
    let t = Test::new();
    let (log, fixed) = (t.p("log"), t.p("fixed"));
    let steps = format!(
        "  - id: deploy\n    on: web\n    serial: 1\n    max_fail: 2\n    run: \"echo {{{{ step.host }}}} >> {log}; [ -e {fixed} ]\"\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: ['h*']\n", &steps));
    let ran = t.run(&["run", "r", "--jobs", "8"]);
    ran.code(1);
    assert_eq!(t.lines("log").len(), 3);
    // The summary counts every instance, and names the first pending ones.
    ran.stdout_has("run 1 failed: 3 failed, 5 pending\n")
        .stdout_has("not run: 5 pending (deploy@h4, deploy@h5, deploy@h6, 2 more)");
    let s = t.status(None);
    assert_eq!(s.state, "failed");
    let pending: Vec<_> = s.steps.iter().filter(|st| st.state == "pending").collect();
    assert_eq!(pending.len(), 5);
    assert!(pending[0]
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("max_fail: 2"));
    // Resume goes on with the rest (and the failed ones).
    std::fs::write(&fixed, "").unwrap();
    t.run(&["resume", "--jobs", "8"]).code(0);
    assert_eq!(t.lines("log").len(), 3 + 8);
}

#[test]
fn limit_runs_only_the_named_hosts() {
    let fleet = Fleet::start(4);
    let t = Test::new();
    let log = t.p("log");
    let steps =
        format!("  - id: deploy\n    on: web\n    run: echo {{{{ step.host }}}} >> {log}\n");
    t.put_runbook("r", &runbook(&fleet, "  web: ['h*']\n", &steps));
    t.run(&["run", "r", "--limit", "h1,h3*"])
        .code(0)
        .stdout_has("2 succeeded, 2 pending")
        .stdout_has("not run: 2 pending (deploy@h2, deploy@h4)");
    assert_eq!(log_lines(&t, "log"), vec!["h1", "h3"]);
    let s = t.status(None);
    assert_eq!(s.state_of("deploy@h2"), "pending");
    // The run is unfinished: a plain run picks the other hosts up.
    t.run(&["run", "r"]).code(0);
    assert_eq!(log_lines(&t, "log"), vec!["h1", "h2", "h3", "h4"]);
    t.run(&["run", "r", "--limit", "nope"])
        .code(2)
        .stderr_has("--limit `nope` names no host");
}

#[test]
fn a_secret_missing_on_one_host_holds_only_that_host() {
    let fleet = Fleet::start(3);
    let t = Test::new();
    let log = t.p("log");
    for h in ["h1", "h3"] {
        t.write(&format!("{h}.env"), &format!("TOKEN=token-of-{h}\n"));
    }
    let env = t.p("{{ step.host }}.env");
    let text = format!(
        "hosts:\n{}groups:\n  web: ['h*']\nenv_files:\n  - {{ host: web, path: \"{env}\" }}\nsecrets:\n  TOKEN: {{ description: the deploy token, owner: Lukas }}\nsteps:\n  - id: deploy\n    on: web\n    requires: [TOKEN]\n    run: echo {{{{ step.host }}}} {{{{ secrets.TOKEN }}}} >> {log}\n  - id: check\n    on: web\n    needs: [deploy]\n    run: echo check {{{{ step.host }}}} >> {log}\n",
        fleet.hosts_yaml()
    );
    t.put_runbook("r", &text);
    t.run(&["run", "r"]).code(3);
    // Each host used its own value; h2 is held and only h2.
    assert_eq!(
        log_lines(&t, "log"),
        vec!["check h1", "check h3", "h1 token-of-h1", "h3 token-of-h3"]
    );
    let s = t.status(None);
    assert_eq!(s.state_of("deploy@h2"), "held");
    assert_eq!(s.step("deploy@h2").missing, vec!["TOKEN".to_string()]);
    assert_eq!(s.state_of("check@h2"), "blocked");
    let handoff = t.run(&["handoff"]);
    handoff.code(0).stdout_has("TOKEN");
    // One entry for the secret, naming the held instance, not one per host.
    assert!(handoff.stdout.contains("deploy@h2"), "{}", handoff.stdout);
    assert!(!handoff.stdout.contains("deploy@h1"), "{}", handoff.stdout);
    t.write("h2.env", "TOKEN=token-of-h2\n");
    t.run(&["resume"]).code(0);
    assert!(log_lines(&t, "log").contains(&"h2 token-of-h2".to_string()));
}

#[test]
fn kill_9_during_a_fleet_run_then_resume_loses_nothing() {
    let fleet = Fleet::start(10);
    let t = Test::new();
    let log = t.p("log");
    let steps = format!(
        "  - id: a\n    on: web\n    run: sleep 0.3; echo a {{{{ step.host }}}} >> {log}\n  - id: b\n    on: web\n    needs: [a]\n    run: sleep 0.3; echo b {{{{ step.host }}}} >> {log}\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: ['h*']\n", &steps));
    let child = t.spawn(&["run", "r", "--jobs", "3"]);
    assert!(support::wait_for(
        std::time::Duration::from_secs(20),
        || { t.lines("log").len() >= 6 }
    ));
    support::signal(&child, "KILL");
    let _ = support::finish(child);
    let before = t.status(None);
    let done_before: Vec<String> = before
        .steps
        .iter()
        .filter(|s| s.state == "succeeded")
        .map(|s| s.id.clone())
        .collect();
    t.run(&["resume", "--jobs", "3"]).code(0);
    let s = t.status(None);
    assert!(s.steps.iter().all(|st| st.state == "succeeded"));
    let lines = t.lines("log");
    for h in fleet.names() {
        for step in ["a", "b"] {
            let n = lines
                .iter()
                .filter(|l| **l == format!("{step} {h}"))
                .count();
            assert!(n >= 1, "{step}@{h} never ran");
            if done_before.contains(&format!("{step}@{h}")) {
                assert_eq!(n, 1, "{step}@{h} succeeded before the kill and ran again");
            }
        }
    }
}

/// 100 host names on one loopback sshd: what is measured here is how a
/// hundred instances read, not that the hosts are apart.
#[test]
fn status_and_handoff_at_100_hosts_fit_on_one_screen() {
    let sshd = support::sshd::Sshd::start();
    let t = Test::new();
    let hosts = hosts_on_one_sshd(&sshd, 100);
    for i in (1..=100).filter(|i| *i != 50 && *i != 51) {
        t.write(&format!("env/h{i}.env"), "TOKEN=a-token-value\n");
    }
    let env = t.p("env/{{ step.host }}.env");
    let text = format!(
        "{hosts}env_files:\n  - {{ host: all, path: \"{env}\" }}\nsecrets:\n  TOKEN: {{ description: deploy token, owner: Lukas }}\nsteps:\n  - id: deploy\n    on: all\n    max_fail: 100\n    requires: [TOKEN]\n    run: \"case {{{{ step.host }}}} in h10|h20|h30|h40) echo boom; exit 1;; esac\"\n  - id: check\n    on: all\n    needs: [deploy]\n    run: 'true'\n  - id: finish\n    needs: [check]\n    run: 'true'\n"
    );
    t.put_runbook("r", &text);
    // The run's own summary names three failed instances, then counts.
    let ran = t.run(&["run", "r", "--jobs", "25"]);
    ran.code(1).stdout_has("1 more instance of deploy failed");
    // (Without a terminal each instance's result is a log line; the
    // summary after them is what must stay short.)
    let summary = &ran.stdout[ran.stdout.find("run 1 failed").unwrap()..];
    assert!(
        summary.contains("not run: 7 blocked (") && summary.contains(", 4 more)"),
        "{summary}"
    );
    assert!(summary.lines().count() <= 15, "{summary}");
    let s = t.status(None);
    assert_eq!(s.steps.len(), 201);
    assert_eq!(s.state_of("deploy@h50"), "held");
    assert_eq!(s.state_of("deploy@h10"), "failed");
    assert_eq!(s.state_of("check@h11"), "succeeded");
    let status = t.run(&["status"]);
    status
        .code(0)
        .stdout_has("deploy (100 hosts)")
        .stdout_has("94 succeeded");
    let lines = status.stdout.lines().count();
    assert!(lines <= 30, "{lines} lines:\n{}", status.stdout);
    let all = t.run(&["status", "--hosts"]);
    assert!(all.stdout.lines().count() > 200, "{}", all.stdout);
    let handoff = t.run(&["handoff"]);
    handoff.code(0).stdout_has("deploy on h50, h51");
    // The header counts instances, not the collapsed lines.
    handoff
        .stdout_has("188 steps are done")
        .stdout_has("2 wait for a person, 4 failed and 7 are blocked behind them");
    let lines = handoff.stdout.lines().count();
    assert!(lines <= 75, "{lines} lines:\n{}", handoff.stdout);
}

#[test]
fn approvals_are_per_instance_and_a_step_name_approves_them_all() {
    let fleet = Fleet::start(3);
    let t = Test::new();
    let log = t.p("log");
    let steps = format!(
        "  - id: restart\n    on: web\n    approval: Restart production?\n    run: echo {{{{ step.host }}}} >> {log}\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: ['h*']\n", &steps));
    t.run(&["run", "r"]).code(3);
    t.run(&["approve", "1", "restart@h2"]).code(0);
    t.run(&["resume"]).code(3);
    assert_eq!(t.lines("log"), vec!["h2"]);
    t.run(&["approve", "1", "restart"])
        .code(0)
        .stdout_has("`restart` on 3 hosts");
    t.run(&["resume"]).code(0);
    assert_eq!(log_lines(&t, "log"), vec!["h1", "h2", "h3"]);
}

/// A dry run with `--limit` shows what that real run would do: the other
/// hosts' instances are left out, and what needs them would not start.
#[test]
fn dry_run_with_limit_shows_only_what_that_run_would_do() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "hosts:\n  w1: { address: 127.0.0.1 }\n  w2: { address: 127.0.0.1 }\ngroups:\n  web: ['w*']\nsteps:\n  - id: deploy\n    on: web\n    run: 'true'\n  - id: done\n    needs: [deploy]\n    run: 'true'\n",
    );
    let ran = t.run(&["run", "r", "--dry-run", "--limit", "w1"]);
    ran.code(0).stdout_has("would run");
    let line = |id: &str| line_of(&ran.stdout, id);
    assert!(line("deploy@w1").contains("would run"), "{}", ran.stdout);
    assert!(line("deploy@w2").contains("--limit"), "{}", ran.stdout);
    assert!(!line("deploy@w2").contains("would run"), "{}", ran.stdout);
    assert!(!line("done").contains("would run"), "{}", ran.stdout);
    t.run(&["run", "r", "--dry-run", "--limit", "nope"])
        .code(2)
        .stderr_has("--limit `nope` names no host");
}

/// `reset RUN STEP` on a step on a group resets each of its instances and
/// what depends on them; `logs RUN STEP` prints every instance's output
/// under its host's name (SPEC §14), `--attempt N` each one's attempt N.
#[test]
fn reset_by_step_name_resets_every_instance_and_logs_prints_each() {
    let sshd = support::sshd::Sshd::start();
    let t = Test::new();
    let hosts = hosts_on_one_sshd(&sshd, 2);
    t.put_runbook(
        "r",
        &format!("{hosts}steps:\n  - id: deploy\n    on: all\n    run: echo hi from {{{{ step.host }}}}\n  - id: finish\n    needs: [deploy]\n    run: 'true'\n"),
    );
    t.run(&["run", "r"]).code(0);
    let logs = t.run(&["logs", "1", "deploy"]);
    logs.code(0);
    assert_eq!(
        logs.stdout.lines().collect::<Vec<_>>(),
        [
            "== h1 (deploy@h1) ==",
            "hi from h1",
            "== h2 (deploy@h2) ==",
            "hi from h2"
        ],
        "{}",
        logs.stdout
    );
    t.run(&["reset", "1", "deploy"]).code(0);
    let s = t.status(None);
    for id in ["deploy@h1", "deploy@h2", "finish"] {
        assert_eq!(s.state_of(id), "pending", "{id}");
    }
    t.run(&["logs", "1", "deploy"])
        .code(0)
        .stdout_has("== h1 (deploy@h1) ==");
    t.run(&["run", "r"]).code(0);
    t.run(&["logs", "1", "deploy@h2"])
        .code(0)
        .stdout_has("hi from h2");
    t.run(&["logs", "1", "deploy", "--attempt", "1"])
        .code(0)
        .stdout_has("== h2 (deploy@h2) ==\nhi from h2");
}

/// A group's `env_files` entry is each host's own file: a local step does
/// not read it, so the handoff for a local step's secret does not send the
/// operator there.
#[test]
fn the_handoff_does_not_send_a_local_steps_secret_to_a_groups_files() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "hosts:\n  w1: { address: 127.0.0.1, port: 1 }\n  w2: { address: 127.0.0.1, port: 1 }\ngroups:\n  web: ['w*']\nenv_files:\n  - { host: web, path: /etc/app/.env }\nsecrets:\n  TOKEN: { description: a token }\nsteps:\n  - id: notify\n    requires: [TOKEN]\n    run: 'true'\n",
    );
    t.run(&["run", "r"]).code(3);
    let handoff = t.run(&["handoff"]);
    handoff
        .code(0)
        .stdout_has("export TOKEN=")
        .stdout_lacks("/etc/app/.env");
}

/// A glob in `--limit` also matches group names, as Ansible's does: hosts
/// named by address are picked by their group.
#[test]
fn a_limit_glob_matches_group_names_too() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "hosts:\n  10.9.0.1: { address: 127.0.0.1 }\n  10.9.0.2: { address: 127.0.0.1 }\ngroups:\n  webservers: [10.9.0.1]\n  dbs: [10.9.0.2]\nsteps:\n  - id: deploy\n    on: all\n    run: 'true'\n",
    );
    let ran = t.run(&["run", "r", "--dry-run", "--limit", "web*"]);
    ran.code(0);
    let line = |id: &str| line_of(&ran.stdout, id);
    assert!(
        line("deploy@10.9.0.1").contains("would run"),
        "{}",
        ran.stdout
    );
    assert!(
        line("deploy@10.9.0.2").contains("left out"),
        "{}",
        ran.stdout
    );
    // Not the implicit `all` group: `a*` names no host here.
    t.run(&["run", "r", "--dry-run", "--limit", "a*"]).code(2);
}

/// SPEC §14: ids in `handoff --json` are ids: instances of one step gathered
/// on one line carry `"step"` and `"hosts"`, and no line says `@HOST`.
#[test]
fn handoff_json_ids_are_ids_and_no_line_says_at_host() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "hosts:\n  w1: { address: 127.0.0.1, port: 1 }\n  w2: { address: 127.0.0.1, port: 1 }\ngroups:\n  web: ['w*']\nsecrets:\n  TOKEN: { description: a token }\nsteps:\n  - id: deploy\n    on: web\n    requires: [TOKEN]\n    run: 'true'\n  - id: next\n    on: web\n    needs: [deploy]\n    run: 'true'\n",
    );
    t.run(&["run", "r"]).code(3);
    let ran = t.run(&["handoff", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let blocked = &doc["blocked"][0];
    assert_eq!(blocked["id"], "next", "{doc}");
    assert_eq!(blocked["step"], "next");
    assert_eq!(blocked["hosts"], serde_json::json!(["w1", "w2"]));
    assert!(!ran.stdout.contains("@HOST"), "{}", ran.stdout);
    let md = t.run(&["handoff"]);
    md.stdout_has("- `next on w1, w2`: `deploy` on the same host is held");
    assert!(!md.stdout.contains("@HOST"), "{}", md.stdout);
}
