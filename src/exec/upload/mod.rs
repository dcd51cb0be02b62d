//! `upload`: files or folders copied to a host (or locally), written
//! atomically (temp file + rename), skipped when the content is unchanged.
//!
//! The room's files: `local.rs` (on this machine), `remote.rs` (on a host,
//! across dropped connections), `script.rs` (the scripts a host runs: the
//! hashes of what is there, and the writes); this file holds what they
//! share.

mod local;
mod remote;
mod script;

use sha2::{Digest, Sha256};

pub use crate::action::FileToWrite;
use crate::exec::mirror;
use crate::exec::Outcome;
pub use local::local;
pub use remote::{remote, run_script, Remote};
pub use script::{hash_script, parse_hashes};

/// The SHA-256 of a file's content, in hex.
pub fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The step's note: how many files were written (and removed).
fn summary(written: usize, total: usize, removed: usize) -> Outcome {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let note = if written == 0 && removed == 0 {
        format!(
            "unchanged ({total} file{} already up to date)",
            plural(total)
        )
    } else if removed == 0 {
        format!("{written} of {total} file{} written", plural(total))
    } else {
        format!(
            "{written} of {total} file{} written, {removed} removed",
            plural(total)
        )
    };
    Outcome::Succeeded {
        exit_code: None,
        note: Some(note),
    }
}

/// A failure with no exit code.
fn failed(reason: String) -> Outcome {
    Outcome::Failed {
        exit_code: None,
        reason,
    }
}

/// A `delete: true` upload's mirror: the root all files go under, and the
/// `exclude` patterns whose paths under it are kept.
#[derive(Debug, Clone, Copy)]
pub struct Sync<'a> {
    /// The upload's `dest`.
    pub root: &'a str,
    /// The upload's `exclude` patterns.
    pub exclude: &'a [String],
}

/// With `delete: true`, the mirror; the refusal when its root is no folder
/// of its own.
fn sync_root(sync: Option<Sync<'_>>) -> Result<Option<Sync<'_>>, Outcome> {
    match sync {
        Some(s) => match mirror::unsafe_root(s.root) {
            Some(problem) => Err(failed(format!(
                "`delete: true` refuses this dest: {problem}"
            ))),
            None => Ok(Some(s)),
        },
        None => Ok(None),
    }
}
