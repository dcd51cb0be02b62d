//! The handoff closes its own loop (issue 14, SPEC §10): notifications when
//! a run stops, bounded retries, no secret value in any payload.

mod support;
use support::http::HttpServer;
use support::webhook::{Webhook, HOOK_PATH};
use support::{signal, wait_for, Test};

use std::time::{Duration, Instant};

/// A three-line secret (a PEM key), as in tests/holds.rs.
const PEM: &str =
    "-----BEGIN RB TEST KEY-----\nq8Zx3mKp0Lw7Yt2RbN5vHc9JdF4sGa6E\n-----END RB TEST KEY-----";
/// A plain secret value.
const SECRET: &str = "s3cr3t-VALUE-a1b2c3d4e5";
/// A value whose check rejects it, and whose upstream echoes it back.
const CHECKED: &str = "zz-checked-9f8e7d6c5b";

/// Every value a payload must not carry, whole or a line of it.
fn needles() -> Vec<&'static str> {
    let mut n = vec![SECRET, CHECKED, "q8Zx3mKp0L"];
    n.extend(PEM.lines());
    n
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A runbook that ends held: `use` waits on RB_MISSING, `checked` on a
/// value its check rejects (the upstream echoes the value back), and `print`
/// prints two secrets that are found.
fn held_runbook(api: &str, notify: &str) -> String {
    format!(
        "description: Notify test\nnotify:\n{notify}vars: {{ api: \"{api}\" }}\nsecrets:\n  RB_MISSING: {{ owner: Lukas, description: the token Lukas issues }}\n  RB_LEAK: {{ owner: Lukas }}\n  RB_PEM: {{ owner: Lukas }}\n  RB_CHECKED:\n    owner: Maria\n    check:\n      http: {{ url: \"{{{{ vars.api }}}}/check?key={{{{ secrets.RB_CHECKED }}}}\" }}\nsteps:\n  - id: print\n    requires: [RB_LEAK, RB_PEM]\n    env: {{ V: \"{{{{ secrets.RB_LEAK }}}}\", K: \"{{{{ secrets.RB_PEM }}}}\" }}\n    run: |\n      echo \"plain $V\"\n      printf '%s\\n' \"$K\"\n  - id: use\n    needs: [print]\n    requires: [RB_MISSING]\n    run: 'true'\n  - id: checked\n    requires: [RB_CHECKED]\n    run: 'true'\n  - id: after\n    needs: [use]\n    run: 'true'\n"
    )
}

