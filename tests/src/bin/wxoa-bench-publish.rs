//! The ceiling under the gateway: acked JetStream publishes from one async-nats client with
//! `IN_FLIGHT` outstanding, the same envelope size and headers as the gateway sends, no HTTP.
//!
//! Usage: `wxoa-bench-publish NATS_URL COUNT IN_FLIGHT [file|memory]`

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        anyhow::bail!("usage: {} NATS_URL COUNT IN_FLIGHT [file|memory]", args[0]);
    }
    let (url, count, in_flight): (&str, usize, usize) =
        (&args[1], args[2].parse()?, args[3].parse()?);
    let storage = match args.get(4).map(String::as_str) {
        Some("memory") => stream::StorageType::Memory,
        _ => stream::StorageType::File,
    };
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let prefix = format!("pb{:08x}", rand::random::<u32>());
    js.get_or_create_stream(stream::Config {
        name: wxoa_wire::names::streams::inbound(&prefix),
        subjects: wxoa_wire::names::subjects::inbound_filters(&prefix),
        storage,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await?;
    let xml = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/inbound/msg_text.xml"
    ))?;
    let start = Instant::now();
    let results = futures::stream::iter(0..count)
        .map(|i| {
            let js = js.clone();
            let xml = xml.clone();
            let prefix = prefix.clone();
            async move {
                let mut message = wxoa_wire::inbound::Inbound::parse(&xml).expect("fixture parses");
                message.msg_id = Some(i.to_string());
                let env = wxoa_wire::envelope::Envelope::new("wxbench", 0, message);
                let mut headers = async_nats::HeaderMap::new();
                for (k, v) in env.headers(&wxoa_wire::envelope::new_traceparent(), None) {
                    headers.insert(k, v);
                }
                let subject = env.message.subject(&prefix, "wxbench");
                js.publish_with_headers(subject, headers, env.to_json().into())
                    .await?
                    .await
            }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await;
    let elapsed = start.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "{count} acked publishes ({failed} failed), {in_flight} in flight: {:.0} msg/s",
        count as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
