//! Human in the loop (issue 4): secrets, checks, holds, approvals, handoff,
//! redaction.

mod support;
use support::http::HttpServer;
use support::sshd::Sshd;
use support::Test;

/// deploy → use-token (requires RB_TEST_TOKEN) → after ; independent → free
fn token_runbook(t: &Test, extra_top: &str) -> String {
    format!(
        "description: Test deployment\n{extra_top}secrets:\n  RB_TEST_TOKEN:\n    description: Token for the test API, scope read\n    owner: Lukas\nsteps:\n  - id: deploy\n    run: echo deploy >> {log}\n  - id: use-token\n    needs: [deploy]\n    requires: [RB_TEST_TOKEN]\n    doc: Applies the token to the test service.\n    env: {{ TOKEN: \"{{{{ secrets.RB_TEST_TOKEN }}}}\" }}\n    run: echo \"using $TOKEN\"; echo use >> {log}\n  - id: after\n    needs: [use-token]\n    run: echo after >> {log}\n  - id: free\n    run: echo free >> {log}\n",
        log = t.p("log")
    )
}

fn assert_held_first_run(t: &Test) {
    let ran = t.run(&["run", "tok"]);
    ran.code(3).stdout_has("runbook handoff");
    let s = t.status(None);
    assert_eq!(s.state, "held");
    assert_eq!(s.state_of("deploy"), "succeeded");
    assert_eq!(s.state_of("free"), "succeeded");
    assert_eq!(s.state_of("use-token"), "held");
    assert_eq!(
        s.step("use-token").missing,
        vec!["RB_TEST_TOKEN".to_string()]
    );
    assert_eq!(
        s.step("use-token").reason.as_deref(),
        Some("secret RB_TEST_TOKEN is missing")
    );
    assert_eq!(s.state_of("after"), "blocked");
}

fn assert_resumed(t: &Test, args: &[&str]) {
    let mut a = vec!["resume", "tok"];
    a.extend(args);
    t.run(&a)
        .code(0)
        .stdout_has("[use-token] using [REDACTED:RB_TEST_TOKEN]");
    let s = t.status(None);
    assert_eq!(s.state, "succeeded");
    let log = t.lines("log");
    assert_eq!(
        log.iter().filter(|l| *l == "deploy").count(),
        1,
        "deploy ran once: {log:?}"
    );
    assert_eq!(log.iter().filter(|l| *l == "use").count(), 1);
}

#[test]
fn missing_secret_holds_then_environment_unblocks() {
    let t = Test::new();
    t.put_runbook("tok", &token_runbook(&t, ""));
    assert_held_first_run(&t);
    let t = t.env("RB_TEST_TOKEN", "tok-from-env-123");
    assert_resumed(&t, &[]);
}

#[test]
fn env_file_argument_unblocks() {
    let t = Test::new();
    t.put_runbook("tok", &token_runbook(&t, ""));
    assert_held_first_run(&t);
    t.write("secrets.env", "RB_TEST_TOKEN=tok-from-file-456\n");
    let f = t.p("secrets.env");
    assert_resumed(&t, &["--env-file", &f]);
    t.run(&["resume", "--env-file", "/nonexistent/x.env"])
        .code(2);
}

#[test]
fn runbook_env_files_unblock_and_empty_counts_as_missing() {
    let t = Test::new();
    t.put_runbook("tok", &token_runbook(&t, "env_files:\n  - local.env\n"));
    t.write("runbooks/local.env", "RB_TEST_TOKEN=\n");
    assert_held_first_run(&t);
    t.write(
        "runbooks/local.env",
        "# tokens\nRB_TEST_TOKEN=\"tok-local-789\"\n",
    );
    assert_resumed(&t, &[]);
}

#[test]
fn dotenv_on_the_host_unblocks() {
    let sshd = Sshd::start();
    let t = Test::new();
    let remote_env = sshd.dir.path().join("deploy/.env");
    let top = format!(
        "vars: {{ deploy_dir: {} }}\nhosts:\n{}env_files:\n  - {{ host: box, path: \"{{{{ vars.deploy_dir }}}}/.env\" }}\n",
        sshd.dir.path().join("deploy").display(),
        sshd.host_yaml("box")
    );
    t.put_runbook("tok", &token_runbook(&t, &top));
    assert_held_first_run(&t);
    let page = t.run(&["handoff"]);
    page.code(0)
        .stdout_has(&format!("`{}` on host `box` (", remote_env.display()));
    std::fs::create_dir_all(remote_env.parent().unwrap()).unwrap();
    std::fs::write(&remote_env, "OTHER=1\nRB_TEST_TOKEN=tok-remote-000\n").unwrap();
    assert_resumed(&t, &[]);
}

