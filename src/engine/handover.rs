//! A run handed over to another machine (SPEC §11): its runbook found in
//! this machine's checkout by the path relative to the folder runbook was
//! started in, and recorded that way as each pass starts.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::{RunRow, Store};

/// The runbook file of a recorded run, here: `--runbook PATH` when given,
/// else its relative path under `cwd` (a checkout of the same repository
/// on another machine), else the path it was last run from.
pub(super) fn runbook_file(cwd: &Path, run: &RunRow, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        let path = cwd.join(path);
        if !path.is_file() {
            return Err(Error::Usage(format!(
                "--runbook {}: no such file",
                path.display()
            )));
        }
        return Ok(path);
    }
    if let Some(rel) = &run.rel_path {
        let here = cwd.join(rel);
        if here.is_file() {
            return Ok(here);
        }
    }
    let last = PathBuf::from(&run.path);
    if last.is_file() {
        return Ok(last);
    }
    let relative = run
        .rel_path
        .as_deref()
        .map(|r| format!("`{r}` under this folder ({}), nor ", cwd.display()))
        .unwrap_or_default();
    Err(Error::Usage(format!(
        "run {}'s runbook `{}` is neither {relative}at {}, where it was last run from; \
         run runbook from the top folder of a checkout of the same repository, \
         or give its file with --runbook PATH",
        run.id, run.runbook, run.path
    )))
}

/// Records the file a pass runs from: its path here, relative to `cwd`
/// when under it, and the hash of its content.
pub(super) fn record_file(store: &Store, run_id: i64, cwd: &Path, path: &Path) -> Result<()> {
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| cwd.join(path));
    let top = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let rel = full
        .strip_prefix(&top)
        .ok()
        .map(|r| r.display().to_string());
    let bytes = std::fs::read(&full).map_err(|e| Error::io("cannot read the runbook", e))?;
    let hash = format!("{:x}", Sha256::digest(&bytes));
    store.set_run_file(run_id, &full.display().to_string(), rel.as_deref(), &hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunState;

    fn run(path: &str, rel: Option<&str>) -> RunRow {
        RunRow {
            id: 7,
            runbook: "deploy".into(),
            path: path.into(),
            state: RunState::Held,
            started_at: String::new(),
            finished_at: None,
            vars: Vec::new(),
            rel_path: rel.map(str::to_string),
            file_hash: None,
            moved_to: None,
        }
    }

    #[test]
    fn the_checkout_here_comes_before_the_path_it_was_last_run_from() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for dir in [&a, &b] {
            std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
            std::fs::write(dir.path().join("runbooks/deploy.yaml"), "steps: []\n").unwrap();
        }
        let there = a.path().join("runbooks/deploy.yaml");
        let r = run(&there.display().to_string(), Some("runbooks/deploy.yaml"));
        assert_eq!(
            runbook_file(b.path(), &r, None).unwrap(),
            b.path().join("runbooks/deploy.yaml")
        );
        // Elsewhere on the same machine: where it was last run from.
        let c = tempfile::tempdir().unwrap();
        assert_eq!(runbook_file(c.path(), &r, None).unwrap(), there);
        // An old run (no relative path) keeps its absolute one.
        assert_eq!(
            runbook_file(b.path(), &run(&there.display().to_string(), None), None).unwrap(),
            there
        );
    }

    #[test]
    fn a_runbook_found_nowhere_says_where_it_looked_and_what_to_do() {
        let c = tempfile::tempdir().unwrap();
        let r = run("/gone/runbooks/deploy.yaml", Some("runbooks/deploy.yaml"));
        let e = runbook_file(c.path(), &r, None).unwrap_err().to_string();
        assert!(
            e.contains("`runbooks/deploy.yaml` under this folder"),
            "{e}"
        );
        assert!(e.contains("/gone/runbooks/deploy.yaml"), "{e}");
        assert!(e.contains("--runbook PATH"), "{e}");
        let e = runbook_file(c.path(), &r, Some(Path::new("nope.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.yaml: no such file"), "{e}");
    }
}
