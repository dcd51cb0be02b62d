//! The runbook as written: the serde types of the file format (SPEC §1).
//!
//! Every struct denies unknown keys, so a typo is an error with a location
//! instead of a silently ignored field.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole runbook file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunbookFile {
    /// Name of the runbook; defaults to the file stem.
    pub name: Option<String>,
    /// One line shown by `status` and `handoff`.
    pub description: Option<String>,
    /// Values available to templates as `vars.NAME`; overridable with `--var`.
    #[serde(default)]
    pub vars: IndexMap<String, serde_json::Value>,
    /// Remote hosts, reached over SSH.
    #[serde(default)]
    pub hosts: IndexMap<String, HostSpec>,
    /// Named groups of hosts: each member is a host name or a glob (`web*`).
    /// A step `on` a group runs once per host (SPEC §9).
    #[serde(default)]
    pub groups: IndexMap<String, Vec<String>>,
    /// An Ansible inventory file (INI or YAML) whose hosts and groups are
    /// added to `hosts` and `groups`; relative to the runbook's folder.
    pub inventory: Option<InventorySpec>,
    /// Dotenv files where secrets are looked up, after the process environment.
    #[serde(default)]
    pub env_files: Vec<EnvFileSpec>,
    /// Secrets the steps may require.
    #[serde(default)]
    pub secrets: IndexMap<String, SecretSpec>,
    /// Defaults for every step.
    #[serde(default)]
    pub defaults: Defaults,
    /// The steps, in file order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Webhooks told when a run stops held, failed or succeeded (SPEC §10).
    #[serde(default)]
    pub notify: Vec<NotifySpec>,
}

/// A webhook that gets one POST when a run stops in one of its `on` states.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Where to POST (templated, typically `{{ env.SLACK_WEBHOOK }}`); a URL
    /// that renders empty, or names an unset variable, sends nothing.
    pub url: String,
    /// The run states that send a notification; default `[held, failed]`.
    #[serde(default = "NotifyOn::defaults")]
    pub on: Vec<NotifyOn>,
    /// The body: `json` (the run, its summary and handoff) or `slack`
    /// (`{"text": markdown}`, for Slack-compatible incoming webhooks).
    #[serde(default)]
    pub format: NotifyFormat,
}

/// A run state that sends a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// A person must act.
    Held,
    /// A step failed.
    Failed,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// The engine was stopped by a signal.
    Interrupted,
}

impl NotifyOn {
    /// `[held, failed]`.
    pub fn defaults() -> Vec<NotifyOn> {
        vec![NotifyOn::Held, NotifyOn::Failed]
    }
}

/// The body of a notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// `{"run_id", "runbook", "state", "summary", "handoff", "resume"}`.
    #[default]
    Json,
    /// `{"text": markdown}`.
    Slack,
}

/// An SSH host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Hostname or address (templated).
    pub address: String,
    /// Login user (templated); defaults to the current user.
    pub user: Option<String>,
    /// SSH port (a number, or a template that renders to one); none given: ssh's own configuration decides (no `-p`).
    pub port: Option<Scalar>,
    /// Private key to use.
    pub identity_file: Option<String>,
    /// Host key policy.
    #[serde(default)]
    pub known_hosts: KnownHosts,
    /// known_hosts file; defaults to ssh's own.
    pub known_hosts_file: Option<String>,
    /// The host's variables, for templates as `host.vars` and
    /// `hosts.NAME.vars` (an inventory host's are Ansible's merge of its
    /// inventory variables).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub vars: IndexMap<String, serde_json::Value>,
}

/// `inventory: PATH`, or the path with the SSH settings its hosts share.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum InventorySpec {
    /// The inventory file, relative to the runbook's folder.
    Path(String),
    /// The inventory file and what its hosts share.
    Full(InventoryOptions),
}

/// An inventory with the SSH settings its hosts share.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryOptions {
    /// The inventory file (INI or YAML), relative to the runbook's folder.
    pub path: String,
    /// Host key policy for the inventory's hosts.
    #[serde(default)]
    pub known_hosts: KnownHosts,
    /// known_hosts file for the inventory's hosts; defaults to ssh's own.
    pub known_hosts_file: Option<String>,
}