fn echoing_api() -> HttpServer {
    HttpServer::start(|r| (401, format!(r#"{{"message":"bad key in {}"}}"#, r.path)))
}

fn with_secrets(t: Test) -> Test {
    t.env("RB_LEAK", SECRET)
        .env("RB_PEM", PEM)
        .env("RB_CHECKED", CHECKED)
}

#[test]
fn a_held_run_posts_once_with_the_names_and_the_resume_command_and_no_value() {
    let api = echoing_api();
    let json_hook = Webhook::start();
    let slack_hook = Webhook::start();
    let notify =
        "  - url: \"{{ env.RB_HOOK }}\"\n  - url: \"{{ env.RB_SLACK }}\"\n    format: slack\n";
    let t = with_secrets(Test::new().runbook("n", &held_runbook(&api.url(), notify)))
        .env("RB_HOOK", &json_hook.url())
        .env("RB_SLACK", &slack_hook.url());
    let ran = t.run(&["run", "n"]);
    ran.code(3);
    assert!(ran.stderr.is_empty(), "stderr: {}", ran.stderr);

    let posts = json_hook.received();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].method, "POST");
    assert_eq!(posts[0].path, HOOK_PATH);
    assert!(posts[0]
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let body = &json_hook.bodies()[0];
    assert_eq!(body["run_id"], 1);
    assert_eq!(body["runbook"], "n");
    assert_eq!(body["state"], "held");
    assert_eq!(body["resume"], "runbook resume 1");
    assert_eq!(body["handoff"]["resume_command"], "runbook resume 1");
    let summary = body["summary"].as_str().unwrap();
    for name in ["RB_MISSING", "RB_CHECKED"] {
        assert!(summary.contains(name), "{summary}");
    }
    assert!(summary.contains("runbook resume 1"), "{summary}");
    let owners = body["handoff"]["owners"].to_string();
    assert!(
        owners.contains("RB_MISSING") && owners.contains("Maria"),
        "{owners}"
    );

    let slack = slack_hook.bodies();
    assert_eq!(slack.len(), 1);
    let text = slack[0]["text"].as_str().expect("slack body has text");
    assert!(
        text.contains("RB_MISSING") && text.contains("runbook resume 1"),
        "{text}"
    );
    assert_eq!(slack[0].as_object().unwrap().len(), 1, "{}", slack[0]);

    // Byte by byte: no value, no line of one, in any payload.
    for r in json_hook.received().iter().chain(&slack_hook.received()) {
        for needle in needles() {
            assert!(
                !carries(&r.body, needle),
                "{needle:?} in payload:\n{}",
                r.body
            );
        }
    }
    // The rejected value did reach the check (so it was there to leak).
    assert!(api.received().iter().any(|r| r.path.contains(CHECKED)));

    // The same message is not sent twice: a resume that changes nothing is quiet.
    t.run(&["resume"]).code(3);
    assert_eq!(json_hook.received().len(), 1);
    let s = t.status(None);
    assert_eq!(s.notifications.len(), 2, "{:?}", s.notifications);
    assert!(s
        .notifications
        .iter()
        .all(|n| n.delivered && n.state == "held"));
    // Where it went is shown by origin only: the hook's path is a credential.
    let table = t.run(&["status"]);
    table.stdout_has(&format!(
        "notified http://127.0.0.1:{} (run held)",
        json_hook.port
    ));
    table.stdout_lacks("hook-credential");
    for file in std::fs::read_dir(t.path().join("state")).unwrap().flatten() {
        let bytes = std::fs::read(file.path()).unwrap();
        assert!(!contains(&bytes, b"hook-credential"), "{:?}", file.path());
    }
}

/// Whether a payload carries `value`, as written or JSON-escaped.
fn carries(payload: &str, value: &str) -> bool {
    let escaped = serde_json::to_string(value).unwrap();
    let escaped = &escaped[1..escaped.len() - 1];
    contains(payload.as_bytes(), value.as_bytes())
        || contains(payload.as_bytes(), escaped.as_bytes())
}

#[test]
fn a_failed_run_notifies_with_the_redacted_output_tail() {
    // The redactor's fixtures: a plain value, a PEM key printed line by line,
    // a JSON credential whose decoded fields are printed, and a value with
    // a quote and a backslash (which JSON escapes).
    let sa = format!(
        "{{\n  \"type\": \"service_account\",\n  \"client_email\": \"deployer@proj-4711.iam.example.com\",\n  \"private_key\": \"{}\"\n}}",
        PEM.replace('\n', "\\n")
    );
    let odd = "pa\"ss\\wordXYZ123";
    let hook = Webhook::start();
    let yaml = "notify:\n  - url: \"{{ env.RB_HOOK }}\"\n  - url: \"{{ env.RB_HOOK }}?slack\"\n    format: slack\n    on: [failed]\nsecrets:\n  RB_LEAK: { owner: Lukas }\n  RB_PEM: { owner: Lukas }\n  RB_SA: { owner: Lukas }\n  RB_ODD: { owner: Lukas }\nsteps:\n  - id: leak\n    requires: [RB_LEAK, RB_PEM, RB_SA, RB_ODD]\n    env:\n      V: \"{{ secrets.RB_LEAK }}\"\n      K: \"{{ secrets.RB_PEM }}\"\n      KEY: \"{{ (secrets.RB_SA | from_json).private_key }}\"\n      WHO: \"{{ (secrets.RB_SA | from_json).client_email }}\"\n      O: \"{{ secrets.RB_ODD }}\"\n    run: |\n      echo \"plain $V\"\n      printf '%s\\n' \"$K\"\n      printf '%s\\n' \"$KEY\"\n      echo \"as $WHO with $O\"\n      exit 1\n";
    let t = with_secrets(Test::new().runbook("f", yaml))
        .env("RB_HOOK", &hook.url())
        .env("RB_SA", &sa)
        .env("RB_ODD", odd);
    t.run(&["run", "f"]).code(1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    let json = bodies.iter().find(|b| b.get("handoff").is_some()).unwrap();
    assert_eq!(json["state"], "failed");
    let tail = json["handoff"]["failed"][0]["output_tail"].to_string();
    assert!(tail.contains("plain [REDACTED:RB_LEAK]"), "{tail}");
    assert!(tail.contains("[REDACTED:RB_PEM]"), "{tail}");
    assert!(
        tail.contains("as [REDACTED:RB_SA] with [REDACTED:RB_ODD]"),
        "{tail}"
    );
    let mut values = needles();
    values.extend(["deployer@proj-4711", "wordXYZ123", odd, sa.as_str()]);
    for r in hook.received() {
        for value in &values {
            assert!(
                !carries(&r.body, value),
                "{value:?} in payload:\n{}",
                r.body
            );
        }
    }
}

/// One step held on a missing secret; notifications to `url`.
fn missing_runbook(url: &str, on: &str) -> String {
    format!(
        "notify:\n  - url: \"{url}\"\n    on: {on}\nenv_files: [late.env]\nsecrets:\n  RB_TOKEN: {{ owner: Lukas, description: the token }}\nsteps:\n  - id: first\n    run: 'true'\n  - id: use\n    needs: [first]\n    requires: [RB_TOKEN]\n    env: {{ T: \"{{{{ secrets.RB_TOKEN }}}}\" }}\n    run: echo \"using $T\"\n"
    )
}

#[test]
fn a_webhook_that_fails_three_times_gets_the_message_on_the_fourth() {
    let hook = Webhook::failing_first(3);
    let t = Test::new().runbook("m", &missing_runbook(&hook.url(), "[held]"));
    let start = Instant::now();
    let ran = t.run(&["run", "m"]);
    ran.code(3);
    assert!(ran.stderr.is_empty(), "stderr: {}", ran.stderr);
    assert!(start.elapsed() < Duration::from_secs(10));
    let posts = hook.received();
    assert_eq!(posts.len(), 4, "{posts:#?}");
    assert!(posts.windows(2).all(|w| w[0].body == w[1].body));
    let n = &t.status(None).notifications;
    assert_eq!(n.len(), 1);
    assert!(n[0].delivered && n[0].attempts == 4, "{n:?}");
}

#[test]
fn a_webhook_that_redirects_is_reported_not_counted_as_delivered() {
    // Following a 301 turns the POST into a GET: the message would be lost
    // while the redirect's 200 said it was delivered.
    let hook = Webhook::redirecting();
    let t = Test::new().runbook("m", &missing_runbook(&hook.url(), "[held]"));
    let ran = t.run(&["run", "m"]);
    ran.code(3)
        .stderr_has("was not delivered")
        .stderr_has("redirect");
    let posts = hook.received();
    assert!(posts.iter().all(|r| r.path != "/moved"), "{posts:#?}");
    assert_eq!(
        posts.len(),
        1,
        "a redirect does not heal by itself: {posts:#?}"
    );
    let n = &t.status(None).notifications;
    assert!(n.len() == 1 && !n[0].delivered, "{n:?}");
}

#[test]
fn a_webhook_that_never_answers_is_reported_and_the_exit_code_stays_3() {
    let hook = Webhook::silent();
    let t = Test::new()
        .runbook("m", &missing_runbook(&hook.url(), "[held]"))
        .env("RUNBOOK_NOTIFY_TIMEOUT", "300ms");
    let start = Instant::now();
    let ran = t.run(&["run", "m"]);
    let took = start.elapsed();
    ran.code(3)
        .stderr_has("notification to http://127.0.0.1:")
        .stderr_has("was not delivered after 4 attempts: no answer within 300ms");
    assert!(!ran.stderr.contains("hook-credential"), "{}", ran.stderr);
    // Four attempts of 0.3 s, and 0.5 + 1 + 2 s between them.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(hook.received().len(), 4);
    let s = t.status(None);
    assert_eq!(s.state, "held");
    assert_eq!(s.notifications.len(), 1);
    assert!(!s.notifications[0].delivered);
    assert!(s.notifications[0]
        .error
        .as_deref()
        .unwrap()
        .contains("no answer"));
    t.run(&["status"])
        .stdout_has("NOT notified http://127.0.0.1:");
    // Not delivered: the next resume tries again.
    t.run(&["resume"]).code(3);
    assert_eq!(hook.received().len(), 8);
}

#[test]
fn no_notify_and_an_unset_url_send_nothing() {
    let hook = Webhook::start();
    let t = Test::new().runbook("m", &missing_runbook("{{ env.RB_HOOK }}", "[held]"));
    // The variable is not set: nothing is sent, nothing is said.
    let ran = t.run(&["run", "m"]);
    ran.code(3);
    assert!(ran.stderr.is_empty(), "stderr: {}", ran.stderr);
    let t = t.env("RB_HOOK", &hook.url());
    t.run(&["resume", "--no-notify"]).code(3);
    assert!(hook.received().is_empty());
    t.run(&["resume"]).code(3);
    assert_eq!(hook.received().len(), 1);
    // Set but empty: nothing either.
    let quiet = Test::new()
        .runbook("m", &missing_runbook("{{ env.RB_HOOK }}", "[held]"))
        .env("RB_HOOK", "");
    let ran = quiet.run(&["run", "m"]);
    ran.code(3);
    assert!(ran.stderr.is_empty(), "stderr: {}", ran.stderr);
}

#[test]
fn bad_notify_entries_are_located_errors() {
    let base = "steps:\n  - id: a\n    run: 'true'\n";
    for (notify, says, line) in [
        (
            "notify:\n  - url: http://127.0.0.1:9/x\n    format: teams\n",
            "unknown variant `teams`",
            ":3:",
        ),
        (
            "notify:\n  - url: http://127.0.0.1:9/x\n    on: [held, done]\n",
            "unknown variant `done`",
            ":3:",
        ),
        (
            "notify:\n  - url: http://127.0.0.1:9/x\n    retries: 3\n",
            "unknown key `retries`",
            ":3:",
        ),
        (
            "secrets:\n  RB_HOOK: { owner: x }\nnotify:\n  - url: \"{{ secrets.RB_HOOK }}\"\n",
            "reads a secret",
            ":4:",
        ),
        (
            "notify:\n  - url: hooks.example.com/x\n",
            "is not an http or https URL",
            ":2:",
        ),
        (
            "notify:\n  - url: http://127.0.0.1:9/x\n  - url: ftp://x/\n",
            "`ftp://x/` is not an http or https URL",
            ":3:",
        ),
    ] {
        let t = Test::new().runbook("bad", &format!("{notify}{base}"));
        let ran = t.run(&["validate", "bad"]);
        ran.code(2).stderr_has(says).stderr_has(line);
    }
}

#[test]
fn ctrl_c_while_a_webhook_hangs_ends_the_command_at_once() {
    let hook = Webhook::silent();
    let t = Test::new()
        .runbook("m", &missing_runbook(&hook.url(), "[held]"))
        .env("RUNBOOK_NOTIFY_TIMEOUT", "30s");
    for wait in [false, true] {
        let before = hook.received().len();
        let args: &[&str] = if wait {
            &["resume", "--wait", "--interval", "1s"]
        } else {
            &["run", "m"]
        };
        let child = t.spawn(args);
        assert!(wait_for(Duration::from_secs(10), || hook.received().len() > before));
        signal(&child, "INT");
        let start = Instant::now();
        let ran = finish_within(child, Duration::from_secs(10));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "--wait {wait}: took {:?}",
            start.elapsed()
        );
        ran.code(130).stderr_has("was not delivered");
        assert!(!ran.stderr.contains("hook-credential"), "{}", ran.stderr);
        let s = t.status(None);
        assert_eq!(s.state, "held");
        let last = s.notifications.last().unwrap();
        assert!(!last.delivered, "{last:?}");
    }
}

/// Waits for a child, killing it after `limit`.
fn finish_within(mut child: std::process::Child, limit: Duration) -> support::Ran {
    wait_for(limit, || child.try_wait().ok().flatten().is_some());
    let _ = child.kill();
    support::finish(child)
}

#[test]
fn a_bad_notify_timeout_is_refused_before_a_run_is_recorded() {
    let t = Test::new()
        .runbook("m", &missing_runbook("", "[held]"))
        .env("RUNBOOK_NOTIFY_TIMEOUT", "banana");
    t.run(&["run", "m"])
        .code(2)
        .stderr_has("RUNBOOK_NOTIFY_TIMEOUT=\"banana\" is not a duration");
    // Nothing was recorded: the next run is a new one, not a resume of a
    // run that never ran.
    let t = t.env("RUNBOOK_NOTIFY_TIMEOUT", "10s");
    t.run(&["run", "m"]).code(3).stdout_lacks("resuming");
}

#[test]
fn a_slack_message_escapes_what_an_upstream_says() {
    // Slack (and Mattermost) read `<!channel>` as a mention of everyone and
    // `<url|text>` as a link: an upstream's words in a failed step's reason
    // must not become either.
    let api = HttpServer::start(|_| {
        (
            502,
            "<!channel> & <https://evil.example|log in here>".into(),
        )
    });
    let hook = Webhook::start();
    let yaml = format!(
        "notify:\n  - url: \"{}\"\n    format: slack\nsteps:\n  - id: probe\n    http: {{ url: \"{}/health\" }}\n",
        hook.url(),
        api.url()
    );
    let t = Test::new().runbook("f", &yaml);
    t.run(&["run", "f"]).code(1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1);
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|log in here&gt;"),
        "{text}"
    );
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://"),
        "{text}"
    );
    // The Markdown itself is intact: its code spans and emphasis.
    assert!(
        text.contains("`probe`") && text.contains("*failed*"),
        "{text}"
    );
}

