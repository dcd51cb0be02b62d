//! `upload` with `delete: true` (SPEC §1): `dest` mirrors `src`, over the
//! real sshd and on this machine; nothing outside `dest` is touched, symlinks
//! are removed as links and never followed, hostile names stay names.

mod support;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::sshd::Sshd;
use support::Test;

/// A name with spaces, quotes, command substitutions and a newline; were
/// it ever run, it would create `marker()` (no `/` may be in a name, so the
/// commands `cd` home first).
fn hostile() -> String {
    let m = marker_name();
    format!("it's \"x\" $(cd;touch {m}) `cd;touch {m}`\nline")
}

fn marker_name() -> String {
    format!("runbook-upload-pwned-{}", std::process::id())
}

fn marker() -> PathBuf {
    Path::new(&std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(marker_name())
}

/// Every path under `dir` (not following symlinks), relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The scene: a source folder in the project, a destination holding stale
/// files (one with a hostile name, a stale folder, symlinks pointing
/// outside), and files outside the destination that must survive.
struct Scene {
    dest: PathBuf,
    outside: PathBuf,
}

fn scene(t: &Test, base: &Path) -> Scene {
    t.write("runbooks/files/app/main.py", "print('main')\n");
    t.write("runbooks/files/app/lib/util.py", "X = 1\n");
    t.write(&format!("runbooks/files/app/{}", hostile()), "kept\n");
    let dest = base.join("deploy/app");
    let outside = base.join("outside");
    std::fs::create_dir_all(dest.join("stale-dir/deeper")).unwrap();
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside\n").unwrap();
    std::fs::write(outside.join("dir/inner.txt"), "outside\n").unwrap();
    // Next to dest, sharing its name as a prefix: not under dest.
    std::fs::write(base.join("deploy/app.bak"), "sibling\n").unwrap();
    std::fs::write(base.join("deploy/keep.txt"), "sibling\n").unwrap();
    std::fs::write(dest.join("stale.txt"), "old\n").unwrap();
    std::fs::write(dest.join("stale-dir/deeper/x.txt"), "old\n").unwrap();
    std::fs::write(dest.join(format!("stale {}", hostile())), "old\n").unwrap();
    // Not UTF-8: cannot be named back safely, so it is kept and reported.
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9.txt");
        std::fs::write(dest.join(name), "old\n").unwrap();
    }
    symlink(outside.join("secret.txt"), dest.join("link-to-file")).unwrap();
    symlink(outside.join("dir"), dest.join("link-to-dir")).unwrap();
    // A symlink where src has a folder: removed, and lib/ written for real.
    std::fs::create_dir_all(outside.join("lib")).unwrap();
    std::fs::write(outside.join("lib/util.py"), "X = 1\n").unwrap();
    symlink(outside.join("lib"), dest.join("lib")).unwrap();
    Scene { dest, outside }
}

fn assert_outside_intact(base: &Path, s: &Scene) {
    assert_eq!(
        tree(&s.outside),
        vec!["dir/", "dir/inner.txt", "lib/", "lib/util.py", "secret.txt"],
        "something outside dest changed"
    );
    assert_eq!(
        std::fs::read_to_string(s.outside.join("secret.txt")).unwrap(),
        "outside\n"
    );
    assert!(base.join("deploy/app.bak").exists());
    assert!(base.join("deploy/keep.txt").exists());
    assert!(!marker().exists(), "a file name was run as a command");
}

fn mirrored(s: &Scene) -> Vec<String> {
    tree(&s.dest)
}

