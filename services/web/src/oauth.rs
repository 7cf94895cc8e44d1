//! OAuth2 web authorization: start, callback, the session user, refresh.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use wxoa_runtime::now_ms;
use wxoa_wechat::sns::{self, WebGrant};
use wxoa_wire::names::keys;

use crate::sign::Session;
use crate::{COOKIE, Shared, WebError};

/// How long a login may take between start and callback.
const STATE_TTL_SECS: u64 = 600;
/// How long an exchanged code is remembered (WeChat's codes live 5 minutes).
const CODE_TTL_SECS: u64 = 600;

/// A pending login, kept under its state's nonce.
#[derive(Serialize, Deserialize)]
struct Pending {
    scope: String,
    ret: String,
}

/// `?scope&return`.
#[derive(Deserialize)]
pub(crate) struct StartQuery {
    #[serde(default)]
    scope: Option<String>,
    #[serde(rename = "return", default)]
    ret: Option<String>,
}

fn app_of<'a>(
    shared: &'a Shared,
    app_id: &str,
) -> Result<&'a wxoa_runtime::config::AppConfig, WebError> {
    shared
        .config
        .app(app_id)
        .ok_or_else(|| WebError::UnknownApp(app_id.to_owned()))
}

/// A return URL is a path on this service or under one of `web.return_urls`.
fn allowed_return(shared: &Shared, ret: &str) -> bool {
    (ret.starts_with('/') && !ret.starts_with("//"))
        || shared
            .config
            .web
            .return_urls
            .iter()
            .any(|prefix| !prefix.is_empty() && ret.starts_with(prefix.as_str()))
}

/// `GET /oauth/<appid>/start`: 302 to WeChat's authorize page.
pub(crate) async fn start(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(query): Query<StartQuery>,
) -> Result<Response, WebError> {
    app_of(&shared, &app_id)?;
    let scope = query.scope.unwrap_or_else(|| "snsapi_base".into());
    if scope != "snsapi_base" && scope != "snsapi_userinfo" {
        return Err(WebError::BadRequest(
            "scope must be snsapi_base or snsapi_userinfo".into(),
        ));
    }
    let ret = query.ret.unwrap_or_else(|| "/".into());
    if !allowed_return(&shared, &ret) {
        return Err(WebError::Forbidden(format!(
            "return URL {ret} is not allowed (web.return_urls)"
        )));
    }
    let (state, nonce) = shared.signer.new_state();
    let pending = serde_json::to_string(&Pending {
        scope: scope.clone(),
        ret,
    })
    .expect("serializes");
    let _: () = shared
        .redis
        .clone()
        .set_ex(
            keys::web_state(&shared.config.redis.key_prefix, &app_id, &nonce),
            pending,
            STATE_TTL_SECS,
        )
        .await?;
    let redirect_uri = format!("{}/oauth/{app_id}/callback", shared.public_url);
    let url =
        wxoa_wire::web::oauth_authorize_url(&app_id, &redirect_uri, &scope, Some(&state), None);
    let url = url.replacen(
        "https://open.weixin.qq.com",
        shared.config.wechat.open_base.trim_end_matches('/'),
        1,
    );
    Ok(found(&url))
}

