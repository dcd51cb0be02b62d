//! Rolling blocks (SPEC §15): a step with `steps:` on a group, whose inner
//! steps each host of a batch goes through before the next batch starts.
//!
//! On loading, a block is flattened: the block stays a step of its own (a
//! checkpoint that needs every instance of its inner steps, so `needs:
//! [rollout]` waits for the whole rollout) and its inner steps follow it
//! in the list, each marked with the block's id and on the block's group.
//! Validation checks what only makes sense in or on a block; expansion
//! ([`super::expand::expand`]) gives each inner instance its host's batch.

use indexmap::IndexMap;

use super::book::Step;
use super::model::{HostSpec, RollOrder, StepSpec};
use super::source::Source;
use crate::error::Diagnostic;

pub use super::book::Roll;

/// Whether a step as written is a rolling block.
pub fn is_block(spec: &StepSpec) -> bool {
    spec.steps.is_some()
}

/// Moves the inner steps of each block into the list, right after the
/// block, in file order (which is the order their `id:` lines come in, as
/// [`Source::index_steps`] finds them). A block nested in a block is
/// flattened too, for validation to refuse with its place.
pub fn flatten(steps: Vec<StepSpec>) -> Vec<StepSpec> {
    let mut out = Vec::with_capacity(steps.len());
    for mut step in steps {
        let inner = step.steps.as_mut().map(std::mem::take);
        let (id, on) = (step.id.clone(), step.on.clone());
        out.push(step);
        for mut s in flatten(inner.unwrap_or_default()) {
            if s.block.is_none() {
                s.block = Some(id.clone());
                if s.on.is_none() {
                    s.on = on.clone();
                }
            }
            out.push(s);
        }
    }
    out
}

/// Keys a block cannot have: its work is its inner steps'.
const NOT_ON_A_BLOCK: [&str; 10] = [
    "run", "upload", "http", "unless", "when", "approval", "requires", "env", "timeout", "retries",
];

/// Whether `key` of [`NOT_ON_A_BLOCK`] is set on `spec`.
fn given(spec: &StepSpec, key: &str) -> bool {
    match key {
        "run" => spec.run.is_some(),
        "upload" => spec.upload.is_some(),
        "http" => spec.http.is_some(),
        "unless" => spec.unless.is_some(),
        "when" => spec.when.is_some(),
        "approval" => spec.approval.is_some(),
        "requires" => !spec.requires.is_empty(),
        "env" => !spec.env.is_empty(),
        "timeout" => spec.timeout.is_some(),
        _ => spec.retries.is_some() || spec.retry_delay.is_some(),
    }
}

/// What is wrong with the blocks of `steps` (flattened), each with its place.
pub fn check(
    steps: &[StepSpec],
    source: &Source,
    hosts: &IndexMap<String, HostSpec>,
    groups: &IndexMap<String, Vec<String>>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, spec) in steps.iter().enumerate() {
        let d = |message: String| Diagnostic::new(&source.path, message);
        if is_block(spec) {
            check_block(i, spec, steps, source, hosts, groups, &mut out);
        } else if spec.order.is_some() {
            out.push(
                d(format!(
                    "step `{}` has `order` but is not a rolling block",
                    spec.id
                ))
                .at(source.step_key_span(i, "order"))
                .hint("`order` belongs to a step with `steps:` (SPEC §15); remove it"),
            );
        }
        let Some(block) = &spec.block else {
            continue;
        };
        let Some(b) = steps.iter().find(|s| &s.id == block && is_block(s)) else {
            continue;
        };
        if spec.on != b.on {
            let on = spec.on.as_deref().unwrap_or("local");
            out.push(
                d(format!(
                    "step `{}` inside rolling block `{block}` runs on `{on}`; inner steps run on the block's hosts",
                    spec.id
                ))
                .at(source.step_value_span(i, "on", on))
                .hint(format!(
                    "remove `on:` from the inner step (it runs on each host of `{}`), or move the step out of the block",
                    b.on.as_deref().unwrap_or("local")
                )),
            );
        }
        for (key, given) in [
            ("serial", spec.serial.is_some()),
            ("max_fail", spec.max_fail.is_some()),
        ] {
            if given {
                out.push(
                    d(format!(
                        "step `{}` inside rolling block `{block}` has `{key}`",
                        spec.id
                    ))
                    .at(source.step_key_span(i, key))
                    .hint(format!(
                        "the block's own `{key}` decides for all of its steps; move it to `{block}`"
                    )),
                );
            }
        }
        for need in &spec.needs {
            let inside = steps
                .iter()
                .any(|s| &s.id == need && s.block.as_ref() == Some(block));
            let exists = steps.iter().any(|s| &s.id == need);
            if exists && !inside {
                out.push(
                    d(format!(
                        "step `{}` inside rolling block `{block}` needs `{need}`, which is outside the block",
                        spec.id
                    ))
                    .at(source.step_value_span(i, "needs", need))
                    .hint(format!(
                        "put `{need}` in the `needs:` of `{block}`: the block's first steps start once what the block needs is done"
                    )),
                );
            }
        }
    }
    out
}

