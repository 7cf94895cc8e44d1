//! Faults the platform recovers from on its own, with real servers the test starts and kills:
//! Redis restarted empty under running services, and WeChat failing with 5xx for a while.
//! (NATS killed under callbacks: `callbacks.rs`, `gateway.rs`; workers killed mid-job:
//! `services/wxoa/tests`; 100 concurrent 40001: `token.rs`; quotas: `broadcasts.rs`.)

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use wxoa_tests::{OwnRedis, PLAIN_APP, Platform, SAFE_APP, eventually, servers, test_config};
use wxoa_wire::names::{commands, headers, keys, subjects};

const RULES: &str = wxoa_tests::HELLO_RULE;

fn hello(from: &str) -> Value {
    json!({"appid": SAFE_APP, "mode": "safe", "message": {"type": "text", "from": from, "content": "hello"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_tokens_come_back_and_workers_recover_without_restart() {
    let mut redis = OwnRedis::start();
    let config = test_config(&servers().nats_url, &redis.url);
    let stack = Platform::start(config, RULES, true).await;
    let _replier = stack.replier().await;
    let outcome = stack.send(hello("o_before")).await;
    assert_eq!(outcome["outcome"], "reply", "{outcome:#}");

    redis.restart();
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = keys::access_token(&stack.config.redis.key_prefix, SAFE_APP);
    let empty: Option<String> = conn.get(&key).await.unwrap();
    assert!(empty.is_none(), "the restarted Redis is empty");

    // The token service stores the tokens again within its check interval (200 ms here).
    let back = eventually(Duration::from_secs(5), || async {
        let mut conn = conn.clone();
        conn.get::<_, Option<String>>(&key).await.ok().flatten()
    })
    .await;
    assert!(back.is_some(), "the access_token is back in Redis");

    // The replier (its claims live in Redis) answers again, with no restart.
    let again = eventually(Duration::from_secs(15), || async {
        let outcome = stack.send(hello("o_after")).await;
        (outcome["outcome"] == "reply").then_some(outcome)
    })
    .await;
    assert!(
        again.is_some(),
        "passive replies resume after the Redis restart"
    );
}

#[tokio::test]
async fn wechat_5xx_is_retried_with_backoff_without_a_storm_and_each_send_goes_out_once() {
    let stack = Platform::start(
        test_config(&servers().nats_url, &servers().redis_url),
        RULES,
        true,
    )
    .await;
    let _replier = stack.replier().await;
    let users: Vec<String> = (0..20).map(|i| format!("o_storm_{i}")).collect();
    for openid in &users {
        stack
            .post(
                "/_sim/interactions",
                json!({"appid": PLAIN_APP, "openid": openid, "kind": "message"}),
            )
            .await;
    }
    let api = "/cgi-bin/message/custom/send";
    stack
        .post(
            "/_sim/faults",
            json!({"appid": PLAIN_APP, "api": api, "http_status": 503}),
        )
        .await;
    let calls = |stats: &Value| stats["calls"][PLAIN_APP][api].as_u64().unwrap_or(0);
    let before = calls(&stack.get("/_sim/stats").await);

    let nats = stack.nats().await;
    let js = async_nats::jetstream::new(nats);
    let subject = subjects::command(stack.prefix(), PLAIN_APP, commands::SEND);
    for (i, openid) in users.iter().enumerate() {
        let id = format!("storm-{i}");
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::MSG_ID, id.as_str());
        let command = json!({"id": id, "openid": openid, "message": {"type": "text", "content": "back soon"}});
        js.publish_with_headers(subject.clone(), h, command.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    // WeChat answers 503 for 3 s: each command is tried, then retried with a growing delay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = calls(&stack.get("/_sim/stats").await) - before;
    assert!(during >= 20, "every command was tried: {during} calls");
    assert!(
        during <= 20 * 3,
        "backoff, not a retry storm: {during} calls for 20 commands in 3 s"
    );
    stack
        .http
        .delete(format!("{}/_sim/faults", stack.sim_url))
        .send()
        .await
        .unwrap();

    // WeChat is back: every user gets the message exactly once.
    for openid in &users {
        let got = eventually(Duration::from_secs(30), || async {
            let got = stack.received(PLAIN_APP, openid).await;
            (!got.is_empty()).then_some(got)
        })
        .await
        .unwrap_or_else(|| panic!("{openid} got the message"));
        assert_eq!(got.len(), 1, "{openid}: exactly once: {got:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_under_a_steady_stream_of_callbacks_loses_and_doubles_nothing() {
    use futures::StreamExt;
    let mut nats = wxoa_tests::OwnNats::start();
    let stack = Platform::start(wxoa_tests::fault_config(&nats.url), "", false).await;
    let xml = |id: u64| wxoa_tests::numbered_text("o_steady", id);

    // The simulator sends 1..=120 one after another (each with WeChat's 3 tries); NATS is
    // killed after the 40th answer and restarted 1 s later.
    const N: u64 = 120;
    let sender = {
        let (sim, http) = (stack.sim_url.clone(), stack.http.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for id in 1..=N {
                let body = json!({"appid": PLAIN_APP, "xml": xml(id)});
                let outcome: Value = http
                    .post(format!("{sim}/_sim/send"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                outcomes.push((id, outcome["outcome"].as_str().unwrap_or("").to_owned()));
            }
            outcomes
        })
    };
    eventually(Duration::from_secs(30), || async {
        (stack.stream_len().await >= 40).then_some(())
    })
    .await
    .expect("40 callbacks stored");
    nats.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.restart();
    let outcomes = sender.await.unwrap();
    let failed: Vec<u64> = outcomes
        .iter()
        .filter(|(_, o)| o != "success")
        .map(|(id, _)| *id)
        .collect();
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| o == "success" || o == "failed"),
        "{outcomes:?}"
    );

    // WeChat delivers the failed ones again later; they land too.
    for id in &failed {
        let landed = eventually(Duration::from_secs(20), || async {
            let body = json!({"appid": PLAIN_APP, "xml": xml(*id), "tries": 1});
            (stack.send(body).await["outcome"] == "success").then_some(())
        })
        .await;
        assert!(landed.is_some(), "callback {id} landed on a later delivery");
    }

    // Every callback is in the stream exactly once.
    let js = async_nats::jetstream::new(stack.nats().await);
    let stream = js
        .get_stream(wxoa_wire::names::streams::inbound(stack.prefix()))
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < N as usize {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("the stream holds every callback")
            .unwrap()
            .unwrap();
        let id = message
            .headers
            .as_ref()
            .unwrap()
            .get(headers::MSG_ID)
            .unwrap()
            .to_string();
        ids.push(id);
    }
    assert_eq!(stack.stream_len().await, N, "no duplicate stored");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N as usize, "{} distinct messages", ids.len());
    eprintln!(
        "{} of {N} callbacks failed while NATS was down and landed later",
        failed.len()
    );
}
