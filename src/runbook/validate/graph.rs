//! The steps as a graph: their ids (well formed, each once) and cycles
//! in their `needs`.

use std::collections::HashMap;

use petgraph::graph::DiGraph;

use super::{Step, Validator};
use crate::runbook::model::StepSpec;

impl Validator<'_> {
    /// Each step's id to its index; a bad or repeated id is a problem (the
    /// first step with an id keeps it).
    pub(super) fn step_ids<'s>(&mut self, steps: &'s [StepSpec]) -> HashMap<&'s str, usize> {
        let source = self.source;
        let mut ids = HashMap::new();
        for (index, step) in steps.iter().enumerate() {
            self.check_id(index, &step.id);
            if let Some(first) = ids.insert(step.id.as_str(), index) {
                let (line, _) = source.line_col(source.step_span(first).map(|s| s.0).unwrap_or(0));
                let d = self
                    .problem(format!("duplicate step id `{}`", step.id))
                    .at(source.step_span(index))
                    .hint(format!(
                        "the first step with this id is on line {line}; give each step its own id"
                    ));
                self.push(d);
                ids.insert(step.id.as_str(), first);
            }
        }
        ids
    }

    fn check_id(&mut self, index: usize, id: &str) {
        let mut chars = id.chars();
        let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            let d = self
                .problem(format!("step id `{id}` is not allowed"))
                .at(self.source.step_span(index))
                .hint("ids are lowercase letters, digits, `_` and `-`, starting with a letter or digit");
            self.push(d);
        }
    }

    /// A cycle in the steps' `needs` is one problem, drawn in order.
    pub(super) fn check_cycle(&mut self, steps: &[Step]) {
        let Some(cycle) = find_cycle(steps) else {
            return;
        };
        let names: Vec<&str> = cycle.iter().map(|&i| steps[i].spec.id.as_str()).collect();
        let drawn = names.join(" → ");
        let message = if cycle.len() == 2 {
            format!("step `{}` needs itself", names[0])
        } else {
            format!("dependency cycle: {drawn}")
        };
        let d = self
            .problem(message)
            .at(self.source.step_value_span(cycle[0], "needs", names[1]))
            .hint(format!(
                "each step needs the next one in `{drawn}`; remove one of these `needs`"
            ));
        self.push(d);
    }
}

/// The steps on a dependency cycle, in order, the first repeated at the end;
/// `None` when the graph is acyclic.
pub fn find_cycle(steps: &[Step]) -> Option<Vec<usize>> {
    let mut graph = DiGraph::<usize, ()>::with_capacity(steps.len(), steps.len());
    let nodes: Vec<_> = (0..steps.len()).map(|i| graph.add_node(i)).collect();
    for step in steps {
        for &need in &step.needs {
            graph.add_edge(nodes[step.index], nodes[need], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: std::collections::HashSet<usize> = scc.iter().map(|n| graph[*n]).collect();
        let start = *members.iter().min()?;
        // Walk needs inside the component until we come back to the start.
        let mut path = vec![start];
        let mut seen = std::collections::HashSet::from([start]);
        let mut current = start;
        loop {
            let next = steps[current]
                .needs
                .iter()
                .copied()
                .filter(|n| members.contains(n))
                .find(|&n| n == start || !seen.contains(&n))
                .or_else(|| {
                    steps[current]
                        .needs
                        .iter()
                        .copied()
                        .find(|n| members.contains(n))
                })?;
            path.push(next);
            if next == start {
                return Some(path);
            }
            if !seen.insert(next) {
                // Entered a smaller loop: cut the path to it.
                let at = path.iter().position(|&p| p == next)?;
                return Some(path[at..].to_vec());
            }
            current = next;
        }
    }
    None
}
