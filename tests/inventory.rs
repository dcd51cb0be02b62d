//! Inventory hosts are reached as ansible-core reaches them (issue 21).

mod support;
use support::Test;

use std::os::unix::fs::PermissionsExt;

/// A stand-in `ssh` first on PATH that records its arguments (one a line,
/// each call after a `--call--` line) and fails as an unreachable host.
fn recording_ssh(t: &Test) -> String {
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("ssh");
    let log = t.p("ssh-args");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho --call-- >> '{log}'\nfor a in \"$@\"; do echo \"$a\" >> '{log}'; done\necho 'ssh: connect to host: Connection refused' >&2\nexit 255\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The arguments of each ssh call that reached `address`.
fn calls_to(t: &Test, address: &str) -> Vec<Vec<String>> {
    t.read("ssh-args")
        .split("--call--\n")
        .map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|c| c.iter().any(|a| a == address))
        .collect()
}

/// A host that gives no port and no user gets no `-p` and no `-l`: ssh's
/// own configuration decides, as for Ansible. A host that gives them gets
/// both. (Before: `-p 22` for every host without a port.)
#[test]
fn no_port_and_no_user_unless_given() {
    let t = Test::new().runbook(
        "rb",
        "inventory: hosts.ini\nsteps:\n  - id: a\n    on: bare\n    run: 'true'\n  - id: b\n    on: given\n    run: 'true'\n",
    );
    t.write("runbooks/hosts.ini", "bare ansible_host=10.9.9.1\ngiven ansible_host=10.9.9.2 ansible_port=2201 ansible_user=deploy\n");
    let path = recording_ssh(&t);
    let t = t.env("PATH", &path);
    let ran = t.run(&["run", "runbooks/rb.yaml"]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    let bare = calls_to(&t, "10.9.9.1");
    assert!(
        !bare.is_empty(),
        "ssh never called for bare: {}",
        t.read("ssh-args")
    );
    for call in &bare {
        assert!(!call.iter().any(|a| a == "-p" || a == "-l"), "{call:?}");
    }
    let given = calls_to(&t, "10.9.9.2");
    assert!(!given.is_empty());
    for call in &given {
        let joined = call.join(" ");
        assert!(
            joined.contains("-p 2201") && joined.contains("-l deploy"),
            "{joined}"
        );
    }
    // The message names the host without inventing a port.
    assert!(!ran.stdout.contains("10.9.9.1:22") && !ran.stderr.contains("10.9.9.1:22"));
}

/// `hosts.NAME.port` and `hosts.NAME.user` are empty when not given.
#[test]
fn port_and_user_render_empty_when_not_given() {
    let t = Test::new().runbook(
        "rb",
        "hosts:\n  web: { address: 10.9.9.3 }\n  db: { address: 10.9.9.4, port: 2222, user: pg }\nsteps:\n  - id: show\n    run: echo \"[{{ hosts.web.port }}|{{ hosts.web.user }}] [{{ hosts.db.port }}|{{ hosts.db.user }}]\"\n",
    );
    t.run(&["run", "runbooks/rb.yaml"])
        .code(0)
        .stdout_has("[|] [2222|pg]");
}
