//! Secrets from where the team keeps them (issue 24, SPEC §13): `from`
//! commands and `env_files` commands, with real `pass` (in a throwaway
//! GNUPGHOME) and `age`.

mod support;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::sshd::Sshd;
use support::Test;

/// A `pass` store with its own GnuPG home, both in a temp folder; the
/// gpg-agent it starts is stopped again with it.
struct Vault {
    dir: tempfile::TempDir,
}

impl Vault {
    fn new() -> Vault {
        let dir = tempfile::Builder::new().prefix("rbv").tempdir().unwrap();
        let v = Vault { dir };
        std::fs::create_dir(v.gnupg()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(v.gnupg(), std::fs::Permissions::from_mode(0o700)).unwrap();
        v.ok(Command::new("gpg").args([
            "--batch",
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-gen-key",
            "runbook test <test@example.invalid>",
            "default",
            "default",
            "never",
        ]));
        let keys = v.ok(Command::new("gpg").args(["--list-keys", "--with-colons"]));
        let fpr = keys
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.trim_matches(':').split(':').next_back())
            .expect("a fingerprint")
            .to_string();
        v.ok(Command::new("pass").args(["init", &fpr]));
        v
    }

    fn gnupg(&self) -> std::path::PathBuf {
        self.dir.path().join("g")
    }

    fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    /// Runs a command with this vault's environment; its stdout.
    fn ok(&self, cmd: &mut Command) -> String {
        let out = cmd
            .env("GNUPGHOME", self.gnupg())
            .env("PASSWORD_STORE_DIR", self.store())
            .output()
            .expect("run");
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `pass insert` of one line.
    fn insert(&self, name: &str, value: &str) {
        use std::io::Write;
        let mut child = Command::new("pass")
            .args(["insert", "-e", name])
            .env("GNUPGHOME", self.gnupg())
            .env("PASSWORD_STORE_DIR", self.store())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// The test's commands see this vault.
    fn on(&self, t: Test) -> Test {
        t.env("GNUPGHOME", &self.gnupg().display().to_string())
            .env("PASSWORD_STORE_DIR", &self.store().display().to_string())
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.gnupg())
            .status();
    }
}

/// An age key and `text` encrypted to it, in the runbooks folder.
fn age_file(t: &Test, name: &str, text: &str) {
    let dir = t.path().join("runbooks");
    let ok = |cmd: &mut Command| {
        let out = cmd.current_dir(&dir).output().expect("age");
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    ok(Command::new("age-keygen").args(["-o", "age.key"]));
    let recipient = ok(Command::new("age-keygen").args(["-y", "age.key"]));
    std::fs::write(dir.join("plain.tmp"), text).unwrap();
    ok(Command::new("age").args(["-r", &recipient, "-o", name, "plain.tmp"]));
    std::fs::remove_file(dir.join("plain.tmp")).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// No value in any output given, nor in any file of the state folder.
fn assert_nowhere(t: &Test, outputs: &[String], values: &[&str]) {
    for out in outputs {
        for v in values {
            assert!(!out.contains(v), "{v:?} in output:\n{out}");
        }
    }
    let files = walk(&t.path().join("state"));
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for v in values {
            assert!(!contains(&bytes, v.as_bytes()), "{v:?} in {f:?}");
        }
    }
}

const GH: &str = "ghp_fromPass_7Qx93kLm";
const TRELLO_KEY: &str = "trello-key-from-age-41ab";
const TRELLO_TOKEN: &str = "trello token with spaces 9z";

#[test]
fn values_from_pass_and_an_age_encrypted_dotenv_run_and_stay_secret() {
    let vault = Vault::new();
    vault.insert("ops/github", GH);
    let t = vault.on(Test::new());
    age_file(
        &t,
        "secrets.env.age",
        &format!("TRELLO_KEY={TRELLO_KEY}\nTRELLO_TOKEN=\"{TRELLO_TOKEN}\"\n"),
    );
    t.put_runbook(
        "rb",
        "env_files:\n  - { command: \"age -d -i age.key secrets.env.age\" }\nsecrets:\n  GITHUB_TOKEN:\n    owner: Lukas\n    from: \"pass show ops/github\"\n  TRELLO_KEY: { owner: Lukas }\n  TRELLO_TOKEN: { owner: Lukas }\nsteps:\n  - id: use\n    requires: [GITHUB_TOKEN, TRELLO_KEY, TRELLO_TOKEN]\n    env: { A: \"{{ secrets.GITHUB_TOKEN }}\", B: \"{{ secrets.TRELLO_KEY }}\", C: \"{{ secrets.TRELLO_TOKEN }}\" }\n    run: |\n      echo \"gh $A\"; echo \"key $B\"; echo \"tok $C\" >&2\n      printf '%s|%s|%s' \"$A\" \"$B\" \"$C\" > ../seen\n",
    );
    let mut outputs = Vec::new();
    let ran = t.run(&["run", "rb"]);
    ran.code(0)
        .stdout_has("gh [REDACTED:GITHUB_TOKEN]")
        .stdout_has("key [REDACTED:TRELLO_KEY]");
    outputs.push(ran.stdout.clone() + &ran.stderr);
    // The step saw the real values (the trailing newline of pass removed).
    assert_eq!(t.read("seen"), format!("{GH}|{TRELLO_KEY}|{TRELLO_TOKEN}"));
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["logs", "1", "use"],
        vec!["handoff"],
        vec!["handoff", "--json"],
        vec!["run", "rb", "--dry-run"],
        vec!["run", "rb", "--json"],
    ] {
        let r = t.run(&args);
        outputs.push(r.stdout + &r.stderr);
    }
    std::fs::remove_file(t.path().join("seen")).unwrap();
    assert_nowhere(&t, &outputs, &[GH, TRELLO_KEY, TRELLO_TOKEN]);
}

#[test]
fn the_environment_comes_before_from_and_from_before_env_files() {
    let t = Test::new().env("RB_ENV_FIRST", "value-from-env-1234");
    t.write("runbooks/local.env", "RB_FROM=value-from-file-5678\n");
    t.put_runbook(
        "rb",
        "vars: { kind: cmd }\nenv_files: [local.env]\nsecrets:\n  RB_ENV_FIRST: { from: \"echo ran >> ../ran; echo from-cmd-0000\" }\n  RB_FROM: { from: \"echo value-from-{{ vars.kind }}-9999\" }\nsteps:\n  - id: s\n    requires: [RB_ENV_FIRST, RB_FROM]\n    env: { A: \"{{ secrets.RB_ENV_FIRST }}\", B: \"{{ secrets.RB_FROM }}\" }\n    run: printf '%s %s' \"$A\" \"$B\" > ../seen\n",
    );
    t.run(&["run", "rb"]).code(0);
    assert_eq!(t.read("seen"), "value-from-env-1234 value-from-cmd-9999");
    // Found in the environment: its command never ran.
    assert_eq!(t.read("ran"), "");
    // The command is a template: `--var` changes what it runs.
    t.run(&["run", "rb", "--var", "kind=var"]).code(0);
    assert_eq!(t.read("seen"), "value-from-env-1234 value-from-var-9999");
}

#[test]
fn a_missing_entry_is_held_with_pass_message_and_wait_goes_on_after_pass_insert() {
    let vault = Vault::new();
    let t = vault.on(Test::new());
    t.put_runbook(
        "rb",
        "secrets:\n  TRELLO_API_TOKEN:\n    owner: Lukas\n    from: \"pass show ops/trello\"\nsteps:\n  - id: free\n    run: 'true'\n  - id: use\n    requires: [TRELLO_API_TOKEN]\n    env: { T: \"{{ secrets.TRELLO_API_TOKEN }}\" }\n    run: echo \"using $T\"\n",
    );
    t.run(&["run", "rb"]).code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("free"), "succeeded");
    assert_eq!(s.state_of("use"), "held");
    assert_eq!(s.step("use").unavailable, vec!["TRELLO_API_TOKEN"]);
    assert!(s.step("use").missing.is_empty(), "{:?}", s.step("use"));
    assert_eq!(
        s.reason_of("use"),
        "secret TRELLO_API_TOKEN is unavailable: `pass show ops/trello` exited 1: Error: ops/trello is not in the password store."
    );
    let page = t.run(&["handoff"]);
    page.code(0)
        .stdout_has("`TRELLO_API_TOKEN` — unavailable")
        .stdout_has("fix that command")
        .stdout_has("what `pass show ops/trello` prints (its `from`");
    let json = t.run(&["handoff", "--json"]);
    json.code(0).stdout_has("\"status\": \"unavailable\"");

