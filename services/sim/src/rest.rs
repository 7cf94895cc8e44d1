//! The simulated `api.weixin.qq.com` endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::Uri;
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::SimError;
use crate::paths;
use crate::state::Shared;

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// The source IPs of callbacks and of the API: the simulator runs locally.
const IP_LIST: &[&str] = &["127.0.0.1"];
/// The only grant type of the token APIs.
const CLIENT_CREDENTIAL: &str = "client_credential";
/// The ticket types `ticket/getticket` knows.
const TICKET_TYPES: &[&str] = &["jsapi", "wx_card"];

/// Checks grant_type, appid and secret in WeChat's order; answers the appid.
fn credentials(
    sim: &Shared,
    grant_type: Option<&str>,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Result<String, SimError> {
    if grant_type != Some(CLIENT_CREDENTIAL) {
        return Err(SimError::api(40002));
    }
    let appid = appid
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::api(41002))?;
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SimError::api(41004))?;
    let app = sim.app(appid).ok_or_else(|| SimError::api(40013))?;
    if app.secret.expose_secret() != secret {
        return Err(SimError::api(40125));
    }
    Ok(app.appid.clone())
}

/// The counter key of a claimed appid: itself when known.
fn known<'a>(sim: &Shared, appid: Option<&'a str>) -> Option<&'a str> {
    appid.filter(|a| sim.app(a).is_some())
}

/// `GET /cgi-bin/token`.
pub(crate) async fn token(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let get = |k: &str| q.get(k).map(String::as_str);
    sim.enter(known(&sim, get("appid")), paths::TOKEN, false)
        .await?;
    let appid = credentials(&sim, get("grant_type"), get("appid"), get("secret"))?;
    let token = sim
        .lock()
        .issue_classic(&appid, sim.ttl_ms(), sim.overlap_ms());
    Ok(Json(
        json!({ "access_token": token, "expires_in": sim.config.token_ttl_secs }),
    ))
}

#[derive(Deserialize)]
struct StableRequest {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: Option<bool>,
}

/// `POST /cgi-bin/stable_token`.
pub(crate) async fn stable_token(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request = serde_json::from_slice::<StableRequest>(&body);
    let (appid, force) = match &request {
        Ok(r) => (
            known(&sim, r.appid.as_deref()),
            r.force_refresh.unwrap_or(false),
        ),
        Err(_) => (None, false),
    };
    sim.enter(appid, paths::STABLE_TOKEN, force).await?;
    let r = request.map_err(|_| SimError::api(47001))?;
    let appid = credentials(
        &sim,
        r.grant_type.as_deref(),
        r.appid.as_deref(),
        r.secret.as_deref(),
    )?;
    let (token, expires_in) =
        sim.lock()
            .issue_stable(&appid, force, sim.ttl_ms(), sim.renew_below_ms())?;
    Ok(Json(
        json!({ "access_token": token, "expires_in": expires_in }),
    ))
}

/// Counts an `access_token` API call, applies faults, checks the token; answers the appid.
pub(crate) async fn authorized(
    sim: &Shared,
    q: &HashMap<String, String>,
    api: &str,
) -> Result<String, SimError> {
    let token = q.get("access_token").map(String::as_str);
    let appid = token.and_then(|t| sim.lock().token_app(t));
    sim.enter(appid.as_deref(), api, false).await?;
    let state = sim.lock();
    let appid = state.check_token(token)?;
    // Past the API's daily limit (calls counted above, on the sim day): 45009.
    let day = state.clock.day();
    if state.quota.exceeded(&appid, api, day) {
        return Err(SimError::api(45009));
    }
    Ok(appid)
}

/// A JSON request body that must be an object (else 47001).
pub(crate) fn json_body(body: &Bytes) -> Result<Value, SimError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| SimError::api(47001))
}

/// A non-negative integer field given as a number or a numeric string.
pub(crate) fn uint_field(body: &Value, key: &str) -> Option<u64> {
    match body.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The page a `batchget` asks for: `offset` (absent: 0) and `count` in 1..=`max`, else 40097;
/// as (items to skip, items to take).
pub(crate) fn batch_page(body: &Value, max: u64) -> Result<(usize, usize), SimError> {
    let offset = match body.get("offset") {
        None => 0,
        Some(_) => uint_field(body, "offset").ok_or_else(|| SimError::api(40097))?,
    };
    let count = uint_field(body, "count")
        .filter(|c| (1..=max).contains(c))
        .ok_or_else(|| SimError::api(40097))?;
    Ok((
        usize::try_from(offset).unwrap_or(usize::MAX),
        usize::try_from(count).unwrap_or(0),
    ))
}

/// News articles as a `batchget` lists them: `no_content: 1` leaves out each one's `content`.
pub(crate) fn listed_articles(articles: &[Value], body: &Value) -> Vec<Value> {
    let mut articles = articles.to_vec();
    if uint_field(body, "no_content") == Some(1) {
        for article in &mut articles {
            if let Some(o) = article.as_object_mut() {
                o.remove("content");
            }
        }
    }
    articles
}

/// `GET /cgi-bin/ticket/getticket`.
pub(crate) async fn ticket(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::TICKET).await?;
    let kind = q.get("type").map_or("jsapi", String::as_str);
    if !TICKET_TYPES.contains(&kind) {
        return Err(SimError::api(40097));
    }
    let (ticket, expires_in) = sim
        .lock()
        .ticket(&appid, kind, sim.ttl_ms(), sim.renew_below_ms());
    Ok(Json(
        json!({ "errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": expires_in }),
    ))
}

