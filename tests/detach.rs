//! Remote steps outlive the connection and the engine (issue 13, SPEC §8),
//! against a real sshd on 127.0.0.1.

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::sshd::Sshd;
use support::{finish, signal, wait_for, Test};

fn runbook(sshd: &Sshd, steps: &str) -> String {
    format!("hosts:\n{}steps:\n{steps}", sshd.host_yaml("box"))
}

/// The login user's home on the (loopback) host.
fn home() -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg("getent passwd \"$(id -un)\" | cut -d: -f6")
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The spool folder a step's row records (absolute), if any.
fn spool_of(t: &Test, step: &str) -> Option<PathBuf> {
    let conn = rusqlite::Connection::open(t.state_file()).ok()?;
    let base: String = conn
        .query_row("SELECT base FROM spools WHERE step_id = ?1", [step], |r| {
            r.get(0)
        })
        .ok()?;
    Some(home().join(base))
}

/// Live members of a process group.
fn group(pgid: i32) -> Vec<i32> {
    support::processes()
        .into_iter()
        .filter(|(_, f)| f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && f[0] != "Z")
        .map(|(pid, _)| pid)
        .collect()
}

/// The process group an attempt recorded in its spool.
fn recorded_pgid(spool: &Path, attempt: i64) -> Option<i32> {
    let text = std::fs::read_to_string(spool.join(attempt.to_string()).join("pgid")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn kill_group(pgid: i32) {
    // Started by the test's own runbook: end it by its group id.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status();
}

#[test]
fn a_step_outlives_a_kill_9_of_the_engine_and_resume_reattaches_to_it() {
    let sshd = Sshd::start();
    let t = Test::new();
    let effect = t.p("effect");
    let steps = format!(
        "  - id: build\n    on: box\n    run: |\n      echo first >> {effect}\n      echo line-before\n      echo err-before >&2\n      sleep 3\n      echo second >> {effect}\n      echo line-after\n  - id: after\n    on: box\n    needs: [build]\n    run: echo after-ran\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let child = t.spawn(&["run", "r"]);
    assert!(
        wait_for(Duration::from_secs(20), || t
            .read("effect")
            .contains("first")),
        "the step did not start"
    );
    std::thread::sleep(Duration::from_secs(1));
    signal(&child, "KILL");
    let _ = finish(child);
    let spool = spool_of(&t, "build").expect("the spool is recorded while the step runs");
    assert!(spool.join("1").is_dir(), "no spool folder at {spool:?}");
    let pgid = recorded_pgid(&spool, 1).expect("a recorded process group");
    assert!(!group(pgid).is_empty(), "the step died with the engine");
    let s = t.status(None);
    assert_eq!(s.state_of("build"), "interrupted");
    assert!(
        s.reason_of("build").contains("may still run on `box`"),
        "{}",
        s.reason_of("build")
    );
    // The dry run says what resume will do, and the run's state as status does.
    t.run(&["run", "r", "--dry-run"])
        .code(0)
        .stdout_has("(interrupted)")
        .stdout_has(&format!("{:<17} build", "would reattach"))
        .stdout_has(&format!("{:<17} after", "would run"));

    // Later still, so a duration counted from the reattach would be short.
    std::thread::sleep(Duration::from_millis(1500));
    let ran = t.run(&["resume"]);
    ran.code(0).stdout_has("[after] after-ran");
    assert_eq!(
        t.lines("effect"),
        vec!["first", "second"],
        "effect repeated or lost"
    );
    let s = t.status(None);
    let build = s.step("build");
    assert_eq!(build.state, "succeeded");
    assert_eq!(build.attempts, 1);
    assert!(
        s.reason_of("build").contains("reattached"),
        "{:?}",
        build.reason
    );
    // Its duration is the step's (it slept 3 s), not the reattach's.
    let took = build.duration_ms.unwrap_or_default();
    assert!(took >= 3000, "duration {took} ms");
    assert_eq!(
        build.attempt_history.len(),
        1,
        "{:?}",
        build.attempt_history
    );
    assert!(
        build.attempt_history[0].duration_ms >= 3000,
        "{:?}",
        build.attempt_history
    );
    let logs = t.run(&["logs", "1", "build"]);
    logs.code(0);
    let lines: Vec<&str> = logs.stdout.lines().collect();
    for want in ["line-before", "err-before", "line-after"] {
        assert_eq!(
            lines.iter().filter(|l| **l == want).count(),
            1,
            "{want} not exactly once in the logs:\n{}",
            logs.stdout
        );
    }
    // The result is committed: the spool record and folder are gone.
    assert!(spool_of(&t, "build").is_none());
    assert!(
        wait_for(Duration::from_secs(5), || !spool.exists()),
        "spool folder left at {spool:?}"
    );
}

#[test]
fn killing_the_connection_mid_step_neither_fails_nor_repeats_the_step() {
    let sshd = Sshd::start();
    let t = Test::new();
    let effect = t.p("effect");
    let steps = format!(
        "  - id: long\n    on: box\n    timeout: 60s\n    run: |\n      echo start >> {effect}\n      i=0; while [ $i -lt 25 ]; do echo tick-$i; i=$((i+1)); sleep 0.1; done\n      echo end >> {effect}\n  - id: next\n    on: box\n    needs: [long]\n    run: echo next >> {effect}\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let child = t.spawn(&["run", "r"]);
    assert!(wait_for(Duration::from_secs(20), || t
        .read("effect")
        .contains("start")));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sshd.drop_connections() > 0,
        "no per-connection sshd process found"
    );
    let started = Instant::now();
    let ran = finish(child);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(t.lines("effect"), vec!["start", "end", "next"]);
    assert!(sshd.logins() >= 2, "the engine never reconnected");
    // No line lost or shown twice across the reconnection.
    let logs = t.run(&["logs", "1", "long"]);
    let ticks: Vec<&str> = logs.stdout.lines().collect();
    let want: Vec<String> = (0..25).map(|i| format!("tick-{i}")).collect();
    assert_eq!(ticks, want, "{}", logs.stdout);
    assert_eq!(t.status(None).step("long").attempts, 1);
}

#[test]
fn twenty_five_kill_9s_over_remote_steps_repeat_no_step() {
    let sshd = Sshd::start();
    let t = Test::new();
    let journal = t.p("journal");
    let mut steps = String::new();
    // Each step has its effect first and then runs on for a while, so most
    // kills land while a remote step runs (before: it ran again).
    for i in 0..16 {
        let needs = if i > 0 {
            format!("\n    needs: [c{}]", i - 1)
        } else {
            String::new()
        };
        steps.push_str(&format!(
            "  - id: c{i}{needs}\n    on: box\n    run: echo c{i} >> {journal}; sleep 0.4\n"
        ));
    }
    for i in 0..6 {
        steps.push_str(&format!(
            "  - id: f{i}\n    on: box\n    needs: [c2]\n    run: echo f{i} >> {journal}; sleep 0.6\n"
        ));
    }
    t.put_runbook("r", &runbook(&sshd, &steps));
    let mut seed: u64 = 0x5eed_0013;
    let mut next = |below: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % below
    };
    let mut kills = 0;
    let mut first = true;
    while kills < 25 {
        let child = t.spawn(if first { &["run", "r"] } else { &["resume"] });
        first = false;
        std::thread::sleep(Duration::from_millis(200 + next(500)));
        if child
            .id()
            .try_into()
            .map(|p: i32| !support::alive(p))
            .unwrap_or(true)
        {
            let ran = finish(child);
            assert_eq!(ran.code, 0, "{ran:?}");
            break;
        }
        signal(&child, "KILL");
        let _ = finish(child);
        kills += 1;
    }
    t.run(&["resume"]).code(0);
    let mut counts = std::collections::BTreeMap::new();
    for line in t.lines("journal") {
        *counts.entry(line).or_insert(0) += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "after {kills} kills, repeated: {repeated:?}"
    );
    assert_eq!(counts.len(), 22, "{counts:?}");
    let s = t.status(None);
    assert_eq!(s.state, "succeeded");
    eprintln!("{kills} kills, no remote step repeated");
}

/// Starts `run r`, waits for the step's recorded process group, and
/// returns the engine, the spool folder and the group.
fn started(t: &Test, step: &str) -> (std::process::Child, PathBuf, i32) {
    let child = t.spawn(&["run", "r"]);
    let mut found = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            found = spool_of(t, step).and_then(|s| recorded_pgid(&s, 1).map(|g| (s, g)));
            found.is_some()
        }),
        "the step never recorded its process group"
    );
    let (spool, pgid) = found.unwrap();
    assert!(!group(pgid).is_empty());
    (child, spool, pgid)
}

