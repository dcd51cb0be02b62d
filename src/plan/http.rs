//! An HTTP request rendered: a step's, or a secret's `check`.

use super::RenderedHttp;
use crate::runbook::template::{TemplateError, Templater};

/// Renders an HTTP request (also used by secret checks).
pub fn render_http(
    templater: &Templater,
    c: &minijinja::Value,
    http: &crate::runbook::model::HttpSpec,
) -> std::result::Result<RenderedHttp, TemplateError> {
    let headers = http
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), templater.render(&v.as_text(), c)?)))
        .collect::<std::result::Result<Vec<_>, TemplateError>>()?;
    let (body, json) = match (&http.body, &http.json) {
        (Some(b), _) => (Some(templater.render(b, c)?), false),
        (None, Some(j)) => (Some(render_json(templater, c, j)?.to_string()), true),
        (None, None) => (None, false),
    };
    Ok(RenderedHttp {
        method: http
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase(),
        url: templater.render(&http.url, c)?,
        headers,
        body,
        json,
        via: http.via.clone(),
        expect: crate::runbook::model::Expect {
            status: http.expect.status.clone(),
            body_contains: http
                .expect
                .body_contains
                .as_ref()
                .map(|t| t.try_map(|s| templater.render(s, c)))
                .transpose()?,
            body_not_contains: http
                .expect
                .body_not_contains
                .as_ref()
                .map(|t| t.try_map(|s| templater.render(s, c)))
                .transpose()?,
            json: http
                .expect
                .json
                .as_ref()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| Ok((k.clone(), render_json(templater, c, v)?)))
                        .collect::<std::result::Result<_, TemplateError>>()
                })
                .transpose()?,
        },
    })
}

fn render_json(
    templater: &Templater,
    c: &minijinja::Value,
    value: &serde_json::Value,
) -> std::result::Result<serde_json::Value, TemplateError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) => J::String(templater.render(s, c)?),
        J::Array(items) => J::Array(
            items
                .iter()
                .map(|v| render_json(templater, c, v))
                .collect::<std::result::Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(templater, c, v)?)))
                .collect::<std::result::Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}
