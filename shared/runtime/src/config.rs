//! Typed configuration, loaded once: serde defaults → optional TOML file → environment
//! (`WXOA__SECTION__KEY`, `WXOA__APPS__0__APPID` for list items). Every key is documented in
//! `docs/configuration.md`. Secrets are [`SecretString`]s and never appear in `Debug`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use wxoa_wire::crypto::AesKey;

/// The environment variable naming the TOML file.
pub const ENV_CONFIG_FILE: &str = "WXOA_CONFIG";
/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "WXOA__";

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An app entry is invalid.
    #[error("invalid app {appid:?}: {reason}")]
    App {
        /// The app's appid as written.
        appid: String,
        /// What is wrong.
        reason: String,
    },
    /// The merged configuration does not fit the schema.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The TOML file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file is not valid TOML.
    #[error("parsing config file {path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// The whole configuration of a wxoa process; each service reads the sections it needs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// NATS connection and naming.
    #[serde(default)]
    pub nats: NatsConfig,
    /// Redis connection and key naming.
    #[serde(default)]
    pub redis: RedisConfig,
    /// The WeChat API.
    #[serde(default)]
    pub wechat: WechatConfig,
    /// The gateway service.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// The token service.
    #[serde(default)]
    pub token: TokenConfig,
    /// The reply worker and customer-service sender.
    #[serde(default)]
    pub replier: ReplierConfig,
    /// The user-sync worker (follower directory).
    #[serde(default)]
    pub usersync: UsersyncConfig,
    /// The broadcast worker.
    #[serde(default)]
    pub broadcast: BroadcastConfig,
    /// The public web service (OAuth2, JS-SDK).
    #[serde(default)]
    pub web: WebConfig,
    /// The operator HTTP API (`wxoa admin`).
    #[serde(default)]
    pub api: ApiConfig,
    /// The WeChat simulator.
    #[serde(default)]
    pub sim: SimConfig,
    /// The admin server (/livez, /readyz, /metrics).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logs.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The accounts this deployment serves.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// `[nats]`
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL (may carry credentials: shown redacted).
    #[serde(deserialize_with = "string")]
    pub url: String,
    /// Subject prefix; stream names derive from it (`wechat` → `WECHAT_INBOUND`).
    #[serde(deserialize_with = "string")]
    pub prefix: String,
    /// JetStream storage of the streams wxoa creates.
    pub storage: Storage,
    /// The inbound stream's dedupe window, well above WeChat's retry span.
    pub duplicate_window_secs: u64,
    /// How long the inbound stream keeps messages.
    pub max_age_secs: u64,
    /// Stream replicas (1 on a single server).
    pub replicas: usize,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("storage", &self.storage)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("max_age_secs", &self.max_age_secs)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: wxoa_wire::names::DEFAULT_PREFIX.into(),
            storage: Storage::File,
            duplicate_window_secs: 600,
            max_age_secs: 7 * 24 * 3600,
            replicas: 1,
        }
    }
}

/// JetStream storage kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Durable file storage (production).
    File,
    /// Memory storage (tests, demos).
    Memory,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Server URL; secret because it may carry a password.
    #[serde(deserialize_with = "secret")]
    pub url: SecretString,
    /// Key prefix (`<prefix>:{<appid>}:...`).
    #[serde(deserialize_with = "string")]
    pub key_prefix: String,
    /// Redis Cluster mode: `url` lists seed nodes, comma-separated.
    pub cluster: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: SecretString::from("redis://127.0.0.1:6379"),
            key_prefix: wxoa_wire::names::DEFAULT_PREFIX.into(),
            cluster: false,
        }
    }
}

/// `[wechat]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WechatConfig {
    /// Base URL of the REST API (the simulator's in development and tests).
    #[serde(deserialize_with = "string")]
    pub api_base: String,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Base URL of the web-authorization pages users' browsers are sent to (the simulator's in
    /// development and tests).
    #[serde(deserialize_with = "string")]
    pub open_base: String,
}

