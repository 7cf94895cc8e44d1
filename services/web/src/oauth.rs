//! OAuth2 web authorization: start, callback, the session user, refresh.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use wxoa_runtime::now_ms;
use wxoa_wechat::sns::{self, WebGrant};
use wxoa_wire::names::keys;

use crate::sign::{Login, Session};
use crate::{COOKIE, Shared, WebError, guard};

/// How long a login may take between start and callback.
pub(crate) const STATE_TTL_SECS: u64 = 600;
/// How long an exchanged code is remembered (WeChat's codes live 5 minutes).
const CODE_TTL_SECS: u64 = 600;
/// The cookie that binds a login to the browser that started it (see [`Login`]).
pub const LOGIN_COOKIE: &str = "wxoa_login";
/// The longest login cookie value: with its name and attributes under the 4096 bytes
/// browsers keep.
const MAX_LOGIN_COOKIE: usize = 3900;

/// Adds a login to the app's pending set (a sorted set: nonce → expiry in ms), keeping at most
/// `cap` unexpired ones: when the set is full, the oldest pending logins make room (their
/// callbacks then find no state). So a flood of `/start`s can only shorten how long a login may
/// take, never lock every user out. `KEYS[1]` the set; `ARGV`: now, expiry, cap, nonce, TTL
/// (ms). Returns how many pending logins were evicted.
const ADD_PENDING: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3]) + 1
if over > 0 then redis.call('ZPOPMIN', KEYS[1], over) else over = 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return over
";

/// Takes a login out of the app's pending set: 1 when it was there and unexpired (its single
/// use), else 0. `KEYS[1]` the set; `ARGV`: now (ms), nonce.
const TAKE_PENDING: &str = r"
local expires = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not expires then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
if tonumber(expires) <= tonumber(ARGV[1]) then return 0 end
return 1
";

static ADD_PENDING_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(ADD_PENDING));
static TAKE_PENDING_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(TAKE_PENDING));

