//! Checkpoints and resume (SPEC §3): what reruns, what does not, crashes,
//! locks, signals, reset, dry-run, definition changes.

mod support;
use std::time::Duration;
use support::{finish, signal, wait_for, Test};

/// a → b(fails until `fixed` exists) → c ; free
fn failing(t: &Test) -> String {
    format!(
        "steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b >> {log}; test -e {fixed}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n  - id: free\n    run: echo free >> {log}\n",
        log = t.p("log"),
        fixed = t.p("fixed")
    )
}

fn count(t: &Test, what: &str) -> usize {
    t.lines("log").iter().filter(|l| *l == what).count()
}

#[test]
fn resume_reruns_only_the_failed_step_and_its_dependents() {
    let t = Test::new();
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(1);
    assert_eq!(t.status(None).state_of("c"), "blocked");
    t.write("fixed", "");
    t.run(&["resume", "f"]).code(0).stdout_has("resuming run 1");
    assert_eq!(
        (
            count(&t, "a"),
            count(&t, "b"),
            count(&t, "c"),
            count(&t, "free")
        ),
        (1, 2, 1, 1)
    );
    let s = t.status(None);
    assert_eq!(s.run_id, 1);
    assert_eq!(s.state, "succeeded");
    assert_eq!(s.step("b").attempts, 2);
}

#[test]
fn run_after_failure_resumes_and_fresh_does_not() {
    let t = Test::new();
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(1);
    t.run(&["run", "f"]).code(1).stdout_has("resuming run 1");
    assert_eq!(count(&t, "a"), 1);
    t.run(&["run", "f", "--fresh"])
        .code(1)
        .stdout_has("run 2 of f");
    assert_eq!(count(&t, "a"), 2);
    assert_eq!(t.status(Some("f")).run_id, 2);
    // A succeeded run is not resumed: the next `run` is a new run.
    t.write("fixed", "");
    t.run(&["run", "f"]).code(0);
    t.run(&["run", "f"]).code(0).stdout_has("run 3 of f");
}

#[test]
fn definition_change_reruns_the_step_and_its_dependents() {
    let t = Test::new();
    let log = t.p("log");
    let v1 = format!("steps:\n  - id: a\n    run: echo a >> {log}\n  - id: b\n    needs: [a]\n    run: echo b >> {log}\n  - id: c\n    needs: [b]\n    run: echo c >> {log}\n  - id: x\n    run: echo x >> {log}\n  - id: gate\n    needs: [x]\n    run: exit 1\n");
    t.put_runbook("d", &v1);
    t.run(&["run", "d"]).code(1);
    t.put_runbook(
        "d",
        &v1.replace("echo b >>", "echo b  >>")
            .replace("exit 1", "'true'"),
    );
    let ran = t.run(&["run", "d"]);
    ran.code(0);
    assert_eq!(
        (
            count(&t, "a"),
            count(&t, "b"),
            count(&t, "c"),
            count(&t, "x")
        ),
        (1, 2, 2, 1)
    );
    let s = t.status(None);
    assert_eq!(s.run_id, 1);
    assert!(ran.stdout.contains("b  succeeded"));
    // The operator sees why each step runs again.
    ran.stdout_has("▶ b (definition changed)")
        .stdout_has("▶ c (`b` changed)")
        .stdout_lacks("▶ a ");
}

#[test]
fn a_changed_step_that_cannot_run_yet_says_so_in_status() {
    let t = Test::new();
    let log = t.p("log");
    let v1 = format!("steps:\n  - id: x\n    run: echo x >> {log}\n  - id: y\n    needs: [x]\n    run: echo y >> {log}\n  - id: z\n    run: exit 1\n");
    t.put_runbook("d", &v1);
    t.run(&["run", "d"]).code(1);
    // y gets a new definition, but x (changed too) now fails: y cannot run.
    t.put_runbook(
        "d",
        &v1.replace("echo y >>", "echo y2 >>")
            .replace("echo x >>", "exit 1; echo x >>"),
    );
    t.run(&["run", "d"])
        .code(1)
        .stdout_has("▶ x (definition changed)");
    let s = t.status(None);
    assert_eq!(s.state_of("y"), "blocked");
    let reason = s.reason_of("y");
    assert!(reason.contains("definition changed"), "{reason}");
    t.run(&["status"]).code(0).stdout_has("definition changed");
    // Once y has run with its new definition, the note is gone.
    t.put_runbook(
        "d",
        &v1.replace("echo y >>", "echo y2 >>")
            .replace("exit 1", "'true'"),
    );
    t.run(&["run", "d"]).code(0);
    let reason = t.status(None).reason_of("y");
    assert!(!reason.contains("definition changed"), "{reason}");
}

