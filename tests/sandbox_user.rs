//! End to end: the hetzner-parity sandbox without root (issue 12). A real
//! non-root user (`rbsandbox`) runs `up.sh`, the runbook and `down.sh`
//! against a Docker daemon it "already has": a real Debian dockerd the test
//! starts (as root) in a network namespace of its own, whose socket the
//! user's group may use. Everything the user runs runs in that namespace, so
//! all traffic stays in it. The tests read the daemon's real state with the
//! docker CLI, not the runbook's output.

mod support;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::sandbox::{env_map, runbook_dir, SERVICES};
use support::{alive, Ran};

const USER: &str = "rbsandbox";

fn sh(cmd: &mut Command) -> Ran {
    Ran::from(cmd.output().expect("run a command"))
}

/// Makes the user (with a login shell and a home) once; parallel tests wait
/// on a lock.
fn ensure_user() {
    let out = sh(Command::new("id").arg("-u"));
    assert_eq!(
        out.stdout.trim(),
        "0",
        "these tests make a user and a dockerd: run them as root (CI does)"
    );
    sh(Command::new("flock")
        .arg("/tmp/runbook-rbsandbox-user.lock")
        .args(["sh", "-c"])
        .arg(format!(
            "id {USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {USER}"
        )))
    .code(0);
}

/// A Docker daemon of the user's, in a network namespace of the test's:
/// everything is stopped and removed on drop, also when the test fails.
struct UserDaemon {
    ns: String,
    /// Root's folder: the engine's data root, exec root, socket, pid file.
    engine: tempfile::TempDir,
    /// The user's folder: the sandbox dir (`sb`) and the runbook's state.
    work: tempfile::TempDir,
    home: PathBuf,
}

/// The user's copy of what it runs: the hetzner-parity folder and the
/// runbook binary under the user's folder (`repo/`), owned by the user, so
/// the test does not depend on where the checkout lives (a CI checkout under
/// `/root` is closed to other users).
fn give_checkout(work: &Path) {
    let repo = work.join("repo");
    std::fs::create_dir_all(repo.join("runbooks")).unwrap();
    sh(Command::new("cp")
        .arg("-R")
        .arg(runbook_dir())
        .arg(repo.join("runbooks/hetzner-parity")))
    .code(0);
    std::fs::copy(env!("CARGO_BIN_EXE_runbook"), repo.join("runbook")).unwrap();
    sh(Command::new("chown")
        .arg("-R")
        .arg(format!("{USER}:{USER}"))
        .arg(&repo))
    .code(0);
}