impl Default for WechatConfig {
    fn default() -> Self {
        WechatConfig {
            api_base: "https://api.weixin.qq.com".into(),
            timeout_ms: 5000,
            open_base: "https://open.weixin.qq.com".into(),
        }
    }
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Listen address of the callback server (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Timeouts and the connection cap of the callback listener (`[gateway.limits]`).
    pub limits: ListenerLimits,
    /// Largest accepted `|now - timestamp|`; at most half of `nats.duplicate_window_secs`. 0 turns the
    /// check off, and is accepted only with `allow_any_timestamp` (to replay recorded traffic).
    pub timestamp_window_secs: u64,
    /// The explicit opt-in to `timestamp_window_secs = 0` (logged at start): with no window a
    /// request of any age is accepted, and a captured plaintext callback URL is refused with
    /// another body only while its binding is kept (2 × `nats.duplicate_window_secs`).
    pub allow_any_timestamp: bool,
    /// Events with a `CreateTime` (unix seconds) before this keep the dedupe key of wxoa
    /// before the event fingerprint, so an upgrade does not store a retry in flight twice
    /// (docs/subjects.md); 0: every event gets the current key.
    pub legacy_event_keys_before: i64,
    /// How long a plaintext callback waits for Redis to bind its `(timestamp, nonce)` to the
    /// message before answering 503.
    pub nonce_timeout_ms: u64,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// How long after receipt a passive reply is still taken; 0 answers `success` right after the
    /// publish is stored.
    pub reply_budget_ms: u64,
    /// How long to wait for JetStream's PubAck before answering 503.
    pub publish_timeout_ms: u64,
    /// This instance's name in reply subjects; empty picks a random one.
    #[serde(deserialize_with = "string")]
    pub instance_id: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: ([0, 0, 0, 0], 8080).into(),
            limits: ListenerLimits::default(),
            timestamp_window_secs: 300,
            allow_any_timestamp: false,
            legacy_event_keys_before: 0,
            nonce_timeout_ms: 1000,
            body_limit_bytes: 64 * 1024,
            reply_budget_ms: 4000,
            publish_timeout_ms: 3000,
            instance_id: String::new(),
        }
    }
}

/// `[gateway.limits]`, `[web.limits]`: what one client may hold of a public HTTP listener
/// (see `docs/configuration.md` for the defaults' reasons). `0` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerLimits {
    /// Longest time from accepting a connection, or from the first byte of a request on a
    /// kept-alive one, to the end of the request head; the connection is then closed.
    pub header_read_timeout_ms: u64,
    /// Longest time from the end of the request head to the end of its body; the request is
    /// then answered 408 and the connection closed.
    pub body_read_timeout_ms: u64,
    /// Longest time a kept-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// Connections open at once; one more is accepted and closed at once (and counted).
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            max_connections: 2048,
        }
    }
}

/// `[token]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Refresh when less than this is left of a token's life.
    pub refresh_ahead_secs: u64,
    /// How often each app's tokens are checked.
    pub check_interval_ms: u64,
    /// The refresh lock's lifetime (longer than one refresh takes).
    pub lock_ttl_ms: u64,
    /// Also keep a jsapi_ticket for every app.
    pub jsapi_ticket: bool,
    /// stable_token force_refresh calls allowed per app and day (WeChat allows 20).
    pub force_refresh_daily_limit: u32,
    /// Least time between two forced refreshes of one app (WeChat asks 30 s).
    pub force_refresh_min_interval_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            refresh_ahead_secs: 240,
            check_interval_ms: 15_000,
            lock_ttl_ms: 30_000,
            jsapi_ticket: true,
            force_refresh_daily_limit: 20,
            force_refresh_min_interval_secs: 30,
        }
    }
}

/// `[replier]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplierConfig {
    /// A TOML rules file loaded at start (see `docs/rules.md`); run-time rules in Redis overlay it.
    pub rules_file: Option<PathBuf>,
    /// How often run-time rules are re-read from Redis even without a change notice.
    pub rules_poll_secs: u64,
    /// Messages handled at once per replica.
    pub concurrency: usize,
    /// Messages per pull request.
    pub batch: usize,
    /// How long JetStream waits for a replica to settle a message before redelivering it.
    pub ack_wait_ms: u64,
    /// Deliveries of a send command before it fails for good.
    pub send_max_deliver: i64,
    /// Customer-service sends per app and second, across every replica (0 = unlimited).
    pub send_rate_per_sec: u32,
    /// How long claims and send results are kept (longer than WeChat's 48 h window).
    pub state_ttl_secs: u64,
    /// A message older than this gets no customer-service fallback (`dropped`): a replier
    /// that starts on a stream with history does not answer old messages.
    pub fallback_max_age_secs: u64,
}

