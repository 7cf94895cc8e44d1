//! Web authorization (网页授权, OAuth2) of `open.weixin.qq.com` and `api.weixin.qq.com/sns/*`,
//! and the JS-SDK `wx.config` signature check.
//!
//! - `GET /connect/oauth2/authorize`: `snsapi_base` redirects at once with a code for the base
//!   user (`o_web_user`, see `/_sim/oauth/settings`); `snsapi_userinfo` shows a consent page
//!   whose form goes to `/connect/oauth2/authorize/confirm` (allow: a code; deny: no code).
//! - Codes: random, single use, 5 minutes on the sim clock. Web access tokens (7200 s) and
//!   refresh tokens (30 days) live apart from the account's `access_token`: `/cgi-bin/*` never
//!   accepts a web token and `/sns/*` never accepts an account token.
//! - `POST /_sim/jssdk/verify`: checks a `wx.config` signature against the app's current
//!   `jsapi_ticket` (the one `ticket/getticket` hands out) and the sim clock.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use wxoa_wire::web::{jssdk_signature, percent_encode};

use crate::SimError;
use crate::mass::control_app;
use crate::paths;
use crate::state::{Shared, random_string};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// The silent scope: the openid only.
pub(crate) const SCOPE_BASE: &str = "snsapi_base";
/// The consent scope: `/sns/userinfo` too.
pub(crate) const SCOPE_USERINFO: &str = "snsapi_userinfo";
/// Who logs in with `snsapi_base`, and the consent page's default openid.
pub(crate) const DEFAULT_WEB_OPENID: &str = "o_web_user";
/// A code's life.
const CODE_TTL_MS: i64 = 5 * 60 * 1000;
/// A web access token's life.
const WEB_TOKEN_TTL_SECS: i64 = 7200;
/// A refresh token's life.
const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// Records are forgotten this long after they expire (codes still answer 40163 until then).
const KEEP_EXPIRED_MS: i64 = 24 * 3600 * 1000;
/// A `wx.config` timestamp may be this far from the sim clock.
const JSSDK_MAX_SKEW_SECS: i64 = 2 * 3600;
/// WeChat's limit on `state`.
const MAX_STATE_BYTES: usize = 128;

/// What an authorization grants: who, to which app, which scope.
#[derive(Debug, Clone)]
struct Grant {
    appid: String,
    openid: String,
    scope: String,
}

struct CodeRecord {
    grant: Grant,
    expires_ms: i64,
    used: bool,
}

struct TimedGrant {
    grant: Grant,
    expires_ms: i64,
}

/// Per-app counters of `/_sim/oauth`.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    codes_issued: u64,
    codes_used: u64,
    tokens: u64,
}

/// The web-authorization state (in [`crate::state::State`]).
#[derive(Default)]
pub(crate) struct OAuthStore {
    codes: HashMap<String, CodeRecord>,
    tokens: HashMap<String, TimedGrant>,
    refresh: HashMap<String, TimedGrant>,
    counters: HashMap<String, Counters>,
    /// The `snsapi_base` user when set (else [`DEFAULT_WEB_OPENID`]).
    base_openid: Option<String>,
}

impl OAuthStore {
    fn base_openid(&self) -> &str {
        self.base_openid.as_deref().unwrap_or(DEFAULT_WEB_OPENID)
    }

    fn issue_code(&mut self, grant: Grant, now: i64) -> String {
        self.codes
            .retain(|_, c| c.expires_ms.saturating_add(KEEP_EXPIRED_MS) > now);
        let code = random_string(32);
        self.counters
            .entry(grant.appid.clone())
            .or_default()
            .codes_issued += 1;
        self.codes.insert(
            code.clone(),
            CodeRecord {
                grant,
                expires_ms: now.saturating_add(CODE_TTL_MS),
                used: false,
            },
        );
        code
    }

    /// Consumes a code of `appid`: 40029 unknown (or another app's) or expired, 40163 used.
    fn redeem(&mut self, appid: &str, code: &str, now: i64) -> Result<Grant, SimError> {
        let record = self
            .codes
            .get_mut(code)
            .filter(|c| c.grant.appid == appid)
            .ok_or_else(|| SimError::api(40029))?;
        if record.used {
            return Err(SimError::api(40163));
        }
        if record.expires_ms <= now {
            return Err(SimError::api(40029));
        }
        record.used = true;
        let grant = record.grant.clone();
        self.counters
            .entry(grant.appid.clone())
            .or_default()
            .codes_used += 1;
        Ok(grant)
    }

