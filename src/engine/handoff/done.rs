//! What is behind the person and what waits on them: the steps done, the
//! steps blocked, the counts the header states, and the gathering of a
//! step's instances that say the same onto one line.

use super::Facts;
use crate::report::handoff::{Counts, StepLine};
use crate::report::rolling::is_checkpoint;
use crate::state::StepState;
use crate::store::StepRow;

/// The steps done (succeeded or skipped), by title or reason.
pub(super) fn done(f: &Facts) -> Vec<StepLine> {
    let line = |s: &StepRow| {
        let title = f.spec_of(&s.id).and_then(|st| {
            let title = st.spec.title.as_deref()?;
            Some(f.label(st, title))
        });
        StepLine::new(
            s.id.clone(),
            title.or_else(|| s.reason.clone()).unwrap_or_default(),
        )
    };
    collapse(
        f.steps
            .iter()
            .filter(|s| s.state.satisfies_needs())
            .map(line)
            .collect(),
    )
}

/// Says who approved each done step that was approved, and when (SPEC §11).
pub(super) fn with_approvals(
    mut lines: Vec<StepLine>,
    approvals: &[(String, crate::store::Approval)],
) -> Vec<StepLine> {
    for line in &mut lines {
        if let Some((_, a)) = approvals.iter().find(|(step, _)| *step == line.id) {
            let said = format!("approved by {} at {}", a.by, a.at);
            line.text = match line.text.is_empty() {
                true => said,
                false => format!("{}; {said}", line.text),
            };
        }
    }
    lines
}

/// The steps blocked behind held or failed ones, with why, then the
/// hosts rolling blocks have not started.
/// A step that asks for an approval none has given says so: it does not
/// run by itself once what it waits for is done.
pub(super) fn blocked(f: &Facts, approved: impl Fn(&str) -> bool) -> Vec<StepLine> {
    let line = |s: &StepRow| {
        let mut text = s.reason.clone().unwrap_or_default();
        let asks = f.spec_of(&s.id).is_some_and(|st| st.approval.is_some());
        if asks && !approved(&s.id) {
            text.push_str("; then it waits for an approval");
        }
        StepLine::new(s.id.clone(), text)
    };
    collapse(
        f.steps
            .iter()
            .filter(|s| s.state == StepState::Blocked && !is_checkpoint(s))
            .map(line)
            .collect(),
    )
    .into_iter()
    .chain(not_started(f.steps))
    .collect()
}

/// The hosts a rolling block has not started (SPEC §15), one line per
/// reason: `rollout on web3: not started, max_fail 0 reached (web2 failed)`.
fn not_started(steps: &[StepRow]) -> Vec<StepLine> {
    let mut out: Vec<StepLine> = Vec::new();
    for (block, hosts) in crate::report::rolling::not_started(steps) {
        for h in hosts {
            let text = format!("{}; it goes once the hosts before it are through", h.reason);
            match out.iter_mut().find(|l| l.id == block && l.text == text) {
                Some(line) => line.hosts.push(h.host),
                None => out.push(StepLine {
                    id: block.clone(),
                    text,
                    step: Some(block.clone()),
                    hosts: vec![h.host],
                }),
            }
        }
    }
    out
}

/// Steps per state, each instance counted once (a rolling block's own row
/// is none: its hosts' are); the instances of hosts a rolling block has
/// not started are behind what stopped or holds it.
pub(super) fn counts(steps: &[StepRow]) -> Counts {
    let count =
        |p: &dyn Fn(&StepRow) -> bool| steps.iter().filter(|s| !is_checkpoint(s) && p(s)).count();
    let not_started: usize = crate::report::rolling::not_started(steps)
        .iter()
        .flat_map(|(block, hosts)| hosts.iter().map(move |h| (block, &h.host)))
        .map(|(block, host)| {
            count(&|s| s.block.as_ref() == Some(block) && s.host.as_ref() == Some(host))
        })
        .sum();
    Counts {
        done: count(&|s| s.state.satisfies_needs()),
        waiting: count(&|s| s.state.is_waiting()),
        failed: count(&|s| s.state == StepState::Failed),
        blocked: count(&|s| s.state == StepState::Blocked) + not_started,
        pending: count(&|s| matches!(s.state, StepState::Pending | StepState::Interrupted))
            .saturating_sub(not_started),
        reset: count(&crate::report::status::was_reset),
    }
}

