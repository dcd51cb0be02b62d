//! Rolling blocks (SPEC §15, issue 22): a batch of hosts through the whole
//! block before the next batch starts, on real sshd. The hosts are one
//! sshd reached under several names, from an Ansible inventory whose order
//! is not the names' sorted order; each inner step appends
//! `HOST STEP start|end SECONDS` to a journal.

mod support;
use support::sshd::Sshd;
use support::Test;

/// One line of the journal.
#[derive(Debug, Clone)]
struct Entry {
    host: String,
    step: String,
    start: bool,
    at: f64,
}

fn journal(t: &Test) -> Vec<Entry> {
    let mut out: Vec<Entry> = t
        .lines("journal")
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Entry {
                host: f[0].to_string(),
                step: f[1].to_string(),
                start: f[2] == "start",
                at: f[3].parse().unwrap(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.at.partial_cmp(&b.at).unwrap());
    out
}

/// Hosts in the order their first line appears, and each host's time span.
fn spans(entries: &[Entry]) -> Vec<(String, f64, f64)> {
    let mut out: Vec<(String, f64, f64)> = Vec::new();
    for e in entries {
        match out.iter_mut().find(|(h, _, _)| *h == e.host) {
            Some(span) => {
                span.1 = span.1.min(e.at);
                span.2 = span.2.max(e.at);
            }
            None => out.push((e.host.clone(), e.at, e.at)),
        }
    }
    out
}

/// An inventory of `names` (in this order) on one sshd, in group `web`.
fn inventory(sshd: &Sshd, names: &[&str]) -> String {
    let mut ini = String::from("[web]\n");
    for n in names {
        ini.push_str(&format!(
            "{n} ansible_host=127.0.0.1 ansible_port={} ansible_user={} ansible_ssh_private_key_file={}\n",
            sshd.port,
            sshd.user,
            sshd.client_key().display()
        ));
    }
    ini
}

/// A step that journals its start and end around `work`.
fn step(t: &Test, id: &str, needs: &str, work: &str) -> String {
    let j = t.p("journal");
    format!(
        "      - id: {id}\n{needs}        run: |\n          echo \"{{{{ step.host }}}} {id} start $(date +%s.%N)\" >> {j}\n          {work}\n          echo \"{{{{ step.host }}}} {id} end $(date +%s.%N)\" >> {j}\n"
    )
}

/// A runbook with a rolling block `rollout` (drain → swap → check →
/// finish) on `web` and `announce` after it; `check` fails on a host
/// whose `broken-HOST` file exists.
fn release(t: &Test, sshd: &Sshd, names: &[&str], block_keys: &str) -> String {
    release_with(t, sshd, names, block_keys, "sleep 0.2")
}

/// [`release`] with `swap` doing `swap_work`.
fn release_with(
    t: &Test,
    sshd: &Sshd,
    names: &[&str],
    block_keys: &str,
    swap_work: &str,
) -> String {
    t.write("runbooks/hosts.ini", &inventory(sshd, names));
    let broken = t.p("broken");
    let steps = [
        step(t, "drain", "", "sleep 0.2"),
        step(t, "swap", "        needs: [drain]\n", swap_work),
        step(
            t,
            "check",
            "        needs: [swap]\n",
            &format!("test ! -e {broken}-{{{{ step.host }}}} || {{ echo unhealthy; exit 3; }}"),
        ),
        step(t, "finish", "        needs: [check]\n", "true"),
    ]
    .concat();
    format!(
        "inventory: {{ path: hosts.ini, known_hosts_file: {} }}\nsteps:\n  - id: rollout\n    on: web\n{block_keys}    steps:\n{steps}  - id: announce\n    needs: [rollout]\n    run: echo announced >> {}\n",
        sshd.known_hosts().display(),
        t.p("announced")
    )
}

/// Each batch's hosts finished the whole block before the next batch's
/// first step started; returns the hosts in the order they went.
fn assert_batches(entries: &[Entry], batches: &[&[&str]]) {
    let spans = spans(entries);
    let order: Vec<&str> = spans.iter().map(|s| s.0.as_str()).collect();
    let want: Vec<&str> = batches.iter().flat_map(|b| b.iter().copied()).collect();
    let mut got_sorted_in_batches = Vec::new();
    let mut at = 0;
    for b in batches {
        let mut part: Vec<&str> = order[at..at + b.len()].to_vec();
        part.sort();
        let mut expect = b.to_vec();
        expect.sort();
        assert_eq!(part, expect, "hosts went {order:?}, batches {batches:?}");
        got_sorted_in_batches.extend(part);
        at += b.len();
    }
    assert_eq!(order.len(), want.len(), "{order:?}");
    for pair in batches.windows(2) {
        let end = spans
            .iter()
            .filter(|s| pair[0].contains(&s.0.as_str()))
            .map(|s| s.2)
            .fold(f64::MIN, f64::max);
        let start = spans
            .iter()
            .filter(|s| pair[1].contains(&s.0.as_str()))
            .map(|s| s.1)
            .fold(f64::MAX, f64::min);
        assert!(
            end < start,
            "batch {:?} ended at {end} after batch {:?} started at {start}: {entries:#?}",
            pair[0],
            pair[1]
        );
    }
    // Every host went through the whole block.
    for h in &want {
        let steps: Vec<&str> = entries
            .iter()
            .filter(|e| e.host == *h && e.start)
            .map(|e| e.step.as_str())
            .collect();
        assert_eq!(steps, ["drain", "swap", "check", "finish"], "{h}");
    }
}

#[test]
fn batches_of_one_and_two_never_overlap_and_go_in_inventory_order() {
    let sshd = Sshd::start();
    let t = Test::new();
    let names = ["web-c", "web-a", "web-d", "web-b"];
    for (keys, batches) in [
        (
            "    serial: 1\n",
            vec![&["web-c"][..], &["web-a"], &["web-d"], &["web-b"]],
        ),
        (
            "    serial: 2\n",
            vec![&["web-c", "web-a"][..], &["web-d", "web-b"]],
        ),
        (
            "    serial: \"50%\"\n    order: sorted\n",
            vec![&["web-a", "web-b"][..], &["web-c", "web-d"]],
        ),
        (
            "    serial: 3\n    order: reverse\n",
            vec![&["web-b", "web-d", "web-a"][..], &["web-c"]],
        ),
    ] {
        std::fs::remove_file(t.p("journal")).ok();
        t.put_runbook("r", &release(&t, &sshd, &names, keys));
        t.run(&["run", "r", "--fresh", "--jobs", "8"]).code(0);
        assert_batches(&journal(&t), &batches);
        assert_eq!(t.lines("announced").len(), 1, "announce ran once, after");
        std::fs::remove_file(t.p("announced")).ok();
    }
}

#[test]
fn a_failed_check_stops_the_rollout_and_resume_goes_on_from_there() {
    let sshd = Sshd::start();
    let t = Test::new();
    let names = ["h1", "h2", "h3"];
    t.put_runbook("r", &release(&t, &sshd, &names, "    serial: 1\n"));
    t.write("broken-h2", "");
    let ran = t.run(&["run", "r", "--jobs", "8"]);
    ran.code(1);
    let entries = journal(&t);
    assert!(
        entries.iter().all(|e| e.host != "h3"),
        "nothing starts on h3 after h2 failed: {entries:#?}"
    );
    assert!(
        !entries.iter().any(|e| e.host == "h2" && e.step == "finish"),
        "{entries:#?}"
    );
    // The summary names the host left, and status says why.
    assert!(
        ran.stdout.contains("h3") || ran.stderr.contains("h3"),
        "{ran:?}"
    );
    // Counts count steps on hosts (instances), the same in every view; the
    // block's own row is none of them: 4 inner steps on 3 hosts and
    // announce are 13. The rollout stopped: 6 succeeded (h1's four, h2's
    // drain and swap), h2's check failed, its finish and announce are
    // blocked, h3's four are pending (not started).
    ran.stdout_has("run 1 of r: 13 steps\n")
        .stdout_has("run 1 failed: 2 blocked, 1 failed, 6 succeeded, 4 pending\n")
        .stdout_has("not run: 2 blocked (finish@h2, announce)\n");
    let s = t.status(None);
    assert_eq!(s.state_of("check@h2"), "failed");
    assert_eq!(s.state_of("drain@h3"), "pending");
    assert!(
        s.reason_of("drain@h3")
            .contains("not started, max_fail 0 reached (h2 failed)"),
        "{}",
        s.reason_of("drain@h3")
    );
    assert!(!std::path::Path::new(&t.p("announced")).exists());
    // status: the block is one line with counts per state of its hosts,
    // then each host with where its block is.
    let table = t.run(&["status"]);
    let line = |start: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line {start} in {}", table.stdout))
            .to_string()
    };
    assert!(
        table.stdout.contains(": failed (6/13 done;"),
        "{}",
        table.stdout
    );
    // The block's line counts its hosts, and says they are hosts.
    assert!(line("rollout (rolling, 3 hosts)").contains("1 succeeded · 1 pending · 1 failed"));
    assert!(line("h1 ").contains("succeeded"));
    assert!(line("h2 ").contains("check: exited with code 3"));
    assert!(line("h3 ").contains("not started, max_fail 0 reached (h2 failed)"));
    assert!(!table.stdout.contains("drain@h"), "{}", table.stdout);
    assert_eq!(s.step("drain@h3").block.as_deref(), Some("rollout"));
    // The handoff names the host left, and when it goes; what it counts
    // behind the failure are the blocked instances and h3's four.
    t.run(&["handoff"])
        .code(0)
        .stdout_has("6 steps are done; 1 failed and 6 are blocked behind it.")
        .stdout_lacks("- `rollout`:")
        .stdout_has(
        "`rollout on h3`: not started, max_fail 0 reached (h2 failed); it goes once the hosts before it are through",
    );
    // graph: one box with the inner steps inside, left by one edge.
    let graph = t.run(&["graph", "r"]);
    graph
        .code(0)
        .stdout_has("subgraph \"cluster_rollout\"")
        .stdout_has("label=\"rollout: rolling on web, 1 host at a time\"")
        .stdout_has("\"finish\" -> \"announce\" [ltail=\"cluster_rollout\"];")
        .stdout_lacks("-> \"rollout\"");
    t.run(&["graph", "r", "--format", "mermaid"])
        .code(0)
        .stdout_has("subgraph s_rollout[")
        .stdout_has("s_rollout --> s_announce");

    // After the fix, h2's remaining steps run before any step on h3, and
    // nothing on h1.
    std::fs::remove_file(t.p("broken-h2")).unwrap();
    // The dry run gives no stale reason for the next host: what stopped the
    // last pass is not why this one runs it.
    let dry = t.run(&["resume", "r", "--dry-run"]);
    dry.code(0)
        .stdout_has("would run         drain@h3  (on h3)");
    assert!(!dry.stdout.contains("not started"), "{}", dry.stdout);
    std::fs::remove_file(t.p("journal")).unwrap();
    // The block's end says every host went through, not its own row's time.
    t.run(&["resume", "r", "--jobs", "8"])
        .code(0)
        .stdout_has("✓ rollout  succeeded  (3 hosts through the block)\n");
    let entries = journal(&t);
    assert!(entries.iter().all(|e| e.host != "h1"), "{entries:#?}");
    let h2: Vec<&str> = entries
        .iter()
        .filter(|e| e.host == "h2" && e.start)
        .map(|e| e.step.as_str())
        .collect();
    assert_eq!(h2, ["check", "finish"]);
    let h2_end = entries
        .iter()
        .filter(|e| e.host == "h2")
        .map(|e| e.at)
        .fold(f64::MIN, f64::max);
    let h3_start = entries
        .iter()
        .filter(|e| e.host == "h3")
        .map(|e| e.at)
        .fold(f64::MAX, f64::min);
    assert!(h2_end < h3_start, "{entries:#?}");
    assert_eq!(t.lines("announced").len(), 1);
    // logs of the block: each host's steps under its name, in order.
    let logs = t.run(&["logs", "1", "rollout"]);
    logs.code(0);
    let at = |text: &str| {
        logs.stdout
            .find(text)
            .unwrap_or_else(|| panic!("no {text} in {}", logs.stdout))
    };
    assert!(at("== h1 (drain@h1) ==") < at("== h1 (finish@h1) =="));
    assert!(at("== h1 (finish@h1) ==") < at("== h2 (drain@h2) =="));
    assert!(at("== h2 (finish@h2) ==") < at("== h3 (drain@h3) =="));
    // reset of the block: the whole rollout, and what needs it.
    t.run(&["reset", "1", "rollout"]).code(0);
    let s = t.status(None);
    for id in ["drain@h1", "finish@h3", "rollout", "announce"] {
        assert_eq!(s.state_of(id), "pending", "{id}");
    }
}

