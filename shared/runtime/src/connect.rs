//! Connections to NATS and Redis, and the idempotent provisioning of wxoa's streams.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use secrecy::ExposeSecret;

use crate::config::{NatsConfig, RedisConfig, Storage};

/// A connection or provisioning failure.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// NATS did not accept the connection.
    #[error("connecting to NATS at {url}: {source}")]
    Nats {
        /// The URL tried.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// Redis did not accept the connection.
    #[error("connecting to Redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// A stream could not be created or checked.
    #[error("provisioning stream {name}: {message}")]
    Stream {
        /// The stream.
        name: String,
        /// Why.
        message: String,
    },
}

/// Connects to NATS, retrying forever in the background after the first connection.
pub async fn nats(config: &NatsConfig, name: &str) -> Result<async_nats::Client, ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats connected"),
                async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                other => tracing::info!(event = %other, "nats event"),
            }
        })
        .connect(&config.url)
        .await
        .map_err(|source| ConnectError::Nats {
            url: crate::config::redact_url(&config.url),
            source,
        })
}

/// A Redis connection: one server (a reconnecting connection manager) or a Redis Cluster
/// (`redis.cluster = true`). Both run every command wxoa sends: each account's keys share the
/// `{<appid>}` hash tag, so multi-key scripts stay in one slot.
#[derive(Clone)]
pub enum RedisConn {
    /// One server.
    Single(redis::aio::ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connects to Redis: to `redis.url`, or with `redis.cluster` to the cluster whose seed nodes
/// `redis.url` lists (comma-separated).
pub async fn redis(config: &RedisConfig) -> Result<RedisConn, ConnectError> {
    let url = config.url.expose_secret();
    if config.cluster {
        let nodes: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(3))
            .build()
            .map_err(ConnectError::Redis)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(ConnectError::Redis)?;
        return Ok(RedisConn::Cluster(conn));
    }
    let client = redis::Client::open(url).map_err(ConnectError::Redis)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(2);
    let conn = redis::aio::ConnectionManager::new_with_config(client, cfg)
        .await
        .map_err(ConnectError::Redis)?;
    Ok(RedisConn::Single(conn))
}

/// Connects to NATS (as client `name`) and Redis, and makes the process's readiness depend on
/// both.
pub async fn watched(
    config: &crate::Config,
    name: &str,
    health: &crate::admin::Health,
) -> Result<(async_nats::Client, RedisConn), ConnectError> {
    let nats = nats(&config.nats, name).await?;
    let redis = redis(&config.redis).await?;
    health.watch_nats(&nats);
    health.watch_redis(&redis);
    Ok((nats, redis))
}

/// Creates the inbound stream (`WECHAT_INBOUND`: message.> and event.> of every app, Limits
/// retention, dedupe window), or updates an existing one to the config (not its storage).
pub async fn inbound_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream, ConnectError> {
    limits_stream(
        js,
        config,
        wxoa_wire::names::streams::inbound(&config.prefix),
        "wxoa: every inbound WeChat message and event",
        wxoa_wire::names::subjects::inbound_filters(&config.prefix),
    )
    .await
}

/// Creates the command stream (`WECHAT_COMMANDS`: command.> of every app, Limits retention so
/// any number of workers can consume it, dedupe window), or updates an existing one to the config.
pub async fn commands_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream, ConnectError> {
    limits_stream(
        js,
        config,
        wxoa_wire::names::streams::commands(&config.prefix),
        "wxoa: commands for the workers",
        vec![wxoa_wire::names::subjects::commands_filter(&config.prefix)],
    )
    .await
}

async fn limits_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
    name: String,
    description: &str,
    subjects: Vec<String>,
) -> Result<stream::Stream, ConnectError> {
    let failed = |e: &dyn std::fmt::Display| ConnectError::Stream {
        name: name.clone(),
        message: e.to_string(),
    };
    let wanted = stream::Config {
        name: name.clone(),
        description: Some(description.into()),
        subjects,
        retention: stream::RetentionPolicy::Limits,
        storage: match config.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        duplicate_window: Duration::from_secs(config.duplicate_window_secs),
        max_age: Duration::from_secs(config.max_age_secs),
        num_replicas: config.replicas,
        ..Default::default()
    };
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| failed(&e))?;
    // An existing stream takes the config's settings (a new max_age, say) at startup; its
    // storage can't change, so that one is kept and said.
    let current = stream.cached_info().config.clone();
    if current.storage != wanted.storage {
        tracing::warn!(
            stream = %name,
            current = ?current.storage,
            configured = ?wanted.storage,
            "a stream's storage can't change: keeping the current one"
        );
    }
    let differs = current.subjects != wanted.subjects
        || current.description != wanted.description
        || current.duplicate_window != wanted.duplicate_window
        || current.max_age != wanted.max_age
        || current.num_replicas != wanted.num_replicas;
    if differs {
        tracing::info!(
            stream = %name,
            max_age_secs = wanted.max_age.as_secs(),
            duplicate_window_secs = wanted.duplicate_window.as_secs(),
            replicas = wanted.num_replicas,
            "updating the stream to the configured settings"
        );
        // Only the settings wxoa owns change: limits set on the server (`max_bytes`, ...) stay.
        let updated = stream::Config {
            subjects: wanted.subjects,
            description: wanted.description,
            duplicate_window: wanted.duplicate_window,
            max_age: wanted.max_age,
            num_replicas: wanted.num_replicas,
            ..current
        };
        js.update_stream(&updated).await.map_err(|e| failed(&e))?;
        stream = js.get_stream(&name).await.map_err(|e| failed(&e))?;
    }
    Ok(stream)
}
