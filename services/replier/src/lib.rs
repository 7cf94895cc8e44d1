//! The reply worker (`wxoa replier`): answers inbound messages from auto-reply rules and sends
//! customer-service messages for `send` commands.
//!
//! - **Replies**: a durable consumer (`wxoa-replier`, shared by every replica) on the inbound
//!   stream. For each message it picks a reply from the app's rules ([`store`]), hands it to the
//!   gateway holding WeChat's request through the reply rendezvous while the deadline allows,
//!   and otherwise publishes it as a `send` command — once per message (see [`reply`]).
//! - **Sends**: a durable consumer (`wxoa-sender`) on `<prefix>.*.command.send` of the command
//!   stream. Each command is sent once per id, within a per-app rate, with retries on transient
//!   errors, and its result is announced on `<prefix>.<appid>.notice.send.result` (see [`send`]).
//! - **Rules at run time**: a request API (`<prefix>.<appid>.api.rules.<verb>`, queue group
//!   `wxoa-replier`, see [`api`]) edits run-time rules in Redis; every replica reloads an app's
//!   rules on its `rules.changed` notice and every `replier.rules_poll_secs`.
//!
//! # Metrics (on the process's [`Health`])
//! - `wxoa_replier_replies_total{channel="passive|custom|none|dropped|uncertain"}`
//! - `wxoa_replier_sends_total{status="sent|failed|uncertain"}`

#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wxoa_runtime::Config;
use wxoa_runtime::admin::{Health, Latch};
use wxoa_runtime::connect::RedisConn;
use wxoa_runtime::consumer::{self, ConsumerSpec};
use wxoa_runtime::responder;
use wxoa_wechat::WechatClient;
use wxoa_wire::command::{ReplyChannel, SendStatus};
use wxoa_wire::names::{apis, commands, consumers, keys, notices, queues, subjects};

pub mod api;
mod error;
pub mod reply;
pub mod send;
pub mod store;

pub use error::ReplierError;

/// `SET key value EX ttl` unless the key exists; returns the existing value, if any.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
";

/// What every handler shares.
pub(crate) struct Shared {
    nats: async_nats::Client,
    js: jetstream::Context,
    redis: RedisConn,
    wechat: WechatClient,
    store: store::Store,
    prefix: String,
    key_prefix: String,
    state_ttl_secs: u64,
    /// `replier.fallback_max_age_secs`, in milliseconds.
    fallback_max_age_ms: i64,
    send_max_deliver: i64,
    send_rate_per_sec: u32,
    send_lease_ms: i64,
    verified: HashMap<String, bool>,
    claim: redis::Script,
    replies: [Arc<AtomicU64>; 5],
    sends: [Arc<AtomicU64>; 3],
}

impl Shared {
    fn verified(&self, app_id: &str) -> bool {
        self.verified.get(app_id).copied().unwrap_or(false)
    }

    /// Sets `key` to `value` (with the state TTL) unless it exists; the existing value if any.
    async fn claim(&self, key: &str, value: &str) -> Result<Option<String>, ReplierError> {
        Ok(self
            .claim
            .key(key)
            .arg(value)
            .arg(self.state_ttl_secs)
            .invoke_async(&mut self.redis.clone())
            .await?)
    }

    fn count(&self, channel: ReplyChannel) {
        let i = match channel {
            ReplyChannel::Passive => 0,
            ReplyChannel::Custom => 1,
            ReplyChannel::None => 2,
            ReplyChannel::Dropped => 3,
            ReplyChannel::Uncertain => 4,
        };
        self.replies[i].fetch_add(1, Ordering::Relaxed);
    }

