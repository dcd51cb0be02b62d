//! End to end: the hetzner-parity runbook against the sandbox (issue 5), a
//! server whose stack runs on a real Docker Engine (issue 12): the tests read
//! what runs with `docker inspect`, not from the runbook's own output.

mod support;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use support::compose_env::{
    check_env_read_as_compose_reads_it, check_sent_what_the_container_got, SEED_AS_COMPOSE_READS_IT,
};
use support::sandbox::{runbook_dir, Sandbox, SERVICES};
use support::{finish, signal, wait_for, Test};

const TOKEN_SECRETS: [&str; 5] = [
    "GITHUB_TOKEN",
    "TRELLO_API_KEY",
    "TRELLO_API_TOKEN",
    "SONARQUBE_TOKEN",
    "SONARQUBE_ORG",
];
const HELD: [&str; 3] = ["apply-github", "apply-trello", "apply-sonarqube"];
const BLOCKED: [&str; 7] = [
    "refresh-github",
    "verify-github",
    "refresh-trello",
    "verify-trello",
    "refresh-sonarqube",
    "verify-sonarqube",
    "parity",
];

fn run_args<'a>(sb: &'a Sandbox, runbook: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", runbook];
    a.extend(sb.args.iter().map(String::as_str));
    a.extend(extra);
    a
}

/// The address the sandbox's server listens on (its own network namespace's
/// side when it has one).
fn server_address(sb: &Sandbox) -> String {
    sb.args
        .iter()
        .find_map(|a| a.strip_prefix("host="))
        .expect("host= in the sandbox's arguments")
        .to_string()
}

fn runbook_path() -> String {
    runbook_dir().join("runbook.yaml").display().to_string()
}

/// Seconds since the epoch of a Docker timestamp ("2026-11-24T18:49:11.18Z").
fn docker_time(ts: &str) -> u64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", ts, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a time: {ts}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What runs after the first run, read from the engine: 13 services, the
/// proxy's environment and ports, Open WebUI's port, the Trello and
/// SonarQube containers' environment, and images built during the run
/// without the cache a build of the same code made before it.
fn check_running_stack(sb: &Sandbox, run_start: u64, cached: &BTreeMap<&str, String>) {
    let running = sb.running();
    let names: Vec<&str> = running.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 13, "running: {names:?}");
    for svc in SERVICES {
        assert!(running.contains_key(svc), "{svc} is not running: {names:?}");
        // Up, and not a crash loop that `restart: unless-stopped` hides.
        let state = &sb.container(svc)["State"];
        assert_eq!(state["Status"], "running", "{svc}: {state}");
        let restarts = &sb.container(svc)["RestartCount"];
        assert_eq!(restarts, 0, "{svc} restarted {restarts} times");
    }
    let proxy = sb.env_of("mcp-proxy");
    let webui = sb.env_of("open-webui");
    assert!(!webui["WEBUI_SECRET_KEY"].is_empty());
    assert_eq!(proxy.get("WEBUI_SECRET_KEY"), webui.get("WEBUI_SECRET_KEY"));
    assert_eq!(proxy["API_GATEWAY_MODE"], "false");
    for key in [
        "GITHUB_TOKEN",
        "TRELLO_API_KEY",
        "TRELLO_API_TOKEN",
        "SONARQUBE_TOKEN",
        "SONARQUBE_ORG",
        "CLICKUP_API_KEY",
        "LINEAR_API_KEY",
        "NOTION_API_KEY",
        "HUBSPOT_ACCESS_TOKEN",
        "PULUMI_ACCESS_TOKEN",
        "GITLAB_TOKEN",
        "SENTRY_AUTH_TOKEN",
        "GITHUB_REMOTE_MCP_URL",
        "ASANA_TOKEN",
    ] {
        assert!(
            proxy.contains_key(key),
            "mcp-proxy's environment lacks {key}"
        );
    }
    assert_eq!(proxy["CLICKUP_API_KEY"], "pk_sandbox_clickup_key");
    // Port 8000 on the server's loopback only; Open WebUI on 3100.
    let bound = sb.published("mcp-proxy", "8000/tcp");
    assert!(!bound.is_empty(), "mcp-proxy publishes no 8000");
    for (ip, port) in &bound {
        assert_eq!((ip.as_str(), port.as_str()), ("127.0.0.1", "8000"));
    }
    assert!(
        sb.published("open-webui", "8080/tcp")
            .iter()
            .any(|(_, port)| port == "3100"),
        "{:?}",
        sb.published("open-webui", "8080/tcp")
    );
    let trello = sb.env_of("mcp-trello");
    assert_eq!(trello["TRELLO_TOKEN"], "expired-trello-token-0000");
    assert!(trello.contains_key("TRELLO_API_KEY"));
    let sonar = sb.env_of("mcp-sonarqube");
    assert!(sonar["SONARQUBE_URL"].starts_with("http"), "{sonar:?}");
    assert!(sonar.contains_key("SONARQUBE_ORG"));
    // Built during this run, and not from the cache: a build of the same
    // code before the run would have been reused by a build with cache.
    for svc in ["mcp-proxy", "mcp-excel", "mcp-dashboard"] {
        let image = sb.container(svc)["Image"].as_str().unwrap().to_string();
        let created = sb.inspect(&image)["Created"].as_str().unwrap().to_string();
        assert!(
            docker_time(&created) >= run_start,
            "{svc}'s image was created at {created}, before the run"
        );
        assert_ne!(&image, &cached[svc], "{svc}'s image came from the cache");
    }
    // US-008: the image runs the local code.
    let db = sb.docker(&["exec", &running["mcp-proxy"], "cat", "/app/db.py"]);
    assert!(db.contains("def get_user_groups"));
}

