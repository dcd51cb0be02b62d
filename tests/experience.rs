//! What the operator reads (issue 6): snapshots of the status table, the
//! end-of-run summary, the handoff page and each kind of diagnostic; plain
//! output without escape codes; graphs coloured by state; the JSON Schema;
//! completions.

mod support;
use support::Test;

/// Replaces what changes between runs: times, durations, temp paths.
fn stable(text: &str, t: &Test) -> String {
    normalise(&text.replace(&t.path().display().to_string(), "[DIR]"))
}

/// Timestamps become [TIME] and durations [DUR].
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            // 2026-11-24T07:53:17Z
            if i + 20 <= chars.len()
                && chars[i..i + 4].iter().all(|c| c.is_ascii_digit())
                && chars[i + 4] == '-'
                && chars[i + 10] == 'T'
                && chars[i + 19] == 'Z'
            {
                l.push_str("[TIME]");
                i += 20;
                continue;
            }
            // durations: 12ms, 1.0s, 2m05s — only when not part of a word
            if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric()) {
                let mut j = i;
                while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                    j += 1;
                }
                let rest: String = chars[j..].iter().take(3).collect();
                let unit = if rest.starts_with("ms") {
                    2
                } else if rest.starts_with('s')
                    && !rest[1..].starts_with(|c: char| c.is_alphanumeric())
                {
                    1
                } else {
                    0
                };
                if unit > 0 {
                    l.push_str("[DUR]");
                    i = j + unit;
                    // A table pads a duration to its column: the padding
                    // depends on the digits, so it becomes two spaces.
                    if chars[i..].starts_with(&[' ', ' ']) {
                        while chars.get(i) == Some(&' ') {
                            i += 1;
                        }
                        l.push_str("  ");
                    }
                    continue;
                }
            }
            l.push(chars[i]);
            i += 1;
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

fn mixed_run() -> Test {
    let t = Test::new();
    let yaml = "description: A run with every kind of ending\nsecrets:\n  API_TOKEN:\n    description: Token for the API\n    owner: Lukas\nsteps:\n  - id: build\n    title: Build it\n    run: echo built\n  - id: lint\n    when: \"false\"\n    run: 'true'\n  - id: migrate\n    needs: [build]\n    run: echo running migration 42 >&2; echo table users is locked >&2; exit 3\n  - id: publish\n    needs: [migrate]\n    run: 'true'\n  - id: tokened\n    needs: [build]\n    requires: [API_TOKEN]\n    doc: Uses the token to register the build.\n    run: 'true'\n  - id: announce\n    needs: [tokened]\n    run: 'true'\n  - id: gate\n    approval: Deploy to production now?\n    run: 'true'\n";
    t.put_runbook("mixed", yaml);
    t
}

#[test]
fn status_table_snapshot() {
    let t = mixed_run();
    t.run(&["run", "mixed"]).code(1);
    let ran = t.run(&["status"]);
    insta::assert_snapshot!("status_table", stable(&ran.stdout, &t));
}

#[test]
fn end_of_run_summary_snapshot() {
    let t = mixed_run();
    let ran = t.run(&["-q", "run", "mixed"]);
    ran.code(1);
    insta::assert_snapshot!("summary", stable(&ran.stdout, &t));
}

#[test]
fn handoff_page_snapshot() {
    let t = mixed_run();
    t.run(&["run", "mixed"]).code(1);
    let ran = t.run(&["handoff"]);
    insta::assert_snapshot!("handoff", stable(&ran.stdout, &t));
}

fn diagnostic(name: &str, yaml: &str) {
    let t = Test::new();
    t.put_runbook("bad", yaml);
    let ran = t.run(&["validate", "bad"]);
    ran.code(2);
    insta::assert_snapshot!(name, stable(&ran.stderr, &t));
}

#[test]
fn diagnostic_snapshots() {
    diagnostic(
        "diag_unknown_key",
        "steps:\n  - id: a\n    run: 'true'\n    retires: 2\n",
    );
    diagnostic("diag_unknown_need", "steps:\n  - id: build\n    run: 'true'\n  - id: deploy\n    needs: [biuld]\n    run: 'true'\n");
    diagnostic("diag_cycle", "steps:\n  - id: a\n    needs: [c]\n    run: 'true'\n  - id: b\n    needs: [a]\n    run: 'true'\n  - id: c\n    needs: [b]\n    run: 'true'\n");
    diagnostic(
        "diag_template",
        "vars: { dir: /srv }\nsteps:\n  - id: a\n    run: ls {{ vars.dri }}\n",
    );
    diagnostic(
        "diag_syntax",
        "steps:\n  - id: a\n    run: 'true'\n   - id: b\n",
    );
    diagnostic(
        "diag_duration",
        "steps:\n  - id: a\n    timeout: soon\n    run: 'true'\n",
    );
    diagnostic(
        "diag_host",
        "hosts:\n  web: { address: 10.0.0.1 }\nsteps:\n  - id: a\n    on: wbe\n    run: 'true'\n",
    );
}