    /// A new web access token for the grant; answers it.
    fn issue_token(&mut self, grant: &Grant, now: i64) -> String {
        self.tokens
            .retain(|_, t| t.expires_ms.saturating_add(KEEP_EXPIRED_MS) > now);
        let token = random_string(86);
        self.counters.entry(grant.appid.clone()).or_default().tokens += 1;
        self.tokens.insert(
            token.clone(),
            TimedGrant {
                grant: grant.clone(),
                expires_ms: now.saturating_add(WEB_TOKEN_TTL_SECS * 1000),
            },
        );
        token
    }

    fn issue_refresh(&mut self, grant: &Grant, now: i64) -> String {
        self.refresh.retain(|_, t| t.expires_ms > now);
        let token = random_string(86);
        self.refresh.insert(
            token.clone(),
            TimedGrant {
                grant: grant.clone(),
                expires_ms: now.saturating_add(REFRESH_TTL_MS),
            },
        );
        token
    }

    /// The grant of a live web token: 41001 missing, 40001 unknown or expired.
    fn check_token(&self, token: Option<&str>, now: i64) -> Result<Grant, SimError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SimError::api(41001))?;
        self.tokens
            .get(token)
            .filter(|t| t.expires_ms > now)
            .map(|t| t.grant.clone())
            .ok_or_else(|| SimError::api(40001))
    }
}

/// The answer of `sns/oauth2/access_token` and `sns/oauth2/refresh_token`.
fn token_answer(grant: &Grant, access_token: &str, refresh_token: &str) -> Value {
    json!({
        "access_token": access_token,
        "expires_in": WEB_TOKEN_TTL_SECS,
        "refresh_token": refresh_token,
        "openid": grant.openid,
        "scope": grant.scope,
        "is_snapshotuser": 0,
        "unionid": unionid(&grant.openid),
    })
}

fn unionid(openid: &str) -> String {
    format!("u{openid}")
}

// ---------------------------------------------------------------------------------------------
// The authorize page.

/// Escapes text for HTML content and attribute values.
fn html_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body>\n{body}\n</body></html>\n",
        title = html_escape(title)
    )
}

/// The error page WeChat shows for a bad authorize link: status 400, naming the problem.
fn error_page(problem: &str) -> Response {
    let body = format!(
        "<h1>授权失败 / Authorization failed</h1>\n<p id=\"error\">{}</p>",
        html_escape(problem)
    );
    (
        StatusCode::BAD_REQUEST,
        Html(page("Authorization failed", &body)),
    )
        .into_response()
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

/// `redirect_uri` with `code` (when given) and `state` appended to its query (before any
/// fragment).
fn redirect_target(redirect_uri: &str, code: Option<&str>, state: &str) -> String {
    let (base, fragment) = match redirect_uri.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (redirect_uri, None),
    };
    let mut url = base.to_owned();
    let mut sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    if let Some(code) = code {
        url.push_str(sep);
        url.push_str("code=");
        url.push_str(&percent_encode(code));
        sep = "&";
    }
    url.push_str(sep);
    url.push_str("state=");
    url.push_str(&percent_encode(state));
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    url
}

