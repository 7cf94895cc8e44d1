//! Users, tags, rules, sends and broadcasts over HTTP: `POST /v1/apps/{appid}/api/{area}/{verb}`
//! is one NATS request to `<prefix>.<appid>.api.<area>.<verb>`, answered by the worker that owns
//! the area (the same requests the `wxoa` CLI and any NATS client make).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::Value;
use wxoa_wire::command::ApiErrorBody;
use wxoa_wire::names::{apis, subjects};

use crate::{AdminError, Answer, Shared, app};

/// How long a worker may take to answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The areas served this way, each by its worker.
pub(crate) const AREAS: [&str; 4] = [apis::RULES, apis::SEND, apis::USERS, apis::BROADCAST];

/// `POST /v1/apps/{appid}/api/{area}/{verb}` with the request's JSON (none: `{}`).
pub(crate) async fn request(
    State(shared): State<Arc<Shared>>,
    Path((app_id, area, verb)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    let app_id = app(&shared, &app_id)?;
    let Some(area) = AREAS.iter().find(|a| **a == area) else {
        return Err(AdminError::NotFound(format!(
            "no API area {area:?}: use one of {}",
            AREAS.join(", ")
        )));
    };
    if verb.is_empty() || !verb.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(AdminError::NotFound(format!("no verb {verb:?}")));
    }
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| AdminError::Invalid(format!("the body is not JSON: {e}")))?;
        body
    };
    let subject = subjects::api(&shared.config.nats.prefix, app_id, area, &verb);
    let answer = tokio::time::timeout(TIMEOUT, shared.nats.request(subject, payload))
        .await
        .map_err(|_| AdminError::Worker {
            code: "unavailable".into(),
            message: format!("the {area} worker did not answer within {TIMEOUT:?}"),
        })?
        .map_err(|e| AdminError::Worker {
            code: "unavailable".into(),
            message: match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    format!("no {area} worker is running")
                }
                _ => format!("asking the {area} worker: {e}"),
            },
        })?;
    if let Ok(ApiErrorBody { error }) = serde_json::from_slice(&answer.payload) {
        return Err(AdminError::Worker {
            code: error.code,
            message: error.message,
        });
    }
    let value: Value = serde_json::from_slice(&answer.payload).map_err(|e| AdminError::Worker {
        code: "internal".into(),
        message: format!("the {area} worker answered something that is not JSON: {e}"),
    })?;
    Ok(Json(value))
}
