//! The user-sync worker (`wxoa usersync`): the follower directory of every app in Redis.
//!
//! - **Events**: a durable consumer (`wxoa-usersync`, shared by every replica) on the inbound
//!   stream's events keeps the directory current: `subscribe` and `SCAN` fetch the user
//!   (`user/info`, through the shared client) and write them, `unsubscribe` marks them as left;
//!   each change is announced on `<prefix>.<appid>.notice.user.updated` (see [`events`]).
//! - **Full sync**: a resumable job per app (see [`sync`]), started by a
//!   `<prefix>.<appid>.command.usersync` command (durable consumer `wxoa-usersync-commands`), the
//!   `users.sync` request, the CLI or a schedule; progress on
//!   `<prefix>.<appid>.notice.usersync.progress` and `.finished`.
//! - **Users API**: directory queries and user management (tags, remarks, blacklist) through the
//!   shared WeChat client, reflected in the directory (see [`api`]).
//!
//! # Metrics (on the process's [`Health`])
//! - `wxoa_usersync_events_total`: subscribe/unsubscribe/SCAN events written.

#![warn(missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wxoa_runtime::Config;
use wxoa_runtime::admin::{Health, Latch};
use wxoa_runtime::connect::RedisConn;
use wxoa_runtime::consumer::{self, ConsumerSpec};
use wxoa_runtime::responder;
use wxoa_wechat::WechatClient;
use wxoa_wire::names::{apis, commands, consumers, keys, queues, subjects};
use wxoa_wire::users::SyncCommand;

pub mod api;
pub mod directory;
pub mod events;
pub mod sync;

/// Every failure of the worker (shared with the other WeChat-calling workers).
pub use wxoa_wechat::WorkerError as UsersyncError;

/// What every task shares.
pub(crate) struct Shared {
    nats: async_nats::Client,
    redis: RedisConn,
    wechat: WechatClient,
    dir: directory::Directory,
    prefix: String,
    apps: Vec<String>,
    served: HashSet<String>,
    instance: String,
    calls_per_sec: u32,
    lease: Duration,
    check_interval: Duration,
    schedule: Duration,
    scripts: sync::Scripts,
    kick: tokio::sync::Notify,
    events: Arc<AtomicU64>,
    /// `wxoa_usersync_synced_total`: followers written by full syncs on this replica.
    synced: Arc<AtomicU64>,
}

impl Shared {
    fn serves(&self, app_id: &str) -> bool {
        self.served.contains(app_id)
    }

    /// Publishes a notice (core NATS, best effort).
    async fn notify<T: Serialize>(&self, app_id: &str, kind: &str, notice: &T) {
        wxoa_runtime::shutdown::notify(&self.nats, &self.prefix, app_id, kind, notice).await;
    }

    /// Waits for a slot of the app's WeChat call budget (`usersync.calls_per_sec`).
    async fn throttle(&self, app_id: &str) -> Result<(), UsersyncError> {
        let key = |second| keys::rate(self.dir.prefix(), app_id, "usersync", second);
        Ok(wxoa_runtime::rate::acquire(&self.redis, key, self.calls_per_sec).await?)
    }
}

/// The user-sync worker, connected and not yet running.
pub struct App {
    shared: Arc<Shared>,
    health: Health,
    started: Latch,
    grace: Duration,
    events: ConsumerSpec,
    commands: ConsumerSpec,
    nats_config: wxoa_runtime::config::NatsConfig,
}

impl App {
    /// Connects to NATS and Redis (registering both with `health` for readiness).
    pub async fn build(config: &Config, health: Health) -> Result<App, UsersyncError> {
        let (nats, redis) =
            wxoa_runtime::connect::watched(config, "wxoa-usersync", &health).await?;
        App::from_parts(config, nats, redis, health)
    }