/// A block's own problems: not on a group, nested, an action or a key of
/// its inner steps on it, no inner steps, a need on one of its own.
fn check_block(
    i: usize,
    spec: &StepSpec,
    steps: &[StepSpec],
    source: &Source,
    hosts: &IndexMap<String, HostSpec>,
    groups: &IndexMap<String, Vec<String>>,
    out: &mut Vec<Diagnostic>,
) {
    let d = |message: String| Diagnostic::new(&source.path, message);
    let id = &spec.id;
    if let Some(outer) = &spec.block {
        out.push(
            d(format!(
                "rolling block `{id}` is inside rolling block `{outer}`; blocks do not nest"
            ))
            .at(source.step_span(i))
            .hint(format!(
                "move the steps of `{id}` into `{outer}`, or `{id}` after it with `needs: [{outer}]`"
            )),
        );
    }
    match spec.on.as_deref() {
        Some(g) if groups.contains_key(g) && !hosts.contains_key(g) => {}
        // An unknown name is said by validation already.
        Some(g) if g != "local" && !hosts.contains_key(g) => {}
        on => out.push(
            d(format!(
                "rolling block `{id}` runs on {}; a rolling block runs on a group",
                on.map_or("no group".to_string(), |o| format!("`{o}`"))
            ))
            .at(match on {
                Some(o) => source.step_value_span(i, "on", o),
                None => source.step_span(i),
            })
            .hint("set `on:` to a group from `groups:` or the inventory; for one host, write the steps without `steps:`"),
        ),
    }
    for key in NOT_ON_A_BLOCK.iter().filter(|k| given(spec, k)) {
        out.push(
            d(format!(
                "rolling block `{id}` has `{key}`; a block's work is done by its inner steps"
            ))
            .at(source.step_key_span(i, key))
            .hint("move it into the inner step it belongs to (or a step the block `needs`)"),
        );
    }
    let members: Vec<&str> = steps
        .iter()
        .filter(|s| s.block.as_ref() == Some(id))
        .map(|s| s.id.as_str())
        .collect();
    if members.is_empty() {
        out.push(
            d(format!("rolling block `{id}` has no inner steps"))
                .at(source.step_key_span(i, "steps"))
                .hint("list the steps each host goes through under `steps:`"),
        );
    }
    for need in spec.needs.iter().filter(|n| members.contains(&n.as_str())) {
        out.push(
            d(format!(
                "rolling block `{id}` needs `{need}`, one of its own inner steps"
            ))
            .at(source.step_value_span(i, "needs", need))
            .hint("order inner steps with `needs:` between them; the block's `needs:` names steps outside it"),
        );
    }
}

/// Gives each block the needs on all of its inner steps (so what needs
/// the block waits for the whole rollout), and each inner step that needs
/// no other the block's own needs. `steps` are validated, not yet expanded.
pub fn wire_needs(steps: &mut [Step]) {
    let blocks: Vec<(usize, String, Vec<usize>)> = steps
        .iter()
        .filter(|s| is_block(&s.spec))
        .map(|s| (s.index, s.spec.id.clone(), s.needs.clone()))
        .collect();
    for (index, id, needs) in blocks {
        let members: Vec<usize> = steps
            .iter()
            .filter(|s| s.spec.block.as_ref() == Some(&id))
            .map(|s| s.index)
            .collect();
        for &m in &members {
            if steps[m].spec.needs.is_empty() {
                steps[m].needs = needs.clone();
            }
        }
        for m in members {
            if !steps[index].needs.contains(&m) {
                steps[index].needs.push(m);
            }
        }
    }
}

/// The hosts of a block's group in the block's order.
pub fn ordered(hosts: &[String], order: RollOrder) -> Vec<String> {
    let mut hosts = hosts.to_vec();
    match order {
        RollOrder::Inventory => {}
        RollOrder::Reverse => hosts.reverse(),
        RollOrder::Sorted => hosts.sort(),
    }
    hosts
}

/// Per written step: `Some` for an inner step of a block, with the hosts
/// in the block's order, how many go in one batch, and the block's
/// `max_fail`.
pub fn settings(
    steps: &[Step],
    groups: &IndexMap<String, Vec<String>>,
) -> Vec<Option<(Vec<String>, usize, u32)>> {
    steps
        .iter()
        .map(|s| {
            let block = s.spec.block.as_ref()?;
            let b = steps
                .iter()
                .find(|b| &b.spec.id == block && is_block(&b.spec))?;
            let hosts = groups.get(b.spec.on.as_ref()?)?;
            let serial = b
                .spec
                .serial
                .as_ref()
                .and_then(|x| super::fleet::serial_limit(x, hosts.len()).ok())
                .unwrap_or(hosts.len())
                .max(1);
            let order = b.spec.order.unwrap_or_default();
            Some((ordered(hosts, order), serial, b.spec.max_fail.unwrap_or(0)))
        })
        .collect()
}
