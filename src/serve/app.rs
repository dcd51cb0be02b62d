//! What every handler shares (`App`) and how an error answers (`error`):
//! the routes, the token guard and the event stream all take them.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::adapter::Adapter;
use super::hub::Hub;

/// What every handler shares.
pub struct App {
    /// The state, through the engine.
    pub adapter: Arc<Adapter>,
    /// The access token.
    pub token: String,
    /// The name an approval without one is recorded under.
    pub default_by: String,
    /// The runs being followed.
    pub hub: Arc<Hub>,
}

/// A JSON error `{"error": "..."}` with its status.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
