//! Customer-service send rate: opens a conversation window in the simulator for COUNT users,
//! publishes one `send` command per user to JetStream, and waits for every result notice.
//!
//! Usage: `wxoa-bench-send NATS_URL PREFIX APPID SIM_URL COUNT`

use std::collections::HashSet;
use std::time::Instant;

use futures::StreamExt;
use wxoa_wire::command::{CustomMessage, SendCommand, SendResult, SendStatus};
use wxoa_wire::names::{commands, notices, subjects};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        anyhow::bail!("usage: {} NATS_URL PREFIX APPID SIM_URL COUNT", args[0]);
    }
    let (nats_url, prefix, app, sim, count) = (
        &args[1],
        &args[2],
        &args[3],
        &args[4],
        args[5].parse::<usize>()?,
    );
    let http = reqwest::Client::new();
    futures::stream::iter(0..count)
        .map(|i| {
            let http = &http;
            async move {
                http.post(format!("{sim}/_sim/interactions"))
                    .json(&serde_json::json!({"appid": app, "openid": format!("o_send_{i}"), "kind": "message"}))
                    .send()
                    .await?
                    .error_for_status()
                    .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;

    let nats = async_nats::connect(nats_url.as_str()).await?;
    let mut results = nats
        .subscribe(subjects::notice(prefix, app, notices::SEND_RESULT))
        .await?;
    nats.flush().await?;
    let js = async_nats::jetstream::new(nats.clone());
    let subject = subjects::command(prefix, app, commands::SEND);
    let started = Instant::now();
    let mut acks = Vec::with_capacity(count);
    for i in 0..count {
        let command = SendCommand {
            id: format!("bench-{i}"),
            openid: format!("o_send_{i}"),
            message: CustomMessage::Text {
                content: format!("message {i}"),
            },
            typing: false,
            kf_account: None,
        };
        acks.push(
            js.publish(subject.clone(), serde_json::to_vec(&command)?.into())
                .await?,
        );
        // The client bounds the acks in flight: settle them in chunks.
        if acks.len() == 1000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let published = started.elapsed();
    let mut seen = HashSet::new();
    let mut sent = 0;
    while seen.len() < count {
        let notice = tokio::time::timeout(std::time::Duration::from_secs(60), results.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("notices ended"))?;
        let result: SendResult = serde_json::from_slice(&notice.payload)?;
        if seen.insert(result.id.clone()) && result.status == SendStatus::Sent {
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{count} send commands: published in {:.2} s, all results in {:.2} s: {:.0} sends/s, {sent} sent, {} not",
        published.as_secs_f64(),
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        count - sent
    );
    Ok(())
}
