//! The refresher: keeps each app's access_token and jsapi_ticket in Redis, and answers
//! invalidation requests with compare-and-refresh.
//!
//! Exactly one refresh happens however many replicas and requests there are, because every
//! write happens (1) under the app's in-process mutex, (2) under the app's Redis lock, and
//! (3) only after re-reading the current value once both are held.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::config::{AppConfig, TokenApi, TokenConfig};
use wxoa_wechat::token_api::{self, Issued};
use wxoa_wechat::{ErrorClass, WechatError};
use wxoa_wire::names::subjects;
use wxoa_wire::token::{
    InvalidateRequest, InvalidateResponse, InvalidateStatus, RefreshedNotice, TokenKind,
    fingerprint,
};

use crate::error::TokenError;
use crate::policy::{ForceDecision, force_decision, key_ttl_ms, needs_refresh};
use crate::store::{Lock, Store};

/// The longest an invalidation request waits for the Redis lock (callers wait 5 s in all).
pub const INVALIDATE_LOCK_WAIT: Duration = Duration::from_secs(3);

/// How often a waiting request retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(25);

/// One app and its in-process single-flight mutex.
struct AppSlot {
    config: AppConfig,
    local: tokio::sync::Mutex<()>,
}

/// Shared by the refresh loops and the invalidation responders of one process.
pub(crate) struct Refresher {
    settings: TokenConfig,
    api_base: String,
    http: reqwest::Client,
    store: Store,
    nats: async_nats::Client,
    nats_prefix: String,
    apps: HashMap<String, AppSlot>,
    health: Health,
}

impl Refresher {
    pub(crate) fn new(
        config: &Config,
        nats: async_nats::Client,
        redis: wxoa_runtime::connect::RedisConn,
        health: Health,
    ) -> Refresher {
        Refresher {
            settings: config.token.clone(),
            api_base: config.wechat.api_base.clone(),
            http: wxoa_wechat::http_client(&config.wechat),
            store: Store::new(redis, &config.redis.key_prefix),
            nats,
            nats_prefix: config.nats.prefix.clone(),
            apps: config
                .apps
                .iter()
                .map(|a| {
                    (
                        a.appid.clone(),
                        AppSlot {
                            config: a.clone(),
                            local: tokio::sync::Mutex::new(()),
                        },
                    )
                })
                .collect(),
            health,
        }
    }

    pub(crate) fn nats_prefix(&self) -> &str {
        &self.nats_prefix
    }

    pub(crate) fn app_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.apps.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn slot(&self, app_id: &str) -> Result<&AppSlot, TokenError> {
        self.apps
            .get(app_id)
            .ok_or_else(|| TokenError::UnknownApp(app_id.to_owned()))
    }

    fn count(&self, name: &str, labels: String) {
        self.health
            .counter(name, &labels)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    // === the refresh loop ===

    /// Checks `app_id` every `token.check_interval_ms` until `stop`.
    pub(crate) async fn refresh_loop(self: Arc<Self>, app_id: String, stop: CancellationToken) {
        let mut interval = tokio::time::interval(Duration::from_millis(
            self.settings.check_interval_ms.max(10),
        ));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            // A check runs to its end (it may hold the lock); the stop is seen before the next.
            let outcome = match self.check(&app_id).await {
                Ok(outcome) => outcome.as_str(),
                Err(e) => {
                    tracing::warn!(app_id, error = %e, "token check failed; retrying on the next tick");
                    "error"
                }
            };
            self.count("wxoa_token_check_total", format!("outcome=\"{outcome}\""));
        }
    }

    /// One check: refreshes what is missing or near expiry, unless another task or replica is
    /// already at it.
    pub(crate) async fn check(&self, app_id: &str) -> Result<Checked, TokenError> {
        let slot = self.slot(app_id)?;
        if !self.due(app_id).await?.any() {
            return Ok(Checked::Fresh);
        }
        // Busy here: an invalidation of this app is running in this process; next tick.
        let Ok(_local) = slot.local.try_lock() else {
            return Ok(Checked::Busy);
        };
        // Busy in Redis: another replica is refreshing; next tick.
        let Some(lock) = self
            .store
            .try_lock(app_id, self.settings.lock_ttl_ms)
            .await?
        else {
            tracing::debug!(app_id, "refresh lock taken elsewhere");
            return Ok(Checked::Busy);
        };
        let result = self.refresh_due_locked(slot).await;
        self.store.unlock(lock).await;
        result.map(|()| Checked::Refreshed)
    }

