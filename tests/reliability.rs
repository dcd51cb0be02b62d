//! Keeping its word under the worst conditions (issue 7): hostile input,
//! lock races, kill -9 torture, degraded disks.

mod support;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::sshd::Sshd;
use support::{finish, signal, Test};

/// Waits for a child with a deadline; a hang fails the test.
fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> support::Ran {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return finish(child);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the command hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hostile_corpus_exits_2_with_a_line_and_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus has {} files", files.len());
    let t = Test::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or("")
            .trim()
            .to_string();
        let child = t
            .command(&["run", &file.display().to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let ran = wait_with_deadline(child, Duration::from_secs(20));
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(ran.code, 2, "{name}: {}", ran.stderr);
        assert!(
            !ran.stderr.contains("panicked"),
            "{name} panicked: {}",
            ran.stderr
        );
        let place = format!("{name}:");
        let located = ran.stderr.lines().any(|l| {
            l.find(&place).is_some_and(|i| {
                let rest = &l[i + place.len()..];
                let mut parts = rest.split(':');
                parts.next().is_some_and(|p| p.parse::<usize>().is_ok())
                    && parts.next().is_some_and(|p| p.parse::<usize>().is_ok())
            })
        });
        assert!(located, "{name}: no file:line:col in\n{}", ran.stderr);
        assert!(
            ran.stderr.contains(&expect),
            "{name}: expected {expect:?} in\n{}",
            ran.stderr
        );
    }
    assert!(!t.state_file().exists(), "invalid input wrote state");
}

#[test]
fn ten_megabyte_runbook_is_rejected_without_hanging() {
    let t = Test::new();
    let mut yaml = String::from("steps:\n");
    let mut i = 0;
    while yaml.len() < 10 * 1024 * 1024 {
        yaml.push_str(&format!(
            "  - id: s{i}\n    run: echo {}\n",
            "x".repeat(200)
        ));
        i += 1;
    }
    yaml.push_str("  - id: last\n    needs: [missing-step]\n    run: 'true'\n");
    t.put_runbook("huge", &yaml);
    let child = t.spawn(&["validate", "huge"]);
    let ran = wait_with_deadline(child, Duration::from_secs(120));
    ran.code(2)
        .stderr_has("needs `missing-step`")
        .stderr_has("huge.yaml:");
}

#[test]
fn vars_and_env_values_never_execute_or_render_again() {
    let t = Test::new();
    let marker = t.p("pwned");
    let yaml = format!(
        "vars:\n  evil: \"a'b \\\"c\\\" $(touch {marker}) `touch {marker}` {{{{ run.id }}}}\\nline2; touch {marker}\"\nsteps:\n  - id: a\n    env: {{ E: \"{{{{ vars.evil }}}}\" }}\n    run: |\n      printf '%s\\n' {{{{ vars.evil | quote }}}}\n      printf 'env=%s\\n' \"$E\"\n"
    );
    t.put_runbook("inj", &yaml);
    let ran = t.run(&["run", "inj"]);
    ran.code(0)
        .stdout_has("{{ run.id }}")
        .stdout_has("`touch")
        .stdout_has("env=a'b");
    assert!(!Path::new(&marker).exists(), "a value was executed");
}

#[test]
fn fifty_lock_races_one_winner_each_and_a_dead_lock_is_taken_over() {
    let t = Test::new().runbook("race", "steps:\n  - id: a\n    run: sleep 0.3\n");
    let mut refused = 0;
    for round in 0..50 {
        let first = t.spawn(&["run", "race"]);
        let second = t.spawn(&["run", "race"]);
        let (a, b) = (finish(first), finish(second));
        let mut codes = [a.code, b.code];
        codes.sort();
        assert_eq!(codes, [0, 4], "round {round}: {a:?} {b:?}");
        let loser = if a.code == 4 { &a } else { &b };
        assert!(
            loser.stderr.contains("is locked by pid"),
            "{}",
            loser.stderr
        );
        refused += 1;
    }
    assert_eq!(refused, 50);
    // A lock left by a killed engine is taken over.
    let child = t.spawn(&["run", "race", "--fresh"]);
    std::thread::sleep(Duration::from_millis(150));
    signal(&child, "KILL");
    let _ = finish(child);
    t.run(&["resume"]).code(0);
}

/// SQLite's own check of the state file; on PostgreSQL (the torture runs
/// there too, `RUNBOOK_TEST_STATE=postgres`) the server keeps its tables
/// whole, and a state the engine cannot read fails the status check.
fn integrity_of(t: &Test) -> String {
    if t.on_postgres() {
        return "ok".into();
    }
    integrity(&t.state_file())
}

fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// A tiny deterministic generator, so a failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kill_9_torture_never_loses_a_step() {
    let sshd = Sshd::start();
    let t = Test::new();
    let journal = t.p("journal");
    let mut yaml = format!("hosts:\n{}steps:\n", sshd.host_yaml("box"));
    for i in 0..100 {
        let needs = if i > 0 {
            format!("\n    needs: [c{}]", i - 1)
        } else {
            String::new()
        };
        let on = if i % 5 == 0 { "\n    on: box" } else { "" };
        yaml.push_str(&format!(
            "  - id: c{i}{needs}{on}\n    run: sleep 0.05; echo c{i} >> {journal}\n"
        ));
    }
    yaml.push_str(&format!("  - id: root\n    run: echo root >> {journal}\n"));
    for i in 0..99 {
        let on = if i % 7 == 0 { "\n    on: box" } else { "" };
        yaml.push_str(&format!(
            "  - id: f{i}\n    needs: [root]{on}\n    run: sleep 0.01; echo f{i} >> {journal}\n"
        ));
    }
    t.put_runbook("torture", &yaml);
    let ids: Vec<String> = (0..100)
        .map(|i| format!("c{i}"))
        .chain(std::iter::once("root".into()))
        .chain((0..99).map(|i| format!("f{i}")))
        .collect();
    assert_eq!(ids.len(), 200);

    // On PostgreSQL a command first spends a while logging in (SCRAM, a
    // debug build): the kills' moments are counted from after that, so
    // they fall in the run's work as on SQLite.
    let login = if t.on_postgres() {
        let began = Instant::now();
        t.run(&["list"]).code(0);
        began.elapsed()
    } else {
        Duration::ZERO
    };
    let mut rng = Lcg(0x5eed_2026);
    let mut interrupted: BTreeSet<String> = BTreeSet::new();
    let mut kills = 0;
    let mut first = true;
    while kills < 25 {
        let args: Vec<&str> = if first {
            vec!["run", "torture"]
        } else {
            vec!["resume"]
        };
        first = false;
        let child = t.spawn(&args);
        std::thread::sleep(login * 2 + Duration::from_millis(200 + rng.next(500)));
        if !support::alive(child.id() as i32) || child_exited(&child) {
            let ran = finish(child);
            assert!(ran.code == 0, "{ran:?}");
            break;
        }
        signal(&child, "KILL");
        let _ = finish(child);
        kills += 1;
        assert_eq!(integrity_of(&t), "ok", "after kill {kills}");
        if t.on_postgres() && t.run(&["status"]).code == 2 {
            // Killed before its first write (connecting, creating the
            // schema): there is no run yet, and nothing ran.
            assert!(t.lines("journal").is_empty());
            first = true;
            continue;
        }
        let status = t.status(None);
        let lines: BTreeSet<String> = t.lines("journal").into_iter().collect();
        for step in &status.steps {
            if step.state == "succeeded" {
                assert!(
                    lines.contains(&step.id),
                    "kill {kills}: {} shows succeeded but its line is missing",
                    step.id
                );
            }
            if step.state == "interrupted" {
                interrupted.insert(step.id.clone());
            }
            // A step that ran had each of its needs committed as
            // succeeded before it started (the scheduler's group commit).
            if lines.contains(&step.id) {
                for need in &step.needs {
                    assert_eq!(
                        status.state_of(need),
                        "succeeded",
                        "kill {kills}: {} ran but its need {need} is not committed",
                        step.id
                    );
                }
            }
        }
    }
    // Resume until done.
    let mut tries = 0;
    loop {
        let ran = t.run(&["resume"]);
        if ran.code == 0 {
            break;
        }
        tries += 1;
        assert!(tries < 5, "resume keeps failing: {ran:?}");
    }
    std::thread::sleep(Duration::from_millis(300)); // orphans of killed engines finish their echo
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in t.lines("journal") {
        *counts.entry(line).or_default() += 1;
    }
    for id in &ids {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "{id} never ran");
        if n > 1 {
            assert!(
                interrupted.contains(id),
                "{id} ran {n} times but was never interrupted"
            );
        }
    }
    assert_eq!(t.status(None).state, "succeeded");
    assert_eq!(integrity_of(&t), "ok");
    eprintln!(
        "torture (login {login:?}): {kills} kills, {} steps interrupted at a kill, {} repeated (all of them interrupted ones), {} journal lines for {} steps",
        interrupted.len(),
        counts.values().filter(|&&n| n > 1).count(),
        counts.values().sum::<usize>(),
        ids.len()
    );
}