#[test]
fn max_fail_one_goes_past_one_failed_host_and_stops_at_the_second() {
    let sshd = Sshd::start();
    let t = Test::new();
    let names = ["h1", "h2", "h3", "h4", "h5"];
    t.put_runbook(
        "r",
        &release(&t, &sshd, &names, "    serial: 1\n    max_fail: 1\n"),
    );
    t.write("broken-h2", "");
    t.write("broken-h4", "");
    t.run(&["run", "r", "--jobs", "8"]).code(1);
    let hosts: Vec<String> = spans(&journal(&t)).into_iter().map(|s| s.0).collect();
    assert_eq!(hosts, ["h1", "h2", "h3", "h4"]);
    let s = t.status(None);
    assert_eq!(s.state_of("finish@h3"), "succeeded");
    assert_eq!(s.state_of("check@h4"), "failed");
    assert_eq!(s.state_of("drain@h5"), "pending");
    assert!(
        s.reason_of("drain@h5")
            .contains("max_fail 1 reached (h2, h4 failed)"),
        "{}",
        s.reason_of("drain@h5")
    );
}

#[test]
fn a_block_is_refused_where_it_cannot_mean_a_rollout() {
    let t = Test::new();
    let head = "hosts:\n  a: { address: 127.0.0.1 }\n  b: { address: 127.0.0.1 }\n  db: { address: 127.0.0.1 }\ngroups:\n  web: [a, b]\nsteps:\n  - id: pre\n";
    for (body, message, at) in [
        (
            "  - id: rollout\n    on: db\n    steps:\n      - id: x\n        run: 'true'\n",
            "rolling block `rollout` runs on `db`; a rolling block runs on a group",
            "r.yaml:10:9",
        ),
        (
            "  - id: rollout\n    on: web\n    steps:\n      - id: x\n        on: db\n        run: 'true'\n",
            "step \"x\" (steps[1].steps[0]) inside rolling block `rollout` runs on `db`",
            "r.yaml:13:13",
        ),
        (
            "  - id: rollout\n    on: web\n    steps:\n      - id: x\n        needs: [pre]\n        run: 'true'\n",
            "step \"x\" (steps[1].steps[0]) inside rolling block `rollout` needs `pre`, which is outside the block",
            "r.yaml:13:17",
        ),
        (
            "  - id: rollout\n    on: web\n    run: 'true'\n    steps:\n      - id: x\n        run: 'true'\n",
            "rolling block `rollout` has `run`",
            "r.yaml:11:5",
        ),
        (
            "  - id: x\n    on: web\n    order: sorted\n    run: 'true'\n",
            "step \"x\" (steps[1]) has `order` but is not a rolling block",
            "r.yaml:11:5",
        ),
        (
            "  - id: rollout\n    on: web\n    steps:\n      - id: x\n        serial: 1\n        run: 'true'\n",
            "step \"x\" (steps[1].steps[0]) inside rolling block `rollout` has `serial`",
            "r.yaml:13:9",
        ),
        (
            "  - id: rollout\n    on: web\n    order: random\n    steps:\n      - id: x\n        run: 'true'\n",
            "order",
            "r.yaml:11:12",
        ),
    ] {
        t.put_runbook("r", &format!("{head}{body}"));
        t.run(&["validate", "r"])
            .code(2)
            .stderr_has(message)
            .stderr_has(at);
        // Nothing runs either.
        t.run(&["run", "r"]).code(2);
    }
}