/// Builds the three images' sources as they are before the run, so that a
/// build with cache would reuse them; their image ids.
fn warm_cache(sb: &Sandbox) -> BTreeMap<&'static str, String> {
    let src = runbook_dir().join("sandbox/source");
    let mut ids = BTreeMap::new();
    for (svc, dir) in [
        ("mcp-proxy", "mcp-proxy"),
        ("mcp-excel", "mcp-servers/excel-creator"),
        ("mcp-dashboard", "mcp-servers/dashboard"),
    ] {
        let ctx = src.join(dir).display().to_string();
        let tag = format!("warm-cache/{svc}");
        sb.docker(&["build", "-q", "-t", &tag, &ctx]);
        ids.insert(svc, sb.inspect(&tag)["Id"].as_str().unwrap().to_string());
    }
    ids
}

#[test]
fn first_run_holds_the_token_steps_and_lukas_tokens_finish_it() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = runbook_path();
    let cached = warm_cache(&sb);
    // Image times have a one-second grain: start the run in a later second.
    std::thread::sleep(Duration::from_millis(1100));
    let run_start = now();
    let started = std::time::Instant::now();
    t.run(&run_args(&sb, &rb, &[]))
        .code(3)
        .stdout_has("runbook handoff");
    eprintln!("first run: {:.1}s", started.elapsed().as_secs_f64());
    let s = t.status(None);
    assert_eq!(s.state, "held");
    for step in &s.steps {
        let want = if HELD.contains(&step.id.as_str()) {
            "held"
        } else if BLOCKED.contains(&step.id.as_str()) {
            "blocked"
        } else if step.id == "confirm-compose" {
            // No --var confirm=true: no approval asked (the step is skipped).
            "skipped"
        } else {
            "succeeded"
        };
        assert_eq!(step.state, want, "step {} ({:?})", step.id, step.reason);
    }
    let github = s.step("apply-github");
    assert_eq!(github.rejected, vec!["GITHUB_TOKEN".to_string()]);
    assert!(
        github.reason.as_deref().unwrap().contains("401"),
        "{:?}",
        github.reason
    );

    // Lukas's page.
    let page = t.run(&["handoff"]);
    page.code(0)
        .stdout_has("### From Lukas")
        .stdout_has("runbook resume 1");
    for name in TOKEN_SECRETS {
        page.stdout_has(&format!("#### `{name}`"));
    }
    page.stdout_has(&format!(
        "`{}/.env` on host `hetzner`",
        sb.deploy().display()
    ));
    page.stdout_has("backups/run-1");

    // The proxy's port is on the server's loopback: from here only the
    // tunnel reaches it, not this machine's loopback, nor the server's address.
    if sb.netns.is_some() {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", sb.proxy_port())).is_err(),
            "port 8000 is reachable without the tunnel"
        );
        assert!(
            std::net::TcpStream::connect((server_address(&sb).as_str(), sb.proxy_port())).is_err(),
            "port 8000 is open on the server's network address"
        );
    }
    t.run(&["logs", "1", "verify-proxy-loopback"])
        .code(0)
        .stdout_has("published on 127.0.0.1:");
    check_deployed_compose(&sb);
    check_compose_diff(&t, &sb);
    check_running_stack(&sb, run_start, &cached);
    check_env_read_as_compose_reads_it(&sb);
    // The code sync mirrors the local checkout: a file gone locally is gone.
    assert!(!sb.deploy().join("mcp-proxy/legacy_gateway.py").exists());
    t.run(&["logs", "1", "sync-proxy"])
        .code(0)
        .stdout_has("removed")
        .stdout_has("legacy_gateway.py");

    // Lukas puts valid tokens in the server's .env; resume runs only what waited.
    let before: BTreeMap<String, (i64, Option<String>)> = s
        .steps
        .iter()
        .map(|st| (st.id.clone(), (st.attempts, st.finished_at.clone())))
        .collect();
    let ids = sb.running();
    sb.give_valid_tokens();
    t.run(&["resume", "hetzner-parity"]).code(0);
    let after = t.status(None);
    assert_eq!(after.state, "succeeded");
    for step in &after.steps {
        if HELD.contains(&step.id.as_str()) || BLOCKED.contains(&step.id.as_str()) {
            assert_eq!(step.state, "succeeded", "{}", step.id);
            assert!(step.attempts >= 1);
        } else {
            assert_eq!(
                (step.attempts, step.finished_at.clone()),
                before[&step.id],
                "{} ran again",
                step.id
            );
        }
    }
    let env = std::fs::read_to_string(sb.deploy().join(".env")).unwrap();
    // apply-env.sh writes it double-quoted (Compose reads back the value).
    assert!(env.contains("\nGITHUB_TOKEN=\"ghp_sandboxValidToken1111111111111111\"\n"));
    // The containers that needed the tokens were recreated with them; the
    // others (the database first) were left alone.
    assert_eq!(
        sb.env_of("mcp-github")["GITHUB_PERSONAL_ACCESS_TOKEN"],
        "ghp_sandboxValidToken1111111111111111"
    );
    assert_eq!(
        sb.env_of("mcp-trello")["TRELLO_TOKEN"],
        "sandbox-trello-token-2222"
    );
    assert_eq!(sb.env_of("mcp-sonarqube")["SONARQUBE_ORG"], "lukas-org");
    for (key, service, var) in [
        ("GITHUB_TOKEN", "mcp-github", "GITHUB_PERSONAL_ACCESS_TOKEN"),
        ("TRELLO_API_TOKEN", "mcp-trello", "TRELLO_TOKEN"),
        ("SONARQUBE_TOKEN", "mcp-sonarqube", "SONARQUBE_TOKEN"),
        ("SONARQUBE_ORG", "mcp-sonarqube", "SONARQUBE_ORG"),
    ] {
        check_sent_what_the_container_got(&sb, key, service, var);
    }
    assert_eq!(
        sb.env_of("mcp-proxy")["GITHUB_TOKEN"],
        "ghp_sandboxValidToken1111111111111111"
    );
    let now_ids = sb.running();
    assert_eq!(now_ids.len(), 13, "{now_ids:?}");
    for svc in ["mcp-github", "mcp-trello", "mcp-sonarqube", "mcp-proxy"] {
        assert_ne!(ids[svc], now_ids[svc], "{svc} was not recreated");
    }
    for svc in [
        "postgres",
        "redis",
        "open-webui",
        "mcp-excel",
        "mcp-filesystem",
    ] {
        assert_eq!(ids[svc], now_ids[svc], "{svc} was recreated");
    }
}