#[test]
fn dry_run_changes_nothing() {
    let t = Test::new();
    t.put_runbook("f", &failing(&t));
    let ran = t.run(&["run", "f", "--dry-run"]);
    ran.code(0)
        .stdout_has("would run")
        .stdout_has("nothing was changed");
    assert!(t.read("log").is_empty());
    // On PostgreSQL the state is compared as `status --json` prints it.
    let snapshot = |t: &Test| match t.on_postgres() {
        true => t.run(&["status", "--json"]).stdout.into_bytes(),
        false => std::fs::read(t.state_file()).unwrap(),
    };
    if !t.on_postgres() {
        assert!(!t.state_file().exists(), "dry run created the state file");
    }
    t.run(&["run", "f"]).code(1);
    let before = snapshot(&t);
    t.run(&["run", "f", "--dry-run"])
        .code(0)
        .stdout_has("done")
        .stdout_has("would resume run 1");
    assert_eq!(count(&t, "a"), 1);
    assert_eq!(before, snapshot(&t));
}

#[test]
fn reset_sends_a_step_and_its_dependents_back() {
    let t = Test::new();
    t.write("fixed", "");
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(0);
    t.run(&["reset", "1", "b"]).code(0).stdout_has("b, c");
    let s = t.status(None);
    assert_eq!(
        (s.state_of("a"), s.state_of("b"), s.state_of("c")),
        ("succeeded", "pending", "pending")
    );
    assert_ne!(s.state, "succeeded");
    // The dry run and the run give the same reason.
    t.run(&["resume", "--dry-run"])
        .code(0)
        .stdout_has("b  (reset (with `b`))");
    t.run(&["resume"])
        .code(0)
        .stdout_has("▶ b (reset (with `b`))")
        .stdout_has("▶ c (reset (with `b`))");
    assert_eq!((count(&t, "a"), count(&t, "b"), count(&t, "c")), (1, 2, 2));
    t.run(&["reset", "1", "nope"]).code(2);
}

#[test]
fn sigint_stops_running_steps_and_marks_them_interrupted() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: long\n    run: touch {started}; sleep 30\n  - id: after\n    needs: [long]\n    run: touch {after}\n",
        started = t.p("started"),
        after = t.p("after")
    );
    t.put_runbook("s", &yaml);
    let child = t.spawn(&["run", "s"]);
    assert!(wait_for(Duration::from_secs(10), || t
        .path()
        .join("started")
        .exists()));
    signal(&child, "INT");
    let ran = finish(child);
    assert_eq!(ran.code, 130, "{ran:?}");
    let s = t.status(None);
    assert_eq!(s.state, "interrupted");
    assert_eq!(s.state_of("long"), "interrupted");
    assert_eq!(s.state_of("after"), "pending");
    assert!(!t.path().join("after").exists());
}

#[test]
fn sigterm_also_gives_130() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: long\n    run: touch {s}; sleep 30\n",
        s = t.p("started")
    );
    t.put_runbook("s", &yaml);
    let child = t.spawn(&["run", "s"]);
    assert!(wait_for(Duration::from_secs(10), || t
        .path()
        .join("started")
        .exists()));
    signal(&child, "TERM");
    assert_eq!(finish(child).code, 130);
    assert_eq!(t.status(None).state, "interrupted");
}

#[test]
fn second_engine_is_refused_with_exit_4() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: long\n    run: touch {s}; sleep 30\n",
        s = t.p("started")
    );
    t.put_runbook("s", &yaml);
    let first = t.spawn(&["run", "s"]);
    assert!(wait_for(Duration::from_secs(10), || t
        .path()
        .join("started")
        .exists()));
    let second = t.run(&["run", "s"]);
    second.code(4).stderr_has(&format!("pid {}", first.id()));
    t.run(&["resume", "1"]).code(4);
    t.run(&["reset", "1", "long"]).code(4);
    // status is read-only and still works while the run is held.
    assert_eq!(t.status(None).state_of("long"), "running");
    signal(&first, "INT");
    assert_eq!(finish(first).code, 130);
}