#[test]
fn sigint_and_timeout_leave_no_process_of_the_step_on_the_host() {
    let sshd = Sshd::start();
    let t = Test::new();
    // A background child too: the whole group must go.
    let steps = "  - id: slow\n    on: box\n    timeout: 2s\n    run: sleep 60 & sleep 60\n";
    t.put_runbook("r", &runbook(&sshd, steps));
    let (child, spool, pgid) = started(&t, "slow");
    let ran = finish(child);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(t
        .status(None)
        .reason_of("slow")
        .contains("timed out after 2s on `box`"));
    let gone = wait_for(Duration::from_secs(10), || group(pgid).is_empty());
    let left = group(pgid);
    kill_group(pgid);
    assert!(gone, "timeout left {left:?} of group {pgid}");
    assert!(!spool.exists(), "spool left at {spool:?}");

    let t = Test::new();
    let steps = "  - id: slow\n    on: box\n    run: sleep 60 & sleep 60\n";
    t.put_runbook("r", &runbook(&sshd, steps));
    let (child, spool, pgid) = started(&t, "slow");
    signal(&child, "INT");
    let ran = finish(child);
    assert_eq!(ran.code, 130, "{ran:?}");
    assert_eq!(t.status(None).state_of("slow"), "interrupted");
    let gone = wait_for(Duration::from_secs(10), || group(pgid).is_empty());
    let left = group(pgid);
    kill_group(pgid);
    assert!(gone, "SIGINT left {left:?} of group {pgid}");
    assert!(!spool.exists(), "spool left at {spool:?}");
    assert!(spool_of(&t, "slow").is_none());
}