    async fn due(&self, app_id: &str) -> Result<Due, TokenError> {
        let ahead_ms = self.settings.refresh_ahead_secs.saturating_mul(1000);
        let (access, ticket) = self.store.pttls(app_id).await?;
        Ok(Due {
            access: needs_refresh(access, ahead_ms),
            ticket: self.settings.jsapi_ticket && needs_refresh(ticket, ahead_ms),
        })
    }

    /// Under both locks: re-checks, then refreshes what is still due.
    async fn refresh_due_locked(&self, slot: &AppSlot) -> Result<(), TokenError> {
        let app_id = slot.config.appid.as_str();
        if self.due(app_id).await?.access {
            self.refresh_access_locked(slot, false).await?;
        }
        // Re-read: the ticket is fetched with the (possibly new) access_token.
        if self.due(app_id).await?.ticket {
            self.refresh_ticket_locked(slot).await?;
        }
        Ok(())
    }

    // === writing ===

    /// Fetches a new access_token (stable_token or cgi-bin/token per the app), stores it and
    /// announces it. Caller holds both locks.
    async fn refresh_access_locked(&self, slot: &AppSlot, force: bool) -> Result<(), TokenError> {
        let app = &slot.config;
        let span = tracing::info_span!(
            "token.refresh",
            app_id = %app.appid,
            kind = "access_token",
            force,
            api = ?app.token_api,
            fingerprint = tracing::field::Empty
        );
        async {
            let fetched = match app.token_api {
                TokenApi::Stable => {
                    token_api::fetch_stable_token(
                        &self.http,
                        &self.api_base,
                        &app.appid,
                        &app.secret,
                        force,
                    )
                    .await
                }
                TokenApi::Classic => {
                    token_api::fetch_token(&self.http, &self.api_base, &app.appid, &app.secret)
                        .await
                }
            };
            let issued = self.outcome(TokenKind::AccessToken, fetched)?;
            self.store_and_announce(&app.appid, TokenKind::AccessToken, &issued)
                .await
        }
        .instrument(span)
        .await
    }

    /// Fetches a jsapi_ticket with the current access_token, stores and announces it. When WeChat
    /// rejects the access_token, replaces it (compare-and-refresh) and tries once more. Caller
    /// holds both locks.
    async fn refresh_ticket_locked(&self, slot: &AppSlot) -> Result<(), TokenError> {
        let app_id = slot.config.appid.as_str();
        let span = tracing::info_span!(
            "token.refresh",
            app_id,
            kind = "jsapi_ticket",
            fingerprint = tracing::field::Empty
        );
        async {
            let token = self.current_access(app_id).await?;
            let issued = match token_api::fetch_jsapi_ticket(&self.http, &self.api_base, &token).await {
                Err(WechatError::Api { class: ErrorClass::Refresh, errcode, .. }) => {
                    tracing::warn!(errcode, fingerprint = %fingerprint(&token), "getticket rejected the access_token");
                    let answer =
                        self.replace_access_locked(slot, &fingerprint(&token)).await?;
                    if !answer.status.is_fresh() {
                        return Err(TokenError::Wechat(WechatError::Invalidate(format!(
                            "the access_token was rejected and could not be replaced: {}",
                            answer.error.unwrap_or_else(|| answer.status.to_string())
                        ))));
                    }
                    let token = self.current_access(app_id).await?;
                    token_api::fetch_jsapi_ticket(&self.http, &self.api_base, &token).await
                }
                other => other,
            };
            let issued = self.outcome(TokenKind::JsapiTicket, issued)?;
            self.store_and_announce(app_id, TokenKind::JsapiTicket, &issued).await
        }
        .instrument(span)
        .await
    }

    async fn current_access(&self, app_id: &str) -> Result<String, TokenError> {
        self.store
            .get(app_id, TokenKind::AccessToken)
            .await?
            .ok_or_else(|| TokenError::NoAccessToken(app_id.to_owned()))
    }

    /// Counts and logs the result of a WeChat token call.
    fn outcome(
        &self,
        kind: TokenKind,
        fetched: Result<Issued, WechatError>,
    ) -> Result<Issued, TokenError> {
        let outcome = if fetched.is_ok() { "ok" } else { "error" };
        self.count(
            "wxoa_token_fetch_total",
            format!("kind=\"{kind}\",outcome=\"{outcome}\""),
        );
        fetched.map_err(|e| {
            tracing::warn!(error = %e, "WeChat did not issue a {kind}");
            TokenError::Wechat(e)
        })
    }

