//! The callback handlers: `GET /wechat/{appid}` (URL verification) and `POST /wechat/{appid}`
//! (messages and events in plaintext, compatible and safe mode).

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use wxoa_wire::crypto::random_prefix;
use wxoa_wire::envelope::{self, Envelope};
use wxoa_wire::inbound::{EncryptedBody, Inbound};
use wxoa_wire::names::subjects;
use wxoa_wire::reply::{PassiveReply, encrypted_envelope};
use wxoa_wire::signature;

use crate::error::GatewayError;
use crate::state::{AppKeys, GatewayState};

/// The query WeChat sends with every callback.
#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

impl CallbackQuery {
    fn timestamp(&self) -> Result<&str, GatewayError> {
        self.timestamp
            .as_deref()
            .ok_or(GatewayError::Param("timestamp"))
    }

    fn nonce(&self) -> Result<&str, GatewayError> {
        self.nonce.as_deref().ok_or(GatewayError::Param("nonce"))
    }

    fn is_encrypted(&self) -> bool {
        self.encrypt_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("aes"))
    }
}

/// Any method but GET and POST: 405 with `Allow`, counted as `bad_method`.
pub(crate) async fn other_method(State(state): State<GatewayState>) -> Response {
    let e = GatewayError::Method;
    state.count(e.outcome());
    e.into_response()
}

/// `GET /wechat/{appid}`: echo `echostr` when the signature checks. A WeCom-style request
/// (`msg_signature` and an encrypted echostr) is verified and answered with the plaintext.
pub(crate) async fn verify_url(
    State(state): State<GatewayState>,
    Path(app_id): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Result<String, GatewayError> {
    let app = state.app(&app_id)?;
    let (timestamp, nonce) = (q.timestamp()?, q.nonce()?);
    state.check_timestamp(timestamp)?;
    let echostr = q.echostr.as_deref().ok_or(GatewayError::Param("echostr"))?;
    match (&q.signature, &q.msg_signature, &app.aes_key) {
        (Some(sig), _, _) => {
            if !signature::verify_server_signature(&app.token, timestamp, nonce, sig) {
                return Err(GatewayError::Signature);
            }
            Ok(echostr.to_owned())
        }
        (None, Some(msig), Some(key)) => {
            if !signature::verify_msg_signature(&app.token, timestamp, nonce, echostr, msig) {
                return Err(GatewayError::Signature);
            }
            let plain = key.decrypt(&app.app_id, echostr)?;
            String::from_utf8(plain.message).map_err(|_| GatewayError::Param("echostr"))
        }
        _ => Err(GatewayError::Param("signature")),
    }
}

/// `POST /wechat/{appid}`: verify, decrypt, parse, store durably, then answer `success` or
/// the passive reply that arrives in time.
pub(crate) async fn receive(
    State(state): State<GatewayState>,
    Path(app_id): Path<String>,
    Query(q): Query<CallbackQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let e = GatewayError::Body {
                status: rejection.status(),
                message: rejection.body_text(),
            };
            state.count(e.outcome());
            return e.into_response();
        }
    };
    let span =
        tracing::info_span!("gateway.callback", app_id = %app_id, outcome = tracing::field::Empty);
    let (outcome, response) = match handle(&state, &app_id, &q, &body)
        .instrument(span.clone())
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            if let GatewayError::ReplayedNonce = e
                && state.replays_logged.first(wxoa_runtime::now_ms())
            {
                // An attack or a rare nonce collision; counted per request, logged once a
                // minute so a flood of them cannot flood the log.
                tracing::warn!(
                    app_id = %app_id,
                    "a plaintext callback's signature was already used for another message: a \
                     replayed URL or a nonce collision (outcome=\"replayed_nonce\"; logged once a minute)"
                );
            }
            (e.outcome(), e.into_response())
        }
    };
    span.record("outcome", outcome);
    state.count(outcome);
    response
}

