//! Fleets (SPEC §9, issue 15): one runbook over many hosts, each host a
//! network namespace with its own sshd (loopback addresses when not root).

mod support;
use support::fleet::Fleet;
use support::Test;

/// A runbook over the fleet's hosts with `groups:` and `steps`.
fn runbook(fleet: &Fleet, groups: &str, steps: &str) -> String {
    format!(
        "hosts:\n{}groups:\n{groups}steps:\n{steps}",
        fleet.hosts_yaml()
    )
}

/// Lines of a log the steps append to (all namespaces share the file system).
fn log_lines(t: &Test, name: &str) -> Vec<String> {
    let mut lines = t.lines(name);
    lines.sort();
    lines
}

#[test]
fn a_group_from_yaml_runs_once_per_host_each_on_its_own_address() {
    let fleet = Fleet::start(3);
    let t = Test::new();
    let log = t.p("log");
    let steps = format!(
        "  - id: deploy\n    on: web\n    run: echo \"{{{{ step.host }}}} $SSH_CONNECTION\" | cut -d' ' -f1,4 >> {log}\n  - id: check\n    on: web\n    needs: [deploy]\n    run: echo check {{{{ step.host }}}} >> {log}\n  - id: done\n    needs: [check]\n    run: echo done >> {log}\n"
    );
    t.put_runbook("r", &runbook(&fleet, "  web: [h*]\n", &steps));
    t.run(&["run", "r", "--jobs", "8"]).code(0);
    let lines = log_lines(&t, "log");
    let expected_addresses: Vec<String> = fleet
        .hosts
        .iter()
        .map(|(n, a, _)| format!("{n} {a}"))
        .collect();
    for e in &expected_addresses {
        assert!(lines.contains(e), "{e} missing from {lines:?}");
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("check ")).count(), 3);
    assert_eq!(t.lines("log").last().map(String::as_str), Some("done"));
    let s = t.status(None);
    assert_eq!(s.state_of("deploy@h2"), "succeeded");
    assert_eq!(s.step("check@h3").needs, vec!["deploy@h3".to_string()]);
    assert_eq!(
        s.step("done").needs,
        vec!["check@h1", "check@h2", "check@h3"]
    );
}
