//! Remote steps against a real sshd on 127.0.0.1 (issue 3).

mod support;
use std::time::Duration;
use support::http::HttpServer;
use support::sshd::Sshd;
use support::{finish, wait_for, Test};

fn runbook(sshd: &Sshd, steps: &str) -> String {
    format!("hosts:\n{}steps:\n{steps}", sshd.host_yaml("box"))
}

#[test]
fn remote_run_with_env_and_hostile_values() {
    let sshd = Sshd::start();
    let t = Test::new();
    let marker = t.p("pwned");
    let steps = format!(
        "  - id: hello\n    on: box\n    env:\n      PLAIN: plain\n      QUOTES: \"it's \\\"quoted\\\"\"\n      SUBST: \"$(touch {marker}) `touch {marker}`\"\n      NEWLINE: \"line1\\nline2; touch {marker}\"\n    run: |\n      echo \"plain=$PLAIN\"\n      printf 'quotes=%s\\n' \"$QUOTES\"\n      printf 'subst=%s\\n' \"$SUBST\"\n      printf 'newline=%s\\n' \"$NEWLINE\"\n      echo \"host=$(hostname) pid=$$\"\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let ran = t.run(&["run", "r"]);
    ran.code(0)
        .stdout_has("[hello] plain=plain")
        .stdout_has("[hello] quotes=it's \"quoted\"")
        .stdout_has(&format!("[hello] subst=$(touch {marker}) `touch {marker}`"))
        .stdout_has("[hello] newline=line1")
        .stdout_has(&format!("[hello] line2; touch {marker}"));
    assert!(
        !std::path::Path::new(&marker).exists(),
        "a value was executed"
    );
    assert_eq!(t.status(None).step("hello").on, "box");
}

#[test]
fn remote_exit_codes_propagate_and_unless_runs_on_the_host() {
    let sshd = Sshd::start();
    let t = Test::new();
    let remote_file = sshd.dir.path().join("exists");
    std::fs::write(&remote_file, "").unwrap();
    let steps = format!(
        "  - id: fails\n    on: box\n    run: echo about to fail; exit 42\n  - id: satisfied\n    on: box\n    unless: test -e {f}\n    run: exit 1\n",
        f = remote_file.display()
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    t.run(&["run", "r"])
        .code(1)
        .stdout_has("[fails] about to fail");
    let s = t.status(None);
    assert_eq!(s.step("fails").exit_code, Some(42));
    assert!(s
        .step("fails")
        .reason
        .as_deref()
        .unwrap()
        .contains("exited with code 42 on `box`"));
    assert_eq!(s.state_of("satisfied"), "succeeded");
}

#[test]
fn remote_timeout_kills_the_remote_process_group() {
    let sshd = Sshd::start();
    let t = Test::new();
    let pidfile = t.p("remote.pid");
    let steps = format!("  - id: slow\n    on: box\n    timeout: 1s\n    run: sleep 60 & echo $! > {pidfile}; sleep 60\n");
    t.put_runbook("r", &runbook(&sshd, &steps));
    t.run(&["run", "r"])
        .code(1)
        .stdout_has("timed out after 1s on `box`");
    let pid: i32 = t.read("remote.pid").trim().parse().expect("pid");
    assert!(
        wait_for(Duration::from_secs(10), || !support::alive(pid)),
        "remote child {pid} survived"
    );
}

#[test]
fn many_steps_on_one_host_share_one_master_connection() {
    let sshd = Sshd::start();
    let t = Test::new();
    let mut steps = String::new();
    for i in 0..12 {
        let needs = if i % 3 == 0 || i == 0 {
            String::new()
        } else {
            format!("\n    needs: [s{}]", i - 1)
        };
        steps.push_str(&format!(
            "  - id: s{i}{needs}\n    on: box\n    run: echo step {i}\n"
        ));
    }
    t.put_runbook("r", &runbook(&sshd, &steps));
    t.run(&["run", "r"]).code(0).stdout_has("[s11] step 11");
    assert_eq!(sshd.logins(), 1, "sshd log:\n{}", sshd.log());
}

#[test]
fn strict_host_key_checking_refuses_an_unknown_host() {
    let sshd = Sshd::start();
    std::fs::write(sshd.known_hosts(), "").unwrap();
    let t = Test::new();
    let marker = t.p("ran");
    t.put_runbook(
        "r",
        &runbook(
            &sshd,
            &format!(
                "  - id: a\n    on: box\n    run: touch {marker}\n  - id: local\n    run: 'true'\n"
            ),
        ),
    );
    t.run(&["run", "r"]).code(1);
    let s = t.status(None);
    let reason = s.step("a").reason.clone().unwrap();
    assert!(reason.contains("host key of `box`"), "{reason}");
    assert!(
        reason.contains(&sshd.known_hosts().display().to_string())
            && reason.contains("ssh-keyscan"),
        "{reason}"
    );
    assert!(!std::path::Path::new(&marker).exists());
    assert_eq!(s.state_of("local"), "succeeded");
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    // known_hosts has `other`'s key under `sshd`'s address: the key changed.
    let theirs = std::fs::read_to_string(other.known_hosts()).unwrap();
    std::fs::write(
        sshd.known_hosts(),
        theirs.replace(&other.port.to_string(), &sshd.port.to_string()),
    )
    .unwrap();
    let t = Test::new();
    let yaml = runbook(&sshd, "  - id: a\n    on: box\n    run: 'true'\n")
        .replace("    port:", "    known_hosts: accept-new\n    port:");
    t.put_runbook("r", &yaml);
    t.run(&["run", "r"]).code(1);
    let reason = t.status(None).step("a").reason.clone().unwrap();
    assert!(
        reason.contains("CHANGED") && reason.contains("ssh-keygen -R"),
        "{reason}"
    );
}

#[test]
fn unreachable_host_names_the_host_and_the_ssh_error() {
    let t = Test::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    t.put_runbook("r", &format!("hosts:\n  gone: {{ address: 127.0.0.1, port: {port} }}\nsteps:\n  - id: a\n    on: gone\n    run: 'true'\n"));
    let ran = t.run(&["run", "r"]);
    ran.code(1);
    let reason = t.status(None).step("a").reason.clone().unwrap();
    assert!(
        reason.contains("cannot reach `gone`") && reason.contains("refused"),
        "{reason}"
    );
    assert!(!ran.stderr.contains("panicked"));
}

#[test]
fn upload_file_folder_template_mode_and_unchanged_skip() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start();
    let t = Test::new();
    t.write("runbooks/files/app.conf", "port=1\n");
    t.write("runbooks/files/site/index.html", "<h1>hi</h1>\n");
    t.write("runbooks/files/site/css/a.css", "body{}\n");
    t.write(
        "runbooks/files/compose.yml.j2",
        "name: {{ vars.project }}\nrun: {{ run.id }}\n",
    );
    let dest = sshd.dir.path().join("deploy");
    let steps = format!(
        "  - id: file\n    on: box\n    upload: {{ src: files/app.conf, dest: {d}/conf/app.conf, mode: \"0600\" }}\n  - id: folder\n    on: box\n    upload: {{ src: files/site, dest: {d}/www }}\n  - id: tmpl\n    on: box\n    upload: {{ src: files/compose.yml.j2, dest: {d}/compose.yml, template: true, mode: \"0644\" }}\n",
        d = dest.display()
    );
    let yaml = format!("vars: {{ project: stack }}\n{}", runbook(&sshd, &steps));
    t.put_runbook("r", &yaml);
    t.run(&["run", "r"]).code(0).stdout_has("wrote");
    assert_eq!(
        std::fs::read_to_string(dest.join("conf/app.conf")).unwrap(),
        "port=1\n"
    );
    assert_eq!(
        std::fs::metadata(dest.join("conf/app.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("www/css/a.css")).unwrap(),
        "body{}\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("compose.yml")).unwrap(),
        "name: stack\nrun: 1\n"
    );
    let mtime = |p: &str| std::fs::metadata(dest.join(p)).unwrap().modified().unwrap();
    let before = (mtime("conf/app.conf"), mtime("www/index.html"));
    std::thread::sleep(Duration::from_millis(1100));
    // A fresh run uploads again: the content is the same, so nothing is rewritten.
    t.run(&["run", "r", "--fresh"])
        .code(0)
        .stdout_has("unchanged");
    assert_eq!(before, (mtime("conf/app.conf"), mtime("www/index.html")));
    let s = t.status(None);
    assert!(
        s.step("folder")
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("unchanged"),
        "{:?}",
        s.step("folder").reason
    );
    // A changed source reruns the step on resume-less runs too, and replaces the file.
    t.write("runbooks/files/site/index.html", "<h1>new</h1>\n");
    t.run(&["run", "r", "--fresh"])
        .code(0)
        .stdout_has("1 of 2 files written");
    assert_eq!(
        std::fs::read_to_string(dest.join("www/index.html")).unwrap(),
        "<h1>new</h1>\n"
    );
    let leftovers: Vec<_> = walk(&dest)
        .into_iter()
        .filter(|p| p.contains("runbook-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn upload_replaces_atomically() {
    // A reader polling the destination during many replacements never sees a partial file.
    let sshd = Sshd::start();
    let t = Test::new();
    let dest = sshd.dir.path().join("big.txt");
    let a = "a".repeat(2_000_000);
    let b = "b".repeat(2_000_000);
    std::fs::write(&dest, &a).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (dest, stop) = (dest.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut bad = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(s) = std::fs::read_to_string(&dest) {
                    if s.len() != 2_000_000 {
                        bad += 1;
                    }
                }
            }
            bad
        })
    };
    for (i, content) in [&b, &a, &b].iter().enumerate() {
        t.write("runbooks/big.txt", content);
        t.put_runbook(
            "r",
            &runbook(
                &sshd,
                &format!(
                    "  - id: up{i}\n    on: box\n    upload: {{ src: big.txt, dest: {} }}\n",
                    dest.display()
                ),
            ),
        );
        t.run(&["run", "r", "--fresh"]).code(0);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reader.join().unwrap(), 0, "a reader saw a partial file");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), b);
}