/// `host`: the name and `hosts:` block of the sshd, or local when `None`.
fn check_mirror(t: &Test, base: &Path, s: &Scene, host: Option<(&str, String)>) {
    let (on, hosts) = match &host {
        Some((name, yaml)) => (format!("    on: {name}\n"), yaml.clone()),
        None => (String::new(), String::new()),
    };
    t.put_runbook(
        "r",
        &format!(
            "{hosts}steps:\n  - id: sync\n{on}    upload: {{ src: files/app, dest: \"{}\", delete: true }}\n",
            s.dest.display()
        ),
    );
    let ran = t.run(&["run", "r"]);
    ran.code(0)
        .stdout_has("removed")
        .stdout_has("stale.txt")
        .stdout_has("link-to-dir");
    let name = hostile();
    let kept = "latin1-\u{FFFD}t\u{FFFD}.txt".to_string();
    assert!(
        ran.stdout.contains("its name is not UTF-8")
            || ran.stderr.contains("its name is not UTF-8"),
        "{ran:?}"
    );
    let mut want = vec![
        "lib/".to_string(),
        "lib/util.py".to_string(),
        "main.py".to_string(),
        name.clone(),
        kept.clone(),
    ];
    want.sort();
    assert_eq!(mirrored(s), want);
    assert!(
        !std::fs::symlink_metadata(s.dest.join("lib"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "lib/ is still the symlink"
    );
    assert_eq!(
        std::fs::read_to_string(s.dest.join(&name)).unwrap(),
        "kept\n"
    );
    assert_outside_intact(base, s);
    let status = t.status(None);
    let reason = status.reason_of("sync");
    assert!(reason.contains("removed"), "{reason}");

    // A file removed from src disappears under dest on the next run; so does
    // its folder once it holds no file of src.
    std::fs::remove_file(t.path().join("runbooks/files/app/lib/util.py")).unwrap();
    std::fs::remove_dir(t.path().join("runbooks/files/app/lib")).unwrap();
    t.run(&["run", "r"])
        .code(0)
        .stdout_has(&format!("removed {}", s.dest.join("lib/util.py").display()));
    let mut want = vec!["main.py".to_string(), name, kept];
    want.sort();
    assert_eq!(mirrored(s), want);
    assert_outside_intact(base, s);

    // Unchanged: nothing written, nothing removed.
    t.run(&["run", "r", "--fresh"])
        .code(0)
        .stdout_lacks("removed");
}

#[test]
fn remote_delete_mirrors_src_and_touches_nothing_outside_dest() {
    let sshd = Sshd::start();
    let t = Test::new();
    let base = sshd.dir.path().join("srv");
    let s = scene(&t, &base);
    let hosts = format!("hosts:\n{}", sshd.host_yaml("box"));
    check_mirror(&t, &base, &s, Some(("box", hosts)));
}

#[test]
fn local_delete_mirrors_src_and_touches_nothing_outside_dest() {
    let t = Test::new();
    let base = tempfile::Builder::new().prefix("mirror").tempdir().unwrap();
    let s = scene(&t, base.path());
    check_mirror(&t, base.path(), &s, None);
}

#[test]
fn without_delete_stale_files_stay() {
    let t = Test::new();
    let base = tempfile::Builder::new().prefix("mirror").tempdir().unwrap();
    let s = scene(&t, base.path());
    t.put_runbook(
        "r",
        &format!(
            "steps:\n  - id: sync\n    upload: {{ src: files/app, dest: \"{}\" }}\n",
            s.dest.display()
        ),
    );
    t.run(&["run", "r"]).code(0).stdout_lacks("removed");
    assert!(s.dest.join("stale.txt").exists());
    assert!(s.dest.join("stale-dir/deeper/x.txt").exists());
}

#[test]
fn a_symlinked_dest_is_refused_and_its_target_untouched() {
    let sshd = Sshd::start();
    let t = Test::new();
    t.write("runbooks/files/app/main.py", "print('main')\n");
    let base = sshd.dir.path();
    let real = base.join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("precious.txt"), "keep\n").unwrap();
    symlink(&real, base.join("app")).unwrap();
    t.put_runbook(
        "r",
        &format!(
            "hosts:\n{}steps:\n  - id: sync\n    on: box\n    upload: {{ src: files/app, dest: \"{}\", delete: true }}\n",
            sshd.host_yaml("box"),
            base.join("app").display()
        ),
    );
    t.run(&["run", "r"]).code(1);
    let reason = t.status(None).step("sync").reason.clone().unwrap();
    assert!(reason.contains("is a symlink"), "{reason}");
    assert_eq!(tree(&real), vec!["precious.txt"]);
    // `link/.` looks through the link: refused as well, on a host and here.
    for on in ["    on: box\n", ""] {
        t.put_runbook(
            "r",
            &format!(
                "hosts:\n{}steps:\n  - id: sync\n{on}    upload: {{ src: files/app, dest: \"{}/.\", delete: true }}\n",
                sshd.host_yaml("box"),
                base.join("app").display()
            ),
        );
        let ran = t.run(&["run", "r", "--fresh"]);
        assert_ne!(ran.code, 0, "{on:?}: {}", ran.stdout);
        assert_eq!(tree(&real), vec!["precious.txt"], "{on:?}");
    }
}

#[test]
fn delete_on_a_file_or_a_root_dest_is_a_located_error() {
    let t = Test::new();
    t.write("runbooks/files/one.conf", "x=1\n");
    t.write("runbooks/files/app/main.py", "print()\n");
    t.put_runbook(
        "r",
        "steps:\n  - id: conf\n    upload:\n      src: files/one.conf\n      dest: /tmp/runbook-never/one.conf\n      delete: true\n",
    );
    let ran = t.run(&["run", "r"]);
    ran.code(2)
        .stderr_has("r.yaml:6")
        .stderr_has("folders only");
    assert!(!Path::new("/tmp/runbook-never").exists());
    for dest in ["/", "\"\"", "/opt/..", "."] {
        t.put_runbook(
            "r",
            &format!(
                "steps:\n  - id: app\n    upload:\n      src: files/app\n      dest: {dest}\n      delete: true\n"
            ),
        );
        t.run(&["validate", "r"])
            .code(2)
            .stderr_has("r.yaml:5")
            .stderr_has("refuses this dest");
    }
}

#[test]
fn many_files_go_over_in_one_batch_byte_for_byte() {
    let sshd = Sshd::start();
    let t = Test::new();
    let dest = sshd.dir.path().join("many");
    // 300 files in 10 folders: binary content with every byte value, a line
    // that looks like the batch's own delimiter, and an empty file.
    let mut expected = Vec::new();
    for i in 0..300 {
        let rel = format!("d{}/f{i}.bin", i % 10);
        let mut bytes: Vec<u8> = (0..=255u8).cycle().skip(i).take(100 + i * 7).collect();
        if i == 7 {
            bytes = b"RUNBOOK_DATA_END\nEOF\n'\"$(touch pwned)\n".to_vec();
        }
        if i == 8 {
            bytes.clear();
        }
        let path = t.path().join("runbooks/src").join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        expected.push((rel, bytes));
    }
    let yaml = format!(
        "hosts:\n{}steps:\n  - id: put\n    on: box\n    upload: {{ src: src, dest: {}, mode: \"0640\" }}\n",
        sshd.host_yaml("box"),
        dest.display()
    );
    t.put_runbook("r", &yaml);
    t.run(&["run", "r"])
        .code(0)
        .stdout_has("300 of 300 files written");
    for (rel, bytes) in &expected {
        let path = dest.join(rel);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{rel}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o640, "{rel}");
    }
    assert!(!sshd.dir.path().join("pwned").exists());
    assert!(tree(&dest).iter().all(|p| !p.contains("runbook-tmp")));
    // Unchanged: nothing written; one changed file: only it.
    t.run(&["run", "r", "--fresh"])
        .code(0)
        .stdout_has("unchanged (300 files");
    std::fs::write(t.path().join("runbooks/src/d3/f13.bin"), b"new").unwrap();
    t.run(&["run", "r", "--fresh"])
        .code(0)
        .stdout_has("1 of 300 files written");
    assert_eq!(std::fs::read(dest.join("d3/f13.bin")).unwrap(), b"new");
}

