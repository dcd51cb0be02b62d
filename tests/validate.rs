//! SPEC §1 validation: every rule gives exit 2 with file, line and column,
//! and nothing runs.

mod support;
use support::Test;

/// Runs `run bad` on the runbook and checks: exit 2, the message, the
/// `bad.yaml:LINE:` place, no side effect and no state written.
fn rejects(yaml: &str, message: &str, line: usize) -> support::Ran {
    let t = Test::new();
    let yaml = yaml.replace("MARK", &t.p("ran"));
    let t = t.runbook("bad", &yaml);
    let ran = t.run(&["run", "bad"]);
    ran.code(2)
        .stderr_has(message)
        .stderr_has(&format!("bad.yaml:{line}:"));
    assert!(t.read("ran").is_empty(), "a step ran despite the error");
    assert!(
        !t.state_file().exists(),
        "state was written despite the error"
    );
    // validate agrees
    t.run(&["validate", "bad"]).code(2).stderr_has(message);
    ran
}

#[test]
fn yaml_syntax_error() {
    rejects(
        "steps:\n  - id: a\n    run: touch MARK\n  - id: b\n   run: x\n",
        "",
        5,
    );
}

#[test]
fn unknown_key_with_hint() {
    rejects(
        "steps:\n  - id: a\n    run: touch MARK\n    tiemout: 5s\n",
        "unknown key `tiemout`",
        4,
    )
    .stderr_has("did you mean `timeout`?");
}

#[test]
fn unknown_top_level_key() {
    rejects(
        "step:\n  - id: a\n    run: touch MARK\n",
        "unknown key `step`",
        1,
    )
    .stderr_has("did you mean `steps`?");
}

#[test]
fn duplicate_ids() {
    rejects(
        "steps:\n  - id: a\n    run: touch MARK\n  - id: a\n    run: 'true'\n",
        "duplicate step id `a`",
        4,
    )
    .stderr_has("first step with this id is on line 2");
}

#[test]
fn needs_naming_no_step() {
    rejects(
        "steps:\n  - id: build\n    run: touch MARK\n  - id: deploy\n    needs: [biuld]\n    run: 'true'\n",
        "step \"deploy\" (steps[1]) needs `biuld`, but no step has that id",
        5,
    )
    .stderr_has("did you mean `build`?");
}

#[test]
fn cycle_names_steps_in_order() {
    rejects(
        "steps:\n  - id: a\n    needs: [c]\n    run: touch MARK\n  - id: b\n    needs: [a]\n    run: 'true'\n  - id: c\n    needs: [b]\n    run: 'true'\n  - id: free\n    run: touch MARK\n",
        "dependency cycle: a → c → b → a",
        3,
    );
}

#[test]
fn self_cycle() {
    rejects(
        "steps:\n  - id: a\n    needs: [a]\n    run: touch MARK\n",
        "step \"a\" (steps[0]) needs itself",
        3,
    );
}

#[test]
fn unknown_host() {
    rejects(
        "hosts:\n  web: { address: 127.0.0.1 }\nsteps:\n  - id: a\n    on: wbe\n    run: touch MARK\n",
        "unknown host `wbe`",
        5,
    )
    .stderr_has("did you mean `web`?");
}

#[test]
fn undeclared_secret() {
    rejects(
        "steps:\n  - id: a\n    requires: [TOKEN]\n    run: touch MARK\n",
        "requires secret `TOKEN`, which is not declared",
        3,
    );
}

#[test]
fn bad_duration() {
    rejects(
        "steps:\n  - id: a\n    timeout: 5 parsecs\n    run: touch MARK\n",
        "bad duration `5 parsecs`",
        3,
    );
}

#[test]
fn bad_default_duration() {
    rejects(
        "defaults:\n  retry_delay: soon\nsteps:\n  - id: a\n    run: touch MARK\n",
        "bad duration `soon`",
        2,
    );
}

#[test]
fn two_actions() {
    rejects(
        "steps:\n  - id: a\n    run: touch MARK\n    http: { url: 'http://127.0.0.1:1/' }\n",
        "step \"a\" (steps[0]) has 2 actions (run, http)",
        4,
    );
}

#[test]
fn bad_step_id() {
    rejects(
        "steps:\n  - id: Build_Step\n    run: touch MARK\n",
        "step id `Build_Step` is not allowed",
        2,
    );
}

