//! The simulator as WeChat, end to end: it signs (and encrypts) callbacks, POSTs them to the
//! gateway with WeChat's timeout and retries, and checks the reply as WeChat would.

use std::time::Duration;

use serde_json::json;
use wxoa_tests::{OwnNats, PLAIN_APP, Platform, SAFE_APP, shared_config};
use wxoa_wire::reply::{PassiveReply, ReplyResponse};

#[tokio::test]
async fn callback_to_stream_to_reply_in_every_mode() {
    let stack = Platform::start(shared_config(), "", false).await;
    let mut answers = wxoa_tests::spawn_replier(&stack.config, |envelope| {
        let content = format!(
            "echo: {}",
            envelope["detail"]["content"].as_str().unwrap_or("?")
        );
        Some(PassiveReply::Text { content })
    })
    .await;
    for (app, mode) in [
        (PLAIN_APP, "plain"),
        (SAFE_APP, "safe"),
        (SAFE_APP, "compat"),
    ] {
        let outcome = stack
            .send(json!({"appid": app, "mode": mode, "message": {"type": "text", "from": "o_user", "content": format!("hi {mode}")}}))
            .await;
        assert_eq!(outcome["outcome"], "reply", "{mode}: {outcome:#}");
        assert_eq!(
            outcome["reply"]["Content"],
            format!("echo: hi {mode}"),
            "{mode}"
        );
        assert_eq!(outcome["reply"]["ToUserName"], "o_user");
        assert_eq!(outcome["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(
            wxoa_tests::next_answer(&mut answers).await.1,
            ReplyResponse::Taken
        );
    }
    // Events that can't be answered: success at once, stored all the same.
    let outcome = stack.send(json!({"appid": SAFE_APP, "message": {"type": "event", "from": "o_user", "event": "unsubscribe"}})).await;
    assert_eq!(outcome["outcome"], "success", "{outcome:#}");
    assert_eq!(stack.stream_len().await, 4);
}

#[tokio::test]
async fn wechat_retries_are_deduplicated() {
    let mut config = shared_config();
    // No replier and a reply budget longer than WeChat's timeout: the first try times out and
    // WeChat retries the same callback, which JetStream recognises as a duplicate.
    config.sim.callback_timeout_ms = 400;
    config.gateway.reply_budget_ms = 2000;
    let stack = Platform::start(config, "", false).await;
    let outcome = stack
        .send(json!({"appid": SAFE_APP, "message": {"type": "text", "from": "o_retry", "content": "once", "msg_id": 4242}}))
        .await;
    assert_eq!(outcome["outcome"], "success", "{outcome:#}");
    let attempts = outcome["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        2,
        "first try timed out, the retry was answered: {outcome:#}"
    );
    assert_eq!(
        stack.stream_len().await,
        1,
        "the retry was not stored twice"
    );
}

#[tokio::test]
async fn nats_stopped_then_recovered_loses_nothing() {
    let mut nats = OwnNats::start();
    let stack = Platform::start(wxoa_tests::fault_config(&nats.url), "", false).await;
    let xml = |id: u64| wxoa_tests::numbered_text("o_fault", id);
    assert_eq!(
        stack.send(json!({"appid": PLAIN_APP, "xml": xml(1)})).await["outcome"],
        "success"
    );

    nats.stop();
    let outcome = stack.send(json!({"appid": PLAIN_APP, "xml": xml(2)})).await;
    assert_eq!(outcome["outcome"], "failed", "{outcome:#}");
    let attempts = outcome["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "WeChat tried 3 times");
    assert!(attempts.iter().all(|a| a["status"] == 503), "{outcome:#}");

    nats.restart();
    // WeChat would deliver message 2 again later (the account's next try, or a re-send).
    let delivered = wxoa_tests::eventually(Duration::from_secs(20), || {
        let fut = stack.send(json!({"appid": PLAIN_APP, "xml": xml(2), "tries": 1}));
        async move { (fut.await["outcome"] == "success").then_some(()) }
    })
    .await;
    assert!(
        delivered.is_some(),
        "the gateway recovers when NATS returns"
    );
    assert_eq!(
        stack.send(json!({"appid": PLAIN_APP, "xml": xml(3)})).await["outcome"],
        "success"
    );
    assert_eq!(stack.stream_len().await, 3, "1, 2 and 3, each exactly once");
}
