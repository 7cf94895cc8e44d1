//! Token reads per second from the shared client, `WechatClient::access_token`, against the
//! token a running `wxoa token` keeps in Redis:
//!
//! - `cached`: the normal client: the token is served from memory (the refresh-notice
//!   subscription is live);
//! - `redis`: the same client with its cache off (its notice subscription is refused: the
//!   subject of an invalid NATS prefix), so every read is the cache-miss path: `GET` + `PTTL`
//!   of `keys::access_token` in one pipeline;
//! - the baselines, from the same process over the same kind of connection: a raw `GET` of the
//!   key, and the raw `GET` + `PTTL` pipeline.
//!
//! Each runs TASKS tasks for SECONDS seconds and prints reads/s and the ratio to the raw `GET`.
//!
//! Usage: `wxoa-bench-tokens CONFIG APPID TASKS SECONDS`

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wxoa_runtime::admin::Health;
use wxoa_runtime::connect::RedisConn;
use wxoa_wechat::WechatClient;
use wxoa_wire::names::keys;

/// Runs `read` from `tasks` tasks for `seconds`; reads per second.
async fn measure<F, Fut>(tasks: usize, seconds: f64, read: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let read = Arc::new(read);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let read = read.clone();
            tokio::spawn(async move {
                let mut count = 0u64;
                loop {
                    for _ in 0..64 {
                        read().await?;
                        count += 1;
                    }
                    // A read from memory never yields: let the other tasks run.
                    tokio::task::yield_now().await;
                    if Instant::now() >= deadline {
                        return anyhow::Ok(count);
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!("usage: {} CONFIG APPID TASKS SECONDS", args[0]);
    }
    let config = wxoa_runtime::Config::load(Some(std::path::Path::new(&args[1])))?;
    let app: Arc<str> = Arc::from(args[2].as_str());
    let (tasks, seconds): (usize, f64) = (args[3].parse()?, args[4].parse()?);
    let redis = wxoa_runtime::connect::redis(&config.redis).await?;
    let nats = wxoa_runtime::connect::nats(&config.nats, "wxoa-bench-tokens").await?;
    let key = keys::access_token(&config.redis.key_prefix, &app);

    let mut conn = redis.clone();
    let waited = Instant::now();
    while !redis::cmd("EXISTS")
        .arg(&key)
        .query_async::<bool>(&mut conn)
        .await?
    {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(30),
            "no token in Redis at {key}: is `wxoa token` running?"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cached = WechatClient::new(&config, redis.clone(), nats.clone(), &Health::default());
    let waited = Instant::now();
    while !cached.is_listening() {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(10),
            "the client never subscribed to refresh notices"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = cached.access_token(&app).await?;
    let mut off = config.clone();
    off.nats.prefix = "bench cache-off".into();
    let uncached = WechatClient::new(&off, redis.clone(), nats.clone(), &Health::default());
    tokio::time::sleep(Duration::from_millis(200)).await;
    anyhow::ensure!(!uncached.is_listening(), "the cache-off client is caching");
    anyhow::ensure!(uncached.access_token(&app).await? == token);

    println!(
        "== token reads: {tasks} tasks, {seconds} s each, {} cores",
        std::thread::available_parallelism()?
    );
    let get = {
        let (redis, key) = (redis.clone(), key.clone());
        measure(tasks, seconds, move || {
            let (mut conn, key): (RedisConn, String) = (redis.clone(), key.clone());
            async move {
                let _: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                Ok(())
            }
        })
        .await?
    };
    let pipeline = {
        let (redis, key) = (redis.clone(), key.clone());
        measure(tasks, seconds, move || {
            let (mut conn, key): (RedisConn, String) = (redis.clone(), key.clone());
            async move {
                let _: (Option<String>, i64) = redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let miss = {
        let app = app.clone();
        measure(tasks, seconds, move || {
            let (client, app) = (uncached.clone(), app.clone());
            async move {
                client.access_token(&app).await?;
                Ok(())
            }
        })
        .await?
    };
    let hit = {
        let app = app.clone();
        measure(tasks, seconds, move || {
            let (client, app) = (cached.clone(), app.clone());
            async move {
                client.access_token(&app).await?;
                Ok(())
            }
        })
        .await?
    };
    for (name, rate) in [
        ("baseline: raw GET", get),
        ("baseline: raw GET+PTTL pipeline", pipeline),
        ("access_token, cache off (Redis path)", miss),
        ("access_token, cached (memory)", hit),
    ] {
        println!(
            "{name:<40} {rate:>12.0} reads/s  {:>7.3}x raw GET",
            rate / get
        );
    }
    Ok(())
}
