//! Rolling blocks for people (SPEC §15): a block is one line with counts
//! per state of its hosts, then each host with where its block is.

use crate::state::StepState;
use crate::store::StepRow;

/// Whether a row is a rolling block's own (its checkpoint, done when every
/// host is through): it runs nothing, so no count of steps counts it;
/// where a block is shown, its hosts are counted, and said to be hosts.
pub fn is_checkpoint(row: &StepRow) -> bool {
    row.block.as_deref() == Some(row.id.as_str())
}

/// One host of a block, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLine {
    /// The host's name.
    pub host: String,
    /// Where its block is: the worst of its instances' states (failed,
    /// held, running, interrupted, blocked), succeeded when all are done,
    /// pending while one is to run.
    pub state: StepState,
    /// Why, from the instance that decides the state: `check: exited with
    /// code 3`, `not started, max_fail 0 reached (web2 failed)`.
    pub reason: String,
    /// Time its instances took, together.
    pub duration_ms: Option<i64>,
}

/// The hosts of a block from the rows of its inner steps' instances, in
/// the order the rows name them (the block's order).
pub fn hosts(rows: &[&StepRow]) -> Vec<HostLine> {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        let host = r.host.as_deref().unwrap_or("local");
        if !names.contains(&host) {
            names.push(host);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<&StepRow> = rows
                .iter()
                .filter(|r| r.host.as_deref().unwrap_or("local") == name)
                .copied()
                .collect();
            host_line(name, &mine)
        })
        .collect()
}

/// Inner step name of an instance: `check` for `check@web2`.
fn step_of(row: &StepRow) -> &str {
    super::fleet::family_of(&row.id).unwrap_or(&row.id)
}

fn host_line(name: &str, rows: &[&StepRow]) -> HostLine {
    use StepState::*;
    let duration: i64 = rows.iter().filter_map(|r| r.duration_ms).sum();
    let with = |state: StepState| rows.iter().find(|r| r.state == state);
    let decided = [Failed, Held, Running, Interrupted, Blocked]
        .into_iter()
        .find_map(|s| with(s).map(|r| (s, *r)));
    let (state, reason) = match decided {
        Some((state, r)) => (
            state,
            format!("{}: {}", step_of(r), r.reason.clone().unwrap_or_default()),
        ),
        None if rows.iter().all(|r| r.state.satisfies_needs()) => (Succeeded, String::new()),
        None => {
            let next = rows.iter().find(|r| r.state == Pending);
            let done: Vec<&str> = rows
                .iter()
                .filter(|r| r.state.satisfies_needs())
                .map(|r| step_of(r))
                .collect();
            let reason = match (next, done.is_empty()) {
                (Some(r), true) => r.reason.clone().unwrap_or_else(|| "not started".into()),
                (Some(r), false) => format!("{} done; next: {}", done.join(", "), step_of(r)),
                (None, _) => String::new(),
            };
            (Pending, reason)
        }
    };
    HostLine {
        host: name.to_string(),
        state,
        reason: reason.trim_end_matches(": ").to_string(),
        duration_ms: (duration > 0).then_some(duration),
    }
}

/// Per rolling block in `steps` (rows in plan order): its id and its
/// hosts that have not started the block, with why (a rollout stopped at
/// `max_fail`, or waiting for the batches before).
pub fn not_started(steps: &[StepRow]) -> Vec<(String, Vec<HostLine>)> {
    super::fleet::entries(steps)
        .into_iter()
        .filter_map(|e| match e {
            super::fleet::Entry::Block { row, rows } => {
                let left: Vec<HostLine> = hosts(&rows)
                    .into_iter()
                    .filter(|h| {
                        h.state == StepState::Pending
                            && rows
                                .iter()
                                .filter(|r| r.host.as_deref() == Some(&h.host))
                                .all(|r| r.state == StepState::Pending)
                    })
                    .collect();
                (!left.is_empty()).then(|| (row.id.clone(), left))
            }
            _ => None,
        })
        .collect()
}

/// Counts per state of the hosts: `1 succeeded · 1 failed · 1 pending`.
pub fn counts(hosts: &[HostLine]) -> String {
    super::fleet::state_counts(hosts.iter().map(|h| h.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, state: StepState, reason: Option<&str>) -> StepRow {
        StepRow {
            reason: reason.map(str::to_string),
            host: id.split_once('@').map(|(_, h)| h.to_string()),
            block: Some("rollout".into()),
            ..StepRow::new(id, 0, state)
        }
    }

    #[test]
    fn a_host_reads_as_the_instance_that_decides_where_its_block_is() {
        use StepState::*;
        let rows = [
            row("drain@w1", Succeeded, None),
            row("drain@w2", Succeeded, None),
            row(
                "drain@w3",
                Pending,
                Some("not started, max_fail 0 reached (w2 failed)"),
            ),
            row("check@w1", Succeeded, None),
            row("check@w2", Failed, Some("exited with code 3")),
            row(
                "check@w3",
                Pending,
                Some("not started, max_fail 0 reached (w2 failed)"),
            ),
        ];
        let refs: Vec<&StepRow> = rows.iter().collect();
        let got = hosts(&refs);
        let shown: Vec<(&str, StepState, &str)> = got
            .iter()
            .map(|h| (h.host.as_str(), h.state, h.reason.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("w1", Succeeded, ""),
                ("w2", Failed, "check: exited with code 3"),
                ("w3", Pending, "not started, max_fail 0 reached (w2 failed)"),
            ]
        );
        assert_eq!(counts(&got), "1 succeeded · 1 pending · 1 failed");
        let mid = [
            row("drain@w1", Succeeded, None),
            row("check@w1", Pending, None),
        ];
        let refs: Vec<&StepRow> = mid.iter().collect();
        assert_eq!(hosts(&refs)[0].reason, "drain done; next: check");
    }
}