#[test]
fn a_spool_lost_while_the_engine_is_dead_makes_resume_run_the_step_again_and_say_why() {
    let sshd = Sshd::start();
    let t = Test::new();
    let effect = t.p("effect");
    let steps = format!("  - id: a\n    on: box\n    run: echo ran >> {effect}; sleep 1\n");
    t.put_runbook("r", &runbook(&sshd, &steps));
    let (child, spool, pgid) = started(&t, "a");
    signal(&child, "KILL");
    let _ = finish(child);
    // The step finishes on the host; then the host loses its spool.
    assert!(wait_for(Duration::from_secs(10), || group(pgid).is_empty()));
    std::fs::remove_dir_all(&spool).unwrap();
    t.run(&["resume"]).code(0);
    assert_eq!(t.lines("effect"), vec!["ran", "ran"]);
    let s = t.status(None);
    let reason = s.reason_of("a");
    assert!(
        reason.contains("started again") && reason.contains("spool on `box` was gone"),
        "{reason}"
    );
    assert_eq!(s.step("a").attempts, 2);
}

#[test]
fn reset_stops_a_step_an_engine_left_running_on_its_host() {
    let sshd = Sshd::start();
    let t = Test::new();
    t.put_runbook(
        "r",
        &runbook(&sshd, "  - id: long\n    on: box\n    run: sleep 600\n"),
    );
    let (child, spool, pgid) = started(&t, "long");
    signal(&child, "KILL");
    let _ = finish(child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !group(pgid).is_empty(),
        "the step did not outlive the engine"
    );
    let ran = t.run(&["reset", "1", "long"]);
    let left = group(pgid);
    kill_group(pgid);
    ran.code(0).stdout_has("stopped `long` on `box`");
    assert!(left.is_empty(), "reset left {left:?}");
    assert!(!spool.exists());
    assert!(spool_of(&t, "long").is_none());
}

