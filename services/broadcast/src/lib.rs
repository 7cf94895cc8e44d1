//! The broadcast worker (`wxoa broadcast`): mass sends, template fan-outs and customer-service
//! fan-outs as durable, resumable jobs.
//!
//! - **Jobs** arrive as `<prefix>.<appid>.command.broadcast` (durable consumer `wxoa-broadcast`,
//!   idempotent by job id), through the `broadcast.start` request or the CLI (see [`job`]).
//! - **Any replica** runs a job while it holds its lease; another resumes it from its checkpoint
//!   when that one dies. Progress goes to `<prefix>.<appid>.notice.broadcast.progress` and
//!   `.finished`.
//! - **Reports**: MASSSENDJOBFINISH and TEMPLATESENDJOBFINISH events (durable consumers
//!   `wxoa-broadcast-massfinish`, `wxoa-broadcast-templatefinish`) are matched to their job by
//!   msg_id (see [`finish`]).
//! - **API**: job status and control, and WeChat's mass and template management (see [`api`]).

#![warn(missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
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
use wxoa_wire::broadcast::BroadcastCommand;
use wxoa_wire::names::{apis, commands, consumers, keys, queues, subjects};

pub mod api;
pub mod finish;
pub mod job;

/// Every failure of the worker (shared with the other WeChat-calling workers).
pub use wxoa_wechat::WorkerError as BroadcastError;

/// What every task shares.
pub(crate) struct Shared {
    nats: async_nats::Client,
    js: jetstream::Context,
    redis: RedisConn,
    wechat: WechatClient,
    prefix: String,
    key_prefix: String,
    apps: Vec<String>,
    served: HashSet<String>,
    instance: String,
    sends_per_sec: u32,
    concurrency: usize,
    window: usize,
    lease: Duration,
    check_interval: Duration,
    kick: tokio::sync::Notify,
    /// `wxoa_broadcast_recipients_total{outcome}`: recipients handled by this replica.
    recipients: [Arc<std::sync::atomic::AtomicU64>; 2],
}

impl Shared {
    /// Publishes a notice (core NATS, best effort).
    async fn notify<T: Serialize>(&self, app_id: &str, kind: &str, notice: &T) {
        wxoa_runtime::shutdown::notify(&self.nats, &self.prefix, app_id, kind, notice).await;
    }

    /// Waits for a slot of the app's send budget (`broadcast.sends_per_sec`).
    async fn throttle(&self, app_id: &str) -> Result<(), BroadcastError> {
        let key = |second| keys::rate(&self.key_prefix, app_id, "broadcast", second);
        Ok(wxoa_runtime::rate::acquire(&self.redis, key, self.sends_per_sec).await?)
    }
}

/// The broadcast worker, connected and not yet running.
pub struct App {
    shared: Arc<Shared>,
    health: Health,
    started: Latch,
    grace: Duration,
    specs: [ConsumerSpec; 3],
    nats_config: wxoa_runtime::config::NatsConfig,
}

impl App {
    /// Connects to NATS and Redis (registering both with `health` for readiness).
    pub async fn build(config: &Config, health: Health) -> Result<App, BroadcastError> {
        let (nats, redis) =
            wxoa_runtime::connect::watched(config, "wxoa-broadcast", &health).await?;
        App::from_parts(config, nats, redis, health)
    }

