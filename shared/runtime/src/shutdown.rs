//! One shutdown story: SIGINT or SIGTERM cancels a [`CancellationToken`] that every task of
//! the process watches.

pub use tokio_util::sync::CancellationToken;

/// Resolves on SIGINT (Ctrl-C while developing) or SIGTERM (Kubernetes).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A token cancelled when the process receives a shutdown signal.
pub fn token_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        child.cancel();
    });
    token
}

/// The end of a worker's `run`: waits for `shutdown`, then up to `grace` (plus a second) for
/// the tasks of `tracker` (which must be closed) to finish, then flushes `nats` so the last
/// acks and notices leave.
pub async fn drain(
    name: &str,
    shutdown: &CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
    grace: std::time::Duration,
    nats: &async_nats::Client,
) {
    shutdown.cancelled().await;
    tracing::info!("{name} stopping");
    let wait = grace + std::time::Duration::from_secs(1);
    if tokio::time::timeout(wait, tracker.wait()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "{name}: work in flight did not finish within the grace period"
        );
    }
    if let Err(e) = nats.flush().await {
        tracing::warn!(error = %e, "flushing NATS failed");
    }
}

/// Publishes `notice` as JSON on `<prefix>.<appid>.notice.<kind>` (core NATS, best effort: a
/// failure is logged).
pub async fn notify<T: serde::Serialize>(
    nats: &async_nats::Client,
    prefix: &str,
    app_id: &str,
    kind: &str,
    notice: &T,
) {
    let subject = wxoa_wire::names::subjects::notice(prefix, app_id, kind);
    let payload = serde_json::to_vec(notice).expect("a notice always serializes");
    if let Err(e) = nats.publish(subject, payload.into()).await {
        tracing::warn!(error = %e, kind, "publishing a notice failed");
    }
}
