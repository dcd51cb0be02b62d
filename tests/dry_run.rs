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
