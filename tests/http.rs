//! The `http` action against a real loopback server.

mod support;
use support::http::HttpServer;
use support::Test;

#[test]
fn http_step_checks_status_body_and_json() {
    let server = HttpServer::start(|r| match r.path.as_str() {
        "/health" => (200, r#"{"status":"ok","user":{"login":"lukas"}}"#.into()),
        "/echo" => (201, format!("{{\"got\":{}}}", r.body)),
        _ => (404, "nope".into()),
    });
    let yaml = format!(
        "vars: {{ base: \"{url}\" }}\nsteps:\n  - id: health\n    http:\n      url: \"{{{{ vars.base }}}}/health\"\n      headers: {{ X-Token: abc }}\n      expect: {{ status: 200, body_contains: ok, body_not_contains: error, json: {{ /user/login: lukas }} }}\n  - id: post\n    http:\n      method: post\n      url: \"{{{{ vars.base }}}}/echo\"\n      json: {{ name: \"{{{{ step.id }}}}\" }}\n      expect: {{ status: [200, 201], json: {{ /got/name: post }} }}\n",
        url = server.url()
    );
    let t = Test::new().runbook("h", &yaml);
    t.run(&["run", "h"])
        .code(0)
        .stdout_has("GET")
        .stdout_has("→ 200");
    let reqs = server.received();
    assert!(reqs
        .iter()
        .any(|r| r.path == "/health" && r.header("x-token") == Some("abc")));
    assert!(reqs.iter().any(|r| r.method == "POST"
        && r.body.contains("\"post\"")
        && r.header("content-type") == Some("application/json")));
}

#[test]
fn failed_expectation_says_what_was_expected_and_what_came_back() {
    let server = HttpServer::start(|r| match r.path.as_str() {
        "/user" => (401, r#"{"message":"Bad credentials"}"#.into()),
        _ => (200, r#"{"login":"someone-else"}"#.into()),
    });
    let yaml = format!(
        "steps:\n  - id: status\n    http: {{ url: \"{u}/user\", expect: {{ status: 200 }} }}\n  - id: pointer\n    http: {{ url: \"{u}/me\", expect: {{ json: {{ /login: lukas }} }} }}\n  - id: down\n    http: {{ url: \"http://127.0.0.1:1/\" }}\n",
        u = server.url()
    );
    let t = Test::new().runbook("h", &yaml);
    t.run(&["run", "h"]).code(1);
    let s = t.status(None);
    let reason = |id: &str| s.reason_of(id);
    assert!(
        reason("status").contains("expected status 200, got 401")
            && reason("status").contains("Bad credentials"),
        "{}",
        reason("status")
    );
    assert!(
        reason("pointer").contains("expected /login = \"lukas\", got \"someone-else\""),
        "{}",
        reason("pointer")
    );
    assert!(reason("down").contains("127.0.0.1:1"), "{}", reason("down"));
}

#[test]
fn retries_make_a_wait_until_healthy_probe() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let server = HttpServer::start(move |_| {
        if h.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            (503, "starting".into())
        } else {
            (200, "ready".into())
        }
    });
    let yaml = format!("steps:\n  - id: wait\n    retries: 5\n    retry_delay: 50ms\n    http: {{ url: \"{}/\" }}\n", server.url());
    let t = Test::new().runbook("w", &yaml);
    t.run(&["run", "w"]).code(0);
    assert_eq!(t.status(None).step("wait").attempts, 3);
}

#[test]
fn a_url_that_is_not_one_is_rejected_before_anything_runs() {
    for (url, says) in [
        ("127.0.0.1:8000/health", "not a"),
        ("http//127.0.0.1/health", "not a URL"),
        ("ftp://127.0.0.1/x", "not an http or https URL"),
        ("{{ vars.base }}/health", "not an http or https URL"),
    ] {
        let yaml = format!(
            "vars: {{ base: \"localhost:8000\" }}\nsteps:\n  - id: before\n    run: touch ran\n  - id: probe\n    http:\n      url: \"{url}\"\n"
        );
        let t = Test::new().runbook("h", &yaml);
        let ran = t.run(&["run", "h"]);
        ran.code(2).stderr_has(says).stderr_has("h.yaml:7:");
        assert!(!t.path().join("runbooks/ran").exists(), "{url}: a step ran");
        assert!(!t.state_file().exists(), "{url}: state was written");
    }
}

#[test]
fn a_url_made_from_a_secret_is_checked_when_the_step_runs() {
    let t = Test::new()
        .runbook(
            "h",
            "secrets:\n  API_BASE: { description: base URL }\nsteps:\n  - id: probe\n    requires: [API_BASE]\n    http: { url: \"{{ secrets.API_BASE }}/health\" }\n  - id: free\n    run: 'true'\n",
        )
        .env("API_BASE", "not-a-url");
    t.run(&["run", "h"]).code(1);
    let s = t.status(None);
    let reason = s.reason_of("probe");
    assert!(reason.contains("is not a URL"), "{reason}");
    assert!(!reason.contains("not-a-url"), "the secret leaked: {reason}");
    assert_eq!(s.state_of("free"), "succeeded");
}