impl Default for ReplierConfig {
    fn default() -> Self {
        ReplierConfig {
            rules_file: None,
            rules_poll_secs: 30,
            concurrency: 256,
            batch: 64,
            ack_wait_ms: 30_000,
            send_max_deliver: 6,
            send_rate_per_sec: 400,
            state_ttl_secs: 3 * 24 * 3600,
            fallback_max_age_secs: 3600,
        }
    }
}

/// `[usersync]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersyncConfig {
    /// WeChat calls per app and second a full sync may make, across every replica (0 = unlimited).
    pub calls_per_sec: u32,
    /// How long a worker holds a full sync without renewing its lease before another takes over.
    pub lease_ms: u64,
    /// How often each replica looks for a full sync to run or resume.
    pub check_interval_ms: u64,
    /// Start a full sync of every app this often (0 = only when asked).
    pub schedule_secs: u64,
    /// How long JetStream waits for a replica to settle an event before redelivering it.
    pub ack_wait_ms: u64,
}

impl Default for UsersyncConfig {
    fn default() -> Self {
        UsersyncConfig {
            calls_per_sec: 200,
            lease_ms: 15_000,
            check_interval_ms: 1_000,
            schedule_secs: 0,
            ack_wait_ms: 30_000,
        }
    }
}

/// `[broadcast]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BroadcastConfig {
    /// Template (and customer-service) sends per app and second, across every replica (0 = unlimited).
    pub sends_per_sec: u32,
    /// Template calls in flight at once per job.
    pub concurrency: usize,
    /// Recipients per checkpoint.
    pub window: usize,
    /// How long a worker holds a job without renewing its lease before another takes over.
    pub lease_ms: u64,
    /// How often each replica looks for a job to run or resume.
    pub check_interval_ms: u64,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        BroadcastConfig {
            sends_per_sec: 200,
            concurrency: 64,
            window: 500,
            lease_ms: 15_000,
            check_interval_ms: 1_000,
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address of the operator API.
    pub listen: SocketAddr,
    /// Bearer tokens that may call it (compared in constant time); none: every call is 401.
    pub tokens: Vec<SecretString>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8091".parse().expect("a valid address"),
            tokens: Vec::new(),
        }
    }
}

/// `[web]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Listen address of the public web service.
    pub listen: SocketAddr,
    /// Timeouts and the connection cap of its listener (`[web.limits]`).
    pub limits: ListenerLimits,
    /// Its URL as browsers see it (the OAuth2 `redirect_uri` is built from it); empty: the
    /// listen address over http.
    #[serde(deserialize_with = "string")]
    pub public_url: String,
    /// Where OAuth2 may send users back: absolute URL prefixes (`https://shop.example.com/a`),
    /// matched by origin and at a path boundary (`/a` allows `/a` and `/a/…`, not `/abc`).
    /// URLs on this service (`public_url`'s origin) are always allowed.
    pub return_urls: Vec<String>,
    /// Origins allowed to call `/jssdk/config` from a browser (`https://shop.example.com`):
    /// they get CORS headers; other origins get 403. Requests without an `Origin` header (same
    /// origin, servers) are always served.
    pub allowed_origins: Vec<String>,
    /// The key that signs OAuth2 `state`s, login cookies and session tokens; every replica
    /// needs the same one. Required: empty is refused at start unless `demo` is on (then a
    /// random key per process).
    pub session_secret: SecretString,
    /// How long a session token is valid.
    pub session_ttl_secs: u64,
    /// Serve the demo page at `/demo` (for `wxoa dev`); also allows an empty `session_secret`.
    pub demo: bool,
    /// The longest `return` URL `/oauth/<appid>/start` accepts, in bytes (it travels in the
    /// login cookie; at most 2048).
    pub max_return_len: usize,
    /// `/oauth/<appid>/start` requests a client may make per minute (per replica; a client is
    /// an IPv4 address or an IPv6 /64). 0: no limit.
    pub start_per_client_per_min: u32,
    /// Logins an app keeps pending (started, not finished, unexpired) at once; when full the
    /// oldest make room, so a flood cannot lock users out of `/start`. Each costs Redis about
    /// 130 bytes (50,000: 6.7 MB).
    pub max_pending_per_app: u64,
    /// Reverse proxies (IP addresses or CIDRs, `10.0.0.0/8`) whose `X-Forwarded-For` is
    /// believed: the client is the rightmost hop that is not one of them. Empty: the peer
    /// address is the client and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8090".parse().expect("a valid address"),
            limits: ListenerLimits::default(),
            public_url: String::new(),
            return_urls: Vec::new(),
            allowed_origins: Vec::new(),
            session_secret: SecretString::from(String::new()),
            session_ttl_secs: 3600,
            demo: false,
            max_return_len: 1024,
            start_per_client_per_min: 60,
            max_pending_per_app: 50_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[sim]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Listen address of the simulator (REST API and `/_sim/` control API).
    pub listen: SocketAddr,
    /// Where the simulator POSTs callbacks (the gateway's base URL).
    #[serde(deserialize_with = "string")]
    pub gateway_url: String,
    /// How long a replaced cgi-bin/token token stays valid (WeChat: 300 s).
    pub token_overlap_secs: u64,
    /// `expires_in` of the tokens and tickets it issues.
    pub token_ttl_secs: u64,
    /// Callback timeout (WeChat: 5 s).
    pub callback_timeout_ms: u64,
    /// Callback tries (WeChat: 3).
    pub callback_tries: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: ([127, 0, 0, 1], 9100).into(),
            gateway_url: "http://127.0.0.1:8080".into(),
            token_overlap_secs: 300,
            token_ttl_secs: 7200,
            callback_timeout_ms: 5000,
            callback_tries: 3,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address of /livez, /readyz and /metrics; absent turns the admin server off.
    pub listen: Option<SocketAddr>,
    /// Time in-flight work gets to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(([0, 0, 0, 0], 9090).into()),
            shutdown_grace_secs: 10,
        }
    }
}

