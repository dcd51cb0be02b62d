//! Scheduling and local steps: parallelism, failure isolation, timeouts,
//! retries, when/unless, env, captured output.

mod support;
use support::Test;

fn stamp(t: &Test, name: &str) -> String {
    format!("echo {name} $(date +%s%N) >> {}", t.p("times"))
}

fn times(t: &Test) -> std::collections::HashMap<String, u128> {
    t.lines("times")
        .iter()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("stamp line");
            (k.to_string(), v.parse().expect("nanos"))
        })
        .collect()
}

#[test]
fn diamond_runs_middle_steps_in_parallel() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: a\n    run: {a}\n  - id: b\n    needs: [a]\n    run: {bs}; sleep 1; {be}\n  - id: c\n    needs: [a]\n    run: {cs}; sleep 1; {ce}\n  - id: d\n    needs: [b, c]\n    run: {d}\n",
        a = stamp(&t, "a"),
        bs = stamp(&t, "b-start"),
        be = stamp(&t, "b-end"),
        cs = stamp(&t, "c-start"),
        ce = stamp(&t, "c-end"),
        d = stamp(&t, "d"),
    );
    let t = t.runbook("diamond", &yaml);
    t.run(&["run", "diamond"]).code(0);
    let ts = times(&t);
    assert!(
        ts["a"] < ts["b-start"] && ts["a"] < ts["c-start"],
        "a first: {ts:?}"
    );
    assert!(
        ts["b-start"] < ts["c-end"] && ts["c-start"] < ts["b-end"],
        "b and c overlap: {ts:?}"
    );
    assert!(
        ts["d"] > ts["b-end"] && ts["d"] > ts["c-end"],
        "d last: {ts:?}"
    );
}

#[test]
fn jobs_one_runs_one_at_a_time() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: b\n    run: {bs}; sleep 0.3; {be}\n  - id: c\n    run: {cs}; sleep 0.3; {ce}\n",
        bs = stamp(&t, "b-start"),
        be = stamp(&t, "b-end"),
        cs = stamp(&t, "c-start"),
        ce = stamp(&t, "c-end"),
    );
    let t = t.runbook("serial", &yaml);
    t.run(&["run", "serial", "--jobs", "1"]).code(0);
    let ts = times(&t);
    assert!(
        ts["b-end"] <= ts["c-start"] || ts["c-end"] <= ts["b-start"],
        "no overlap with --jobs 1: {ts:?}"
    );
}

#[test]
fn failure_blocks_only_dependents() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: bad\n    run: exit 3\n  - id: after-bad\n    needs: [bad]\n    run: touch {x}\n  - id: later\n    needs: [after-bad]\n    run: touch {x}\n  - id: free\n    run: 'true'\n  - id: free2\n    needs: [free]\n    run: touch {y}\n",
        x = t.p("should-not"),
        y = t.p("free2-ran"),
    );
    let t = t.runbook("iso", &yaml);
    t.run(&["run", "iso"]).code(1).stdout_has("bad  failed");
    let s = t.status(None);
    assert_eq!(s.state, "failed");
    assert_eq!(s.state_of("bad"), "failed");
    assert_eq!(s.step("bad").exit_code, Some(3));
    assert_eq!(s.state_of("after-bad"), "blocked");
    assert_eq!(s.state_of("later"), "blocked");
    assert_eq!(s.state_of("free2"), "succeeded");
    assert!(t.path().join("free2-ran").exists());
    assert!(!t.path().join("should-not").exists());
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: slow\n    timeout: 1s\n    run: sleep 60 & echo $! > {pid}; sleep 60\n",
        pid = t.p("child.pid")
    );
    let t = t.runbook("slow", &yaml);
    let started = std::time::Instant::now();
    t.run(&["run", "slow"])
        .code(1)
        .stdout_has("timed out after 1s");
    assert!(
        started.elapsed().as_secs() < 30,
        "the run waited for the command"
    );
    let pid: i32 = t.read("child.pid").trim().parse().expect("pid written");
    assert!(
        support::wait_for(std::time::Duration::from_secs(5), || !support::alive(pid)),
        "background child {pid} survived the timeout"
    );
}

#[test]
fn retries_count_attempts_and_keep_each_attempts_output() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: flaky\n    retries: 3\n    retry_delay: 10ms\n    run: echo try >> {n}; echo attempt-$(wc -l < {n}); test $(wc -l < {n}) -ge 3\n",
        n = t.p("count")
    );
    let t = t.runbook("flaky", &yaml);
    t.run(&["run", "flaky"]).code(0);
    assert_eq!(t.lines("count").len(), 3);
    let s = t.status(None);
    assert_eq!(s.step("flaky").attempts, 3);
    t.run(&["logs", "1", "flaky", "--attempt", "1"])
        .code(0)
        .stdout_has("attempt-1")
        .stdout_lacks("attempt-2");
    t.run(&["logs", "1", "flaky"])
        .code(0)
        .stdout_has("attempt-3");
    t.run(&["logs", "1", "flaky", "--attempt", "9"]).code(2);
}

#[test]
fn retries_exhausted_fail_with_attempt_count() {
    let t = Test::new().runbook(
        "never",
        "steps:\n  - id: n\n    retries: 2\n    retry_delay: 1ms\n    run: exit 7\n",
    );
    // Each retry's start line says why the attempt before it failed.
    t.run(&["run", "never"])
        .code(1)
        .stdout_has("▶ n (attempt 2: attempt 1 exited with code 7)")
        .stdout_has("▶ n (attempt 3: attempt 2 exited with code 7)")
        .stdout_has("after 3 attempts");
    assert_eq!(t.status(None).step("n").attempts, 3);
}

