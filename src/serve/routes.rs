//! The routes of SPEC §12: pages for people, the JSON API, its errors.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::adapter::{Adapter, RunView};
use super::app::{error, App};
use super::{auth, events, pages};
use crate::error::Error;

/// The router, every route behind the token guard.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/handoff", get(handoff_page))
        .route("/runs/{id}/steps/{step}", get(output_page))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{id}", get(api_run))
        .route("/api/runs/{id}/events", get(events::stream))
        .route("/api/runs/{id}/steps/{step}/output", get(api_output))
        .route("/api/runs/{id}/steps/{step}/approve", post(api_approve))
        .route("/api/runs/{id}/steps/{step}/reset", post(api_reset))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ))
        .with_state(app)
}

/// An engine error as the API answers it.
fn engine_error(e: Error) -> Response {
    match e {
        Error::Usage(m) => error(StatusCode::BAD_REQUEST, &m),
        e @ Error::Locked { .. } => error(StatusCode::CONFLICT, &e.to_string()),
        e @ Error::Invalid { .. } => error(StatusCode::BAD_REQUEST, &e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Runs `f` on the adapter off the async threads.
async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Adapter) -> crate::error::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let adapter = app.adapter.clone();
    match tokio::task::spawn_blocking(move || f(&adapter)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(engine_error(e)),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed",
        )),
    }
}

/// The run with this id, or a 404.
async fn run_view(app: &App, id: &str) -> Result<RunView, Response> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(error(StatusCode::NOT_FOUND, "no such run"));
    };
    blocking(app, move |a| a.run(id))
        .await?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, &format!("no run {id}")))
}

/// The run and the step (or a step on a group, by its name), or a 404.
async fn run_and_step(app: &App, id: &str, step: &str) -> Result<(RunView, i64), Response> {
    let view = run_view(app, id).await?;
    let known = view
        .steps
        .iter()
        .any(|s| s.id == step || crate::report::fleet::family_of(&s.id) == Some(step));
    if !known {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("run {id} has no step `{step}`"),
        ));
    }
    let run_id = view.doc["run_id"].as_i64().unwrap_or_default();
    Ok((view, run_id))
}

async fn runs_page(State(app): State<Arc<App>>) -> Response {
    match blocking(&app, |a| a.runs()).await {
        Ok(runs) => Html(pages::runs(&runs)).into_response(),
        Err(r) => r,
    }
}

async fn run_page(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.contains_key("fragment") {
        return match fragment(&app, &id).await {
            Ok(html) => Html(html).into_response(),
            Err(r) => r,
        };
    }
    match run_view(&app, &id).await {
        Ok(view) => Html(pages::run(&view)).into_response(),
        Err(r) => r,
    }
}

/// The part of the run page a change replaces: rendered once per change
/// of a followed run, for every page that asks (`fragment`).
async fn fragment(app: &App, id: &str) -> Result<axum::body::Bytes, Response> {
    let run_id = id.parse::<i64>().ok();
    let generation = || run_id.and_then(|r| app.hub.generation(r));
    let render = || async {
        let view = run_view(app, id).await?;
        Ok(pages::run_body(&view))
    };
    app.hub
        .fragments
        .get(run_id.unwrap_or_default(), generation, render)
        .await
}

async fn handoff_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match run_view(&app, &id).await {
        Ok(view) => view.doc["run_id"].as_i64().unwrap_or_default(),
        Err(r) => return r,
    };
    match blocking(&app, move |a| a.handoff_html(id)).await {
        Ok(page) => Html(page).into_response(),
        Err(r) => r,
    }
}

async fn output_page(
    State(app): State<Arc<App>>,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let (view, run_id) = match run_and_step(&app, &id, &step).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = step.clone();
    let text = blocking(&app, move |a| a.logs(run_id, &name, None))
        .await
        .unwrap_or_default();
    Html(pages::output(&view, run_id, &step, &text)).into_response()
}

async fn api_runs(State(app): State<Arc<App>>) -> Response {
    match blocking(&app, |a| a.runs()).await {
        Ok(runs) => Json(serde_json::json!({ "runs": runs })).into_response(),
        Err(r) => r,
    }
}

async fn api_run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let run_id = match run_view(&app, &id).await {
        Ok(view) => view.doc["run_id"].as_i64().unwrap_or_default(),
        Err(r) => return r,
    };
    match blocking(&app, move |a| a.status_json(run_id)).await {
        Ok(doc) => Json(doc).into_response(),
        Err(r) => r,
    }
}

async fn api_output(
    State(app): State<Arc<App>>,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (_, run_id) = match run_and_step(&app, &id, &step).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let attempt = match q.get("attempt").map(|a| a.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "attempt must be a number"),
    };
    match blocking(&app, move |a| a.logs(run_id, &step, attempt)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(r) => r,
    }
}

/// The body of an approval.
#[derive(Debug, Default, serde::Deserialize)]
struct ApproveBody {
    note: Option<String>,
    by: Option<String>,
}

async fn api_approve(
    State(app): State<Arc<App>>,
    Path((id, step)): Path<(String, String)>,
    body: Result<Json<ApproveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "send a JSON body {\"note\": \"...\", \"by\": \"...\"} with Content-Type: application/json",
        );
    };
    let (_, run_id) = match run_and_step(&app, &id, &step).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let by = match body.by.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => app.default_by.clone(),
    };
    let note = body.note.filter(|n| !n.trim().is_empty());
    match blocking(&app, move |a| {
        a.approve(run_id, &step, note.as_deref(), &by)
    })
    .await
    {
        Ok(message) => Json(serde_json::json!({ "message": message })).into_response(),
        Err(r) => r,
    }
}

async fn api_reset(
    State(app): State<Arc<App>>,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let (_, run_id) = match run_and_step(&app, &id, &step).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match blocking(&app, move |a| a.reset(run_id, &step)).await {
        Ok(steps) => Json(serde_json::json!({ "reset": steps })).into_response(),
        Err(r) => r,
    }
}