/// `[telemetry]`
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub log_format: LogFormat,
    /// The default filter when `RUST_LOG` is unset.
    #[serde(deserialize_with = "string")]
    pub log_filter: String,
    /// Where traces go by OTLP/HTTP (`http://collector:4318`); none: traces off. Also
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// The service name in traces (default `wxoa-<service>`). Also `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            // A collector URL may carry credentials too.
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint.as_deref().map(redact_url),
            )
            .field("service_name", &self.service_name)
            .finish()
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Auto,
            log_filter: "info".into(),
            otlp_endpoint: None,
            service_name: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// One `[[apps]]` entry: an Official Account this deployment serves.
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawApp")]
pub struct AppConfig {
    /// The AppID (`wx…`).
    pub appid: String,
    /// The AppSecret.
    pub secret: SecretString,
    /// The callback Token (signatures).
    pub token: SecretString,
    /// The EncodingAESKey, decoded; absent for plaintext mode.
    pub aes_key: Option<AesKey>,
    /// The account's original id (`gh_…`), used by the simulator as ToUserName.
    pub original_id: String,
    /// True when `original_id` was configured (not derived from the appid): the gateway then
    /// refuses callbacks whose ToUserName is another account's.
    pub original_id_configured: bool,
    /// Subscription or service account.
    pub kind: AccountKind,
    /// Verified (认证) accounts may use customer-service messages and more.
    pub verified: bool,
    /// Which token API the token service uses.
    pub token_api: TokenApi,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("appid", &self.appid)
            .field("secret", &"<redacted>")
            .field("token", &"<redacted>")
            .field("aes_key", &self.aes_key.as_ref().map(|_| "<redacted>"))
            .field("original_id", &self.original_id)
            .field("original_id_configured", &self.original_id_configured)
            .field("kind", &self.kind)
            .field("verified", &self.verified)
            .field("token_api", &self.token_api)
            .finish()
    }
}

/// Subscription (订阅号) or service (服务号) account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// 订阅号.
    Subscription,
    /// 服务号.
    #[default]
    Service,
}

