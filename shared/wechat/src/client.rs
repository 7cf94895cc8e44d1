//! [`WechatClient`]: calls the WeChat REST API with the access_token the token service keeps in
//! Redis, and recovers once from a rejected token.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;
use wxoa_wire::names::{keys, subjects};
use wxoa_wire::token::{
    InvalidateRequest, InvalidateResponse, InvalidateStatus, RefreshedNotice, TokenKind,
    fingerprint,
};

use crate::errcode::ErrorClass;
use crate::error::WechatError;
use crate::http::{Answer, http_client, send, url};

/// The longest a token is served from memory without looking at Redis again, even when no
/// refresh notice arrived (a notice may be lost while NATS reconnects).
pub const MAX_CACHE: Duration = Duration::from_secs(60);

/// How long an invalidation request waits for the token service.
pub const INVALIDATE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the per-API daily call counters live in Redis.
const API_CALLS_TTL_SECS: i64 = 2 * 24 * 3600;

/// A WeChat API client shared by every task of a service (cheap to clone).
///
/// - Tokens come from Redis (`keys::access_token`), cached in memory until a
///   `token.refreshed` notice for the app arrives, the key's TTL passes, or [`MAX_CACHE`].
/// - On a token-class errcode (40001, 40014, 41001, 42001) it asks the token service to
///   invalidate the token it used (`token.invalidate`, compare-and-refresh) and retries once.
/// - Every HTTP call increments the app's daily counter of that API in Redis
///   (`keys::api_calls`, best effort), and `wxoa_wechat_api_calls_total{api,errcode}` on
///   `/metrics` (errcode `none` when WeChat gave no answer).
/// - It never retries -1/45011 by itself: the caller decides (see
///   [`WechatError::is_transient`]).
///
/// Creating one spawns a task (on the current Tokio runtime) that listens for refresh notices;
/// it stops when the last clone is dropped.
#[derive(Clone)]
pub struct WechatClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    redis: wxoa_runtime::connect::RedisConn,
    nats: async_nats::Client,
    nats_prefix: String,
    key_prefix: String,
    apps: HashSet<String>,
    cache: Arc<Cache>,
    listener: tokio::task::JoinHandle<()>,
    health: wxoa_runtime::admin::Health,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The in-memory token cache, trusted only while the notice subscription is live.
#[derive(Default)]
struct Cache {
    live: AtomicBool,
    /// Bumped by every notice: a value read from Redis before a notice is not cached after it.
    generation: AtomicU64,
    entries: Mutex<HashMap<(String, TokenKind), Entry>>,
}

struct Entry {
    value: String,
    until: Instant,
}

impl Cache {
    fn get(&self, app_id: &str, kind: TokenKind) -> Option<String> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .get(&(app_id.to_owned(), kind))
            .filter(|e| e.until > Instant::now())
            .map(|e| e.value.clone())
    }

    fn put(&self, app_id: &str, kind: TokenKind, value: &str, ttl: Duration, generation: u64) {
        if !self.live.load(Ordering::SeqCst) || ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("not poisoned");
        // Checked under the lock that `forget` also takes, so a notice is never overtaken.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let until = Instant::now() + ttl.min(MAX_CACHE);
        entries.insert(
            (app_id.to_owned(), kind),
            Entry {
                value: value.to_owned(),
                until,
            },
        );
    }

    fn forget(&self, app_id: &str, kind: TokenKind) {
        let mut entries = self.entries.lock().expect("not poisoned");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(&(app_id.to_owned(), kind));
    }

    fn set_live(&self, live: bool) {
        let mut entries = self.entries.lock().expect("not poisoned");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
        self.live.store(live, Ordering::SeqCst);
    }
}

impl WechatClient {
    /// A client for the apps of `config`, calling `config.wechat.api_base`, with subjects and keys
    /// under `config.nats.prefix` / `config.redis.key_prefix`. Must be called inside a Tokio
    /// runtime: it spawns the refresh-notice listener.
    pub fn new(
        config: &wxoa_runtime::Config,
        redis: wxoa_runtime::connect::RedisConn,
        nats: async_nats::Client,
        health: &wxoa_runtime::admin::Health,
    ) -> WechatClient {
        let cache = Arc::new(Cache::default());
        let listener = tokio::spawn(listen(
            nats.clone(),
            subjects::token_refreshed_all(&config.nats.prefix),
            cache.clone(),
        ));
        WechatClient {
            inner: Arc::new(Inner {
                http: http_client(&config.wechat),
                api_base: config.wechat.api_base.clone(),
                redis,
                nats,
                nats_prefix: config.nats.prefix.clone(),
                key_prefix: config.redis.key_prefix.clone(),
                apps: config.apps.iter().map(|a| a.appid.clone()).collect(),
                cache,
                listener,
                health: health.clone(),
            }),
        }
    }

