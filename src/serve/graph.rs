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

/// One drawn node: a step, every instance of a step on a group, or a
/// rolling block with its inner steps.
struct Node {
    id: String,
    /// Its states: the step's, its instances', or a block's hosts'.
    states: Vec<StepState>,
    needs: Vec<String>,
    /// A rolling block's inner steps, each with its instances' states.
    inner: Vec<(String, Vec<StepState>)>,
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

/// The node a row is drawn in: its block, its step on a group, or itself.
fn node_name(row: &StepRow) -> &str {
    row.block
        .as_deref()
        .unwrap_or_else(|| family_of(&row.id).unwrap_or(&row.id))
}

fn nodes(steps: &[StepRow]) -> Vec<Node> {
    // What a `needs` entry points at: an instance, or a step's own id.
    let mut node_of: HashMap<&str, &str> = HashMap::new();
    for s in steps {
        node_of.insert(&s.id, node_name(s));
        node_of.insert(family_of(&s.id).unwrap_or(&s.id), node_name(s));
    }
    let mut out: Vec<Node> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut in_block: HashMap<usize, Vec<&StepRow>> = HashMap::new();
    for s in steps {
        let name = node_name(s);
        let i = *at.entry(name).or_insert_with(|| {
            out.push(Node {
                id: name.to_string(),
                states: Vec::new(),
                needs: Vec::new(),
                inner: Vec::new(),
            });
            out.len() - 1
        });
        match s.block.as_deref() {
            // The block's own row (its checkpoint) is drawn as its hosts.
            Some(b) if b == s.id => {}
            Some(_) => in_block.entry(i).or_default().push(s),
            None => out[i].states.push(s.state),
        }
        for n in &s.needs {
            let n = node_of
                .get(n.as_str())
                .copied()
                .unwrap_or_else(|| family_of(n).unwrap_or(n));
            if !out[i].needs.iter().any(|x| x == n) && n != out[i].id {
                out[i].needs.push(n.to_string());
            }
        }
    }
    for (i, rows) in in_block {
        let hosts = crate::report::rolling::hosts(&rows);
        out[i].states = hosts.iter().map(|h| h.state).collect();
        for r in rows {
            let step = family_of(&r.id).unwrap_or(&r.id);
            match out[i].inner.iter_mut().find(|(s, _)| s == step) {
                Some((_, states)) => states.push(r.state),
                None => out[i].inner.push((step.to_string(), vec![r.state])),
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
    if !n.inner.is_empty() {
        let hosts = crate::report::count(n.states.len(), "host");
        let sub = crate::report::fleet::state_counts(n.states.iter().copied());
        return (format!("{} · rolling, {hosts}", n.id), sub);
    }
    if n.states.len() == 1 {
        return (n.id.clone(), n.states[0].as_str().to_string());
    }
    (format!("{} ×{}", n.id, n.states.len()), counts(&n.states))
}

/// Counts per state in the order they first come: `2 succeeded · 1 failed`.
fn counts(states: &[StepState]) -> String {
    let mut counts: Vec<(StepState, usize)> = Vec::new();
    for s in states {
        match counts.iter_mut().find(|(c, _)| c == s) {
            Some((_, k)) => *k += 1,
            None => counts.push((*s, 1)),
        }
    }
    counts
        .iter()
        .map(|(s, k)| format!("{k} {}", s.as_str()))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Height of an inner step's line in a block's node.
const LINE: i64 = 17;

/// A node's width: a block's is wider, for its inner steps' counts.
fn width(n: &Node) -> i64 {
    if n.inner.is_empty() {
        W
    } else {
        W + 90
    }
}

/// A node's height: a block's grows by a line per inner step.
fn height(n: &Node) -> i64 {
    if n.inner.is_empty() {
        H
    } else {
        H + 4 + n.inner.len() as i64 * LINE
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// Where each node goes: its column by layer (as wide as its widest
/// node), stacked in it.
fn place(nodes: &[Node]) -> Vec<(i64, i64)> {
    let layer = layers(nodes);
    let columns = layer.iter().max().map_or(0, |l| l + 1);
    let mut x = vec![PAD; columns + 1];
    for c in 0..columns {
        let widest = nodes
            .iter()
            .zip(&layer)
            .filter(|(_, &l)| l == c)
            .map(|(n, _)| width(n))
            .max()
            .unwrap_or(W);
        x[c + 1] = x[c] + widest + GAP_X;
    }
    let mut below: HashMap<usize, i64> = HashMap::new();
    let mut pos = Vec::with_capacity(nodes.len());
    for (n, &l) in nodes.iter().zip(&layer) {
        let y = below.entry(l).or_insert(PAD);
        pos.push((x[l], *y));
        *y += height(n) + GAP_Y;
    }
    pos
}

/// The SVG of a run's steps; `link` gives a node's href.
pub fn svg(steps: &[StepRow], link: impl Fn(&str) -> String) -> String {
    let nodes = nodes(steps);
    let pos = place(&nodes);
    let width = nodes
        .iter()
        .zip(&pos)
        .map(|(n, p)| p.0 + self::width(n) + PAD)
        .max()
        .unwrap_or(2 * PAD);
    let height = nodes
        .iter()
        .zip(&pos)
        .map(|(n, p)| p.1 + self::height(n) + PAD)
        .max()
        .unwrap_or(2 * PAD);
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
                let (x1, y1) = (
                    pos[j].0 + self::width(&nodes[j]),
                    pos[j].1 + self::height(&nodes[j]) / 2,
                );
                let (x2, y2) = (pos[i].0, pos[i].1 + self::height(n) / 2);
                let mid = (x1 + x2) / 2;
                let _ = write!(
                    out,
                    r##"<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" stroke="#90a4ae" stroke-width="1.5"/>"##
                );
            }
        }
    }
    for (n, &at) in nodes.iter().zip(&pos) {
        node(&mut out, n, at, &link);
    }
    out.push_str("</svg>");
    out
}

/// One node at `(x, y)`: its box, name and counts, and a block's inner
/// steps each on a line with its instances' counts.
fn node(out: &mut String, n: &Node, (x, y): (i64, i64), link: &impl Fn(&str) -> String) {
    let state = worst(&n.states);
    let (title, sub) = label(n);
    let _ = write!(
        out,
        r##"<a href="{href}"><g class="node" data-step="{id}" data-state="{st}"{block}><title>{full}: {subfull}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}"/><text x="{tx}" y="{ty1}" fill="#fff" font-size="13" font-weight="600">{t}</text><text x="{tx}" y="{ty2}" fill="#fff" font-size="11">{s}</text>"##,
        href = escape(&link(&n.id)),
        id = escape(&n.id),
        st = state.as_str(),
        block = if n.inner.is_empty() {
            ""
        } else {
            r#" data-block="rolling""#
        },
        full = escape(&title),
        subfull = escape(&sub),
        w = width(n),
        h = height(n),
        fill = colour(state),
        tx = x + 8,
        ty1 = y + 19,
        ty2 = y + 36,
        t = escape(&clip(&title, if n.inner.is_empty() { 22 } else { 31 })),
        s = escape(&clip(&sub, if n.inner.is_empty() { 28 } else { 40 })),
    );
    for (k, (step, states)) in n.inner.iter().enumerate() {
        let top = y + H + k as i64 * LINE;
        let inner = worst(states);
        let line = format!(
            "{step}: {}",
            crate::report::fleet::state_counts(states.iter().copied())
        );
        let _ = write!(
            out,
            r##"<g class="inner" data-step="{id}" data-state="{st}"><title>{full}</title><rect x="{rx}" y="{ry}" width="9" height="9" rx="2" fill="{fill}" stroke="#fff"/><text x="{tx}" y="{ty}" fill="#fff" font-size="11">{t}</text></g>"##,
            id = escape(step),
            st = inner.as_str(),
            full = escape(&line),
            rx = x + 10,
            ry = top + 3,
            fill = colour(inner),
            tx = x + 24,
            ty = top + 11,
            t = escape(&clip(&line, 42)),
        );
    }
    out.push_str("</g></a>");
}