#[test]
fn kill_9_mid_batch_then_resume_finishes_the_batch_before_the_next() {
    let sshd = Sshd::start();
    let t = Test::new();
    let names = ["h1", "h2", "h3", "h4"];
    t.put_runbook(
        "r",
        &release_with(&t, &sshd, &names, "    serial: 2\n", "sleep 2"),
    );
    let child = t.spawn(&["run", "r", "--jobs", "8"]);
    let swapping = || {
        let lines = t.lines("journal");
        ["h1", "h2"].iter().all(|h| {
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{h} swap start")))
        })
    };
    assert!(support::wait_for(
        std::time::Duration::from_secs(30),
        swapping
    ));
    support::signal(&child, "KILL");
    let _ = support::finish(child);
    t.run(&["resume", "r", "--jobs", "8"]).code(0);
    let entries = journal(&t);
    let last_of_first = entries
        .iter()
        .filter(|e| e.host == "h1" || e.host == "h2")
        .map(|e| e.at)
        .fold(f64::MIN, f64::max);
    let first_of_next = entries
        .iter()
        .filter(|e| e.host == "h3" || e.host == "h4")
        .map(|e| e.at)
        .fold(f64::MAX, f64::min);
    assert!(
        last_of_first < first_of_next,
        "the killed batch finished before the next started: {entries:#?}"
    );
    for h in names {
        let starts: Vec<&str> = entries
            .iter()
            .filter(|e| e.host == h && e.start)
            .map(|e| e.step.as_str())
            .collect();
        // The swap that ran through the kill was not started again.
        assert_eq!(starts, ["drain", "swap", "check", "finish"], "{h}");
    }
    assert!(t.status(None).steps.iter().all(|s| s.state == "succeeded"));
}