#[test]
fn a_file_that_cannot_be_written_fails_the_step_naming_it() {
    let sshd = Sshd::start();
    let t = Test::new();
    let dest = sshd.dir.path().join("blocked");
    std::fs::create_dir_all(&dest).unwrap();
    // `b` must become a folder, but a file is in the way.
    std::fs::write(dest.join("b"), "a file").unwrap();
    t.write("runbooks/src/a.txt", "a");
    t.write("runbooks/src/b/c.txt", "c");
    let yaml = format!(
        "hosts:\n{}steps:\n  - id: put\n    on: box\n    upload: {{ src: src, dest: {} }}\n",
        sshd.host_yaml("box"),
        dest.display()
    );
    t.put_runbook("r", &yaml);
    t.run(&["run", "r"]).code(1);
    let reason = t.status(None).reason_of("put");
    assert!(
        reason.contains("cannot make the folders") && reason.contains("blocked/b"),
        "{reason}"
    );
    // Nothing is put in place unless every file could be written.
    assert!(!dest.join("a.txt").exists());
    assert!(tree(&dest).iter().all(|p| !p.contains("runbook-tmp")));
    // A file that cannot be decoded in place: the same, naming the file.
    std::fs::remove_file(dest.join("b")).unwrap();
    std::fs::create_dir_all(dest.join("b/c.txt/inner")).unwrap();
    t.run(&["run", "r"]).code(1);
    let reason = t.status(None).reason_of("put");
    assert!(
        reason.contains("cannot write") && reason.contains("b/c.txt"),
        "{reason}"
    );
    assert!(
        tree(&dest).iter().all(|p| !p.contains("runbook-tmp")),
        "{:?}",
        tree(&dest)
    );
}

