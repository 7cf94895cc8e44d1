//! JS-SDK configs from the shared jsapi_ticket, and the demo page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use wxoa_runtime::now_ms;

use crate::{Shared, WebError};

fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Result<&'a str, WebError> {
    query
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| WebError::BadRequest(format!("missing {name}")))
}

/// The app of a request: `appid`, else the first configured.
fn app_id<'a>(shared: &'a Shared, query: &'a HashMap<String, String>) -> Result<&'a str, WebError> {
    let app_id = match query.get("appid").filter(|a| !a.is_empty()) {
        Some(app) => app.as_str(),
        None => shared
            .config
            .apps
            .first()
            .map(|a| a.appid.as_str())
            .ok_or_else(|| WebError::BadRequest("missing appid".into()))?,
    };
    shared
        .config
        .app(app_id)
        .map(|a| a.appid.as_str())
        .ok_or_else(|| WebError::UnknownApp(app_id.to_owned()))
}

/// The CORS answer to a request's `Origin`: `None` without one; `Some(Ok(origin))` for an
/// allowed origin (echoed back), `Some(Err(..))` (403, no CORS headers) for any other.
fn cors_origin(shared: &Shared, headers: &HeaderMap) -> Option<Result<HeaderValue, WebError>> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().unwrap_or_default();
    Some(if shared.origins.iter().any(|allowed| allowed == text) {
        Ok(origin.clone())
    } else {
        Err(WebError::Forbidden(format!(
            "origin {text} is not allowed (web.allowed_origins)"
        )))
    })
}

/// `response` with the CORS headers for `origin` (`Vary: Origin` always: the answer depends
/// on it).
fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// `OPTIONS /jssdk/config`: the CORS preflight. An allowed origin may `GET` (no credentials,
/// no extra headers); any other gets 403 without CORS headers.
pub(crate) async fn preflight(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let origin = match cors_origin(&shared, &headers) {
        Some(Ok(origin)) => origin,
        Some(Err(e)) => return e.into_response(),
        None => {
            return WebError::BadRequest("a CORS preflight without an Origin".into())
                .into_response();
        }
    };
    let mut response = with_cors(StatusCode::NO_CONTENT.into_response(), Some(origin));
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    response
}

/// `GET /jssdk/config?appid&url&apis=a,b`.
pub(crate) async fn config(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let origin = match cors_origin(&shared, &headers) {
        Some(Ok(origin)) => Some(origin),
        Some(Err(e)) => return with_cors(e.into_response(), None),
        None => None,
    };
    let answer = match signed_config(&shared, &query).await {
        Ok(config) => config.into_response(),
        Err(e) => e.into_response(),
    };
    with_cors(answer, origin)
}

async fn signed_config(
    shared: &Shared,
    query: &HashMap<String, String>,
) -> Result<Json<Value>, WebError> {
    let app_id = app_id(shared, query)?;
    let url = param(query, "url")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(WebError::BadRequest(
            "url must be the page's full http(s) URL".into(),
        ));
    }
    // WeChat signs the URL without its fragment; the query stays as it is.
    let url = url.split('#').next().unwrap_or(url);
    let ticket = shared.wechat.jsapi_ticket(app_id).await?;
    let timestamp = (now_ms() / 1000).to_string();
    let nonce: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    let signature = wxoa_wire::web::jssdk_signature(&ticket, &nonce, &timestamp, url);
    let apis: Vec<&str> = query
        .get("apis")
        .map(|a| a.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    Ok(Json(json!({
        "appId": app_id,
        "timestamp": timestamp.parse::<i64>().unwrap_or_default(),
        "nonceStr": nonce,
        "signature": signature,
        "jsApiList": apis,
    })))
}

/// `GET /demo/check?appid&url&timestamp&noncestr&signature`: asks WeChat's side (the
/// simulator's `/_sim/jssdk/verify`) whether the config would be accepted.
pub(crate) async fn check(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, WebError> {
    let app_id = app_id(&shared, &query)?;
    let body = json!({
        "appid": app_id,
        "url": param(&query, "url")?,
        "timestamp": param(&query, "timestamp")?.parse::<i64>().unwrap_or_default(),
        "noncestr": param(&query, "noncestr")?,
        "signature": param(&query, "signature")?,
    });
    let url = format!(
        "{}/_sim/jssdk/verify",
        shared.config.wechat.api_base.trim_end_matches('/')
    );
    let answer = shared
        .http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| WebError::BadRequest(format!("asking the simulator: {}", e.without_url())))?
        .json::<Value>()
        .await
        .map_err(|e| WebError::BadRequest(format!("the simulator's answer: {e}")))?;
    Ok(Json(answer))
}

/// `GET /demo`: logs the user in through OAuth2 and checks a JS-SDK config.
pub(crate) async fn demo(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, WebError> {
    let app_id = app_id(&shared, &query)?;
    Ok(Html(DEMO.replace("APPID", app_id)))
}

const DEMO: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wxoa web demo</title>
<style>body{font-family:sans-serif;margin:2em;max-width:40em}.box{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}
.ok{color:#070}.bad{color:#a00}</style></head>
<body>
<h1>wxoa web demo</h1>
<p>Account <code>APPID</code>: web authorization (OAuth2) and the JS-SDK signature, as a page opened inside WeChat would use them.</p>
<div class="box"><b>User:</b> <span id="who">checking…</span>
 <p><a id="login" href="/oauth/APPID/start?scope=snsapi_userinfo&amp;return=/demo%3Fappid%3DAPPID" style="display:none">Log in with WeChat</a></p></div>
<div class="box"><b>JS-SDK:</b> <span id="jssdk">checking…</span><pre id="config"></pre></div>
<script>
(async () => {
  const who = document.getElementById('who');
  const params = new URLSearchParams(location.search);
  const me = await fetch('/oauth/me').then(r => r.json());
  if (me.user) {
    const name = me.user.profile && me.user.profile.nickname ? ' (' + me.user.profile.nickname + ')' : '';
    who.textContent = 'Logged in as ' + me.user.openid + name;
    who.className = 'ok';
    who.dataset.openid = me.user.openid;
  } else {
    who.textContent = params.get('wxoa_error') ? 'Not logged in: ' + params.get('wxoa_error') : 'Not logged in';
    document.getElementById('login').style.display = 'inline';
  }
  const url = location.href.split('#')[0];
  const cfg = await fetch('/jssdk/config?appid=APPID&apis=chooseImage,scanQRCode&url=' + encodeURIComponent(url)).then(r => r.json());
  document.getElementById('config').textContent = JSON.stringify(cfg, null, 1);
  const jssdk = document.getElementById('jssdk');
  if (cfg.error) { jssdk.textContent = 'no config: ' + cfg.error.message; jssdk.className = 'bad'; return; }
  const q = new URLSearchParams({appid: 'APPID', url, timestamp: cfg.timestamp, noncestr: cfg.nonceStr, signature: cfg.signature});
  const check = await fetch('/demo/check?' + q).then(r => r.json());
  jssdk.textContent = check.accepted ? 'signature accepted' : 'signature rejected: ' + (check.reason || JSON.stringify(check));
  jssdk.className = check.accepted ? 'ok' : 'bad';
  jssdk.dataset.accepted = String(check.accepted);
})();
</script>
</body></html>
"#;
