//! HTTP requests with expectations (the `http` action and secret checks).

use std::time::{Duration, Instant};

use crate::action::RenderedHttp;
use crate::runbook::model::Expect;

use super::{LineSink, Outcome, Stream};

/// How much of a body a failure message shows.
const BODY_PREVIEW: usize = 300;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body text (lossy UTF-8).
    pub body: String,
}

/// A client for one run: rustls, no proxy from the environment for loopback.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Sends the request to `url` (which may differ from `http.url` when tunnelled).
pub async fn send(
    client: &reqwest::Client,
    http: &RenderedHttp,
    url: &str,
    timeout: Option<Duration>,
) -> Result<Response, String> {
    let method = reqwest::Method::from_bytes(http.method.as_bytes())
        .map_err(|_| format!("bad method {}", http.method))?;
    let mut request = client.request(method, url);
    for (k, v) in &http.headers {
        request = request.header(k, v);
    }
    if let Some(body) = &http.body {
        if http.json {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        request = request.body(body.clone());
    }
    request = request.timeout(timeout.unwrap_or(Duration::from_secs(60)));
    let response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| describe(&e))?;
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&bytes).to_string(),
    })
}

/// Why a response does not meet the expectations; `None` when it does.
pub fn unmet(expect: &Expect, response: &Response) -> Option<String> {
    let status_ok = match &expect.status {
        Some(set) => set.accepts(response.status),
        None => (200..300).contains(&response.status),
    };
    if !status_ok {
        let wanted = match &expect.status {
            Some(crate::runbook::model::StatusSet::One(s)) => s.to_string(),
            Some(crate::runbook::model::StatusSet::Any(l)) => l
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            None => "2xx".into(),
        };
        return Some(format!(
            "expected status {wanted}, got {}; body: {}",
            response.status,
            preview(&response.body)
        ));
    }
    for needle in expect.body_contains.iter().flat_map(|t| t.items()) {
        if !response.body.contains(needle) {
            return Some(format!(
                "expected the body to contain `{needle}`; body: {}",
                preview(&response.body)
            ));
        }
    }
    for needle in expect.body_not_contains.iter().flat_map(|t| t.items()) {
        if response.body.contains(needle) {
            return Some(format!(
                "expected the body not to contain `{needle}`; body: {}",
                preview(&response.body)
            ));
        }
    }
    if let Some(pointers) = &expect.json {
        let doc: serde_json::Value = match serde_json::from_str(&response.body) {
            Ok(doc) => doc,
            Err(e) => {
                return Some(format!(
                    "expected a JSON body ({e}); body: {}",
                    preview(&response.body)
                ))
            }
        };
        for (pointer, wanted) in pointers {
            match doc.pointer(pointer) {
                Some(found) if found == wanted => {}
                Some(found) => {
                    return Some(format!(
                        "expected {pointer} = {}, got {}",
                        shown(wanted),
                        shown(found)
                    ))
                }
                None => {
                    return Some(format!(
                        "expected {pointer} = {}, but the body has no {pointer}; body: {}",
                        shown(wanted),
                        preview(&response.body)
                    ))
                }
            }
        }
    }
    None
}

/// The `http` action: one request, checked.
pub async fn run(
    client: &reqwest::Client,
    http: &RenderedHttp,
    url: &str,
    timeout: Option<Duration>,
    sink: &LineSink,
) -> Outcome {
    let started = Instant::now();
    // Through a host's tunnel: said, so each instance's output names its host.
    let via = http
        .via
        .as_deref()
        .map(|h| format!(" via {h}"))
        .unwrap_or_default();
    match send(client, http, url, timeout).await {
        Ok(response) => {
            let _ = sink.send((
                Stream::Stdout,
                format!(
                    "{} {}{via} → {} ({} ms)",
                    http.method,
                    http.url,
                    response.status,
                    started.elapsed().as_millis()
                ),
            ));
            match unmet(&http.expect, &response) {
                None => Outcome::Succeeded {
                    exit_code: None,
                    note: None,
                },
                Some(reason) => Outcome::Failed {
                    exit_code: None,
                    reason,
                },
            }
        }
        Err(e) => Outcome::Failed {
            exit_code: None,
            reason: format!("{} {}{via}: {e}", http.method, http.url),
        },
    }
}

/// A JSON value for a message: a string as it is, in quotes but not
/// escaped, so the redactor still recognises a secret inside it.
fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// The first part of a body, on one line.
pub fn preview(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > BODY_PREVIEW {
        format!("{}…", flat.chars().take(BODY_PREVIEW).collect::<String>())
    } else if flat.is_empty() {
        "(empty)".into()
    } else {
        flat
    }
}

fn describe(e: &reqwest::Error) -> String {
    super::error_chain(e)
}