/// Bytes that do not compress, from a seed (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// An upload of four files over the real sshd, the second one big, with
/// an older version of each at its destination; caught while the first
/// file is in place and the big one is still on its way.
struct CutScene {
    t: Test,
    dest: PathBuf,
    names: [&'static str; 4],
    new: Vec<Vec<u8>>,
    big_old: Vec<u8>,
    child: std::process::Child,
}

/// With `delete`, the upload mirrors (`delete: true`) and `dest` holds two
/// stale files, `stale.txt` and `old/x.txt`.
fn upload_caught_mid_transfer(sshd: &Sshd, big: usize, timeout: &str, delete: bool) -> CutScene {
    let t = Test::new();
    let dest = sshd.dir.path().join("site");
    // In upload order: a small file, a big one (its transfer lasts long
    // enough on loopback to be cut), then two more, one in a subfolder.
    let names = ["a.txt", "b-big.bin", "c/d.txt", "e.txt"];
    let new: Vec<Vec<u8>> = vec![
        b"a new\n".to_vec(),
        noise(big, 0x5eed),
        b"d new\n".to_vec(),
        b"e new\n".to_vec(),
    ];
    for (name, bytes) in names.iter().zip(&new) {
        let path = t.path().join("runbooks/src").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    // Every destination holds an older version.
    let big_old = noise(1 << 20, 0x01d);
    for (name, bytes) in names.iter().zip([
        b"a old\n".to_vec(),
        big_old.clone(),
        b"d old\n".to_vec(),
        b"e old\n".to_vec(),
    ]) {
        let path = dest.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    if delete {
        std::fs::write(dest.join("stale.txt"), "stale\n").unwrap();
        std::fs::create_dir_all(dest.join("old")).unwrap();
        std::fs::write(dest.join("old/x.txt"), "stale\n").unwrap();
    }
    let big_inode = inode(&dest.join("b-big.bin"));
    let a_inode = inode(&dest.join("a.txt"));
    let yaml = format!(
        "hosts:\n{}steps:\n  - id: put\n    on: box\n    timeout: {timeout}\n    upload: {{ src: src, dest: {}, mode: \"0640\", delete: {delete} }}\n",
        sshd.host_yaml("box"),
        dest.display()
    );
    t.put_runbook("r", &yaml);
    let child = t.spawn(&["run", "r"]);
    // The first file is in place while the big one is still on its way:
    // its temporary file is there, not yet all written.
    let big_len = big as u64;
    let big_on_its_way = || {
        std::fs::read_dir(&dest).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".b-big.bin.runbook-tmp.")
                && e.metadata().is_ok_and(|m| m.len() < big_len)
        })
    };
    let caught = support::wait_for(Duration::from_secs(60), || {
        std::fs::metadata(dest.join("a.txt"))
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) != a_inode)
            && big_on_its_way()
            && inode(&dest.join("b-big.bin")) == big_inode
    });
    if !caught {
        support::signal(&child, "KILL");
        let ran = support::finish(child);
        panic!(
            "a.txt was never in place while b-big.bin was still being sent (every file renamed only at the end?)\n{ran:?}"
        );
    }
    CutScene {
        t,
        dest,
        names,
        new,
        big_old,
        child,
    }
}

