//! What the scheduler asks before it starts a step, and the answers: a
//! [`Gate`] says held (a [`Hold`]: a person must act), failed (it cannot
//! run as defined), or ready with the definition to run.

use std::sync::Arc;

use crate::plan::Rendered;
use crate::secrets::Redactor;

/// Why a step cannot start yet: a human must act.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    /// Secrets that are missing.
    pub missing: Vec<String>,
    /// Secrets whose check rejected them, with the reason.
    pub rejected: Vec<(String, String)>,
    /// Secrets (also in `missing`) whose command failed, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// The approval question, when not yet approved.
    pub approval: Option<String>,
}

impl Hold {
    /// Whether anything holds the step.
    pub fn is_held(&self) -> bool {
        !self.missing.is_empty() || !self.rejected.is_empty() || self.approval.is_some()
    }

    /// The reason shown in status.
    pub fn reason(&self) -> String {
        let mut parts = Vec::new();
        for m in &self.missing {
            match self.unavailable.iter().find(|(n, _)| n == m) {
                Some((_, why)) => parts.push(format!("secret {m} is unavailable: {why}")),
                None => parts.push(format!("secret {m} is missing")),
            }
        }
        for (name, why) in &self.rejected {
            parts.push(format!("secret {name} {why}"));
        }
        if let Some(q) = &self.approval {
            parts.push(format!("waiting for approval: {q}"));
        }
        parts.join("; ")
    }
}

/// Why a step does not start now.
#[derive(Debug, Clone)]
pub enum NotReady {
    /// A human must act.
    Held(Hold),
    /// It cannot run as defined (its templates fail with the real secret
    /// values): it fails with this reason, without running.
    Failed(String),
}

/// What the scheduler asks before starting a step: held, failed, or ready
/// with the definition to run (rendered with real secret values).
pub trait Gate {
    /// Checks holds and renders the step for execution.
    fn prepare(&mut self, step: usize) -> std::result::Result<Rendered, NotReady>;
    /// What a step would wait on (secrets), even when it is blocked.
    fn waiting_on(&self, step: usize) -> Hold;
    /// The redactor for everything the step prints.
    fn redactor(&self) -> Arc<Redactor>;
}