#[test]
fn via_step_host_and_the_group_name_go_through_each_instances_own_host() {
    let sshd = Sshd::start();
    let t = Test::new();
    let servers: Vec<support::http::HttpServer> = (1..=3)
        .map(|k| support::http::HttpServer::start(move |_| (200, format!("server of h{k}"))))
        .collect();
    let mut ini = String::from("[web]\n");
    for (k, server) in servers.iter().enumerate() {
        ini.push_str(&format!(
            "h{} ansible_host=127.0.0.1 ansible_port={} ansible_user={} ansible_ssh_private_key_file={} app_port={}\n",
            k + 1,
            sshd.port,
            sshd.user,
            sshd.client_key().display(),
            server.port
        ));
    }
    t.write("runbooks/hosts.ini", &ini);
    let head = format!(
        "inventory: {{ path: hosts.ini, known_hosts_file: {} }}\n",
        sshd.known_hosts().display()
    );
    let url = "http://127.0.0.1:{{ host.vars.app_port }}/health";
    t.put_runbook(
        "r",
        &format!(
            "{head}steps:\n  - id: rollout\n    on: web\n    serial: 1\n    steps:\n      - id: check\n        http: {{ via: \"{{{{ step.host }}}}\", url: \"{url}\", expect: {{ body_contains: \"server of {{{{ step.host }}}}\" }} }}\n      - id: again\n        needs: [check]\n        http:\n          via: web\n          url: \"{url}\"\n          expect: {{ body_contains: \"server of {{{{ step.host }}}}\" }}\n"
        ),
    );
    t.run(&["validate", "r"]).code(0);
    t.run(&["run", "r"]).code(0);
    for server in &servers {
        assert_eq!(server.received().len(), 2, "each host's own server, twice");
    }
    for id in ["check@h2", "again@h2"] {
        t.run(&["logs", "1", id]).code(0).stdout_has(&format!(
            "GET http://127.0.0.1:{}/health via h2 → 200",
            servers[1].port
        ));
    }
    // Off a group, neither means anything: refused with its place.
    for (via, message, at) in [
        (
            "web",
            "`via: web` names a group, and this step does not run on it",
            "r.yaml:4:13",
        ),
        ("\"{{ step.host }}\"", "renders empty here", "r.yaml:4:13"),
    ] {
        t.put_runbook(
            "r",
            &format!("{head}steps:\n  - id: probe\n    http: {{ via: {via}, url: \"http://127.0.0.1:9/\" }}\n"),
        );
        t.run(&["validate", "r"])
            .code(2)
            .stderr_has(message)
            .stderr_has(at);
    }
}

