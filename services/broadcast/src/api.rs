//! The broadcast request API (core NATS request/reply, JSON, queue group `wxoa-broadcast`) on
//! `<prefix>.<appid>.api.broadcast.<verb>`:
//!
//! | verb | request | answer |
//! |---|---|---|
//! | `start` | a broadcast command | its progress (a known id: the existing job) |
//! | `status` | `{"id"}` | its progress |
//! | `list` | `{}` | `{"jobs": [progress, ...]}`, newest first |
//! | `pause`, `resume`, `cancel` | `{"id"}` | its progress |
//!
//! and WeChat's mass and template management, passed through with the shared client (token,
//! retries, errcodes) — the request body is WeChat's:
//! `mass_preview`, `mass_delete`, `mass_get`, `speed_get`, `speed_set`, `uploadnews`,
//! `template_send` (one-off), `templates_list`, `template_add`, `template_delete`,
//! `industry_get`, `industry_set`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use wxoa_wire::broadcast::{BroadcastCommand, BroadcastState};
use wxoa_wire::names::subjects;

use crate::{BroadcastError, Shared, job};

/// Pass-through verbs: (verb, GET?, path).
pub const PASS_THROUGH: [(&str, bool, &str); 12] = [
    ("mass_preview", false, "/cgi-bin/message/mass/preview"),
    ("mass_delete", false, "/cgi-bin/message/mass/delete"),
    ("mass_get", false, "/cgi-bin/message/mass/get"),
    ("speed_get", false, "/cgi-bin/message/mass/speed/get"),
    ("speed_set", false, "/cgi-bin/message/mass/speed/set"),
    ("uploadnews", false, "/cgi-bin/media/uploadnews"),
    ("template_send", false, "/cgi-bin/message/template/send"),
    (
        "templates_list",
        true,
        "/cgi-bin/template/get_all_private_template",
    ),
    ("template_add", false, "/cgi-bin/template/api_add_template"),
    (
        "template_delete",
        false,
        "/cgi-bin/template/del_private_template",
    ),
    ("industry_get", true, "/cgi-bin/template/get_industry"),
    ("industry_set", false, "/cgi-bin/template/api_set_industry"),
];

#[derive(Deserialize)]
struct Id {
    id: String,
}

/// Answers one request; the answer is JSON, errors included.
pub(crate) async fn answer(shared: Arc<Shared>, message: async_nats::Message) -> Option<Bytes> {
    let result = route(&shared, &message).await;
    if let Err(e) = &result {
        tracing::debug!(subject = %message.subject, error = %e, "request refused");
    }
    wxoa_runtime::responder::answer_json(result.map_err(|e| e.to_api()))
}

fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, BroadcastError> {
    wxoa_runtime::responder::parse_json(payload).map_err(BroadcastError::Invalid)
}

fn json_of<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("serializes")
}

async fn route(shared: &Shared, message: &async_nats::Message) -> Result<Value, BroadcastError> {
    let app_id = subjects::app_id_of(&shared.prefix, &message.subject)
        .filter(|a| shared.served.contains(*a))
        .ok_or_else(|| BroadcastError::NotFound(format!("no app served at {}", message.subject)))?;
    let payload = &message.payload;
    let verb = subjects::api_verb(&message.subject);
    let control = |to| async move {
        let Id { id } = parse(payload)?;
        job::control(shared, app_id, &id, to).await.map(json_of)
    };
    match verb {
        "start" => {
            let command: BroadcastCommand = parse(payload)?;
            Ok(json_of(job::start(shared, app_id, &command).await?))
        }
        "status" => {
            let Id { id } = parse(payload)?;
            Ok(json_of(job::status(shared, app_id, &id).await?))
        }
        "list" => Ok(json!({"jobs": job::list(shared, app_id).await?})),
        "pause" => control(BroadcastState::Paused).await,
        "resume" => control(BroadcastState::Running).await,
        "cancel" => control(BroadcastState::Cancelled).await,
        verb => {
            let (_, get, path) = PASS_THROUGH
                .iter()
                .find(|(v, _, _)| *v == verb)
                .ok_or_else(|| {
                    BroadcastError::NotFound(format!(
                        "no API broadcast.{verb} (start, status, list, pause, resume, cancel, {})",
                        PASS_THROUGH.map(|(v, _, _)| v).join(", ")
                    ))
                })?;
            let body: Value = parse(payload)?;
            Ok(if *get {
                shared.wechat.get(app_id, path, &[]).await?
            } else {
                shared.wechat.post(app_id, path, &body).await?
            })
        }
    }
}