#[test]
fn spool_folders_untouched_for_a_week_are_swept_and_recent_ones_kept() {
    let sshd = Sshd::start();
    let root = home().join(".runbook/spool");
    let key = format!("{}", std::process::id());
    let old = root.join(format!("0-sweep-old-{key}"));
    let young = root.join(format!("0-sweep-young-{key}"));
    for d in [&old, &young] {
        std::fs::create_dir_all(d.join("s/1")).unwrap();
        std::fs::write(d.join("s/1/status"), "0\n").unwrap();
    }
    let ok = Command::new("touch")
        .args(["-d", "8 days ago"])
        .arg(&old)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    // The bell of a host shell that is gone (no such pid).
    let bell = root.join(format!("bell.4999999.{key}"));
    std::fs::write(&bell, "").unwrap();
    let t = Test::new();
    t.put_runbook(
        "r",
        &runbook(&sshd, "  - id: a\n    on: box\n    run: 'true'\n"),
    );
    t.run(&["run", "r"]).code(0);
    let swept = wait_for(Duration::from_secs(10), || !old.exists() && !bell.exists());
    let kept = young.exists();
    let _ = std::fs::remove_dir_all(&young);
    let _ = std::fs::remove_dir_all(&old);
    let _ = std::fs::remove_file(&bell);
    assert!(swept, "{old:?} or {bell:?} was not swept");
    assert!(kept, "{young:?} was swept");
}

