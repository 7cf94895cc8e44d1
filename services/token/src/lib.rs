//! The token service: the only caller of WeChat's token and ticket endpoints.
//!
//! For every configured app it keeps the access_token (and, with `token.jsapi_ticket`, the
//! JS-SDK jsapi_ticket) in Redis (`keys::access_token`, `keys::jsapi_ticket`) with a TTL shorter
//! than WeChat's `expires_in`, refreshing ahead of expiry under a Redis lock so that any number
//! of replicas make exactly one upstream call. Every new value is announced on
//! `<prefix>.<appid>.token.refreshed` ([`wxoa_wire::token::RefreshedNotice`], a fingerprint,
//! never the token). It answers `<prefix>.<appid>.token.invalidate` requests (queue group
//! `wxoa-token`) with compare-and-refresh: only a token that is still the current one is
//! replaced, so a storm of invalidations costs one upstream call; forced stable_token refreshes
//! stay within a daily budget and a least interval (`token.force_refresh_*`).
//!
//! It does not call any other WeChat API, hand tokens to anyone over NATS, or log a token or
//! secret (it logs fingerprints). Readers use `wxoa_wechat::WechatClient`.
//!
//! # How one refresh is guaranteed
//! Every write happens under the app's in-process mutex and its Redis lock
//! (`keys::token_lock`: `SET NX PX token.lock_ttl_ms` with a random value, released by a
//! compare-and-delete script), and only after re-reading Redis once both are held. The refresh
//! loop skips a tick when either is taken; an invalidation request waits for them (up to
//! [`INVALIDATE_LOCK_WAIT`]) but answers `already_refreshed` as soon as the value in Redis no
//! longer has the rejected fingerprint.
//!
//! # Metrics (on the process's [`Health`])
//! - `wxoa_token_check_total{outcome="fresh|refreshed|busy|error"}`: refresh-loop ticks.
//! - `wxoa_token_fetch_total{kind="access_token|jsapi_ticket",outcome="ok|error"}`: WeChat calls.
//! - `wxoa_token_invalidate_total{status="refreshed|already_refreshed|throttled|failed"}`.
//!
//! # Layout
//! - [`App`]: build, then [`App::run`] until cancelled.
//! - [`policy`]: pure decisions (key TTL, when to refresh, the force-refresh budget).
//! - [`TokenError`]: every failure.

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wxoa_runtime::Config;
use wxoa_runtime::admin::{Health, Latch};
use wxoa_wire::names::{queues, subjects};
use wxoa_wire::token::{InvalidateRequest, InvalidateResponse, InvalidateStatus};

mod error;
pub mod policy;
mod refresh;
mod store;

pub use error::TokenError;
pub use refresh::INVALIDATE_LOCK_WAIT;

/// The most invalidation requests answered at once by one process.
pub const MAX_IN_FLIGHT: usize = 256;

/// The token service, connected and not yet running.
pub struct App {
    refresher: Arc<refresh::Refresher>,
    nats: async_nats::Client,
    health: Health,
    started: Latch,
    grace: Duration,
    invalidate_subject: String,
}

impl App {
    /// Connects to NATS and Redis (registering both with `health` for readiness).
    pub async fn build(config: &Config, health: Health) -> Result<App, TokenError> {
        let (nats, redis) = wxoa_runtime::connect::watched(config, "wxoa-token", &health).await?;
        App::from_parts(config, nats, redis, health)
    }

    /// Uses ready-made connections (tests; `wxoa dev`). [`App::run`] flushes `nats` when it
    /// ends but does not close or drain it, so the client may be shared.
    pub fn from_parts(
        config: &Config,
        nats: async_nats::Client,
        redis: wxoa_runtime::connect::RedisConn,
        health: Health,
    ) -> Result<App, TokenError> {
        Ok(App {
            refresher: Arc::new(refresh::Refresher::new(
                config,
                nats.clone(),
                redis,
                health.clone(),
            )),
            invalidate_subject: subjects::token_invalidate_all(&config.nats.prefix),
            started: health.latch(),
            nats,
            health,
            grace: Duration::from_secs(config.admin.shutdown_grace_secs),
        })
    }

    /// Subscribes to invalidation requests (then the process may become ready), runs one refresh
    /// loop per app and answers requests until `shutdown`; then stops taking requests, answers
    /// those already received and waits (up to `admin.shutdown_grace_secs`) for work in flight.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), TokenError> {
        let App {
            refresher,
            nats,
            health,
            started,
            grace,
            invalidate_subject,
        } = self;
        let requests =
            wxoa_runtime::responder::subscribe(&nats, &invalidate_subject, queues::TOKEN)
                .await
                .map_err(|e| TokenError::Subscribe {
                    subject: e.subject,
                    message: e.message,
                })?;
        health.stopping_on(&shutdown);
        started.release();
        tracing::info!(apps = refresher.app_ids().len(), subject = %invalidate_subject, "token service running");

        let stop = shutdown.child_token();
        let tracker = TaskTracker::new();
        for app_id in refresher.app_ids() {
            tracker.spawn(refresher.clone().refresh_loop(app_id, stop.clone()));
        }
        let responder = refresher.clone();
        let served = wxoa_runtime::responder::serve(
            nats,
            requests,
            stop.clone(),
            grace,
            MAX_IN_FLIGHT,
            move |message| respond(responder.clone(), message),
        )
        .await;

        health.stopping();
        stop.cancel();
        tracing::info!("token service stopping");
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "work in flight did not finish within the grace period"
            );
        }
        served.map_err(|e| TokenError::Subscribe {
            subject: invalidate_subject,
            message: e.message,
        })
    }
}

/// Decodes one invalidation request and computes its answer.
async fn respond(
    refresher: Arc<refresh::Refresher>,
    message: async_nats::Message,
) -> Option<bytes::Bytes> {
    let answer = match (
        subjects::app_id_of(refresher.nats_prefix(), &message.subject),
        serde_json::from_slice::<InvalidateRequest>(&message.payload),
    ) {
        (Some(app_id), Ok(request)) => refresher.invalidate(app_id, &request).await,
        (None, _) => {
            InvalidateResponse::with_error(InvalidateStatus::Failed, "no appid in the subject")
        }
        (_, Err(e)) => {
            InvalidateResponse::with_error(InvalidateStatus::Failed, format!("bad request: {e}"))
        }
    };
    serde_json::to_vec(&answer).ok().map(Into::into)
}
