//! `runbook serve` over HTTP (SPEC §12): the token, other origins, no
//! secret in any response, the API documents equal the CLI's.

mod support;

use std::time::Duration;

use reqwest::{redirect, Client, StatusCode};
use support::web::Server;
use support::Test;

const APPROVAL: &str = "steps:\n  - id: build\n    run: echo built\n  - id: gate\n    needs: [build]\n    approval: \"Ship it?\"\n  - id: ship\n    needs: [gate]\n    run: echo shipped\n";

fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn held_run() -> Test {
    let t = Test::new().runbook("deploy", APPROVAL);
    t.run(&["run", "deploy"]).code(3);
    t
}

#[tokio::test]
async fn every_request_needs_the_token() {
    let t = held_run();
    let s = Server::start(&t);
    let c = client();
    let paths = [
        "/",
        "/runs/1",
        "/runs/1/handoff",
        "/runs/1/steps/build",
        "/api/runs",
        "/api/runs/1",
        "/api/runs/1/events",
        "/api/runs/1/steps/build/output",
    ];
    for p in paths {
        let r = c.get(s.url(p)).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{p} without a token");
        let body: serde_json::Value = r.json().await.expect("JSON error");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("token")));
        let r = c
            .get(s.url(p))
            .bearer_auth("0".repeat(64))
            .send()
            .await
            .expect("get");
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{p} with a wrong token"
        );
        let r = c
            .get(s.url(p))
            .header("Cookie", "runbook_token=nope")
            .send()
            .await
            .expect("get");
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{p} with a wrong cookie"
        );
    }
    for p in [
        "/api/runs/1/steps/gate/approve",
        "/api/runs/1/steps/build/reset",
    ] {
        let r = c
            .post(s.url(p))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{p} without a token");
    }
    assert_eq!(
        t.status(Some("1")).state_of("gate"),
        "held",
        "nothing approved"
    );
    // The token in the URL once: a cookie (HttpOnly, SameSite=Strict), and the URL without it.
    let r = c
        .get(format!("{}/runs/1?token={}", s.base, s.token))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/runs/1");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    for p in paths.iter().filter(|p| !p.ends_with("events")) {
        let r = c
            .get(s.url(p))
            .header("Cookie", &pair)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{p} with the cookie");
        let r = c
            .get(s.url(p))
            .bearer_auth(&s.token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{p} with the bearer token");
    }
    let r = c
        .get(format!("{}/?token={}x", s.base, s.token))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong token in the URL"
    );
}

