//! Conformance suites: files runbook reads that other tools wrote, read as
//! those tools read them. Each case under tests/conformance/ was written
//! here, and its expectation was checked once against the real tool by the
//! script beside it (not run here: neither tool is needed to run this).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

fn suite(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
}

/// Every case of tests/conformance/dotenv reads as Docker Compose v2 read
/// it (expected.json, from `regenerate.py`): the same keys and values, and
/// a refusal where Compose refused, naming the file and a line.
#[test]
fn dotenv_as_docker_compose_reads_it() {
    let dir = suite("dotenv");
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_object().unwrap();
    let mut files = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(dir.join("cases")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let expected = cases
            .get(&stem)
            .unwrap_or_else(|| panic!("{stem} has no expectation: run regenerate.py"));
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        let name = format!("{stem}.env");
        let got = runbook::dotenv::parse(&String::from_utf8(bytes).unwrap(), &name, None);
        match (got, expected.get("values")) {
            (Ok(map), Some(values)) => {
                let want: BTreeMap<String, String> =
                    serde_json::from_value(values.clone()).unwrap();
                if map != want {
                    wrong.push(format!("{stem}: read {map:?}, Compose read {want:?}"));
                }
            }
            (Err(e), None) => {
                let line = e
                    .strip_prefix(&format!("{name}:"))
                    .and_then(|r| r.split(':').next());
                if line.and_then(|l| l.parse::<usize>().ok()).is_none() {
                    wrong.push(format!("{stem}: the refusal names no file:line: {e}"));
                }
            }
            (Ok(map), None) => wrong.push(format!("{stem}: read {map:?}, Compose refused it")),
            (Err(e), Some(_)) => wrong.push(format!("{stem}: refused ({e}), Compose read it")),
        }
    }
    assert_eq!(files, cases.len(), "a case in expected.json has no file");
    assert!(
        wrong.is_empty(),
        "{} of {files} cases differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A `.env` that Compose refuses leaves the secrets it would have given
/// `unavailable` (SPEC §13), the reason naming the file, the line and what
/// is wrong, never the value; the step that needs one is held, nothing runs.
#[test]
fn a_file_compose_refuses_leaves_its_secrets_unavailable_naming_the_line() {
    let t = support::Test::new().runbook(
        "rb",
        "env_files: [app.env]\nsecrets:\n  DB_PASS: {}\nsteps:\n  - id: use\n    requires: [DB_PASS]\n    run: touch used\n",
    );
    t.write(
        "runbooks/app.env",
        "APP=shop\nDB_PASS=\"s3cret-value\nNEXT=1\n",
    );
    let ran = t.run(&["run", "runbooks/rb.yaml", "--json"]);
    assert!(!t.path().join("runbooks/used").exists() && !t.path().join("used").exists());
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(!all.contains("s3cret-value"), "{all}");
    let status = t.run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let text = doc.to_string();
    assert!(text.contains("app.env:2:"), "{text}");
    assert!(!text.contains("s3cret-value"), "{text}");
    let unavailable = doc.pointer("/steps/0/unavailable");
    assert!(
        unavailable.is_some_and(|u| u.to_string().contains("DB_PASS")),
        "DB_PASS is not unavailable: {text}"
    );
}

/// A value as text for comparing: ansible-core reads `8080` in INI as a
/// number where runbook keeps the text; templates render both alike.
fn as_text(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) => n.to_string().into(),
        serde_json::Value::Bool(b) => b.to_string().into(),
        other => other.clone(),
    }
}

