//! The dry run tells the truth (SPEC §14): after each change a user makes
//! (edit a step, edit an upload source, delete a source file, change a
//! `--var`, reset a step, supply a held secret), the steps `--dry-run`
//! announces are exactly the steps the real command then starts.

mod support;
use std::collections::BTreeSet;
use support::Test;

/// The ids after one of the dry run's words.
fn said(stdout: &str, words: &[&str]) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("  ")?;
            let label = l.get(..17)?.trim_end();
            let id = l.get(18..)?.split_whitespace().next()?;
            words.contains(&label).then(|| id.to_string())
        })
        .collect()
}

/// The real command's events of one kind, as step ids.
fn events(stdout: &str, keep: impl Fn(&serde_json::Value) -> bool) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| keep(e))
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect()
}

/// Dry run, then the real command with the same arguments: the steps the
/// dry run says would run are the steps started, and those it finds
/// already satisfied are those the run finds so (returned: what runs).
fn same(t: &Test, args: &[&str]) -> BTreeSet<String> {
    let mut dry: Vec<&str> = args.to_vec();
    dry.push("--dry-run");
    let d = t.run(&dry);
    let would = said(&d.stdout, &["would run", "would rerun", "would reattach"]);
    let satisfied = said(&d.stdout, &["already satisfied"]);
    let mut real: Vec<&str> = args.to_vec();
    real.push("--json");
    let r = t.run(&real);
    assert!(
        !d.stderr.contains("problem") && !r.stderr.contains("problem"),
        "the runbook is valid: {}",
        r.stderr
    );
    let ran = events(&r.stdout, |e| e["event"] == "step_started");
    let found = events(&r.stdout, |e| {
        e["event"] == "step_finished"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("already satisfied"))
    });
    assert_eq!(
        (&would, &satisfied),
        (&ran, &found),
        "dry run announced (run, satisfied) {:?}, the run did {:?}\ndry run:\n{}",
        (&would, &satisfied),
        (&ran, &found),
        d.stdout
    );
    would
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

const BOOK: &str = r#"vars: { greeting: hello }
secrets:
  TOKEN: { description: a token }
steps:
  - id: build
    run: mkdir -p dist && echo "{{ vars.greeting }}" > dist/index.html
  - id: ship
    needs: [build]
    upload: { src: dist, dest: "DEST/site" }
  - id: conf
    upload: { src: files, dest: "DEST/conf" }
  - id: restart
    needs: [ship, conf]
    run: echo restart >> ../journal
  - id: check
    needs: [restart]
    run: echo check >> ../journal
  - id: lonely
    run: echo lonely >> ../journal
  - id: ensure
    run: touch ../ensured
    unless: test -f ../ensured
  - id: announce
    needs: [check]
    requires: [TOKEN]
    run: echo "announce" >> ../journal
"#;

#[test]
fn the_dry_run_announces_exactly_what_the_run_then_starts() {
    let t = Test::new();
    let dest = tempfile::tempdir().unwrap();
    t.write("runbooks/files/app.conf", "port=80\n");
    t.write("runbooks/files/extra.conf", "x=1\n");
    let book = BOOK.replace("DEST", &dest.path().display().to_string());
    t.put_runbook("site", &book);

    // A new run: everything but the held step.
    let first = same(&t, &["run", "site"]);
    assert!(first.contains("build") && !first.contains("announce"));

    // The held secret supplied: only the held step.
    let t = t.env("TOKEN", "tok-123");
    assert_eq!(same(&t, &["resume", "site"]), set(&["announce"]));

    // A fresh run with the `unless` already satisfied: found so by both.
    let fresh = same(&t, &["run", "site", "--fresh"]);
    assert!(fresh.contains("build") && !fresh.contains("ensure"));

    // Edit a step: it and what depends on it.
    t.put_runbook(
        "site",
        &book.replace("run: echo lonely >> ../journal", "run: \"false\""),
    );
    same(&t, &["run", "site", "--fresh"]);
    t.put_runbook("site", &book.replace("echo check", "echo checked"));
    assert_eq!(
        same(&t, &["resume", "site"]),
        set(&["lonely", "check", "announce"])
    );

    // Edit an upload source: the upload and its cascade.
    t.put_runbook(
        "site",
        &book.replace("run: echo lonely >> ../journal", "run: \"false\""),
    );
    same(&t, &["resume", "site"]);
    t.write("runbooks/files/app.conf", "port=8080\n");
    t.put_runbook("site", &book);
    assert_eq!(
        same(&t, &["resume", "site"]),
        set(&["conf", "restart", "check", "announce", "lonely"])
    );

    // Delete a source file: the upload again.
    t.put_runbook(
        "site",
        &book.replace("run: echo lonely >> ../journal", "run: \"false\""),
    );
    same(&t, &["run", "site"]);
    std::fs::remove_file(t.path().join("runbooks/files/extra.conf")).unwrap();
    t.put_runbook("site", &book);
    let deleted = same(&t, &["resume", "site"]);
    assert!(deleted.contains("conf") && deleted.contains("check"));

    // Change a --var: the build, the upload of what it built, the cascade.
    t.put_runbook(
        "site",
        &book.replace("run: echo lonely >> ../journal", "run: \"false\""),
    );
    same(&t, &["run", "site", "--fresh"]);
    t.put_runbook("site", &book);
    let var = same(&t, &["resume", "site", "--var", "greeting=bonjour"]);
    assert!(var.contains("build") && var.contains("ship") && var.contains("restart"));
    assert!(
        !var.contains("conf"),
        "a step the var does not touch stays done"
    );

    // Reset a step: it and what depends on it.
    let run = t.status(None).run_id.to_string();
    t.run(&["reset", &run, "restart"]).code(0);
    assert_eq!(
        same(&t, &["resume", "site", "--var", "greeting=bonjour"]),
        set(&["restart", "check", "announce"])
    );
}