/// The deployed file passes `docker compose config` (Compose v2, as on the
/// server) and has every point of US-001, US-002, US-005 and US-007.
fn check_deployed_compose(sb: &Sandbox) {
    let deploy = sb.deploy();
    assert!(
        !deploy.join("docker-compose.hetzner.yml").exists(),
        "the second compose file is still there"
    );
    assert!(
        deploy
            .join("backups/run-1/docker-compose.hetzner.yml")
            .exists(),
        "the backup lacks the retired file"
    );
    assert!(deploy.join("backups/run-1/.env").exists());
    let out = std::process::Command::new("docker")
        .args(["compose", "-f", "docker-compose.yml", "config"])
        .current_dir(&deploy)
        .output()
        .expect("docker compose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8_lossy(&out.stdout).to_string();
    let services: Vec<&str> = cfg
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    for svc in SERVICES {
        assert!(
            services.contains(&svc),
            "service {svc} missing from {services:?}"
        );
    }
    let section = |name: &str| -> String {
        let start = cfg
            .find(&format!("\n  {name}:\n"))
            .unwrap_or_else(|| panic!("no {name}"));
        let rest = &cfg[start + 1..];
        let mut text = String::new();
        for line in rest.lines().skip(1) {
            if line.starts_with("  ") && !line.starts_with("   ") {
                break;
            }
            text.push_str(line);
            text.push('\n');
        }
        text
    };
    let webui_key = SEED_AS_COMPOSE_READS_IT[0].3;
    let proxy = section("mcp-proxy");
    // Compose v2 prints every port in the long form.
    assert!(
        proxy.contains("host_ip: 127.0.0.1\n        target: 8000\n        published: \"8000\""),
        "{proxy}"
    );
    assert!(proxy.contains("API_GATEWAY_MODE: \"false\""), "{proxy}");
    assert!(
        proxy.contains(&format!("WEBUI_SECRET_KEY: {webui_key}")),
        "{proxy}"
    );
    for key in [
        "GITHUB_TOKEN",
        "TRELLO_API_KEY",
        "TRELLO_API_TOKEN",
        "SONARQUBE_TOKEN",
        "CLICKUP_API_KEY",
        "LINEAR_API_KEY",
        "NOTION_API_KEY",
    ] {
        assert!(proxy.contains(&format!("{key}:")), "mcp-proxy lacks {key}");
    }
    let webui = section("open-webui");
    assert!(webui.contains("published: \"3100\""), "{webui}");
    assert!(!webui.contains("host_ip:"), "{webui}");
    assert!(webui.contains("\"auth_type\": \"session\""), "{webui}");
    assert!(
        webui.contains(&format!("WEBUI_SECRET_KEY: {webui_key}")),
        "{webui}"
    );
    let sonar = section("mcp-sonarqube");
    for key in ["SONARQUBE_TOKEN:", "SONARQUBE_URL:", "SONARQUBE_ORG:"] {
        assert!(sonar.contains(key), "mcp-sonarqube lacks {key}: {sonar}");
    }
    assert!(section("mcp-github").contains("GITHUB_PERSONAL_ACCESS_TOKEN:"));
    let trello = section("mcp-trello");
    assert!(
        trello.contains("TRELLO_API_KEY:") && trello.contains("TRELLO_TOKEN:"),
        "{trello}"
    );
    assert!(section("mcp-excel").contains("mcp-servers/excel-creator"));
    assert!(section("mcp-dashboard").contains("mcp-servers/dashboard"));
}

/// diff-compose showed the changes before the live file was replaced, and no
/// value from .env.
fn check_compose_diff(t: &Test, sb: &Sandbox) {
    let diff = t.run(&["logs", "1", "diff-compose"]);
    diff.code(0)
        .stdout_has("+ mcp-excel (new service)")
        .stdout_has("+ mcp-dashboard (new service)")
        .stdout_has("~ mcp-proxy")
        .stdout_has("+WEBUI_SECRET_KEY")
        .stdout_has("ports: none -> 127.0.0.1:8000->8000")
        .stdout_has("open-webui: 0.0.0.0:3100->8080 (all interfaces)")
        .stdout_has("mcp-proxy: 127.0.0.1:8000->8000\n")
        .stdout_has("2 added, 0 removed, 11 changed");
    let env = std::fs::read_to_string(sb.deploy().join("backups/run-1/.env")).unwrap();
    for line in env.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, value)) = line.split_once('=') {
            diff.stdout_lacks(value);
        }
    }
}

