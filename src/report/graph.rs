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

fn label(runbook: &Runbook, i: usize, states: &HashMap<String, StepState>) -> String {
    let step = &runbook.steps[i];
    let mut text = step
        .spec
        .title
        .clone()
        .unwrap_or_else(|| step.spec.id.clone());
    if let Some(host) = &step.host {
        text.push_str(&format!(" @{host}"));
    }
    if let Some(state) = states.get(&step.spec.id) {
        text.push_str(&format!(" ({state})"));
    }
    text.replace('"', "'")
}

fn mermaid_id(id: &str) -> String {
    format!("s_{}", id.replace('-', "_"))
}

/// The graph text; `states` (step id → state) colours the nodes.
pub fn render(
    runbook: &Runbook,
    format: GraphFormat,
    states: &HashMap<String, StepState>,
) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n", runbook.name.replace('"', "'")));
            for (i, s) in runbook.steps.iter().enumerate() {
                let color = states
                    .get(&s.spec.id)
                    .map(|st| format!(", fillcolor=\"{}\"", fill(*st)))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\"{color}];\n",
                    s.spec.id,
                    label(runbook, i, states)
                ));
            }
            for s in &runbook.steps {
                for &n in &s.needs {
                    out.push_str(&format!(
                        "  \"{}\" -> \"{}\";\n",
                        runbook.steps[n].spec.id, s.spec.id
                    ));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, s) in runbook.steps.iter().enumerate() {
                out.push_str(&format!(
                    "  {}[\"{}\"]\n",
                    mermaid_id(&s.spec.id),
                    label(runbook, i, states)
                ));
            }
            for s in &runbook.steps {
                for &n in &s.needs {
                    out.push_str(&format!(
                        "  {} --> {}\n",
                        mermaid_id(&runbook.steps[n].spec.id),
                        mermaid_id(&s.spec.id)
                    ));
                }
            }
            let mut used: Vec<StepState> = states.values().copied().collect();
            used.sort_by_key(|s| s.as_str());
            used.dedup();
            for state in used {
                out.push_str(&format!(
                    "  classDef {} fill:{},stroke:#374151\n",
                    state.as_str(),
                    fill(state)
                ));
                let members: Vec<String> = runbook
                    .steps
                    .iter()
                    .filter(|s| states.get(&s.spec.id) == Some(&state))
                    .map(|s| mermaid_id(&s.spec.id))
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