#[test]
fn kill_9_mid_run_then_resume_completes_every_step() {
    let t = Test::new();
    // A chain of steps, each appending its id; the engine is killed while `s3` runs.
    let mut yaml = String::from("steps:\n");
    for i in 0..6 {
        let needs = if i > 0 {
            format!("\n    needs: [s{}]", i - 1)
        } else {
            String::new()
        };
        let pause = if i == 3 {
            format!("touch {}; sleep 30; ", t.p("in-s3"))
        } else {
            String::new()
        };
        yaml.push_str(&format!(
            "  - id: s{i}{needs}\n    run: {pause}echo s{i} >> {log}\n",
            log = t.p("log")
        ));
    }
    t.put_runbook("chain", &yaml);
    let child = t.spawn(&["run", "chain"]);
    assert!(wait_for(Duration::from_secs(10), || t
        .path()
        .join("in-s3")
        .exists()));
    signal(&child, "KILL");
    let _ = finish(child);
    // The dead engine's run shows its running step as interrupted.
    let s = t.status(None);
    assert_eq!(s.state, "interrupted");
    assert_eq!(s.state_of("s3"), "interrupted");
    assert_eq!(s.state_of("s2"), "succeeded");
    // Resume takes over the dead engine's lock and finishes.
    std::fs::remove_file(t.path().join("in-s3")).unwrap();
    t.put_runbook("chain", &yaml.replace("sleep 30; ", ""));
    t.run(&["resume"]).code(0);
    for i in 0..6 {
        assert_eq!(
            count(&t, &format!("s{i}")),
            1,
            "s{i} ran once: {:?}",
            t.lines("log")
        );
    }
}

#[test]
fn status_json_has_the_spec_shape() {
    let t = Test::new();
    t.put_runbook("f", &failing(&t));
    t.run(&["run", "f"]).code(1);
    // support::Status denies unknown fields and requires every SPEC field.
    let s = t.status(Some("1"));
    assert_eq!(s.runbook, "f");
    assert_eq!(s.state, "failed");
    assert!(s.finished_at.is_some() && s.started_at.ends_with('Z'));
    let b = s.step("b");
    assert_eq!(
        (b.state.as_str(), b.on.as_str(), b.exit_code, b.attempts),
        ("failed", "local", Some(1), 1)
    );
    assert_eq!(b.needs, vec!["a".to_string()]);
    assert!(b.duration_ms.is_some() && b.started_at.is_some() && b.finished_at.is_some());
    let c = s.step("c");
    assert_eq!(c.state, "blocked");
    assert!(c.reason.as_deref().unwrap().contains("`b` is failed"));
    assert!(
        c.started_at.is_none()
            && c.duration_ms.is_none()
            && c.missing.is_empty()
            && c.rejected.is_empty()
    );
    t.run(&["status"])
        .code(0)
        .stdout_has("STEP")
        .stdout_has("✗ failed")
        .stdout_has("exited with code 1");
}