#[test]
fn confirm_true_holds_before_the_live_compose_file_is_replaced() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = runbook_path();
    let live = std::fs::read_to_string(sb.deploy().join("docker-compose.yml")).unwrap();
    let before = sb.running();
    t.run(&run_args(&sb, &rb, &["--var", "confirm=true"]))
        .code(3)
        .stdout_has("waiting for approval: Replace the live docker-compose.yml");
    let s = t.status(None);
    assert_eq!(s.state, "held");
    assert_eq!(s.state_of("diff-compose"), "succeeded");
    assert_eq!(s.state_of("confirm-compose"), "held");
    for step in ["install-compose", "rebuild", "wait-proxy"] {
        assert_eq!(s.state_of(step), "blocked", "{step}");
    }
    // Nothing on the server was replaced or restarted.
    assert_eq!(
        std::fs::read_to_string(sb.deploy().join("docker-compose.yml")).unwrap(),
        live
    );
    assert!(sb.deploy().join("docker-compose.hetzner.yml").exists());
    assert_eq!(
        sb.running(),
        before,
        "containers changed before the approval"
    );
    assert!(!sb.running().contains_key("mcp-excel"));
    t.run(&["logs", "1", "diff-compose"])
        .code(0)
        .stdout_has("+ mcp-excel (new service)");
    t.run(&["approve", "1", "confirm-compose"]).code(0);
    sb.give_valid_tokens();
    t.run(&["resume", "hetzner-parity"]).code(0);
    let s = t.status(None);
    assert_eq!(s.state, "succeeded");
    assert_ne!(
        std::fs::read_to_string(sb.deploy().join("docker-compose.yml")).unwrap(),
        live
    );
    assert!(!sb.deploy().join("docker-compose.hetzner.yml").exists());
    assert_eq!(sb.running().len(), 13);
}

