//! End to end: the hetzner-parity runbook against the sandbox (issue 5).

mod support;
use std::collections::BTreeMap;
use std::time::Duration;
use support::sandbox::{runbook_dir, Sandbox};
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

#[test]
fn first_run_holds_the_token_steps_and_lukas_tokens_finish_it() {
    let sb = Sandbox::start();
    let t = Test::new();
    let rb = runbook_path();
    t.run(&run_args(&sb, &rb, &[]))
        .code(3)
        .stdout_has("runbook handoff");
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
    assert!(env.contains("GITHUB_TOKEN=ghp_sandboxValidToken1111111111111111"));
    let github_container =
        std::fs::read_to_string(sb.root().join("containers/mcp-github.json")).unwrap();
    assert!(github_container
        .contains("\"GITHUB_PERSONAL_ACCESS_TOKEN\": \"ghp_sandboxValidToken1111111111111111\""));
}

/// The deployed file passes `docker-compose config` and has every point of
/// US-001, US-002, US-005 and US-007.
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
    let out = std::process::Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(&deploy)
        .output()
        .expect("docker-compose");
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
    for svc in [
        "open-webui",
        "mcp-proxy",
        "auth-service",
        "admin-portal",
        "postgres",
        "redis",
        "mcp-filesystem",
        "mcp-github",
        "mcp-clickup",
        "mcp-trello",
        "mcp-sonarqube",
        "mcp-excel",
        "mcp-dashboard",
    ] {
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
    let env = std::fs::read_to_string(deploy.join(".env")).unwrap();
    let webui_key = env
        .lines()
        .find_map(|l| l.strip_prefix("WEBUI_SECRET_KEY="))
        .unwrap();
    let proxy = section("mcp-proxy");
    // docker-compose v1 prints a port with a host ip in the short form.
    assert!(proxy.contains("- 127.0.0.1:8000:8000"), "{proxy}");
    assert!(!proxy.contains("published: 8000"), "{proxy}");
    assert!(
        proxy.contains("API_GATEWAY_MODE: 'false'")
            || proxy.contains("API_GATEWAY_MODE: \"false\""),
        "{proxy}"
    );
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
    assert!(webui.contains("published: 3100"), "{webui}");
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
    // US-008: the local code is what the proxy image was built from.
    let built = std::fs::read_to_string(sb.root().join("images/mcp-proxy/db.py")).unwrap();
    assert!(built.contains("def get_user_groups"));
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
    assert!(!sb.root().join("images/mcp-excel").exists());
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
    // The simulation is honest about it: the server's address answers.
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
    // The upstream is right again, but the proxy's tools answer 200 without data.
    std::fs::remove_file(sb.root().join("upstream/wrong-bodies")).unwrap();
    std::fs::write(sb.root().join("proxy-wrong-bodies"), "").unwrap();
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
    std::fs::write(sb.root().join("slow-build"), "20").unwrap();
    let t = Test::new();
    let rb = runbook_path();
    let child = t.spawn(&run_args(&sb, &rb, &[]));
    let building = sb.root().join("run/building");
    assert!(
        wait_for(Duration::from_secs(60), || building.exists()),
        "the rebuild never started"
    );
    signal(&child, "KILL");
    let _ = finish(child);
    let s = t.status(None);
    assert_eq!(s.state, "interrupted");
    assert_eq!(s.state_of("rebuild"), "interrupted");
    std::fs::remove_file(sb.root().join("slow-build")).unwrap();
    t.run(&["resume", "hetzner-parity"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("rebuild"), "succeeded");
    assert_eq!(s.state_of("verify-jwt"), "succeeded");
    assert_eq!(s.state_of("verify-no-phantoms"), "succeeded");
    sb.give_valid_tokens();
    t.run(&["resume"]).code(0);
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
    assert!(
        s.step("verify-jwt")
            .reason
            .as_deref()
            .unwrap()
            .contains("/anonymous"),
        "{:?}",
        s.step("verify-jwt").reason
    );
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
