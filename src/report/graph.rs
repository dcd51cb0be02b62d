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
    /// The rolling block it is an inner step of: drawn inside its box.
    block: Option<String>,
    /// Whether it is a rolling block (a box around its inner steps).
    is_block: bool,
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
            let mut text = label_of(step, titles);
            let is_block = crate::runbook::rolling::is_block(&step.spec);
            if is_block {
                text = block_label(&step.spec, text);
            }
            nodes.push(Node {
                id: step.spec.id.clone(),
                label: text,
                state: None,
                block: step.spec.block.clone(),
                is_block,
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
        // A block's box stands for its needs: its inner steps that need
        // no other are drawn from what it needs.
        if crate::runbook::rolling::is_block(&step.spec) {
            continue;
        }
        for &n in &step.needs {
            let edge = (runbook.steps[n].spec.id.clone(), step.spec.id.clone());
            if !edges.contains(&edge) {
                edges.push(edge);
            }
        }
    }
    (nodes, edges)
}

/// The id first, so the node names what commands take; the title
/// (rendered) beside it; where it runs.
fn label_of(step: &crate::runbook::Step, titles: &HashMap<String, String>) -> String {
    let mut text = match titles.get(&step.spec.id) {
        Some(title) => format!("{}: {title}", step.spec.id),
        None => step.spec.id.clone(),
    };
    match &step.family {
        Some(f) => text.push_str(&format!(" @{} ({})", f.group, super::count(f.size, "host"))),
        None => {
            if let Some(host) = &step.host {
                text.push_str(&format!(" @{host}"));
            }
        }
    }
    text
}

/// A rolling block's box: `rollout: rolling on web, 1 host at a time`.
fn block_label(spec: &crate::runbook::model::StepSpec, text: String) -> String {
    use crate::runbook::model::Serial;
    let pace = match &spec.serial {
        Some(Serial::Count(1)) => "1 host at a time".to_string(),
        Some(Serial::Count(n)) => format!("{n} hosts at a time"),
        Some(Serial::Percent(p)) => format!("{p} of the hosts at a time"),
        None => "all hosts at once".to_string(),
    };
    let on = spec.on.as_deref().unwrap_or("local");
    format!("{text}: rolling on {on}, {pace}")
}

/// Edges as drawn: one from a rolling block leaves its box (from its last
/// inner step, cut at the box in DOT), and none enters it (its inner
/// steps' own edges do).
fn drawn_edges<'a>(
    nodes: &'a [Node],
    edges: &'a [(String, String)],
) -> Vec<(&'a str, &'a str, Option<&'a str>)> {
    let is_block = |id: &str| nodes.iter().any(|n| n.is_block && n.id == id);
    edges
        .iter()
        .filter(|(_, to)| !is_block(to))
        .filter_map(|(from, to)| {
            if !is_block(from) {
                return Some((from.as_str(), to.as_str(), None));
            }
            let last = nodes
                .iter()
                .rev()
                .find(|n| n.block.as_deref() == Some(from))?;
            Some((last.id.as_str(), to.as_str(), Some(from.as_str())))
        })
        .collect()
}

fn dot_node(out: &mut String, n: &Node, indent: &str) {
    let color = n
        .state
        .map(|st| format!(", fillcolor=\"{}\"", fill(st)))
        .unwrap_or_default();
    out.push_str(&format!(
        "{indent}\"{}\" [label=\"{}\"{color}];\n",
        n.id, n.label
    ));
}

fn dot(runbook: &Runbook, nodes: &[Node], edges: &[(String, String)]) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n",
        runbook.name.replace('"', "'")
    );
    if nodes.iter().any(|n| n.is_block) {
        out.push_str("  compound=true;\n");
    }
    out.push_str("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n");
    for n in nodes.iter().filter(|n| n.block.is_none()) {
        if !n.is_block {
            dot_node(&mut out, n, "  ");
            continue;
        }
        let color = n.state.map(fill).unwrap_or("#ffffff");
        out.push_str(&format!(
            "  subgraph \"cluster_{}\" {{\n    label=\"{}\";\n    style=\"rounded,filled\";\n    fillcolor=\"{color}\";\n",
            n.id, n.label
        ));
        for inner in nodes.iter().filter(|i| i.block.as_deref() == Some(&n.id)) {
            dot_node(&mut out, inner, "    ");
        }
        out.push_str("  }\n");
    }
    for (from, to, block) in drawn_edges(nodes, edges) {
        let cut = block
            .map(|b| format!(" [ltail=\"cluster_{b}\"]"))
            .unwrap_or_default();
        out.push_str(&format!("  \"{from}\" -> \"{to}\"{cut};\n"));
    }
    out.push_str("}\n");
    out
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
        GraphFormat::Dot => out = dot(runbook, &nodes, &edges),
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for n in nodes.iter().filter(|n| n.block.is_none()) {
                if !n.is_block {
                    out.push_str(&format!("  {}[\"{}\"]\n", mermaid_id(&n.id), n.label));
                    continue;
                }
                out.push_str(&format!(
                    "  subgraph {}[\"{}\"]\n",
                    mermaid_id(&n.id),
                    n.label
                ));
                for inner in nodes.iter().filter(|i| i.block.as_deref() == Some(&n.id)) {
                    out.push_str(&format!(
                        "    {}[\"{}\"]\n",
                        mermaid_id(&inner.id),
                        inner.label
                    ));
                }
                out.push_str("  end\n");
            }
            for (from, to, block) in drawn_edges(&nodes, &edges) {
                // Mermaid links a subgraph by its id.
                let from = block.unwrap_or(from);
                out.push_str(&format!("  {} --> {}\n", mermaid_id(from), mermaid_id(to)));
            }
            let mut used: Vec<StepState> = nodes
                .iter()
                .filter(|n| !n.is_block)
                .filter_map(|n| n.state)
                .collect();
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
                    .filter(|n| n.state == Some(state) && !n.is_block)
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