/// The token API the token service calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenApi {
    /// `POST /cgi-bin/stable_token` (recommended: independent of other callers).
    #[default]
    Stable,
    /// `GET /cgi-bin/token` (each call replaces the previous token after an overlap).
    Classic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    #[serde(deserialize_with = "string")]
    appid: String,
    #[serde(deserialize_with = "secret")]
    secret: SecretString,
    #[serde(deserialize_with = "secret")]
    token: SecretString,
    #[serde(default, deserialize_with = "opt_secret")]
    encoding_aes_key: Option<SecretString>,
    #[serde(default, deserialize_with = "string")]
    original_id: String,
    #[serde(default)]
    kind: AccountKind,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    token_api: TokenApi,
}

impl TryFrom<RawApp> for AppConfig {
    type Error = String;

    fn try_from(raw: RawApp) -> Result<Self, String> {
        if !wxoa_wire::names::is_token(&raw.appid) {
            return Err(format!("appid {:?} must be [A-Za-z0-9_-]+", raw.appid));
        }
        if raw.token.expose_secret().is_empty() {
            return Err(format!("app {}: token must not be empty", raw.appid));
        }
        let aes_key = match raw
            .encoding_aes_key
            .as_ref()
            .map(|k| k.expose_secret().trim())
        {
            None | Some("") => None,
            Some(key) => Some(
                AesKey::from_encoding_aes_key(key)
                    .map_err(|e| format!("app {}: encoding_aes_key: {e}", raw.appid))?,
            ),
        };
        let original_id_configured = !raw.original_id.is_empty();
        let original_id = if raw.original_id.is_empty() {
            format!("gh_{}", raw.appid.trim_start_matches("wx"))
        } else {
            raw.original_id
        };
        Ok(AppConfig {
            appid: raw.appid,
            secret: raw.secret,
            token: raw.token,
            aes_key,
            original_id,
            original_id_configured,
            kind: raw.kind,
            verified: raw.verified,
            token_api: raw.token_api,
        })
    }
}

impl Config {
    /// Loads from the process: `--config` (or `WXOA_CONFIG`) and `WXOA__*` variables.
    #[allow(clippy::disallowed_methods)] // the one place that reads the environment
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let from_env = env.get(ENV_CONFIG_FILE).map(PathBuf::from);
        Config::load_from(file.or(from_env.as_deref()), &env)
    }

    /// Loads from an explicit file and variable set (tests pass a map, never the process env).
    pub fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut root = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Toml {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        // OpenTelemetry's standard variables, under WXOA__TELEMETRY__* (which override them).
        for (var, key) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"),
            ("OTEL_SERVICE_NAME", "service_name"),
        ] {
            if let Some(value) = env.get(var).filter(|v| !v.trim().is_empty()) {
                let path = ["telemetry".to_owned(), key.to_owned()];
                set_path(&mut root, &path, toml::Value::String(value.clone()))?;
            }
        }
        let mut vars: Vec<(&String, &String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (key, value) in vars {
            let path: Vec<String> = key[ENV_PREFIX.len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect();
            set_path(&mut root, &path, env_value(value))?;
        }
        Config::from_table(root)
    }

    /// Parses a TOML document (the file layer alone).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Config::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        let mut seen = std::collections::HashSet::new();
        for app in &config.apps {
            if !seen.insert(&app.appid) {
                return Err(ConfigError::App {
                    appid: app.appid.clone(),
                    reason: "listed twice".into(),
                });
            }
        }
        let gateway = &config.gateway;
        if gateway.timestamp_window_secs == 0 && !gateway.allow_any_timestamp {
            return Err(ConfigError::Invalid(
                "gateway.timestamp_window_secs = 0 turns the replay window off; set \
                 gateway.allow_any_timestamp = true to mean it"
                    .into(),
            ));
        }
        // |now - timestamp| <= W accepts one request over a span of 2W (a sender's clock
        // ahead, then behind): JetStream must remember its id that long.
        if 2 * gateway.timestamp_window_secs > config.nats.duplicate_window_secs {
            return Err(ConfigError::Invalid(format!(
                "gateway.timestamp_window_secs ({}) must be at most half of \
                 nats.duplicate_window_secs ({}): a request is accepted over twice the window, and \
                 one accepted after its dedupe id was forgotten would be stored twice",
                gateway.timestamp_window_secs, config.nats.duplicate_window_secs
            )));
        }
        // Seconds, not milliseconds: a value in ms would key every event by the old rule.
        if !(0..100_000_000_000).contains(&gateway.legacy_event_keys_before) {
            return Err(ConfigError::Invalid(format!(
                "gateway.legacy_event_keys_before ({}) is unix seconds (0 or up to 11 digits)",
                gateway.legacy_event_keys_before
            )));
        }
        if !config
            .nats
            .prefix
            .split('.')
            .all(wxoa_wire::names::is_token)
        {
            return Err(ConfigError::Invalid(format!(
                "nats.prefix {:?} must be dot-separated [A-Za-z0-9_-]+ tokens",
                config.nats.prefix
            )));
        }
        Ok(config)
    }

    /// The app with this appid.
    pub fn app(&self, appid: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.appid == appid)
    }
}

