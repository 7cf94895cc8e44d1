//! The one JetStream consumer loop every worker uses.
//!
//! [`provision`] creates a durable pull consumer with explicit acks (or finds it, updated to the
//! spec where it differs); [`run`] pulls from
//! it, runs a handler per message with bounded concurrency inside a `consumer.handle` span, and
//! settles each message from the handler's result (see [`decide`]): `Ack` after `Ok`,
//! `Nak(backoff)` on a transient error, `Term` plus an error log on a permanent error or the final
//! attempt. On shutdown it stops pulling, lets in-flight handlers finish and settle, then returns.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::Stream;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long [`run`] waits before re-creating a pull stream that failed.
const REPULL_BACKOFF: Duration = Duration::from_millis(500);

/// One durable pull consumer and how [`run`] drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The durable consumer name (from `wxoa_wire::names::consumers`).
    pub durable: String,
    /// The one subject filter (nats-server 2.9 has no multi-filter consumers).
    pub filter_subject: String,
    /// How long the server waits for a settlement before redelivering.
    pub ack_wait: Duration,
    /// Deliveries per message, the first included; the last failure is terminated.
    pub max_deliver: i64,
    /// Unsettled messages the server hands out at most.
    pub max_ack_pending: i64,
    /// Messages per pull request.
    pub batch: usize,
    /// Handlers running at once at most.
    pub concurrency: usize,
    /// The redelivery delay after the first transient failure; it doubles per delivery.
    pub backoff_base: Duration,
    /// The longest redelivery delay.
    pub backoff_max: Duration,
}

