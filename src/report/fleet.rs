//! Fleets for people: the instances of a step on a group (`STEP@HOST`)
//! read as one line with counts per state, so a hundred hosts stay one
//! screen.

use crate::state::StepState;
use crate::store::StepRow;

/// The step an instance id belongs to: `deploy` for `deploy@web1`; `None`
/// for a step that is not an instance.
pub fn family_of(id: &str) -> Option<&str> {
    id.split_once('@').map(|(step, _)| step)
}

/// Rows in order, the instances of one step gathered.
pub enum Entry<'a> {
    /// A step on one host, or local.
    Single(&'a StepRow),
    /// The instances of a step on a group, in host order.
    Family {
        /// The step's id as written.
        step: &'a str,
        /// Its instances.
        rows: Vec<&'a StepRow>,
    },
    /// A rolling block (SPEC §15): its own row and its inner steps'
    /// instances.
    Block {
        /// The block's row.
        row: &'a StepRow,
        /// The instances of its inner steps, in plan order.
        rows: Vec<&'a StepRow>,
    },
}

/// Gathers the instances of each step on a group (they are stored next
/// to each other, in plan order).
pub fn entries(steps: &[StepRow]) -> Vec<Entry<'_>> {
    let mut out: Vec<Entry> = Vec::new();
    for row in steps {
        if let Some(block) = &row.block {
            if *block == row.id {
                out.push(Entry::Block {
                    row,
                    rows: Vec::new(),
                });
                continue;
            }
            if let Some(Entry::Block { row: b, rows }) = out.last_mut() {
                if b.id == *block {
                    rows.push(row);
                    continue;
                }
            }
        }
        match family_of(&row.id) {
            None => out.push(Entry::Single(row)),
            Some(step) => match out.last_mut() {
                Some(Entry::Family { step: s, rows }) if *s == step => rows.push(row),
                _ => out.push(Entry::Family {
                    step,
                    rows: vec![row],
                }),
            },
        }
    }
    out
}

/// Counts per state, in the order of the state machine: `18 succeeded · 2 failed`.
pub fn counts(rows: &[&StepRow]) -> String {
    state_counts(rows.iter().map(|r| r.state))
}

/// Counts of any states (rows, a rollout's hosts), in the order of the
/// state machine: `1 succeeded · 1 failed · 1 pending`.
pub fn state_counts(states: impl IntoIterator<Item = StepState>) -> String {
    const ORDER: [StepState; 8] = [
        StepState::Succeeded,
        StepState::Skipped,
        StepState::Running,
        StepState::Pending,
        StepState::Held,
        StepState::Blocked,
        StepState::Failed,
        StepState::Interrupted,
    ];
    let states: Vec<StepState> = states.into_iter().collect();
    ORDER
        .iter()
        .filter_map(|state| {
            let n = states.iter().filter(|s| *s == state).count();
            (n > 0).then(|| format!("{n} {state}"))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Ids cut to fit a line, instances of one step written once:
/// `deploy on h1, h2, h3, … (20 hosts)`.
pub fn short_ids(ids: &[String]) -> Vec<String> {
    const SHOWN: usize = 4;
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    for id in ids {
        match id.split_once('@') {
            Some((step, host)) => match out.iter_mut().find(|(s, _)| s == step) {
                Some((_, hosts)) => hosts.push(host),
                None => out.push((step.to_string(), vec![host])),
            },
            None => out.push((id.clone(), Vec::new())),
        }
    }
    out.into_iter()
        .map(|(step, hosts)| match hosts.len() {
            0 => step,
            1 => format!("{step}@{}", hosts[0]),
            n if n <= SHOWN => format!("{step} on {}", hosts.join(", ")),
            n => format!("{step} on {}, … ({n} hosts)", hosts[..SHOWN].join(", ")),
        })
        .collect()
}
