//! The runbook as validated: what every layer below `runbook/` reads.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use super::model::{EnvFileSpec, HostSpec, HttpSpec, NotifySpec, SecretSpec, StepSpec, UploadSpec};
use super::source::Source;

/// A validated runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// The runbook's name.
    pub name: String,
    /// One-line description.
    pub description: Option<String>,
    /// The folder relative paths are resolved against.
    pub dir: PathBuf,
    /// Vars, with `--var` overrides applied.
    pub vars: IndexMap<String, serde_json::Value>,
    /// Hosts by name, the inventory's included.
    pub hosts: IndexMap<String, HostSpec>,
    /// Groups by name, as host lists (globs and the inventory resolved).
    pub groups: IndexMap<String, Vec<String>>,
    /// Where secrets are looked up after the environment.
    pub env_files: Vec<EnvFileSpec>,
    /// Declared secrets.
    pub secrets: IndexMap<String, SecretSpec>,
    /// Steps in file order; `needs` are indexes into this list.
    pub steps: Vec<Step>,
    /// Webhooks told when a run stops (their URLs still templates).
    pub notify: Vec<NotifySpec>,
    /// The file's text, for locating later (template) errors.
    pub source: Source,
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Position in the list of steps (instances count one each).
    pub index: usize,
    /// The id: the step's own, or `STEP@HOST` for an instance on a group.
    pub id: String,
    /// Position of the step as written in the file.
    pub source: usize,
    /// For an instance of a step on a group: what its instances share.
    pub family: Option<Family>,
    /// The step as written.
    pub spec: StepSpec,
    /// Indexes of the steps this one needs.
    pub needs: Vec<usize>,
    /// The host it runs on; `None` is local.
    pub host: Option<String>,
    /// Time limit per attempt.
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay between attempts.
    pub retry_delay: Duration,
    /// What the step does.
    pub action: Action,
    /// The question, when the step waits for an approval.
    pub approval: Option<String>,
}

/// A step's single action.
#[derive(Debug, Clone)]
pub enum Action {
    /// A shell script.
    Run(String),
    /// A file or folder copy.
    Upload(UploadSpec),
    /// An HTTP request.
    Http(Box<HttpSpec>),
    /// No action: a join point or an approval gate.
    Checkpoint,
}

/// What a step instance shares with the other instances of its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The step's id as written (`deploy` for `deploy@web1`).
    pub step: String,
    /// The group it runs on.
    pub group: String,
    /// How many hosts the group has.
    pub size: usize,
    /// At most this many instances run at once.
    pub serial: Option<usize>,
    /// Failed instances allowed before no further instance starts.
    pub max_fail: u32,
    /// For an inner step of a rolling block: its host's batch (SPEC §15).
    /// `serial` and `max_fail` above are then the block's to apply.
    pub roll: Option<Roll>,
}

/// What an instance of an inner step shares with the rest of its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roll {
    /// The block's id.
    pub block: String,
    /// Its host's batch, 0 first, in the block's order.
    pub batch: usize,
    /// Hosts whose block may fail before no further batch starts.
    pub max_fail: u32,
}
