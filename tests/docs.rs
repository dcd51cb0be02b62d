//! The documentation stays true (issue 11): the reference names every key of
//! the runbook format, every command and option and every JSON field, and
//! the guide's commands run as written and print what it shows.
//!
//! `DOCS_SHOW=1 cargo test --test docs the_guide -- --nocapture` prints what
//! each command of the guide printed, and reports mismatches instead of
//! stopping at the first: the way to refresh the guide's outputs.

mod support;
use support::http::HttpServer;
use support::sshd::Sshd;
use support::Test;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn bin(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run binary");
    assert!(out.status.success(), "runbook {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every property name in a JSON Schema, at any depth (definitions included).
fn property_names(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            for v in map.values() {
                property_names(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
        _ => {}
    }
}

/// The subcommands listed by `runbook --help` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long options (`--name`) of a help text.
fn long_options(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter_map(|l| {
            // `--name <V>` or `-n, --name <V>`; not `- value: text`.
            let b = l.as_bytes();
            let l = if b.len() > 4 && b[0] == b'-' && b[1].is_ascii_alphabetic() && &l[2..4] == ", "
            {
                &l[4..]
            } else {
                l
            };
            let opt = l.strip_prefix("--")?.split([' ', '\t']).next()?;
            Some(format!("--{opt}"))
        })
        .filter(|o| o != "--help" && o != "--version" && o.len() > 3)
        .collect()
}

/// What the reference must mention, and what it lacks.
fn missing_from(reference: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for schema in [bin(&["schema"]), read("runbooks/runbook.schema.json")] {
        let json: serde_json::Value = serde_json::from_str(&schema).expect("schema is JSON");
        let mut keys = BTreeSet::new();
        property_names(&json, &mut keys);
        assert!(keys.len() > 30, "too few keys found: {keys:?}");
        for key in keys {
            if !reference.contains(&format!("`{key}`")) && !missing.contains(&key) {
                missing.push(format!("key `{key}`"));
            }
        }
    }
    let help = bin(&["--help"]);
    let commands = subcommands(&help);
    assert!(commands.len() >= 10, "too few commands found: {commands:?}");
    for option in long_options(&help) {
        if !reference.contains(&option) {
            missing.push(format!("global option {option}"));
        }
    }
    for command in commands {
        if !reference.contains(&format!("runbook {command}")) {
            missing.push(format!("command `runbook {command}`"));
        }
        for option in long_options(&bin(&[&command, "--help"])) {
            if !reference.contains(&option) {
                missing.push(format!("option {option} of `runbook {command}`"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

#[test]
fn the_reference_names_every_key_command_and_option() {
    let reference = read("docs/reference.md");
    let missing = missing_from(&reference);
    assert!(
        missing.is_empty(),
        "docs/reference.md does not mention: {missing:#?}"
    );
    // The check can fail: drop a key, a command and an option, and it notices.
    let cut = reference
        .replace("`known_hosts_file`", "")
        .replace("runbook reset", "")
        .replace("--dry-run", "");
    let missing = missing_from(&cut);
    for lost in [
        "key `known_hosts_file`",
        "command `runbook reset`",
        "option --dry-run of `runbook run`",
    ] {
        assert!(
            missing.iter().any(|m| m == lost),
            "{lost} not noticed: {missing:?}"
        );
    }
}

/// A fenced block of the guide.
#[derive(Debug)]
struct Block {
    /// The info string after the backticks.
    info: String,
    /// Its text.
    text: String,
    /// Line of the opening fence (1-based).
    line: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => {
                current = Some(Block {
                    info: info.trim().to_string(),
                    text: String::new(),
                    line: i + 1,
                })
            }
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// `key=value` from an info string (`sh exit=3`).
fn attr<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Whether `expected` (with `…` for what changes between runs) matches a line
/// of `actual`: its pieces appear in that line, in order.
fn matches(expected: &str, actual: &str) -> bool {
    actual.lines().any(|line| {
        let mut rest = line;
        expected.trim().split('…').all(|piece| {
            let piece = piece.trim();
            match rest.find(piece) {
                Some(at) => {
                    rest = &rest[at + piece.len()..];
                    true
                }
                None => false,
            }
        })
    })
}

/// Replaces the guide's example host entry `  web:` (and its indented lines)
/// with the test sshd's.
fn substitute_host(yaml: &str, sshd: &Sshd) -> String {
    let mut out = String::new();
    let mut in_web = false;
    for line in yaml.lines() {
        // `web`, and the guide's fleet `web1`..`web9`, all on the one sshd.
        let name = line.trim().trim_end_matches(':');
        let fleet = name.len() == 4 && name.starts_with("web") && name[3..].parse::<u8>().is_ok();
        if line.starts_with("  w") && line.ends_with(':') && (name == "web" || fleet) {
            in_web = true;
            out.push_str(&sshd.host_yaml(name));
            continue;
        }
        if in_web && line.starts_with("    ") {
            continue;
        }
        in_web = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The address the guide uses for its example API.
const GUIDE_API: &str = "http://127.0.0.1:8080";
/// The token the guide supplies.
const GUIDE_TOKEN: &str = "s3cret-token";

#[test]
fn the_guide_runs_as_written() {
    let guide = read("docs/guide.md");
    let sshd = Sshd::start();
    let api = HttpServer::start(|req| {
        if req.header("authorization") == Some(&format!("Bearer {GUIDE_TOKEN}")) {
            (200, r#"{"login": "me"}"#.to_string())
        } else {
            (401, r#"{"message": "Bad credentials"}"#.to_string())
        }
    });
    let t = Test::new();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_runbook")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let show = std::env::var_os("DOCS_SHOW").is_some();
    let all = blocks(&guide);
    let mut commands = 0;
    for (i, block) in all.iter().enumerate() {
        let lang = block.info.split_whitespace().next().unwrap_or("");
        if let Some(file) = attr(&block.info, "file") {
            let text = substitute_host(&block.text.replace(GUIDE_API, &api.url()), &sshd);
            t.write(file, &text);
            continue;
        }
        if lang != "sh" || block.info.contains("norun") {
            continue;
        }
        commands += 1;
        let code: i32 = attr(&block.info, "exit").map_or(0, |c| c.parse().expect("exit=N"));
        let script = block.text.replace(GUIDE_API, &api.url());
        let out = Command::new("sh")
            .args(["-c", &script])
            .current_dir(t.path())
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .env_remove("RUNBOOK_STATE")
            .env_remove("API_TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh runs");
        // The guide shows its own example address and folder.
        let actual = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .replace(&api.url(), GUIDE_API)
        .replace(&t.path().display().to_string(), "~/hello");
        if show {
            eprintln!("--- guide.md:{} {script}{actual}", block.line);
        }
        if show && out.status.code() != Some(code) {
            eprintln!("MISMATCH exit {:?}", out.status.code());
        }
        assert!(
            show || out.status.code() == Some(code),
            "guide.md:{}: `{}` exited {:?}, the guide says {code}; it printed:\n{actual}",
            block.line,
            script.trim(),
            out.status.code()
        );
        let next = all.get(i + 1).filter(|b| b.info == "text");
        if let Some(expected) = next {
            for line in expected.text.lines().filter(|l| !l.trim().is_empty()) {
                if show && !matches(line, &actual) {
                    eprintln!("MISMATCH guide.md:{}: {line:?}", expected.line);
                    continue;
                }
                assert!(
                    matches(line, &actual),
                    "guide.md:{}: `{}` did not print {line:?}; it printed:\n{actual}",
                    expected.line,
                    script.trim()
                );
            }
        }
    }
    assert!(commands >= 10, "the guide runs only {commands} commands");
    // The reference names every field the JSON outputs of these runs have.
    let reference = read("docs/reference.md");
    // A fresh run of hello is held on the missing token (no --env-file).
    let mut json = t.run(&["run", "hello", "--fresh", "--json"]).stdout;
    let held: serde_json::Value =
        serde_json::from_str(json.lines().next().unwrap_or_default()).expect("run_started");
    let id = held["run_id"].to_string();
    for args in [&["status", "--json", &id][..], &["handoff", "--json", &id]] {
        json.push_str(&t.run(args).stdout);
    }
    let mut fields = BTreeSet::new();
    for doc in serde_json::Deserializer::from_str(&json).into_iter::<serde_json::Value>() {
        json_keys(&doc.expect("JSON output"), &mut fields);
    }
    for field in ["reason", "resume_command", "found_in", "missing", "stream"] {
        assert!(fields.contains(field), "no {field} in {json}");
    }
    let unnamed: Vec<_> = fields
        .iter()
        .filter(|f| {
            !reference.contains(&format!("`{f}`")) && !reference.contains(&format!("\"{f}\""))
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/reference.md does not name the JSON fields {unnamed:?}"
    );
    // The secret the guide supplies reached the API and nothing else.
    assert!(!api.received().is_empty());
    for file in walk(&t.path().join("state")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes
                .windows(GUIDE_TOKEN.len())
                .any(|w| w == GUIDE_TOKEN.as_bytes()),
            "{} holds the token",
            file.display()
        );
    }
}

/// Every object key in a JSON value, at any depth.
fn json_keys(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                json_keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_keys(v, out)),
        _ => {}
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_guide_matcher_can_fail() {
    assert!(matches("✓ greet  succeeded  …", "✓ greet  succeeded  11ms"));
    assert!(!matches("✓ greet  succeeded", "✗ greet  failed"));
    assert!(!matches("a … b", "b a"));
}

/// Issue 20 point 10: the README and the guide say once, before their first
/// command, how to put `runbook` on `PATH` and what that needs; the README
/// still shows a newcomer exactly two commands (the sandbox run, the tests).
#[test]
fn readme_and_guide_say_first_how_to_install() {
    const INSTALL: &str = "cargo install --locked --path .";
    for file in ["README.md", "docs/guide.md"] {
        let text = read(file);
        assert_eq!(text.matches(INSTALL).count(), 1, "{file}: say it once");
        let at = text.find(INSTALL).unwrap();
        let first_command = text.find("```sh").unwrap_or(text.len());
        assert!(at < first_command, "{file}: install comes first");
        let around = &text[at.saturating_sub(400)..(at + 600).min(text.len())];
        for need in ["Rust toolchain", "C compiler", "PATH"] {
            assert!(around.contains(need), "{file}: says what it needs: {need}");
        }
    }
    assert_eq!(read("README.md").matches("```sh").count(), 2);
}
