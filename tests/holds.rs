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
    // A step that asks for no approval cannot be approved.
    t.run(&["approve", "1", "free"])
        .code(2)
        .stderr_has("does not ask for approval");
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
        .stdout_has("**It unblocks:** `use-token`, and after it `after`")
        .stdout_has("2 steps are done; 2 wait for a person and 1 is blocked behind them.")
        .stdout_lacks("0 failed")
        .stdout_has("Applies the token to the test service.")
        .stdout_has("runbook resume 1");
    let out = t.p("handoff.md");
    t.run(&["handoff", "tok", "-o", &out]).code(0);
    assert_eq!(t.read("handoff.md"), page.stdout);
    let json = t.run(&["handoff", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["owners"][0]["owner"], "Lukas");
    assert_eq!(doc["owners"][0]["secrets"][0]["name"], "RB_TEST_TOKEN");
    assert_eq!(
        doc["resume_command"],
        format!("runbook resume 1{}", t.state_flag())
    );
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

/// A three-line secret (a PEM key), every line long enough to be redacted
/// on its own.
const PEM: &str =
    "-----BEGIN RB TEST KEY-----\nq8Zx3mKp0Lw7Yt2RbN5vHc9JdF4sGa6E\n-----END RB TEST KEY-----";

#[test]
fn secret_values_never_reach_disk_or_output() {
    let secret = "s3cr3t-VALUE-a1b2c3d4e5";
    let server = HttpServer::start(|r| {
        if r.path.starts_with("/pem-cut") {
            // The body preview (300 characters) ends 10 characters into the
            // key's second line.
            return (500, format!("{}\n{PEM}\n", "p".repeat(261)));
        }
        if r.path.starts_with("/pem") {
            // The upstream echoes the key back in an error body: it lands in
            // the failure reason (one line, whitespace collapsed).
            return (500, format!("upstream rejected the key:\n{PEM}\n"));
        }
        (
            401,
            r#"{"message":"token s3cr3t-VALUE-a1b2c3d4e5 is invalid"}"#.into(),
        )
    });
    let t = Test::new();
    let yaml = format!(
        "vars: {{ api: \"{url}\" }}\nsecrets:\n  RB_LEAK:\n    owner: Lukas\n    description: leak test\n  RB_PEM:\n    owner: Lukas\n    description: a private key\n  RB_CHECKED:\n    owner: Lukas\n    check:\n      http: {{ url: \"{{{{ vars.api }}}}/check?key={{{{ secrets.RB_CHECKED }}}}\" }}\nsteps:\n  - id: echo\n    requires: [RB_LEAK]\n    env: {{ V: \"{{{{ secrets.RB_LEAK }}}}\" }}\n    run: |\n      echo \"plain $V\"\n      printf '%s' \"$V\" | head -c 7; printf '%s\\n' \"$V\" | tail -c +8\n      echo \"$V\" >&2\n      echo \"in url https://x/?t=$V\"\n      exit 1\n  - id: http\n    requires: [RB_LEAK]\n    http: {{ url: \"{{{{ vars.api }}}}/?token={{{{ secrets.RB_LEAK }}}}\" }}\n  - id: checked\n    requires: [RB_CHECKED]\n    run: 'true'\n  - id: pem\n    requires: [RB_PEM]\n    env: {{ K: \"{{{{ secrets.RB_PEM }}}}\" }}\n    run: |\n      printf '%s\\n' \"$K\"\n      echo \"key=$K\" >&2\n      exit 1\n  - id: pem-http\n    requires: [RB_PEM]\n    http: {{ url: \"{{{{ vars.api }}}}/pem\", expect: {{ status: 200 }} }}\n  - id: pem-cut\n    requires: [RB_PEM]\n    http: {{ url: \"{{{{ vars.api }}}}/pem-cut\" }}\n",
        url = server.url()
    );
    let checked = "zz-checked-9f8e7d6c5b";
    let t = t
        .runbook("leak", &yaml)
        .env("RB_LEAK", secret)
        .env("RB_PEM", PEM)
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
    // The key, printed line by line, and in the failure reason.
    assert!(
        ran.stdout.contains("key=[REDACTED:RB_PEM]"),
        "{}",
        ran.stdout
    );
    let s = t.status(None);
    assert_eq!(s.state_of("pem"), "failed");
    let reason = s.reason_of("pem-http");
    assert!(
        reason.contains("[REDACTED:RB_PEM] [REDACTED:RB_PEM] [REDACTED:RB_PEM]"),
        "{reason}"
    );
    let reason = s.reason_of("pem-cut");
    assert!(reason.ends_with("[REDACTED:RB_PEM]…"), "{reason}");
    t.run(&["logs", "1", "pem"])
        .code(0)
        .stdout_has("[REDACTED:RB_PEM]");
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["logs", "1", "echo"],
        vec!["logs", "1", "pem"],
        vec!["logs", "1", "pem-http"],
        vec!["handoff"],
        vec!["handoff", "--json"],
        vec!["resume", "--json"],
        vec!["resume"],
        vec!["run", "leak", "--dry-run"],
    ] {
        let r = t.run(&args);
        outputs.push(r.stdout + &r.stderr);
    }
    let mut needles: Vec<&str> = vec![secret, checked];
    needles.extend(PEM.lines());
    // The start of a line cut short by the preview.
    needles.push("q8Zx3mKp0L");
    for out in &outputs {
        for needle in &needles {
            assert!(!out.contains(needle), "{needle:?} in output:\n{out}");
        }
    }
    let files = t.state_bytes();
    assert!(!files.is_empty());
    for (entry, bytes) in files {
        for needle in &needles {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{needle:?} in {entry:?}"
            );
        }
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

#[test]
fn a_step_that_cannot_be_rendered_with_its_secrets_fails_without_running() {
    // The key must be a JSON credential; this one is not. With the
    // placeholder the runbook validates; with the real value the step fails,
    // and never runs with `[secret:RB_SA]` in its place.
    let t = Test::new();
    let yaml = format!(
        "secrets:\n  RB_SA:\n    owner: Lukas\n    description: service account JSON\nsteps:\n  - id: configure\n    requires: [RB_SA]\n    env: {{ EMAIL: \"{{{{ (secrets.RB_SA | from_json).client_email }}}}\" }}\n    run: echo \"$EMAIL\" > {mark}\n  - id: after\n    needs: [configure]\n    run: touch {after}\n  - id: free\n    run: 'true'\n",
        mark = t.p("mark"),
        after = t.p("after")
    );
    let t = t.runbook("sa", &yaml);
    t.run(&["validate", "sa"]).code(0);
    let not_json = "-----BEGIN PRIVATE KEY----- pasted-the-wrong-thing-77";
    let t = t.env("RB_SA", not_json);
    t.run(&["run", "sa", "--dry-run"])
        .code(0)
        .stdout_has("would fail")
        .stdout_has("would be blocked");
    let ran = t.run(&["run", "sa"]);
    ran.code(1);
    let s = t.status(None);
    assert_eq!(s.state, "failed");
    assert_eq!(s.state_of("configure"), "failed");
    assert_eq!(s.state_of("after"), "blocked");
    assert_eq!(s.state_of("free"), "succeeded");
    let reason = s.reason_of("configure");
    assert!(
        reason.contains("`env` cannot be rendered with the value of secret RB_SA: ")
            && reason.contains("not JSON"),
        "{reason}"
    );
    assert!(!reason.contains("pasted-the-wrong-thing"), "{reason}");
    assert!(!t.path().join("mark").exists(), "the step ran");
    assert!(!t.path().join("after").exists());
    // A JSON value without the field fails the same way, naming it.
    let t = t.env("RB_SA", r#"{"type": "service_account"}"#);
    t.run(&["resume", "sa"]).code(1);
    let reason = t.status(None).reason_of("configure");
    assert!(reason.contains("client_email"), "{reason}");
    assert!(!t.path().join("mark").exists(), "the step ran");
    // The right value: it runs.
    let t = t.env("RB_SA", r#"{"client_email": "sa@example.iam"}"#);
    t.run(&["resume", "sa"]).code(0);
    assert_eq!(t.read("mark"), "sa@example.iam\n");
}

#[test]
fn when_false_skips_before_any_approval_is_asked() {
    let t = Test::new();
    let yaml = format!(
        "vars: {{ confirm: 'false' }}\nsteps:\n  - id: prep\n    run: 'true'\n  - id: wipe\n    needs: [prep]\n    when: \"{{{{ vars.confirm == 'true' }}}}\"\n    approval: Wipe the old volume?\n    run: touch {mark}\n  - id: after\n    needs: [wipe]\n    run: 'true'\n",
        mark = t.p("mark")
    );
    let t = t.runbook("wipe", &yaml);
    t.run(&["run", "wipe", "--dry-run"])
        .code(0)
        .stdout_has("would be skipped  wipe");
    t.run(&["run", "wipe"]).code(0);
    let s = t.status(None);
    assert_eq!(s.state, "succeeded");
    assert_eq!(s.state_of("wipe"), "skipped");
    assert_eq!(s.state_of("after"), "succeeded");
    t.run(&["run", "wipe", "--fresh", "--var", "confirm=true"])
        .code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("wipe"), "held");
    assert!(s
        .step("wipe")
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("Wipe the old volume?"));
    assert!(!t.path().join("mark").exists());
}

#[test]
fn a_when_that_reads_a_missing_secret_stays_held() {
    let t = Test::new();
    let yaml = format!(
        "secrets:\n  RB_FLAG: {{ owner: Lukas, description: feature flag }}\nsteps:\n  - id: gated\n    requires: [RB_FLAG]\n    when: secrets.RB_FLAG == 'on'\n    approval: Turn it on?\n    run: touch {mark}\n",
        mark = t.p("mark")
    );
    let t = t.runbook("flag", &yaml);
    t.run(&["run", "flag"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("gated"), "held");
    assert_eq!(s.step("gated").missing, vec!["RB_FLAG".to_string()]);
    // Found and `off`: skipped, no approval asked.
    let t = t.env("RB_FLAG", "off");
    t.run(&["resume"]).code(0);
    assert_eq!(t.status(None).state_of("gated"), "skipped");
    // `on` (a new run): now the approval holds it.
    let t = t.env("RB_FLAG", "on");
    t.run(&["run", "flag", "--fresh"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("gated"), "held");
    assert!(s.step("gated").missing.is_empty());
    assert!(!t.path().join("mark").exists());
}

#[test]
fn a_when_that_subscripts_a_missing_secret_stays_held() {
    // `secrets["X"]` is not in the syntax list; a missing value still holds.
    let t = Test::new().runbook(
        "sub",
        "secrets:\n  RB_FLAG: { owner: Lukas, description: flag }\nsteps:\n  - id: gated\n    requires: [RB_FLAG]\n    when: \"{{ secrets['RB_FLAG'] == 'on' }}\"\n    run: 'true'\n",
    );
    t.run(&["run", "sub"]).code(3);
    assert_eq!(t.status(None).state_of("gated"), "held");
    let t = t.env("RB_FLAG", "off");
    t.run(&["resume"]).code(0);
    assert_eq!(t.status(None).state_of("gated"), "skipped");
}

#[test]
fn a_check_names_every_secret_it_is_missing() {
    let t = Test::new().runbook(
        "chk",
        "secrets:\n  RB_TOKEN:\n    owner: Lukas\n    check:\n      http:\n        url: \"http://127.0.0.1:1/?u={{ secrets.RB_USER }}\"\n        headers: { X-Org: \"{{ secrets.RB_ORG }}\" }\n  RB_USER: { owner: Lukas }\n  RB_ORG: { owner: Lukas }\nsteps:\n  - id: a\n    requires: [RB_TOKEN]\n    run: 'true'\n",
    );
    let t = t.env("RB_TOKEN", "tok-123456");
    t.run(&["run", "chk"]).code(3);
    let reason = t.status(None).reason_of("a");
    assert!(
        reason.contains("its check also needs RB_ORG, RB_USER, which are missing"),
        "{reason}"
    );
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

#[test]
fn fields_of_a_json_credential_and_escaped_values_are_redacted_too() {
    // A service-account JSON whose private_key holds `\n` escapes: decoded
    // by from_json, the step prints the PEM lines, which are not lines of
    // the JSON text itself.
    let sa = format!(
        "{{\n  \"type\": \"service_account\",\n  \"client_email\": \"deployer@proj-4711.iam.example.com\",\n  \"private_key\": \"{}\"\n}}",
        PEM.replace('\n', "\\n")
    );
    // A value with a quote and a backslash, which `{:?}` would escape.
    let odd = "pa\"ss\\wordXYZ123";
    let server = HttpServer::start(|_| (200, "hello".into()));
    let yaml = format!(
        "secrets:\n  RB_SA: {{ description: service account }}\n  RB_ODD: {{ description: odd }}\nsteps:\n  - id: key\n    requires: [RB_SA]\n    env:\n      KEY: \"{{{{ (secrets.RB_SA | from_json).private_key }}}}\"\n      WHO: \"{{{{ (secrets.RB_SA | from_json).client_email }}}}\"\n    run: |\n      printf '%s\\n' \"$KEY\"\n      echo \"as $WHO\"\n      exit 1\n  - id: body\n    requires: [RB_ODD]\n    http: {{ url: \"{}/\", expect: {{ body_contains: \"{{{{ secrets.RB_ODD }}}}\" }} }}\n",
        server.url()
    );
    let t = Test::new()
        .runbook("sa", &yaml)
        .env("RB_SA", &sa)
        .env("RB_ODD", odd);
    let mut outputs = Vec::new();
    let ran = t.run(&["run", "sa", "--json"]);
    ran.code(1).stdout_has("as [REDACTED:RB_SA]");
    outputs.push(ran.stdout + &ran.stderr);
    for args in [
        vec!["status", "--json"],
        vec!["logs", "1", "key"],
        vec!["logs", "1", "body"],
        vec!["handoff", "--json"],
    ] {
        let r = t.run(&args);
        outputs.push(r.stdout + &r.stderr);
    }
    let reason = t.status(None).reason_of("body");
    assert!(reason.contains("[REDACTED:RB_ODD]"), "{reason}");
    let mut needles: Vec<&str> = PEM.lines().filter(|l| l.len() >= 8).collect();
    needles.extend(["deployer@proj-4711", "wordXYZ123"]);
    for out in &outputs {
        for needle in &needles {
            assert!(!out.contains(needle), "{needle:?} in output:\n{out}");
        }
    }
    for entry in walk(&t.path().join("state")) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in &needles {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "{needle:?} in {entry:?}"
            );
        }
    }
}

#[test]
fn a_step_skipped_on_a_secret_is_decided_again_on_resume() {
    let yaml = "secrets:\n  RB_FLAG: { description: feature flag }\nsteps:\n  - id: gated\n    requires: [RB_FLAG]\n    when: \"{{ secrets.RB_FLAG == 'on' }}\"\n    run: touch gated.ran\n  - id: other\n    run: test -e ok\n";
    let t = Test::new().runbook("g", yaml);
    let mut off = t.command(&["run", "g"]);
    off.env("RB_FLAG", "off");
    assert_eq!(off.status().unwrap().code(), Some(1));
    assert_eq!(t.status(None).state_of("gated"), "skipped");
    t.write("runbooks/ok", "");
    let mut on = t.command(&["run", "g"]);
    on.env("RB_FLAG", "on");
    assert_eq!(on.status().unwrap().code(), Some(0));
    assert!(
        t.path().join("runbooks/gated.ran").exists(),
        "gated never ran"
    );
}

/// `approval` and `title` are templates (SPEC §14): the question asked and
/// the title shown are rendered, and an undefined name in either is a
/// validation error at its line, before anything runs.
#[test]
fn approval_and_title_are_templates() {
    let t = Test::new();
    let yaml = format!(
        "vars: {{ version: '1.4' }}\nsteps:\n  - id: ship\n    title: Ship {{{{ vars.version }}}}\n    approval: Ship {{{{ vars.version }}}} to production?\n    run: echo shipped >> {log}\n",
        log = t.p("log")
    );
    t.put_runbook("ap", &yaml);
    t.run(&["run", "ap"]).code(3);
    let reason = t.status(None).step("ship").reason.clone().unwrap();
    assert!(reason.contains("Ship 1.4 to production?"), "{reason}");
    t.run(&["handoff"])
        .code(0)
        .stdout_has("Ship 1.4 to production?")
        .stdout_has("Ship 1.4");
    let bad = "steps:\n  - id: ship\n    title: Ship {{ vars.nope }}\n    approval: Ship {{ vars.typo }}?\n    run: 'true'\n";
    t.put_runbook("bad", bad);
    t.run(&["validate", "bad"])
        .code(2)
        .stderr_has("`vars.nope` is undefined")
        .stderr_has("`vars.typo` is undefined")
        .stderr_has("bad.yaml:3:")
        .stderr_has("bad.yaml:4:");
}

/// The handoff's `notes` hold the `doc` of every step not done: a failed or
/// blocked one as well as a held one; a done step's doc is not among them.
#[test]
fn handoff_notes_hold_the_doc_of_every_step_not_done() {
    let t = Test::new().runbook(
        "n",
        "steps:\n  - id: a\n    doc: Done already.\n    run: 'true'\n  - id: b\n    needs: [a]\n    doc: Builds the thing.\n    run: exit 7\n  - id: c\n    needs: [b]\n    doc: Restarts the service.\n    run: 'true'\n  - id: e\n    approval: true\n    doc: Ships it.\n    run: 'true'\n",
    );
    t.run(&["run", "n"]).code(1);
    let json = t.run(&["handoff", "--json"]);
    json.code(0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let notes: Vec<(String, String)> = doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, text) in [
        ("b", "Builds the thing."),
        ("c", "Restarts the service."),
        ("e", "Ships it."),
    ] {
        assert!(
            notes.contains(&(id.to_string(), text.to_string())),
            "{id} missing from {notes:?}"
        );
    }
    assert!(!notes.iter().any(|(id, _)| id == "a"), "{notes:?}");
    t.run(&["handoff"])
        .code(0)
        .stdout_has("1 step is done")
        .stdout_has("- `c`: Restarts the service.");
}

/// `approve` and `reset` print a resume command that finds the same state
/// again, as the run's own `next:` line does.
#[test]
fn approve_and_reset_name_a_state_that_is_not_the_default() {
    let t = Test::new().runbook(
        "gate",
        "steps:\n  - id: ship\n    approval: \"Ship it?\"\n    run: echo shipped\n",
    );
    t.run(&["run", "gate", "--state", "other.db"])
        .code(3)
        .stdout_has("runbook resume 1 --state");
    t.run(&["approve", "1", "ship", "--state", "other.db"])
        .code(0)
        .stdout_has("continue with: runbook resume 1 --state ")
        .stdout_has("other.db");
    t.run(&["reset", "1", "ship", "--state", "other.db"])
        .code(0)
        .stdout_has("continue with: runbook resume 1 --state ");
    // The default state adds nothing (on PostgreSQL the suite's state is
    // named by its URL, as the run's own `next:` line names it).
    let d = Test::new().runbook(
        "gate",
        "steps:\n  - id: ship\n    approval: \"Ship it?\"\n    run: echo shipped\n",
    );
    d.run(&["run", "gate"]).code(3);
    let approved = d.run(&["approve", "1", "ship"]);
    approved.code(0);
    let want = format!("continue with: runbook resume 1{}\n", d.state_flag());
    assert!(approved.stdout.ends_with(&want), "{}", approved.stdout);
}

/// After `runbook approve`, `status` says the step is approved, by whom,
/// and that resume runs it: it waits for nobody any more.
#[test]
fn status_after_approve_says_who_approved_and_that_resume_runs_it() {
    let t = Test::new().runbook(
        "gate",
        "steps:\n  - id: ship\n    approval: \"Ship it?\"\n    run: echo shipped\n  - id: after\n    needs: [ship]\n    run: 'true'\n",
    );
    t.run(&["run", "gate"]).code(3);
    t.run(&["approve", "1", "ship", "--by", "alice"]).code(0);
    let want = format!("; runs on `runbook resume 1{}`", t.state_flag());
    t.run(&["status"])
        .code(0)
        .stdout_has("approved by alice at ")
        .stdout_has(&want)
        .stdout_lacks("waiting for approval");
    let s = t.status(None);
    assert_eq!(s.state_of("ship"), "held");
    assert!(
        s.reason_of("ship").starts_with("approved by alice at "),
        "{}",
        s.reason_of("ship")
    );
    t.run(&["resume"]).code(0);
    assert_eq!(t.status(None).state_of("ship"), "succeeded");
    // The approval stays through a reset, and status says it will not ask.
    t.run(&["reset", "1", "ship"]).code(0);
    t.run(&["status"])
        .code(0)
        .stdout_has("reset (with `ship`); approved by alice at ")
        .stdout_has(", so it runs without asking again");
}

/// After `runbook reset`, `status` and the handoff say the run was reset
/// and resume runs what went back to pending, not that it was interrupted;
/// the JSON keeps SPEC §3's `interrupted`.
#[test]
fn after_a_reset_status_and_handoff_say_reset_and_what_resume_runs() {
    let t = Test::new().runbook(
        "two",
        "steps:\n  - id: a\n    run: 'true'\n  - id: b\n    needs: [a]\n    run: 'true'\n  - id: c\n    needs: [b]\n    run: 'true'\n",
    );
    t.run(&["run", "two"]).code(0);
    t.run(&["reset", "1", "b"]).code(0);
    t.run(&["status"])
        .code(0)
        .stdout_has("run 1 of two: reset: 2 steps pending, resume runs them (1/3 done; started ")
        .stdout_has(", last pass ended ")
        .stdout_lacks("interrupted");
    assert_eq!(t.status(None).state, "interrupted");
    t.run(&["list"])
        .code(0)
        .stdout_has(" reset ")
        .stdout_lacks("interrupted");
    t.run(&["handoff"])
        .code(0)
        .stdout_has("# Handoff: two — run 1 was reset")
        .stdout_has("was **reset**. 1 step is done. 2 steps were reset to pending; resume runs them. Nothing is waiting for anyone.")
        .stdout_has("Continue the run")
        .stdout_lacks("stopped **interrupted**")
        .stdout_lacks("When the above is done");
    t.run(&["handoff", "--format", "html"])
        .code(0)
        .stdout_has("run 1 was <span class=\"state interrupted\">reset</span>");
    t.run(&["resume"]).code(0);
    t.run(&["status"])
        .code(0)
        .stdout_has("run 1 of two: succeeded (3/3 done; started ")
        .stdout_has(", ended ");
}

/// A step that asks for an approval and is blocked behind a held one is
/// not one that "runs by itself": the handoff says it then waits for an
/// approval (found by a newcomer's hand run), and stops saying so once it
/// is approved.
#[test]
fn a_blocked_step_that_asks_for_an_approval_says_so_in_the_handoff() {
    let t = Test::new();
    t.put_runbook(
        "gate",
        "secrets:\n  RB_GATE_TOKEN:\n    owner: Lukas\n    description: a token\nsteps:\n  - id: use-token\n    requires: [RB_GATE_TOKEN]\n    run: 'true'\n  - id: ship\n    needs: [use-token]\n    approval: Ship it?\n    run: 'true'\n  - id: after\n    needs: [use-token]\n    run: 'true'\n",
    );
    t.run(&["run", "gate"]).code(3);
    t.run(&["handoff"])
        .code(0)
        .stdout_has("- `ship`: `use-token` is held; then it waits for an approval\n")
        .stdout_has("- `after`: `use-token` is held\n");
    t.run(&["approve", "1", "ship"]).code(0);
    t.run(&["handoff"])
        .code(0)
        .stdout_has("- `ship`: `use-token` is held\n")
        .stdout_lacks("waits for an approval");
}