fn child_exited(child: &std::process::Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

#[test]
fn read_only_state_location_fails_before_any_step() {
    let t = Test::new();
    let marker = t.p("ran");
    t.put_runbook(
        "ro",
        &format!("steps:\n  - id: a\n    run: touch {marker}\n"),
    );
    let ran = t.run(&["--state", "/proc/runbook-readonly/runbook.db", "run", "ro"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("/proc/runbook-readonly"),
        "{}",
        ran.stderr
    );
    assert!(
        !Path::new(&marker).exists(),
        "a step ran without a state file"
    );
}

fn is_root() -> bool {
    String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0"
}

#[test]
fn full_disk_stops_the_run_cleanly_and_resume_recovers() {
    if !is_root() {
        eprintln!("full_disk test needs root to mount a small tmpfs; CI runs it");
        return;
    }
    let t = Test::new();
    let state_dir = t.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=400k", "tmpfs"])
        .arg(&state_dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot mount a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(state_dir.clone());
    // Lots of output per step makes the database grow until the disk is full.
    let mut yaml = String::from("steps:\n");
    for i in 0..40 {
        yaml.push_str(&format!("  - id: s{i}\n    run: for j in $(seq 300); do echo line $j of step {i} padded {}; done\n", "y".repeat(60)));
    }
    t.put_runbook("full", &yaml);
    let ran = t.run(&["run", "full"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stderr.contains("full"), "{}", ran.stderr);
    assert_eq!(integrity(&t.state_file()), "ok");
    // Make room (a bigger disk), resume, and everything completes.
    let ok = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&state_dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    t.run(&["resume"]).code(0);
    assert_eq!(t.status(None).state, "succeeded");
    assert_eq!(integrity(&t.state_file()), "ok");
}

#[test]
fn output_printed_before_a_kill_9_is_in_the_logs() {
    // A step prints a numbered line every 100 ms and journals when it did;
    // the engine is killed without warning after 2 s.
    let t = Test::new().runbook(
        "r",
        "steps:\n  - id: ticker\n    run: |\n      echo $$ > ticker.pid\n      i=0\n      while [ $i -lt 200 ]; do\n        echo \"tick $i\"\n        echo \"$i $(date +%s%N)\" >> ticker.journal\n        i=$((i+1))\n        sleep 0.1\n      done\n",
    );
    let child = t.spawn(&["run", "r"]);
    assert!(support::wait_for(Duration::from_secs(20), || t
        .path()
        .join("runbooks/ticker.journal")
        .exists()));
    std::thread::sleep(Duration::from_secs(2));
    signal(&child, "KILL");
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let _ = finish(child);
    // The step lives on in its own process group: end it by its pid.
    let pgid = t.read("runbooks/ticker.pid").trim().to_string();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();

    let logs = t.run(&["logs", "1", "ticker"]);
    logs.code(0);
    let printed_early: Vec<String> = t
        .lines("runbooks/ticker.journal")
        .iter()
        .filter_map(|l| {
            let (i, at) = l.split_once(' ')?;
            let at: u128 = at.parse().ok()?;
            (at + 1_000_000_000 <= killed_at).then(|| format!("tick {i}"))
        })
        .collect();
    assert!(printed_early.len() >= 8, "{printed_early:?}");
    for line in &printed_early {
        assert!(
            logs.stdout.lines().any(|l| l.ends_with(line.as_str())),
            "`{line}` was printed over 1 s before the kill but is not in the logs:\n{}",
            logs.stdout
        );
    }
}
