//! `POST /ping` and the user / room alias queries.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{AppState, MatrixError};

/// The homeserver calls this when someone asks it to ping us (start-up check).
pub async fn ping(body: Option<Json<Value>>) -> Json<Value> {
    let transaction_id = body.as_ref().and_then(|Json(b)| b.get("transaction_id")).cloned().unwrap_or(Value::Null);
    tracing::debug!(%transaction_id, "pinged by the homeserver");
    Json(json!({}))
}

/// Only the bot itself exists in housekeep's user namespace.
pub async fn query_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, MatrixError> {
    if user_id == state.bot_user_id.as_str() {
        Ok(Json(json!({})))
    } else {
        Err(MatrixError::not_found("housekeep provides no such user"))
    }
}

/// Synapse asks about aliases in the registration's namespace (the admin
/// room's) that do not exist: housekeep makes none on demand (it creates
/// the admin room itself at start-up, `admin.create_if_missing`).
pub async fn query_room_alias(Path(_alias): Path<String>) -> MatrixError {
    MatrixError::not_found("housekeep provides no room aliases")
}
