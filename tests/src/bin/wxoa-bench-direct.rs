//! The baselines of the job benchmarks: the same WeChat calls against the simulator with a bare
//! HTTP client, none of wxoa's durability (no NATS, no Redis, no checkpoints, no leases, no
//! exactly-once records).
//!
//! - `fanout TEMPLATE_ID COUNT CONCURRENCY`: one `message/template/send` per generated follower
//!   0..COUNT, CONCURRENCY in flight (as `wxoa broadcast` keeps `broadcast.concurrency`), each
//!   with its own `client_msg_id`; prints sends/s.
//! - `sync`: every follower into a `HashMap`, as `wxoa usersync` walks them: `user/get` pages of
//!   10 000, `user/info/batchget` 100 at a time, one call at a time; prints the wall time.
//!
//! The access_token comes from `stable_token` without `force_refresh`: the one the token
//! service holds, not a new one.
//!
//! Usage: `wxoa-bench-direct SIM_URL APPID SECRET fanout TEMPLATE_ID COUNT CONCURRENCY`
//!        `wxoa-bench-direct SIM_URL APPID SECRET sync`

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

/// A WeChat call; a non-zero errcode is an error.
async fn call(http: &reqwest::Client, url: String, body: Option<&Value>) -> anyhow::Result<Value> {
    let request = match body {
        Some(body) => http.post(&url).json(body),
        None => http.get(&url),
    };
    let answer: Value = request.send().await?.error_for_status()?.json().await?;
    match answer["errcode"].as_i64() {
        None | Some(0) => Ok(answer),
        Some(code) => bail!("{url}: errcode {code}: {answer}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: wxoa-bench-direct SIM_URL APPID SECRET fanout TEMPLATE_ID COUNT CONCURRENCY | sync";
    if args.len() < 5 {
        bail!(usage);
    }
    let (sim, app, secret, mode) = (&args[1], &args[2], &args[3], args[4].as_str());
    let http = reqwest::Client::new();
    let token = call(
        &http,
        format!("{sim}/cgi-bin/stable_token"),
        Some(&json!({"grant_type": "client_credential", "appid": app, "secret": secret})),
    )
    .await?["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();
    match mode {
        "fanout" if args.len() >= 8 => {
            let (template, count, concurrency) =
                (&args[5], args[6].parse::<u64>()?, args[7].parse::<usize>()?);
            let url = format!("{sim}/cgi-bin/message/template/send?access_token={token}");
            let started = Instant::now();
            let sent = futures::stream::iter(0..count)
                .map(|i| {
                    let body = json!({
                        "touser": wxoa_sim::generated_openid(i),
                        "template_id": template,
                        "url": "https://example.com/bill",
                        "data": {"amount": {"value": "39.8"}},
                        "client_msg_id": format!("direct-{i}"),
                    });
                    let (http, url) = (&http, url.clone());
                    async move { call(http, url, Some(&body)).await }
                })
                .buffer_unordered(concurrency)
                .filter(|r| std::future::ready(r.is_ok()))
                .count()
                .await;
            let secs = started.elapsed().as_secs_f64();
            if sent as u64 != count {
                bail!("only {sent} of {count} sends succeeded: not a baseline");
            }
            println!(
                "direct fan-out: {sent}/{count} sent in {secs:.1} s, {:.0} sends/s, {concurrency} in flight",
                sent as f64 / secs
            );
        }
        "sync" => {
            let started = Instant::now();
            let mut directory: HashMap<String, Value> = HashMap::new();
            let mut next = String::new();
            loop {
                let page = call(
                    &http,
                    format!("{sim}/cgi-bin/user/get?access_token={token}&next_openid={next}"),
                    None,
                )
                .await?;
                let openids: Vec<&str> = page["data"]["openid"]
                    .as_array()
                    .map(|l| l.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if openids.is_empty() {
                    break;
                }
                for batch in openids.chunks(100) {
                    let body = json!({"user_list": batch.iter().map(|o| json!({"openid": o, "lang": "zh_CN"})).collect::<Vec<_>>()});
                    let infos = call(
                        &http,
                        format!("{sim}/cgi-bin/user/info/batchget?access_token={token}"),
                        Some(&body),
                    )
                    .await?;
                    for user in infos["user_info_list"].as_array().into_iter().flatten() {
                        if let Some(openid) = user["openid"].as_str() {
                            directory.insert(openid.to_owned(), user.clone());
                        }
                    }
                }
                next = page["next_openid"].as_str().unwrap_or_default().to_owned();
                if next.is_empty() || openids.len() < 10_000 {
                    break;
                }
            }
            println!(
                "direct sync: {} followers in {:.1} s",
                directory.len(),
                started.elapsed().as_secs_f64()
            );
        }
        _ => bail!(usage),
    }
    Ok(())
}
