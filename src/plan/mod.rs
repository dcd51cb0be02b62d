//! Model → plan: every step's definition rendered, fingerprinted, and placed
//! in a petgraph DAG that the scheduler walks.

use std::collections::BTreeMap;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

pub use crate::action::{RenderedAction, RenderedHttp};
pub use host::{render_host, RenderedHost};
pub use http::render_http;
pub use refs::{http_secret_refs, secret_refs};
pub use render::{render_label, render_step};
pub use source::collect_files;

mod check;
mod fingerprint;
mod host;
mod http;
mod refs;
mod render;
pub mod source;
mod via;
use crate::error::Result;
use crate::runbook::template::{placeholder, Context, Templater};
use crate::runbook::{Runbook, Step};
use fingerprint::{fingerprint, legacy_fingerprint};

/// A step ready to be scheduled.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// The step id.
    pub id: String,
    /// Indexes of the steps it needs.
    pub needs: Vec<usize>,
    /// Indexes of the steps that need it.
    pub dependents: Vec<usize>,
    /// The host it runs on; `None` is local.
    pub host: Option<String>,
    /// For an instance of a step on a group: what its instances share.
    pub family: Option<crate::runbook::fleet::Family>,
    /// The rolling block it is (the block's checkpoint) or is an instance
    /// of an inner step of (SPEC §15).
    pub block: Option<String>,
    /// Secrets it requires.
    pub requires: Vec<String>,
    /// Its definition rendered with secrets as placeholders.
    pub rendered: Rendered,
    /// Hash of what `rendered` does, the same on every machine (SPEC §11):
    /// a change means the step must run again.
    pub fingerprint: String,
    /// The hash this step had before fingerprints left out how this
    /// machine reaches its host (the upload's absolute source, the login
    /// user): a stored one is taken for [`PlannedStep::fingerprint`].
    pub legacy_fingerprint: String,
}

/// A step's definition with every template rendered.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    /// `when`, evaluated.
    pub when: bool,
    /// `unless`, rendered.
    pub unless: Option<String>,
    /// `env`, rendered.
    pub env: Vec<(String, String)>,
    /// Time limit per attempt.
    pub timeout: Option<Duration>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Delay between attempts.
    pub retry_delay: Duration,
    /// What it does.
    pub action: RenderedAction,
    /// The host as addressed, so a moved host reruns its steps.
    pub host: Option<String>,
    /// The host as the fingerprint names it, the same from any machine:
    /// its name, address and port (not the login user).
    #[serde(skip)]
    pub place: Option<String>,
}

/// The whole plan.
pub struct Plan {
    /// Steps in file order.
    pub steps: Vec<PlannedStep>,
    /// The DAG: an edge goes from a step to each step that needs it.
    pub graph: DiGraph<usize, ()>,
}

/// Placeholder values for a step's secrets, used for validation and fingerprints.
pub fn placeholder_secrets(step: &Step) -> BTreeMap<String, String> {
    step.spec
        .requires
        .iter()
        .map(|s| (s.clone(), placeholder(s)))
        .collect()
}

/// Builds the plan. Template errors (an undefined name, a secret the step
/// does not require) are validation errors. Secrets are placeholders here:
/// `templater` is [`Templater::for_placeholders`].
pub fn build(runbook: &Runbook, ctx: &Context, templater: &Templater) -> Result<Plan> {
    let mut problems = Vec::new();
    let mut steps = Vec::with_capacity(runbook.steps.len());
    let mut graph = DiGraph::with_capacity(runbook.steps.len(), runbook.steps.len());
    let nodes: Vec<NodeIndex> = (0..runbook.steps.len())
        .map(|i| graph.add_node(i))
        .collect();
    for step in &runbook.steps {
        let Some(rendered) = check::step(templater, ctx, runbook, step, &mut problems) else {
            continue;
        };
        for &need in &step.needs {
            graph.add_edge(nodes[need], nodes[step.index], ());
        }
        steps.push(planned(runbook, step, rendered));
    }
    check::secret_checks(templater, ctx, runbook, &mut problems);
    check::hosts(templater, ctx, runbook, &mut problems);
    if !problems.is_empty() {
        return Err(check::invalid(runbook, problems));
    }
    for i in 0..steps.len() {
        for n in steps[i].needs.clone() {
            steps[n].dependents.push(i);
        }
    }
    Ok(Plan { steps, graph })
}

/// A step as the scheduler takes it, its definition rendered (with
/// placeholders) and fingerprinted; its dependents are filled in once
/// every step is planned.
fn planned(runbook: &Runbook, step: &Step, rendered: Rendered) -> PlannedStep {
    let fingerprint = fingerprint(&rendered, &runbook.dir);
    let legacy_fingerprint = legacy_fingerprint(&rendered);
    PlannedStep {
        id: step.id.clone(),
        family: step.family.clone(),
        block: step.spec.block.clone().or_else(|| {
            crate::runbook::rolling::is_block(&step.spec).then(|| step.spec.id.clone())
        }),
        needs: step.needs.clone(),
        dependents: Vec::new(),
        host: step.host.clone(),
        requires: step.spec.requires.clone(),
        rendered,
        fingerprint,
        legacy_fingerprint,
    }
}