impl InventorySpec {
    /// The path as written.
    pub fn path(&self) -> &str {
        match self {
            InventorySpec::Path(p) => p,
            InventorySpec::Full(o) => &o.path,
        }
    }
}

/// How many hosts run one step at once: a number or a percentage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Serial {
    /// At most this many hosts.
    Count(u32),
    /// At most this share of the group's hosts, e.g. `"25%"` (at least one).
    Percent(String),
}

/// How an unknown host key is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHosts {
    /// Only keys already in known_hosts are accepted.
    #[default]
    Strict,
    /// Unknown hosts are added; changed keys are still refused.
    AcceptNew,
}

/// A dotenv file: a local path, or a path on a host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvFileSpec {
    /// A local path, relative to the runbook's folder.
    Local(String),
    /// A file on a host, read over SSH.
    Remote(RemoteEnvFile),
    /// A local command whose standard output is a dotenv file (SPEC §13).
    Command(SecretCommand),
}

/// A local command that prints secrets (SPEC §13): run with `sh -c`,
/// stdin `/dev/null`, in the runbook's folder, once per look.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretCommand {
    /// The command (templated), e.g. `pass show ops/token`.
    pub command: String,
    /// How long it may run, e.g. `10s`; default 30s.
    pub timeout: Option<String>,
}

/// Where a secret's value comes from after the environment and `--env-file`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretFrom {
    /// The command alone.
    Command(String),
    /// The command and its timeout.
    Full(SecretCommand),
}

impl SecretFrom {
    /// The command and its timeout as written.
    pub fn parts(&self) -> (&str, Option<&str>) {
        match self {
            SecretFrom::Command(c) => (c, None),
            SecretFrom::Full(c) => (&c.command, c.timeout.as_deref()),
        }
    }
}

/// A dotenv file on a host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteEnvFile {
    /// Host name from `hosts`.
    pub host: String,
    /// Path on that host (templated).
    pub path: String,
}

/// A secret that steps may require.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// What the secret is, for the person who must supply it.
    pub description: Option<String>,
    /// Who must supply it; the handoff groups by owner.
    pub owner: Option<String>,
    /// A probe that proves the value is still accepted.
    pub check: Option<SecretCheck>,
    /// A local command whose standard output is the value (`pass show
    /// ops/token`, `op read op://...`); replaces the `env_files` lookup.
    pub from: Option<SecretFrom>,
}

/// A secret's check.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretCheck {
    /// The HTTP request to make.
    pub http: HttpSpec,
}

/// Defaults for every step.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Default step timeout, e.g. `10m`.
    pub timeout: Option<String>,
    /// Default number of retries after a failed attempt.
    pub retries: Option<u32>,
    /// Default delay between attempts, e.g. `5s`.
    pub retry_delay: Option<String>,
}

/// `approval: true` or the question to ask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Approval {
    /// `true` asks for a plain approval; `false` asks for none.
    Flag(bool),
    /// The question shown to the approver.
    Question(String),
}

/// A scalar that is used as a string (env values, header values).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// A number or boolean, used as written.
    Other(ScalarOther),
}

/// Non-string scalars.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ScalarOther {
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    /// The value as text.
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Other(ScalarOther::Int(i)) => i.to_string(),
            Scalar::Other(ScalarOther::Bool(b)) => b.to_string(),
        }
    }
}