/// `GET /cgi-bin/getcallbackip`.
pub(crate) async fn callback_ip(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    authorized(&sim, &q, paths::CALLBACK_IP).await?;
    Ok(Json(json!({ "ip_list": IP_LIST })))
}

/// `GET /cgi-bin/get_api_domain_ip`.
pub(crate) async fn api_domain_ip(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    authorized(&sim, &q, paths::API_DOMAIN_IP).await?;
    Ok(Json(json!({ "ip_list": IP_LIST })))
}

/// The `custom/send` msgtypes and the fields their object must hold as non-empty strings
/// (`text` and `news` are checked apart).
const CUSTOM_TYPES: &[(&str, &[&str])] = &[
    ("text", &[]),
    ("image", &["media_id"]),
    ("voice", &["media_id"]),
    ("video", &["media_id"]),
    ("music", &["musicurl", "thumb_media_id"]),
    ("news", &[]),
    ("mpnews", &["media_id"]),
    ("mpnewsarticle", &["article_id"]),
    ("msgmenu", &[]),
    ("wxcard", &["card_id"]),
    ("miniprogrampage", &["appid", "pagepath", "thumb_media_id"]),
];

fn non_empty_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Checks a `custom/send` body; answers (touser, msgtype).
fn check_custom(body: &Value) -> Result<(&str, &str), SimError> {
    let touser = non_empty_str(body, "touser").ok_or_else(|| SimError::api(40003))?;
    let msgtype = non_empty_str(body, "msgtype").ok_or_else(|| SimError::api(40008))?;
    let required = CUSTOM_TYPES
        .iter()
        .find(|(t, _)| *t == msgtype)
        .map(|(_, fields)| *fields)
        .ok_or_else(|| SimError::api(40008))?;
    let object = body
        .get(msgtype)
        .filter(|o| o.is_object())
        .ok_or_else(|| SimError::api(40008))?;
    match msgtype {
        "text" => {
            non_empty_str(object, "content").ok_or_else(|| SimError::api(44004))?;
        }
        "news" => {
            let articles = object
                .get("articles")
                .and_then(Value::as_array)
                .ok_or_else(|| SimError::api(40008))?;
            if articles.len() != 1 {
                return Err(SimError::api(45008));
            }
        }
        "msgmenu" => {
            object
                .get("list")
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| SimError::api(40008))?;
        }
        _ => {
            if required.iter().any(|f| non_empty_str(object, f).is_none()) {
                return Err(SimError::api(40008));
            }
        }
    }
    Ok((touser, msgtype))
}

/// `POST /cgi-bin/message/custom/send`: within the user's window (45015 outside, 45047 past
/// its allowance) the message is delivered (see `/_sim/messages`).
pub(crate) async fn custom_send(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::CUSTOM_SEND).await?;
    // Customer-service messages need a verified account.
    if !sim.app(&appid).is_some_and(|a| a.verified) {
        return Err(SimError::api(48001));
    }
    let body: Value = serde_json::from_slice(&body).map_err(|_| SimError::api(47001))?;
    let (touser, msgtype) = check_custom(&body)?;
    let (touser, msgtype) = (touser.to_owned(), msgtype.to_owned());
    sim.lock().custom_send(&appid, &touser, &msgtype, body)?;
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `POST /cgi-bin/message/custom/typing`: `Typing`/`CancelTyping` (else 45072) for a user who
/// interacted in the last 30 s (else 45080).
pub(crate) async fn custom_typing(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::CUSTOM_TYPING).await?;
    let body: Value = serde_json::from_slice(&body).map_err(|_| SimError::api(47001))?;
    let touser = non_empty_str(&body, "touser").ok_or_else(|| SimError::api(40003))?;
    match body.get("command").and_then(Value::as_str) {
        Some("Typing" | "CancelTyping") => {}
        _ => return Err(SimError::api(45072)),
    }
    sim.lock().typing(&appid, touser)?;
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// Any other path: WeChat's "api unauthorized", naming the path.
pub(crate) async fn not_simulated(uri: Uri) -> SimError {
    SimError::Api {
        errcode: 48001,
        errmsg: format!("api unauthorized (not simulated: {})", uri.path()),
    }
}
