//! The gateway's shared state: apps by appid, the JetStream context, the rendezvous table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use secrecy::ExposeSecret;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::config::GatewayConfig;
use wxoa_wire::crypto::AesKey;

use crate::error::GatewayError;
use crate::rendezvous::Rendezvous;

/// What the gateway needs of one app: its token and key, held once.
pub(crate) struct AppKeys {
    pub(crate) app_id: String,
    pub(crate) token: String,
    pub(crate) aes_key: Option<AesKey>,
    /// The configured original id (`gh_…`): callbacks must name it as ToUserName.
    pub(crate) original_id: Option<String>,
}

/// The outcomes counted in `wxoa_gateway_callbacks_total{outcome=...}`.
pub(crate) const OUTCOMES: &[&str] = &[
    "stored",
    "duplicate",
    "replied",
    "bad_ciphertext",
    "bad_query",
    "bad_xml",
    "bad_signature",
    "stale_timestamp",
    "replayed_nonce",
    "wrong_account",
    "unknown_app",
    "too_large",
    "bad_body",
    "bad_method",
    "unavailable",
    "internal",
];

/// Cloned into every request: one reference count.
#[derive(Clone)]
pub struct GatewayState(Arc<Inner>);

/// What [`GatewayState`] holds.
pub struct Inner {
    apps: HashMap<String, Arc<AppKeys>>,
    pub(crate) client: async_nats::Client,
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) prefix: String,
    pub(crate) instance: String,
    pub(crate) config: GatewayConfig,
    pub(crate) rendezvous: Rendezvous,
    /// Binds plaintext callbacks' signatures to their messages (Redis is connected on the
    /// first plaintext callback: never, with safe-mode apps only).
    pub(crate) nonces: crate::nonce::Nonces,
    /// The warning for replayed plaintext URLs, once a minute.
    pub(crate) replays_logged: wxoa_runtime::telemetry::OncePerMinute,
    metrics: Vec<(&'static str, Arc<AtomicU64>)>,
    health: Health,
    /// `wxoa_gateway_publish_seconds`: the JetStream publish and its PubAck.
    pub(crate) publish_seconds: Arc<wxoa_runtime::admin::Histogram>,
}

impl std::ops::Deref for GatewayState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl GatewayState {
    /// Builds the state from the config and a NATS connection.
    pub fn new(
        config: &Config,
        client: async_nats::Client,
        health: &Health,
        instance: &str,
    ) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|a| {
                let keys = AppKeys {
                    app_id: a.appid.clone(),
                    token: a.token.expose_secret().to_owned(),
                    aes_key: a.aes_key.clone(),
                    original_id: a.original_id_configured.then(|| a.original_id.clone()),
                };
                (a.appid.clone(), Arc::new(keys))
            })
            .collect();
        let metrics = OUTCOMES
            .iter()
            .map(|&o| {
                (
                    o,
                    health.counter("wxoa_gateway_callbacks_total", &format!("outcome=\"{o}\"")),
                )
            })
            .collect();
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(std::time::Duration::from_millis(
            config.gateway.publish_timeout_ms,
        ));
        GatewayState(Arc::new(Inner {
            apps,
            client,
            js,
            prefix: config.nats.prefix.clone(),
            instance: instance.to_owned(),
            config: config.gateway.clone(),
            rendezvous: Rendezvous::default(),
            nonces: crate::nonce::Nonces::new(config),
            replays_logged: wxoa_runtime::telemetry::OncePerMinute::new(),
            metrics,
            health: health.clone(),
            publish_seconds: health.histogram("wxoa_gateway_publish_seconds", ""),
        }))
    }

    /// Counts a request outcome (a label of [`OUTCOMES`]).
    pub(crate) fn count(&self, outcome: &'static str) {
        if let Some((_, counter)) = self.metrics.iter().find(|(o, _)| *o == outcome) {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Counts a stored message by app and type (`wxoa_gateway_messages_total`). The apps are
    /// the configured ones and the types WeChat's, so the label set stays closed.
    pub(crate) fn count_message(&self, app_id: &str, ce_type: &str) {
        let labels = format!("app=\"{app_id}\",type=\"{ce_type}\"");
        self.health
            .counter("wxoa_gateway_messages_total", &labels)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn app(&self, app_id: &str) -> Result<Arc<AppKeys>, GatewayError> {
        self.apps
            .get(app_id)
            .cloned()
            .ok_or(GatewayError::UnknownApp)
    }

    pub(crate) fn check_timestamp(&self, timestamp: &str) -> Result<(), GatewayError> {
        // Digits only, no leading zero: one spelling per second (a signature hashes the parts
        // with no separator, so other spellings would be other strings under one signature).
        let canonical = !timestamp.is_empty()
            && timestamp.bytes().all(|b| b.is_ascii_digit())
            && (timestamp == "0" || !timestamp.starts_with('0'));
        let ts: i64 = timestamp
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or(GatewayError::Param("timestamp"))?;
        let window = self.config.timestamp_window_secs;
        if window > 0 && (wxoa_runtime::now_ms() / 1000).abs_diff(ts) > window {
            return Err(GatewayError::StaleTimestamp);
        }
        Ok(())
    }
}