impl ConsumerSpec {
    /// A spec with the defaults: ack_wait 30 s, max_deliver 5, max_ack_pending 1000, batch 16,
    /// concurrency 64, backoff 1 s doubling up to 60 s.
    pub fn new(durable: impl Into<String>, filter_subject: impl Into<String>) -> ConsumerSpec {
        ConsumerSpec {
            durable: durable.into(),
            filter_subject: filter_subject.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1000,
            batch: 16,
            concurrency: 64,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// A consumer that could not be provisioned or run.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The durable consumer could not be created or checked.
    #[error("provisioning consumer {durable}: {source}")]
    Provision {
        /// The durable name.
        durable: String,
        /// Why.
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// The spec cannot be run (a zero batch or concurrency).
    #[error("invalid consumer spec for {durable}: {reason}")]
    InvalidSpec {
        /// The durable name.
        durable: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Creates the durable pull consumer of `spec` on `stream` (explicit acks), or returns the
/// existing one, updated to the spec where it differs. Idempotent: call it at startup, before
/// the process reports ready.
pub async fn provision(
    stream: &Stream,
    spec: &ConsumerSpec,
) -> Result<PullConsumer, ConsumerError> {
    let failed = |source| ConsumerError::Provision {
        durable: spec.durable.clone(),
        source,
    };
    let wanted = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter_subject.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        max_ack_pending: spec.max_ack_pending,
        ..Default::default()
    };
    let mut consumer = stream
        .get_or_create_consumer(&spec.durable, wanted.clone())
        .await
        .map_err(failed)?;
    // An existing consumer takes the spec's settings (a new ack_wait, say) at startup.
    let current = &consumer.cached_info().config;
    if current.filter_subject != wanted.filter_subject
        || current.ack_wait != wanted.ack_wait
        || current.max_deliver != wanted.max_deliver
        || current.max_ack_pending != wanted.max_ack_pending
    {
        tracing::info!(
            durable = %spec.durable,
            ack_wait_ms = wanted.ack_wait.as_millis() as u64,
            max_deliver = wanted.max_deliver,
            max_ack_pending = wanted.max_ack_pending,
            "updating the consumer to the configured settings"
        );
        consumer = stream.create_consumer(wanted).await.map_err(failed)?;
    }
    Ok(consumer)
}

/// Whether a handler error is worth another delivery.
pub trait Failure {
    /// `true` when a later attempt may succeed (a timeout, an unavailable dependency); `false`
    /// for a poison message that will never succeed.
    fn is_transient(&self) -> bool;
}

/// One delivered message, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subject it was published on.
    pub subject: Subject,
    /// Its headers, if any.
    pub headers: Option<HeaderMap>,
    /// Its payload.
    pub payload: Bytes,
    /// Which delivery this is, from 1.
    pub delivered: i64,
    /// Its sequence number in the stream.
    pub stream_sequence: u64,
}

/// How a message is settled after its handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Handled: acknowledge.
    Ack,
    /// Failed transiently: redeliver after this delay.
    Nak(Duration),
    /// Failed for good (permanent, or the final attempt): never redeliver.
    Term,
}

/// The redelivery delay after delivery number `delivered` (from 1) failed:
/// `base * 2^(delivered - 1)`, at most `max`.
pub fn backoff(delivered: i64, base: Duration, max: Duration) -> Duration {
    let exponent = delivered.saturating_sub(1).clamp(0, 31) as u32;
    base.checked_mul(1u32 << exponent)
        .map_or(max, |d| d.min(max))
}

/// The settlement of delivery number `delivered` given its handler's `result`: `Ack` on `Ok`;
/// `Nak` with [`backoff`] on a transient error while `delivered < max_deliver`; `Term` on a
/// permanent error or the final attempt. A `max_deliver` of zero or less means unlimited.
pub fn decide<E: Failure>(
    result: &Result<(), E>,
    delivered: i64,
    max_deliver: i64,
    spec: &ConsumerSpec,
) -> Decision {
    match result {
        Ok(()) => Decision::Ack,
        Err(e) if e.is_transient() && (max_deliver <= 0 || delivered < max_deliver) => {
            Decision::Nak(backoff(delivered, spec.backoff_base, spec.backoff_max))
        }
        Err(_) => Decision::Term,
    }
}

/// Pulls from `consumer` until `shutdown` is cancelled, running `handler` on every message (at
/// most `spec.concurrency` at once) and settling each from its result (see [`decide`]).
///
/// A failed pull stream is logged and re-created after a short pause; the durable consumer keeps
/// its state. On shutdown it stops pulling, waits for in-flight handlers to finish and settle,
/// and returns `Ok`. Messages pulled but not yet started are redelivered after `ack_wait`.
pub async fn run<H, Fut, E>(
    consumer: PullConsumer,
    spec: &ConsumerSpec,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), ConsumerError>
where
    H: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Failure + Send + 'static,
{
    let invalid = |reason| ConsumerError::InvalidSpec {
        durable: spec.durable.clone(),
        reason,
    };
    if spec.batch == 0 {
        return Err(invalid("batch must be at least 1"));
    }
    if spec.concurrency == 0 {
        return Err(invalid("concurrency must be at least 1"));
    }
    // The server's own limit wins: an existing consumer keeps the config it was created with.
    let server_max = consumer.cached_info().config.max_deliver;
    let max_deliver = if server_max > 0 {
        server_max
    } else {
        spec.max_deliver
    };
    let spec = Arc::new(spec.clone());
    let permits = Arc::new(Semaphore::new(spec.concurrency));
    let tracker = TaskTracker::new();

    'pull: while !shutdown.is_cancelled() {
        let pulled = tokio::select! {
            _ = shutdown.cancelled() => break 'pull,
            pulled = consumer.stream().max_messages_per_batch(spec.batch).messages() => pulled,
        };
        let mut messages = match pulled {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(durable = %spec.durable, %error, "consumer pull failed; retrying");
                pause(&shutdown).await;
                continue 'pull;
            }
        };
        loop {
            // Take a permit first, so no message waits in our hands for a free handler.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break 'pull,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break 'pull,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let handler = handler.clone();
                    let spec = spec.clone();
                    tracker.spawn(async move {
                        handle(message, &handler, max_deliver, &spec).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(durable = %spec.durable, %error, "consumer stream failed; re-pulling");
                    pause(&shutdown).await;
                    continue 'pull;
                }
                None => {
                    tracing::warn!(durable = %spec.durable, "consumer stream ended; re-pulling");
                    pause(&shutdown).await;
                    continue 'pull;
                }
            }
        }
    }

    tracker.close();
    tracker.wait().await;
    tracing::info!(durable = %spec.durable, "consumer stopped");
    Ok(())
}

/// Waits [`REPULL_BACKOFF`] or until shutdown.
async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(REPULL_BACKOFF) => {}
    }
}