/// An absolute `http(s)://host...` URL.
fn valid_redirect_uri(uri: &str) -> bool {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !uri.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// The checked parameters of an authorize link.
struct AuthorizeRequest {
    appid: String,
    redirect_uri: String,
    scope: String,
    state: String,
}

/// Checks the parameters WeChat checks, naming the first problem.
fn check_authorize(
    sim: &Shared,
    q: &HashMap<String, String>,
    need_code: bool,
) -> Result<AuthorizeRequest, String> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let appid = get("appid");
    if appid.is_empty() {
        return Err("appid is missing (appid参数错误)".into());
    }
    if sim.app(appid).is_none() {
        return Err(format!("unknown appid {appid:?} (appid参数错误)"));
    }
    let redirect_uri = get("redirect_uri");
    if redirect_uri.is_empty() {
        return Err("redirect_uri is missing (redirect_uri参数错误)".into());
    }
    if !valid_redirect_uri(redirect_uri) {
        return Err(format!(
            "redirect_uri {redirect_uri:?} is not an absolute http(s) URL (redirect_uri参数错误)"
        ));
    }
    if need_code && get("response_type") != "code" {
        return Err(format!(
            "response_type must be \"code\", not {:?}",
            get("response_type")
        ));
    }
    let scope = get("scope");
    if scope != SCOPE_BASE && scope != SCOPE_USERINFO {
        return Err(format!(
            "scope must be {SCOPE_BASE} or {SCOPE_USERINFO}, not {scope:?} (scope参数错误或没有scope权限)"
        ));
    }
    let state = get("state");
    if state.len() > MAX_STATE_BYTES {
        return Err(format!(
            "state is longer than {MAX_STATE_BYTES} bytes (state参数错误)"
        ));
    }
    Ok(AuthorizeRequest {
        appid: appid.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope: scope.to_owned(),
        state: state.to_owned(),
    })
}

/// The consent page of `snsapi_userinfo`.
fn consent_page(sim: &Shared, r: &AuthorizeRequest) -> String {
    let name = sim
        .app(&r.appid)
        .map(|a| {
            if a.original_id.is_empty() {
                a.appid.clone()
            } else {
                format!("{} ({})", a.appid, a.original_id)
            }
        })
        .unwrap_or_else(|| r.appid.clone());
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            html_escape(value)
        )
    };
    let mut body = format!(
        "<h1>授权登录 / Sign in</h1>\n<p id=\"app\">{} 申请获得你的昵称、头像 \
         (requests your nickname and avatar)</p>\n\
         <form id=\"consent\" method=\"get\" action=\"{}\">\n",
        html_escape(&name),
        paths::OAUTH_CONFIRM
    );
    body.push_str(&hidden("appid", &r.appid));
    body.push_str(&hidden("redirect_uri", &r.redirect_uri));
    body.push_str(&hidden("scope", &r.scope));
    body.push_str(&hidden("state", &r.state));
    body.push_str(&format!(
        "<label for=\"openid\">openid</label>\n\
         <input type=\"text\" id=\"openid\" name=\"openid\" value=\"{DEFAULT_WEB_OPENID}\">\n\
         <button type=\"submit\" id=\"allow\" name=\"decision\" value=\"allow\">允许 Allow</button>\n\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">拒绝 Deny</button>\n\
         </form>"
    ));
    page("授权登录", &body)
}