/// `GET /oauth/<appid>/callback?code&state`.
pub(crate) async fn callback(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let app = app_of(&shared, &app_id)?;
    let prefix = &shared.config.redis.key_prefix;
    // The state: ours (signed), pending, and used once.
    let nonce = query
        .get("state")
        .and_then(|s| shared.signer.check_state(s))
        .ok_or_else(|| WebError::BadRequest("missing or forged state".into()))?;
    let pending: Option<String> = redis::cmd("GETDEL")
        .arg(keys::web_state(prefix, &app_id, nonce))
        .query_async(&mut shared.redis.clone())
        .await?;
    let pending: Pending = pending
        .and_then(|p| serde_json::from_str(&p).ok())
        .ok_or_else(|| WebError::BadRequest("unknown, used or expired state".into()))?;
    let back = |code: &str| found(&with_param(&pending.ret, "wxoa_error", code)).into_response();
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        tracing::info!(app_id, "the user declined web authorization");
        return Ok(back("access_denied"));
    };
    // Codes are single use: refuse a replay before asking WeChat.
    let hash = hex::encode(Sha1::digest(code.as_bytes()));
    let fresh: bool = redis::cmd("SET")
        .arg(keys::web_code(prefix, &app_id, &hash))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(CODE_TTL_SECS)
        .query_async::<Option<String>>(&mut shared.redis.clone())
        .await?
        .is_some();
    if !fresh {
        return Ok(back("code_used"));
    }
    let api_base = &shared.config.wechat.api_base;
    let grant = match sns::exchange_code(&shared.http, api_base, &app_id, &app.secret, code).await {
        Ok(grant) => grant,
        Err(e) => {
            let error = WebError::from(e);
            tracing::info!(app_id, error = %error, "code exchange refused");
            return Ok(back(error.code()));
        }
    };
    let profile = if grant.scope.contains("snsapi_userinfo") {
        match sns::userinfo(&shared.http, api_base, &grant.access_token, &grant.openid).await {
            Ok(profile) => Some(profile),
            Err(e) => return Ok(back(WebError::from(e).code())),
        }
    } else {
        None
    };
    store_grant(&shared, &app_id, &grant).await?;
    let session = Session {
        app_id: app_id.clone(),
        openid: grant.openid.clone(),
        unionid: grant.unionid.clone().filter(|u| !u.is_empty()),
        scope: grant.scope.clone(),
        profile,
        exp: now_ms() / 1000 + shared.config.web.session_ttl_secs as i64,
    };
    let token = shared.signer.session_token(&session);
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        shared.config.web.session_ttl_secs
    );
    let mut response = found(&pending.ret);
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| WebError::BadRequest(e.to_string()))?,
    );
    tracing::info!(app_id, openid = %grant.openid, scope = %grant.scope, "user logged in");
    Ok(response)
}

/// A `302 Found` to `url` (what WeChat and browsers expect of an OAuth2 redirect).
fn found(url: &str) -> Response {
    (
        axum::http::StatusCode::FOUND,
        [(header::LOCATION, url.to_owned())],
    )
        .into_response()
}

/// `url` with `key=value` added to its query.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, format!("#{f}")),
        None => (url, String::new()),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{key}={value}{fragment}")
}

async fn store_grant(shared: &Shared, app_id: &str, grant: &WebGrant) -> Result<(), WebError> {
    let json = serde_json::to_string(&json!({
        "grant": grant,
        "expires_at": now_ms() / 1000 + grant.expires_in as i64,
    }))
    .expect("serializes");
    let _: () = shared
        .redis
        .clone()
        .set_ex(
            keys::web_grant(&shared.config.redis.key_prefix, app_id, &grant.openid),
            json,
            30 * 24 * 3600,
        )
        .await?;
    Ok(())
}

/// The session of a request: the cookie, or `Authorization: Bearer <token>`.
fn session_of(shared: &Shared, headers: &HeaderMap) -> Result<(Session, String), WebError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_owned)
        })
        .next();
    let token = bearer
        .map(str::to_owned)
        .or(cookie)
        .ok_or(WebError::Unauthorized)?;
    let session = shared
        .signer
        .check_session(&token, now_ms() / 1000)
        .ok_or(WebError::Unauthorized)?;
    Ok((session, token))
}

/// `GET /oauth/me`: the logged-in user and their token (for the page to hand to its backend).
pub(crate) async fn me(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, WebError> {
    let (session, token) = session_of(&shared, &headers)?;
    Ok(Json(json!({"user": session, "token": token})))
}

/// `POST /oauth/refresh`: a new web access_token for the session's user.
pub(crate) async fn refresh(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, WebError> {
    let (session, _) = session_of(&shared, &headers)?;
    let stored: Option<String> = shared
        .redis
        .clone()
        .get(keys::web_grant(
            &shared.config.redis.key_prefix,
            &session.app_id,
            &session.openid,
        ))
        .await?;
    let grant: WebGrant = stored
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| serde_json::from_value(v["grant"].clone()).ok())
        .ok_or_else(|| WebError::BadRequest("no web grant stored for this user".into()))?;
    let fresh = sns::refresh(
        &shared.http,
        &shared.config.wechat.api_base,
        &session.app_id,
        &grant.refresh_token,
    )
    .await?;
    store_grant(&shared, &session.app_id, &fresh).await?;
    Ok(Json(
        json!({"openid": fresh.openid, "expires_in": fresh.expires_in}),
    ))
}