#[test]
fn dry_run_shows_the_batches_in_order_and_limit_limits_the_hosts() {
    let sshd = Sshd::start();
    let t = Test::new();
    let names = ["h1", "h2", "h3"];
    t.put_runbook("r", &release(&t, &sshd, &names, "    serial: 1\n"));
    // The block counts apart from the steps as written.
    t.run(&["validate", "r"])
        .code(0)
        .stdout_has("ok (5 steps (13 instances), 1 rolling block, 3 hosts, 0 secrets)");
    let dry = t.run(&["run", "r", "--dry-run"]);
    dry.code(0);
    let at = |text: &str| {
        dry.stdout
            .find(text)
            .unwrap_or_else(|| panic!("no {text} in {}", dry.stdout))
    };
    assert!(at("rollout: batch 1 of 3: h1") < at("drain@h1"));
    assert!(at("finish@h1") < at("rollout: batch 2 of 3: h2"));
    assert!(at("rollout: batch 2 of 3: h2") < at("drain@h2"));
    assert!(at("finish@h2") < at("rollout: batch 3 of 3: h3"));
    assert!(at("finish@h3") < at("announce"));
    // The block itself is no step that would run: its batches are.
    assert!(
        !dry.stdout
            .lines()
            .any(|l| l.split_whitespace().last() == Some("rollout")),
        "the block listed as a step:\n{}",
        dry.stdout
    );
    assert!(t.lines("journal").is_empty(), "a dry run runs nothing");
    // --limit: only those hosts, in the block's order, one at a time.
    t.run(&["run", "r", "--limit", "h3,h2", "--jobs", "8"]);
    let entries = journal(&t);
    let hosts: Vec<String> = spans(&entries).into_iter().map(|s| s.0).collect();
    assert_eq!(hosts, ["h2", "h3"]);
    assert_batches(&entries, &[&["h2"], &["h3"]]);
    let s = t.status(None);
    assert_eq!(s.state_of("drain@h1"), "pending");
    assert_eq!(s.state_of("announce"), "pending");
    // Then the rest: h1 alone, and what needs the whole rollout.
    std::fs::remove_file(t.p("journal")).unwrap();
    t.run(&["resume", "r"]).code(0);
    let hosts: Vec<String> = spans(&journal(&t)).into_iter().map(|s| s.0).collect();
    assert_eq!(hosts, ["h1"]);
    assert_eq!(t.lines("announced").len(), 1);
}

