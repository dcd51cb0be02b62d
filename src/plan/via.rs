//! `via` per instance (SPEC §15): the host an http step's request goes
//! through, which for an instance of a step on a group may be its own.

use super::{Rendered, RenderedAction};
use crate::error::Diagnostic;
use crate::runbook::template::{TemplateError, Templater};
use crate::runbook::{Runbook, Step};

/// The host a step's request goes through (SPEC §15): `via` as written,
/// rendered when it is a template (`{{ step.host }}`), and the instance's
/// own host when it names the group the step runs on.
pub(super) fn via_of(
    templater: &Templater,
    c: &minijinja::Value,
    step: &Step,
    via: Option<&str>,
) -> std::result::Result<Option<String>, TemplateError> {
    let Some(via) = via else {
        return Ok(None);
    };
    if step.family.as_ref().is_some_and(|f| f.group == via) {
        return Ok(step.host.clone());
    }
    if crate::runbook::template::is_template(via) {
        return templater.render(via, c).map(|v| Some(v.trim().to_string()));
    }
    Ok(Some(via.to_string()))
}

/// A `via` that, rendered, names no host (or a group, or nothing).
pub(super) fn diagnostic(
    runbook: &Runbook,
    step: &Step,
    rendered: &Rendered,
) -> Option<Diagnostic> {
    let RenderedAction::Http(http) = &rendered.action else {
        return None;
    };
    let via = http.via.as_deref()?;
    if runbook.hosts.contains_key(via) {
        return None;
    }
    let written = step
        .spec
        .http
        .as_ref()
        .and_then(|h| h.via.as_deref())
        .unwrap_or_default();
    let message = if via.is_empty() {
        format!(
            "step `{}`: `via: {written}` renders empty here (a local step has no `step.host`)",
            step.spec.id
        )
    } else {
        format!(
            "step `{}`: `via: {written}` is `{via}` for `{}`, which is no host",
            step.spec.id, step.id
        )
    };
    Some(
        Diagnostic::new(&runbook.source.path, message)
            .at(runbook.source.step_key_span(step.source, "via"))
            .hint("`via` names a host from `hosts:` or the inventory; on a group, `{{ step.host }}` or the group's own name means each instance's own host"),
    )
}