    /// Writes the value with its TTL and, when it differs from the previous one, publishes a
    /// [`RefreshedNotice`].
    async fn store_and_announce(
        &self,
        app_id: &str,
        kind: TokenKind,
        issued: &Issued,
    ) -> Result<(), TokenError> {
        let ttl_ms = key_ttl_ms(issued.expires_in);
        let fp = fingerprint(&issued.value);
        tracing::Span::current().record("fingerprint", fp.as_str());
        let previous = self.store.get(app_id, kind).await?;
        self.store.set(app_id, kind, &issued.value, ttl_ms).await?;
        // Age and life left are `time() - refreshed_at` and `expires_at - time()` in PromQL.
        let now_secs = wxoa_runtime::now_ms() / 1000;
        let labels = format!("app=\"{app_id}\",kind=\"{kind}\"");
        let gauge = |name: &str, value: i64| {
            self.health
                .gauge(name, &labels)
                .store(value, std::sync::atomic::Ordering::Relaxed)
        };
        gauge("wxoa_token_stored_at_seconds", now_secs);
        gauge(
            "wxoa_token_expires_at_seconds",
            now_secs + issued.expires_in as i64,
        );
        if previous.as_deref() == Some(issued.value.as_str()) {
            // stable_token and getticket answer the same value while it is valid: only its TTL
            // changed, which is not news.
            tracing::debug!(fingerprint = %fp, expires_in = issued.expires_in, ttl_ms, "extended the {kind}");
            return Ok(());
        }
        tracing::info!(fingerprint = %fp, expires_in = issued.expires_in, ttl_ms, "stored a new {kind}");
        let notice = RefreshedNotice {
            app_id: app_id.to_owned(),
            kind,
            fingerprint: fp,
            expires_at_ms: wxoa_runtime::now_ms() + ttl_ms as i64,
        };
        let payload =
            serde_json::to_vec(&notice).map_err(|e| TokenError::Publish(e.to_string()))?;
        // The value is in Redis already: a lost notice only delays caches (they re-read on 40001).
        if let Err(e) = self
            .nats
            .publish(
                subjects::token_refreshed(&self.nats_prefix, app_id),
                payload.into(),
            )
            .await
        {
            tracing::warn!(error = %e, "publishing the refresh notice failed");
        }
        Ok(())
    }

    // === invalidation ===

