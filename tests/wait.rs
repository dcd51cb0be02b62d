//! `run --wait` / `resume --wait` (issue 14, SPEC §10): while held, the
//! engine looks again, says what changed, and goes on by itself.

mod support;
use support::http::HttpServer;
use support::sshd::Sshd;
use support::webhook::Webhook;
use support::{signal, wait_for, Ran, Test};

use std::io::Read;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `runbook` whose stdout is collected as it comes.
struct Watched {
    child: Child,
    out: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn start(t: &Test, args: &[&str]) -> Watched {
        let mut child = t.spawn(args);
        let mut stdout = child.stdout.take().expect("stdout");
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watched { child, out, reader }
    }

    /// Waits until stdout shows `text`.
    #[track_caller]
    fn expect(&self, text: &str, limit: Duration) {
        let seen = wait_for(limit, || self.out.lock().unwrap().contains(text));
        assert!(
            seen,
            "stdout never showed {text:?}:\n{}",
            self.out.lock().unwrap()
        );
    }

    /// Waits for the exit (killing it after `limit`); its code and output.
    fn finish(mut self, limit: Duration) -> Ran {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.child.try_wait().expect("wait").is_none() {
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("wait");
        let _ = self.reader.join();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let stdout = self.out.lock().unwrap().clone();
        Ran {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

/// Writes a file whole (a reader never sees it half written).
fn put(t: &Test, rel: &str, text: &str) {
    t.write(&format!("{rel}.tmp"), text);
    std::fs::rename(t.path().join(format!("{rel}.tmp")), t.path().join(rel)).unwrap();
}

/// `first` → `use` (requires RB_TOKEN, looked up in runbooks/late.env too)
/// → `after`; notifications to `hook` when held and succeeded.
fn token_runbook(hook: &str, check: &str) -> String {
    format!(
        "notify:\n  - url: \"{hook}\"\n    on: [held, failed, succeeded]\nenv_files: [late.env]\nsecrets:\n  RB_TOKEN:\n    owner: Lukas\n    description: the token{check}\nsteps:\n  - id: first\n    run: echo first >> ../log\n  - id: use\n    needs: [first]\n    requires: [RB_TOKEN]\n    env: {{ T: \"{{{{ secrets.RB_TOKEN }}}}\" }}\n    run: echo \"using $T\"\n  - id: after\n    needs: [use]\n    run: 'true'\n"
    )
}

#[test]
fn resume_wait_goes_on_when_the_secret_arrives_in_an_env_file() {
    let hook = Webhook::start();
    let t = Test::new().runbook("w", &token_runbook(&hook.url(), ""));
    t.run(&["run", "w"]).code(3);
    assert_eq!(hook.bodies().len(), 1);
    let start = Instant::now();
    let waiting = Watched::start(&t, &["resume", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for RB_TOKEN (missing)", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2).saturating_sub(start.elapsed()));
    put(&t, "runbooks/late.env", "RB_TOKEN=tok-late-4242\n");
    let ran = waiting.finish(Duration::from_secs(10));
    let took = start.elapsed();
    ran.code(0)
        .stdout_has("RB_TOKEN: found in")
        .stdout_has("[use] using [REDACTED:RB_TOKEN]");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!ran.stdout.contains("tok-late-4242"));
    let s = t.status(None);
    assert_eq!(s.state, "succeeded");
    assert_eq!(t.read("log"), "first\n", "`first` ran again");
    // Held once (the resume's own held pass said nothing new), then done.
    let states: Vec<String> = hook
        .bodies()
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["held", "succeeded"]);
}

#[test]
fn a_check_runs_once_per_value_and_each_change_is_one_line() {
    let api = HttpServer::start(|r| {
        if r.header("authorization") == Some("Bearer good-token-1") {
            (200, r#"{"login":"lukas"}"#.into())
        } else {
            (401, r#"{"message":"Bad credentials"}"#.into())
        }
    });
    let check = format!(
        "\n    check:\n      http:\n        url: \"{}/user\"\n        headers: {{ Authorization: \"Bearer {{{{ secrets.RB_TOKEN }}}}\" }}\n        expect: {{ status: 200 }}",
        api.url()
    );
    let hook = Webhook::start();
    let t = Test::new().runbook("w", &token_runbook(&hook.url(), &check));
    put(&t, "runbooks/late.env", "RB_TOKEN=bad-token-1\n");
    t.run(&["run", "w"]).code(3);
    assert_eq!(api.received().len(), 1);
    let waiting = Watched::start(&t, &["resume", "w", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for RB_TOKEN (rejected)", Duration::from_secs(5));
    // Unchanged for a few looks: not checked again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(api.received().len(), 2, "the same value was checked again");
    put(&t, "runbooks/late.env", "RB_TOKEN=bad-token-2\n");
    waiting.expect(
        "RB_TOKEN: still rejected (401 Bad credentials)",
        Duration::from_secs(5),
    );
    put(&t, "runbooks/late.env", "RB_TOKEN=good-token-1\n");
    let ran = waiting.finish(Duration::from_secs(10));
    ran.code(0).stdout_has("RB_TOKEN: accepted");
    // run, the resume's first pass, bad-token-2, good-token-1; the pass
    // after `accepted` reuses the verdict.
    assert_eq!(api.received().len(), 4, "{:#?}", api.received());
    assert_eq!(t.status(None).state, "succeeded");
}

#[test]
fn wait_gives_up_at_the_timeout_with_the_run_still_held() {
    let t = Test::new().runbook("w", &token_runbook("", ""));
    // `run --wait` with the default interval (30 s): the timeout still ends it.
    let start = Instant::now();
    let ran = t.run(&["run", "w", "--wait", "--timeout", "3s"]);
    let took = start.elapsed();
    ran.code(3)
        .stdout_has("waiting for RB_TOKEN (missing)")
        .stdout_has("stopped waiting: --timeout passed")
        .stdout_has("; the run is still held: once a person has acted, runbook resume 1");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    assert_eq!(t.status(None).state, "held");
    let start = Instant::now();
    t.run(&["resume", "--wait", "--timeout", "3s", "--interval", "1s"])
        .code(3);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    // With --json, the wait's lines are NDJSON events too.
    let ran = t.run(&["resume", "--wait", "--timeout", "1s", "--json"]);
    ran.code(3);
    let events: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let waits: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "wait").collect();
    assert_eq!(waits.len(), 2, "{events:#?}");
    assert!(waits[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("waiting for RB_TOKEN"));
    assert_eq!(waits[1]["run_id"], 1);
    t.run(&["resume", "--timeout", "3s"])
        .code(2)
        .stderr_has("--wait");
    t.run(&["resume", "--wait", "--interval", "soon"])
        .code(2)
        .stderr_has("is not a duration");
}

#[test]
fn ctrl_c_while_waiting_leaves_the_run_held_and_loses_nothing() {
    let t = Test::new().runbook("w", &token_runbook("", ""));
    let waiting = Watched::start(&t, &["run", "w", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for RB_TOKEN", Duration::from_secs(5));
    signal(&waiting.child, "INT");
    let start = Instant::now();
    let ran = waiting.finish(Duration::from_secs(5));
    ran.code(130).stdout_has("the run is still held");
    assert!(start.elapsed() < Duration::from_secs(3));
    let s = t.status(None);
    assert_eq!(s.state, "held");
    assert_eq!(s.state_of("first"), "succeeded");
    assert_eq!(s.state_of("use"), "held");
    assert_eq!(s.state_of("after"), "blocked");
    // The lock is free and nothing is lost: the run finishes where it stood.
    put(&t, "runbooks/late.env", "RB_TOKEN=tok-1\n");
    t.run(&["resume"]).code(0);
    assert_eq!(t.read("log"), "first\n");
}

#[test]
fn an_approval_from_another_terminal_releases_the_wait() {
    let t = Test::new().runbook(
        "ap",
        "steps:\n  - id: prep\n    run: 'true'\n  - id: ship\n    needs: [prep]\n    approval: Ship it?\n    run: echo shipped > ../shipped\n",
    );
    let waiting = Watched::start(&t, &["run", "ap", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for approval of `ship`", Duration::from_secs(5));
    // The waiting engine goes on by itself: nothing to resume by hand.
    t.run(&["approve", "1", "ship"])
        .code(0)
        .stdout_has("the engine waiting on it (")
        .stdout_has("goes on by itself")
        .stdout_lacks("continue with");
    let ran = waiting.finish(Duration::from_secs(10));
    ran.code(0)
        .stdout_has("`ship`: approved by")
        .stdout_has("this command goes on by itself once they have\nwaiting for approval of `ship`")
        .stdout_lacks("then: runbook resume");
    assert_eq!(t.read("shipped"), "shipped\n");
}

#[test]
fn the_hosts_env_file_is_watched_over_one_ssh_login() {
    let sshd = Sshd::start();
    let remote = sshd.dir.path().join("deploy/.env");
    std::fs::create_dir_all(remote.parent().unwrap()).unwrap();
    let yaml = format!(
        "hosts:\n{}env_files:\n  - {{ host: box, path: {} }}\nsecrets:\n  RB_TOKEN: {{ owner: Lukas }}\nsteps:\n  - id: use\n    requires: [RB_TOKEN]\n    run: 'true'\n",
        sshd.host_yaml("box"),
        remote.display()
    );
    let t = Test::new().runbook("r", &yaml);
    t.run(&["run", "r"]).code(3);
    let before = sshd.logins();
    let waiting = Watched::start(&t, &["resume", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for RB_TOKEN", Duration::from_secs(10));
    // A few looks at the file, then the token arrives.
    std::thread::sleep(Duration::from_millis(3500));
    std::fs::write(&remote, "RB_TOKEN=tok-remote-1\n").unwrap();
    let ran = waiting.finish(Duration::from_secs(10));
    ran.code(0).stdout_has("RB_TOKEN: found in");
    assert_eq!(
        sshd.logins() - before,
        1,
        "each look logged in again:\n{}",
        sshd.log()
    );
}

/// `mark` requires RB_TOKEN (in late.env), checked against `api`.
fn slow_check_runbook(api: &str) -> String {
    format!(
        "env_files: [late.env]\nsecrets:\n  RB_TOKEN:\n    owner: Lukas\n    check:\n      http:\n        url: \"{api}/user\"\n        headers: {{ Authorization: \"Bearer {{{{ secrets.RB_TOKEN }}}}\" }}\n        expect: {{ status: 200 }}\nsteps:\n  - id: mark\n    requires: [RB_TOKEN]\n    run: touch ../marker\n"
    )
}

/// An API that answers 401 at once, and from the `slow_from`-th request on
/// 200 after `delay`; with how many requests reached it (counted on arrival).
fn slow_api(slow_from: usize, delay: Duration) -> (HttpServer, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let arrived = n.clone();
    let server = HttpServer::start(move |_| {
        if n.fetch_add(1, SeqCst) + 1 >= slow_from {
            std::thread::sleep(delay);
            (200, "{}".into())
        } else {
            (401, r#"{"message":"Bad credentials"}"#.into())
        }
    });
    (server, arrived)
}

#[test]
fn ctrl_c_while_a_pass_looks_secrets_up_starts_no_step() {
    // The check takes 6 s: Ctrl-C comes while the pass still looks up.
    let (api, arrived) = slow_api(1, Duration::from_secs(6));
    let t = Test::new().runbook("s", &slow_check_runbook(&api.url()));
    put(&t, "runbooks/late.env", "RB_TOKEN=tok-slow-1\n");
    let waiting = Watched::start(&t, &["run", "s", "--wait", "--interval", "1s"]);
    assert!(wait_for(Duration::from_secs(10), || arrived.load(SeqCst) == 1));
    signal(&waiting.child, "INT");
    let start = Instant::now();
    let ran = waiting.finish(Duration::from_secs(15));
    ran.code(130);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert!(!t.path().join("marker").exists(), "a step ran after Ctrl-C");
    // The lock is free and the run goes on where it stood.
    t.run(&["resume"]).code(0);
    assert!(t.path().join("marker").exists());
}

#[test]
fn the_timeout_also_ends_a_look_whose_check_is_slow() {
    // The first check answers 401 at once; the next one takes 8 s.
    let (api, arrived) = slow_api(2, Duration::from_secs(8));
    let t = Test::new().runbook("s", &slow_check_runbook(&api.url()));
    put(&t, "runbooks/late.env", "RB_TOKEN=tok-bad-1\n");
    let start = Instant::now();
    let waiting = Watched::start(
        &t,
        &["run", "s", "--wait", "--interval", "1s", "--timeout", "3s"],
    );
    waiting.expect("waiting for RB_TOKEN (rejected)", Duration::from_secs(5));
    // A new value: the next look checks it, slowly.
    put(&t, "runbooks/late.env", "RB_TOKEN=tok-new-2\n");
    let ran = waiting.finish(Duration::from_secs(15));
    let took = start.elapsed();
    ran.code(3).stdout_has("stopped waiting: --timeout passed");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(arrived.load(SeqCst), 2, "the new value was not looked at");
    assert_eq!(t.status(None).state, "held");
}

#[test]
fn negative_or_zero_durations_are_clear_usage_errors() {
    let t = Test::new().runbook("w", &token_runbook("", ""));
    for args in [
        ["--timeout", "-1"],
        ["--timeout", "-5s"],
        ["--interval", "-1s"],
    ] {
        t.run(&["run", "w", "--wait", args[0], args[1]])
            .code(2)
            .stderr_has("is not a duration");
    }
    t.run(&["run", "w", "--wait", "--interval", "0"])
        .code(2)
        .stderr_has("must be longer than zero");
}

#[test]
fn the_waiting_line_names_each_secret_once_and_a_late_pass_times_out_at_once() {
    // `slow` outlasts --timeout: the pass is not cut short, and the wait
    // that would follow ends at once instead of announcing itself.
    let t = Test::new().runbook(
        "d",
        "secrets:\n  RB_A: { owner: Lukas }\n  RB_B: { owner: Lukas }\nsteps:\n  - id: one\n    requires: [RB_A, RB_B]\n    run: 'true'\n  - id: two\n    requires: [RB_A]\n    run: 'true'\n  - id: slow\n    run: sleep 2\n",
    );
    let ran = t.run(&["run", "d", "--wait", "--timeout", "1s"]);
    ran.code(3)
        .stdout_has("stopped waiting: --timeout passed")
        .stdout_lacks("waiting for");
    assert_eq!(t.status(None).state_of("slow"), "succeeded");
    let ran = t.run(&["resume", "--wait", "--timeout", "1s"]);
    ran.code(3)
        .stdout_has("waiting for RB_A (missing), RB_B (missing); looking");
}

#[test]
fn a_pass_started_by_the_wait_ends_the_command_with_its_own_exit_code() {
    // Fails: exit 1, one failed notification, nothing waits on a failure.
    let hook = Webhook::start();
    let t = Test::new().runbook(
        "f",
        &format!(
            "notify:\n  - url: \"{}\"\nsteps:\n  - id: ship\n    approval: Ship it?\n    run: exit 1\n",
            hook.url()
        ),
    );
    let waiting = Watched::start(&t, &["run", "f", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for approval of `ship`", Duration::from_secs(5));
    t.run(&["approve", "1", "ship"]).code(0);
    waiting.finish(Duration::from_secs(10)).code(1);
    let states: Vec<String> = hook
        .bodies()
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["held", "failed"]);
    // Ctrl-C while that pass runs a step: 130, the step interrupted, the
    // lock free for the next resume.
    let t = Test::new().runbook(
        "s",
        "steps:\n  - id: ship\n    approval: Ship it?\n    run: test -e ../again || { touch ../again; sleep 30; }\n",
    );
    let waiting = Watched::start(&t, &["run", "s", "--wait", "--interval", "1s"]);
    waiting.expect("waiting for approval of `ship`", Duration::from_secs(5));
    t.run(&["approve", "1", "ship"]).code(0);
    assert!(wait_for(Duration::from_secs(10), || t
        .status(None)
        .state_of("ship")
        == "running"));
    signal(&waiting.child, "INT");
    let start = Instant::now();
    waiting.finish(Duration::from_secs(10)).code(130);
    assert!(start.elapsed() < Duration::from_secs(5));
    let s = t.status(None);
    assert_eq!(s.state, "interrupted");
    assert_eq!(s.state_of("ship"), "interrupted");
    t.run(&["resume"]).code(0);
}
