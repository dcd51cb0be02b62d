//! The run's step graph as SVG: a small layered layout (each step in the
//! column after its deepest need), a step on a group drawn once with its
//! instances counted by state.

use std::collections::HashMap;
use std::fmt::Write;

use crate::report::fleet::family_of;
use crate::report::html::escape;
use crate::state::StepState;
use crate::store::StepRow;

const W: i64 = 180;
const H: i64 = 46;
const GAP_X: i64 = 56;
const GAP_Y: i64 = 14;
const PAD: i64 = 8;

/// One drawn node: a step, or every instance of a step on a group.
struct Node {
    id: String,
    states: Vec<StepState>,
    needs: Vec<String>,
}

/// The colour of a state (also used by the page's badges).
pub fn colour(state: StepState) -> &'static str {
    match state {
        StepState::Succeeded => "#2e7d32",
        StepState::Skipped => "#78909c",
        StepState::Running => "#1565c0",
        StepState::Failed => "#c62828",
        StepState::Held => "#ef6c00",
        StepState::Blocked => "#6d4c41",
        StepState::Interrupted => "#8e24aa",
        StepState::Pending => "#9e9e9e",
    }
}

/// The state a group of instances is drawn with: the one that most needs a look.
fn worst(states: &[StepState]) -> StepState {
    const ORDER: [StepState; 8] = [
        StepState::Failed,
        StepState::Held,
        StepState::Running,
        StepState::Interrupted,
        StepState::Blocked,
        StepState::Pending,
        StepState::Skipped,
        StepState::Succeeded,
    ];
    ORDER
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or(StepState::Pending)
}

fn nodes(steps: &[StepRow]) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for s in steps {
        let name = family_of(&s.id).unwrap_or(&s.id).to_string();
        let i = *at.entry(name.clone()).or_insert_with(|| {
            out.push(Node {
                id: name,
                states: Vec::new(),
                needs: Vec::new(),
            });
            out.len() - 1
        });
        out[i].states.push(s.state);
        for n in &s.needs {
            let n = family_of(n).unwrap_or(n).to_string();
            if !out[i].needs.contains(&n) && n != out[i].id {
                out[i].needs.push(n);
            }
        }
    }
    out
}

/// The column of each node: one after its deepest need (needs come
/// first in the stored order, so one pass does).
fn layers(nodes: &[Node]) -> Vec<usize> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut layer = vec![0usize; nodes.len()];
    for _ in 0..2 {
        for (i, n) in nodes.iter().enumerate() {
            let deepest = n
                .needs
                .iter()
                .filter_map(|d| index.get(d.as_str()))
                .map(|&j| layer[j] + 1)
                .max();
            layer[i] = deepest.unwrap_or(0);
        }
    }
    layer
}

fn label(n: &Node) -> (String, String) {
    if n.states.len() == 1 {
        return (n.id.clone(), n.states[0].as_str().to_string());
    }
    let mut counts: Vec<(StepState, usize)> = Vec::new();
    for s in &n.states {
        match counts.iter_mut().find(|(c, _)| c == s) {
            Some((_, k)) => *k += 1,
            None => counts.push((*s, 1)),
        }
    }
    let sub = counts
        .iter()
        .map(|(s, k)| format!("{k} {}", s.as_str()))
        .collect::<Vec<_>>()
        .join(" · ");
    (format!("{} ×{}", n.id, n.states.len()), sub)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// The SVG of a run's steps; `link` gives a node's href.
pub fn svg(steps: &[StepRow], link: impl Fn(&str) -> String) -> String {
    let nodes = nodes(steps);
    let layer = layers(&nodes);
    let mut row_in = HashMap::new();
    let mut pos = Vec::with_capacity(nodes.len());
    for &l in &layer {
        let r = row_in.entry(l).or_insert(0i64);
        pos.push((PAD + l as i64 * (W + GAP_X), PAD + *r * (H + GAP_Y)));
        *r += 1;
    }
    let width = pos.iter().map(|p| p.0 + W + PAD).max().unwrap_or(2 * PAD);
    let height = pos.iter().map(|p| p.1 + H + PAD).max().unwrap_or(2 * PAD);
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="step graph">"#
    );
    for (i, n) in nodes.iter().enumerate() {
        for d in &n.needs {
            if let Some(&j) = index.get(d.as_str()) {
                let (x1, y1) = (pos[j].0 + W, pos[j].1 + H / 2);
                let (x2, y2) = (pos[i].0, pos[i].1 + H / 2);
                let mid = (x1 + x2) / 2;
                let _ = write!(
                    out,
                    r##"<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" stroke="#90a4ae" stroke-width="1.5"/>"##
                );
            }
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let state = worst(&n.states);
        let (title, sub) = label(n);
        let (x, y) = pos[i];
        let _ = write!(
            out,
            r##"<a href="{href}"><g class="node" data-step="{id}" data-state="{st}"><title>{full}: {subfull}</title><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6" fill="{fill}"/><text x="{tx}" y="{ty1}" fill="#fff" font-size="13" font-weight="600">{t}</text><text x="{tx}" y="{ty2}" fill="#fff" font-size="11">{s}</text></g></a>"##,
            href = escape(&link(&n.id)),
            id = escape(&n.id),
            st = state.as_str(),
            full = escape(&title),
            subfull = escape(&sub),
            fill = colour(state),
            tx = x + 8,
            ty1 = y + 19,
            ty2 = y + 36,
            t = escape(&clip(&title, 22)),
            s = escape(&clip(&sub, 28)),
        );
    }
    out.push_str("</svg>");
    out
}