    /// Uses ready-made connections (tests; `wxoa dev`). Must be called inside a Tokio runtime.
    pub fn from_parts(
        config: &Config,
        nats: async_nats::Client,
        redis: RedisConn,
        health: Health,
    ) -> Result<App, UsersyncError> {
        let c = &config.usersync;
        let mut events = ConsumerSpec::new(
            consumers::USERSYNC_EVENTS,
            format!("{}.*.event.>", config.nats.prefix),
        );
        events.ack_wait = Duration::from_millis(c.ack_wait_ms);
        let commands = ConsumerSpec::new(
            consumers::USERSYNC_COMMANDS,
            subjects::command_all(&config.nats.prefix, commands::USERSYNC),
        );
        let apps: Vec<String> = config.apps.iter().map(|a| a.appid.clone()).collect();
        let shared = Shared {
            wechat: WechatClient::new(config, redis.clone(), nats.clone(), &health),
            dir: directory::Directory::new(redis.clone(), &config.redis.key_prefix),
            nats,
            redis,
            prefix: config.nats.prefix.clone(),
            served: apps.iter().cloned().collect(),
            apps,
            instance: format!("usersync-{:016x}", rand::random::<u64>()),
            calls_per_sec: c.calls_per_sec,
            lease: Duration::from_millis(c.lease_ms.max(300)),
            check_interval: Duration::from_millis(c.check_interval_ms.max(50)),
            schedule: Duration::from_secs(c.schedule_secs),
            scripts: sync::Scripts::new(),
            kick: tokio::sync::Notify::new(),
            events: health.counter("wxoa_usersync_events_total", ""),
            synced: health.counter("wxoa_usersync_synced_total", ""),
        };
        Ok(App {
            shared: Arc::new(shared),
            started: health.latch(),
            health,
            grace: Duration::from_secs(config.admin.shutdown_grace_secs),
            events,
            commands,
            nats_config: config.nats.clone(),
        })
    }

    /// Provisions the streams and consumers, subscribes to the users API (then the process may
    /// become ready), and works until `shutdown`: events, commands, the full-sync runner.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), UsersyncError> {
        let App {
            shared,
            health,
            started,
            grace,
            events,
            commands,
            nats_config,
        } = self;
        let js = jetstream::new(shared.nats.clone());
        let inbound = wxoa_runtime::connect::inbound_stream(&js, &nats_config).await?;
        let command_stream = wxoa_runtime::connect::commands_stream(&js, &nats_config).await?;
        let events_consumer = consumer::provision(&inbound, &events).await?;
        let commands_consumer = consumer::provision(&command_stream, &commands).await?;
        for c in [&events_consumer, &commands_consumer] {
            health.watch_consumer(c);
        }
        let requests = responder::subscribe(
            &shared.nats,
            &subjects::api_listen(&shared.prefix, apis::USERS),
            queues::USERSYNC,
        )
        .await?;
        health.stopping_on(&shutdown);
        started.release();
        tracing::info!(prefix = %shared.prefix, "usersync running");

        let tracker = TaskTracker::new();
        let handler = {
            let shared = shared.clone();
            move |delivery| {
                let shared = shared.clone();
                async move {
                    let result = events::handle(shared.clone(), delivery).await;
                    if result.is_ok() {
                        shared.events.fetch_add(1, Ordering::Relaxed);
                    }
                    result
                }
            }
        };
        let stop = shutdown.clone();
        tracker.spawn(async move { consumer::run(events_consumer, &events, stop, handler).await });
        let handler = {
            let shared = shared.clone();
            move |delivery: consumer::Delivery| {
                let shared = shared.clone();
                async move {
                    let app_id = subjects::app_id_of(&shared.prefix, &delivery.subject)
                        .filter(|a| shared.serves(a))
                        .ok_or_else(|| {
                            UsersyncError::Invalid(format!("no app served at {}", delivery.subject))
                        })?
                        .to_owned();
                    let command: SyncCommand = serde_json::from_slice(&delivery.payload)
                        .map_err(|e| UsersyncError::Invalid(format!("usersync command: {e}")))?;
                    sync::start(&shared, &app_id, command.id).await.map(|_| ())
                }
            }
        };
        let stop = shutdown.clone();
        tracker
            .spawn(async move { consumer::run(commands_consumer, &commands, stop, handler).await });
        let api_shared = shared.clone();
        responder::spawn(
            &tracker,
            shared.nats.clone(),
            requests,
            shutdown.clone(),
            grace,
            move |m| api::answer(api_shared.clone(), m),
        );
        tracker.spawn({
            let (shared, stop) = (shared.clone(), shutdown.clone());
            async move {
                sync::runner(shared, stop).await;
                Ok::<(), UsersyncError>(())
            }
        });
        tracker.close();

        wxoa_runtime::shutdown::drain("usersync", &shutdown, &tracker, grace, &shared.nats).await;
        Ok(())
    }
}