/// One step.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique id, `[a-z0-9][a-z0-9_-]*`.
    pub id: String,
    /// A human title.
    pub title: Option<String>,
    /// Free text shown in the handoff.
    pub doc: Option<String>,
    /// Steps that must succeed first.
    #[serde(default)]
    pub needs: Vec<String>,
    /// A host name, a group (one instance per host), or `local` (the default).
    pub on: Option<String>,
    /// On a group: at most this many hosts run the step at once (a number
    /// or a percentage such as `"25%"`); default all, within `--jobs`.
    pub serial: Option<Serial>,
    /// On a group: how many hosts may fail before no further instance of
    /// the step starts (default 0).
    pub max_fail: Option<u32>,
    /// Secret names the step needs.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Held until `runbook approve`.
    pub approval: Option<Approval>,
    /// Template expression; false → skipped.
    pub when: Option<String>,
    /// A command; exit 0 means the work is already done.
    pub unless: Option<String>,
    /// Environment for the command.
    #[serde(default)]
    pub env: IndexMap<String, Scalar>,
    /// Time limit per attempt, e.g. `20m`.
    pub timeout: Option<String>,
    /// Retries after a failed attempt.
    pub retries: Option<u32>,
    /// Delay between attempts.
    pub retry_delay: Option<String>,
    /// A shell script, run with `sh -c`.
    pub run: Option<String>,
    /// A file or folder to copy.
    pub upload: Option<UploadSpec>,
    /// An HTTP request with expectations.
    pub http: Option<HttpSpec>,
    /// A rolling block (SPEC §15): on a group, the steps each host of a
    /// batch goes through before the next batch starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepSpec>>,
    /// A rolling block: the order its hosts are taken in.
    pub order: Option<RollOrder>,
    /// Set on loading, never written: the rolling block this step is one
    /// of the inner steps of.
    #[serde(skip)]
    #[schemars(skip)]
    pub block: Option<String>,
}

/// The order a rolling block takes its group's hosts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RollOrder {
    /// The group's order: the inventory file's, or the one in `groups:`.
    #[default]
    Inventory,
    /// The group's order, last host first.
    Reverse,
    /// Host names sorted.
    Sorted,
}

/// The `upload` action.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadSpec {
    /// Local file or folder, relative to the runbook.
    pub src: String,
    /// Destination path.
    pub dest: String,
    /// Render the source with the template engine.
    #[serde(default)]
    pub template: bool,
    /// File mode, e.g. `"0644"`.
    pub mode: Option<String>,
    /// Folders only: remove files under `dest` that are not in `src`, so
    /// `dest` mirrors `src`. Nothing outside `dest` is touched; symlinks are
    /// removed as links, never followed.
    #[serde(default)]
    pub delete: bool,
    /// Gitignore-style patterns, relative to `src` and `dest`: an excluded
    /// path is neither sent nor, with `delete: true`, removed from `dest`.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The `http` action (also used by secret checks).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// HTTP method; defaults to GET.
    pub method: Option<String>,
    /// The URL.
    pub url: String,
    /// Request headers.
    #[serde(default)]
    pub headers: IndexMap<String, Scalar>,
    /// A text body.
    pub body: Option<String>,
    /// A JSON body.
    pub json: Option<serde_json::Value>,
    /// A host whose SSH connection carries the request.
    pub via: Option<String>,
    /// What the response must look like.
    #[serde(default)]
    pub expect: Expect,
}

/// Expectations on an HTTP response.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Accepted status codes; default 2xx.
    pub status: Option<StatusSet>,
    /// Text the body must contain (one string or a list).
    pub body_contains: Option<Texts>,
    /// Text the body must not contain (one string or a list).
    pub body_not_contains: Option<Texts>,
    /// JSON pointer → expected value.
    pub json: Option<IndexMap<String, serde_json::Value>>,
}

/// One string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Texts {
    /// A single string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Texts {
    /// The strings.
    pub fn items(&self) -> Vec<&str> {
        match self {
            Texts::One(s) => vec![s.as_str()],
            Texts::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// The strings, each passed through `f`.
    pub fn try_map<E>(&self, mut f: impl FnMut(&str) -> Result<String, E>) -> Result<Texts, E> {
        Ok(match self {
            Texts::One(s) => Texts::One(f(s)?),
            Texts::Many(v) => Texts::Many(v.iter().map(|s| f(s)).collect::<Result<_, _>>()?),
        })
    }
}

/// One status code or a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusSet {
    /// A single status code.
    One(u16),
    /// Any of these.
    Any(Vec<u16>),
}

impl StatusSet {
    /// Whether `status` is accepted.
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            StatusSet::One(s) => *s == status,
            StatusSet::Any(list) => list.contains(&status),
        }
    }
}