#[test]
fn undefined_template_name() {
    rejects(
        "vars: { dir: /tmp }\nsteps:\n  - id: a\n    run: touch MARK\n  - id: b\n    run: ls {{ vars.dri }}\n",
        "`vars.dri` is undefined",
        6,
    );
}

#[test]
fn secret_used_without_requires() {
    rejects(
        "secrets:\n  TOKEN: { description: t, owner: Lukas }\nsteps:\n  - id: a\n    run: touch MARK\n  - id: b\n    run: echo {{ secrets.TOKEN }}\n",
        "step \"b\" (steps[1]), `run`: uses secret `TOKEN` but does not list it in `requires`",
        7,
    )
    // At the name itself, and said once (not again as an undefined name).
    .stderr_has("bad.yaml:7:18:")
    .stderr_has("1 problem found");
}

#[test]
fn text_that_looks_like_a_secret_is_not_a_use() {
    // `secrets.json` in a script and `secrets.yaml` in a doc are file names,
    // not template names: only `{{ secrets.X }}` syntax uses a secret.
    let t = Test::new().runbook(
        "files",
        "secrets:\n  T: { description: t, owner: o }\nsteps:\n  - id: a\n    doc: see secrets.yaml for the layout\n    run: cat secrets.json || true\n  - id: b\n    env: { F: \"secrets.txt\" }\n    http: { url: \"http://127.0.0.1:1/secrets.T\" }\n    retries: 0\n",
    );
    t.run(&["validate", "files"])
        .code(0)
        .stdout_has("ok (2 steps");
}

#[test]
fn undeclared_secret_in_a_template_at_its_line_and_column() {
    rejects(
        "secrets:\n  T: { description: t, owner: o }\nsteps:\n  - id: a\n    run: touch MARK\n  - id: b\n    requires: [T]\n    run: |\n      echo one\n      echo {{ secrets.T }} {{ secrets.NOPE | quote }}\n",
        "step \"b\" (steps[1]), `run`: uses `secrets.NOPE`, which is not declared",
        10,
    )
    .stderr_has("bad.yaml:10:31:")
    .stderr_has("1 problem found");
}

#[test]
fn a_secret_used_in_an_uploaded_template_must_be_required() {
    let t = Test::new();
    t.write("runbooks/files/app.conf.j2", "key = {{ secrets.T }}\n");
    t.write(
        "runbooks/files/plain.txt",
        "secrets.T is a file name here\n",
    );
    let t = t.runbook(
        "up",
        &format!(
            "secrets:\n  T: {{ description: t, owner: o }}\nsteps:\n  - id: a\n    upload: {{ src: files, dest: {dest}, template: true }}\n",
            dest = "/tmp/unused"
        ),
    );
    t.run(&["validate", "up"])
        .code(2)
        .stderr_has(
            "step \"a\" (steps[0]), `src`: uses secret `T` but does not list it in `requires`",
        )
        .stderr_has("up.yaml:5:");
    // Listed in `requires`, it validates; the plain file is rendered too but
    // uses nothing.
    t.write(
        "runbooks/up.yaml",
        "secrets:\n  T: { description: t, owner: o }\nsteps:\n  - id: a\n    requires: [T]\n    upload: { src: files, dest: /tmp/unused, template: true }\n",
    );
    t.run(&["validate", "up"]).code(0);
}

#[test]
fn wrong_type() {
    rejects(
        "steps:\n  - id: a\n    retries: many\n    run: touch MARK\n",
        "retries",
        3,
    );
}

#[test]
fn unknown_runbook_name_is_usage_error() {
    let t = Test::new().runbook("deploy", "steps:\n  - id: a\n    run: 'true'\n");
    t.run(&["run", "deplyo"])
        .code(2)
        .stderr_has("no runbook named `deplyo`")
        .stderr_has("did you mean `deploy`?");
}

#[test]
fn name_resolution_folder_and_path() {
    let t = Test::new();
    t.write(
        "runbooks/site/runbook.yaml",
        "steps:\n  - id: a\n    run: 'true'\n",
    );
    t.write("elsewhere/x.yaml", "steps:\n  - id: a\n    run: 'true'\n");
    t.run(&["validate", "site"])
        .code(0)
        .stdout_has("ok (1 step,");
    t.run(&["validate", "elsewhere/x.yaml"]).code(0);
    t.run(&["run", "site"]).code(0);
    assert_eq!(t.status(None).runbook, "site");
}