    /// Uses ready-made connections (tests; `wxoa dev`). Must be called inside a Tokio runtime.
    pub fn from_parts(
        config: &Config,
        nats: async_nats::Client,
        redis: RedisConn,
        health: Health,
    ) -> Result<App, BroadcastError> {
        let c = &config.broadcast;
        let prefix = &config.nats.prefix;
        let specs = [
            ConsumerSpec::new(
                consumers::BROADCAST_COMMANDS,
                subjects::command_all(prefix, commands::BROADCAST),
            ),
            ConsumerSpec::new(
                consumers::BROADCAST_MASS_FINISH,
                format!("{prefix}.*.event.masssendjobfinish"),
            ),
            ConsumerSpec::new(
                consumers::BROADCAST_TEMPLATE_FINISH,
                format!("{prefix}.*.event.templatesendjobfinish"),
            ),
        ];
        let apps: Vec<String> = config.apps.iter().map(|a| a.appid.clone()).collect();
        let shared = Shared {
            js: jetstream::new(nats.clone()),
            wechat: WechatClient::new(config, redis.clone(), nats.clone(), &health),
            nats,
            redis,
            prefix: prefix.clone(),
            key_prefix: config.redis.key_prefix.clone(),
            served: apps.iter().cloned().collect(),
            apps,
            instance: format!("broadcast-{:016x}", rand::random::<u64>()),
            sends_per_sec: c.sends_per_sec,
            concurrency: c.concurrency.max(1),
            window: c.window.max(1),
            lease: Duration::from_millis(c.lease_ms.max(300)),
            check_interval: Duration::from_millis(c.check_interval_ms.max(50)),
            kick: tokio::sync::Notify::new(),
            recipients: ["sent", "failed"].map(|o| {
                health.counter(
                    "wxoa_broadcast_recipients_total",
                    &format!("outcome=\"{o}\""),
                )
            }),
        };
        Ok(App {
            shared: Arc::new(shared),
            started: health.latch(),
            health,
            grace: Duration::from_secs(config.admin.shutdown_grace_secs),
            specs,
            nats_config: config.nats.clone(),
        })
    }

    /// Provisions the streams and consumers, subscribes to the API (then the process may become
    /// ready), and works until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BroadcastError> {
        let App {
            shared,
            health,
            started,
            grace,
            specs,
            nats_config,
        } = self;
        let inbound = wxoa_runtime::connect::inbound_stream(&shared.js, &nats_config).await?;
        let command_stream =
            wxoa_runtime::connect::commands_stream(&shared.js, &nats_config).await?;
        let [commands_spec, mass_spec, template_spec] = specs;
        let commands_consumer = consumer::provision(&command_stream, &commands_spec).await?;
        let mass_consumer = consumer::provision(&inbound, &mass_spec).await?;
        let template_consumer = consumer::provision(&inbound, &template_spec).await?;
        for c in [&commands_consumer, &mass_consumer, &template_consumer] {
            health.watch_consumer(c);
        }
        let requests = responder::subscribe(
            &shared.nats,
            &subjects::api_listen(&shared.prefix, apis::BROADCAST),
            queues::BROADCAST,
        )
        .await?;
        health.stopping_on(&shutdown);
        started.release();
        tracing::info!(prefix = %shared.prefix, "broadcast worker running");

        let tracker = TaskTracker::new();
        let on_command = {
            let shared = shared.clone();
            move |delivery: consumer::Delivery| {
                let shared = shared.clone();
                async move {
                    let app_id = subjects::app_id_of(&shared.prefix, &delivery.subject)
                        .filter(|a| shared.served.contains(*a))
                        .ok_or_else(|| {
                            BroadcastError::Invalid(format!(
                                "no app served at {}",
                                delivery.subject
                            ))
                        })?
                        .to_owned();
                    let command: BroadcastCommand = serde_json::from_slice(&delivery.payload)
                        .map_err(|e| BroadcastError::Invalid(format!("broadcast command: {e}")))?;
                    job::start(&shared, &app_id, &command).await.map(|_| ())
                }
            }
        };
        let stop = shutdown.clone();
        tracker.spawn(async move {
            consumer::run(commands_consumer, &commands_spec, stop, on_command).await
        });
        for (consumer, spec) in [
            (mass_consumer, mass_spec),
            (template_consumer, template_spec),
        ] {
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tracker.spawn(async move {
                let handler = move |d| finish::handle(shared.clone(), d);
                consumer::run(consumer, &spec, stop, handler).await
            });
        }
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
                job::runner(shared, stop).await;
                Ok::<(), BroadcastError>(())
            }
        });
        tracker.close();
        wxoa_runtime::shutdown::drain("broadcast", &shutdown, &tracker, grace, &shared.nats).await;
        Ok(())
    }
}