/// The app's pending logins: `<prefix>:{<appid>}:web:state:pending`, a sorted set of state
/// nonces scored by expiry (ms); no nonce is `pending`.
fn pending_key(shared: &Shared, app_id: &str) -> String {
    keys::web_pending_logins(&shared.config.redis.key_prefix, app_id)
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

/// A `Set-Cookie` for cookie `name` with the service's attributes (`Secure` when `public_url`
/// is https).
fn cookie(shared: &Shared, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if shared.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values and paths are header-safe")
}

/// The values of cookie `name` in a request (there may be several, for different paths).
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// `GET /oauth/<appid>/start`: 302 to WeChat's authorize page.
pub(crate) async fn start(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Result<Response, WebError> {
    app_of(&shared, &app_id)?;
    let now = now_ms();
    match peer {
        Some(Extension(ConnectInfo(peer))) => {
            let client = guard::client_ip(peer.ip(), &headers, &shared.proxies);
            if !shared.start_limit.allow(client, now) {
                return Err(WebError::TooManyRequests(format!(
                    "too many logins started from this client: at most {} a minute (web.start_per_client_per_min)",
                    shared.config.web.start_per_client_per_min
                )));
            }
        }
        None => shared.no_peer_address(),
    }
    let scope = query.scope.unwrap_or_else(|| "snsapi_base".into());
    if scope != "snsapi_base" && scope != "snsapi_userinfo" {
        return Err(WebError::BadRequest(
            "scope must be snsapi_base or snsapi_userinfo".into(),
        ));
    }
    let ret = shared.returns.check(query.ret.as_deref().unwrap_or("/"))?;
    let (state, nonce) = shared.signer.new_state();
    let expires = now + STATE_TTL_SECS as i64 * 1000;
    let login = shared.signer.login_cookie(&Login {
        app_id: app_id.clone(),
        nonce_hash: Login::hash(&nonce),
        ret,
        exp: expires / 1000,
    });
    // Browsers keep cookies up to 4096 bytes, attributes included; a return of escapes could
    // grow past that once encoded.
    if login.len() > MAX_LOGIN_COOKIE {
        return Err(WebError::BadRequest(
            "the return URL is too long once encoded for the login cookie (web.max_return_len)"
                .into(),
        ));
    }
    let evicted: i64 = ADD_PENDING_SCRIPT
        .key(pending_key(&shared, &app_id))
        .arg(now)
        .arg(expires)
        .arg(shared.config.web.max_pending_per_app)
        .arg(&nonce)
        .arg(STATE_TTL_SECS * 1000)
        .invoke_async(&mut shared.redis.clone())
        .await?;
    if evicted > 0 && shared.cap_logged.first(now) {
        tracing::warn!(
            app_id,
            cap = shared.config.web.max_pending_per_app,
            "web.max_pending_per_app reached: the oldest pending logins make room (a /start flood? logged once a minute)"
        );
    }
    let redirect_uri = format!("{}/oauth/{app_id}/callback", shared.public_url);
    let url =
        wxoa_wire::web::oauth_authorize_url(&app_id, &redirect_uri, &scope, Some(&state), None);
    let url = url.replacen(
        "https://open.weixin.qq.com",
        shared.config.wechat.open_base.trim_end_matches('/'),
        1,
    );
    let mut response = found(&url);
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(
            &shared,
            LOGIN_COOKIE,
            &login,
            &shared.login_path,
            STATE_TTL_SECS,
        ),
    );
    Ok(response)
}

/// `GET /oauth/<appid>/callback?code&state`.
pub(crate) async fn callback(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let app = app_of(&shared, &app_id)?;
    let prefix = &shared.config.redis.key_prefix;
    // The state: ours (signed), started in this browser, pending, and used once.
    let nonce = query
        .get("state")
        .and_then(|s| shared.signer.check_state(s))
        .ok_or_else(|| WebError::BadRequest("missing or forged state".into()))?;
    let now = now_ms();
    let hash = Login::hash(nonce);
    let mut seen = false;
    let login = cookies(&headers, LOGIN_COOKIE)
        .inspect(|_| seen = true)
        .filter_map(|c| shared.signer.check_login(c, now / 1000))
        .find(|l| l.app_id == app_id && l.nonce_hash == hash);
    let Some(login) = login else {
        tracing::info!(
            app_id,
            cookie = seen,
            "callback refused: the login was not started in this browser"
        );
        return Err(WebError::Forbidden(if seen {
            "this login was not started in this browser: its wxoa_login cookie is for another login, or expired".into()
        } else {
            "this login was not started in this browser: the wxoa_login cookie is missing (a callback URL opened elsewhere, or cookies blocked)".into()
        }));
    };
    let taken: i64 = TAKE_PENDING_SCRIPT
        .key(pending_key(&shared, &app_id))
        .arg(now)
        .arg(nonce)
        .invoke_async(&mut shared.redis.clone())
        .await?;
    if taken == 0 {
        return Err(WebError::BadRequest(
            "unknown, used or expired state".into(),
        ));
    }
    // From here on every answer ends the login in this browser.
    let clear = cookie(&shared, LOGIN_COOKIE, "", &shared.login_path, 0);
    let ret = shared.returns.recheck(&login.ret)?;
    let back = |code: &str| {
        let mut response = found(&with_param(&ret, "wxoa_error", code));
        response
            .headers_mut()
            .append(header::SET_COOKIE, clear.clone());
        response
    };
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        tracing::info!(app_id, "the user declined web authorization");
        return Ok(back("access_denied"));
    };
    // Codes are single use: refuse a replay before asking WeChat.
    let hash = hex::encode(Sha1::digest(code.as_bytes()));
    let code_key = keys::web_code(prefix, &app_id, &hash);
    let fresh: bool = redis::cmd("SET")
        .arg(&code_key)
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
            if error.code() == "invalid_code" {
                // A code WeChat never issued (or expired) cannot be replayed: not remembered,
                // so forged codes leave nothing in Redis.
                let _: () = shared.redis.clone().del(&code_key).await?;
            }
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
        exp: now / 1000 + shared.config.web.session_ttl_secs as i64,
    };
    let token = shared.signer.session_token(&session);
    let mut response = found(&ret);
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie(
            &shared,
            COOKIE,
            &token,
            "/",
            shared.config.web.session_ttl_secs,
        ),
    );
    headers.append(header::SET_COOKIE, clear);
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
    let cookie = cookies(headers, COOKIE).next().map(str::to_owned);
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