#[test]
fn valid_runbook_passes() {
    let t = Test::new().runbook(
        "good",
        "vars: { x: 1 }\nhosts:\n  web: { address: \"{{ env.WEB_HOST | default('127.0.0.1') }}\" }\nsecrets:\n  T: { description: d, owner: o }\nsteps:\n  - id: a\n    run: echo {{ vars.x | quote }}\n  - id: b\n    needs: [a]\n    requires: [T]\n    env: { T: \"{{ secrets.T }}\" }\n    run: 'true'\n",
    );
    t.run(&["validate", "good"])
        .code(0)
        .stdout_has("ok (2 steps, 1 host, 1 secret)");
}

/// A host address or user that starts with `-` would be read by ssh as
/// one of its options (`-oProxyCommand=...` runs a command locally).
#[test]
fn an_address_or_user_that_ssh_would_read_as_an_option_is_refused() {
    rejects(
        "hosts:\n  h: { address: \"-oProxyCommand=touch MARK\" }\nsteps:\n  - id: a\n    on: h\n    run: 'true'\n",
        "address starts with `-`",
        2,
    );
    rejects(
        "hosts:\n  h: { address: 127.0.0.1, user: \"-oProxyCommand=touch MARK\" }\nsteps:\n  - id: a\n    on: h\n    run: 'true'\n",
        "user starts with `-`",
        2,
    );
}

/// A step on a group with no hosts would vanish from the run, and what
/// needs it would go on as if it had run.
#[test]
fn a_step_on_an_empty_group_is_refused() {
    let t = Test::new();
    t.write(
        "runbooks/inv.ini",
        "[web]\n[db]\nd1 ansible_host=127.0.0.1\n",
    );
    t.put_runbook(
        "bad",
        &format!(
            "inventory: inv.ini\nsteps:\n  - id: deploy\n    on: web\n    run: 'true'\n  - id: after\n    needs: [deploy]\n    run: touch {}\n",
            t.p("ran")
        ),
    );
    t.run(&["run", "bad"])
        .code(2)
        .stderr_has("runs on group `web`, which has no hosts")
        .stderr_has("bad.yaml:4:");
    assert!(!t.path().join("ran").exists());
}

/// A `--var` typo is refused before anything runs, on `run`, `resume` and
/// `validate`, with the runbook's vars and the likely one; a var the
/// runbook only reads (`vars.NAME | default(...)`) may be given.
#[test]
fn a_var_the_runbook_does_not_have_is_refused() {
    let t = Test::new();
    let mark = t.p("ran");
    let t = t.runbook(
        "v",
        &format!(
            "vars:\n  host: default.example\n  port: \"22\"\nsteps:\n  - id: a\n    run: echo {{{{ vars.host }}}} {{{{ vars.extra | default('none') }}}} >> {mark}\n"
        ),
    );
    let ran = t.run(&["run", "v", "--var", "hots=prod.example"]);
    ran.code(2)
        .stderr_has("`--var hots` names no var of this runbook")
        .stderr_has("did you mean `--var host=...`?")
        .stderr_has("its vars: host, port")
        .stderr_has("v.yaml:1:");
    assert!(t.read("ran").is_empty(), "a step ran despite the typo");
    assert!(
        !t.state_file().exists(),
        "state was written despite the typo"
    );
    t.run(&["validate", "v", "--var", "hots=x"])
        .code(2)
        .stderr_has("`--var hots` names no var");
    // Declared, and only read with a default: both fine.
    t.run(&["run", "v", "--var", "host=h1", "--var", "extra=e1"])
        .code(0);
    assert_eq!(t.read("ran").trim(), "h1 e1");
    t.run(&["resume", "v", "--var", "prot=1"])
        .code(2)
        .stderr_has("did you mean `--var port=...`?");
}

