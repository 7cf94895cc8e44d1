//! The admin server every process runs on its own port: `/livez` (the process is up),
//! `/readyz` (NATS connected, Redis answers PING, startup done, not shutting down) and
//! `/metrics` (Prometheus text). Metric labels come from closed sets only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
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
    counters: Series<AtomicU64>,
    gauges: Series<AtomicI64>,
    histograms: Series<Histogram>,
    consumers: Mutex<Vec<(String, async_nats::jetstream::consumer::PullConsumer)>>,
}

/// The series of one kind: name → labels → value.
type Series<T> = Mutex<BTreeMap<String, BTreeMap<String, Arc<T>>>>;

/// The handle of `name{labels}` in `series`, made on first use. A known series costs a lookup
/// and no allocation (callers on a hot path, like the gateway's per-message count, hit this).
fn handle<T: Default>(series: &Series<T>, name: &str, labels: &str) -> Arc<T> {
    let mut series = series.lock().expect("not poisoned");
    if let Some(value) = series.get(name).and_then(|by_labels| by_labels.get(labels)) {
        return value.clone();
    }
    series
        .entry(name.to_owned())
        .or_default()
        .entry(labels.to_owned())
        .or_default()
        .clone()
}

/// Every `(name, labels, value)` of `series`, in order.
fn each<T>(series: &Series<T>) -> Vec<(String, String, Arc<T>)> {
    let series = series.lock().expect("not poisoned");
    series
        .iter()
        .flat_map(|(name, by_labels)| {
            by_labels
                .iter()
                .map(|(labels, value)| (name.clone(), labels.clone(), value.clone()))
        })
        .collect()
}

/// The upper bounds (seconds) of every histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets ([`BUCKETS`]), in seconds.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
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
        handle(&self.inner.counters, name, labels)
    }

    /// A gauge `name{labels}` (labels as for [`Health::counter`]).
    pub fn gauge(&self, name: &str, labels: &str) -> Arc<AtomicI64> {
        handle(&self.inner.gauges, name, labels)
    }

    /// A latency histogram `name{labels}` in seconds.
    pub fn histogram(&self, name: &str, labels: &str) -> Arc<Histogram> {
        handle(&self.inner.histograms, name, labels)
    }

    /// Reports this durable consumer's backlog on `/metrics` (`wxoa_consumer_pending`,
    /// `wxoa_consumer_ack_pending`, `wxoa_consumer_redelivered`), read when scraped.
    pub fn watch_consumer(&self, consumer: &async_nats::jetstream::consumer::PullConsumer) {
        let name = consumer.cached_info().name.clone();
        self.inner
            .consumers
            .lock()
            .expect("not poisoned")
            .push((name, consumer.clone()));
    }

    /// Prometheus text exposition of every counter, gauge and histogram, and the backlog of
    /// the watched consumers.
    pub async fn render_metrics(&self) -> String {
        let consumers = self.inner.consumers.lock().expect("not poisoned").clone();
        for (name, mut consumer) in consumers {
            let info = match consumer.info().await {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!(error = %e, consumer = name, "reading the consumer's backlog");
                    continue;
                }
            };
            {
                let labels = format!("consumer=\"{name}\"");
                let set = |metric: &str, value: u64| {
                    self.gauge(metric, &labels)
                        .store(value as i64, Ordering::Relaxed)
                };
                set("wxoa_consumer_pending", info.num_pending);
                set("wxoa_consumer_ack_pending", info.num_ack_pending as u64);
                set("wxoa_consumer_redelivered", info.num_redelivered as u64);
            }
        }
        let mut out = String::new();
        let series =
            |name: &str, labels: &str, extra: &str| match (labels.is_empty(), extra.is_empty()) {
                (true, true) => name.to_owned(),
                (true, false) => format!("{name}{{{extra}}}"),
                (false, true) => format!("{name}{{{labels}}}"),
                (false, false) => format!("{name}{{{labels},{extra}}}"),
            };
        let typed = |out: &mut String, name: &str, kind: &str, last: &mut String| {
            if name != last {
                out.push_str(&format!("# TYPE {name} {kind}\n"));
                *last = name.to_owned();
            }
        };
        let mut last = String::new();
        for (name, labels, value) in each(&self.inner.counters) {
            typed(&mut out, &name, "counter", &mut last);
            let v = value.load(Ordering::Relaxed);
            out.push_str(&format!("{} {v}\n", series(&name, &labels, "")));
        }
        for (name, labels, value) in each(&self.inner.gauges) {
            typed(&mut out, &name, "gauge", &mut last);
            let v = value.load(Ordering::Relaxed);
            out.push_str(&format!("{} {v}\n", series(&name, &labels, "")));
        }
        for (name, labels, h) in each(&self.inner.histograms) {
            let labels = labels.as_str();
            typed(&mut out, &name, "histogram", &mut last);
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = format!("le=\"{bound}\"");
                out.push_str(&format!(
                    "{} {cumulative}\n",
                    series(&format!("{name}_bucket"), labels, &le)
                ));
            }
            let count = h.count.load(Ordering::Relaxed);
            let inf = series(&format!("{name}_bucket"), labels, "le=\"+Inf\"");
            out.push_str(&format!("{inf} {count}\n"));
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            out.push_str(&format!(
                "{} {sum}\n",
                series(&format!("{name}_sum"), labels, "")
            ));
            out.push_str(&format!(
                "{} {count}\n",
                series(&format!("{name}_count"), labels, "")
            ));
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
            get(|State(h): State<Health>| async move { h.render_metrics().await }),
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