    /// Answers one invalidation request for `app_id`.
    pub(crate) async fn invalidate(
        &self,
        app_id: &str,
        request: &InvalidateRequest,
    ) -> InvalidateResponse {
        let span = tracing::info_span!(
            "token.invalidate",
            app_id,
            kind = %request.kind,
            fingerprint = %request.fingerprint,
            status = tracing::field::Empty
        );
        async {
            let answer = match self.invalidate_inner(app_id, request).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!(error = %e, "invalidation failed");
                    InvalidateResponse::with_error(InvalidateStatus::Failed, e.to_string())
                }
            };
            tracing::Span::current().record("status", answer.status.as_str());
            self.count(
                "wxoa_token_invalidate_total",
                format!("status=\"{}\"", answer.status),
            );
            answer
        }
        .instrument(span)
        .await
    }

    async fn invalidate_inner(
        &self,
        app_id: &str,
        request: &InvalidateRequest,
    ) -> Result<InvalidateResponse, TokenError> {
        let slot = self.slot(app_id)?;
        if request.kind == TokenKind::JsapiTicket && !self.settings.jsapi_ticket {
            return Ok(InvalidateResponse::with_error(
                InvalidateStatus::Failed,
                "this deployment does not keep jsapi_tickets (token.jsapi_ticket = false)",
            ));
        }
        // In-process single flight: requests of this app take turns; all but the first usually
        // find the value replaced already.
        let _local = slot.local.lock().await;
        let Some(lock) = self.lock_unless_replaced(app_id, request).await? else {
            return Ok(InvalidateResponse::ok(InvalidateStatus::AlreadyRefreshed));
        };
        let answer = self
            .compare_and_refresh_locked(slot, request.kind, &request.fingerprint)
            .await;
        self.store.unlock(lock).await;
        answer
    }

    /// Waits for the Redis lock; `None` as soon as the value no longer has the rejected
    /// fingerprint (someone refreshed: no lock needed).
    async fn lock_unless_replaced(
        &self,
        app_id: &str,
        request: &InvalidateRequest,
    ) -> Result<Option<Lock>, TokenError> {
        let started = tokio::time::Instant::now();
        loop {
            if self
                .replaced(app_id, request.kind, &request.fingerprint)
                .await?
            {
                return Ok(None);
            }
            if let Some(lock) = self
                .store
                .try_lock(app_id, self.settings.lock_ttl_ms)
                .await?
            {
                return Ok(Some(lock));
            }
            if started.elapsed() >= INVALIDATE_LOCK_WAIT {
                return Err(TokenError::LockBusy {
                    app_id: app_id.to_owned(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// True when Redis holds a value whose fingerprint differs from `rejected`.
    async fn replaced(
        &self,
        app_id: &str,
        kind: TokenKind,
        rejected: &str,
    ) -> Result<bool, TokenError> {
        Ok(self
            .store
            .get(app_id, kind)
            .await?
            .is_some_and(|v| fingerprint(&v) != rejected))
    }

    /// Under both locks: refreshes `kind` only while the current value is the rejected one (or
    /// there is none).
    async fn compare_and_refresh_locked(
        &self,
        slot: &AppSlot,
        kind: TokenKind,
        rejected: &str,
    ) -> Result<InvalidateResponse, TokenError> {
        match kind {
            TokenKind::AccessToken => self.replace_access_locked(slot, rejected).await,
            TokenKind::JsapiTicket => {
                if self.replaced(&slot.config.appid, kind, rejected).await? {
                    return Ok(InvalidateResponse::ok(InvalidateStatus::AlreadyRefreshed));
                }
                self.refresh_ticket_locked(slot).await?;
                Ok(InvalidateResponse::ok(InvalidateStatus::Refreshed))
            }
        }
    }

    /// Under both locks: replaces the access_token while it is the rejected one (or missing):
    /// stable_token with `force_refresh` within the budget, else `throttled`; cgi-bin/token
    /// simply issues a new one.
    async fn replace_access_locked(
        &self,
        slot: &AppSlot,
        rejected: &str,
    ) -> Result<InvalidateResponse, TokenError> {
        let app = &slot.config;
        match self.store.get(&app.appid, TokenKind::AccessToken).await? {
            Some(value) if fingerprint(&value) != rejected => {
                return Ok(InvalidateResponse::ok(InvalidateStatus::AlreadyRefreshed));
            }
            // Nothing stored (expired or never filled): an ordinary fetch, no budget spent.
            None => self.refresh_access_locked(slot, false).await?,
            // cgi-bin/token: every call issues a new token.
            Some(_) if app.token_api == TokenApi::Classic => {
                self.refresh_access_locked(slot, false).await?
            }
            Some(_) => {
                let now = wxoa_runtime::now_ms();
                let day = wxoa_wire::envelope::utc_day(now);
                let (used, last) = self.store.force_budget(&app.appid, &day).await?;
                let decision = force_decision(
                    used,
                    u64::from(self.settings.force_refresh_daily_limit),
                    last,
                    now,
                    self.settings
                        .force_refresh_min_interval_secs
                        .saturating_mul(1000),
                );
                if let Some(why) = decision.refusal() {
                    tracing::warn!(reason = %why, "forced refresh refused");
                    return Ok(InvalidateResponse::with_error(
                        InvalidateStatus::Throttled,
                        why,
                    ));
                }
                debug_assert_eq!(decision, ForceDecision::Allow);
                // Counted before the call: WeChat counts attempts, failed ones too.
                self.store.record_force(&app.appid, &day, now).await?;
                self.refresh_access_locked(slot, true).await?;
            }
        }
        Ok(InvalidateResponse::ok(InvalidateStatus::Refreshed))
    }
}

/// What one check of the refresh loop did (the `outcome` label of `wxoa_token_check_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Nothing was due.
    Fresh,
    /// Something was due and this process refreshed it (or found it fresh after the re-check).
    Refreshed,
    /// Something was due but another task or replica held the lock.
    Busy,
}

impl Checked {
    fn as_str(self) -> &'static str {
        match self {
            Checked::Fresh => "fresh",
            Checked::Refreshed => "refreshed",
            Checked::Busy => "busy",
        }
    }
}

/// What a check found due.
struct Due {
    access: bool,
    ticket: bool,
}

impl Due {
    fn any(&self) -> bool {
        self.access || self.ticket
    }
}