#[test]
fn state_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new().runbook("p", "steps:\n  - id: a\n    run: 'true'\n");
    if t.on_postgres() {
        return; // no state file: the database's own grants apply
    }
    t.run(&["run", "p"]).code(0);
    let mode = std::fs::metadata(t.state_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_skipped_step_stays_skipped_and_its_dependents_done_on_resume() {
    let t = Test::new();
    let log = t.p("log");
    let yaml = format!("steps:\n  - id: lint\n    when: \"false\"\n    run: echo lint >> {log}\n  - id: after\n    needs: [lint]\n    run: echo after >> {log}\n  - id: z\n    run: exit 1\n");
    t.put_runbook("s", &yaml);
    t.run(&["run", "s"]).code(1);
    t.run(&["resume", "s"])
        .code(1)
        .stdout_lacks("definition changed")
        .stdout_lacks("`lint` changed");
    assert_eq!((count(&t, "lint"), count(&t, "after")), (0, 1));
    assert_eq!(t.status(None).state_of("lint"), "skipped");
}

/// SPEC §14: `--var` values are kept with the run. A resume without
/// `--var` reuses them (nothing reruns back to the runbook's default); a
/// `--var` that changes a step's rendered definition reruns that step, and
/// only it (and what needs it); `--fresh` starts from the runbook's own
/// values plus the `--var`s given.
#[test]
fn a_var_is_kept_with_the_run_and_a_changed_one_reruns_only_what_it_changes() {
    let t = Test::new();
    let yaml = format!(
        "vars: {{ color: red, size: s }}\nsteps:\n  - id: a\n    run: echo a-{{{{ vars.color }}}} >> {log}\n  - id: s\n    run: echo s-{{{{ vars.size }}}} >> {log}\n  - id: b\n    needs: [a]\n    run: echo b >> {log}; test -e {fixed}\n  - id: free\n    run: echo free >> {log}\n",
        log = t.p("log"),
        fixed = t.p("fixed")
    );
    t.put_runbook("v", &yaml);
    t.run(&["run", "v", "--var", "color=blue"]).code(1);
    // No --var: the stored `color=blue` is used, so `a` is still done.
    t.run(&["resume", "v"]).code(1);
    t.write("fixed", "");
    // `size` changes `s` only; `a` keeps the stored blue.
    t.run(&["resume", "v", "--var", "size=m"]).code(0);
    let lines = t.lines("log");
    let n = |w: &str| lines.iter().filter(|l| *l == w).count();
    assert_eq!(
        (
            n("a-blue"),
            n("a-red"),
            n("s-s"),
            n("s-m"),
            n("b"),
            n("free")
        ),
        (1, 0, 1, 1, 3, 1),
        "{lines:?}"
    );
    assert_eq!(t.status(None).run_id, 1);
    // --fresh: the runbook's own values plus the --var given.
    t.run(&["run", "v", "--fresh", "--var", "size=l"]).code(0);
    let lines = t.lines("log");
    assert!(lines.iter().any(|l| l == "a-red"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "s-l"), "{lines:?}");
    assert_eq!(t.status(None).run_id, 2);
}

/// A `--var` given to `resume` (by name or by run id) is kept with the
/// run too: the next plain resume goes on with it, it does not roll the
/// step back to the value the run started with (found by a newcomer: a
/// plain resume rebuilt v7 after `resume --var tag=v8`).
#[test]
fn a_var_given_to_resume_is_kept_for_the_next_resume() {
    let t = Test::new();
    let yaml = format!(
        "vars: {{ tag: v1 }}\nsteps:\n  - id: build\n    run: echo build-{{{{ vars.tag }}}} >> {log}\n  - id: ship\n    needs: [build]\n    run: test -e {fixed}\n",
        log = t.p("log"),
        fixed = t.p("fixed")
    );
    t.put_runbook("r", &yaml);
    t.run(&["run", "r", "--var", "tag=v7"]).code(1);
    t.run(&["resume", "r", "--var", "tag=v8"]).code(1);
    t.run(&["resume", "r"]).code(1);
    t.run(&["resume", "1", "--var", "tag=v9"]).code(1);
    t.write("fixed", "");
    t.run(&["resume", "1"]).code(0);
    assert_eq!(
        t.lines("log"),
        ["build-v7", "build-v8", "build-v9"],
        "a plain resume went back to an earlier --var"
    );
}

#[test]
fn an_attempt_keeps_its_last_5000_lines_of_output() {
    // Two steps, so the first's lines are flushed by its end and the
    // second's by a flush of their own (1,000 lines or 500 ms).
    let t = Test::new().runbook(
        "r",
        "steps:\n  - id: a\n    run: seq 1 7000\n  - id: b\n    needs: [a]\n    run: seq 1 6000; sleep 1\n",
    );
    t.run(&["run", "r"]).code(0);
    for (step, first, last) in [("a", "2001", "7000"), ("b", "1001", "6000")] {
        let logs = t.run(&["logs", "1", step]);
        logs.code(0);
        let lines: Vec<&str> = logs.stdout.lines().filter(|l| !l.is_empty()).collect();
        let numbers: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(numbers.len(), 5000, "{step}: {}", logs.stdout);
        assert_eq!(numbers.first(), Some(&first), "{step}");
        assert_eq!(numbers.last(), Some(&last), "{step}");
    }
}