#[tokio::test]
async fn a_cross_origin_change_is_refused() {
    let t = held_run();
    let s = Server::start(&t);
    let c = client();
    let approve = s.url("/api/runs/1/steps/gate/approve");
    let body = serde_json::json!({"note": "from elsewhere", "by": "mallory"});
    let r = c
        .post(&approve)
        .bearer_auth(&s.token)
        .header("Origin", "http://evil.example")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(&approve)
        .bearer_auth(&s.token)
        .header("Sec-Fetch-Site", "cross-site")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(s.url("/api/runs/1/steps/build/reset"))
        .bearer_auth(&s.token)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let st = t.status(Some("1"));
    assert_eq!(st.state_of("build"), "succeeded", "not reset");
    t.run(&["resume", "1"]).code(3);
    // The same request from this origin is taken, under the name given.
    let host = s.base.trim_start_matches("http://").to_string();
    let r = c
        .post(&approve)
        .bearer_auth(&s.token)
        .header("Origin", format!("http://{host}"))
        .header("Sec-Fetch-Site", "same-origin")
        .json(&serde_json::json!({"note": "window ok", "by": "Lukas"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let msg: serde_json::Value = r.json().await.expect("json");
    assert!(msg["message"]
        .as_str()
        .expect("message")
        .contains("as Lukas"));
    t.run(&["resume", "1"]).code(0);
}

/// docs/web.md: a change with no `Origin` and no `Sec-Fetch-Site` (curl,
/// a script) is taken on its token alone, and refused without it.
#[tokio::test]
async fn a_change_without_origin_is_taken_on_its_token_alone() {
    let t = held_run();
    let s = Server::start(&t);
    let c = client();
    let approve = s.url("/api/runs/1/steps/gate/approve");
    let body = serde_json::json!({"by": "script"});
    let r = c.post(&approve).json(&body).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(&approve)
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let st = t.status(Some("1"));
    assert_eq!(st.step("gate").approved_by.as_deref(), Some("script"));
}

/// The run page says who approved a step, as status does: while it waits
/// for the resume (no Approve button any more), and once it has run.
#[tokio::test]
async fn the_run_page_shows_who_approved_a_step() {
    let t = held_run();
    let s = Server::start(&t);
    let c = client();
    let page = |c: Client, url: String, token: String| async move {
        let r = c.get(url).bearer_auth(token).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.expect("text")
    };
    let url = s.url("/runs/1");
    let before = page(c.clone(), url.clone(), s.token.clone()).await;
    assert!(before.contains("data-act=\"approve\""), "{before}");
    t.run(&["approve", "1", "gate", "--by", "Lukas"]).code(0);
    let waiting = page(c.clone(), url.clone(), s.token.clone()).await;
    assert!(waiting.contains("approved by Lukas at "), "{waiting}");
    assert!(!waiting.contains("data-act=\"approve\""), "{waiting}");
    t.run(&["resume", "1"]).code(0);
    let after = page(c.clone(), url, s.token.clone()).await;
    assert!(
        after.contains("<div class=\"approved\">approved by Lukas at "),
        "{after}"
    );
}

#[tokio::test]
async fn the_api_documents_equal_the_cli() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: noisy\n    run: for i in 1 2 3; do echo \"line $i\"; done; echo err >&2\n  - id: flaky\n    needs: [noisy]\n    run: echo \"try\"; test -f {}\n",
        t.p("ok")
    );
    t.put_runbook("two", &yaml);
    t.run(&["run", "two"]).code(1);
    t.write("ok", "");
    t.run(&["resume", "1"]).code(0);
    let s = Server::start(&t);
    let c = client();
    let get = |p: &str| c.get(s.url(p)).bearer_auth(&s.token).send();
    let api: serde_json::Value = get("/api/runs/1")
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let cli: serde_json::Value =
        serde_json::from_str(&t.run(&["status", "1", "--json"]).stdout).expect("cli json");
    assert_eq!(api, cli);
    for (path, args) in [
        ("/api/runs/1/steps/noisy/output", vec!["logs", "1", "noisy"]),
        ("/api/runs/1/steps/flaky/output", vec!["logs", "1", "flaky"]),
        (
            "/api/runs/1/steps/flaky/output?attempt=1",
            vec!["logs", "1", "flaky", "--attempt", "1"],
        ),
    ] {
        let r = get(path).await.expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain"));
        let text = r.text().await.expect("text");
        assert_eq!(text, t.run(&args).code(0).stdout.clone(), "{path}");
    }
    let list: serde_json::Value = get("/api/runs")
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let run = &list["runs"][0];
    assert_eq!(run["run_id"], 1);
    assert_eq!(run["runbook"], "two");
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["started_at"], cli["started_at"]);
    let html = get("/runs/1/handoff")
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let file = t
        .run(&["handoff", "1", "--format", "html"])
        .code(0)
        .stdout
        .clone();
    assert_eq!(html, file);
    // Errors: JSON with their status.
    for (path, status) in [
        ("/api/runs/99", StatusCode::NOT_FOUND),
        ("/api/runs/1/steps/nope/output", StatusCode::NOT_FOUND),
        (
            "/api/runs/1/steps/flaky/output?attempt=7",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/runs/1/steps/flaky/output?attempt=x",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = get(path).await.expect("get");
        assert_eq!(r.status(), status, "{path}");
        let e: serde_json::Value = r.json().await.expect("json");
        assert!(e["error"].is_string(), "{path}: {e}");
    }
    let r = c
        .post(s.url("/api/runs/1/steps/flaky/approve"))
        .bearer_auth(&s.token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "flaky asks for no approval"
    );
}

#[tokio::test]
async fn no_secret_value_in_any_response() {
    let secret = "s3cr3t-Web-Value-42";
    let t = Test::new()
        .runbook(
            "leak",
            "secrets:\n  RB_WEB_SECRET:\n    description: a token\n    owner: Lukas\nsteps:\n  - id: echo\n    requires: [RB_WEB_SECRET]\n    env: { T: \"{{ secrets.RB_WEB_SECRET }}\" }\n    run: echo \"value $T\"; echo \"err $T\" >&2\n  - id: fail\n    requires: [RB_WEB_SECRET]\n    env: { T: \"{{ secrets.RB_WEB_SECRET }}\" }\n    run: echo \"failing with $T\"; exit 3\n  - id: gate\n    approval: true\n",
        )
        .env("RB_WEB_SECRET", secret);
    t.run(&["run", "leak"]).code(1);
    let s = Server::start(&t);
    let c = client();
    let mut seen = String::new();
    for p in [
        "/",
        "/runs/1",
        "/runs/1?fragment=1",
        "/runs/1/handoff",
        "/runs/1/steps/echo",
        "/runs/1/steps/fail",
        "/api/runs",
        "/api/runs/1",
        "/api/runs/1/steps/echo/output",
        "/api/runs/1/steps/fail/output",
    ] {
        let r = c
            .get(s.url(p))
            .bearer_auth(&s.token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        let text = r.text().await.expect("text");
        assert!(!text.contains(secret), "{p} holds the secret:\n{text}");
        seen.push_str(&text);
    }
    assert!(
        seen.contains("value [REDACTED:RB_WEB_SECRET]"),
        "the output is there, redacted"
    );
    // A second pass while the page follows: the events carry no secret either.
    let mut events = c
        .get(s.url("/api/runs/1/events"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("events");
    t.run(&["resume", "1"]).code(1);
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains("run_finished") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), events.chunk()).await
        {
            got.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(got.contains("\"event\":\"run_finished\""), "events: {got}");
    assert!(!got.contains(secret), "events hold the secret: {got}");
}

#[tokio::test]
async fn events_follow_a_running_step_and_reset_waits_for_the_engine() {
    let t = Test::new();
    let yaml = format!(
        "steps:\n  - id: wait\n    run: echo started; while [ ! -f {go} ]; do sleep 0.05; done; echo done\n    timeout: 30s\n  - id: after\n    needs: [wait]\n    run: echo after\n",
        go = t.p("go")
    );
    t.put_runbook("slow", &yaml);
    let engine = t.spawn(&["run", "slow"]);
    assert!(support::wait_for(Duration::from_secs(10), || t
        .run(&["status", "--json"])
        .stdout
        .contains("\"running\"")));
    let s = Server::start(&t);
    let c = client();
    let r = c
        .post(s.url("/api/runs/1/steps/wait/reset"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CONFLICT, "an engine holds the run");
    let mut events = c
        .get(s.url("/api/runs/1/events"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("events");
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    t.write("go", "");
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains("run_finished") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), events.chunk()).await
        {
            got.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    support::finish(engine).code(0);
    let docs: Vec<serde_json::Value> = got
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).expect("one JSON event per data line"))
        .collect();
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["event"].as_str().unwrap_or(""),
                d["step"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(kinds.contains(&"step_output:wait".to_string()), "{kinds:?}");
    let wait_done = docs
        .iter()
        .find(|d| d["event"] == "step_finished" && d["step"] == "wait")
        .unwrap_or_else(|| panic!("no step_finished of wait: {got}"));
    assert_eq!(wait_done["state"], "succeeded");
    assert_eq!(wait_done["run_id"], 1);
    assert!(
        kinds.contains(&"step_finished:after".to_string()),
        "{kinds:?}"
    );
    let last = docs.last().expect("events");
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["state"], "succeeded");
    // Now no engine holds it: reset goes through, as `runbook reset`.
    let r = c
        .post(s.url("/api/runs/1/steps/after/reset"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t.status(Some("1")).state_of("after"), "pending");
}

/// A step that starts and ends between two polls (250 ms) still comes as
/// `step_started`, its lines as `step_output`, then `step_finished`.
#[tokio::test]
async fn events_keep_a_step_shorter_than_a_poll() {
    let t = held_run();
    let s = Server::start(&t);
    let c = client();
    let mut events = c
        .get(s.url("/api/runs/1/events"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("events");
    t.run(&["approve", "1", "gate"]).code(0);
    t.run(&["resume", "1"]).code(0);
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains("run_finished") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), events.chunk()).await
        {
            got.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let ship: Vec<serde_json::Value> = got
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).expect("one JSON event per data line"))
        .filter(|d: &serde_json::Value| d["step"] == "ship")
        .collect();
    let kinds: Vec<&str> = ship.iter().filter_map(|d| d["event"].as_str()).collect();
    assert_eq!(
        kinds,
        ["step_started", "step_output", "step_finished"],
        "events of ship: {got}"
    );
    assert_eq!(ship[0]["state"], "running");
    assert_eq!(ship[0]["attempt"], 1);
    assert_eq!(ship[1]["line"], "shipped");
    assert_eq!(ship[2]["state"], "succeeded");
}

#[test]
fn a_non_loopback_listen_needs_a_token_file() {
    let t = Test::new();
    t.run(&["serve", "--listen", "0.0.0.0:0"])
        .code(2)
        .stderr_has("--token-file");
    t.run(&["serve", "--listen", "not-an-address"]).code(2);
    t.write("short", "abc\n");
    t.run(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        &t.p("short"),
    ])
    .code(2)
    .stderr_has("at least 16");
    t.write("token", "0123456789abcdef0123\n");
    let mut child = t.spawn(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        &t.p("token"),
    ]);
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("http://0.0.0.0:"), "{first}");
    assert!(
        !first.contains("0123456789abcdef0123"),
        "the token is not printed: {first}"
    );
}