impl CutScene {
    /// Right after the cut: the big file's destination holds exactly its
    /// old content, the first file its new one; the first file's inode.
    fn check_at_cut(&self) -> u64 {
        let big_at_cut = std::fs::read(self.dest.join("b-big.bin")).unwrap();
        assert!(
            big_at_cut == self.big_old,
            "the big file's destination did not hold the old content at the cut ({} bytes)",
            big_at_cut.len()
        );
        assert_eq!(std::fs::read(self.dest.join("a.txt")).unwrap(), b"a new\n");
        inode(&self.dest.join("a.txt"))
    }

    /// The temporary files under `dest`, once the host's shell had time
    /// to clean up (it does when its input ends).
    fn temps(dest: &Path) -> Vec<String> {
        let temps = || -> Vec<String> {
            tree(dest)
                .into_iter()
                .filter(|p| p.contains(".runbook-tmp."))
                .collect()
        };
        support::wait_for(Duration::from_secs(10), || temps().is_empty());
        temps()
    }
}

#[test]
fn a_connection_cut_mid_upload_keeps_the_files_in_place_and_the_run_goes_on() {
    let sshd = Sshd::start();
    let scene = upload_caught_mid_transfer(&sshd, 64 << 20, "120s", false);
    // The network goes: the connection's processes on the host side end
    // (by pid), the server stays up to be reconnected to.
    assert!(
        sshd.drop_connections() > 0,
        "no per-connection sshd process found"
    );
    let a_at_cut = scene.check_at_cut();
    let CutScene {
        t,
        dest,
        names,
        new,
        child,
        ..
    } = scene;
    let ran = support::finish(child);
    assert_eq!(
        ran.code, 0,
        "the step failed on a lost connection:\n{ran:?}"
    );
    for (name, bytes) in names.iter().zip(&new) {
        assert!(
            std::fs::read(dest.join(name)).unwrap() == *bytes,
            "{name} does not hold the new content"
        );
    }
    // What was in place at the cut was not written again.
    assert_eq!(inode(&dest.join("a.txt")), a_at_cut, "a.txt was rewritten");
    let a = format!("unchanged {}", dest.join("a.txt").display());
    assert!(ran.stdout.contains(&a), "no {a:?} in:\n{}", ran.stdout);
    assert!(
        ran.stdout.contains("4 of 4 files written") && ran.stdout.contains("re-established once"),
        "{}",
        ran.stdout
    );
    assert!(sshd.logins() >= 2, "the engine never reconnected");
    let s = t.status(None);
    assert_eq!(s.state_of("put"), "succeeded");
    assert_eq!(s.step("put").attempts, 1);
    let left = CutScene::temps(&dest);
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn an_upload_whose_host_stays_unreachable_fails_at_its_timeout_saying_so() {
    let mut sshd = Sshd::start();
    let scene = upload_caught_mid_transfer(&sshd, 32 << 20, "15s", false);
    // The server goes too, and does not come back.
    let started = std::time::Instant::now();
    sshd.cut();
    scene.check_at_cut();
    let CutScene { t, dest, child, .. } = scene;
    let ran = support::finish(child);
    ran.code(1);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    let s = t.status(None);
    assert_eq!(s.state_of("put"), "failed");
    let reason = s.reason_of("put");
    assert!(
        reason.contains("lost the SSH connection to `box` during the upload")
            && reason.contains("could not reconnect within the step's timeout (15s)")
            && reason.contains("none is half-written"),
        "{reason}"
    );
    // Kept: the file in place before the cut; untouched: the rest.
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a new\n");
    assert_eq!(std::fs::read(dest.join("c/d.txt")).unwrap(), b"d old\n");
    let left = CutScene::temps(&dest);
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn read_only_and_setuid_modes_are_written_by_a_login_user_without_root_powers() {
    // A root session without CAP_DAC_OVERRIDE and CAP_FSETID is held to a
    // plain user's rules: no writing into a file whose mode forbids it, and
    // a write clears the set-user-ID bit. (The test's sshd logs in as
    // root, who would otherwise get by.)
    let home = tempfile::tempdir().unwrap();
    let sshd = Sshd::start_in(
        home.path(),
        "exec setpriv --bounding-set -dac_override,-fsetid sh -c 'exec /usr/sbin/sshd -D -e -f \"$0\"' \"$0\"",
    );
    let t = Test::new();
    t.write("runbooks/keys/id.key", "secret key\n");
    t.write("runbooks/bin/tool", "#!/bin/sh\necho tool\n");
    let dest = sshd.dir.path().join("out");
    let yaml = format!(
        "hosts:\n{}steps:\n  - id: key\n    on: box\n    upload: {{ src: keys, dest: {d}/keys, mode: \"0400\" }}\n  \
         - id: tool\n    on: box\n    upload: {{ src: bin, dest: {d}/bin, mode: \"4755\" }}\n",
        sshd.host_yaml("box"),
        d = dest.display()
    );
    t.put_runbook("r", &yaml);
    let ran = t.run(&["run", "r"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dest.join(p)).unwrap().permissions(),
        ) & 0o7777
    };
    assert_eq!(t_read(&dest.join("keys/id.key")), "secret key\n");
    assert_eq!(mode("keys/id.key"), 0o400);
    assert_eq!(mode("bin/tool"), 0o4755);
    // The same again is unchanged, and a new content replaces the
    // read-only file.
    t.write("runbooks/keys/id.key", "new key\n");
    let ran = t.run(&["run", "r"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(t_read(&dest.join("keys/id.key")), "new key\n");
    assert_eq!(mode("keys/id.key"), 0o400);
    assert!(tree(&dest).iter().all(|p| !p.contains(".runbook-tmp.")));
}

fn t_read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn a_mirror_upload_cut_mid_transfer_counts_the_removals_made_before_the_cut() {
    let sshd = Sshd::start();
    let scene = upload_caught_mid_transfer(&sshd, 64 << 20, "120s", true);
    // The stale files went before anything was written.
    assert!(!scene.dest.join("stale.txt").exists());
    sshd.drop_connections();
    let CutScene {
        t,
        dest,
        names,
        new,
        child,
        ..
    } = scene;
    let ran = support::finish(child);
    assert_eq!(ran.code, 0, "{ran:?}");
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.push("c/".into());
    want.sort();
    assert_eq!(tree(&dest), want);
    for (name, bytes) in names.iter().zip(&new) {
        assert!(std::fs::read(dest.join(name)).unwrap() == *bytes, "{name}");
    }
    // The note counts what the step removed, before the cut or after.
    let s = t.status(None);
    assert_eq!(s.state_of("put"), "succeeded");
    let note =
        "4 of 4 files written, 3 removed; the SSH connection was lost and re-established once";
    assert!(ran.stdout.contains(note), "no {note:?} in:\n{}", ran.stdout);
}