#[test]
fn plain_output_has_no_escape_codes_unless_asked() {
    let t = mixed_run();
    let plain = t.run(&["run", "mixed"]);
    assert!(
        !plain.stdout.contains('\u{1b}') && !plain.stderr.contains('\u{1b}'),
        "{:?}",
        plain.stdout
    );
    let status = t.run(&["status"]);
    assert!(!status.stdout.contains('\u{1b}'));
    let forced = t.run(&["--color", "always", "status"]);
    assert!(
        forced.stdout.contains('\u{1b}'),
        "--color always must colour"
    );
    let bad = Test::new();
    bad.put_runbook("bad", "steps:\n  - id: a\n    runn: x\n");
    let diag = bad
        .command(&["validate", "bad"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&diag.stderr).contains('\u{1b}'));
}

#[test]
fn graph_colours_steps_by_state() {
    let t = mixed_run();
    t.run(&["run", "mixed"]).code(1);
    let dot = t.run(&["graph", "mixed", "--run", "1"]);
    dot.code(0);
    insta::assert_snapshot!("graph_dot", dot.stdout);
    let mermaid = t.run(&["graph", "mixed", "--format", "mermaid", "--run", "1"]);
    insta::assert_snapshot!("graph_mermaid", mermaid.stdout);
    assert!(mermaid.stdout.contains("class s_migrate failed"));
    assert!(mermaid.stdout.contains("class s_tokened,s_gate held"));
}

#[test]
fn committed_schema_is_current_and_every_runbook_validates() {
    let t = Test::new();
    let printed = t.run(&["schema"]);
    printed.code(0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("runbooks/runbook.schema.json")).unwrap();
    assert_eq!(printed.stdout, committed, "runbooks/runbook.schema.json is stale: run `runbook schema > runbooks/runbook.schema.json`");
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut files = vec![root.join("runbooks/demo.yaml")];
    for entry in std::fs::read_dir(root.join("runbooks")).unwrap().flatten() {
        if entry.path().join("runbook.yaml").exists() {
            files.push(entry.path().join("runbook.yaml"));
        }
    }
    assert!(files.len() >= 2);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{} lacks the schema line",
            file.display()
        );
        let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    // And the schema rejects what the parser rejects.
    let bad: serde_json::Value = serde_json::json!({"steps": [{"id": "a", "runn": "x"}]});
    assert!(!validator.is_valid(&bad));
}

#[test]
fn completions_include_runbook_names() {
    let t = Test::new().runbook("deploy-site", "steps:\n  - id: a\n    run: 'true'\n");
    for shell in ["bash", "zsh", "fish"] {
        t.run(&["completions", shell]).code(0).stdout_has("runbook");
    }
    let names = t
        .command(&["--", "runbook", "run", "dep"])
        .env("COMPLETE", "fish")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&names.stdout).contains("deploy-site"),
        "{}",
        String::from_utf8_lossy(&names.stdout)
    );
}

#[test]
fn every_command_help_shows_an_example() {
    let t = Test::new();
    for cmd in [
        "run",
        "resume",
        "status",
        "handoff",
        "approve",
        "reset",
        "logs",
        "validate",
        "graph",
        "list",
        "schema",
        "completions",
    ] {
        t.run(&[cmd, "--help"]).code(0).stdout_has("Example:");
    }
}

/// Words that are right (issue 20 point 9): one of a thing is singular.
#[test]
fn one_step_is_one_step() {
    let t = Test::new();
    t.put_runbook("one", "steps:\n  - id: a\n    run: 'true'\n");
    t.run(&["validate", "one"])
        .code(0)
        .stdout_has("ok (1 step, 0 hosts, 0 secrets)");
    t.run(&["run", "one"])
        .code(0)
        .stdout_has("run 1 of one: 1 step\n");
    t.run(&["reset", "1", "a"])
        .code(0)
        .stdout_has("reset 1 step of run 1 to pending: a\n");
    t.run(&["logs", "1", "a", "--attempt", "2"])
        .code(2)
        .stderr_has("has 1 attempt; pick --attempt 1..=1");
}

/// `logs` of a step that never started says so, as it does for a fleet's
/// instance, rather than asking for an `--attempt` in `1..=0` (found by a
/// newcomer's hand run).
#[test]
fn logs_of_a_step_that_never_started_says_so() {
    let t = Test::new();
    t.put_runbook(
        "two",
        "steps:\n  - id: a\n    run: 'false'\n  - id: b\n    needs: [a]\n    run: 'true'\n",
    );
    t.run(&["run", "two"]).code(1);
    t.run(&["logs", "1", "b"])
        .code(0)
        .stdout_has("(b has not started: it is blocked)\n");
    t.run(&["logs", "1", "b", "--attempt", "1"])
        .code(2)
        .stderr_has("has not started (it is blocked): there is no attempt 1 to show");
}