#[test]
fn proxy_published_on_all_interfaces_fails_the_loopback_check() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = broken_copy(&t, |s| {
        s.replace("[\"127.0.0.1:8000:8000\"]", "[\"8000:8000\"]")
    });
    t.run(&run_args(&sb, &rb, &[])).code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("verify-proxy-loopback"), "failed");
    assert_eq!(s.state_of("parity"), "blocked");
    t.run(&["logs", "1", "verify-proxy-loopback"])
        .code(0)
        .stdout_has("published on 0.0.0.0:8000");
    assert!(sb
        .published("mcp-proxy", "8000/tcp")
        .contains(&("0.0.0.0".to_string(), "8000".to_string())));
    // Docker publishes it on every interface: the server's address answers.
    if sb.netns.is_some() {
        assert!(
            std::net::TcpStream::connect((server_address(&sb).as_str(), sb.proxy_port())).is_ok(),
            "the sandbox did not publish on every interface"
        );
    }
}

#[test]
fn wrong_bodies_fail_the_github_and_trello_checks() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = runbook_path();
    sb.give_valid_tokens();
    // The upstream answers 200 without the user or the boards.
    std::fs::write(sb.root().join("upstream/wrong-bodies"), "").unwrap();
    t.run(&run_args(&sb, &rb, &[])).code(3);
    let s = t.status(None);
    for (step, secret) in [
        ("apply-github", "GITHUB_TOKEN"),
        ("apply-trello", "TRELLO_API_KEY"),
    ] {
        let st = s.step(step);
        assert_eq!(st.state, "held", "{step}");
        assert!(st.rejected.contains(&secret.to_string()), "{st:?}");
        assert!(
            st.reason.as_deref().unwrap().contains("rejected: 200"),
            "{st:?}"
        );
    }
    assert_eq!(s.state_of("apply-sonarqube"), "succeeded");
    // The upstream is right again for the token checks, but answers the MCP
    // containers 200 without data: the proxy's tools answer 200 without it.
    std::fs::remove_file(sb.root().join("upstream/wrong-bodies")).unwrap();
    std::fs::write(sb.root().join("upstream/wrong-bodies-for-mcp"), "").unwrap();
    t.run(&["resume", "hetzner-parity"]).code(1);
    let s = t.status(None);
    for step in ["verify-github", "verify-trello"] {
        let st = s.step(step);
        assert_eq!(st.state, "failed", "{step}");
        assert!(
            st.reason
                .as_deref()
                .unwrap()
                .contains("expected the body to contain"),
            "{st:?}"
        );
    }
    assert_eq!(s.state_of("verify-sonarqube"), "succeeded");
}

