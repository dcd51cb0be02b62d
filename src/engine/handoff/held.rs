//! The secrets a person must supply, by owner: for each secret that holds
//! or blocks a step, why, where it can go (`sources`), how the engine
//! checks it, and what it unblocks.

use std::collections::BTreeMap;

use super::Facts;
use crate::engine::sources::Source;
use crate::report::fleet::short_ids;
use crate::report::handoff::{OwnerGroup, SecretNeed};
use crate::runbook::model::{SecretSpec, StatusSet};
use crate::state::{SecretState, StepState};
use crate::store::SecretRow;

/// Each owner with the secrets they must supply, in runbook order.
pub(super) fn owners(f: &Facts, secret_rows: &[SecretRow], sources: &[Source]) -> Vec<OwnerGroup> {
    let mut owners: Vec<OwnerGroup> = Vec::new();
    for name in names(f) {
        let spec = f.loaded.and_then(|l| l.runbook.secrets.get(&name));
        let owner = spec
            .and_then(|s| s.owner.clone())
            .unwrap_or_else(|| "the operator".into());
        let row = secret_rows.iter().find(|r| r.name == name);
        let need = need(f, &name, spec, row, sources);
        match owners.iter_mut().find(|g| g.owner == owner) {
            Some(g) => g.secrets.push(need),
            None => owners.push(OwnerGroup {
                owner,
                secrets: vec![need],
            }),
        }
    }
    owners
}

