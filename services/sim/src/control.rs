//! The control API under `/_sim/`: counters, revocation, faults, callbacks, the clock, user
//! interactions, what users received and the followers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::SimError;
use crate::callback::{self, CallbackOutcome, CallbackRequest, MessageSpec, Outcome};
use crate::followers::{self, Subscription};
use crate::state::{FaultSpec, InteractionKind, Shared};

type Answer = Result<Json<Value>, SimError>;

/// Parses a control-API body; errors are JSON 400s, not axum's text rejections.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, SimError> {
    serde_json::from_slice(body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `GET /_sim/stats`: `{"calls":{appid:{api:n}},"callbacks":{appid:{sent,attempts,reply,...}}}`.
pub(crate) async fn stats(State(sim): State<Arc<Shared>>) -> Json<Value> {
    let stats = sim.lock().stats();
    Json(to_json(&stats))
}

/// `DELETE /_sim/stats`: zeroes every counter.
pub(crate) async fn reset_stats(State(sim): State<Arc<Shared>>) -> Json<Value> {
    sim.lock().reset_stats();
    Json(json!({ "ok": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    appid: String,
}

/// `POST /_sim/revoke {"appid"}` → `{"appid","revoked":n}`.
pub(crate) async fn revoke(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: RevokeRequest = parse(&body)?;
    if sim.app(&request.appid).is_none() {
        return Err(SimError::NotFound(format!(
            "unknown appid {:?}",
            request.appid
        )));
    }
    let revoked = sim.lock().revoke(&request.appid);
    Ok(Json(json!({ "appid": request.appid, "revoked": revoked })))
}

/// `GET /_sim/faults` → `{"faults":[{"id",...rule}]}` (`times` = calls left).
pub(crate) async fn list_faults(State(sim): State<Arc<Shared>>) -> Json<Value> {
    let faults = sim.lock().faults();
    Json(json!({ "faults": to_json(&faults) }))
}

/// `POST /_sim/faults {appid?, api?, latency_ms?, http_status?, errcode?, times?}` → the
/// stored rule with its `id`.
pub(crate) async fn add_fault(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let spec: FaultSpec = parse(&body)?;
    spec.validate()?;
    let rule = sim.lock().add_fault(spec);
    Ok(Json(to_json(&rule)))
}

/// `DELETE /_sim/faults` → `{"cleared":n}`.
pub(crate) async fn clear_faults(State(sim): State<Arc<Shared>>) -> Json<Value> {
    let cleared = sim.lock().clear_faults();
    Json(json!({ "cleared": cleared }))
}

/// `POST /_sim/send` with a [`CallbackRequest`] → the [`CallbackOutcome`].
pub(crate) async fn send(
    State(sim): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<CallbackOutcome>, SimError> {
    let request: CallbackRequest = parse(&body)?;
    let app = sim
        .app(&request.appid)
        .ok_or_else(|| SimError::NotFound(format!("unknown appid {:?}", request.appid)))?;
    if let Some((openid, kind)) = interaction_of(&request) {
        sim.lock().record_interaction(&app.appid, &openid, kind);
    }
    if let Some(change) = follow_change_of(&request) {
        let mut state = sim.lock();
        let now_secs = state.now_ms() / 1000;
        let followers = state.followers(&app.appid);
        match change {
            FollowChange::Subscribe { openid, event_key } => followers.subscribe(
                &openid,
                Subscription::from_event(now_secs, event_key.as_deref()),
            ),
            FollowChange::Unsubscribe { openid } => {
                followers.unsubscribe(&openid);
            }
        }
    }
    let outcome = callback::send(
        &sim.http,
        &sim.config.gateway_url,
        app,
        &request,
        &sim.config,
    )
    .await;
    let mut state = sim.lock();
    state.record_callback(&app.appid, &outcome);
    if outcome.outcome == Outcome::Reply
        && let Some(reply) = &outcome.reply
    {
        let field = |name: &str| reply.get(name).and_then(Value::as_str).unwrap_or_default();
        let (openid, msgtype) = (field("ToUserName"), field("MsgType"));
        state.deliver(&app.appid, openid, "passive", msgtype, reply.clone());
    }
    drop(state);
    Ok(Json(outcome))
}

/// The events that open the short customer-service window: menu click, follow, QR scan.
fn is_window_event(event: &str) -> bool {
    ["subscribe", "CLICK", "SCAN"]
        .iter()
        .any(|e| e.eq_ignore_ascii_case(event))
}

/// The user interaction a callback stands for, if it opens a customer-service window.
fn interaction_of(request: &CallbackRequest) -> Option<(String, InteractionKind)> {
    let kind_of = |msg_type: &str, event: Option<&str>| {
        if msg_type != "event" {
            Some(InteractionKind::Message)
        } else if event.is_some_and(is_window_event) {
            Some(InteractionKind::Event)
        } else {
            None
        }
    };
    if let Some(xml) = &request.xml {
        let doc = wxoa_wire::inbound::Document::parse(xml.as_bytes()).ok()?;
        let root = doc.root();
        let kind = kind_of(root.get("MsgType")?, root.get("Event"))?;
        return Some((root.get("FromUserName")?.to_owned(), kind));
    }
    let message = request.message.as_ref()?;
    let kind = match message {
        MessageSpec::Text { .. } | MessageSpec::Image { .. } => InteractionKind::Message,
        MessageSpec::Event { event, .. } => kind_of("event", Some(event))?,
    };
    Some((message.from().to_owned(), kind))
}

/// A `subscribe` or `unsubscribe` event of a callback.
enum FollowChange {
    Subscribe {
        openid: String,
        event_key: Option<String>,
    },
    Unsubscribe {
        openid: String,
    },
}

/// The follow change a callback stands for: `subscribe` (re)adds the sender as a follower,
/// `unsubscribe` makes it leave.
fn follow_change_of(request: &CallbackRequest) -> Option<FollowChange> {
    let change = |openid: &str, event: &str, event_key: Option<&str>| {
        let openid = openid.to_owned();
        if event.eq_ignore_ascii_case("subscribe") {
            Some(FollowChange::Subscribe {
                openid,
                event_key: event_key.map(str::to_owned),
            })
        } else if event.eq_ignore_ascii_case("unsubscribe") {
            Some(FollowChange::Unsubscribe { openid })
        } else {
            None
        }
    };
    if let Some(xml) = &request.xml {
        let doc = wxoa_wire::inbound::Document::parse(xml.as_bytes()).ok()?;
        let root = doc.root();
        if root.get("MsgType")? != "event" {
            return None;
        }
        return change(
            root.get("FromUserName")?,
            root.get("Event")?,
            root.get("EventKey"),
        );
    }
    match request.message.as_ref()? {
        MessageSpec::Event {
            from,
            event,
            event_key,
        } => change(from, event, event_key.as_deref()),
        MessageSpec::Text { .. } | MessageSpec::Image { .. } => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionRequest {
    appid: String,
    openid: String,
    kind: InteractionKind,
}

/// `POST /_sim/interactions {"appid","openid","kind":"message"|"event"}` →
/// `{"appid","openid","kind","expires_ms","allowed"}`: the customer-service window it opened.
pub(crate) async fn interaction(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: InteractionRequest = parse(&body)?;
    if sim.app(&request.appid).is_none() {
        return Err(SimError::NotFound(format!(
            "unknown appid {:?}",
            request.appid
        )));
    }
    if request.openid.is_empty() {
        return Err(SimError::BadRequest("openid is empty".into()));
    }
    let (expires_ms, allowed) =
        sim.lock()
            .record_interaction(&request.appid, &request.openid, request.kind);
    Ok(Json(json!({
        "appid": request.appid,
        "openid": request.openid,
        "kind": to_json(&request.kind),
        "expires_ms": expires_ms,
        "allowed": allowed,
    })))
}

#[derive(Deserialize)]
pub(crate) struct MessagesQuery {
    appid: Option<String>,
    openid: Option<String>,
}

/// `GET /_sim/messages?appid=&openid=` → `{"messages":[{"appid","openid","channel","msgtype",
/// "body","at_ms"}]}` in order (both filters optional).
pub(crate) async fn messages(
    State(sim): State<Arc<Shared>>,
    Query(q): Query<MessagesQuery>,
) -> Json<Value> {
    let filter = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (appid, openid) = (filter(&q.appid), filter(&q.openid));
    let delivered = sim.lock().delivered(appid.as_deref(), openid.as_deref());
    Json(json!({ "messages": to_json(&delivered) }))
}

/// `DELETE /_sim/messages` → `{"cleared":n}`.
pub(crate) async fn clear_messages(State(sim): State<Arc<Shared>>) -> Json<Value> {
    let cleared = sim.lock().clear_delivered();
    Json(json!({ "cleared": cleared }))
}

/// `GET /_sim/apps` → `{"apps":["wx…",…]}`.
pub(crate) async fn apps(State(sim): State<Arc<Shared>>) -> Json<Value> {
    let apps: Vec<&str> = sim.apps.iter().map(|a| a.appid.as_str()).collect();
    Json(json!({ "apps": apps }))
}

fn clock_json(sim: &Shared) -> Value {
    let state = sim.lock();
    json!({ "now_ms": state.now_ms(), "offset_ms": state.clock.offset_ms() })
}

/// `GET /_sim/clock` → `{"now_ms","offset_ms"}`.
pub(crate) async fn clock(State(sim): State<Arc<Shared>>) -> Json<Value> {
    Json(clock_json(&sim))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    advance_secs: u64,
}

/// `POST /_sim/clock {"advance_secs"}` → `{"now_ms","offset_ms"}`: tokens, tickets and the
/// forced-refresh limits age at once (the clock never goes back).
pub(crate) async fn advance_clock(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: AdvanceRequest = parse(&body)?;
    let ms = i64::try_from(request.advance_secs.saturating_mul(1000))
        .map_err(|_| SimError::BadRequest("advance_secs is too large".into()))?;
    sim.lock().clock.advance_ms(ms);
    Ok(Json(clock_json(&sim)))
}

/// The app of a control request, else a 404.
fn known_app(sim: &Shared, appid: &str) -> Result<(), SimError> {
    match sim.app(appid) {
        Some(_) => Ok(()),
        None => Err(SimError::NotFound(format!("unknown appid {appid:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    appid: String,
    count: u64,
}

/// `POST /_sim/users/generate {"appid","count"}` → `{"appid","followers"}`: adds `count`
/// generated followers (O(1)).
pub(crate) async fn generate_users(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: GenerateRequest = parse(&body)?;
    known_app(&sim, &request.appid)?;
    let followers = sim
        .lock()
        .followers(&request.appid)
        .generate(request.count)?;
    Ok(Json(
        json!({ "appid": request.appid, "followers": followers }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct UsersQuery {
    appid: Option<String>,
}

/// `GET /_sim/users?appid=` → `{"appid","followers","digest"}` (see
/// [`followers::follower_digest`]). The generated followers' hashes are computed once, without
/// the lock.
pub(crate) async fn users(State(sim): State<Arc<Shared>>, Query(q): Query<UsersQuery>) -> Answer {
    let appid = q
        .appid
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::BadRequest("appid is missing".into()))?;
    known_app(&sim, &appid)?;
    let todo = sim.lock().followers(&appid).digest_todo();
    let xor = followers::generated_xor(todo.clone());
    let mut state = sim.lock();
    let followers = state.followers(&appid);
    followers.store_digest_prefix(todo, xor);
    let (total, digest) = (followers.total(), followers.digest());
    drop(state);
    Ok(Json(
        json!({ "appid": appid, "followers": total, "digest": digest }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeRequest {
    appid: String,
    openid: String,
}

/// `POST /_sim/users/unsubscribe {"appid","openid"}` → `{"appid","followers"}`: the follower
/// leaves without a callback; 404 when it is not a follower.
pub(crate) async fn unsubscribe_user(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: UnsubscribeRequest = parse(&body)?;
    known_app(&sim, &request.appid)?;
    let mut state = sim.lock();
    let followers = state.followers(&request.appid);
    if !followers.unsubscribe(&request.openid) {
        return Err(SimError::NotFound(format!(
            "{:?} is not a follower of {}",
            request.openid, request.appid
        )));
    }
    let total = followers.total();
    drop(state);
    Ok(Json(json!({ "appid": request.appid, "followers": total })))
}
