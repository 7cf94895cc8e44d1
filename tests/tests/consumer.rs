//! The shared JetStream consumer loop against a real NATS server: acks, transient redelivery with
//! backoff, termination of poison messages, and a graceful shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, stream};
use wxoa_runtime::consumer::{self, ConsumerSpec, Delivery, Failure};
use wxoa_runtime::shutdown::CancellationToken;
use wxoa_tests::{PLAIN_APP, eventually, shared_config};
use wxoa_wire::names::{streams, subjects};

const WAIT: Duration = Duration::from_secs(15);

/// A handler error whose kind the test chooses.
#[derive(Debug)]
struct TestError {
    transient: bool,
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient {
            "transient"
        } else {
            "permanent"
        };
        write!(f, "test failure ({kind})")
    }
}

impl Failure for TestError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// Deliveries seen per message id: the delivered counts, in order.
type Seen = Arc<Mutex<BTreeMap<String, Vec<i64>>>>;

/// One test's world: its own prefix, a memory inbound stream and a provisioned consumer.
struct World {
    js: jetstream::Context,
    subject: String,
    consumer: PullConsumer,
    spec: ConsumerSpec,
}

impl World {
    async fn new(tune: impl FnOnce(&mut ConsumerSpec)) -> World {
        let config = shared_config();
        let prefix = &config.nats.prefix;
        let nats = async_nats::connect(&config.nats.url)
            .await
            .expect("nats connects");
        let js = jetstream::new(nats);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: streams::inbound(prefix),
                subjects: subjects::inbound_filters(prefix),
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .expect("stream");
        let filter = subjects::inbound_filters(prefix)
            .into_iter()
            .next()
            .expect("a message filter");
        let mut spec = ConsumerSpec::new("test-worker", filter);
        spec.ack_wait = Duration::from_secs(1);
        spec.backoff_base = Duration::from_millis(50);
        spec.backoff_max = Duration::from_millis(200);
        tune(&mut spec);
        let consumer = consumer::provision(&stream, &spec)
            .await
            .expect("provisioned");
        // Provisioning is idempotent.
        consumer::provision(&stream, &spec)
            .await
            .expect("provisioned again");
        World {
            js,
            subject: subjects::message(prefix, PLAIN_APP, "text"),
            consumer,
            spec,
        }
    }

    async fn publish(&self, id: &str) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        self.js
            .publish_with_headers(self.subject.clone(), headers, id.to_owned().into())
            .await
            .expect("published")
            .await
            .expect("stored");
    }

    /// Runs the consumer loop in the background with a handler answering `outcome(id, delivered)`.
    fn spawn(
        &self,
        seen: &Seen,
        outcome: impl Fn(&str, i64) -> Result<(), TestError> + Clone + Send + Sync + 'static,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<Result<(), consumer::ConsumerError>>,
    ) {
        let shutdown = CancellationToken::new();
        let seen = seen.clone();
        let handler = move |d: Delivery| {
            let seen = seen.clone();
            let outcome = outcome.clone();
            async move {
                let id = message_id(&d);
                assert_eq!(d.payload.as_ref(), id.as_bytes());
                assert!(d.stream_sequence > 0);
                seen.lock()
                    .expect("not poisoned")
                    .entry(id.clone())
                    .or_default()
                    .push(d.delivered);
                outcome(&id, d.delivered)
            }
        };
        let (consumer, spec, token) = (self.consumer.clone(), self.spec.clone(), shutdown.clone());
        let task =
            tokio::spawn(async move { consumer::run(consumer, &spec, token, handler).await });
        (shutdown, task)
    }

    /// Waits until the server holds nothing pending or unacknowledged for the consumer.
    async fn settled(&self) -> bool {
        eventually(WAIT, || {
            let mut consumer = self.consumer.clone();
            async move {
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await
        .is_some()
    }
}

fn message_id(d: &Delivery) -> String {
    d.headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.to_string())
        .expect("every test message has an id")
}

fn snapshot(seen: &Seen) -> BTreeMap<String, Vec<i64>> {
    seen.lock().expect("not poisoned").clone()
}

async fn stop(
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), consumer::ConsumerError>>,
) {
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns after shutdown")
        .expect("run did not panic")
        .expect("run returns Ok");
}

#[tokio::test]
async fn every_message_is_handled_once_and_acked() {
    let world = World::new(|spec| {
        spec.ack_wait = Duration::from_secs(30);
        spec.batch = 4;
        spec.concurrency = 3;
    })
    .await;
    let seen = Seen::default();
    let (shutdown, task) = world.spawn(&seen, |_, _| Ok(()));
    let ids: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    for id in &ids {
        world.publish(id).await;
    }

    let all = eventually(WAIT, || async {
        (snapshot(&seen).len() == ids.len()).then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "every message was handled: {:?}",
        snapshot(&seen)
    );
    assert!(world.settled().await, "everything was acked");
    let seen_now = snapshot(&seen);
    assert_eq!(seen_now.keys().cloned().collect::<Vec<_>>(), ids);
    assert!(
        seen_now.values().all(|d| d == &[1]),
        "each message was delivered once: {seen_now:?}"
    );
    let info = world.consumer.clone().info().await.expect("info").clone();
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.ack_floor.stream_sequence, ids.len() as u64);
    stop(shutdown, task).await;
}