    fn count_send(&self, status: SendStatus) {
        let i = match status {
            SendStatus::Sent => 0,
            SendStatus::Failed => 1,
            SendStatus::Uncertain => 2,
        };
        self.sends[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes a notice (core NATS, best effort).
    async fn notify<T: Serialize>(&self, app_id: &str, kind: &str, notice: &T) {
        wxoa_runtime::shutdown::notify(&self.nats, &self.prefix, app_id, kind, notice).await;
    }

    /// Waits until the app's customer-service send budget of the current second (across every
    /// replica) has room.
    async fn throttle(&self, app_id: &str) -> Result<(), ReplierError> {
        let key = |second| keys::rate(&self.key_prefix, app_id, "send", second);
        wxoa_runtime::rate::acquire(&self.redis, key, self.send_rate_per_sec)
            .await
            .map_err(|e| ReplierError::Busy(format!("app {app_id} send rate: {e}")))
    }
}

/// The replier, connected and not yet running.
pub struct App {
    shared: Arc<Shared>,
    health: Health,
    started: Latch,
    grace: Duration,
    inbound: ConsumerSpec,
    sender: ConsumerSpec,
    nats_config: wxoa_runtime::config::NatsConfig,
    rules_poll: Duration,
}

impl App {
    /// Connects to NATS and Redis (registering both with `health` for readiness) and reads the
    /// rules file (an invalid file is an error: the replier does not start).
    pub async fn build(config: &Config, health: Health) -> Result<App, ReplierError> {
        let (nats, redis) = wxoa_runtime::connect::watched(config, "wxoa-replier", &health).await?;
        App::from_parts(config, nats, redis, health)
    }

    /// Uses ready-made connections (tests; `wxoa dev`). Must be called inside a Tokio runtime.
    pub fn from_parts(
        config: &Config,
        nats: async_nats::Client,
        redis: RedisConn,
        health: Health,
    ) -> Result<App, ReplierError> {
        let replier = &config.replier;
        let store = store::Store::new(config, redis.clone())?;
        let mut inbound = ConsumerSpec::new(consumers::REPLIER, "");
        let mut sender = ConsumerSpec::new(
            consumers::SENDER,
            subjects::command_all(&config.nats.prefix, commands::SEND),
        );
        for spec in [&mut inbound, &mut sender] {
            spec.ack_wait = Duration::from_millis(replier.ack_wait_ms);
            spec.batch = replier.batch;
            spec.concurrency = replier.concurrency;
            spec.max_ack_pending = (replier.concurrency as i64 * 4).max(1000);
        }
        sender.max_deliver = replier.send_max_deliver;
        let counter = |name: &str, label: &str, value: &str| {
            health.counter(name, &format!("{label}=\"{value}\""))
        };
        let replies = ["passive", "custom", "none", "dropped", "uncertain"]
            .map(|c| counter("wxoa_replier_replies_total", "channel", c));
        let sends = ["sent", "failed", "uncertain"]
            .map(|s| counter("wxoa_replier_sends_total", "status", s));
        let shared = Shared {
            js: jetstream::new(nats.clone()),
            wechat: WechatClient::new(config, redis.clone(), nats.clone(), &health),
            nats,
            redis,
            store,
            prefix: config.nats.prefix.clone(),
            key_prefix: config.redis.key_prefix.clone(),
            state_ttl_secs: replier.state_ttl_secs,
            fallback_max_age_ms: (replier.fallback_max_age_secs as i64).saturating_mul(1000),
            send_max_deliver: replier.send_max_deliver,
            send_rate_per_sec: replier.send_rate_per_sec,
            send_lease_ms: 3 * config.wechat.timeout_ms as i64 + 10_000,
            verified: config
                .apps
                .iter()
                .map(|a| (a.appid.clone(), a.verified))
                .collect(),
            claim: redis::Script::new(CLAIM),
            replies,
            sends,
        };
        Ok(App {
            shared: Arc::new(shared),
            started: health.latch(),
            health,
            grace: Duration::from_secs(config.admin.shutdown_grace_secs),
            inbound,
            sender,
            nats_config: config.nats.clone(),
            rules_poll: Duration::from_secs(replier.rules_poll_secs.max(1)),
        })
    }

    /// Provisions the streams and consumers, loads the run-time rules, subscribes to the request
    /// API and rule notices (then the process may become ready), and works until `shutdown`;
    /// then finishes the messages in hand (up to `admin.shutdown_grace_secs`).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ReplierError> {
        let App {
            shared,
            health,
            started,
            grace,
            inbound,
            sender,
            nats_config,
            rules_poll,
        } = self;
        let prefix = shared.prefix.clone();
        let inbound_stream =
            wxoa_runtime::connect::inbound_stream(&shared.js, &nats_config).await?;
        let commands_stream =
            wxoa_runtime::connect::commands_stream(&shared.js, &nats_config).await?;
        let inbound_consumer = consumer::provision(&inbound_stream, &inbound).await?;
        let sender_consumer = consumer::provision(&commands_stream, &sender).await?;
        for c in [&inbound_consumer, &sender_consumer] {
            health.watch_consumer(c);
        }
        for app_id in shared.store.app_ids() {
            shared.store.reload(app_id).await?;
        }
        let changed = shared
            .nats
            .subscribe(subjects::notice_all(&prefix, notices::RULES_CHANGED))
            .await
            .map_err(|e| ReplierError::Publish(e.to_string()))?;
        let rules_api = responder::subscribe(
            &shared.nats,
            &subjects::api_listen(&prefix, apis::RULES),
            queues::REPLIER,
        )
        .await?;
        let send_api = responder::subscribe(
            &shared.nats,
            &subjects::api_listen(&prefix, apis::SEND),
            queues::REPLIER,
        )
        .await?;
        health.stopping_on(&shutdown);
        started.release();
        tracing::info!(prefix, "replier running");

        let tracker = TaskTracker::new();
        let handler = {
            let shared = shared.clone();
            move |delivery| reply::handle(shared.clone(), delivery)
        };
        let stop = shutdown.clone();
        tracker
            .spawn(async move { consumer::run(inbound_consumer, &inbound, stop, handler).await });
        let handler = {
            let shared = shared.clone();
            move |delivery| send::handle(shared.clone(), delivery)
        };
        let stop = shutdown.clone();
        tracker.spawn(async move { consumer::run(sender_consumer, &sender, stop, handler).await });
        for requests in [rules_api, send_api] {
            let api_shared = shared.clone();
            responder::spawn(
                &tracker,
                shared.nats.clone(),
                requests,
                shutdown.clone(),
                grace,
                move |m| api::answer(api_shared.clone(), m),
            );
        }
        tracker.spawn(reload_rules(
            shared.clone(),
            changed,
            rules_poll,
            shutdown.clone(),
        ));
        tracker.close();

        wxoa_runtime::shutdown::drain("replier", &shutdown, &tracker, grace, &shared.nats).await;
        Ok(())
    }
}

/// Reloads an app's rules on its `rules.changed` notice, and every app's every `poll`.
async fn reload_rules(
    shared: Arc<Shared>,
    mut changed: async_nats::Subscriber,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<(), ReplierError> {
    let mut ticker = tokio::time::interval(poll);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => shared.store.reload_all().await,
            notice = changed.next() => {
                let Some(notice) = notice else { return Ok(()) };
                if let Some(app_id) = subjects::app_id_of(&shared.prefix, &notice.subject)
                    && shared.store.serves(app_id)
                    && let Err(e) = shared.store.reload(app_id).await
                {
                    tracing::warn!(app_id, error = %e, "reloading rules failed");
                }
            }
        }
    }
}

/// Announces that the run-time rules of `app_id` changed (every replica reloads them).
async fn announce_rules(shared: &Shared, app_id: &str, version: i64) {
    shared
        .notify(
            app_id,
            notices::RULES_CHANGED,
            &serde_json::json!({ "version": version }),
        )
        .await;
}