async fn handle(
    state: &GatewayState,
    app_id: &str,
    q: &CallbackQuery,
    body: &[u8],
) -> Result<(&'static str, Response), GatewayError> {
    let received_at_ms = wxoa_runtime::now_ms();
    let app = state.app(app_id)?;
    let (timestamp, nonce) = (q.timestamp()?, q.nonce()?);
    state.check_timestamp(timestamp)?;
    let encrypted = q.is_encrypted();
    if app.aes_key.is_some() && !encrypted {
        // With an EncodingAESKey WeChat always sends encrypt_type=aes; a plaintext body (whose
        // signature does not cover it) would be a downgrade.
        return Err(GatewayError::Param("encrypt_type"));
    }
    // The plaintext signature, to bind to the message (safe mode's covers the ciphertext).
    let mut plain_signature = None;
    let message = if encrypted {
        let key = app
            .aes_key
            .as_ref()
            .ok_or(GatewayError::Param("encrypt_type"))?;
        let outer = EncryptedBody::parse(body)?;
        let msig = q
            .msg_signature
            .as_deref()
            .ok_or(GatewayError::Param("msg_signature"))?;
        if !signature::verify_msg_signature(&app.token, timestamp, nonce, &outer.encrypt, msig) {
            return Err(GatewayError::Signature);
        }
        if let Some(sig) = &q.signature
            && !signature::verify_server_signature(&app.token, timestamp, nonce, sig)
        {
            return Err(GatewayError::Signature);
        }
        let plain = key.decrypt(&app.app_id, &outer.encrypt)?;
        Inbound::parse(&plain.message)?
    } else {
        let sig = q
            .signature
            .as_deref()
            .ok_or(GatewayError::Param("signature"))?;
        if !signature::verify_server_signature(&app.token, timestamp, nonce, sig) {
            return Err(GatewayError::Signature);
        }
        plain_signature = Some(sig);
        Inbound::parse(body)?
    };
    if let Some(original_id) = &app.original_id
        && message.to_user_name != *original_id
    {
        return Err(GatewayError::WrongAccount);
    }
    let env = Envelope::keyed(
        &app.app_id,
        received_at_ms,
        message,
        state.config.legacy_event_keys_before,
    );
    if let Some(sig) = plain_signature {
        state.nonces.bind(sig, &env).await?;
    }
    let deadline_ms = received_at_ms + state.config.reply_budget_ms as i64;
    // A rendezvous only when a reply is possible: no hashing or table work otherwise.
    let (pending, reply_subject) = if state.config.reply_budget_ms > 0 && env.message.can_reply() {
        let key = envelope::reply_key(&env.id);
        match state
            .rendezvous
            .register(&app.app_id, &key, !env.message.is_event())
        {
            Some(p) => (
                Some(p),
                Some(subjects::reply(
                    &state.prefix,
                    &app.app_id,
                    &state.instance,
                    &key,
                )),
            ),
            None => (None, None),
        }
    } else {
        (None, None)
    };

    let stored = publish(
        state,
        &env,
        reply_subject.as_deref().map(|s| (s, deadline_ms)),
    )
    .await;
    let decision = match (stored, pending) {
        (Ok(duplicate), None) => {
            return Ok((if duplicate { "duplicate" } else { "stored" }, success()));
        }
        // A retry of a stored message needs only "success", unless a replier already took
        // this waiter: then its reply goes out.
        (Ok(true), Some(pending)) => match pending.abandon().await {
            None => return Ok(("duplicate", success())),
            reply => reply,
        },
        (Ok(false), Some(pending)) => {
            let budget = (deadline_ms - wxoa_runtime::now_ms()).max(0) as u64;
            pending.wait(Duration::from_millis(budget)).await
        }
        // No PubAck in time; but a replier that took the waiter read the message from the
        // stream, so it is stored and its reply goes out.
        (Err(e), Some(pending)) => match pending.abandon().await {
            None => return Err(e),
            reply => reply,
        },
        (Err(e), None) => return Err(e),
    };
    let Some(reply) = decision else {
        return Ok(("stored", success()));
    };
    let xml = render(&app, &env.message, &reply, encrypted, nonce);
    Ok((
        "replied",
        ([(CONTENT_TYPE, "application/xml")], xml).into_response(),
    ))
}

fn success() -> Response {
    "success".into_response()
}

async fn publish(
    state: &GatewayState,
    env: &Envelope,
    reply: Option<(&str, i64)>,
) -> Result<bool, GatewayError> {
    if state.client.connection_state() != async_nats::connection::State::Connected {
        return Err(GatewayError::Publish("not connected to NATS".into()));
    }
    let mut headers = HeaderMap::new();
    let traceparent =
        wxoa_runtime::telemetry::traceparent().unwrap_or_else(envelope::new_traceparent);
    for (name, value) in env.headers(&traceparent, reply) {
        headers.insert(name, value);
    }
    let subject = env.message.subject(&state.prefix, &env.app_id);
    let publish = PublishMessage::build()
        .payload(Bytes::from(env.to_json()))
        .headers(headers);
    // The JetStream context's timeout (gateway.publish_timeout_ms) bounds the send and the PubAck.
    let started = std::time::Instant::now();
    let ack = async { state.js.send_publish(subject, publish).await?.await }
        .await
        .map_err(|e| GatewayError::Publish(e.to_string()))?;
    state.publish_seconds.observe(started.elapsed());
    if !ack.duplicate {
        // Types the parser does not know are counted together: the label set stays closed.
        let ce_type = match env.message.detail {
            wxoa_wire::inbound::Detail::Unknown => "unknown".to_owned(),
            _ => env.message.ce_type(),
        };
        state.count_message(&env.app_id, &ce_type);
    }
    if ack.duplicate {
        tracing::debug!(msg_id = %env.id, "ack.duplicate");
    }
    Ok(ack.duplicate)
}

fn render(
    app: &Arc<AppKeys>,
    message: &Inbound,
    reply: &PassiveReply,
    encrypted: bool,
    nonce: &str,
) -> String {
    let now_secs = wxoa_runtime::now_ms() / 1000;
    let xml = reply.to_xml(&message.from_user_name, &message.to_user_name, now_secs);
    match (&app.aes_key, encrypted) {
        (Some(key), true) => encrypted_envelope(
            key,
            &app.app_id,
            &app.token,
            &random_prefix(),
            &xml,
            &now_secs.to_string(),
            nonce,
        ),
        _ => xml,
    }
}