#[test]
fn killed_during_the_rebuild_then_resume_completes() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = runbook_path();
    // The sample checkout, with a proxy image whose build takes a while.
    let src = source_copy(&t);
    let dockerfile = src.join("mcp-proxy/Dockerfile");
    let mut text = std::fs::read_to_string(&dockerfile).unwrap();
    text.push_str("RUN sleep 12\n");
    std::fs::write(&dockerfile, text).unwrap();
    let src_var = format!("source_dir={}", src.display());
    let child = t.spawn(&run_args(&sb, &rb, &["--var", &src_var]));
    // The engine is running the build's `sleep`: the rebuild is under way.
    assert!(
        wait_for(Duration::from_secs(120), || sb
            .docker(&["ps", "--no-trunc", "--format", "{{.Command}}"])
            .contains("sleep 12")),
        "the rebuild never started"
    );
    signal(&child, "KILL");
    let _ = finish(child);
    let s = t.status(None);
    assert_eq!(s.state, "interrupted");
    assert_eq!(s.state_of("rebuild"), "interrupted");
    t.run(&["resume", "hetzner-parity"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("rebuild"), "succeeded");
    assert_eq!(s.state_of("verify-jwt"), "succeeded");
    assert_eq!(s.state_of("verify-no-phantoms"), "succeeded");
    assert_eq!(sb.running().len(), 13);
    sb.give_valid_tokens();
    t.run(&["resume"]).code(0);
}

/// A copy of the sandbox's sample checkout, to change.
fn source_copy(t: &Test) -> std::path::PathBuf {
    let src = t.path().join("source");
    let cp = std::process::Command::new("cp")
        .arg("-R")
        .arg(runbook_dir().join("sandbox/source"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(cp.success());
    src
}

#[test]
fn the_old_proxy_code_fails_the_phantom_and_group_checks() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = runbook_path();
    // A checkout that still has the server's old tenants.py (every server
    // enabled) and db.py (no get_user_groups()).
    let src = source_copy(&t);
    for f in ["tenants.py", "db.py"] {
        std::fs::copy(
            runbook_dir().join("sandbox/seed/deploy/mcp-proxy").join(f),
            src.join("mcp-proxy").join(f),
        )
        .unwrap();
    }
    let src_var = format!("source_dir={}", src.display());
    t.run(&run_args(&sb, &rb, &["--var", &src_var])).code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("verify-no-phantoms"), "failed");
    assert!(
        s.reason_of("verify-no-phantoms").contains("/linear/"),
        "{}",
        s.reason_of("verify-no-phantoms")
    );
    // The user is recognised (the old db.py finds the email), without groups.
    assert_eq!(s.state_of("verify-jwt"), "failed");
    let why = s.reason_of("verify-jwt");
    assert!(why.contains("\"email\": \"lukas@example.com\""), "{why}");
    assert!(why.contains("\"groups\": []"), "{why}");
    assert_eq!(s.state_of("verify-excel"), "succeeded");
}

/// A copy of the runbook whose compose template is changed by `edit`.
fn broken_copy(t: &Test, edit: impl Fn(&str) -> String) -> String {
    let dir = t.path().join("rb");
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::copy(runbook_dir().join("runbook.yaml"), dir.join("runbook.yaml")).unwrap();
    for helper in ["apply-env.sh", "compose-diff.awk"] {
        std::fs::copy(
            runbook_dir().join("files").join(helper),
            dir.join("files").join(helper),
        )
        .unwrap();
    }
    let template =
        std::fs::read_to_string(runbook_dir().join("files/docker-compose.yml.j2")).unwrap();
    let changed = edit(&template);
    assert_ne!(changed, template, "the edit changed nothing");
    std::fs::write(dir.join("files/docker-compose.yml.j2"), changed).unwrap();
    dir.join("runbook.yaml").display().to_string()
}

