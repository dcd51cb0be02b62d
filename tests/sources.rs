//! Every step sees the world as it is when it runs (SPEC §14): uploads read
//! their source when they start, a succeeded upload ships again when its
//! source changed, and the dry run says what the run then does. Written the
//! way a newcomer writes runbooks: a build step, then an upload of what it
//! built; locally and on the real sshd.

mod support;
use std::path::Path;
use support::sshd::Sshd;
use support::Test;

/// `hosts:` and `on:` for a remote runbook, nothing for a local one.
fn placement(sshd: Option<&Sshd>) -> (String, &'static str) {
    match sshd {
        Some(s) => (format!("hosts:\n{}", s.host_yaml("box")), "    on: box\n"),
        None => (String::new(), ""),
    }
}

fn build_then_ship(sshd: Option<&Sshd>, dest: &Path) {
    let t = Test::new();
    t.write("runbooks/site/index.html", "old build\n");
    let (hosts, on) = placement(sshd);
    t.put_runbook(
        "deploy",
        &format!(
            "{hosts}steps:\n  - id: build\n    run: mkdir -p site out && echo \"new build\" > site/index.html && echo \"made at run time\" > out/app.txt\n  - id: ship\n    needs: [build]\n{on}    upload: {{ src: site, dest: \"{d}/site\" }}\n  - id: ship-out\n    needs: [build]\n{on}    upload: {{ src: out/app.txt, dest: \"{d}/app.txt\" }}\n",
            d = dest.display()
        ),
    );
    // `out/` does not exist yet: accepted, since the upload has `needs`.
    t.run(&["validate", "deploy"]).code(0);
    t.run(&["run", "deploy"]).code(0);
    assert_eq!(
        std::fs::read_to_string(dest.join("site/index.html")).unwrap(),
        "new build\n",
        "the upload shipped the build from before the run"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("app.txt")).unwrap(),
        "made at run time\n"
    );
}

#[test]
fn an_upload_ships_what_the_step_before_it_built_locally() {
    let dest = tempfile::tempdir().unwrap();
    build_then_ship(None, dest.path());
}

#[test]
fn an_upload_ships_what_the_step_before_it_built_on_a_host() {
    let sshd = Sshd::start();
    let dest = sshd.dir.path().join("srv");
    build_then_ship(Some(&sshd), &dest);
}

fn template_from_a_written_file(sshd: Option<&Sshd>, dest: &Path) {
    let t = Test::new();
    let (hosts, on) = placement(sshd);
    t.put_runbook(
        "conf",
        &format!(
            "{hosts}vars: {{ port: \"8080\" }}\nsteps:\n  - id: gen\n    run: printf 'listen {{{{ \"{{{{\" }}}} vars.port {{{{ \"}}}}\" }}}}\\n' > app.conf.j2\n  - id: ship\n    needs: [gen]\n{on}    upload: {{ src: app.conf.j2, dest: \"{d}/app.conf\", template: true }}\n",
            d = dest.display()
        ),
    );
    t.run(&["run", "conf"]).code(0);
    assert_eq!(
        std::fs::read_to_string(dest.join("app.conf")).unwrap(),
        "listen 8080\n"
    );
}

#[test]
fn a_template_a_step_wrote_is_rendered_when_the_upload_runs() {
    let dest = tempfile::tempdir().unwrap();
    template_from_a_written_file(None, dest.path());
    let sshd = Sshd::start();
    let remote = sshd.dir.path().join("srv");
    template_from_a_written_file(Some(&sshd), &remote);
}

#[test]
fn a_source_still_missing_when_the_upload_runs_fails_naming_it() {
    let t = Test::new();
    let dest = tempfile::tempdir().unwrap();
    t.put_runbook(
        "r",
        &format!(
            "steps:\n  - id: build\n    run: \"true\"\n  - id: ship\n    needs: [build]\n    upload: {{ src: dist, dest: \"{}/dist\" }}\n",
            dest.path().display()
        ),
    );
    t.run(&["run", "r"])
        .code(1)
        .stdout_has("dist does not exist");
    assert_eq!(t.status(None).state_of("ship"), "failed");
    assert!(!dest.path().join("dist").exists(), "nothing is written");
}

#[test]
fn a_missing_source_without_needs_is_refused_before_anything_runs() {
    let t = Test::new();
    t.put_runbook(
        "r",
        "steps:\n  - id: first\n    run: touch ran\n  - id: ship\n    upload: { src: dist, dest: /tmp/never }\n",
    );
    t.run(&["run", "r"])
        .code(2)
        .stderr_has("dist does not exist");
    assert!(!t.path().join("runbooks/ran").exists());
}

#[test]
fn an_undefined_name_in_a_template_written_at_run_time_fails_the_step() {
    let t = Test::new();
    let dest = tempfile::tempdir().unwrap();
    t.put_runbook(
        "r",
        &format!(
            "steps:\n  - id: gen\n    run: \"echo '{{{{ \\\"{{{{\\\" }}}} vars.nope {{{{ \\\"}}}}\\\" }}}}' > t.j2\"\n  - id: ship\n    needs: [gen]\n    upload: {{ src: t.j2, dest: \"{}/out\", template: true }}\n",
            dest.path().display()
        ),
    );
    t.run(&["run", "r"])
        .code(1)
        .stdout_has("t.j2:1:4: `vars.nope` is undefined");
    assert!(!dest.path().join("out").exists(), "nothing is written");
    // The file the failed run left is there now, so it is checked before
    // the next pass; the help says where it comes from and what to do.
    t.run(&["resume"])
        .code(2)
        .stderr_has("`vars.nope` is undefined")
        .stderr_has("this copy is left from an earlier run: remove it");
}

