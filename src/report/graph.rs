//! `runbook graph`: the DAG as Graphviz DOT or Mermaid, optionally coloured
//! by each step's state in a run.

use std::collections::HashMap;

use crate::runbook::Runbook;
use crate::state::StepState;

/// Graph output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid, renders in Markdown.
    Mermaid,
}

fn fill(state: StepState) -> &'static str {
    match state {
        StepState::Succeeded => "#bbf7d0",
        StepState::Failed => "#fecaca",
        StepState::Held => "#fde68a",
        StepState::Blocked => "#fef3c7",
        StepState::Skipped => "#e5e7eb",
        StepState::Interrupted => "#f5d0fe",
        StepState::Running => "#bae6fd",
        StepState::Pending => "#ffffff",
    }
}

/// One node: a step as written; the instances of a step on a group are
/// one node with their host count.
struct Node {
    id: String,
    label: String,
    state: Option<StepState>,
}

/// The steps as written, and the edges between them (deduplicated).
fn nodes(
    runbook: &Runbook,
    titles: &HashMap<String, String>,
    states: &HashMap<String, StepState>,
) -> (Vec<Node>, Vec<(String, String)>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut of_source: HashMap<usize, usize> = HashMap::new();
    let mut members: Vec<Vec<StepState>> = Vec::new();
    for step in &runbook.steps {
        let at = *of_source.entry(step.source).or_insert_with(|| {
            // The id first, so the node names what commands take; the
            // title (rendered) beside it.
            let mut text = match titles.get(&step.spec.id) {
                Some(title) => format!("{}: {title}", step.spec.id),
                None => step.spec.id.clone(),
            };
            match &step.family {
                Some(f) => text.push_str(&format!(" @{} ({} hosts)", f.group, f.size)),
                None => {
                    if let Some(host) = &step.host {
                        text.push_str(&format!(" @{host}"));
                    }
                }
            }
            nodes.push(Node {
                id: step.spec.id.clone(),
                label: text,
                state: None,
            });
            members.push(Vec::new());
            nodes.len() - 1
        });
        if let Some(state) = states.get(&step.id) {
            members[at].push(*state);
        }
    }
    for (node, states) in nodes.iter_mut().zip(&members) {
        // The state that most needs attention stands for the node.
        const URGENCY: [StepState; 8] = [
            StepState::Failed,
            StepState::Held,
            StepState::Blocked,
            StepState::Interrupted,
            StepState::Running,
            StepState::Pending,
            StepState::Skipped,
            StepState::Succeeded,
        ];
        node.state = URGENCY.into_iter().find(|u| states.contains(u));
        if let Some(state) = node.state {
            let n = states.iter().filter(|s| **s == state).count();
            if states.len() > 1 {
                node.label.push_str(&format!(" ({n} {state})"));
            } else {
                node.label.push_str(&format!(" ({state})"));
            }
        }
        node.label = node.label.replace('"', "'");
    }
    let mut edges: Vec<(String, String)> = Vec::new();
    for step in &runbook.steps {
        for &n in &step.needs {
            let edge = (runbook.steps[n].spec.id.clone(), step.spec.id.clone());
            if !edges.contains(&edge) {
                edges.push(edge);
            }
        }
    }
    (nodes, edges)
}

fn mermaid_id(id: &str) -> String {
    format!("s_{}", id.replace('-', "_"))
}

/// The graph text; `states` (step id → state) colours the nodes.
pub fn render(
    runbook: &Runbook,
    titles: &HashMap<String, String>,
    format: GraphFormat,
    states: &HashMap<String, StepState>,
) -> String {
    let (nodes, edges) = nodes(runbook, titles, states);
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n", runbook.name.replace('"', "'")));
            for n in &nodes {
                let color = n
                    .state
                    .map(|st| format!(", fillcolor=\"{}\"", fill(st)))
                    .unwrap_or_default();
                out.push_str(&format!("  \"{}\" [label=\"{}\"{color}];\n", n.id, n.label));
            }
            for (from, to) in &edges {
                out.push_str(&format!("  \"{from}\" -> \"{to}\";\n"));
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for n in &nodes {
                out.push_str(&format!("  {}[\"{}\"]\n", mermaid_id(&n.id), n.label));
            }
            for (from, to) in &edges {
                out.push_str(&format!("  {} --> {}\n", mermaid_id(from), mermaid_id(to)));
            }
            let mut used: Vec<StepState> = nodes.iter().filter_map(|n| n.state).collect();
            used.sort_by_key(|s| s.as_str());
            used.dedup();
            for state in used {
                out.push_str(&format!(
                    "  classDef {} fill:{},stroke:#374151\n",
                    state.as_str(),
                    fill(state)
                ));
                let members: Vec<String> = nodes
                    .iter()
                    .filter(|n| n.state == Some(state))
                    .map(|n| mermaid_id(&n.id))
                    .collect();
                out.push_str(&format!(
                    "  class {} {}\n",
                    members.join(","),
                    state.as_str()
                ));
            }
        }
    }
    out
}
