//! The handoff model (SPEC §6): what a person must do to finish a run, as
//! data. The engine builds it (`engine::handoff`); the renderers beside
//! this file write it as Markdown, JSON or HTML. It knows no renderer.

use serde::Serialize;

use crate::state::RunState;

/// The handoff as data (`handoff --json`).
#[derive(Debug, Serialize)]
pub struct Handoff {
    /// Run id.
    pub run_id: i64,
    /// Runbook name.
    pub runbook: String,
    /// Runbook description.
    pub description: Option<String>,
    /// Run state.
    pub state: RunState,
    /// Start.
    pub started_at: String,
    /// End of the last pass.
    pub finished_at: Option<String>,
    /// Steps done (succeeded or skipped).
    pub done: Vec<StepLine>,
    /// What each owner must supply.
    pub owners: Vec<OwnerGroup>,
    /// Steps waiting for an approval.
    pub approvals: Vec<ApprovalNeed>,
    /// Steps that failed, with the tail of their output.
    pub failed: Vec<FailedStep>,
    /// Steps blocked behind held or failed ones.
    pub blocked: Vec<StepLine>,
    /// Notes the runbook author wrote for the person taking over.
    pub notes: Vec<StepLine>,
    /// The command that continues the run.
    pub resume_command: String,
    /// How many steps (each instance on a host counted once) are done,
    /// wait for a person, failed and are blocked: the lists above collapse
    /// a step's instances into one line, these do not.
    pub counts: Counts,
}

/// Steps per state, each instance of a step on a group counted once.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Succeeded or skipped.
    pub done: usize,
    /// Held: a secret or an approval.
    pub waiting: usize,
    /// Failed.
    pub failed: usize,
    /// Blocked behind held or failed ones.
    pub blocked: usize,
    /// Not run yet and waiting for nobody (sent back by `reset`, left by
    /// `--limit`, stopped by Ctrl-C): resume runs them.
    pub pending: usize,
    /// Of those, the ones `runbook reset` sent back.
    pub reset: usize,
}

/// A step and a line about it.
#[derive(Debug, Serialize)]
pub struct StepLine {
    /// Step id, or an instance's `STEP@HOST`; for the instances of one
    /// step gathered on one line, the step's id (an id, never prose).
    pub id: String,
    /// Title or reason.
    pub text: String,
    /// For instances gathered on one line: the step they are of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For instances gathered on one line: their hosts, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl StepLine {
    /// A line about one step or instance.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        StepLine {
            id: id.into(),
            text: text.into(),
            step: None,
            hosts: Vec::new(),
        }
    }

    /// What people read: the id, or `STEP on HOST, HOST` for gathered
    /// instances.
    pub fn label(&self) -> String {
        match &self.step {
            Some(step) if !self.hosts.is_empty() => {
                format!("{step} on {}", self.hosts.join(", "))
            }
            _ => self.id.clone(),
        }
    }
}

/// The secrets one person must supply.
#[derive(Debug, Serialize)]
pub struct OwnerGroup {
    /// Who.
    pub owner: String,
    /// What.
    pub secrets: Vec<SecretNeed>,
}

/// One secret a person must supply.
#[derive(Debug, Serialize)]
pub struct SecretNeed {
    /// Name.
    pub name: String,
    /// What it is.
    pub description: Option<String>,
    /// `missing`, `rejected`, `unchecked` or `unavailable`.
    pub status: String,
    /// Why, in words.
    pub reason: String,
    /// Where the current (bad) value was found.
    pub found_in: Option<String>,
    /// Where the engine looks, in order.
    pub sources: Vec<String>,
    /// How the engine checks it.
    pub check: Option<String>,
    /// Steps waiting on it directly.
    pub held_steps: Vec<String>,
    /// Steps that run once those do.
    pub blocked_steps: Vec<String>,
}

/// A step that waits for an approval.
#[derive(Debug, Serialize)]
pub struct ApprovalNeed {
    /// Step id.
    pub step: String,
    /// The question.
    pub question: String,
    /// The command that approves it.
    pub command: String,
}

/// A failed step.
#[derive(Debug, Serialize)]
pub struct FailedStep {
    /// Step id.
    pub id: String,
    /// Host, when remote.
    pub host: Option<String>,
    /// Why it failed.
    pub reason: String,
    /// Last lines of its output.
    pub output_tail: Vec<String>,
    /// The command that shows everything.
    pub logs_command: String,
}