#[tokio::test]
async fn a_transient_failure_is_redelivered_then_succeeds() {
    let world = World::new(|_| {}).await;
    let seen = Seen::default();
    let (shutdown, task) = world.spawn(&seen, |id, delivered| {
        if id == "flaky" && delivered <= 2 {
            Err(TestError { transient: true })
        } else {
            Ok(())
        }
    });
    world.publish("flaky").await;
    world.publish("fine").await;

    let done = eventually(WAIT, || async {
        (snapshot(&seen).get("flaky").map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    assert!(done.is_some(), "redelivered twice: {:?}", snapshot(&seen));
    assert!(world.settled().await, "the third delivery was acked");
    let seen_now = snapshot(&seen);
    assert_eq!(seen_now["flaky"], [1, 2, 3]);
    assert_eq!(seen_now["fine"], [1]);
    stop(shutdown, task).await;
}

#[tokio::test]
async fn a_permanent_failure_is_terminated_and_never_redelivered() {
    let world = World::new(|_| {}).await;
    let seen = Seen::default();
    let (shutdown, task) = world.spawn(&seen, |id, _| {
        if id == "poison" {
            Err(TestError { transient: false })
        } else {
            Ok(())
        }
    });
    world.publish("poison").await;

    let handled = eventually(WAIT, || async {
        snapshot(&seen).contains_key("poison").then_some(())
    })
    .await;
    assert!(handled.is_some(), "the poison message was handled");
    // Terminated: the server no longer counts it as awaiting an ack, so ack_wait cannot
    // redeliver it.
    assert!(world.settled().await, "the poison message was terminated");

    // A later message still flows, and the poison one stays at one delivery.
    world.publish("after").await;
    let after = eventually(WAIT, || async {
        snapshot(&seen).contains_key("after").then_some(())
    })
    .await;
    assert!(after.is_some(), "the next message was handled");
    assert!(world.settled().await);
    let info = world.consumer.clone().info().await.expect("info").clone();
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(snapshot(&seen)["poison"], [1]);
    stop(shutdown, task).await;
}

#[tokio::test]
async fn shutdown_lets_the_in_flight_handler_finish_and_ack() {
    let world = World::new(|spec| spec.ack_wait = Duration::from_secs(30)).await;
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let handler = {
        let release = release.clone();
        let finished = finished.clone();
        move |_d: Delivery| {
            let (started_tx, release, finished) =
                (started_tx.clone(), release.clone(), finished.clone());
            async move {
                let _ = started_tx.send(());
                release.notified().await;
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), TestError>(())
            }
        }
    };
    let (consumer, spec, token) = (world.consumer.clone(), world.spec.clone(), shutdown.clone());
    let task = tokio::spawn(async move { consumer::run(consumer, &spec, token, handler).await });
    world.publish("slow").await;
    tokio::time::timeout(WAIT, started_rx.recv())
        .await
        .expect("the handler started")
        .expect("the handler is alive");

    shutdown.cancel();
    assert!(!task.is_finished(), "run waits for the in-flight handler");
    release.notify_one();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns after the handler finished")
        .expect("run did not panic")
        .expect("run returns Ok");
    assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    assert!(world.settled().await, "the in-flight message was acked");
}

#[tokio::test]
async fn an_existing_stream_and_consumer_take_the_changed_config_at_startup() {
    let mut config = shared_config();
    let js = jetstream::new(
        async_nats::connect(&config.nats.url)
            .await
            .expect("nats connects"),
    );
    let stream = wxoa_runtime::connect::inbound_stream(&js, &config.nats)
        .await
        .expect("created");
    let first = stream.cached_info().config.clone();
    assert_eq!(first.max_age, Duration::from_secs(config.nats.max_age_secs));
    // A limit an operator set on the server, which wxoa's config does not name.
    let edited = stream::Config {
        max_messages: 1_000_000,
        ..first.clone()
    };
    js.update_stream(&edited)
        .await
        .expect("edited on the server");

    // A new retention and dedupe window: the stream takes them. A new storage kind can't be
    // taken: the stream keeps its own and still starts.
    config.nats.max_age_secs += 3_600;
    config.nats.duplicate_window_secs = 60;
    config.nats.storage = wxoa_runtime::config::Storage::File;
    let mut stream = wxoa_runtime::connect::inbound_stream(&js, &config.nats)
        .await
        .expect("updated");
    let info = stream.info().await.unwrap().config.clone();
    assert_eq!(info.max_age, Duration::from_secs(config.nats.max_age_secs));
    assert_eq!(info.duplicate_window, Duration::from_secs(60));
    assert_eq!(info.storage, stream::StorageType::Memory, "storage kept");
    assert_eq!(info.max_messages, 1_000_000, "the server-side limit stays");

    // A consumer provisioned again with a new ack_wait and max_deliver takes them; its position
    // is its own (it is the same durable).
    let filter = subjects::message(&config.nats.prefix, PLAIN_APP, "text");
    let mut spec = ConsumerSpec::new("reconciled", filter);
    spec.ack_wait = Duration::from_secs(5);
    consumer::provision(&stream, &spec).await.expect("created");
    spec.ack_wait = Duration::from_secs(45);
    spec.max_deliver = 9;
    let mut updated = consumer::provision(&stream, &spec).await.expect("updated");
    let info = updated.info().await.unwrap().config.clone();
    assert_eq!(info.ack_wait, Duration::from_secs(45));
    assert_eq!(info.max_deliver, 9);
    assert_eq!(
        info.durable_name.as_deref(),
        Some("reconciled"),
        "the same durable"
    );
}