/// Every case of tests/conformance/inventory reads as ansible-core 2.19
/// read it (expected.json, from `regenerate.py`): each host's groups, its
/// merged variables (`group_vars/`, `host_vars/` included), and the
/// address, port, user and key ansible-core passed to ssh; a refusal where
/// Ansible refused.
#[test]
fn inventories_as_ansible_reads_them() {
    let dir = suite("inventory");
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut wrong = Vec::new();
    let mut checks = 0;
    for (case, expected) in doc["cases"].as_object().unwrap() {
        let file = expected["file"].as_str().unwrap();
        let got = runbook::runbook::inventory::read(&dir.join("cases").join(case).join(file), file);
        let inv = match (got, expected.get("hosts")) {
            (Err(_), None) => {
                checks += 1;
                continue;
            }
            (Err(e), Some(_)) => {
                wrong.push(format!("{case}: refused ({e}), Ansible read it"));
                continue;
            }
            (Ok(_), None) => {
                wrong.push(format!("{case}: read, Ansible refused it"));
                continue;
            }
            (Ok(inv), Some(_)) => inv,
        };
        let hosts = expected["hosts"].as_object().unwrap();
        let mine: Vec<&String> = inv.hosts.keys().collect();
        if mine.len() != hosts.len() {
            wrong.push(format!(
                "{case}: hosts {mine:?}, Ansible {:?}",
                hosts.keys().collect::<Vec<_>>()
            ));
        }
        for (name, want) in hosts {
            checks += 1;
            let Some(vars) = inv.hosts.get(name) else {
                wrong.push(format!("{case}: no host {name}"));
                continue;
            };
            let mut groups: Vec<&String> = inv
                .groups
                .iter()
                .filter(|(g, m)| *g != "all" && m.contains(name))
                .map(|(g, _)| g)
                .collect();
            groups.sort();
            let want_groups: Vec<String> = serde_json::from_value(want["groups"].clone()).unwrap();
            if groups
                .iter()
                .map(|g| g.as_str())
                .ne(want_groups.iter().map(String::as_str))
            {
                wrong.push(format!(
                    "{case} {name}: groups {groups:?}, Ansible {want_groups:?}"
                ));
            }
            let got_vars: BTreeMap<&String, serde_json::Value> =
                vars.vars.iter().map(|(k, v)| (k, as_text(v))).collect();
            let want_vars: BTreeMap<&String, serde_json::Value> = want["vars"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k, as_text(v)))
                .collect();
            if got_vars != want_vars {
                wrong.push(format!(
                    "{case} {name}: vars {got_vars:?}, Ansible {want_vars:?}"
                ));
            }
            let ssh = &want["ssh"];
            let address = vars.address.clone().unwrap_or_else(|| name.clone());
            for (what, mine, theirs) in [
                ("address", Some(address), &ssh["address"]),
                ("port", vars.port.clone(), &ssh["port"]),
                ("user", vars.user.clone(), &ssh["user"]),
                ("key", vars.identity_file.clone(), &ssh["key"]),
            ] {
                if mine.as_deref() != theirs.as_str() {
                    wrong.push(format!(
                        "{case} {name}: ssh {what} {mine:?}, ansible-core {theirs}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} differ of {checks} hosts and refusals:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        checks, 35,
        "the suite's size changed: update RELIABILITY.md"
    );
}

/// A `--env-file` that Compose refuses stops `run` before anything runs
/// (exit 2, naming the file and line, never the value): its secrets never
/// come silently from a later source (here the runbook's `env_files`).
#[test]
fn a_refused_env_file_argument_stops_the_run_naming_the_line() {
    let t = support::Test::new().runbook(
        "rb",
        "env_files: [app.env]\nsecrets:\n  DB_PASS: {}\nsteps:\n  - id: use\n    requires: [DB_PASS]\n    run: touch used\n",
    );
    t.write("runbooks/app.env", "DB_PASS=from-env-files\n");
    t.write("given.env", "OK=1\nDB_PASS=\"s3cret-value\n");
    let ran = t.run(&["run", "runbooks/rb.yaml", "--env-file", &t.p("given.env")]);
    ran.code(2).stderr_has("given.env:2:");
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(!all.contains("s3cret-value"), "{all}");
    assert!(!t.path().join("runbooks/used").exists() && !t.path().join("used").exists());
    // The same file once fixed is read, and the step runs.
    t.write("given.env", "OK=1\nDB_PASS=\"s3cret-value\"\n");
    t.run(&["run", "runbooks/rb.yaml", "--env-file", &t.p("given.env")])
        .code(0);
}