/// An env value as TOML: numbers and booleans typed, everything else a string.
fn env_value(raw: &str) -> toml::Value {
    // Only canonical forms are typed: "012345" or "+5" stay strings (a token keeps its zeros).
    if let Ok(v) = raw.parse::<i64>()
        && v.to_string() == raw
    {
        return toml::Value::Integer(v);
    }
    if let Ok(v) = raw.parse::<bool>() {
        return toml::Value::Boolean(v);
    }
    toml::Value::String(raw.to_owned())
}

/// A URL, or a comma-separated list of URLs (`nats://a:pw@h1:4222,nats://b:pw@h2:4222`,
/// `a:pw@h1,b:pw@h2`), with every `user:password@` part replaced by `<redacted>@`, for logs
/// and errors. The password may hold any character: everything up to the last `@` of an item
/// is hidden, and an item without a scheme joins the one before it unless that one already
/// had its `@` (a `,` inside a password then hides the host beside it too, never a fragment
/// of the password, unless the password holds both `@` and `,`: `u:p@q,r@h` reads as two
/// items and shows `q`). `user=`, `pass=` and `password=` query values (`redis+unix://`, in any
/// case) are hidden as well.
pub fn redact_url(url: &str) -> String {
    // Items: a piece after a ',' starts a new item when it has a scheme or the item before it
    // already ended its userinfo; otherwise the ',' was inside the userinfo.
    let mut items: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, _) in url.match_indices(',') {
        let next = &url[i + 1..];
        let current = &url[start..i];
        if has_scheme(next.trim_start()) || current.contains('@') {
            items.push(current);
            start = i + 1;
        }
    }
    items.push(&url[start..]);
    items
        .into_iter()
        .map(redact_item)
        .collect::<Vec<_>>()
        .join(",")
}

/// `scheme://` at the start (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn has_scheme(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