    let child = t.spawn(&["resume", "--wait", "--interval", "1s", "--timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(2500));
    vault.insert("ops/trello", "trello-token-inserted-31");
    let inserted = Instant::now();
    let ran = support::finish(child);
    let took = inserted.elapsed();
    ran.code(0)
        .stdout_has("waiting for TRELLO_API_TOKEN (unavailable)")
        .stdout_has("TRELLO_API_TOKEN: found in the output of `pass show ops/trello`")
        .stdout_has("[use] using [REDACTED:TRELLO_API_TOKEN]");
    // One interval (1s), plus a look (pass and gpg) and the step.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    eprintln!("resumed {took:?} after pass insert");
    assert_eq!(t.status(None).state, "succeeded");
    assert_nowhere(&t, &[ran.stdout, ran.stderr], &["trello-token-inserted-31"]);
}

#[test]
fn a_hanging_command_is_stopped_at_its_timeout_and_a_failing_one_shows_why() {
    let t = Test::new().env("RB_OTHER", "other-secret-value-55");
    t.put_runbook(
        "rb",
        "secrets:\n  RB_OTHER: {}\n  RB_HANG:\n    from: { command: \"sleep 300 & echo $! > ../sleep.pid; wait\", timeout: 1s }\n  RB_FAIL:\n    from: \"echo 'vault: connecting' >&2; echo 'vault: permission denied near other-secret-value-55' >&2; exit 2\"\n  RB_EMPTY:\n    from: \"printf ''\"\nsteps:\n  - id: hang\n    requires: [RB_HANG]\n    run: 'true'\n  - id: fail\n    requires: [RB_FAIL, RB_OTHER]\n    run: 'true'\n  - id: empty\n    requires: [RB_EMPTY]\n    run: 'true'\n",
    );
    let start = Instant::now();
    let ran = t.run(&["run", "rb"]);
    let took = start.elapsed();
    ran.code(3);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("held on a 1s timeout after {took:?}");
    let pid: i32 = t.read("sleep.pid").trim().parse().expect("the sleep's pid");
    assert!(
        support::wait_for(Duration::from_secs(5), || !support::alive(pid)),
        "the command's sleep {pid} outlived its timeout"
    );
    let s = t.status(None);
    assert_eq!(
        s.reason_of("hang"),
        "secret RB_HANG is unavailable: `sleep 300 & echo $! > ../sleep.pid; wait` did not finish within 1s; it was stopped"
    );
    // The last line of stderr, with the other secret's value redacted.
    assert_eq!(
        s.reason_of("fail"),
        "secret RB_FAIL is unavailable: `echo 'vault: connecting' >&2; echo 'vault: permission denied near [REDACTED:RB_OTHER]' >&2; exit 2` exited 2: vault: permission denied near [REDACTED:RB_OTHER]"
    );
    assert_eq!(
        s.reason_of("empty"),
        "secret RB_EMPTY is unavailable: `printf ''` printed nothing"
    );
    for id in ["hang", "fail", "empty"] {
        assert_eq!(s.state_of(id), "held");
    }
}

#[test]
fn ctrl_c_while_a_command_runs_stops_it() {
    let t = Test::new();
    t.put_runbook(
        "rb",
        "secrets:\n  RB_SLOW: { from: \"sleep 300 & echo $! > ../sleep.pid; wait\" }\nsteps:\n  - id: s\n    requires: [RB_SLOW]\n    run: 'true'\n",
    );
    let child = t.spawn(&["run", "rb"]);
    assert!(support::wait_for(Duration::from_secs(10), || !t
        .read("sleep.pid")
        .trim()
        .is_empty()));
    let pid: i32 = t.read("sleep.pid").trim().parse().unwrap();
    support::signal(&child, "INT");
    let ran = support::finish(child);
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        support::wait_for(Duration::from_secs(5), || !support::alive(pid)),
        "the command's sleep {pid} outlived Ctrl-C: {ran:?}"
    );
}

/// Appends to a counter file, then prints `out`.
fn counted(name: &str, out: &str) -> String {
    format!("echo x >> ../{name}.count; printf '{out}'")
}

#[test]
fn each_command_runs_once_per_look() {
    let sshd = Sshd::start();
    let t = Test::new();
    let yaml = format!(
        "hosts:\n{}{}groups:\n  web: [a, b]\nenv_files:\n  - {{ command: \"{}\" }}\n  - {{ host: web, path: /nonexistent/.env }}\nsecrets:\n  RB_A: {{}}\n  RB_B: {{}}\n  RB_C: {{ from: \"{}\" }}\n  RB_D: {{ from: \"{}\" }}\nsteps:\n  - id: one\n    requires: [RB_A, RB_C]\n    run: 'true'\n  - id: two\n    requires: [RB_B, RB_C]\n    run: 'true'\n  - id: fleet\n    on: web\n    requires: [RB_A, RB_B, RB_C]\n    run: 'true'\n  - id: later\n    needs: [one]\n    requires: [RB_D]\n    run: 'true'\n",
        sshd.host_yaml("a"),
        sshd.host_yaml("b"),
        counted("files", "RB_A=aaa-111\\\\nRB_B=bbb-222\\\\n"),
        counted("c", "ccc-333"),
        "echo x >> ../d.count; exit 1",
    );
    t.put_runbook("rb", &yaml);
    t.run(&["validate", "rb"]).code(0);
    let ran = t.run(&["run", "rb"]);
    ran.code(3);
    let s = t.status(None);
    assert_eq!(s.state_of("fleet@a"), "succeeded", "{ran:?}");
    assert_eq!(s.state_of("two"), "succeeded");
    assert_eq!(s.state_of("later"), "held");
    let counts = || ["files", "c", "d"].map(|n| t.lines(&format!("{n}.count")).len());
    assert_eq!(counts(), [1, 1, 1], "one run: each command once");
    t.run(&["run", "rb", "--dry-run"]).code(0).stdout_has(
        "secret RB_D                     unavailable: `echo x >> ../d.count; exit 1` exited 1",
    );
    assert_eq!(counts(), [2, 2, 2], "a dry run: once more");
    let ran = t.run(&["resume", "--wait", "--interval", "1s", "--timeout", "3s"]);
    ran.code(3);
    let [files, c, d] = counts();
    // The resume's pass, then a look a second for 3 seconds (at least one).
    assert!(d >= 2 + 2, "{d} runs of RB_D's command");
    assert_eq!([files, c], [d, d], "every command once per look");
    eprintln!("{d} runs of each command over the run, the dry run and the wait");
}

#[test]
fn a_bad_timeout_is_refused_with_its_place() {
    let t = Test::new().runbook(
        "rb",
        "secrets:\n  RB_X:\n    from: { command: \"pass show x\", timeout: soon }\nsteps:\n  - id: s\n    requires: [RB_X]\n    run: 'true'\n",
    );
    let ran = t.run(&["validate", "rb"]);
    ran.code(2)
        .stderr_has("rb.yaml:2:3")
        .stderr_has("bad duration `soon` for a secret command's `timeout`");
    assert!(!t.path().join("state").exists());
    // A command is rendered before any value is known, and shown: it may
    // not read a secret.
    t.put_runbook(
        "rb",
        "secrets:\n  RB_T: {}\n  RB_X:\n    from: \"vault read -token={{ secrets.RB_T }} x\"\nsteps:\n  - id: s\n    requires: [RB_X]\n    run: 'true'\n",
    );
    t.run(&["run", "rb"])
        .code(2)
        .stderr_has("rb.yaml:3:3")
        .stderr_has("secret command `vault read -token={{ secrets.RB_T }} x` reads a secret");
    assert!(!t.path().join("state").exists());
}

#[test]
fn a_command_whose_output_is_not_dotenv_names_the_line_never_the_text() {
    let t = Test::new();
    t.put_runbook(
        "rb",
        "env_files:\n  - { command: \"printf 'RB_DOT=fine-1234\\\\n'; printf 'hid%s x\\\\n' den-4242\" }\nsecrets:\n  RB_DOT: {}\nsteps:\n  - id: s\n    requires: [RB_DOT]\n    run: 'true'\n",
    );
    let ran = t.run(&["run", "rb"]);
    ran.code(3);
    let reason = t.status(None).reason_of("s");
    assert!(
        reason.starts_with(
            "secret RB_DOT is unavailable: the output of `printf 'RB_DOT=fine-1234\\n'; printf 'hid%s x\\n' den-4242`:2: "
        ),
        "{reason}"
    );
    assert_nowhere(&t, &[ran.stdout, ran.stderr, reason], &["hidden-4242"]);
}
