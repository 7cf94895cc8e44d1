//! `wxoa replier` as a process: killed in the middle of a message, its work is redelivered to
//! another replica and the user still gets exactly one reply; and the `wxoa rules` / `wxoa send`
//! verbs against a running replier.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use wxoa_tests::{OwnRedis, PLAIN_APP, Platform, SAFE_APP, eventually, servers};

mod common;
use common::wxoa;
use wxoa_wire::names::{consumers, streams};

const RULES: &str = wxoa_tests::HELLO_RULE;

/// Messages the replier consumer has handed out and not had settled.
async fn pending(platform: &Platform) -> usize {
    let js = jetstream::new(platform.nats().await);
    let stream = js
        .get_stream(streams::inbound(platform.prefix()))
        .await
        .unwrap();
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer(consumers::REPLIER).await.unwrap();
    consumer.info().await.unwrap().num_ack_pending
}

/// The platform on its own Redis, with a short ack wait so a killed replica's message comes
/// back quickly.
async fn platform(redis: &OwnRedis) -> Platform {
    let mut config = wxoa_tests::test_config(&servers().nats_url, &redis.url);
    config.replier.ack_wait_ms = 1500;
    Platform::start(config, RULES, true).await
}

#[tokio::test]
async fn a_replier_killed_mid_message_is_redelivered_and_replies_once() {
    let redis = OwnRedis::start();
    let stack = platform(&redis).await;
    let (mut first, _) = common::service(&stack, "replier").await;

    // Redis stops answering: the replier takes the message and hangs claiming it.
    redis.freeze();
    let sending = {
        let (http, url) = (stack.http.clone(), stack.sim_url.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/_sim/send"))
                .json(&json!({"appid": SAFE_APP, "message": {"type": "text", "from": "o_crash", "content": "hello"}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let taken = eventually(Duration::from_secs(3), || async {
        (pending(&stack).await >= 1).then_some(())
    })
    .await;
    assert!(taken.is_some(), "the first replier holds the message");

    // It dies mid-message (SIGKILL); Redis comes back; another replica takes over.
    first.kill().unwrap();
    first.wait().unwrap();
    redis.thaw();
    let _replier = stack.replier().await;

    let outcome = sending.await.unwrap();
    assert_eq!(outcome["outcome"], "reply", "{outcome:#}");
    assert_eq!(outcome["reply"]["Content"], "Hi o_crash");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = stack.received(SAFE_APP, "o_crash").await;
    assert_eq!(got.len(), 1, "exactly one reply: {got:#?}");
    assert_eq!(got[0]["channel"], "passive");
}

// The verbs run as blocking child processes: the in-process replier needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_send_verbs_work_against_a_running_replier() {
    let redis = OwnRedis::start();
    let stack = platform(&redis).await;
    let _replier = stack.replier().await;

    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        r#"
        [[rules]]
        id = "price"
        match = { kind = "keyword", mode = "contains", patterns = ["price"] }
        reply = { type = "text", content = "See the price list" }
        "#,
    )
    .unwrap();
    let path = rules.path().to_str().unwrap();
    let put = wxoa(&stack, &["rules", "--app", PLAIN_APP, "put", path]).unwrap();
    assert!(put.contains("created rule `price`"), "{put}");

    let listed: Value = serde_json::from_str(
        &wxoa(&stack, &["rules", "--app", PLAIN_APP, "--json", "list"]).unwrap(),
    )
    .unwrap();
    let sources: Vec<(String, String)> = listed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"]["id"].as_str().unwrap().to_owned(),
                r["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("price".into(), "runtime".into())),
        "{listed}"
    );
    assert!(
        sources.contains(&("hello".into(), "file".into())),
        "{listed}"
    );

    let tested = wxoa(
        &stack,
        &["rules", "--app", PLAIN_APP, "test", "--text", "what price?"],
    )
    .unwrap();
    assert!(tested.contains("rule `price` matches"), "{tested}");
    let table = wxoa(&stack, &["rules", "--app", PLAIN_APP, "list"]).unwrap();
    assert!(
        table.contains("price") && table.contains("runtime"),
        "{table}"
    );
    let exported = wxoa(&stack, &["rules", "--app", PLAIN_APP, "export"]).unwrap();
    assert!(
        wxoa_rules::parse_toml(&exported).unwrap().rules[0].id == "price",
        "{exported}"
    );

    // A bad regex never gets stored: the CLI checks the file first.
    std::fs::write(
        rules.path(),
        "[[rules]]\nid = \"bad\"\nmatch = { kind = \"keyword\", mode = \"regex\", patterns = [\"(\"] }\n",
    )
    .unwrap();
    let refused = wxoa(&stack, &["rules", "--app", PLAIN_APP, "put", path]).unwrap_err();
    assert!(refused.contains("regex"), "{refused}");

    let deleted = wxoa(&stack, &["rules", "--app", PLAIN_APP, "delete", "price"]).unwrap();
    assert!(deleted.contains("deleted rule `price`"), "{deleted}");
    let missing = wxoa(&stack, &["rules", "--app", PLAIN_APP, "delete", "price"]).unwrap_err();
    assert!(missing.contains("not_found"), "{missing}");

    // `wxoa send`: a customer-service message, and its result.
    stack
        .post(
            "/_sim/interactions",
            json!({"appid": PLAIN_APP, "openid": "o_cli", "kind": "message"}),
        )
        .await;
    let sent = wxoa(
        &stack,
        &[
            "send",
            "--app",
            PLAIN_APP,
            "--openid",
            "o_cli",
            "--text",
            "from the CLI",
            "--id",
            "cli-1",
        ],
    )
    .unwrap();
    let result: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(result["status"], "sent", "{result}");
    let got = stack.received(PLAIN_APP, "o_cli").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["text"]["content"], "from the CLI");
    let refused = wxoa(
        &stack,
        &[
            "send", "--app", PLAIN_APP, "--openid", "o_nobody", "--text", "hi",
        ],
    )
    .unwrap_err();
    assert!(refused.contains("Failed"), "{refused}");
}