fn redact_item(item: &str) -> String {
    let lead = &item[..item.len() - item.trim_start().len()];
    let item = item.trim_start();
    let (scheme, rest) = match item.split_once("://") {
        Some((scheme, rest)) if has_scheme(item) => (&item[..scheme.len() + 3], rest),
        _ => ("", item),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if ["user", "pass", "password"]
                            .contains(&key.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{key}=<redacted>")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{lead}{scheme}{rest}")
}

fn set_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let (head, rest) = path
        .split_first()
        .ok_or_else(|| ConfigError::Invalid("empty key".into()))?;
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    let entry = table.entry(head.clone()).or_insert_with(|| {
        if rest[0].parse::<usize>().is_ok() {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    match entry {
        toml::Value::Table(t) => set_path(t, rest, value),
        toml::Value::Array(items) => {
            let index: usize = rest[0].parse().map_err(|_| {
                ConfigError::Invalid(format!("{head}: {} is not an index", rest[0]))
            })?;
            while items.len() <= index {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            match &mut items[index] {
                toml::Value::Table(t) if rest.len() > 1 => set_path(t, &rest[1..], value),
                slot => {
                    *slot = value;
                    Ok(())
                }
            }
        }
        _ => Err(ConfigError::Invalid(format!("{head} is not a section"))),
    }
}

/// A string that may have been written as a number (an env `WXOA__APPS__0__TOKEN=123456`).
fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        B(bool),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::S(s) => s,
        Lenient::I(i) => i.to_string(),
        Lenient::B(b) => b.to_string(),
    })
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    string(d).map(SecretString::from)
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    secret(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [nats]
        prefix = "t1"
        [gateway]
        timestamp_window_secs = 0
        allow_any_timestamp = true
        [[apps]]
        appid = "wx1"
        secret = "s3cret-value"
        token = "tok"
        encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    "#;

    #[test]
    fn layers_defaults_file_env() {
        let dir = std::env::temp_dir().join(format!("wxoa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, FILE).unwrap();
        let env: HashMap<String, String> = [
            ("WXOA__GATEWAY__LISTEN", "127.0.0.1:0"),
            ("WXOA__APPS__0__TOKEN", "0123456"),
            ("WXOA__GATEWAY__INSTANCE_ID", "3"),
            ("WXOA__NATS__URL", "nats://user:pw@n:4222"),
            ("WXOA__APPS__1__APPID", "wx2"),
            ("WXOA__APPS__1__SECRET", "x"),
            ("WXOA__APPS__1__TOKEN", "y"),
            ("UNRELATED", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = Config::load_from(Some(&path), &env).unwrap();
        assert_eq!(c.nats.prefix, "t1");
        assert_eq!(c.nats.duplicate_window_secs, 600);
        assert_eq!(c.gateway.timestamp_window_secs, 0);
        assert_eq!(c.gateway.listen.port(), 0);
        assert_eq!(c.apps.len(), 2);
        assert_eq!(c.apps[0].token.expose_secret(), "0123456");
        assert_eq!(c.gateway.instance_id, "3");
        assert!(format!("{:?}", c.nats).contains("<redacted>@n:4222"));
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert!(c.apps[0].aes_key.is_some() && c.apps[1].aes_key.is_none());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret-value") && !debug.contains("123456"),
            "{debug}"
        );
    }

    #[test]
    fn web_defences_have_defaults_and_keys() {
        let web = Config::from_toml("").unwrap().web;
        assert_eq!(
            (
                web.max_return_len,
                web.start_per_client_per_min,
                web.max_pending_per_app
            ),
            (1024, 60, 50_000)
        );
        assert!(web.trusted_proxies.is_empty() && !web.demo);
        let web = Config::from_toml(
            "[web]\nmax_return_len = 512\nstart_per_client_per_min = 0\nmax_pending_per_app = 10\ntrusted_proxies = ['10.0.0.0/8']",
        )
        .unwrap()
        .web;
        assert_eq!(web.max_return_len, 512);
        assert_eq!(web.start_per_client_per_min, 0);
        assert_eq!(web.max_pending_per_app, 10);
        assert_eq!(web.trusted_proxies, ["10.0.0.0/8"]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = Config::from_toml("[[apps]]\nappid='wx.1'\nsecret='s'\ntoken='t'").unwrap_err();
        assert!(err.to_string().contains("appid"), "{err}");
        let err = Config::from_toml(
            "[[apps]]\nappid='wx1'\nsecret='s'\ntoken='t'\nencoding_aes_key='short'",
        )
        .unwrap_err();
        assert!(err.to_string().contains("40004"), "{err}");
        assert!(Config::from_toml("[gateway]\nlisten_typo = 1").is_err());
        assert!(Config::from_toml("[web]\nmax_return_len = 'long'").is_err());
        assert!(Config::from_toml("[nats]\nprefix='a b'").is_err());
    }

    #[test]
    fn the_replay_window_fits_the_dedupe_window_and_is_off_only_on_purpose() {
        let err = Config::from_toml("[gateway]\ntimestamp_window_secs = 0").unwrap_err();
        assert!(err.to_string().contains("allow_any_timestamp"), "{err}");
        let c =
            Config::from_toml("[gateway]\ntimestamp_window_secs = 0\nallow_any_timestamp = true")
                .unwrap();
        assert_eq!(c.gateway.timestamp_window_secs, 0);
        let err = Config::from_toml(
            "[nats]\nduplicate_window_secs = 599\n[gateway]\ntimestamp_window_secs = 300",
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate_window_secs"), "{err}");
        assert!(
            Config::from_toml(
                "[nats]\nduplicate_window_secs = 600\n[gateway]\ntimestamp_window_secs = 300"
            )
            .is_ok()
        );
        let err =
            Config::from_toml("[gateway]\nlegacy_event_keys_before = 1764000000000").unwrap_err();
        assert!(err.to_string().contains("unix seconds"), "{err}");
        assert!(Config::from_toml("[gateway]\nlegacy_event_keys_before = 1764000000").is_ok());
        // original_id: configured or derived.
        let c = Config::from_toml(
            "[[apps]]\nappid='wx1'\nsecret='s'\ntoken='t'\n[[apps]]\nappid='wx2'\nsecret='s'\ntoken='t'\noriginal_id='gh_2'",
        )
        .unwrap();
        assert!(!c.apps[0].original_id_configured);
        assert_eq!(c.apps[0].original_id, "gh_1");
        assert!(c.apps[1].original_id_configured);
    }

    #[test]
    fn the_collector_url_is_redacted_in_debug() {
        let c = Config::from_toml("[telemetry]\notlp_endpoint = 'http://u:collector-pw@otel:4318'")
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("collector-pw"), "{shown}");
        assert!(shown.contains("otel:4318"), "{shown}");
    }

    /// Every form of credentials in a NATS or Redis URL (or a comma-separated list of them) is
    /// hidden, and nothing else is changed.
    #[test]
    fn redact_url_hides_credentials_in_every_form() {
        let cases: &[(&str, &str)] = &[
            // no credentials: unchanged
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "nats://h1:4222,nats://h2:4222",
                "nats://h1:4222,nats://h2:4222",
            ),
            ("h1:4222,h2:4222", "h1:4222,h2:4222"),
            ("", ""),
            // one URL
            ("nats://user:pw@n:4222", "nats://<redacted>@n:4222"),
            ("nats://s3cr3t-token@n:4222", "nats://<redacted>@n:4222"),
            ("redis://:pw@h:6379/0", "redis://<redacted>@h:6379/0"),
            (
                "rediss://u:pw@h:6380/1?protocol=resp3",
                "rediss://<redacted>@h:6380/1?protocol=resp3",
            ),
            // a '/' in the password
            ("redis://:pa/ss@host:6379", "redis://<redacted>@host:6379"),
            (
                "redis://:pa/ss@host:6379/2",
                "redis://<redacted>@host:6379/2",
            ),
            ("nats://u:a/b/c@h:4222", "nats://<redacted>@h:4222"),
            // '@', '?', '#' and ':' in the password
            ("nats://u:p@ss@h:4222", "nats://<redacted>@h:4222"),
            ("redis://:p?a#s:s@h:6379", "redis://<redacted>@h:6379"),
            // lists, with and without schemes, mixed
            (
                "nats://a:pw@h1:4222,nats://b:pw2@h2:4222",
                "nats://<redacted>@h1:4222,nats://<redacted>@h2:4222",
            ),
            ("a:pw@h1,b:pw@h2", "<redacted>@h1,<redacted>@h2"),
            (
                "a:pw@h1:4222, b:pw@h2:4222",
                "<redacted>@h1:4222, <redacted>@h2:4222",
            ),
            (
                "nats://h1:4222,nats://b:pw2@h2:4222",
                "nats://h1:4222,nats://<redacted>@h2:4222",
            ),
            (
                "redis://:p/w@a:6379,redis://:p@w@b:6379",
                "redis://<redacted>@a:6379,redis://<redacted>@b:6379",
            ),
            // a ',' in a password: never shown, even if a host is hidden with it
            ("nats://a:p,w@h1:4222", "nats://<redacted>@h1:4222"),
            ("a:p,w@h1,h2", "<redacted>@h1,h2"),
            ("h1:4222,b:p,w@h2", "<redacted>@h2"),
            (
                "nats://a:p,w@h1:4222,nats://b:x@h2",
                "nats://<redacted>@h1:4222,nats://<redacted>@h2",
            ),
            // redis+unix: credentials in the query
            (
                "redis+unix:///run/redis.sock?db=1&user=u&pass=pw",
                "redis+unix:///run/redis.sock?db=1&user=<redacted>&pass=<redacted>",
            ),
            (
                "redis+unix:///run/redis.sock?Password=pw",
                "redis+unix:///run/redis.sock?Password=<redacted>",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(&redact_url(url), want, "redact_url({url:?})");
        }
        // No password (nor a fragment of one) is left in any output.
        for (url, _) in cases {
            let shown = redact_url(url);
            for secret in [
                "pw", "pa/ss", "p@ss", "s3cr3t", "a/b/c", "p?a#s", "p,w", "p/w",
            ] {
                assert!(!shown.contains(secret), "{url:?} shows {secret:?}: {shown}");
            }
        }
    }
}