#[test]
fn http_via_tunnel_reaches_the_hosts_loopback() {
    let sshd = Sshd::start();
    let server = HttpServer::start(|r| match r.path.as_str() {
        "/health" => (200, r#"{"ok":true,"user":"lukas"}"#.into()),
        _ => (500, "boom".into()),
    });
    let t = Test::new();
    let steps = format!(
        "  - id: up\n    http: {{ via: box, url: \"http://127.0.0.1:{p}/health\", expect: {{ status: 200, json: {{ /user: lukas }} }} }}\n  - id: down\n    http: {{ via: box, url: \"http://127.0.0.1:{p}/other\", expect: {{ status: 200 }} }}\n",
        p = server.port
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    t.run(&["run", "r"]).code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("up"), "succeeded");
    let reason = s.step("down").reason.clone().unwrap();
    assert!(
        reason.contains("expected status 200, got 500") && reason.contains("boom"),
        "{reason}"
    );
    // The requests went through sshd: it logged a direct-tcpip forward.
    assert_eq!(server.received().len(), 2);
    assert!(
        sshd.log().contains("direct-tcpip") || sshd.logins() == 1,
        "{}",
        sshd.log()
    );
}

#[test]
fn a_host_lost_for_longer_than_the_timeout_fails_the_step_clearly_then_resume_reconnects() {
    let mut sshd = Sshd::start();
    let t = Test::new();
    let started = t.p("started");
    let steps = format!(
        "  - id: first\n    on: box\n    run: 'true'\n  - id: long\n    on: box\n    needs: [first]\n    timeout: 3s\n    run: touch {started}; sleep 30\n  - id: after\n    on: box\n    needs: [long]\n    run: echo after\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let child = t.spawn(&["run", "r"]);
    assert!(wait_for(Duration::from_secs(15), || std::path::Path::new(
        &started
    )
    .exists()));
    sshd.cut();
    let ran = finish(child);
    assert_eq!(ran.code, 1, "{ran:?}");
    let s = t.status(None);
    assert_eq!(s.state_of("long"), "failed");
    let reason = s.step("long").reason.clone().unwrap();
    assert!(
        reason.contains("lost the SSH connection to `box`")
            && reason.contains("could not reconnect within the step's timeout (3s)"),
        "{reason}"
    );
    assert_eq!(s.state_of("after"), "blocked");
    sshd.start_again();
    t.put_runbook("r", &steps_without_sleep(&runbook(&sshd, &steps)));
    t.run(&["resume"]).code(0).stdout_has("[after] after");
}

fn steps_without_sleep(yaml: &str) -> String {
    yaml.replace("; sleep 30", "")
}

#[test]
fn auth_failure_is_named_and_resume_succeeds_once_the_key_is_right() {
    let sshd = Sshd::start();
    let t = Test::new();
    let wrong = t.path().join("wrong_key");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let good_yaml = runbook(&sshd, "  - id: a\n    on: box\n    run: echo logged in\n");
    let bad_yaml = good_yaml.replace(
        &sshd.client_key().display().to_string(),
        &wrong.display().to_string(),
    );
    t.put_runbook("r", &bad_yaml);
    t.run(&["run", "r"]).code(1);
    let reason = t.status(None).step("a").reason.clone().unwrap();
    assert!(
        reason.contains("cannot log in to `box`")
            && reason.contains("Permission denied")
            && reason.contains("identity_file"),
        "{reason}"
    );
    t.put_runbook("r", &good_yaml);
    t.run(&["resume"]).code(0).stdout_has("[a] logged in");
}

#[test]
fn a_server_that_never_answers_times_out_with_a_clear_message() {
    // Accepts TCP connections and never speaks SSH.
    let port = support::silent_server();
    let t = Test::new();
    t.put_runbook(
        "r",
        &format!("hosts:\n  stuck: {{ address: 127.0.0.1, port: {port} }}\nsteps:\n  - id: a\n    on: stuck\n    run: 'true'\n  - id: free\n    run: 'true'\n"),
    );
    let started = std::time::Instant::now();
    t.run(&["run", "r"]).code(1);
    assert!(started.elapsed() < Duration::from_secs(60));
    let s = t.status(None);
    let reason = s.step("a").reason.clone().unwrap();
    assert!(
        reason.contains("cannot reach `stuck`") && reason.contains("timed out"),
        "{reason}"
    );
    assert_eq!(s.state_of("free"), "succeeded");
    // Once the host is a real server, resume completes.
    let sshd = Sshd::start();
    t.put_runbook("r", &format!("hosts:\n{}steps:\n  - id: a\n    on: stuck\n    run: 'true'\n  - id: free\n    run: 'true'\n", sshd.host_yaml("stuck")));
    t.run(&["resume"]).code(0);
}

#[test]
fn refused_then_changed_key_then_fixed() {
    let sshd = Sshd::start();
    let t = Test::new();
    let yaml = runbook(&sshd, "  - id: a\n    on: box\n    run: 'true'\n");
    // Refused: nothing listens on the port yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    t.put_runbook(
        "r",
        &yaml.replace(&format!("port: {}", sshd.port), &format!("port: {port}")),
    );
    t.run(&["run", "r"]).code(1);
    let refused = t.status(None).step("a").reason.clone().unwrap();
    assert!(refused.contains("refused"), "{refused}");
    // Changed key: known_hosts holds another key for this address.
    let good = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let other = Sshd::start();
    let theirs = std::fs::read_to_string(other.known_hosts())
        .unwrap()
        .replace(&other.port.to_string(), &sshd.port.to_string());
    std::fs::write(sshd.known_hosts(), theirs).unwrap();
    t.put_runbook("r", &yaml);
    t.run(&["resume"]).code(1);
    let changed = t.status(None).step("a").reason.clone().unwrap();
    assert!(changed.contains("CHANGED"), "{changed}");
    assert_ne!(refused, changed);
    // Fixed.
    std::fs::write(sshd.known_hosts(), good).unwrap();
    t.run(&["resume"]).code(0);
}

#[test]
fn late_output_of_a_background_process_never_lands_in_the_next_step() {
    // Step a leaves a writer behind that prints to stdout and stderr for
    // ~1.5 s after a ended; b (same host, after a) runs while it still
    // writes. b's log has only b's lines; a's log has none of b's.
    let sshd = Sshd::start();
    let t = Test::new();
    let writer = t.p("writer.pid");
    let steps = format!(
        "  - id: a\n    on: box\n    run: |\n      (i=0; while [ $i -lt 15 ]; do echo late-out-$i; echo late-err-$i >&2; sleep 0.1; i=$((i+1)); done; touch {writer}.finished) &\n      echo $! > {writer}\n      echo a-own\n  - id: b\n    on: box\n    needs: [a]\n    run: |\n      kill -0 \"$(cat {writer})\" && echo b-sees-writer-alive\n      for i in 1 2 3 4 5; do echo b-line-$i; echo b-err-$i >&2; sleep 0.1; done\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    t.run(&["run", "r"]).code(0);
    let b = t.run(&["logs", "1", "b"]);
    b.code(0);
    let b_lines: Vec<&str> = b.stdout.lines().collect();
    assert!(
        b_lines.contains(&"b-sees-writer-alive"),
        "b did not run while a's writer still wrote:\n{}",
        b.stdout
    );
    for i in 1..=5 {
        assert!(
            b_lines.contains(&format!("b-line-{i}").as_str()),
            "{}",
            b.stdout
        );
        assert!(
            b_lines.contains(&format!("b-err-{i}").as_str()),
            "{}",
            b.stdout
        );
    }
    assert!(
        b_lines.iter().all(|l| l.starts_with("b-line-")
            || l.starts_with("b-err-")
            || *l == "b-sees-writer-alive"),
        "b's log has lines that are not b's:\n{}",
        b.stdout
    );
    let a = t.run(&["logs", "1", "a"]);
    a.code(0);
    assert!(a.stdout.contains("a-own"), "{}", a.stdout);
    assert!(
        !a.stdout.contains("b-"),
        "a's log has b's lines:\n{}",
        a.stdout
    );
    // The writer was not killed by its late writes (no SIGPIPE): it ran out.
    assert!(
        wait_for(Duration::from_secs(10), || std::path::Path::new(&format!(
            "{writer}.finished"
        ))
        .exists()),
        "a's background writer did not finish"
    );
}

/// Pids of processes whose command line has all of `parts` as arguments.
fn pids_with_args(parts: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        if parts.iter().all(|p| args.iter().any(|a| a == p)) && support::alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Processes in a process group.
fn group_members(pgid: i32) -> Vec<i32> {
    support::processes()
        .into_iter()
        .filter(|(_, f)| f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && f[0] != "Z")
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn a_killed_engine_leaves_no_master_behind_and_its_remote_step_runs_on() {
    let sshd = Sshd::start();
    let t = Test::new().env("RUNBOOK_SSH_IDLE", "3s");
    let pidfile = t.p("sleep.pid");
    let steps = format!(
        "  - id: long\n    on: box\n    run: sleep 600 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait\n"
    );
    t.put_runbook("r", &runbook(&sshd, &steps));
    let mut child = t.spawn(&["run", "r"]);
    assert!(
        wait_for(Duration::from_secs(20), || std::path::Path::new(&pidfile)
            .exists()),
        "the remote step did not start"
    );
    let sleep: i32 = t.read("sleep.pid").trim().parse().expect("pid");
    let stat = std::fs::read_to_string(format!("/proc/{sleep}/stat")).unwrap();
    let pgid: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let port = sshd.port.to_string();
    let masters = pids_with_args(&["-M", "-p", &port]);
    assert_eq!(masters.len(), 1, "one master for the host: {masters:?}");
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let gone = wait_for(Duration::from_secs(20), || {
        masters.iter().all(|p| !support::alive(*p))
    });
    let left_masters: Vec<i32> = masters
        .iter()
        .copied()
        .filter(|p| support::alive(*p))
        .collect();
    for p in &left_masters {
        // Started by the engine under test: end it by pid.
        let _ = std::process::Command::new("kill")
            .arg(p.to_string())
            .status();
    }
    assert!(gone, "left behind: masters {left_masters:?}");
    // The step lives on in its own session (SPEC §8) ...
    assert!(
        support::alive(sleep),
        "the remote step died with the engine"
    );
    assert!(group_members(pgid).len() >= 2);
    // ... until reset stops it; then a new engine connects anew (no stale
    // socket in the way) and runs.
    t.run(&["reset", "1", "long"]).code(0);
    assert!(
        wait_for(Duration::from_secs(5), || group_members(pgid).is_empty()),
        "reset left {:?}",
        group_members(pgid)
    );
    t.put_runbook(
        "r",
        &runbook(&sshd, "  - id: again\n    on: box\n    run: echo again\n"),
    );
    t.run(&["run", "r", "--fresh"])
        .code(0)
        .stdout_has("[again] again");
}

#[test]
fn a_bad_ssh_idle_setting_is_a_usage_error() {
    let sshd = Sshd::start();
    let t = Test::new().env("RUNBOOK_SSH_IDLE", "soon");
    let marker = t.p("ran");
    t.put_runbook(
        "r",
        &runbook(
            &sshd,
            &format!("  - id: a\n    on: box\n    run: touch {marker}\n"),
        ),
    );
    let ran = t.run(&["run", "r"]);
    ran.code(2).stderr_has("RUNBOOK_SSH_IDLE");
    assert!(!ran.stderr.contains("panicked"));
    assert!(!std::path::Path::new(&marker).exists());
    // No run was started.
    assert!(t.run(&["status"]).stdout.trim().is_empty() || !t.state_file().exists());
}

/// A known_hosts file whose path has a space and a `%` in it (a laptop's
/// "My Projects" folder) is read as that one file: ssh would split the
/// path at the space and expand `%`. The command the refusal suggests is
/// shell-quoted.
#[test]
fn a_known_hosts_path_with_a_space_and_a_percent_is_one_file() {
    let sshd = Sshd::start();
    let t = Test::new();
    let dir = t.path().join("my 100% keys");
    std::fs::create_dir_all(&dir).unwrap();
    let kh = dir.join("known hosts");
    std::fs::copy(sshd.known_hosts(), &kh).unwrap();
    let yaml = runbook(&sshd, "  - id: a\n    on: box\n    run: echo reached\n").replace(
        &format!("known_hosts_file: {}", sshd.known_hosts().display()),
        &format!("known_hosts_file: \"{}\"", kh.display()),
    );
    assert!(yaml.contains("my 100% keys"), "{yaml}");
    t.put_runbook("r", &yaml);
    t.run(&["run", "r"]).code(0).stdout_has("[a] reached");
    // Not in it: the suggested command names the file as one shell word.
    std::fs::write(&kh, "").unwrap();
    t.run(&["run", "r", "--fresh"]).code(1);
    let reason = t.status(None).step("a").reason.clone().unwrap();
    assert!(
        reason.contains(&format!(">> '{}'", kh.display())),
        "{reason}"
    );
}