#[tokio::test]
async fn following_a_run_on_postgres_keeps_one_connection() {
    let pg = support::postgres::Postgres::shared();
    let db = pg.new_database();
    let t = Test::new().env("RUNBOOK_STATE", &pg.url(&db));
    let yaml = format!(
        "steps:\n  - id: wait\n    run: while [ ! -f {go} ]; do sleep 0.05; done\n",
        go = t.p("go")
    );
    t.put_runbook("slow", &yaml);
    let engine = t.spawn(&["run", "slow"]);
    assert!(support::wait_for(Duration::from_secs(10), || t
        .run(&["status", "--json"])
        .stdout
        .contains("\"running\"")));
    let s = Server::start(&t);
    let sessions = || {
        pg.sql(
            "postgres",
            &format!("SELECT sessions FROM pg_stat_database WHERE datname = '{db}'"),
        )
        .parse::<u64>()
        .unwrap()
    };
    let mut events = client()
        .get(s.url("/api/runs/1/events"))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("events");
    let before = sessions();
    // Twelve polls (250 ms each) of a run that does not change.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(200), events.chunk()).await;
    }
    let opened = sessions() - before;
    t.write("go", "");
    support::finish(engine).code(0);
    assert!(
        opened <= 1,
        "{opened} connections opened while following for 3s"
    );
}
