//! Commands that print secrets (SPEC §13): `secrets.NAME.from` and
//! `env_files: - { command }`. Each distinct command runs at most once per
//! look, however many secrets, steps or hosts read it, and only when a
//! value is still wanted; its output lives only in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

/// How long a command may run when its entry names no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one command gave: its standard output (one trailing newline
/// removed), or why there is none, naming the command (never its output).
pub type Output = Result<String, String>;

/// The commands of one look, each run once (when first asked for).
#[derive(Debug, Clone, Default)]
pub struct Runner {
    dir: PathBuf,
    cells: Arc<Mutex<HashMap<String, Arc<OnceCell<Output>>>>>,
}

impl Runner {
    /// A runner for one look; commands run in `dir` (the runbook's folder).
    pub fn new(dir: &Path) -> Self {
        Runner {
            dir: dir.to_path_buf(),
            cells: Arc::default(),
        }
    }

    /// The output of `command`: run now if this look has not run it yet,
    /// otherwise what it gave then.
    pub async fn output(&self, command: &str, timeout: Duration) -> Output {
        let cell = {
            let mut cells = match self.cells.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            cells.entry(command.to_string()).or_default().clone()
        };
        cell.get_or_init(|| run(command, timeout, &self.dir))
            .await
            .clone()
    }
}

/// Kills the command's process group (the group of the `sh` this look
/// started, by its pid) unless the command ended: on a timeout, and when
/// the look is dropped (Ctrl-C).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Runs `sh -c command` in `dir`, stdin `/dev/null`, in a process group
/// of its own, for at most `timeout`.
async fn run(command: &str, timeout: Duration, dir: &Path) -> Output {
    let shown = format!("`{command}`");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Err(format!("{shown} could not be started: {e}")),
    };
    let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let done = tokio::time::timeout(timeout, child.wait_with_output()).await;
    let out = match done {
        Err(_) => {
            drop(guard);
            return Err(format!(
                "{shown} did not finish within {}; it was stopped",
                humantime::format_duration(timeout)
            ));
        }
        Ok(Err(e)) => return Err(format!("{shown} could not be read: {e}")),
        Ok(Ok(out)) => {
            guard.0 = None;
            out
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = telling_line(&stderr)
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    if !out.status.success() {
        let how = match out.status.code() {
            Some(code) => format!("exited {code}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(format!("{shown} {how}{last}"));
    }
    let Ok(mut text) = String::from_utf8(out.stdout) else {
        return Err(format!("{shown} printed something that is not UTF-8 text"));
    };
    if text.ends_with('\n') {
        text.pop();
    }
    if text.is_empty() {
        return Err(format!("{shown} printed nothing{last}"));
    }
    Ok(text)
}

/// The stderr line that says what went wrong: the last one with `error:`
/// (age prints `age: error: ...` and then a line asking for bug reports;
/// pass `Error: ...`), else the last line that is not blank.
fn telling_line(stderr: &str) -> Option<&str> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .rfind(|l| l.to_ascii_lowercase().contains("error:"))
        .or_else(|| lines().next_back())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_naming_the_error_is_the_one_shown() {
        // age 1.x, on a file that is not there.
        let age = "age: error: failed to open input file \"s.age\": open s.age: no such file or directory\nage: report unexpected or unhelpful errors at https://filippo.io/age/report\n";
        assert_eq!(
            telling_line(age),
            Some("age: error: failed to open input file \"s.age\": open s.age: no such file or directory")
        );
        assert_eq!(
            telling_line("warming up\nno such key\n\n"),
            Some("no such key")
        );
        assert_eq!(telling_line("\n  \n"), None);
    }

    #[tokio::test]
    async fn one_trailing_newline_is_removed_and_failures_name_the_command() {
        let r = Runner::new(Path::new("/"));
        let t = Duration::from_secs(5);
        assert_eq!(r.output("printf 'a\\n\\n'", t).await, Ok("a\n".into()));
        assert_eq!(
            r.output("echo oops >&2; echo last >&2; exit 3", t).await,
            Err("`echo oops >&2; echo last >&2; exit 3` exited 3: last".into())
        );
        assert_eq!(
            r.output("true", t).await,
            Err("`true` printed nothing".into())
        );
        let slow = r.output("sleep 5", Duration::from_millis(200)).await;
        assert!(slow.unwrap_err().contains("did not finish within 200ms"));
    }
}
