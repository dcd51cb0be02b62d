//! Two "machines" on one test host: a command runs in a UTS namespace of
//! its own (`unshare --uts`) with its own host name, so runbook sees
//! another host (its lease names `user@NAME`; a pid there is not checked
//! locally). Needs root or unprivileged user namespaces; the tests run as
//! root in CI.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use super::{Ran, Test};

/// Whether `unshare --uts` works here.
pub fn available() -> bool {
    Command::new("unshare")
        .args(["--uts", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cmd` as it would run on the machine `host`: the same program, args,
/// environment and folder, under `unshare --uts` after `hostname HOST`.
pub fn on(host: &str, cmd: &Command) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--uts",
        "--",
        "sh",
        "-c",
        "hostname \"$0\" && exec \"$@\"",
        host,
    ]);
    c.arg(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `runbook ARGS` of test `t` on machine `host` to completion.
pub fn run(t: &Test, host: &str, args: &[&str]) -> Ran {
    Ran::from(on(host, &t.command(args)).output().expect("unshare runs"))
}

/// Starts `runbook ARGS` of test `t` on machine `host`, output piped. The
/// child's pid is runbook's (sh execs it).
pub fn spawn(t: &Test, host: &str, args: &[&str]) -> Child {
    on(host, &t.command(args))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare starts")
}