#[test]
fn an_edited_source_ships_again_on_resume_and_what_needs_it_reruns() {
    let t = Test::new();
    let dest = tempfile::tempdir().unwrap();
    t.write(
        "runbooks/files/compose.yml.j2",
        "image: app:{{ vars.tag }}\n",
    );
    t.put_runbook(
        "r",
        &format!(
            "vars: {{ tag: \"1\" }}\nsteps:\n  - id: ship\n    upload: {{ src: files/compose.yml.j2, dest: \"{}/compose.yml\", template: true }}\n  - id: up\n    needs: [ship]\n    run: echo up >> ../ups\n  - id: check\n    needs: [up]\n    run: test -f ok\n  - id: other\n    run: echo other >> ../others\n",
            dest.path().display()
        ),
    );
    t.run(&["run", "r"]).code(1);
    t.write(
        "runbooks/files/compose.yml.j2",
        "image: app:{{ vars.tag }}-fixed\n",
    );
    t.write("runbooks/ok", "");
    t.run(&["run", "r", "--dry-run"])
        .code(0)
        .stdout_has(&format!("{:<17} ship  (source changed)", "would rerun"))
        .stdout_has(&format!("{:<17} up  (`ship` changed)", "would rerun"))
        .stdout_has(&format!("{:<17} other\n", "done"));
    t.run(&["resume", "r"])
        .code(0)
        .stdout_has("ship (source changed)");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("compose.yml")).unwrap(),
        "image: app:1-fixed\n"
    );
    assert_eq!(t.lines("ups").len(), 2, "what needs the upload ran again");
    assert_eq!(t.lines("others").len(), 1, "nothing else ran again");
    // Unchanged now: a resume reruns nothing.
    t.run(&["resume", "r"]).code(0).stdout_has("already done");
}

fn mirror_with_excludes(sshd: Option<&Sshd>, dest: &Path) {
    let t = Test::new();
    t.write("runbooks/site/index.html", "v2\n");
    t.write("runbooks/site/debug.log", "local log, not sent\n");
    t.write("runbooks/site/build/tmp.o", "not sent\n");
    // The host's own files under dest.
    std::fs::create_dir_all(dest.join("logs/old")).unwrap();
    std::fs::create_dir_all(dest.join("uploads")).unwrap();
    std::fs::write(dest.join("token"), "host token\n").unwrap();
    std::fs::write(dest.join("logs/old/a.txt"), "host log\n").unwrap();
    std::fs::write(dest.join("uploads/u.png"), "user upload\n").unwrap();
    std::fs::write(dest.join("access.log"), "host log\n").unwrap();
    std::fs::write(dest.join("stale.html"), "old page\n").unwrap();
    let (hosts, on) = placement(sshd);
    t.put_runbook(
        "sync",
        &format!(
            "{hosts}steps:\n  - id: sync\n{on}    upload:\n      src: site\n      dest: \"{}\"\n      delete: true\n      exclude: [token, \"*.log\", logs/, uploads, /build]\n",
            dest.display()
        ),
    );
    t.run(&["run", "sync"]).code(0).stdout_has("stale.html");
    let read = |rel: &str| std::fs::read_to_string(dest.join(rel)).ok();
    assert_eq!(read("index.html").as_deref(), Some("v2\n"));
    assert_eq!(read("token").as_deref(), Some("host token\n"));
    assert_eq!(read("logs/old/a.txt").as_deref(), Some("host log\n"));
    assert_eq!(read("uploads/u.png").as_deref(), Some("user upload\n"));
    assert_eq!(read("access.log").as_deref(), Some("host log\n"));
    assert_eq!(
        read("stale.html"),
        None,
        "what is not excluded is mirrored away"
    );
    assert_eq!(
        read("debug.log"),
        None,
        "an excluded source file is not sent"
    );
    assert!(
        !dest.join("build").exists(),
        "an excluded source folder is not sent"
    );
}

#[test]
fn a_mirror_keeps_the_excluded_files_of_the_host_locally() {
    let dest = tempfile::tempdir().unwrap();
    mirror_with_excludes(None, dest.path());
}

#[test]
fn a_mirror_keeps_the_excluded_files_of_the_host_over_ssh() {
    let sshd = Sshd::start();
    let dest = sshd.dir.path().join("www");
    std::fs::create_dir_all(&dest).unwrap();
    mirror_with_excludes(Some(&sshd), &dest);
}

#[test]
fn a_bad_exclude_pattern_is_refused_before_anything_runs() {
    let t = Test::new();
    t.write("runbooks/site/a", "x\n");
    t.put_runbook(
        "r",
        "steps:\n  - id: first\n    run: touch ran\n  - id: sync\n    upload: { src: site, dest: /tmp/never-x, exclude: [\"{a,b\"] }\n",
    );
    t.run(&["run", "r"]).code(2).stderr_has("exclude");
    assert!(!t.path().join("runbooks/ran").exists());
}
