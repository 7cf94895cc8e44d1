//! The gateway: WeChat's callback endpoint.
//!
//! It verifies signatures (plaintext, compatible and safe mode), decrypts, parses the XML and
//! publishes every message and event to the JetStream stream `WECHAT_INBOUND`, deduplicated by
//! `Nats-Msg-Id`. It answers WeChat only after the PubAck (NATS down → 503, never `success`
//! for a message not stored), then returns a passive reply if one arrives through the reply
//! rendezvous before the budget is spent, else `success`. It does no business work itself.
//!
//! # Layout
//! - [`callback`]: the HTTP handlers.
//! - `rendezvous`: the passive-reply table and its NATS subscription.
//! - `nonce`: replay protection for plaintext callbacks (Redis).
//! - [`state`]: apps, JetStream, metrics.
//! - [`error`]: [`GatewayError`] and its one mapping to HTTP.

#![warn(missing_docs)]

pub mod callback;
pub mod error;
mod nonce;
mod rendezvous;
pub mod state;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_wire::names::subjects;

pub use error::GatewayError;
pub use state::GatewayState;

/// The callback router.
pub fn router(state: GatewayState) -> Router {
    let limit = state.config.body_limit_bytes;
    Router::new()
        .route(
            "/wechat/{appid}",
            get(callback::verify_url)
                .post(callback::receive)
                .fallback(callback::other_method),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A built gateway: connected, stream provisioned, listener bound.
pub struct App {
    state: GatewayState,
    listener: tokio::net::TcpListener,
    subscriber: async_nats::Subscriber,
    health: Health,
}

impl App {
    /// Connects to NATS from the config and builds the gateway.
    pub async fn build(config: &Config, health: Health) -> Result<App, GatewayError> {
        let client = wxoa_runtime::connect::nats(&config.nats, "wxoa-gateway").await?;
        App::from_parts(config, client, health).await
    }

    /// Builds the gateway on a ready NATS connection: provisions the inbound stream,
    /// subscribes to this instance's reply subjects and binds the listener.
    pub async fn from_parts(
        config: &Config,
        client: async_nats::Client,
        health: Health,
    ) -> Result<App, GatewayError> {
        let latch = health.latch();
        health.watch_nats(&client);
        let instance = match config.gateway.instance_id.as_str() {
            "" => format!("{:08x}", rand::random::<u32>()),
            id => wxoa_wire::names::token(id),
        };
        // Plaintext callbacks need Redis for their nonces (connected on first use, never part
        // of readiness); a deployment of safe-mode apps only does not.
        for app in config.apps.iter().filter(|a| a.aes_key.is_none()) {
            tracing::warn!(
                app_id = %app.appid,
                "app in plaintext mode: WeChat's signature does not cover the body, so wxoa binds \
                 each signature to one message in Redis; configure an EncodingAESKey (safe mode) \
                 to have bodies signed"
            );
        }
        if config.gateway.timestamp_window_secs == 0 {
            tracing::warn!(
                "gateway.timestamp_window_secs = 0 (allow_any_timestamp): callbacks of any age are \
                 accepted; a plaintext URL is refused with another body only while its binding is \
                 kept (2 × nats.duplicate_window_secs), then usable again"
            );
        }
        if config.gateway.legacy_event_keys_before > 0 {
            tracing::info!(
                legacy_event_keys_before = config.gateway.legacy_event_keys_before,
                "events created before this unix time keep the legacy dedupe key (upgrade cut-over)"
            );
        }
        let state = GatewayState::new(config, client.clone(), &health, &instance);
        wxoa_runtime::connect::inbound_stream(&state.js, &config.nats).await?;
        let subscriber = client
            .subscribe(subjects::reply_listen(&config.nats.prefix, &instance))
            .await
            .map_err(|e| GatewayError::Publish(e.to_string()))?;
        let listener = wxoa_runtime::serve::bind(config.gateway.listen)?;
        tracing::info!(addr = %listener.local_addr()?, instance = %instance, "gateway listening");
        latch.release();
        Ok(App {
            state,
            listener,
            subscriber,
            health,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown`: then stops accepting, lets in-flight callbacks finish and
    /// drains the NATS connection.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), GatewayError> {
        let App {
            state,
            listener,
            subscriber,
            health,
        } = self;
        let client = state.client.clone();
        // The rendezvous outlives the HTTP drain, so in-flight callbacks can still get replies.
        let stop_replies = CancellationToken::new();
        let replies = tokio::spawn(state.rendezvous.clone().serve(
            state.prefix.clone(),
            client.clone(),
            subscriber,
            stop_replies.clone(),
        ));
        let stop = shutdown.clone();
        wxoa_runtime::serve::serve(
            listener,
            state.config.limits,
            router(state),
            "gateway",
            health.clone(),
            async move {
                stop.cancelled().await;
                health.stopping();
            },
        )
        .await?;
        stop_replies.cancel();
        let _ = replies.await;
        let _ = client.drain().await;
        Ok(())
    }
}