#[test]
fn auth_type_none_fails_the_auth_verification() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = broken_copy(&t, |s| {
        s.replace("\"auth_type\": \"session\"", "\"auth_type\": \"none\"")
    });
    t.run(&run_args(&sb, &rb, &[])).code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("verify-auth-config"), "failed");
    assert_eq!(s.state_of("verify-jwt"), "blocked");
    t.run(&["logs", "1", "verify-auth-config"])
        .code(0)
        .stdout_has("auth_type \"session\"");
}

#[test]
fn a_proxy_without_the_webui_key_fails_the_jwt_verification() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = broken_copy(&t, |s| {
        s.replace(
            "      WEBUI_SECRET_KEY: ${WEBUI_SECRET_KEY}  # FR-3: same key as Open WebUI\n",
            "",
        )
    });
    t.run(&run_args(&sb, &rb, &[])).code(1);
    let s = t.status(None);
    assert_eq!(s.state_of("verify-auth-config"), "succeeded");
    assert_eq!(s.state_of("verify-jwt"), "failed");
    // The real proxy, without the key, sees an anonymous request.
    assert!(
        s.reason_of("verify-jwt").contains("\"anonymous\": true"),
        "{:?}",
        s.step("verify-jwt").reason
    );
    assert!(!sb.env_of("mcp-proxy").contains_key("WEBUI_SECRET_KEY"));
}

#[test]
fn a_missing_port_mapping_fails_the_health_wait() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = broken_copy(&t, |s| {
        s.replace("    ports: [\"127.0.0.1:8000:8000\"]\n", "")
    });
    let yaml = std::fs::read_to_string(&rb)
        .unwrap()
        .replace("retries: 30", "retries: 2");
    std::fs::write(&rb, yaml).unwrap();
    t.run(&run_args(&sb, &rb, &[])).code(1);
    assert_eq!(t.status(None).state_of("wait-proxy"), "failed");
}

#[test]
fn the_runbook_validates_and_refuses_the_sample_checkout_for_a_real_server() {
    let t = Test::new();
    let rb = runbook_path();
    t.run(&["validate", &rb]).code(0);
    let ran = t.run(&["run", &rb, "--var", "host=127.0.0.1", "--var", "ssh_port=1"]);
    ran.code(1);
    let s = t.status(None);
    assert!(s.step("inputs").reason.is_some());
    t.run(&["logs", "1", "inputs"])
        .code(0)
        .stdout_has("sandbox's sample checkout");
    assert_eq!(s.state_of("preflight"), "blocked");
}

#[test]
fn down_leaves_nothing_running() {
    let sb = Sandbox::start();
    let root = sb.root();
    let dockerd: i32 = std::fs::read_to_string(root.join("engine/dockerd.pid"))
        .expect("the sandbox's own engine (tests run as root)")
        .trim()
        .parse()
        .unwrap();
    assert!(support::alive(dockerd));
    let running = sb.running();
    assert_eq!(running.len(), 11, "the server's old stack: {running:?}");
    let pids: Vec<i32> = running
        .values()
        .map(|id| sb.inspect(id)["State"]["Pid"].as_i64().unwrap() as i32)
        .collect();
    let sshd: i32 = std::fs::read_to_string(root.join("run/sshd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root.display().to_string()))
            .count()
    };
    assert!(mounts() > 0, "no overlay mounted under the data root");
    let ns = sb.netns.clone().expect("a namespace (tests run as root)");
    let status = std::process::Command::new(runbook_dir().join("sandbox/down.sh"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!support::alive(dockerd), "dockerd {dockerd} still runs");
    assert!(!support::alive(sshd), "sshd still runs");
    for pid in pids {
        assert!(!support::alive(pid), "container process {pid} still runs");
    }
    assert_eq!(mounts(), 0, "mounts left under {}", root.display());
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns),
        "namespace {ns} is still there"
    );
}