#[test]
fn the_dry_run_lists_what_an_upload_would_write_and_remove_on_a_host_and_diffs_it_redacted() {
    let sshd = support::sshd::Sshd::start();
    let t = Test::new().env("API_KEY", "sk-very-secret-4242");
    let dest = sshd.dir.path().join("www");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("app.conf"), "key=old\nport=80\n").unwrap();
    std::fs::write(dest.join("same.txt"), "same\n").unwrap();
    std::fs::write(dest.join("stale.txt"), "stale\n").unwrap();
    std::fs::write(dest.join("token"), "host's own\n").unwrap();
    t.write(
        "runbooks/www/app.conf",
        "key={{ secrets.API_KEY }}\nport=80\n",
    );
    t.write("runbooks/www/same.txt", "same\n");
    t.write("runbooks/www/new.txt", "new\n");
    t.put_runbook(
        "r",
        &format!(
            "hosts:\n{}secrets:\n  API_KEY: {{ description: key }}\nsteps:\n  - id: sync\n    on: box\n    requires: [API_KEY]\n    upload: {{ src: www, dest: \"{}\", template: true, delete: true, exclude: [token] }}\n",
            sshd.host_yaml("box"),
            dest.display()
        ),
    );
    let d = dest.display();
    let out = t.run(&["run", "r", "--dry-run", "--diff"]);
    out.code(0)
        .stdout_has(&format!("would write {d}/app.conf (changed)"))
        .stdout_has(&format!("would write {d}/new.txt (new)"))
        .stdout_has(&format!("would remove {d}/stale.txt"))
        .stdout_has("-key=old")
        .stdout_has("+key=[REDACTED:API_KEY]")
        .stdout_lacks("sk-very-secret-4242")
        .stdout_lacks("same.txt (")
        .stdout_lacks(&format!("{d}/token"));
    // Nothing was changed on the host.
    assert_eq!(
        std::fs::read_to_string(dest.join("app.conf")).unwrap(),
        "key=old\nport=80\n"
    );
    assert!(dest.join("stale.txt").exists() && !dest.join("new.txt").exists());
}

/// An upload of what an earlier step builds still says which host it is on,
/// as every other remote step of the dry run does.
#[test]
fn a_built_upload_names_its_host() {
    let sshd = support::sshd::Sshd::start();
    let t = Test::new();
    let dest = sshd.dir.path().join("app.txt");
    t.put_runbook(
        "r",
        &format!(
            "hosts:\n{}steps:\n  - id: build\n    run: echo v1 > app.txt\n  - id: ship\n    needs: [build]\n    on: box\n    upload: {{ src: app.txt, dest: \"{}\" }}\n",
            sshd.host_yaml("box"),
            dest.display()
        ),
    );
    t.run(&["run", "r", "--dry-run"]).code(0).stdout_has(
        "would run         ship  (its source is built by an earlier step; contents not known yet; on box)",
    );
}

#[test]
fn past_a_held_step_the_dry_run_lists_what_follows_once_it_is_released() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "secrets:\n  TOKEN: { description: a token }\nsteps:\n  - id: prepare\n    run: \"true\"\n  - id: configure\n    needs: [prepare]\n    requires: [TOKEN]\n    run: \"true\"\n  - id: restart\n    needs: [configure]\n    run: \"true\"\n  - id: go-ahead\n    needs: [restart]\n    approval: Go?\n",
    );
    t.run(&["run", "r", "--dry-run"])
        .code(0)
        .stdout_has(&format!("{:<17} prepare", "would run"))
        .stdout_has(&format!(
            "{:<17} configure  (secret TOKEN is missing)",
            "would be held"
        ))
        .stdout_has(&format!(
            "{:<17} restart  (once the held step it needs is released)",
            "after release"
        ))
        .stdout_has(&format!("{:<17} go-ahead", "after release"));
    assert!(!t.state_file().exists(), "nothing was written");
}

/// The dry run lists steps in the order they would start: a step that needs
/// nothing starts with the first ones, before a step that waits for a
/// build, wherever each is written; the real run's start order agrees.
#[test]
fn the_dry_run_lists_a_step_that_needs_nothing_before_one_that_waits() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "steps:\n  - id: build\n    run: sleep 0.3; echo build >> order\n  - id: ship\n    needs: [build]\n    run: echo ship >> order\n  - id: lone\n    run: echo lone >> order\n",
    );
    let dry = t.run(&["run", "r", "--dry-run"]);
    dry.code(0);
    let listed: Vec<&str> = dry
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  would run"))
        .map(str::trim)
        .collect();
    assert_eq!(listed, ["build", "lone", "ship"], "{}", dry.stdout);
    t.run(&["run", "r"]).code(0);
    assert_eq!(t.lines("runbooks/order"), ["lone", "build", "ship"]);
}