    /// True once the refresh-notice subscription is live (tokens are cached from then on).
    pub fn is_listening(&self) -> bool {
        self.inner.cache.live.load(Ordering::SeqCst)
    }

    /// The current access_token of `app_id` (from memory, else from Redis).
    pub async fn access_token(&self, app_id: &str) -> Result<String, WechatError> {
        self.credential(app_id, TokenKind::AccessToken).await
    }

    /// The current JS-SDK jsapi_ticket of `app_id` (from memory, else from Redis).
    pub async fn jsapi_ticket(&self, app_id: &str) -> Result<String, WechatError> {
        self.credential(app_id, TokenKind::JsapiTicket).await
    }

    async fn credential(&self, app_id: &str, kind: TokenKind) -> Result<String, WechatError> {
        self.check_app(app_id)?;
        if let Some(value) = self.inner.cache.get(app_id, kind) {
            return Ok(value);
        }
        self.read_redis(app_id, kind).await
    }

    /// Reads the value from Redis (bypassing the cache) and caches it.
    async fn read_redis(&self, app_id: &str, kind: TokenKind) -> Result<String, WechatError> {
        let key = match kind {
            TokenKind::AccessToken => keys::access_token(&self.inner.key_prefix, app_id),
            TokenKind::JsapiTicket => keys::jsapi_ticket(&self.inner.key_prefix, app_id),
        };
        let generation = self.inner.cache.generation.load(Ordering::SeqCst);
        let mut conn = self.inner.redis.clone();
        let (value, pttl): (Option<String>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(WechatError::Redis)?;
        let value = value.ok_or_else(|| WechatError::NoToken {
            app_id: app_id.to_owned(),
        })?;
        let ttl = match pttl {
            -1 => MAX_CACHE,
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => Duration::ZERO,
        };
        self.inner.cache.put(app_id, kind, &value, ttl, generation);
        Ok(value)
    }

    /// Asks the token service to replace `rejected` (compare-and-refresh) and forgets the cached
    /// value. `Ok` holds what the service did; a missing or late answer is
    /// [`WechatError::Invalidate`].
    pub async fn invalidate(
        &self,
        app_id: &str,
        kind: TokenKind,
        rejected: &str,
    ) -> Result<InvalidateStatus, WechatError> {
        self.check_app(app_id)?;
        let fp = fingerprint(rejected);
        let span = tracing::info_span!("wechat.token.invalidate", app_id, %kind, fingerprint = %fp);
        async {
            let request = InvalidateRequest { kind, fingerprint: fp.clone() };
            let payload = serde_json::to_vec(&request).map_err(|e| WechatError::Decode(e.to_string()))?;
            let subject = subjects::token_invalidate(&self.inner.nats_prefix, app_id);
            // Forget first: even if the token service does not answer, the rejected value is
            // not served from memory again.
            self.inner.cache.forget(app_id, kind);
            let answer = self
                .inner
                .nats
                .send_request(
                    subject,
                    async_nats::Request::new().payload(payload.into()).timeout(Some(INVALIDATE_TIMEOUT)),
                )
                .await
                .map_err(|e| {
                    WechatError::Invalidate(match e.kind() {
                        async_nats::RequestErrorKind::TimedOut => {
                            format!("the token service did not answer within {INVALIDATE_TIMEOUT:?}")
                        }
                        async_nats::RequestErrorKind::NoResponders => {
                            "no token service is listening".to_owned()
                        }
                        _ => format!("request failed: {e}"),
                    })
                })?;
            let response: InvalidateResponse = serde_json::from_slice(&answer.payload)
                .map_err(|e| WechatError::Decode(format!("invalidate response: {e}")))?;
            tracing::info!(status = %response.status, error = response.error.as_deref(), "token invalidation answered");
            Ok(response.status)
        }
        .instrument(span)
        .await
    }

    /// `GET <api_base><path>?access_token=…&<query>`; the JSON answer when its errcode is 0.
    pub async fn get(
        &self,
        app_id: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, WechatError> {
        self.call(app_id, path, query, Payload::Empty).await?.json()
    }

    /// `POST <api_base><path>?access_token=…` with a JSON body (non-ASCII sent raw, as WeChat
    /// requires); the JSON answer when its errcode is 0.
    pub async fn post(
        &self,
        app_id: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, WechatError> {
        self.call(app_id, path, &[], Payload::Json(body))
            .await?
            .json()
    }

    /// `POST <api_base><path>?access_token=…&<query>` as `multipart/form-data` with the file in
    /// field `media` (and `upload.fields`); the JSON answer when its errcode is 0. The bytes are
    /// in memory so that a rejected token can be retried with the same upload.
    pub async fn upload(
        &self,
        app_id: &str,
        path: &str,
        query: &[(&str, &str)],
        upload: &Upload,
    ) -> Result<serde_json::Value, WechatError> {
        self.call(app_id, path, query, Payload::Multipart(upload))
            .await?
            .json()
    }

    /// A download API (`media/get`, `material/get_material`): `GET` with `query`, or `POST`
    /// with a JSON body. The answer is a file, or JSON (a video's URL, an article) when
    /// WeChat answers JSON with errcode 0.
    pub async fn download(
        &self,
        app_id: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, WechatError> {
        let payload = match body {
            Some(body) => Payload::Json(body),
            None => Payload::Empty,
        };
        self.call(app_id, path, query, payload).await
    }

    /// `GET /cgi-bin/getcallbackip`: the source IPs (CIDRs) of WeChat's callbacks.
    pub async fn callback_ips(&self, app_id: &str) -> Result<Vec<String>, WechatError> {
        let body = self.get(app_id, "/cgi-bin/getcallbackip", &[]).await?;
        #[derive(serde::Deserialize)]
        struct IpList {
            ip_list: Vec<String>,
        }
        let list: IpList = serde_json::from_value(body)
            .map_err(|e| WechatError::Decode(format!("getcallbackip: {e}")))?;
        Ok(list.ip_list)
    }

    async fn call(
        &self,
        app_id: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Payload<'_>,
    ) -> Result<Answer, WechatError> {
        let span = tracing::info_span!(
            "wechat.call",
            app_id,
            api = path,
            errcode = tracing::field::Empty
        );
        async {
            let token = self.access_token(app_id).await?;
            let first = self.call_once(app_id, path, query, body, &token).await;
            let result = match first {
                Err(WechatError::Api { class: ErrorClass::Refresh, errcode, .. }) => {
                    tracing::info!(errcode, fingerprint = %fingerprint(&token), "access_token rejected; invalidating");
                    let outcome = self.invalidate(app_id, TokenKind::AccessToken, &token).await;
                    // Whatever the answer (a late one included), a different token in Redis
                    // means someone refreshed: retry once with it.
                    let current = self.read_redis(app_id, TokenKind::AccessToken).await?;
                    match outcome {
                        Ok(status) if status.is_fresh() => {}
                        _ if current != token => {}
                        Ok(status) => {
                            return Err(WechatError::Invalidate(format!(
                                "the token service answered {status} for a rejected token (errcode {errcode})"
                            )));
                        }
                        Err(e) => return Err(e),
                    }
                    self.call_once(app_id, path, query, body, &current).await
                }
                other => other,
            };
            let errcode = match &result {
                Ok(_) => Some(0),
                Err(e) => e.errcode(),
            };
            if let Some(errcode) = errcode.filter(|c| *c != 0) {
                tracing::Span::current().record("errcode", errcode);
            }
            // The label set is closed: the paths are the callers' constants, the errcodes WeChat's.
            let code = errcode.map_or_else(|| "none".to_owned(), |c| c.to_string());
            self.inner
                .health
                .counter(
                    "wxoa_wechat_api_calls_total",
                    &format!("api=\"{path}\",errcode=\"{code}\""),
                )
                .fetch_add(1, Ordering::Relaxed);
            result
        }
        .instrument(span)
        .await
    }

    async fn call_once(
        &self,
        app_id: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Payload<'_>,
        token: &str,
    ) -> Result<Answer, WechatError> {
        let target = url(&self.inner.api_base, path);
        let request = match body {
            Payload::Empty => self.inner.http.get(target),
            Payload::Json(body) => self.inner.http.post(target).json(body),
            Payload::Multipart(upload) => self.inner.http.post(target).multipart(upload.form()?),
        }
        .query(&[("access_token", token)])
        .query(query);
        self.count_call(app_id, path).await;
        send(request).await
    }

    /// INCR + EXPIRE of today's counter of this API; failures are logged, never returned.
    async fn count_call(&self, app_id: &str, path: &str) {
        let day = wxoa_wire::envelope::utc_day(wxoa_runtime::now_ms());
        let key = keys::api_calls(&self.inner.key_prefix, app_id, &day);
        let mut conn = self.inner.redis.clone();
        let counted: Result<(), redis::RedisError> = redis::pipe()
            .cmd("HINCRBY")
            .arg(&key)
            .arg(path)
            .arg(1)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(API_CALLS_TTL_SECS)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = counted {
            tracing::debug!(error = %e, api = path, "counting the API call failed");
        }
    }

    fn check_app(&self, app_id: &str) -> Result<(), WechatError> {
        if self.inner.apps.contains(app_id) {
            Ok(())
        } else {
            Err(WechatError::UnknownApp(app_id.to_owned()))
        }
    }
}

/// What a call sends.
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// A `GET`.
    Empty,
    /// A `POST` with a JSON body.
    Json(&'a serde_json::Value),
    /// A `POST` with a multipart form.
    Multipart(&'a Upload),
}

/// A file to upload as field `media` of a multipart form.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The file name WeChat sees (its extension is checked).
    pub filename: String,
    /// The MIME type of the part.
    pub content_type: String,
    /// The content.
    pub bytes: bytes::Bytes,
    /// Further text fields, such as `description` for a permanent video.
    pub fields: Vec<(String, String)>,
}

impl Upload {
    fn form(&self) -> Result<reqwest::multipart::Form, WechatError> {
        let part = reqwest::multipart::Part::stream(self.bytes.clone())
            .file_name(self.filename.clone())
            .mime_str(&self.content_type)
            .map_err(|e| WechatError::Decode(format!("content type {}: {e}", self.content_type)))?;
        let form = self
            .fields
            .iter()
            .fold(reqwest::multipart::Form::new(), |form, (name, value)| {
                form.text(name.clone(), value.clone())
            });
        Ok(form.part("media", part))
    }
}

/// Forgets cached values on every `token.refreshed` notice, for as long as the subscription lives.
async fn listen(nats: async_nats::Client, subject: String, cache: Arc<Cache>) {
    let mut subscriber = match nats.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, subject, "cannot subscribe to token refresh notices; tokens are not cached");
            return;
        }
    };
    cache.set_live(true);
    while let Some(message) = subscriber.next().await {
        match serde_json::from_slice::<RefreshedNotice>(&message.payload) {
            Ok(notice) => {
                tracing::debug!(app_id = notice.app_id, kind = %notice.kind, fingerprint = notice.fingerprint, "token refreshed");
                cache.forget(&notice.app_id, notice.kind);
            }
            Err(e) => {
                tracing::warn!(error = %e, subject = %message.subject, "bad token refresh notice")
            }
        }
    }
    cache.set_live(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cache_obeys_notices_and_liveness() {
        let cache = Cache::default();
        let g = cache.generation.load(Ordering::SeqCst);
        cache.put(
            "wx1",
            TokenKind::AccessToken,
            "A",
            Duration::from_secs(10),
            g,
        );
        assert_eq!(
            cache.get("wx1", TokenKind::AccessToken),
            None,
            "not cached before live"
        );
        cache.set_live(true);
        let g = cache.generation.load(Ordering::SeqCst);
        cache.put(
            "wx1",
            TokenKind::AccessToken,
            "A",
            Duration::from_secs(10),
            g,
        );
        assert_eq!(
            cache.get("wx1", TokenKind::AccessToken).as_deref(),
            Some("A")
        );
        assert_eq!(cache.get("wx1", TokenKind::JsapiTicket), None);
        cache.forget("wx1", TokenKind::AccessToken);
        assert_eq!(cache.get("wx1", TokenKind::AccessToken), None);
        // A value read before a notice is not cached after it.
        cache.put(
            "wx1",
            TokenKind::AccessToken,
            "stale",
            Duration::from_secs(10),
            g,
        );
        assert_eq!(cache.get("wx1", TokenKind::AccessToken), None);
        let g = cache.generation.load(Ordering::SeqCst);
        cache.put("wx1", TokenKind::AccessToken, "B", Duration::ZERO, g);
        assert_eq!(
            cache.get("wx1", TokenKind::AccessToken),
            None,
            "no TTL, no cache"
        );
    }
}
