//! SIGINT and SIGTERM stop every kind of step promptly: a request or a
//! transfer that hangs is cancelled, the step is `interrupted`, exit 130.

mod support;
use std::time::{Duration, Instant};

use support::{finish, signal, silent_server, wait_for, Test};

/// Starts `run r`, waits until `step` is running, sends `sig`, and returns
/// how long the engine took to exit after it, with its output.
fn stop_while_running(t: &Test, step: &str, sig: &str) -> (Duration, support::Ran) {
    let child = t.spawn(&["run", "r"]);
    let running = wait_for(Duration::from_secs(20), || {
        let ran = t.run(&["status", "--json"]);
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&ran.stdout) else {
            return false;
        };
        doc["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["id"] == step && s["state"] == "running")
    });
    assert!(running, "`{step}` never started");
    // Give the step time to be inside its request or connection.
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    signal(&child, sig);
    let ran = finish(child);
    (sent.elapsed(), ran)
}

#[test]
fn sigint_cancels_an_http_request_that_never_gets_an_answer() {
    let port = silent_server();
    let t = Test::new().runbook(
        "r",
        &format!(
            "steps:\n  - id: probe\n    timeout: 5m\n    http: {{ url: \"http://127.0.0.1:{port}/health\" }}\n"
        ),
    );
    let (took, ran) = stop_while_running(&t, "probe", "INT");
    ran.code(130);
    eprintln!("stopped {took:?} after the signal");
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    let s = t.status(None);
    assert_eq!(s.state, "interrupted");
    assert_eq!(s.state_of("probe"), "interrupted");
}

#[test]
fn sigterm_cancels_an_upload_to_a_host_that_never_answers() {
    let port = silent_server();
    let t = Test::new().runbook(
        "r",
        &format!(
            "hosts:\n  stuck: {{ address: 127.0.0.1, port: {port}, known_hosts: accept-new }}\nsteps:\n  - id: put\n    on: stuck\n    upload: {{ src: files, dest: /tmp/never }}\n"
        ),
    );
    t.write("runbooks/files/a.txt", "hello\n");
    let (took, ran) = stop_while_running(&t, "put", "TERM");
    ran.code(130);
    eprintln!("stopped {took:?} after the signal");
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    assert_eq!(t.status(None).state_of("put"), "interrupted");
}

#[test]
fn a_closed_stdout_neither_stops_a_run_nor_panics_a_report() {
    let t = Test::new().runbook(
        "r",
        "steps:\n  - id: a\n    run: seq 1 2000\n  - id: b\n    needs: [a]\n    run: seq 1 2000; touch b.done\n",
    );
    let bin = env!("CARGO_BIN_EXE_runbook");
    let piped = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "'{bin}' {args} 2>err | head -n 1 >/dev/null; cat err"
            ))
            .current_dir(t.path())
            .env_remove("RUNBOOK_STATE")
            .envs(t.extra_env())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let stderr = piped("run r");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The run went on to the end with nobody reading.
    assert!(t.path().join("runbooks/b.done").exists());
    assert_eq!(t.status(None).state, "succeeded");
    for args in ["logs 1 a", "status", "status --json", "handoff", "list"] {
        let stderr = piped(args);
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
}

#[test]
fn an_upload_stopped_mid_transfer_leaves_each_file_old_or_new_and_no_temporary_file() {
    let sshd = support::sshd::Sshd::start();
    let dest = sshd.dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("a-small.txt"), "old small\n").unwrap();
    std::fs::write(dest.join("b-big.bin"), "old big\n").unwrap();
    let t = Test::new().runbook(
        "r",
        &format!(
            "hosts:\n{}steps:\n  - id: put\n    on: box\n    upload: {{ src: files, dest: {} }}\n",
            sshd.host_yaml("box"),
            dest.display()
        ),
    );
    t.write("runbooks/files/a-small.txt", "new small\n");
    let big: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.path().join("runbooks/files/b-big.bin"), big).unwrap();
    let temps = || {
        std::fs::read_dir(&dest)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("runbook-tmp"))
            .count()
    };
    let child = t.spawn(&["run", "r"]);
    // The small file is in place (renamed as soon as it was complete), the
    // big one is on its way.
    assert!(
        wait_for(Duration::from_secs(60), || {
            std::fs::read_to_string(dest.join("a-small.txt")).unwrap_or_default() == "new small\n"
                && temps() > 0
        }),
        "no transfer seen"
    );
    signal(&child, "INT");
    finish(child).code(130);
    assert_eq!(
        std::fs::read_to_string(dest.join("a-small.txt")).unwrap(),
        "new small\n"
    );
    // Never half-written: the big file is still the old one.
    assert_eq!(
        std::fs::read_to_string(dest.join("b-big.bin")).unwrap(),
        "old big\n"
    );
    assert!(
        wait_for(Duration::from_secs(10), || temps() == 0),
        "temporary files left in {dest:?}"
    );
}

/// An attempt stopped by a signal keeps its record: `attempt_history` has
/// it ("stopped by signal"), and the attempt a resume makes comes after it.
#[test]
fn a_signal_stopped_attempt_is_in_the_attempt_history() {
    let t = Test::new();
    let go = t.p("go");
    t.put_runbook(
        "r",
        &format!("steps:\n  - id: slow\n    run: echo started; [ -e {go} ] || sleep 30\n"),
    );
    let (_, ran) = stop_while_running(&t, "slow", "INT");
    ran.code(130);
    let s = t.status(None);
    let slow = s.step("slow");
    assert_eq!(slow.state, "interrupted");
    assert_eq!(slow.attempt_history.len(), 1, "{:?}", slow.attempt_history);
    let first = &slow.attempt_history[0];
    assert_eq!(first.attempt, 1);
    assert_eq!(first.reason.as_deref(), Some("stopped by signal"));
    assert!(first.duration_ms >= 300, "{first:?}");
    std::fs::write(&go, "").unwrap();
    t.run(&["resume"]).code(0);
    let s = t.status(None);
    let history = &s.step("slow").attempt_history;
    let seen: Vec<(i64, Option<i64>)> = history.iter().map(|a| (a.attempt, a.exit_code)).collect();
    assert_eq!(seen, vec![(1, None), (2, Some(0))], "{history:?}");
    t.run(&["logs", "1", "slow", "--attempt", "1"])
        .code(0)
        .stdout_has("started");
}
