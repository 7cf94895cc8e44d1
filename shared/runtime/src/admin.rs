//! The admin server every process runs on its own port: `/livez` (the process is up),
//! `/readyz` (NATS connected, Redis answers PING, startup done, not shutting down) and
//! `/metrics` (Prometheus text). Metric labels come from closed sets only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Readiness and metrics of one process, shared by all its services.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    pending: AtomicUsize,
    stopping: AtomicBool,
    nats: Mutex<Vec<async_nats::Client>>,
    redis: Mutex<Vec<crate::connect::RedisConn>>,
    counters: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
}

/// Held by a startup step; readiness waits until every latch is released.
pub struct Latch(Health);

impl Latch {
    /// Marks the step done.
    pub fn release(self) {}
}

impl Drop for Latch {
    fn drop(&mut self) {
        self.0.inner.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Health {
    /// A startup step that must finish before the process is ready.
    pub fn latch(&self) -> Latch {
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        Latch(self.clone())
    }

    /// Readiness also requires this NATS connection to be connected.
    pub fn watch_nats(&self, client: &async_nats::Client) {
        self.inner
            .nats
            .lock()
            .expect("not poisoned")
            .push(client.clone());
    }

    /// Readiness also requires this Redis connection to answer PING.
    pub fn watch_redis(&self, conn: &crate::connect::RedisConn) {
        self.inner
            .redis
            .lock()
            .expect("not poisoned")
            .push(conn.clone());
    }

    /// Marks the process as shutting down: not ready from now on.
    pub fn stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Marks the process as shutting down as soon as `shutdown` is cancelled (spawns a task).
    pub fn stopping_on(&self, shutdown: &tokio_util::sync::CancellationToken) {
        let (health, shutdown) = (self.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            health.stopping();
        });
    }

    /// `Ok` when ready, else what is missing.
    pub async fn ready(&self) -> Result<(), String> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if self.inner.pending.load(Ordering::SeqCst) > 0 {
            return Err("starting".into());
        }
        let nats = self.inner.nats.lock().expect("not poisoned").clone();
        for client in nats {
            if client.connection_state() != async_nats::connection::State::Connected {
                return Err("nats not connected".into());
            }
        }
        let redis = self.inner.redis.lock().expect("not poisoned").clone();
        for mut conn in redis {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            if pong.is_err() {
                return Err("redis not answering".into());
            }
        }
        Ok(())
    }

    /// A counter `name{labels}`; `labels` is Prometheus label text from a closed set
    /// (`outcome="stored"`). Keep the handle: incrementing it is one atomic add.
    pub fn counter(&self, name: &str, labels: &str) -> Arc<AtomicU64> {
        self.inner
            .counters
            .lock()
            .expect("not poisoned")
            .entry((name.to_owned(), labels.to_owned()))
            .or_default()
            .clone()
    }

    /// Prometheus text exposition of every counter.
    pub fn render_metrics(&self) -> String {
        let counters = self.inner.counters.lock().expect("not poisoned");
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if name != last {
                out.push_str(&format!("# TYPE {name} counter\n"));
                last = name;
            }
            let v = value.load(Ordering::Relaxed);
            if labels.is_empty() {
                out.push_str(&format!("{name} {v}\n"));
            } else {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        }
        out
    }
}

/// The admin router.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                match h.ready().await {
                    Ok(()) => (StatusCode::OK, "ready".to_owned()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move { h.render_metrics() }),
        )
        .with_state(health)
}

/// Binds the admin server and serves it until `shutdown`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, router(health))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok(addr)
}
