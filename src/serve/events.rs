//! `GET /api/runs/{id}/events`: server-sent events with the shapes of
//! SPEC §5, one `data:` line per event, from the run's poller in `hub`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

use super::app::{error, App};

/// The handler: one `data:` line per event.
pub async fn stream(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(run_id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    let adapter = app.adapter.clone();
    let known = tokio::task::spawn_blocking(move || adapter.run(run_id).map(|r| r.is_some()))
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(false);
    if !known {
        return error(StatusCode::NOT_FOUND, &format!("no run {run_id}"));
    }
    let rx = match subscribe(&app, run_id).await {
        Ok(rx) => rx,
        Err(r) => return r,
    };
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => {
                    return Some((Ok::<_, Infallible>(SseEvent::default().data(&*line)), rx))
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn subscribe(app: &Arc<App>, run_id: i64) -> Result<broadcast::Receiver<Arc<str>>, Response> {
    let hub = app.hub.clone();
    let adapter = app.adapter.clone();
    tokio::task::spawn_blocking(move || hub.subscribe(&adapter, run_id))
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "cannot follow the run"))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}