/// `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`.
pub(crate) async fn authorize(State(sim): State<Arc<Shared>>, Query(q): Params) -> Response {
    let claimed = q.get("appid").map(String::as_str);
    if let Err(e) = sim
        .enter(known(&sim, claimed), paths::OAUTH_AUTHORIZE, false)
        .await
    {
        return e.into_response();
    }
    let request = match check_authorize(&sim, &q, true) {
        Ok(r) => r,
        Err(problem) => return error_page(&problem),
    };
    if request.scope == SCOPE_USERINFO {
        return Html(consent_page(&sim, &request)).into_response();
    }
    let code = {
        let mut state = sim.lock();
        let now = state.now_ms();
        let grant = Grant {
            appid: request.appid.clone(),
            openid: state.oauth.base_openid().to_owned(),
            scope: request.scope.clone(),
        };
        state.oauth.issue_code(grant, now)
    };
    redirect(&redirect_target(
        &request.redirect_uri,
        Some(&code),
        &request.state,
    ))
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
fn form_decode(body: &[u8]) -> HashMap<String, String> {
    fn decode(part: &[u8]) -> String {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < part.len() => {
                    let hex = std::str::from_utf8(&part[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let key = decode(it.next().unwrap_or(b""));
            let value = decode(it.next().unwrap_or(b""));
            (key, value)
        })
        .collect()
}

/// `GET /connect/oauth2/authorize/confirm` (the consent form's query).
pub(crate) async fn confirm_get(State(sim): State<Arc<Shared>>, Query(q): Params) -> Response {
    confirm(&sim, &q).await
}

/// `POST /connect/oauth2/authorize/confirm` (the consent form, urlencoded).
pub(crate) async fn confirm_post(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    confirm(&sim, &form_decode(&body)).await
}

/// The user's decision: allow → `redirect_uri?code&state`, deny → `redirect_uri?state`.
async fn confirm(sim: &Shared, q: &HashMap<String, String>) -> Response {
    let claimed = q.get("appid").map(String::as_str);
    if let Err(e) = sim
        .enter(known(sim, claimed), paths::OAUTH_CONFIRM, false)
        .await
    {
        return e.into_response();
    }
    let request = match check_authorize(sim, q, false) {
        Ok(r) => r,
        Err(problem) => return error_page(&problem),
    };
    match q.get("decision").map(String::as_str) {
        Some("allow") => {}
        Some("deny") => {
            return redirect(&redirect_target(
                &request.redirect_uri,
                None,
                &request.state,
            ));
        }
        other => {
            return error_page(&format!(
                "decision must be \"allow\" or \"deny\", not {other:?}"
            ));
        }
    }
    let openid = q.get("openid").map(|o| o.trim()).unwrap_or("");
    if openid.is_empty() || openid.len() > 128 {
        return error_page("openid must be 1..=128 bytes");
    }
    let code = {
        let mut state = sim.lock();
        let now = state.now_ms();
        let grant = Grant {
            appid: request.appid.clone(),
            openid: openid.to_owned(),
            scope: request.scope.clone(),
        };
        state.oauth.issue_code(grant, now)
    };
    redirect(&redirect_target(
        &request.redirect_uri,
        Some(&code),
        &request.state,
    ))
}

// ---------------------------------------------------------------------------------------------
// The sns APIs.

/// The counter key of a claimed appid: itself when known.
fn known<'a>(sim: &Shared, appid: Option<&'a str>) -> Option<&'a str> {
    appid.filter(|a| sim.app(a).is_some())
}

/// appid (41002 missing, 40013 unknown) and, when asked, its secret (41004, 40125).
fn check_app(
    sim: &Shared,
    appid: Option<&str>,
    secret: Option<Option<&str>>,
) -> Result<String, SimError> {
    let appid = appid
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::api(41002))?;
    let app = sim.app(appid).ok_or_else(|| SimError::api(40013))?;
    if let Some(secret) = secret {
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SimError::api(41004))?;
        if app.secret.expose_secret() != secret {
            return Err(SimError::api(40125));
        }
    }
    Ok(app.appid.clone())
}

/// `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`.
pub(crate) async fn access_token(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let get = |k: &str| q.get(k).map(String::as_str);
    sim.enter(known(&sim, get("appid")), paths::SNS_ACCESS_TOKEN, false)
        .await?;
    let appid = check_app(&sim, get("appid"), Some(get("secret")))?;
    if get("grant_type") != Some("authorization_code") {
        return Err(SimError::api(40002));
    }
    let code = get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| SimError::api(41008))?;
    let mut state = sim.lock();
    let now = state.now_ms();
    let grant = state.oauth.redeem(&appid, code, now)?;
    let access = state.oauth.issue_token(&grant, now);
    let refresh = state.oauth.issue_refresh(&grant, now);
    Ok(Json(token_answer(&grant, &access, &refresh)))
}

/// `GET /sns/oauth2/refresh_token?appid&grant_type=refresh_token&refresh_token`.
pub(crate) async fn refresh_token(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let get = |k: &str| q.get(k).map(String::as_str);
    sim.enter(known(&sim, get("appid")), paths::SNS_REFRESH_TOKEN, false)
        .await?;
    let appid = check_app(&sim, get("appid"), None)?;
    if get("grant_type") != Some("refresh_token") {
        return Err(SimError::api(40002));
    }
    let refresh = get("refresh_token").unwrap_or("");
    let mut state = sim.lock();
    let now = state.now_ms();
    let grant = state
        .oauth
        .refresh
        .get(refresh)
        .filter(|r| r.expires_ms > now && r.grant.appid == appid)
        .map(|r| r.grant.clone())
        .ok_or_else(|| SimError::api(40030))?;
    let access = state.oauth.issue_token(&grant, now);
    Ok(Json(token_answer(&grant, &access, refresh)))
}