/// SPEC §14: each attempt keeps its own record: `status --json` keeps
/// `attempts` and adds `attempt_history`, and `logs --attempt N` prints
/// attempt N's output.
#[test]
fn each_attempt_keeps_its_record() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: check\n    retries: 2\n    retry_delay: 1ms\n    run: 'c=$(cat {n} 2>/dev/null || echo 0); c=$((c+1)); echo $c > {n}; echo try $c; [ $c -ge 3 ] || exit 7'\n",
        n = t.p("n")
    );
    let t = t.runbook("flaky", &yaml);
    t.run(&["run", "flaky"]).code(0);
    let ran = t.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let step = &doc["steps"][0];
    assert_eq!(step["attempts"], 3);
    let history = step["attempt_history"].as_array().expect("attempt_history");
    let ends: Vec<(i64, i64)> = history
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ends, [(1, 7), (2, 7), (3, 0)], "{history:?}");
    assert_eq!(history[0]["reason"], "exited with code 7");
    for a in history {
        assert!(
            a["started_at"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{a}"
        );
        assert!(a["duration_ms"].as_i64().is_some(), "{a}");
    }
    for n in 1..=3 {
        let logs = t.run(&["logs", "1", "check", "--attempt", &n.to_string()]);
        assert_eq!(logs.stdout.trim(), format!("try {n}"));
    }
}

#[test]
fn when_false_skips_and_unless_zero_is_already_satisfied() {
    let t = Test::new();
    let yaml = format!(
        "vars: {{ mode: prod }}\nsteps:\n  - id: dev-only\n    when: vars.mode == 'dev'\n    run: touch {a}\n  - id: prod-only\n    when: \"{{{{ vars.mode == 'prod' }}}}\"\n    run: touch {b}\n  - id: done-already\n    unless: test -e {b}\n    needs: [prod-only]\n    run: touch {c}\n  - id: after\n    needs: [dev-only, done-already]\n    run: 'true'\n",
        a = t.p("a"),
        b = t.p("b"),
        c = t.p("c")
    );
    let t = t.runbook("cond", &yaml);
    t.run(&["run", "cond"]).code(0);
    let s = t.status(None);
    assert_eq!(s.state_of("dev-only"), "skipped");
    assert_eq!(s.state_of("prod-only"), "succeeded");
    assert_eq!(s.state_of("done-already"), "succeeded");
    assert!(s
        .step("done-already")
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("already satisfied"));
    assert_eq!(s.state_of("after"), "succeeded");
    assert!(!t.path().join("a").exists());
    assert!(
        !t.path().join("c").exists(),
        "unless exit 0 must not run the step"
    );
}

#[test]
fn env_and_output_are_passed_and_captured() {
    let t = Test::new().runbook(
        "env",
        "vars: { greeting: hi }\nsteps:\n  - id: e\n    env: { GREETING: \"{{ vars.greeting }}\", N: 5, TRICKY: \"a'b $(touch pwned) `x`\" }\n    run: 'echo \"$GREETING $N\"; echo \"$TRICKY\"; echo oops >&2'\n",
    );
    t.run(&["run", "env"])
        .code(0)
        .stdout_has("[e] hi 5")
        .stdout_has("[e] oops");
    t.run(&["logs", "1", "e"])
        .code(0)
        .stdout_has("hi 5")
        .stdout_has("a'b $(touch pwned) `x`")
        .stdout_has("oops");
    assert!(!t.path().join("runbooks/pwned").exists() && !t.path().join("pwned").exists());
}

#[test]
fn json_events_are_ndjson() {
    let t = Test::new().runbook(
        "j",
        "steps:\n  - id: a\n    run: echo out\n  - id: b\n    needs: [a]\n    run: exit 1\n",
    );
    let ran = t.run(&["run", "j", "--json"]);
    ran.code(1);
    let events: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert!(
        kinds.contains(&"step_started")
            && kinds.contains(&"step_output")
            && kinds.contains(&"step_finished")
    );
    assert!(events.iter().all(|e| e["run_id"] == 1));
    let out = events.iter().find(|e| e["event"] == "step_output").unwrap();
    assert_eq!(out["step"], "a");
    assert_eq!(out["line"], "out");
    let fin = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "b")
        .unwrap();
    assert_eq!(fin["state"], "failed");
    assert_eq!(events.last().unwrap()["state"], "failed");
}

#[test]
fn graph_dot_and_mermaid() {
    let t = Test::new().runbook(
        "g",
        "steps:\n  - id: a\n    run: 'true'\n  - id: b-2\n    needs: [a]\n    run: 'true'\n",
    );
    t.run(&["graph", "g"])
        .code(0)
        .stdout_has("digraph")
        .stdout_has("\"a\" -> \"b-2\"");
    t.run(&["graph", "g", "--format", "mermaid"])
        .code(0)
        .stdout_has("flowchart LR")
        .stdout_has("s_a --> s_b_2");
}

#[test]
fn list_shows_runbooks_and_runs() {
    let t = Test::new().runbook("one", "steps:\n  - id: a\n    run: 'true'\n");
    t.write(
        "runbooks/two/runbook.yaml",
        "steps:\n  - id: a\n    run: 'true'\n",
    );
    t.run(&["run", "one"]).code(0);
    t.run(&["list"])
        .code(0)
        .stdout_has("one")
        .stdout_has("two")
        .stdout_has("recent runs")
        .stdout_has("succeeded");
}
