//! The one core-NATS request responder loop every service's request API uses.
//!
//! [`serve`] answers requests of a queue-group subscription, each in its own task (at most
//! `max_in_flight` at once). On shutdown it unsubscribes, answers what the server already
//! delivered, and waits up to `grace` for answers in flight.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Subscribes `subject` in queue group `queue` and makes sure the server registered it (one
/// server round trip), so a caller may report readiness right after.
pub async fn subscribe(
    nats: &async_nats::Client,
    subject: &str,
    queue: &str,
) -> Result<Subscriber, ResponderError> {
    let failed = |e: &dyn std::fmt::Display| ResponderError {
        subject: subject.to_owned(),
        message: e.to_string(),
    };
    let subscriber = nats
        .queue_subscribe(subject.to_owned(), queue.to_owned())
        .await
        .map_err(|e| failed(&e))?;
    nats.flush().await.map_err(|e| failed(&e))?;
    Ok(subscriber)
}

/// A request subscription that could not be made or ended.
#[derive(Debug, thiserror::Error)]
#[error("request subscription {subject}: {message}")]
pub struct ResponderError {
    /// The subject.
    pub subject: String,
    /// Why.
    pub message: String,
}

/// Answers every request on `requests` with `handler(message)` (`None`: no answer) until
/// `shutdown`; then drains as described in the module docs. An `Err` means the subscription
/// ended on its own (the connection was closed).
pub async fn serve<H, Fut>(
    nats: async_nats::Client,
    mut requests: Subscriber,
    shutdown: CancellationToken,
    grace: Duration,
    max_in_flight: usize,
    handler: H,
) -> Result<(), ResponderError>
where
    H: Fn(async_nats::Message) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let tracker = TaskTracker::new();
    let dispatch = |message: async_nats::Message| {
        let (permits, tracker, nats, handler) = (&permits, &tracker, &nats, &handler);
        async move {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (nats, handler) = (nats.clone(), handler.clone());
            tracker.spawn(async move {
                let reply = message.reply.clone();
                let answer = handler(message).await;
                if let (Some(reply), Some(answer)) = (reply, answer)
                    && let Err(e) = nats.publish(reply, answer).await
                {
                    tracing::warn!(error = %e, "answering a request failed");
                }
                drop(permit);
            });
        }
    };
    let mut ended = None;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = requests.next() => message,
        };
        let Some(message) = message else {
            ended = Some(ResponderError {
                subject: String::new(),
                message: "the subscription ended".into(),
            });
            break;
        };
        dispatch(message).await;
    }
    if ended.is_none() && requests.drain().await.is_ok() {
        // Answer what the server delivered before the unsubscribe.
        let _ = tokio::time::timeout(grace, async {
            while let Some(message) = requests.next().await {
                dispatch(message).await;
            }
        })
        .await;
    }
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests in flight did not finish within the grace period"
        );
    }
    if let Err(e) = nats.flush().await {
        tracing::warn!(error = %e, "flushing NATS failed");
    }
    ended.map_or(Ok(()), Err)
}

/// Reads a JSON request body; an empty body reads as `{}`.
pub fn parse_json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    let payload = if payload.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        payload
    };
    serde_json::from_slice(payload).map_err(|e| format!("request: {e}"))
}

/// The JSON answer to a request: the value, or the error body (`{"error":{...}}`).
pub fn answer_json<E: serde::Serialize>(result: Result<serde_json::Value, E>) -> Option<Bytes> {
    match result {
        Ok(value) => serde_json::to_vec(&value),
        Err(error) => serde_json::to_vec(&error),
    }
    .ok()
    .map(Into::into)
}

/// Runs [`serve`] as a task of `tracker` (a subscription that ends on its own is logged).
pub fn spawn<H, Fut>(
    tracker: &TaskTracker,
    nats: async_nats::Client,
    requests: Subscriber,
    shutdown: CancellationToken,
    grace: Duration,
    handler: H,
) where
    H: Fn(async_nats::Message) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    tracker.spawn(async move {
        if let Err(e) = serve(nats, requests, shutdown, grace, MAX_IN_FLIGHT, handler).await {
            tracing::error!(error = %e, "a request API stopped");
        }
    });
}

/// The most requests [`spawn`] answers at once.
pub const MAX_IN_FLIGHT: usize = 64;