/// Counts a web-token call, applies faults, checks the token and the openid (40003).
async fn web_authorized(
    sim: &Shared,
    q: &HashMap<String, String>,
    api: &str,
) -> Result<Grant, SimError> {
    let token = q.get("access_token").map(String::as_str);
    let appid = {
        let state = sim.lock();
        let now = state.now_ms();
        token.and_then(|t| state.oauth.check_token(Some(t), now).ok().map(|g| g.appid))
    };
    sim.enter(appid.as_deref(), api, false).await?;
    let grant = {
        let state = sim.lock();
        let now = state.now_ms();
        state.oauth.check_token(token, now)?
    };
    if q.get("openid").map(String::as_str) != Some(grant.openid.as_str()) {
        return Err(SimError::api(40003));
    }
    Ok(grant)
}

/// `GET /sns/userinfo?access_token&openid&lang`: `snsapi_userinfo` grants only (else 48001).
pub(crate) async fn userinfo(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let grant = web_authorized(&sim, &q, paths::SNS_USERINFO).await?;
    if grant.scope != SCOPE_USERINFO {
        return Err(SimError::api(48001));
    }
    Ok(Json(json!({
        "openid": grant.openid,
        "nickname": format!("Web User {}", grant.openid),
        "sex": 0,
        "province": "",
        "city": "",
        "country": "",
        "headimgurl": "",
        "privilege": [],
        "unionid": unionid(&grant.openid),
    })))
}

/// `GET /sns/auth?access_token&openid`: `{"errcode":0,"errmsg":"ok"}` for a live token.
pub(crate) async fn auth(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    web_authorized(&sim, &q, paths::SNS_AUTH).await?;
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

// ---------------------------------------------------------------------------------------------
// Control.

/// `GET /_sim/oauth?appid=` → `{"appid","codes_issued","codes_used","tokens","base_openid"}`.
pub(crate) async fn stats(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let state = sim.lock();
    let c = state
        .oauth
        .counters
        .get(&appid)
        .copied()
        .unwrap_or_default();
    Ok(Json(json!({
        "appid": appid,
        "codes_issued": c.codes_issued,
        "codes_used": c.codes_used,
        "tokens": c.tokens,
        "base_openid": state.oauth.base_openid(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    base_openid: Option<String>,
}

/// `POST /_sim/oauth/settings {"base_openid"?}` → `{"base_openid"}`.
pub(crate) async fn settings(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: SettingsRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    let mut state = sim.lock();
    if let Some(openid) = request.base_openid {
        if openid.is_empty() || openid.len() > 128 {
            return Err(SimError::BadRequest(
                "base_openid must be 1..=128 bytes".into(),
            ));
        }
        state.oauth.base_openid = Some(openid);
    }
    Ok(Json(json!({ "base_openid": state.oauth.base_openid() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    appid: String,
    url: String,
    timestamp: Value,
    #[serde(alias = "nonceStr")]
    noncestr: String,
    signature: String,
}

fn rejected(reason: &str) -> Answer {
    Ok(Json(json!({ "accepted": false, "reason": reason })))
}

/// `POST /_sim/jssdk/verify {"appid","url","timestamp","noncestr"|"nonceStr","signature"}` →
/// `{"accepted":true}` or `{"accepted":false,"reason"}`.
pub(crate) async fn jssdk_verify(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let r: VerifyRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    let appid = control_app(&sim, Some(&r.appid))?;
    // wx.config takes the timestamp as a number or a string.
    let timestamp = match &r.timestamp {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return rejected("invalid timestamp"),
    };
    let Ok(ts_secs) = timestamp.parse::<i64>() else {
        return rejected("invalid timestamp");
    };
    let (ticket, now) = {
        let state = sim.lock();
        (state.current_ticket(&appid, "jsapi"), state.now_ms())
    };
    let Some((ticket, expires_ms)) = ticket else {
        return rejected("no jsapi_ticket issued");
    };
    if expires_ms <= now {
        return rejected("jsapi_ticket expired");
    }
    let expected = jssdk_signature(&ticket, &r.noncestr, &timestamp, &r.url);
    if !expected.eq_ignore_ascii_case(&r.signature) {
        return rejected("invalid signature");
    }
    let now_secs = now / 1000;
    if ts_secs < now_secs - JSSDK_MAX_SKEW_SECS {
        return rejected("timestamp too old");
    }
    if ts_secs > now_secs + JSSDK_MAX_SKEW_SECS {
        return rejected("timestamp in the future");
    }
    Ok(Json(json!({ "accepted": true })))
}
