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