impl UserDaemon {
    fn start(tag: &str) -> UserDaemon {
        ensure_user();
        let ns = format!("rbsu-{}-{tag}", std::process::id());
        let engine = tempfile::Builder::new()
            .prefix("rbsu-engine")
            .tempdir()
            .unwrap();
        let work = tempfile::Builder::new()
            .prefix("rbsu-work")
            .tempdir()
            .unwrap();
        // The user reaches the socket (its group may use it) and owns its folder.
        sh(Command::new("chmod").arg("711").arg(engine.path())).code(0);
        sh(Command::new("chown")
            .arg(format!("{USER}:{USER}"))
            .arg(work.path()))
        .code(0);
        let _ = sh(Command::new("ip").args(["netns", "del", &ns]));
        sh(Command::new("ip").args(["netns", "add", &ns])).code(0);
        let d = UserDaemon {
            ns,
            engine,
            work,
            home: PathBuf::from(format!("/home/{USER}")),
        };
        give_checkout(d.work.path());
        sh(Command::new("ip").args(["netns", "exec", &d.ns, "ip", "link", "set", "lo", "up"]))
            .code(0);
        let started = Instant::now();
        let out = sh(Command::new(runbook_dir().join("sandbox/engine.sh"))
            .arg("start")
            .arg(d.engine.path().join("engine"))
            .arg(&d.ns)
            .args(["-G", USER]));
        out.code(0);
        assert_eq!(out.stdout.trim(), d.host());
        // The user reaches it by a path with a space in it.
        std::os::unix::fs::symlink("engine", d.engine.path().join("the daemon")).unwrap();
        eprintln!(
            "the user's dockerd up in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        d
    }

    /// DOCKER_HOST of the daemon.
    fn host(&self) -> String {
        format!("unix://{}/engine/docker.sock", self.engine.path().display())
    }

    /// DOCKER_HOST as the user has it: the same socket by a path with a space.
    fn user_host(&self) -> String {
        format!(
            "unix://{}/the daemon/docker.sock",
            self.engine.path().display()
        )
    }

    /// dockerd's pid.
    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.engine.path().join("engine/started.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The user's copy of runbooks/hetzner-parity.
    fn runbook_dir(&self) -> PathBuf {
        self.work.path().join("repo/runbooks/hetzner-parity")
    }

    /// The user's copy of the runbook binary.
    fn bin(&self) -> PathBuf {
        self.work.path().join("repo/runbook")
    }

    /// The base a root run caches (the user cannot debootstrap), built if
    /// missing, put in the user's copy's cache, readable by the user.
    fn give_base(&self) {
        let built = sh(&mut Command::new(runbook_dir().join("sandbox/base.sh")));
        built.code(0);
        let tar = PathBuf::from(built.stdout.trim());
        let cache = self.work.path().join("repo/state/sandbox-base");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::copy(&tar, cache.join(tar.file_name().unwrap())).unwrap();
        sh(Command::new("chown")
            .arg("-R")
            .arg(format!("{USER}:{USER}"))
            .arg(self.work.path().join("repo/state")))
        .code(0);
    }

    /// The sandbox folder: with a space in its path, as a laptop's may be.
    fn sandbox(&self) -> PathBuf {
        self.work.path().join("my sandbox")
    }

    /// A command run as the user, in the namespace, from the user's folder,
    /// with a clean environment that names the daemon.
    fn as_user(&self, program: &Path, args: &[&str]) -> Ran {
        self.as_user_with(program, args, &[])
    }

    /// `as_user` with more environment variables.
    fn as_user_with(&self, program: &Path, args: &[&str], env: &[(&str, String)]) -> Ran {
        let started = Instant::now();
        let ran = sh(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args([
                "setpriv",
                &format!("--reuid={USER}"),
                &format!("--regid={USER}"),
                "--init-groups",
                "env",
                "-i",
            ])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={USER}"))
            .arg(format!("LOGNAME={USER}"))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg("NO_COLOR=1")
            .arg(format!("DOCKER_HOST={}", self.user_host()))
            .arg(format!("SANDBOX_DIR={}", self.sandbox().display()))
            .arg(format!(
                "RUNBOOK_STATE={}",
                self.work.path().join("state/runbook.db").display()
            ))
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(program)
            .args(args)
            .current_dir(self.work.path()));
        eprintln!(
            "as {USER}: {} {}: exit {} in {:.1}s",
            program.display(),
            args.first().unwrap_or(&""),
            ran.code,
            started.elapsed().as_secs_f64()
        );
        ran
    }

    fn script(&self, name: &str, args: &[&str]) -> Ran {
        self.as_user(&self.runbook_dir().join("sandbox").join(name), args)
    }

    /// A sandbox script without arguments, with more environment variables.
    fn script_with(&self, name: &str, env: &[(&str, String)]) -> Ran {
        self.as_user_with(&self.runbook_dir().join("sandbox").join(name), &[], env)
    }

    /// The docker CLI against the daemon (as root); stdout.
    fn docker(&self, args: &[&str]) -> String {
        let out = sh(Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_BUILDKIT", "0"));
        assert_eq!(out.code, 0, "docker {args:?}: {}", out.stderr);
        out.stdout
    }

    fn inspect(&self, what: &str) -> Value {
        let v: Value = serde_json::from_str(&self.docker(&["inspect", what])).unwrap();
        v[0].clone()
    }

    /// Whether an image of that name exists.
    fn has_image(&self, name: &str) -> bool {
        sh(Command::new("docker")
            .args(["image", "inspect", name])
            .env("DOCKER_HOST", self.host()))
        .code
            == 0
    }

    /// Every container (running or not): id -> its compose project label.
    fn containers(&self) -> BTreeMap<String, String> {
        self.docker(&[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Label \"com.docker.compose.project\"}}",
        ])
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((id, p)) => (id.to_string(), p.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
    }

    /// A project's running containers: service -> id.
    fn running(&self, project: &str) -> BTreeMap<String, String> {
        self.docker(&[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(s, id)| (s.to_string(), id.to_string()))
        .collect()
    }

    /// A tiny image built here (nothing can be pulled) and a container of
    /// it, under another compose project, with a volume: the user's own.
    fn bystander(&self) -> String {
        let ctx = self.engine.path().join("bystander");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy("/bin/busybox", ctx.join("busybox"))
            .expect("/bin/busybox (apt-get install busybox-static)");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sleep\", \"3600\"]\n",
        )
        .unwrap();
        self.docker(&[
            "build",
            "-q",
            "-t",
            "bystander/app:1",
            &ctx.display().to_string(),
        ]);
        self.docker(&[
            "run",
            "-d",
            "--name",
            "bystander",
            "--label",
            "com.docker.compose.project=bystander",
            "-v",
            "bystander_data:/data",
            "bystander/app:1",
        ])
        .trim()
        .to_string()
    }
}

impl Drop for UserDaemon {
    fn drop(&mut self) {
        // The sandbox first (as the user, like anyone would), then the daemon
        // by its pid, what it left mounted, anything left in the namespace
        // (all started here), and the namespace.
        if self.sandbox().exists() {
            let _ = self.script("down.sh", &[]);
        }
        let _ = Command::new(runbook_dir().join("sandbox/engine.sh"))
            .arg("stop")
            .arg(self.engine.path().join("engine"))
            .status();
        let pids = || {
            let out = sh(Command::new("ip").args(["netns", "pids", &self.ns]));
            out.stdout
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        for pid in pids() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn pid_in(file: PathBuf) -> i32 {
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

fn env_of(d: &UserDaemon, id: &str) -> BTreeMap<String, String> {
    env_map(&d.inspect(id))
}

#[test]
fn without_root_the_sandbox_runs_on_the_users_daemon_under_its_own_project() {
    let d = UserDaemon::start("run");
    d.give_base();
    let bystander = d.bystander();
    let bystander_started = d.inspect(&bystander)["State"]["StartedAt"].clone();
    let bin = &d.bin();
    // up.sh says which daemon it uses and under which project.
    let up = d.script("up.sh", &[]);
    up.code(0);
    let env: BTreeMap<String, String> = std::fs::read_to_string(d.sandbox().join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let project = env["COMPOSE_PROJECT_NAME"].clone();
    assert_eq!(env["DOCKER_HOST"], d.user_host().replace(' ', "\\ "));
    assert!(project.starts_with("rbsandbox-"), "{project}");
    up.stderr_has(&format!(
        "not root: using the Docker daemon at {} with compose project {project}",
        d.user_host()
    ));
    // What it wrote is the user's.
    let uid = std::fs::metadata(&d.home).unwrap().uid();
    for f in [
        "env",
        "runbook-args",
        "server/opt/mcp-stack/.env",
        "run/sshd.pid",
    ] {
        assert_eq!(
            std::fs::metadata(d.sandbox().join(f)).unwrap().uid(),
            uid,
            "{f}"
        );
    }
    let args: Vec<String> = std::fs::read_to_string(d.sandbox().join("runbook-args"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(args.contains(&format!("ssh_user={USER}")), "{args:?}");
    // `. env` gives the plain docker CLI the sandbox's daemon and project.
    d.as_user(
        Path::new("/bin/bash"),
        &[
            "-c",
            "unset DOCKER_HOST; set -a; . \"$SANDBOX_DIR/env\"; set +a; docker ps -q >/dev/null && echo \"project=$COMPOSE_PROJECT_NAME\"",
        ],
    )
    .code(0)
    .stdout_has(&format!("project={project}"));

    // The first run is held on Lukas's tokens.
    let rb = d.runbook_dir().join("runbook.yaml").display().to_string();
    let mut run = vec!["run", rb.as_str(), "--fresh"];
    run.extend(args.iter().map(String::as_str));
    d.as_user(bin, &run).code(3).stdout_has("held");
    let running = d.running(&project);
    assert_eq!(running.len(), 13, "{running:?}");
    for svc in SERVICES {
        let id = running
            .get(svc)
            .unwrap_or_else(|| panic!("{svc} is not running: {running:?}"));
        assert_eq!(d.inspect(id)["State"]["Status"], "running", "{svc}");
    }
    // Every container but the user's own is the sandbox project's.
    for (id, p) in d.containers() {
        if id != bystander[..12] {
            assert_eq!(p, project, "container {id}");
        }
    }
    let ports = d.inspect(&running["mcp-proxy"])["NetworkSettings"]["Ports"]["8000/tcp"].clone();
    let bound: Vec<(String, String)> = ports
        .as_array()
        .expect("8000 is published")
        .iter()
        .map(|b| {
            (
                b["HostIp"].as_str().unwrap().to_string(),
                b["HostPort"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!bound.is_empty());
    for (ip, port) in &bound {
        assert_eq!((ip.as_str(), port.as_str()), ("127.0.0.1", "8000"));
    }

    // Lukas's tokens in the server's .env, written by the user; resume.
    let valid = d.runbook_dir().join("sandbox/valid-tokens.env");
    let dotenv = d.sandbox().join("server/opt/mcp-stack/.env");
    d.as_user(
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!("cat '{}' >> '{}'", valid.display(), dotenv.display()),
        ],
    )
    .code(0);
    d.as_user(bin, &["resume", "hetzner-parity"]).code(0);
    let running = d.running(&project);
    assert_eq!(running.len(), 13, "{running:?}");
    assert_eq!(
        env_of(&d, &running["mcp-github"])["GITHUB_PERSONAL_ACCESS_TOKEN"],
        "ghp_sandboxValidToken1111111111111111"
    );

    // down.sh: the project's containers, networks and volumes go, and the
    // processes the sandbox started; the daemon and the user's own stay.
    let sshd = pid_in(d.sandbox().join("run/sshd.pid"));
    let upstream = pid_in(d.sandbox().join("run/upstream.pid"));
    assert!(alive(sshd) && alive(upstream));
    let volumes = |p: &str| {
        d.docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={p}"),
        ])
    };
    assert!(!volumes(&project).trim().is_empty(), "no volume to remove");
    assert!(d.has_image("redis:7"));
    // The user's shell may name a compose file of its own (direnv does):
    // down.sh does not read it, so the volume it names stays.
    d.docker(&["volume", "create", "mine_data"]);
    let mine = d.work.path().join("mine.yml");
    std::fs::write(
        &mine,
        "services:\n  app:\n    image: bystander/app:1\n    volumes: [\"keep:/d\"]\nvolumes:\n  keep:\n    name: mine_data\n",
    )
    .unwrap();
    d.script_with("down.sh", &[("COMPOSE_FILE", mine.display().to_string())])
        .code(0);
    let left: Vec<String> = d
        .containers()
        .into_iter()
        .filter(|(_, p)| p == &project)
        .map(|(id, _)| id)
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
    assert_eq!(volumes(&project).trim(), "", "volumes left");
    let networks = d.docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    assert_eq!(networks.trim(), "", "networks left");
    assert!(!alive(sshd), "sshd {sshd} still runs");
    assert!(!alive(upstream), "upstream.py {upstream} still runs");
    // Nothing of the user's is left running in the namespace either.
    let users: Vec<String> = sh(Command::new("ip").args(["netns", "pids", &d.ns]))
        .stdout
        .split_whitespace()
        .filter(|pid| alive(pid.parse().unwrap()))
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid))
        .map(|pid| {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{pid}: {}", cmd.replace('\0', " "))
        })
        .collect();
    assert!(users.is_empty(), "the user's processes left: {users:?}");
    // The stand-ins no longer shadow the names; the imported base stays.
    assert!(!d.has_image("redis:7"), "the redis:7 stand-in is left");
    assert!(d.has_image("rbsandbox/base:latest"));
    // The user's daemon still runs, and the user's container was untouched.
    assert!(alive(d.pid()), "the user's dockerd was stopped");
    d.docker(&["version"]);
    let by = d.inspect(&bystander);
    assert_eq!(by["State"]["Status"], "running");
    assert_eq!(by["State"]["StartedAt"], bystander_started);
    assert_eq!(
        d.docker(&["volume", "ls", "-q", "--filter", "name=bystander_data"])
            .trim(),
        "bystander_data"
    );
    assert!(d.has_image("bystander/app:1"));
    assert_eq!(
        d.docker(&["volume", "ls", "-q", "--filter", "name=mine_data"])
            .trim(),
        "mine_data",
        "down.sh removed the volume the user's COMPOSE_FILE names"
    );
}

#[test]
fn without_root_a_real_image_of_a_stand_ins_name_is_refused_and_kept() {
    let d = UserDaemon::start("refuse");
    d.bystander();
    // The user's own image named like a stand-in, without the stand-in label.
    d.docker(&["tag", "bystander/app:1", "redis:7"]);
    let mine = d.inspect("redis:7")["Id"].clone();
    let up = d.script("up.sh", &[]);
    up.code(1)
        .stderr_has("your Docker daemon has an image redis:7 of its own")
        .stderr_has("nothing on your daemon was changed");
    assert_eq!(d.inspect("redis:7")["Id"], mine);
    // Refused before anything was built or started.
    for name in [
        "postgres:16",
        "rbsandbox/standins:latest",
        "rbsandbox/base:latest",
    ] {
        assert!(!d.has_image(name), "{name} was built");
    }
    let containers = d.containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(!d.sandbox().join("run/sshd.pid").exists());

    // Without that image, but without a base to import: it says what to do.
    d.docker(&["image", "rm", "redis:7"]);
    let cache = d.work.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    sh(Command::new("chown")
        .arg(format!("{USER}:{USER}"))
        .arg(&cache))
    .code(0);
    let up = d.script_with("up.sh", &[("SANDBOX_CACHE", cache.display().to_string())]);
    up.code(1).stderr_has(&format!(
        "there is no cached base to import: build it once as root (sudo {}",
        d.runbook_dir().join("sandbox/base.sh").display()
    ));
    // A cached base the user may not read.
    let digest = sh(Command::new("sh").arg("-c").arg(format!(
        "cksum < '{}' | cut -d' ' -f1",
        d.runbook_dir().join("sandbox/base.sh").display()
    )))
    .stdout;
    let tar = cache.join(format!("base-{}.tar", digest.trim()));
    std::fs::write(&tar, "not for the user").unwrap();
    sh(Command::new("chmod").arg("600").arg(&tar)).code(0);
    let up = d.script_with("up.sh", &[("SANDBOX_CACHE", cache.display().to_string())]);
    up.code(1)
        .stderr_has(&format!("cannot read the cached base {}", tar.display()))
        .stderr_has("sudo chmod a+r");
    assert!(!d.has_image("rbsandbox/base:latest"));
}

/// Kills the processes on drop.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A sandbox's records outlive its processes and links (a reboot, a kill
/// -9): by the time down.sh (or up.sh, which runs it first) reads them, the
/// pids of sshd, upstream.py and dockerd can be other processes', and a veth
/// of the recorded name another sandbox's. down.sh and `engine.sh stop`
/// leave those alone; a veth pair up.sh left whole here is still removed.
#[test]
fn down_leaves_alone_what_took_a_recorded_pid_or_veth_name() {
    let t = tempfile::Builder::new()
        .prefix("rbsu-stale")
        .tempdir()
        .unwrap();
    let root = t.path().join("sb");
    std::fs::create_dir_all(root.join("run")).unwrap();
    std::fs::create_dir_all(root.join("engine")).unwrap();
    let spawn = |script: &str| {
        Command::new("sh")
            .args(["-c", script])
            .spawn()
            .expect("start sh")
    };
    // Someone else's processes, with the pids the sandbox recorded; the
    // "sshd" one with a child of its own.
    let procs = Procs(vec![
        spawn("sleep 300 & wait"),
        spawn("exec sleep 300"),
        spawn("exec sleep 300"),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pids: Vec<i32> = procs.0.iter().map(|c| c.id() as i32).collect();
    let child: i32 = sh(Command::new("ps").args(["-o", "pid=", "--ppid", &pids[0].to_string()]))
        .stdout
        .trim()
        .parse()
        .expect("the sh has a sleep child");
    std::fs::write(root.join("run/sshd.pid"), format!("{}\n", pids[0])).unwrap();
    std::fs::write(root.join("run/upstream.pid"), format!("{}\n", pids[1])).unwrap();
    std::fs::write(root.join("engine/started.pid"), format!("{}\n", pids[2])).unwrap();
    std::fs::write(root.join("engine/dockerd.pid"), format!("{}\n", pids[2])).unwrap();
    // Another sandbox's veth, its peer in that sandbox's namespace; this
    // sandbox's namespace is gone.
    let tag = std::process::id() % 100_000;
    let (veth, peer, other_ns) = (
        format!("rbhx{tag}"),
        format!("rbnx{tag}"),
        format!("rbsu-other-{tag}"),
    );
    let _ = sh(Command::new("ip").args(["link", "del", &veth]));
    let _ = sh(Command::new("ip").args(["netns", "del", &other_ns]));
    sh(Command::new("ip").args(["netns", "add", &other_ns])).code(0);
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Ns(other_ns.clone());
    sh(Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", &peer]))
        .code(0);
    sh(Command::new("ip").args(["link", "set", &peer, "netns", &other_ns])).code(0);
    std::fs::write(root.join("veth"), format!("{veth}\n")).unwrap();
    std::fs::write(root.join("netns"), format!("rbsb-gone-{tag}\n")).unwrap();

    sh(Command::new(runbook_dir().join("sandbox/down.sh")).arg(&root)).code(0);
    for pid in pids.iter().chain([&child]) {
        assert!(
            alive(*pid),
            "down.sh killed {pid}, which was not the sandbox's"
        );
    }
    let link = sh(Command::new("ip").args(["link", "show", "dev", &veth]));
    assert_eq!(
        link.code, 0,
        "down.sh deleted another sandbox's veth {veth}"
    );
    assert!(
        !root.join("run/sshd.pid").exists(),
        "the stale records stay"
    );

    // engine.sh stop by itself, too.
    sh(Command::new(runbook_dir().join("sandbox/engine.sh"))
        .arg("stop")
        .arg(root.join("engine")))
    .code(0);
    assert!(alive(pids[2]), "engine.sh stop killed {}", pids[2]);

    // A pair up.sh left here whole (it stopped before moving the peer) is
    // this sandbox's, and goes.
    sh(Command::new("ip").args(["link", "del", &veth])).code(0);
    sh(Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", &peer]))
        .code(0);
    std::fs::write(root.join("veth"), format!("{veth}\n")).unwrap();
    sh(Command::new(runbook_dir().join("sandbox/down.sh")).arg(&root)).code(0);
    let link = sh(Command::new("ip").args(["link", "show", "dev", &veth]));
    assert_ne!(link.code, 0, "the sandbox's own veth {veth} is left");
}

/// SANDBOX_DIR naming a folder of the user's by mistake: up.sh refuses,
/// says what to do, and deletes nothing (it empties only an empty folder or
/// a sandbox's).
#[test]
fn up_refuses_a_sandbox_dir_that_holds_something_else() {
    let t = tempfile::Builder::new()
        .prefix("rbsu-mine")
        .tempdir()
        .unwrap();
    let mine = t.path().join("notes.txt");
    std::fs::write(&mine, "mine").unwrap();
    let up = sh(Command::new(runbook_dir().join("sandbox/up.sh")).env("SANDBOX_DIR", t.path()));
    up.code(1)
        .stderr_has("is not empty and not a sandbox folder")
        .stderr_has("set SANDBOX_DIR to a new or empty folder");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "mine");
}