/// An inventory host that Ansible would reach another way than plain ssh
/// (`ansible_connection=local`, extra ssh options, a password) is refused
/// where a step or an env file uses it, naming what it sets (never a
/// password); unused, or set back to ssh closer to the host, it is fine.
#[test]
fn an_inventory_host_reached_another_way_is_refused_where_it_is_used() {
    let t = Test::new();
    t.write(
        "runbooks/inv.ini",
        "[web]\nw1 ansible_host=127.0.0.1\nw2 ansible_host=127.0.0.1 ansible_ssh_common_args='-o ProxyJump=bastion'\n[ctl]\nlocalhost ansible_connection=local\n[secret]\ns1 ansible_host=127.0.0.1 ansible_ssh_pass=hunter2-not-shown\n[db]\nd1 ansible_host=127.0.0.1 ansible_connection=ssh\n[db:vars]\nansible_connection=local\n",
    );
    let mark = t.p("ran");
    for (on, message) in [
        ("web", "runs on `w2`, whose inventory entry sets `ansible_ssh_common_args` (extra ssh options)"),
        ("localhost", "sets `ansible_connection=local`"),
        ("secret", "sets `ansible_ssh_pass` (password login)"),
    ] {
        t.put_runbook(
            "bad",
            &format!("inventory: inv.ini\nsteps:\n  - id: deploy\n    on: {on}\n    run: touch {mark}\n"),
        );
        let ran = t.run(&["run", "bad"]);
        ran.code(2)
            .stderr_has(message)
            .stderr_has("bad.yaml:4:")
            .stderr_has("~/.ssh/config");
        assert!(!ran.stderr.contains("hunter2"), "{}", ran.stderr);
        assert!(!t.path().join("ran").exists());
    }
    t.put_runbook(
        "bad",
        "inventory: inv.ini\nenv_files:\n  - { host: localhost, path: /etc/x.env }\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    t.run(&["validate", "bad"])
        .code(2)
        .stderr_has("env_files reads a file on `localhost`");
    // Unused hosts don't matter; `ansible_connection=ssh` on the host wins
    // over its group's `local`.
    t.put_runbook(
        "good",
        "inventory: inv.ini\nsteps:\n  - id: a\n    on: d1\n    run: 'true'\n",
    );
    t.run(&["validate", "good"]).code(0);
}

/// A `--var` the runbook reads in other ways than `vars.NAME` in its own
/// text is accepted: in a file it uploads with `template: true`, as
/// `vars[ 'NAME' ]`, in a bare `when:` expression, or all at once through
/// `vars|items`; a typo is still refused.
#[test]
fn a_var_read_by_an_uploaded_template_or_a_subscript_may_be_given() {
    let t = Test::new();
    let out = t.p("out");
    t.write("runbooks/files/app.conf.j2", "port={{ vars.app_port }}\n");
    let t = t.runbook(
        "v",
        &format!(
            "steps:\n  - id: conf\n    upload: {{ src: files/app.conf.j2, dest: {out}, template: true }}\n  - id: b\n    needs: [conf]\n    when: vars.go == 'yes'\n    run: echo {{{{ vars[ 'who' ] }}}} >> {out}\n"
        ),
    );
    t.run(&[
        "run",
        "v",
        "--var",
        "app_port=8000",
        "--var",
        "go=yes",
        "--var",
        "who=me",
    ])
    .code(0);
    assert_eq!(t.read("out"), "port=8000\nme\n");
    t.run(&[
        "validate",
        "v",
        "--var",
        "app_prot=1",
        "--var",
        "go=no",
        "--var",
        "who=x",
    ])
    .code(2)
    .stderr_has("`--var app_prot` names no var");
    t.put_runbook(
        "all",
        &format!("steps:\n  - id: a\n    run: \"{{% for k, v in vars|items %}}echo {{{{ k }}}}={{{{ v }}}} >> {out}; {{% endfor %}}\"\n"),
    );
    t.run(&["run", "all", "--var", "anything=1"]).code(0);
    assert!(t.read("out").ends_with("anything=1\n"), "{}", t.read("out"));
}

/// A password never shows in an inventory's parse errors (a quote in it, a
/// space not quoted, a `[g:vars]` line without `=`), and an `!vault`
/// password in a YAML inventory is a password login too.
#[test]
fn inventory_passwords_stay_hidden_and_vault_ones_are_refused() {
    let t = Test::new();
    for (file, text) in [
        (
            "q.ini",
            "[s]\ns1 ansible_host=127.0.0.1 ansible_ssh_pass=it's-Hidden1\n",
        ),
        (
            "sp.ini",
            "[s]\ns1 ansible_host=127.0.0.1 ansible_password=correct Hidden2\n",
        ),
        ("gv.ini", "[s:vars]\nansible_ssh_pass Hidden3\n[s]\ns1\n"),
    ] {
        t.write(&format!("runbooks/{file}"), text);
        t.put_runbook(
            "bad",
            &format!("inventory: {file}\nsteps:\n  - id: a\n    run: 'true'\n"),
        );
        let ran = t.run(&["validate", "bad"]);
        ran.code(2)
            .stderr_has(&format!("inventory {}", t.p(&format!("runbooks/{file}"))))
            .stderr_has("line 2:")
            .stderr_has("sets a password (not shown)");
        assert!(!ran.stderr.contains("Hidden"), "{file}: {}", ran.stderr);
    }
    t.write(
        "runbooks/v.yml",
        "all:\n  hosts:\n    s1:\n      ansible_host: 127.0.0.1\n      ansible_password: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        66383439383437366\n",
    );
    t.put_runbook(
        "bad",
        "inventory: v.yml\nsteps:\n  - id: a\n    on: s1\n    run: 'true'\n",
    );
    let ran = t.run(&["validate", "bad"]);
    ran.code(2)
        .stderr_has("sets `ansible_password` (password login)");
    assert!(!ran.stderr.contains("66383439"), "{}", ran.stderr);
}

/// An http check `via` an inventory host that runbook does not reach as the
/// inventory says, or an env file on a group holding one, is refused like a
/// step on it.
#[test]
fn a_refused_host_is_refused_as_via_and_in_an_env_files_group() {
    let t = Test::new();
    t.write(
        "runbooks/inv.ini",
        "[web]\nw1 ansible_host=127.0.0.1\n[ctl]\nc1 ansible_host=127.0.0.1 ansible_connection=local\n[mixed]\nw1\nc1\n",
    );
    t.put_runbook(
        "bad",
        "inventory: inv.ini\nsteps:\n  - id: a\n    http: { url: 'http://127.0.0.1:1/', via: c1 }\n",
    );
    t.run(&["validate", "bad"])
        .code(2)
        .stderr_has("goes `via: c1`, whose inventory entry sets `ansible_connection=local`")
        .stderr_has("bad.yaml:4:");
    t.put_runbook(
        "bad",
        "inventory: inv.ini\nenv_files:\n  - { host: mixed, path: /etc/x.env }\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    t.run(&["validate", "bad"])
        .code(2)
        .stderr_has("env_files reads a file on `c1`");
    t.put_runbook(
        "good",
        "inventory: inv.ini\nsteps:\n  - id: a\n    http: { url: 'http://127.0.0.1:1/', via: w1 }\n",
    );
    t.run(&["validate", "good"]).code(0);
}

/// SPEC §14 "every problem at once": one `validate` reports each unknown key
/// (block and flow), a bad value, a bad duration, an unknown `needs` and an
/// undefined template name, each at its line and naming its step by id.
#[test]
fn every_problem_is_reported_in_one_pass() {
    let yaml = "steps:
  - id: build
    run: touch MARK {{ vars.nope }}
    timeout: 0s
    retires: 2
  - id: deploy
    needs: [biuld]
    run: echo hi
    tiemout: 5s
    retry_delay: -3s
  - id: check
    needs: [deploy]
    retries: many
    http: { url: \"http://127.0.0.1:1/a,b\", methd: GET }
    approvl: yes
";
    let ran = rejects(
        yaml,
        "unknown key `retires` in step \"build\" (steps[0])",
        5,
    );
    for (line, text) in [
        (9, "unknown key `tiemout` in step \"deploy\" (steps[1])"),
        (13, "step \"check\" (steps[2].retries): invalid type"),
        (14, "unknown key `methd` in step \"check\" (steps[2].http)"),
        (15, "unknown key `approvl` in step \"check\" (steps[2])"),
        (
            4,
            "step \"build\" (steps[0]): bad duration `0s` for `timeout`: a timeout of zero",
        ),
        (
            10,
            "step \"deploy\" (steps[1]): bad duration `-3s` for `retry_delay`: a duration cannot be negative",
        ),
        (7, "step \"deploy\" (steps[1]) needs `biuld`, but no step has that id"),
        (3, "step \"build\" (steps[0]), `run`: `vars.nope` is undefined"),
    ] {
        ran.stderr_has(text)
            .stderr_has(&format!("bad.yaml:{line}:"));
    }
    ran.stderr_has("9 problems found");
}

/// A misspelt `steps:` is one problem, not also "the runbook has no steps".
#[test]
fn a_misspelt_steps_key_is_one_problem() {
    rejects(
        "step:\n  - id: a\n    run: touch MARK\n",
        "1 problem found",
        1,
    );
}

/// SPEC §14: `approval` and `title` are templates. The question a held step
/// asks and the handoff's lines are rendered; an undefined name in either is
/// a validation error at its line.
#[test]
fn approval_and_title_are_templates() {
    let t = Test::new();
    let t = t.runbook(
        "ship",
        "vars: { version: \"1.4.2\" }\nsteps:\n  - id: deploy\n    title: \"Deploy {{ vars.version }}\"\n    approval: \"Ship {{ vars.version }} as {{ step.id }}?\"\n    run: echo deployed\n",
    );
    let ran = t.run(&["run", "ship"]);
    ran.code(3).stdout_has("Ship 1.4.2 as deploy?");
    assert!(!ran.stdout.contains("{{"), "{}", ran.stdout);
    t.run(&["handoff"])
        .stdout_has("`deploy`: Ship 1.4.2 as deploy?");
    t.run(&["approve", "1", "deploy", "--note", "ok"]).code(0);
    t.run(&["resume"]).code(0);
    t.run(&["handoff"]).stdout_has("Deploy 1.4.2");
    rejects(
        "steps:\n  - id: a\n    run: touch MARK\n    title: \"T {{ vars.nope }}\"\n    approval: \"Go {{ vars.nada }}?\"\n",
        "step \"a\" (steps[0]), `title`: `vars.nope` is undefined",
        4,
    )
    .stderr_has("step \"a\" (steps[0]), `approval`: `vars.nada` is undefined")
    .stderr_has("bad.yaml:5:");
}

/// SPEC §14: every problem inside a step names the step as
/// `step "ID" (steps[N])`, whichever check finds it; a cycle comes with the
/// other problems; a problem in `hosts:` written after `steps:` names no step.
#[test]
fn every_problem_in_a_step_names_it_by_id_and_place() {
    let yaml = "steps:
  - id: x
    run: touch MARK
    retires: 1
  - id: a
    needs: [c]
    on: wbe
    run: 'true'
  - id: c
    needs: [a]
    timeout: soon
    run: ls {{ vars.dri }}
hosts:
  web: { address: 127.0.0.1, portt: 22 }
";
    let ran = rejects(yaml, "unknown key `retires` in step \"x\" (steps[0])", 4);
    for (line, text) in [
        (6, "step \"a\" (steps[1]): dependency cycle: a → c → a"),
        (7, "step \"a\" (steps[1]): unknown host `wbe`"),
        (
            11,
            "step \"c\" (steps[2]): bad duration `soon` for `timeout`",
        ),
        (12, "step \"c\" (steps[2]), `run`: `vars.dri` is undefined"),
    ] {
        ran.stderr_has(&format!("bad.yaml:{line}:"))
            .stderr_has(text);
    }
    ran.stderr_has("bad.yaml:14:30: unknown key `portt` in hosts.web\n");
}

/// An undefined name in a template: the hint offers the near miss and
/// lists every name the renderer provides, `step.host` and `host` too.
#[test]
fn an_undefined_template_name_gets_a_near_miss_and_the_names_provided() {
    rejects(
        "hosts:\n  web1: { address: 127.0.0.1 }\nsteps:\n  - id: a\n    on: web1\n    run: touch MARK {{ step.hots }}\n",
        "`step.hots` is undefined",
        6,
    )
    .stderr_has("did you mean `step.host`?")
    .stderr_has("step.host (the host's name, empty on a local step)")
    .stderr_has("host.vars");
    rejects(
        "steps:\n  - id: a\n    run: touch MARK {{ host.name }}\n",
        "`host.name` is undefined",
        3,
    )
    .stderr_has("`host` is defined only on a step with `on:`");
}
