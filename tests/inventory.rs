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
    // One file per call: two hosts are reached at the same time, and lines
    // appended by two processes to one file interleave.
    let log = t.p("ssh-args");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(mktemp '{log}/call.XXXXXX')\"\necho 'ssh: connect to host: Connection refused' >&2\nexit 255\n"),
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
    let mut files: Vec<_> = std::fs::read_dir(t.path().join("ssh-args"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
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
        "ssh never called for bare: {:?}",
        calls_to(&t, "")
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

/// An inventory with `all:vars`, group vars, a child group, host vars and
/// `group_vars/`/`host_vars/` files (files and a folder of files) beside
/// it: a step on the host reads `host.*` over the real sshd, and a local
/// step reads the same through `hosts.NAME.vars`, merged as ansible-core
/// merges them (checked by hand with `ansible-inventory --host box`). The
/// login user comes from `group_vars/all.yml` alone (issue 21).
#[test]
fn inventory_variables_reach_templates_locally_and_over_ssh() {
    let sshd = support::sshd::Sshd::start();
    let t = Test::new();
    t.write(
        "runbooks/hosts.ini",
        &format!(
            "[web]\nbox ansible_host=127.0.0.1 ansible_port={} ansible_ssh_private_key_file={} tier=line\n[prod:children]\nweb\n[prod:vars]\ntier=prod\nregion=eu\ncolor=red\n[web:vars]\ncolor=amber\n[all:vars]\nregion=all\ngreeting=hello world\n",
            sshd.port,
            sshd.client_key().display()
        ),
    );
    t.write(
        "runbooks/group_vars/all.yml",
        &format!(
            "ansible_user: {}\nregion: from-all-file\nsize: s\n",
            sshd.user
        ),
    );
    t.write("runbooks/group_vars/web/10.yml", "size: m\n");
    t.write("runbooks/group_vars/web/20.yaml", "size: l\nlist: [1, 2]\n");
    t.write("runbooks/host_vars/box", "only: mine\n");
    let out = t.p("remote-out");
    let runbook = format!(
        "inventory: {{ path: hosts.ini, known_hosts_file: {kh} }}\nsteps:\n  - id: remote\n    on: web\n    run: echo \"{{{{ host.name }}}}|{{{{ host.address }}}}|{{{{ host.user }}}}|{{{{ host.port }}}}|{{{{ host.vars.tier }}}}|{{{{ host.vars.region }}}}|{{{{ host.vars.color }}}}|{{{{ host.vars.size }}}}|{{{{ host.vars.list[1] }}}}|{{{{ host.vars.only }}}}|{{{{ host.vars.greeting }}}}\" > {out}\n  - id: local\n    run: echo \"[{{{{ hosts.box.vars.tier }}}}|{{{{ hosts.box.vars.size }}}}|{{{{ hosts.box.vars.only }}}}]\"\n",
        kh = sshd.known_hosts().display(),
    );
    let t = t.runbook("rb", &runbook);
    let ran = t.run(&["run", "runbooks/rb.yaml"]);
    ran.code(0).stdout_has("[line|l|mine]");
    assert_eq!(
        t.read("remote-out").trim(),
        format!(
            "box|127.0.0.1|{}|{}|line|from-all-file|amber|l|2|mine|hello world",
            sshd.user, sshd.port
        )
    );
}

/// A runbook host's own `vars:` are its `host.vars`; a name that is not
/// defined is a validation error, and so is `host` on a local step.
#[test]
fn runbook_host_vars_and_undefined_names() {
    let t = Test::new().runbook(
        "rb",
        "hosts:\n  web: { address: 10.9.9.5, vars: { tier: gold } }\nsteps:\n  - id: show\n    run: echo \"<{{ hosts.web.vars.tier }}>\"\n",
    );
    t.run(&["run", "runbooks/rb.yaml"])
        .code(0)
        .stdout_has("<gold>");
    t.put_runbook(
        "rb",
        "hosts:\n  web: { address: 10.9.9.5, vars: { tier: gold } }\nsteps:\n  - id: show\n    run: echo \"{{ hosts.web.vars.nope }}\"\n",
    );
    t.run(&["validate", "runbooks/rb.yaml"])
        .code(2)
        .stderr_has("nope");
    t.put_runbook(
        "rb",
        "steps:\n  - id: show\n    run: echo \"{{ host.name }}\"\n",
    );
    t.run(&["validate", "runbooks/rb.yaml"])
        .code(2)
        .stderr_has("host");
}