#[test]
fn a_held_host_holds_the_rollout_and_the_hosts_after_it_say_so() {
    let sshd = Sshd::start();
    let t = Test::new();
    t.write("runbooks/hosts.ini", &inventory(&sshd, &["h1", "h2", "h3"]));
    let steps = [
        step(&t, "drain", "", "true"),
        step(
            &t,
            "go",
            "        needs: [drain]\n        approval: true\n",
            "true",
        ),
    ]
    .concat();
    t.put_runbook(
        "r",
        &format!(
            "inventory: {{ path: hosts.ini, known_hosts_file: {} }}\nsteps:\n  - id: rollout\n    on: web\n    serial: 1\n    steps:\n{steps}",
            sshd.known_hosts().display()
        ),
    );
    let ran = t.run(&["run", "r"]);
    ran.code(3)
        .stdout_has("h2: not started: waits for h1 to finish the block");
    let s = t.status(None);
    assert_eq!(s.state_of("go@h1"), "held");
    assert_eq!(s.state_of("drain@h2"), "pending");
    assert!(journal(&t).iter().all(|e| e.host == "h1"));
    // Approved, h1 finishes and h2 goes, up to its own approval.
    t.run(&["approve", "1", "go@h1"]).code(0);
    t.run(&["resume", "r"])
        .code(3)
        .stdout_has("h3: not started: waits for h2 to finish the block");
    let hosts: Vec<String> = spans(&journal(&t)).into_iter().map(|s| s.0).collect();
    assert_eq!(hosts, ["h1", "h2"]);
}