#[test]
fn rejected_token_then_right_token() {
    let server = HttpServer::start(|r| {
        if r.header("authorization") == Some("Bearer good-token-1") {
            (200, r#"{"login":"lukas"}"#.into())
        } else {
            (
                401,
                r#"{"message":"Bad credentials","documentation_url":"https://docs"}"#.into(),
            )
        }
    });
    let t = Test::new();
    let yaml = token_runbook(&t, &format!("vars: {{ api: \"{}\" }}\n", server.url())).replace(
        "    owner: Lukas\n",
        "    owner: Lukas\n    check:\n      http:\n        url: \"{{ vars.api }}/user\"\n        headers: { Authorization: \"Bearer {{ secrets.RB_TEST_TOKEN }}\" }\n        expect: { status: 200 }\n",
    );
    t.put_runbook("tok", &yaml);
    let t = t.env("RB_TEST_TOKEN", "expired-token-9");
    t.run(&["run", "tok"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("use-token"), "held");
    assert_eq!(
        s.step("use-token").rejected,
        vec!["RB_TEST_TOKEN".to_string()]
    );
    let reason = s.step("use-token").reason.clone().unwrap();
    assert!(
        reason.contains("401") && reason.contains("Bad credentials"),
        "{reason}"
    );
    t.run(&["handoff"])
        .code(0)
        .stdout_has("rejected")
        .stdout_has("401 Bad credentials")
        .stdout_has("/user` must answer with status 200");
    let t = t.env("RB_TEST_TOKEN", "good-token-1");
    assert_resumed(&t, &[]);
    assert!(server
        .received()
        .iter()
        .any(|r| r.header("authorization") == Some("Bearer good-token-1")));
}

#[test]
fn unreachable_check_holds_instead_of_passing() {
    let t = Test::new();
    let yaml = token_runbook(&t, "").replace(
        "    owner: Lukas\n",
        "    owner: Lukas\n    check:\n      http: { url: \"http://127.0.0.1:1/user\" }\n",
    );
    t.put_runbook("tok", &yaml);
    let t = t.env("RB_TEST_TOKEN", "whatever-token");
    t.run(&["run", "tok"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("use-token"), "held");
    assert!(s
        .step("use-token")
        .reason
        .as_deref()
        .unwrap()
        .contains("127.0.0.1:1"));
}

#[test]
fn approval_flow() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: prep\n    run: 'true'\n  - id: ship\n    needs: [prep]\n    approval: Ship it to production?\n    run: echo shipped >> {log}\n  - id: free\n    run: 'true'\n",
        log = t.p("log")
    );
    t.put_runbook("ap", &yaml);
    t.run(&["run", "ap"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("ship"), "held");
    assert!(s
        .step("ship")
        .reason
        .as_deref()
        .unwrap()
        .contains("Ship it to production?"));
    t.run(&["handoff"])
        .code(0)
        .stdout_has("Ship it to production?")
        .stdout_has("runbook approve 1 ship");
    t.run(&["resume"]).code(3);
    assert!(t.read("log").is_empty());
    t.run(&["approve", "1", "ship", "--note", "window ok"])
        .code(0)
        .stdout_has("approved `ship`");
    t.run(&["run", "ap", "--dry-run"])
        .code(0)
        .stdout_has("approved by");
    t.run(&["resume"]).code(0);
    assert_eq!(t.read("log"), "shipped\n");
    t.run(&["approve", "1", "shp"])
        .code(2)
        .stderr_has("did you mean `ship`?");
}

#[test]
fn handoff_page_names_everything_a_person_needs() {
    let t = Test::new();
    let yaml = token_runbook(&t, "env_files:\n  - prod.env\n").replace(
        "steps:\n",
        "  RB_SECOND:\n    description: Second key, from the admin console\n    owner: Maria\nsteps:\n  - id: second\n    requires: [RB_SECOND]\n    run: 'true'\n",
    );
    t.put_runbook("tok", &yaml);
    t.write("runbooks/prod.env", "UNRELATED=1\n");
    t.run(&["run", "tok"]).code(3);
    let page = t.run(&["handoff"]);
    page.code(0)
        .stdout_has("run 1 is held")
        .stdout_has("### From Lukas")
        .stdout_has("### From Maria")
        .stdout_has("#### `RB_TEST_TOKEN` — missing")
        .stdout_has("Token for the test API, scope read")
        .stdout_has("Second key, from the admin console")
        .stdout_has("export RB_TEST_TOKEN=...")
        .stdout_has(&format!(
            "`{}` on the operator's machine",
            t.p("runbooks/prod.env")
        ))
        .stdout_has("**It unblocks:** `use-token`, and after them `after`")
        .stdout_has("Applies the token to the test service.")
        .stdout_has("runbook resume 1");
    let out = t.p("handoff.md");
    t.run(&["handoff", "tok", "-o", &out]).code(0);
    assert_eq!(t.read("handoff.md"), page.stdout);
    let json = t.run(&["handoff", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["owners"][0]["owner"], "Lukas");
    assert_eq!(doc["owners"][0]["secrets"][0]["name"], "RB_TEST_TOKEN");
    assert_eq!(doc["resume_command"], "runbook resume 1");
}

#[test]
fn failed_steps_show_in_the_handoff_with_their_output() {
    let t = Test::new().runbook(
        "f",
        "steps:\n  - id: broken\n    run: echo first; echo 'disk full' >&2; exit 1\n",
    );
    t.run(&["run", "f"]).code(1);
    t.run(&["handoff"])
        .code(0)
        .stdout_has("## Failed steps")
        .stdout_has("disk full")
        .stdout_has("runbook logs 1 broken");
}

#[test]
fn secret_values_never_reach_disk_or_output() {
    let secret = "s3cr3t-VALUE-a1b2c3d4e5";
    let server = HttpServer::start(|_| {
        (
            401,
            r#"{"message":"token s3cr3t-VALUE-a1b2c3d4e5 is invalid"}"#.into(),
        )
    });
    let t = Test::new();
    let yaml = format!(
        "vars: {{ api: \"{url}\" }}\nsecrets:\n  RB_LEAK:\n    owner: Lukas\n    description: leak test\n  RB_CHECKED:\n    owner: Lukas\n    check:\n      http: {{ url: \"{{{{ vars.api }}}}/check?key={{{{ secrets.RB_CHECKED }}}}\" }}\nsteps:\n  - id: echo\n    requires: [RB_LEAK]\n    env: {{ V: \"{{{{ secrets.RB_LEAK }}}}\" }}\n    run: |\n      echo \"plain $V\"\n      printf '%s' \"$V\" | head -c 7; printf '%s\\n' \"$V\" | tail -c +8\n      echo \"$V\" >&2\n      echo \"in url https://x/?t=$V\"\n      exit 1\n  - id: http\n    requires: [RB_LEAK]\n    http: {{ url: \"{{{{ vars.api }}}}/?token={{{{ secrets.RB_LEAK }}}}\" }}\n  - id: checked\n    requires: [RB_CHECKED]\n    run: 'true'\n",
        url = server.url()
    );
    let checked = "zz-checked-9f8e7d6c5b";
    let t = t
        .runbook("leak", &yaml)
        .env("RB_LEAK", secret)
        .env("RB_CHECKED", checked);
    let mut outputs = Vec::new();
    let ran = t.run(&["run", "leak", "--json"]);
    assert_eq!(ran.code, 1);
    outputs.push(ran.stdout.clone() + &ran.stderr);
    assert!(
        ran.stdout.contains("plain [REDACTED:RB_LEAK]"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("?t=[REDACTED:RB_LEAK]"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("token [REDACTED:RB_LEAK] is invalid")
            || ran.stdout.contains("[REDACTED:RB_CHECKED]"),
        "{}",
        ran.stdout
    );
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["logs", "1", "echo"],
        vec!["handoff"],
        vec!["handoff", "--json"],
        vec!["resume"],
        vec!["run", "leak", "--dry-run"],
    ] {
        let r = t.run(&args);
        outputs.push(r.stdout + &r.stderr);
    }
    for out in &outputs {
        assert!(
            !out.contains(secret) && !out.contains(checked),
            "secret in output:\n{out}"
        );
    }
    for entry in walk(&t.path().join("state")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, secret.as_bytes()) && !contains(&bytes, checked.as_bytes()),
            "secret in {entry:?}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(&t.path().join("state")) {
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "{entry:?} is readable by others ({mode:o})"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
