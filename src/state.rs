//! Step and run states (SPEC §3), and the one place that decides which
//! transitions are allowed.

use serde::Serialize;

/// The state of a step in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Not started yet.
    Pending,
    /// Its action is running.
    Running,
    /// Done.
    Succeeded,
    /// Its action failed after every attempt.
    Failed,
    /// Waiting for a human: a missing or rejected secret, or an approval.
    Held,
    /// A step it needs failed or is held.
    Blocked,
    /// Its `when` was false.
    Skipped,
    /// It was running when the engine stopped.
    Interrupted,
}

impl StepState {
    /// Whether the step waits for a person (a secret or an approval).
    pub fn is_waiting(self) -> bool {
        self == StepState::Held
    }

    /// All states, for parsing.
    pub const ALL: [StepState; 8] = [
        StepState::Pending,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Held,
        StepState::Blocked,
        StepState::Skipped,
        StepState::Interrupted,
    ];

    /// The name used in the database, JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Held => "held",
            StepState::Blocked => "blocked",
            StepState::Skipped => "skipped",
            StepState::Interrupted => "interrupted",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether dependents may start after this state.
    pub fn satisfies_needs(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Skipped)
    }

    /// Whether moving from `self` to `to` is allowed.
    ///
    /// A pass goes pending → running → (succeeded | failed | interrupted), or
    /// pending → (held | blocked | skipped | succeeded); resume and reset send
    /// any state back to pending.
    pub fn can_become(self, to: StepState) -> bool {
        use StepState::*;
        matches!(
            (self, to),
            (_, Pending)
                | (
                    Pending,
                    Running | Held | Blocked | Skipped | Succeeded | Failed
                )
                | (Running, Succeeded | Failed | Interrupted | Running)
                | (Blocked, Blocked)
                | (Held, Held)
        )
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// An engine is working on it (or died while doing so).
    Running,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// Some step failed.
    Failed,
    /// None failed, some are held.
    Held,
    /// The engine was stopped.
    Interrupted,
}

impl RunState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Held => "held",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Held,
            RunState::Interrupted,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether a later `run` resumes it.
    pub fn is_unfinished(self) -> bool {
        self != RunState::Succeeded
    }

    /// The run's state from its steps' states after a pass.
    pub fn from_steps(states: impl IntoIterator<Item = StepState>) -> RunState {
        let mut held = false;
        let mut interrupted = false;
        let mut failed = false;
        let mut open = false;
        for s in states {
            match s {
                StepState::Failed => failed = true,
                StepState::Held | StepState::Blocked => held = true,
                StepState::Interrupted => interrupted = true,
                StepState::Pending | StepState::Running => open = true,
                StepState::Succeeded | StepState::Skipped => {}
            }
        }
        if interrupted || open {
            RunState::Interrupted
        } else if failed {
            RunState::Failed
        } else if held {
            RunState::Held
        } else {
            RunState::Succeeded
        }
    }

    /// The exit code a command returns for a run that ended in this state.
    pub fn exit_code(self) -> i32 {
        use crate::error::exit;
        match self {
            RunState::Succeeded => exit::OK,
            RunState::Failed => exit::FAILED,
            RunState::Held => exit::HELD,
            RunState::Interrupted | RunState::Running => exit::INTERRUPTED,
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_state_follows_steps() {
        use StepState::*;
        assert_eq!(
            RunState::from_steps([Succeeded, Skipped]),
            RunState::Succeeded
        );
        assert_eq!(
            RunState::from_steps([Succeeded, Held, Blocked]),
            RunState::Held
        );
        assert_eq!(
            RunState::from_steps([Failed, Held, Blocked]),
            RunState::Failed
        );
        assert_eq!(
            RunState::from_steps([Failed, Interrupted]),
            RunState::Interrupted
        );
    }

    #[test]
    fn transitions() {
        use StepState::*;
        assert!(Pending.can_become(Running));
        assert!(!Succeeded.can_become(Running));
        assert!(Failed.can_become(Pending));
        assert!(!Held.can_become(Succeeded));
    }
}

/// What the last pass learned about a secret (never its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretState {
    /// A value was found; it has no check.
    Found,
    /// A value was found and its check accepted it.
    Accepted,
    /// No source has a value.
    Missing,
    /// Its check refused the value found.
    Rejected,
    /// Its check could not be made (no connection, another secret missing).
    Unchecked,
    /// Its command failed (non-zero exit, no output, timeout).
    Unavailable,
}

impl SecretState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Found => "found",
            SecretState::Accepted => "accepted",
            SecretState::Missing => "missing",
            SecretState::Rejected => "rejected",
            SecretState::Unchecked => "unchecked",
            SecretState::Unavailable => "unavailable",
        }
    }

    /// Parses a stored name; anything unknown counts as missing.
    pub fn parse(text: &str) -> Self {
        [
            SecretState::Found,
            SecretState::Accepted,
            SecretState::Rejected,
            SecretState::Unchecked,
            SecretState::Unavailable,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .unwrap_or(SecretState::Missing)
    }

    /// Whether a step that requires the secret can go.
    pub fn is_usable(self) -> bool {
        matches!(self, SecretState::Found | SecretState::Accepted)
    }
}

impl std::fmt::Display for SecretState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