#[test]
fn a_value_percent_encoded_in_a_failed_checks_url_is_redacted_everywhere() {
    // A check that cannot be made quotes its URL as reqwest shows it:
    // percent-encoded, where the plain value would not match.
    const SPACED: &str = "open sesame <42> über";
    let hook = Webhook::start();
    let yaml = format!(
        "notify:\n  - url: \"{}\"\nsecrets:\n  RB_SPACED:\n    owner: Lukas\n    check:\n      http: {{ url: \"http://127.0.0.1:1/check?key={{{{ secrets.RB_SPACED }}}}\" }}\n  RB_MISSING: {{ owner: Lukas }}\nsteps:\n  - id: use\n    requires: [RB_SPACED, RB_MISSING]\n    run: 'true'\n",
        hook.url()
    );
    let t = Test::new().runbook("e", &yaml).env("RB_SPACED", SPACED);
    let ran = t.run(&["run", "e", "--wait", "--timeout", "1s"]);
    ran.code(3);
    let status = t.run(&["status", "--json"]);
    let html = t.run(&["handoff", "--format", "html"]);
    let posted: String = hook.received().iter().map(|r| r.body.clone()).collect();
    assert!(!posted.is_empty());
    let db = std::fs::read(t.state_file()).unwrap();
    let forms = [
        "open sesame",
        "open%20sesame",
        "open+sesame",
        "%3C42%3E",
        "%C3%BCber",
    ];
    for (what, text) in [
        ("stdout", ran.stdout.as_bytes()),
        ("stderr", ran.stderr.as_bytes()),
        ("status", status.stdout.as_bytes()),
        ("html", html.stdout.as_bytes()),
        ("payload", posted.as_bytes()),
        ("state file", &db[..]),
    ] {
        for f in forms {
            assert!(!contains(text, f.as_bytes()), "{what} carries {f:?}");
        }
    }
    assert!(
        ran.stdout.contains("[REDACTED:RB_SPACED]"),
        "{}",
        ran.stdout
    );
}