/// Lines of instances of one step that say the same (a title, a doc, a
/// reason with the host's name in it or not) become one line naming them.
pub(super) fn collapse(lines: Vec<StepLine>) -> Vec<StepLine> {
    // (step, its instances' lines as (id, text as written), the shared text)
    type Gathered = (String, Vec<(String, String)>, String);
    let mut out: Vec<Gathered> = Vec::new();
    for l in lines {
        let Some((family, host)) = l.id.split_once('@') else {
            out.push((l.id.clone(), vec![(l.id, l.text.clone())], l.text));
            continue;
        };
        // A reason that names the host's own instance reads the same for all.
        let text = l.text.replace(&format!("@{host}`"), "` on the same host");
        match out.iter_mut().find(|(f, _, t)| f == family && *t == text) {
            Some((_, ids, _)) => ids.push((l.id, l.text)),
            None => out.push((family.to_string(), vec![(l.id, l.text)], text)),
        }
    }
    out.into_iter()
        .map(|(family, mut ids, text)| {
            if ids.len() == 1 {
                let (id, written) = ids.remove(0);
                return StepLine::new(id, written);
            }
            let hosts = ids
                .iter()
                .filter_map(|(id, _)| id.split_once('@').map(|(_, h)| h.to_string()))
                .collect();
            StepLine {
                id: family.clone(),
                text,
                step: Some(family),
                hosts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, row};
    use super::*;

    #[test]
    fn instances_saying_the_same_are_one_line_and_a_lone_one_keeps_its_id() {
        let mut lines = vec![
            StepLine::new("deploy@w1", "`build@w1` failed"),
            StepLine::new("deploy@w2", "`build@w2` failed"),
            StepLine::new("deploy@w3", "waits for an approval"),
            StepLine::new("report", "`deploy` is blocked"),
        ];
        lines = collapse(lines);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].id, "deploy");
        assert_eq!(lines[0].step.as_deref(), Some("deploy"));
        assert_eq!(lines[0].hosts, ["w1", "w2"]);
        assert_eq!(lines[0].text, "`build` on the same host failed");
        assert_eq!(lines[0].label(), "deploy on w1, w2");
        assert_eq!(lines[1].id, "deploy@w3");
        assert_eq!(lines[1].text, "waits for an approval");
        assert_eq!(lines[1].step, None);
        assert_eq!(lines[2].id, "report");
    }

    #[test]
    fn done_and_blocked_lines_and_the_counts_of_every_instance() {
        let mut skipped = row("b", StepState::Skipped);
        skipped.reason = Some("its `when` is false".into());
        let mut blocked_row = row("d@h1", StepState::Blocked);
        blocked_row.reason = Some("`c` failed".into());
        let mut blocked_2 = blocked_row.clone();
        blocked_2.id = "d@h2".into();
        let steps = [
            row("a", StepState::Succeeded),
            skipped,
            row("c", StepState::Failed),
            blocked_row,
            blocked_2,
            row("e", StepState::Held),
        ];
        let lines = done(&facts(&steps, ""));
        let ids: Vec<_> = lines
            .iter()
            .map(|l| (l.id.as_str(), l.text.as_str()))
            .collect();
        assert_eq!(ids, [("a", ""), ("b", "its `when` is false")]);
        let lines = blocked(&facts(&steps, ""), |_| false);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].label(), "d on h1, h2");
        let c = counts(&steps);
        assert_eq!((c.done, c.waiting, c.failed, c.blocked), (2, 1, 1, 2));
    }
}
