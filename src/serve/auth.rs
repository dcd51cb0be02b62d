//! The access token (SPEC §12): in the URL once, then a cookie
//! (HttpOnly, SameSite=Strict), or `Authorization: Bearer`; and the refusal
//! of a state-changing request from another origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::app::{error, App};

/// The cookie that carries the token.
pub const COOKIE: &str = "runbook_token";

/// A fresh token: 32 random bytes from the kernel, as hex.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries in its cookie or its Authorization header.
fn carried(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The `token` query parameter, and the query without it.
fn from_query(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("token=") {
            Some(t) => {
                token = Some(t.to_string());
                false
            }
            None => !kv.is_empty(),
        })
        .collect();
    (token, rest.join("&"))
}

/// Whether a state-changing request comes from another origin: a browser
/// says so in `Sec-Fetch-Site`, and its `Origin` must name this host.
fn cross_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
            origin_host != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// The middleware: 401 without the token, 403 for a cross-origin change;
/// a token in the URL becomes a cookie and leaves the URL.
pub async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let query = req.uri().query().unwrap_or("").to_string();
    let (in_url, rest) = from_query(&query);
    if let Some(t) = in_url {
        if !same(&t, &app.token) {
            return error(
                StatusCode::UNAUTHORIZED,
                "the token in the URL is not this server's",
            );
        }
        let path = req.uri().path();
        let to = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest}")
        };
        let cookie = format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/");
        let mut resp = Redirect::to(&to).into_response();
        if let Ok(v) = cookie.parse() {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        return resp;
    }
    match carried(req.headers()) {
        Some(t) if same(&t, &app.token) => {}
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "this needs the access token: open the URL `runbook serve` printed, or send Authorization: Bearer TOKEN",
            )
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD && cross_origin(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            "a state-changing request from another origin is refused",
        );
    }
    next.run(req).await
}