impl SecretNeed {
    /// `it` or `them`: what the blocked steps come after.
    pub fn after(&self) -> &'static str {
        if self.held_steps.len() == 1 {
            "it"
        } else {
            "them"
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Handoff {
    /// The header every format states: what is done, and what waits for a
    /// person, failed or is blocked (each instance counted once; a count
    /// of 0 is left out).
    pub fn header_counts(&self) -> (String, Option<String>) {
        let c = &self.counts;
        let done = match c.done {
            1 => "1 step is done".to_string(),
            n => format!("{n} steps are done"),
        };
        let mut parts = Vec::new();
        match c.waiting {
            0 => {}
            1 => parts.push("1 waits for a person".to_string()),
            n => parts.push(format!("{n} wait for a person")),
        }
        if c.failed > 0 {
            parts.push(format!("{} failed", c.failed));
        }
        if c.blocked > 0 {
            let verb = if c.blocked == 1 { "is" } else { "are" };
            let behind = match c.waiting + c.failed {
                0 => String::new(),
                1 => " behind it".to_string(),
                _ => " behind them".to_string(),
            };
            parts.push(format!("{} {verb} blocked{behind}", c.blocked));
        }
        (done, (!parts.is_empty()).then(|| and_list(&parts)))
    }

    /// Whether the run is unfinished only because `runbook reset` sent
    /// steps back (no step waits, failed, or was stopped).
    pub fn was_reset(&self) -> bool {
        let c = &self.counts;
        self.state == RunState::Interrupted
            && c.reset > 0
            && c.reset == c.pending
            && c.waiting + c.failed + c.blocked == 0
    }

    /// What the title says of the run: `is held`, `was reset`.
    pub fn standing(&self) -> String {
        match self.was_reset() {
            true => "was reset".to_string(),
            false => format!("is {}", self.state),
        }
    }

    /// The counts as the header's sentences: what is done, what waits,
    /// what resume runs.
    pub fn counts_sentences(&self) -> String {
        let (done, rest) = self.header_counts();
        let mut out = done;
        if let Some(rest) = &rest {
            out.push_str(&format!("; {rest}"));
        }
        out.push('.');
        let (n, them) = match self.counts.pending {
            1 => (1, "it"),
            n => (n, "them"),
        };
        if n > 0 {
            let what = match (self.counts.reset == n, n) {
                (true, 1) => "1 step was reset to pending".to_string(),
                (true, n) => format!("{n} steps were reset to pending"),
                (false, 1) => "1 step has not run yet".to_string(),
                (false, n) => format!("{n} steps have not run yet"),
            };
            out.push_str(&format!(" {what}; resume runs {them}."));
        }
        if rest.is_none() {
            out.push_str(" Nothing is waiting for anyone.");
        }
        out
    }

    /// Whether anything above the Then section asks a person to act.
    pub fn asks_anything(&self) -> bool {
        self.counts.waiting + self.counts.failed > 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A held run with one of everything, for the renderers' tests.
    pub fn sample() -> Handoff {
        let blocked = StepLine {
            id: "deploy".into(),
            text: "`build` failed".into(),
            step: Some("deploy".into()),
            hosts: vec!["w1".into(), "w2".into()],
        };
        Handoff {
            run_id: 7,
            runbook: "deploy".into(),
            description: Some("Ship it.".into()),
            state: RunState::Held,
            started_at: "2026-12-03T10:00:00Z".into(),
            finished_at: Some("2026-12-03T10:05:00Z".into()),
            done: vec![StepLine::new("fetch", "Fetch the code")],
            owners: vec![OwnerGroup {
                owner: "Lukas".into(),
                secrets: vec![SecretNeed {
                    name: "TOKEN".into(),
                    description: Some("The deploy token".into()),
                    status: "missing".into(),
                    reason: "it is not set in any of the places below".into(),
                    found_in: None,
                    sources: vec!["the environment: `export TOKEN=...`".into()],
                    check: None,
                    held_steps: vec!["deploy@w1".into()],
                    blocked_steps: vec!["check".into()],
                }],
            }],
            approvals: vec![ApprovalNeed {
                step: "approve".into(),
                question: "Ship?".into(),
                command: "runbook approve 7 approve".into(),
            }],
            failed: vec![FailedStep {
                id: "build".into(),
                host: Some("w1".into()),
                reason: "exit code 2".into(),
                output_tail: vec!["no space left".into()],
                logs_command: "runbook logs 7 build".into(),
            }],
            blocked: vec![blocked],
            notes: vec![StepLine::new("check", "Checks\nthe site.\n")],
            resume_command: "runbook resume 7".into(),
            counts: Counts {
                done: 1,
                waiting: 1,
                failed: 1,
                blocked: 2,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn the_header_counts_say_what_waits_and_a_gathered_line_names_its_hosts() {
        let mut h = sample();
        assert_eq!(
            h.header_counts(),
            (
                "1 step is done".to_string(),
                Some("1 waits for a person, 1 failed and 2 are blocked behind them".to_string())
            )
        );
        h.counts = Counts {
            done: 3,
            ..Counts::default()
        };
        assert_eq!(h.header_counts(), ("3 steps are done".to_string(), None));
        // A zero is left out, one is singular, and what is blocked is
        // behind the one step that holds it.
        h.counts = Counts {
            done: 0,
            waiting: 1,
            blocked: 1,
            ..Counts::default()
        };
        assert_eq!(
            h.header_counts().1.as_deref(),
            Some("1 waits for a person and 1 is blocked behind it")
        );
        h.counts = Counts {
            done: 2,
            failed: 2,
            blocked: 1,
            ..Counts::default()
        };
        assert_eq!(
            h.counts_sentences(),
            "2 steps are done; 2 failed and 1 is blocked behind them."
        );
        // After a reset: what resume runs, and nothing waits.
        h.state = RunState::Interrupted;
        h.counts = Counts {
            done: 1,
            pending: 2,
            reset: 2,
            ..Counts::default()
        };
        assert!(h.was_reset());
        assert_eq!(h.standing(), "was reset");
        assert_eq!(
            h.counts_sentences(),
            "1 step is done. 2 steps were reset to pending; resume runs them. Nothing is waiting for anyone."
        );
        h.counts.pending = 1;
        h.counts.reset = 0;
        assert!(!h.was_reset());
        assert_eq!(
            h.counts_sentences(),
            "1 step is done. 1 step has not run yet; resume runs it. Nothing is waiting for anyone."
        );
        assert_eq!(h.blocked[0].label(), "deploy on w1, w2");
        assert_eq!(h.done[0].label(), "fetch");
    }
}