/// Runs the handler on one message inside its span and settles the message.
async fn handle<H, Fut, E>(
    message: async_nats::jetstream::Message,
    handler: &H,
    max_deliver: i64,
    spec: &ConsumerSpec,
) where
    H: Fn(Delivery) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display + Failure,
{
    let (delivered, stream_sequence) = match message.info() {
        Ok(info) => (info.delivered, info.stream_sequence),
        Err(error) => {
            tracing::warn!(%error, subject = %message.subject, "message without JetStream info");
            (1, 0)
        }
    };
    let span = tracing::info_span!(
        "consumer.handle",
        messaging.system = "nats",
        messaging.destination.name = %message.subject,
        messaging.message.id = tracing::field::Empty,
        messaging.consumer.group.name = %spec.durable,
        messaging.nats.delivered = delivered,
        messaging.nats.stream_sequence = stream_sequence,
    );
    crate::telemetry::set_parent(&span, message.headers.as_ref());
    if let Some(id) = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
    {
        span.record("messaging.message.id", id.as_str());
    }
    async {
        let delivery = Delivery {
            subject: message.subject.clone(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            delivered,
            stream_sequence,
        };
        let result = handler(delivery).await;
        let decision = decide(&result, delivered, max_deliver, spec);
        let kind = match (decision, &result) {
            (Decision::Ack, _) => AckKind::Ack,
            (Decision::Nak(delay), Err(error)) => {
                tracing::warn!(%error, delivered, retry_in_ms = delay.as_millis() as u64, "handler failed; redelivering");
                AckKind::Nak(Some(delay))
            }
            (Decision::Nak(delay), Ok(())) => AckKind::Nak(Some(delay)),
            (Decision::Term, Err(error)) => {
                tracing::error!(%error, delivered, transient = error.is_transient(), "handler failed; message terminated");
                AckKind::Term
            }
            (Decision::Term, Ok(())) => AckKind::Term,
        };
        if let Err(error) = message.ack_with(kind).await {
            tracing::warn!(%error, "settling the message failed; the server will redeliver it");
        }
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fail(bool);

    impl Failure for Fail {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    fn spec() -> ConsumerSpec {
        ConsumerSpec::new("d", "s.>")
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let s = spec();
        assert_eq!(s.ack_wait, Duration::from_secs(30));
        assert_eq!((s.max_deliver, s.max_ack_pending), (5, 1000));
        assert_eq!((s.batch, s.concurrency), (16, 64));
        assert_eq!(
            (s.backoff_base, s.backoff_max),
            (Duration::from_secs(1), Duration::from_secs(60))
        );
    }

    #[test]
    fn backoff_doubles_per_delivery_and_caps() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let secs: Vec<u64> = (1..=8).map(|d| backoff(d, base, max).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(0, base, max), base);
        assert_eq!(backoff(-3, base, max), base);
        assert_eq!(backoff(i64::MAX, base, max), max);
        assert_eq!(
            backoff(1_000, Duration::from_secs(u64::MAX / 2), Duration::MAX),
            Duration::MAX
        );
        let ms = |d| backoff(d, Duration::from_millis(50), Duration::from_millis(150));
        assert_eq!(
            [ms(1), ms(2), ms(3)],
            [50, 100, 150].map(Duration::from_millis)
        );
    }

    #[test]
    fn ok_is_acked_on_every_attempt() {
        for delivered in [1, 4, 5, 9] {
            assert_eq!(
                decide::<Fail>(&Ok(()), delivered, 5, &spec()),
                Decision::Ack
            );
        }
    }

    #[test]
    fn transient_errors_nak_with_backoff_until_the_final_attempt() {
        let s = spec();
        assert_eq!(
            decide(&Err(Fail(true)), 1, 5, &s),
            Decision::Nak(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&Err(Fail(true)), 4, 5, &s),
            Decision::Nak(Duration::from_secs(8))
        );
        assert_eq!(decide(&Err(Fail(true)), 5, 5, &s), Decision::Term);
        assert_eq!(decide(&Err(Fail(true)), 6, 5, &s), Decision::Term);
    }

    #[test]
    fn unlimited_deliveries_never_terminate_transient_errors() {
        let s = spec();
        for max in [0, -1] {
            assert_eq!(
                decide(&Err(Fail(true)), 100, max, &s),
                Decision::Nak(s.backoff_max)
            );
        }
    }

    #[test]
    fn permanent_errors_terminate_at_once() {
        for delivered in [1, 2, 5] {
            assert_eq!(
                decide(&Err(Fail(false)), delivered, 5, &spec()),
                Decision::Term
            );
        }
    }
}
