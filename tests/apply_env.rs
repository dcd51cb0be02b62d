//! The hetzner-parity helper that writes tokens into the server's `.env`
//! (files/apply-env.sh) writes each value so that Docker Compose v2 and
//! runbook read back exactly that value, whatever it holds (`$`, ` #`,
//! quotes, backslashes, blanks at the ends, a newline).

mod support;
use sha2::Digest;
use std::process::Command;
use support::sandbox::runbook_dir;
use support::Test;

const VALUES: [(&str, &str); 3] = [
    (
        "RB_AE_TOKEN",
        "p$HOME ${X:-d} #c \"q\" 's' back\\slash\\\\ end\\",
    ),
    ("RB_AE_LINES", "two\nlines"),
    ("RB_AE_BLANKS", "  lead and trail  "),
];

fn sha256_hex(value: &str) -> String {
    sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What `docker compose config` reads from `.env` in `dir` (an `env_file`).
fn compose_reads(dir: &std::path::Path) -> serde_json::Value {
    std::fs::write(
        dir.join("compose.yml"),
        "services:\n  s:\n    image: busybox\n    env_file: .env\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["compose", "-p", "c", "config", "--format", "json"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("docker compose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["services"]["s"]["environment"].clone()
}

#[test]
fn apply_env_writes_values_compose_and_runbook_read_back_exactly() {
    let t = Test::new();
    let deploy = t.path().join("deploy");
    std::fs::create_dir_all(deploy.join(".runbook")).unwrap();
    std::fs::copy(
        runbook_dir().join("files/apply-env.sh"),
        deploy.join(".runbook/apply-env.sh"),
    )
    .unwrap();
    std::fs::write(deploy.join(".env"), "KEEP=x y\nRB_AE_TOKEN=old\n").unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg(deploy.join(".runbook/apply-env.sh")).arg("s");
    // COMPOSE=true: the recreate is a no-op here; the file is what counts.
    cmd.env("COMPOSE", "true");
    for (name, value) in VALUES {
        cmd.arg(name).env(name, value);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");

    let env = compose_reads(&deploy);
    assert_eq!(env["KEEP"], "x y");
    for (name, value) in VALUES {
        // `config` writes each `$` of a value as `$$`.
        let got = env[name].as_str().unwrap().replace("$$", "$");
        assert_eq!(got, value, "Compose reads {name} otherwise");
    }

    // runbook reads the same file (env_files) and hands a step the same values.
    let mut steps = String::new();
    for (i, (name, _)) in VALUES.iter().enumerate() {
        let sum = t.p(&format!("sum{i}"));
        steps.push_str(&format!(
            "  - id: s{i}\n    requires: [{name}]\n    env: {{ V: \"{{{{ secrets.{name} }}}}\" }}\n    run: printf '%s' \"$V\" | sha256sum | cut -d' ' -f1 > {sum}\n"
        ));
    }
    let secrets: String = VALUES
        .iter()
        .map(|(n, _)| format!("  {n}: {{}}\n"))
        .collect();
    let yaml = format!(
        "env_files: [\"{}\"]\nsecrets:\n{secrets}steps:\n{steps}",
        deploy.join(".env").display()
    );
    let t = t.runbook("rb", &yaml);
    t.run(&["run", "runbooks/rb.yaml"]).code(0);
    for (i, (name, value)) in VALUES.iter().enumerate() {
        assert_eq!(
            t.read(&format!("sum{i}")).trim(),
            sha256_hex(value),
            "runbook reads {name} otherwise"
        );
    }
}