#[test]
fn a_reattached_attempt_that_fails_uses_the_retries_left() {
    let sshd = Sshd::start();
    let t = Test::new();
    let marker = t.p("tried");
    let steps = format!(
        "  - id: flaky\n    on: box\n    retries: 1\n    retry_delay: 0s\n    run: if [ -e {marker} ]; then echo second-try; else touch {marker}; sleep 2; exit 1; fi\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let child = t.spawn(&["run", "r"]);
    assert!(wait_for(Duration::from_secs(20), || Path::new(&marker).exists()));
    signal(&child, "KILL");
    let _ = finish(child);
    t.run(&["resume"]).code(0).stdout_has("[flaky] second-try");
    let s = t.status(None);
    assert_eq!(s.step("flaky").attempts, 2);
    assert!(
        s.reason_of("flaky")
            .contains("attempt 1 (reattached) failed: exited with code 1"),
        "{}",
        s.reason_of("flaky")
    );
}

#[test]
fn a_script_larger_than_one_environment_string_runs_on_its_host() {
    // Linux caps one environment string at 128 KiB: a long script (a
    // config file written by a heredoc) must not travel in the environment.
    let sshd = Sshd::start();
    let t = Test::new();
    let effect = t.p("effect");
    let mut body = String::new();
    for i in 0..4000 {
        body.push_str(&format!(
            "      # filler line {i} that makes the script long enough to pass 128 KiB\n"
        ));
    }
    let steps = format!(
        "  - id: big\n    on: box\n    timeout: 60s\n    run: |\n{body}      echo ran >> {effect}\n      echo big-done\n"
    );
    assert!(steps.len() > 200 * 1024);
    t.put_runbook("r", &runbook(&sshd, &steps));
    let ran = t.run(&["run", "r"]);
    ran.code(0);
    assert_eq!(t.lines("effect"), vec!["ran"]);
}

/// Scripts under and over 1 KiB (read by the wrapper with `read`, and with
/// `cat`) reach the host byte for byte: leading blanks, backslashes, `$`,
/// quotes, a blank line, and a last line without a newline.
#[test]
fn small_and_large_scripts_reach_the_host_exactly() {
    let sshd = Sshd::start();
    let t = Test::new();
    let out = t.p("out");
    let tricky =
        "printf '%s\\n' '  lead' 'back\\slash' '$HOME' \"dq\" >> OUT\n\nprintf '%s\\n' last >> OUT";
    let small = tricky.replace("OUT", &out);
    let large = format!("{}\n{small}", "# filler to pass one KiB\n".repeat(60));
    assert!(small.len() < 1024 && large.len() > 1024);
    let yaml = |s: &str| serde_json::to_string(s).unwrap();
    let steps = format!(
        "  - id: small\n    on: box\n    run: {}\n  - id: large\n    on: box\n    needs: [small]\n    run: {}\n",
        yaml(&small),
        yaml(&large)
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    t.run(&["run", "r"]).code(0);
    let once = ["  lead", "back\\slash", "$HOME", "dq", "last"];
    let want: Vec<&str> = once.iter().chain(once.iter()).copied().collect();
    assert_eq!(t.lines("out"), want);
}

#[test]
fn the_sweep_never_follows_a_link_out_of_the_spool() {
    let sshd = Sshd::start();
    let root = home().join(".runbook/spool");
    std::fs::create_dir_all(&root).unwrap();
    let t = Test::new();
    // A folder outside the spool, a week old, with a link to it in the spool.
    let outside = PathBuf::from(t.p("outside"));
    std::fs::create_dir_all(outside.join("keep")).unwrap();
    std::fs::write(outside.join("keep/data"), "precious\n").unwrap();
    for p in [outside.join("keep"), outside.clone()] {
        let ok = Command::new("touch")
            .args(["-d", "8 days ago"])
            .arg(&p)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let link = root.join(format!("0-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let marker = root.join(format!("0-sweep-marker-{}", std::process::id()));
    std::fs::create_dir_all(&marker).unwrap();
    let ok = Command::new("touch")
        .args(["-d", "8 days ago"])
        .arg(&marker)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    t.put_runbook(
        "r",
        &runbook(&sshd, "  - id: a\n    on: box\n    run: 'true'\n"),
    );
    t.run(&["run", "r"]).code(0);
    // The sweep ran (it removed the old folder beside the link).
    let swept = wait_for(Duration::from_secs(10), || !marker.exists());
    let kept = outside.join("keep/data").exists();
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_dir_all(&marker);
    assert!(swept, "{marker:?} was not swept");
    assert!(
        kept,
        "the sweep removed {outside:?}'s contents through a link"
    );
}

#[test]
fn a_step_that_finished_on_its_host_is_collected_on_resume_even_past_its_timeout() {
    // The laptop slept longer than the step's timeout, but the step ended
    // on its host within it: resume collects its result, it does not call
    // it timed out.
    let sshd = Sshd::start();
    let t = Test::new();
    let effect = t.p("effect");
    let steps = format!(
        "  - id: a\n    on: box\n    timeout: 3s\n    run: echo ran >> {effect}; sleep 1; echo finished-fine\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let (child, spool, pgid) = started(&t, "a");
    signal(&child, "KILL");
    let _ = finish(child);
    assert!(wait_for(Duration::from_secs(10), || group(pgid).is_empty()));
    assert!(spool.join("1/status").exists());
    std::thread::sleep(Duration::from_secs(3));
    let out = t.run(&["resume"]);
    out.code(0);
    assert_eq!(t.lines("effect"), vec!["ran"]);
    let logs = t.run(&["logs", "1", "a"]);
    logs.code(0);
    assert!(logs.stdout.contains("finished-fine"), "{}", logs.stdout);
}

#[test]
fn a_step_killed_on_its_host_while_the_engine_was_dead_is_failed_not_run_again() {
    // The operator stopped the step on the host by hand (or the OOM killer
    // did); the host did not reboot: resume must not start it again.
    let sshd = Sshd::start();
    let t = Test::new();
    let effect = t.p("effect");
    let steps = format!("  - id: a\n    on: box\n    run: echo ran >> {effect}; sleep 30\n");
    t.put_runbook("r", &runbook(&sshd, &steps));
    let (child, _spool, pgid) = started(&t, "a");
    // The group is recorded before the script's first line has run: wait
    // for its effect, so the kill below comes after it (a loaded machine
    // killed it first).
    assert!(wait_for(Duration::from_secs(20), || t
        .read("effect")
        .contains("ran")));
    signal(&child, "KILL");
    let _ = finish(child);
    kill_group(pgid);
    assert!(wait_for(Duration::from_secs(10), || group(pgid).is_empty()));
    let out = t.run(&["resume"]);
    // Whatever happened, end what a wrong rerun started.
    if let Some(g) = spool_of(&t, "a").and_then(|s| recorded_pgid(&s, 2)) {
        kill_group(g);
    }
    assert_eq!(t.lines("effect"), vec!["ran"], "{}", out.stdout);
    out.code(1);
    let s = t.status(None);
    assert_eq!(s.step("a").attempts, 1);
    assert!(s.reason_of("a").contains("killed"), "{}", s.reason_of("a"));
}

#[test]
fn env_values_that_together_pass_128_kib_reach_the_step() {
    // Each value fits the kernel's limit for one environment string; all
    // of them together do not (certificate bundles, a kubeconfig).
    let sshd = Sshd::start();
    let t = Test::new();
    let v = "x".repeat(60_000);
    let steps = format!(
        "  - id: a\n    on: box\n    timeout: 60s\n    env:\n      A: {v}\n      B: {v}\n      C: {v}\n    run: echo lengths $(printf %s \"$A$B$C\" | wc -c)\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let out = t.run(&["run", "r"]);
    out.code(0);
    let logs = t.run(&["logs", "1", "a"]);
    assert!(logs.stdout.contains("lengths 180000"), "{}", logs.stdout);
}

/// Runs a remote step on a host whose spool cannot be made or written:
/// it fails at once, naming the host, the folder, the error and what to
/// do, and nothing runs.
fn spool_failure(sshd: &Sshd, what: &str, error: &str) {
    let t = Test::new();
    let effect = t.p("effect");
    let steps =
        format!("  - id: build\n    on: box\n    timeout: 60s\n    run: echo ran >> {effect}\n");
    t.put_runbook("r", &runbook(sshd, &steps));
    let started = Instant::now();
    let ran = t.run(&["run", "r"]);
    let took = started.elapsed();
    ran.code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("build"), "failed");
    let reason = s.reason_of("build");
    for want in [
        what,
        "~/.runbook/spool/1-",
        "on `box`",
        error,
        "free space on the host or make",
    ] {
        assert!(reason.contains(want), "{want:?} not in {reason:?}");
    }
    assert!(!reason.contains("reboot"), "{reason}");
    assert_eq!(t.read("effect"), "", "the step ran");
    // It used to fail only after ~10 s of waiting for a start that never came.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_spool_folder_that_cannot_be_made_fails_the_step_at_once_saying_why() {
    // `~/.runbook` is a file: no folder can be made under it, root or not.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".runbook"), "in the way\n").unwrap();
    let sshd = Sshd::start_in(home.path(), ":");
    spool_failure(&sshd, "cannot make the spool folder", "Not a directory");
}

#[test]
fn a_full_disk_under_the_spool_fails_the_step_at_once_saying_why() {
    // A tiny tmpfs over the spool, filled up, seen only by the server's
    // mount namespace (it goes away with the server).
    let home = tempfile::tempdir().unwrap();
    let spool = home.path().join(".runbook/spool");
    std::fs::create_dir_all(&spool).unwrap();
    let s = spool.display();
    let setup = format!(
        "mount -t tmpfs -o size=64k tmpfs '{s}'\ndd if=/dev/zero of='{s}/fill' bs=4k 2>/dev/null || true"
    );
    let sshd = Sshd::start_in(home.path(), &setup);
    spool_failure(
        &sshd,
        "cannot write in the spool folder",
        "No space left on device",
    );
    assert!(
        std::fs::read_dir(&spool).unwrap().next().is_none(),
        "the tmpfs was seen outside the server's namespace"
    );
}

#[test]
fn a_spool_out_of_inodes_fails_the_step_at_once_saying_why() {
    // Room for the host shell's bell and its ticker file and no more (the
    // bell or the step's folder cannot be made), then room for those and
    // the step's folders but not its files (its start finds out). Before:
    // ~10 s of waiting for a start that never came, then "the host
    // rebooted".
    for free in [2, 5] {
        let home = tempfile::tempdir().unwrap();
        let spool = home.path().join(".runbook/spool");
        std::fs::create_dir_all(&spool).unwrap();
        let s = spool.display();
        let mut setup = format!(
            "mount -t tmpfs -o size=1m,nr_inodes=40 tmpfs '{s}'\n\
             i=0; while touch \"{s}/fill$i\" 2>/dev/null; do i=$((i+1)); done\n"
        );
        for n in 0..free {
            setup.push_str(&format!("rm -f '{s}/fill{n}'\n"));
        }
        let sshd = Sshd::start_in(home.path(), &setup);
        spool_failure(&sshd, "the spool folder", "No space left on device");
    }
}

/// The run folder under the host's spool whose step `a` spooled `token`.
fn run_folder_with(token: &str) -> Option<PathBuf> {
    let root = home().join(".runbook/spool");
    std::fs::read_dir(root).ok()?.flatten().find_map(|e| {
        let out = std::fs::read_to_string(e.path().join("a/1/out")).unwrap_or_default();
        out.contains(token).then(|| e.path())
    })
}

/// Issue 26 point 6: an engine killed after a remote step's result was
/// committed (its folder not yet removed), then a run to the end: nothing
/// of the first engine is left on the host, neither the step's output nor
/// the folders it prepared for a step it never started, and no record of
/// a folder to remove is left in the state.
#[test]
fn a_kill_9_after_a_commit_then_a_run_to_the_end_leaves_no_spool_of_the_first_run() {
    let sshd = Sshd::start();
    let t = Test::new();
    let token = format!("secret-{}-{}", std::process::id(), t.p("x").len());
    let marker = t.p("marker");
    let steps = format!(
        "  - id: a\n    on: box\n    run: echo {token}\n  - id: b\n    needs: [a]\n    run: if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 30\n  - id: c\n    on: box\n    needs: [b]\n    run: echo c-ran\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let child = t.spawn(&["run", "r"]);
    let started = wait_for(Duration::from_secs(60), || Path::new(&marker).exists());
    if !started {
        signal(&child, "KILL");
        let ran = finish(child);
        panic!("the local step did not start: {ran:?}");
    }
    signal(&child, "KILL");
    let _ = finish(child);
    assert_eq!(t.status(None).state_of("a"), "succeeded");
    // What the kill left: the committed output (and c's prepared folder,
    // unless another test's engine, connecting meanwhile, removed it as
    // empty: tests share the home).
    let first = run_folder_with(&token).expect("a's output on the host after the kill");

    t.run(&["resume"]).code(0).stdout_has("[c] c-ran");
    assert!(
        !first.exists(),
        "the first run's spool is still at {first:?}"
    );
    assert!(run_folder_with(&token).is_none());
    let conn = rusqlite::Connection::open(t.state_file()).unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM spool_discards", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "records of removed folders left in the state");
}

#[test]
fn a_remote_step_sees_the_locale_of_the_host_shell_not_the_wrappers() {
    // The wrapper and the follower's helpers run with `LC_ALL=C` (no
    // locale files loaded per step); the step itself gets the shell's
    // `LC_ALL` back, here none.
    let sshd = Sshd::start();
    let t = Test::new();
    let steps = "  - id: a\n    on: box\n    timeout: 60s\n    run: echo \"lc=${LC_ALL-unset} lang=${LANG-unset}\"\n";
    t.put_runbook("r", &runbook(&sshd, steps));
    t.run(&["run", "r"]).code(0);
    let logs = t.run(&["logs", "1", "a"]);
    assert!(logs.stdout.contains("lc=unset "), "{}", logs.stdout);
}