/// Runs the binary on a terminal (a pty from script(1), util-linux), so
/// the live view draws; what it drew, escapes and redraws included.
fn on_terminal(t: &Test, args: &[&str]) -> String {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_runbook"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line.join(" "), "/dev/null"])
        .current_dir(t.path())
        .env_remove("RUNBOOK_STATE")
        .env("NO_COLOR", "1")
        .env("SHELL", "/bin/sh")
        .stdin(std::process::Stdio::null());
    for (k, v) in t.extra_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script(1) runs (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_live_view_draws_a_block_as_one_line_naming_the_hosts_in_it() {
    let sshd = Sshd::start();
    let t = Test::new();
    let names = ["h1", "h3", "h2"];
    t.put_runbook("r", &release(&t, &sshd, &names, "    serial: 1\n"));
    t.write("broken-h3", "");
    let drawn = on_terminal(&t, &["run", "r", "--jobs", "8"]);
    let at = |text: &str| {
        drawn
            .find(text)
            .unwrap_or_else(|| panic!("no {text:?} in {drawn:?}"))
    };
    // One line for the whole block, host after host in the block's order,
    // whichever inner step each is at.
    assert!(at("rollout on h1 (host 1 of 3)") < at("rollout on h3 (host 2 of 3)"));
    assert!(at("rollout on h3 (host 2 of 3)") < at("check@h3  failed"));
    assert!(!drawn.contains("rollout on h2"), "{drawn:?}");
    // Never a line per instance, nor per inner step on the group.
    for one in ["drain@h1 on h1", "check@h3 on h3", "drain on ", "swap on "] {
        assert!(!drawn.contains(one), "{one:?} in {drawn:?}");
    }
    assert!(!drawn.contains("check@h1  succeeded"), "{drawn:?}");
    // The summary after it names the host left.
    assert!(at("run 1 failed") < at("h2: not started, max_fail 0 reached (h3 failed)"));

    // Two at a time, the line names both; the block's end says every
    // host is through.
    std::fs::remove_file(t.p("broken-h3")).unwrap();
    let names = ["h1", "h3", "h2", "h4"];
    t.put_runbook("r", &release(&t, &sshd, &names, "    serial: 2\n"));
    let drawn = on_terminal(&t, &["run", "r", "--fresh", "--jobs", "8"]);
    assert!(
        drawn.contains("rollout on h1, h3 (hosts 1–2 of 4)"),
        "{drawn:?}"
    );
    assert!(
        drawn.contains("rollout on h2, h4 (hosts 3–4 of 4)"),
        "{drawn:?}"
    );
    assert!(
        drawn.contains("rollout  succeeded  (4 hosts through the block)"),
        "{drawn:?}"
    );
    // The footer counts steps on hosts, as the summary does (4 inner
    // steps on 4 hosts and announce), never the block's own row.
    assert!(drawn.contains("run 2 of r: 17 steps"), "{drawn:?}");
    assert!(drawn.contains("/17 done"), "{drawn:?}");
    assert!(!drawn.contains("/18 done"), "{drawn:?}");
    assert!(drawn.contains("run 2 succeeded: 17 succeeded"), "{drawn:?}");
}

/// The `<g class="node" …>` element of `step` in a run page's graph, up
/// to its end.
fn graph_node<'a>(page: &'a str, step: &str) -> &'a str {
    let start = page
        .find(&format!(r#"<g class="node" data-step="{step}""#))
        .unwrap_or_else(|| panic!("no node {step} in {page}"));
    let len = page[start..].find("</a>").expect("node ends");
    &page[start..start + len]
}

#[tokio::test]
async fn the_web_page_draws_a_block_as_one_node_with_its_inner_steps() {
    let sshd = Sshd::start();
    let t = Test::new();
    t.put_runbook(
        "r",
        &release(&t, &sshd, &["h1", "h2", "h3"], "    serial: 1\n"),
    );
    t.write("broken-h2", "");
    t.run(&["run", "r", "--jobs", "8"]).code(1);
    let server = support::web::Server::start(&t);
    let page = |server: &support::web::Server| {
        let c = reqwest::Client::new();
        let req = c.get(server.url("/runs/1")).bearer_auth(&server.token);
        async move {
            let r = req.send().await.expect("GET the run page");
            assert_eq!(r.status(), 200);
            r.text().await.expect("page")
        }
    };
    let body = page(&server).await;
    let node = graph_node(&body, "rollout");
    assert!(
        node.contains(r#"data-state="failed" data-block="rolling""#),
        "{node}"
    );
    // Counts per state of its hosts, as status has them, then each inner
    // step with its instances' counts.
    assert!(
        node.contains("rollout · rolling, 3 hosts: 1 succeeded · 1 pending · 1 failed"),
        "{node}"
    );
    let inner: Vec<&str> = node
        .split(r#"<g class="inner""#)
        .skip(1)
        .map(|g| {
            g.split("<title>")
                .nth(1)
                .unwrap()
                .split("</title>")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        inner,
        [
            "drain: 2 succeeded · 1 pending",
            "swap: 2 succeeded · 1 pending",
            "check: 1 succeeded · 1 pending · 1 failed",
            "finish: 1 succeeded · 1 pending · 1 blocked",
        ]
    );
    // No node of its own for an inner step; one edge, block to announce.
    for step in ["drain", "swap", "check", "finish"] {
        assert!(
            !body.contains(&format!(r#"<g class="node" data-step="{step}""#)),
            "{step} drawn apart"
        );
    }
    assert_eq!(body.matches("<path d=").count(), 1, "{body}");
    assert!(graph_node(&body, "announce").contains(r#"data-state="blocked""#));
    // In the table, the block's own row names its hosts, not `local`.
    let row = &body[body.find(r#"<tr id="s-rollout""#).expect("rollout row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">rolling, 3 hosts</td>"), "{row}");

    std::fs::remove_file(t.p("broken-h2")).unwrap();
    t.run(&["resume", "r", "--jobs", "8"]).code(0);
    let body = page(&server).await;
    let node = graph_node(&body, "rollout");
    assert!(node.contains(r#"data-state="succeeded""#), "{node}");
    assert!(
        node.contains("rollout · rolling, 3 hosts: 3 succeeded"),
        "{node}"
    );
    assert!(node.contains("<title>check: 3 succeeded</title>"), "{node}");
}