/// The secrets named by held or blocked steps, in runbook order.
fn names(f: &Facts) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in f
        .steps
        .iter()
        .filter(|s| matches!(s.state, StepState::Held | StepState::Blocked))
    {
        for n in s.missing.iter().chain(&s.rejected) {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    if let Some(l) = f.loaded {
        names.sort_by_key(|n| l.runbook.secrets.get_index_of(n).unwrap_or(usize::MAX));
    }
    names
}

/// One secret as the page states it.
fn need(
    f: &Facts,
    name: &str,
    spec: Option<&SecretSpec>,
    row: Option<&SecretRow>,
    sources: &[Source],
) -> SecretNeed {
    let status = row
        .map(|r| r.state)
        .filter(|s| !s.is_usable())
        .unwrap_or(SecretState::Missing);
    let found_in = row.and_then(|r| r.source.clone());
    let detail = row.and_then(|r| r.reason.clone()).unwrap_or_default();
    let (held_steps, blocked_steps) = held_and_blocked(f, name);
    SecretNeed {
        name: name.to_string(),
        description: spec.and_then(|s| s.description.clone()),
        status: status.to_string(),
        reason: reason(status, found_in.as_deref(), detail),
        found_in,
        sources: super::sources::places(f, name, spec, sources, &held_steps),
        check: check(f, spec),
        // A hundred hosts held on one secret read as one line per step.
        held_steps: short_ids(&held_steps),
        blocked_steps: short_ids(&blocked_steps),
    }
}

/// Why the secret holds its steps, in words.
fn reason(status: SecretState, found_in: Option<&str>, detail: String) -> String {
    match status {
        SecretState::Rejected => format!(
            "the value found in {} was refused by its check: `{detail}`; a new value is needed",
            found_in.unwrap_or("a source")
        ),
        SecretState::Unchecked => format!(
            "the value found in {} could not be checked: {detail}; fix what stops the check, or supply a value that passes it",
            found_in.unwrap_or("a source")
        ),
        SecretState::Unavailable => format!(
            "{detail} (fix that command, or add the entry it reads to the vault, then resume)"
        ),
        _ if detail.is_empty() || detail == "not set in any source" => {
            "it is not set in any of the places below".to_string()
        }
        _ => detail,
    }
}

/// The steps held on the secret, and those that wait behind them or are
/// blocked on it themselves.
fn held_and_blocked(f: &Facts, name: &str) -> (Vec<String>, Vec<String>) {
    let names_it = |s: &&crate::store::StepRow| {
        s.missing.iter().any(|n| n == name) || s.rejected.iter().any(|n| n == name)
    };
    let held: Vec<String> = f
        .steps
        .iter()
        .filter(|s| s.state == StepState::Held)
        .filter(names_it)
        .map(|s| s.id.clone())
        .collect();
    let mut blocked = downstream(f, &held);
    for s in f
        .steps
        .iter()
        .filter(|s| s.state == StepState::Blocked)
        .filter(names_it)
    {
        if !blocked.contains(&s.id) {
            blocked.push(s.id.clone());
        }
    }
    (held, blocked)
}

/// The blocked steps that wait, directly or not, on `roots`.
fn downstream(f: &Facts, roots: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut frontier: Vec<String> = roots.to_vec();
    while let Some(id) = frontier.pop() {
        for s in f
            .steps
            .iter()
            .filter(|s| s.state == StepState::Blocked && s.needs.contains(&id))
        {
            if !out.contains(&s.id) && !roots.contains(&s.id) {
                out.push(s.id.clone());
                frontier.push(s.id.clone());
            }
        }
    }
    out
}

/// How the engine checks the secret, when it has a `check`.
fn check(f: &Facts, spec: Option<&SecretSpec>) -> Option<String> {
    let (c, l) = (spec?.check.as_ref()?, f.loaded?);
    let placeholders: BTreeMap<String, String> = l
        .runbook
        .secrets
        .keys()
        .map(|k| (k.clone(), format!("${k}")))
        .collect();
    let r =
        crate::plan::render_http(&l.templater, &l.ctx.for_step("", &placeholders), &c.http).ok()?;
    let wanted = match &r.expect.status {
        Some(StatusSet::One(s)) => s.to_string(),
        Some(StatusSet::Any(v)) => v
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or "),
        None => "2xx".into(),
    };
    Some(format!(
        "`{} {}` must answer with status {wanted}; it runs at the start of `runbook resume`",
        r.method, r.url
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{facts, row};
    use super::*;

    fn secret(state: SecretState, source: Option<&str>, reason: Option<&str>) -> SecretRow {
        SecretRow {
            name: "TOKEN".into(),
            state,
            source: source.map(Into::into),
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn a_held_secret_says_why_and_what_it_unblocks() {
        let mut deploy = row("deploy", StepState::Held);
        deploy.rejected = vec!["TOKEN".into()];
        let mut check = row("check", StepState::Blocked);
        check.needs = vec!["deploy".into()];
        let mut report = row("report", StepState::Blocked);
        report.needs = vec!["check".into()];
        let steps = [deploy, check, report, row("other", StepState::Held)];
        let f = facts(&steps, "");
        let rows = [secret(
            SecretState::Rejected,
            Some("the environment"),
            Some("401"),
        )];
        let owners = owners(&f, &rows, &[Source::Environment]);
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].owner, "the operator");
        let need = &owners[0].secrets[0];
        assert_eq!(need.name, "TOKEN");
        assert_eq!(need.status, "rejected");
        assert_eq!(
            need.reason,
            "the value found in the environment was refused by its check: `401`; a new value is needed"
        );
        assert_eq!(need.held_steps, ["deploy"]);
        assert_eq!(need.blocked_steps, ["check", "report"]);
        assert_eq!(need.sources.len(), 1);
        assert_eq!(need.check, None);
    }

    #[test]
    fn each_status_in_words() {
        let missing = reason(SecretState::Missing, None, "not set in any source".into());
        assert_eq!(missing, "it is not set in any of the places below");
        let unchecked = reason(SecretState::Unchecked, None, "timed out".into());
        assert!(
            unchecked.starts_with("the value found in a source could not be checked: timed out;")
        );
        let gone = reason(SecretState::Unavailable, None, "`pass` exited 1".into());
        assert!(gone.starts_with("`pass` exited 1 (fix that command"));
    }

    #[test]
    fn no_secret_is_needed_when_no_step_waits_on_one() {
        let mut done = row("deploy", StepState::Succeeded);
        done.missing = vec!["TOKEN".into()];
        let steps = [done];
        assert!(owners(&facts(&steps, ""), &[], &[Source::Environment]).is_empty());
    }
}
