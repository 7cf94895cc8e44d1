//! Replies end to end: the simulator as WeChat and its users, the gateway, the token service
//! and the replier on real NATS and Redis — passive replies from rules, the customer-service
//! fallback (once), `send` commands from raw NATS, rules changed at run time.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, eventually, shared_config};
use wxoa_wire::names::{apis, commands, notices, subjects};

const RULES: &str = r#"
[[rules]]
id = "hello"
match = { kind = "keyword", mode = "exact", patterns = ["hello"] }
reply = { type = "text", content = "Hi {{openid}}, you said {{content}}" }

[[rules]]
id = "welcome"
match = { kind = "event", event = "subscribe" }
reply = { type = "news", articles = [
  { title = "Welcome", description = "scene {{scene}}", pic_url = "https://example.com/1.png", url = "https://example.com/1" },
  { title = "More", description = "two", pic_url = "https://example.com/2.png", url = "https://example.com/2" },
] }

[[rules]]
id = "quiet"
match = { kind = "keyword", mode = "prefix", patterns = ["shh"] }
"#;

/// Publishes raw JSON send commands for one app and reads their result notices.
struct Sends {
    js: jetstream::Context,
    subject: String,
    results: async_nats::Subscriber,
}

impl Sends {
    async fn new(stack: &Platform, app: &str) -> Sends {
        let nats = stack.nats().await;
        let results = nats
            .subscribe(subjects::notice(stack.prefix(), app, notices::SEND_RESULT))
            .await
            .unwrap();
        nats.flush().await.unwrap();
        Sends {
            js: jetstream::new(nats),
            subject: subjects::command(stack.prefix(), app, commands::SEND),
            results,
        }
    }

    async fn publish(&self, body: &str) {
        let ack = self
            .js
            .publish(self.subject.clone(), body.to_owned().into());
        ack.await.unwrap().await.unwrap();
    }

    async fn next(&mut self) -> Value {
        let notice = tokio::time::timeout(Duration::from_secs(15), self.results.next())
            .await
            .expect("a result notice within 15 s")
            .unwrap();
        serde_json::from_slice(&notice.payload).unwrap()
    }
}

fn text(app: &str, mode: &str, from: &str, content: &str) -> Value {
    json!({"appid": app, "mode": mode, "message": {"type": "text", "from": from, "content": content}})
}

/// Waits until `openid` has received `n` messages, then a little longer to catch extras.
async fn received_settled(stack: &Platform, app: &str, openid: &str, n: usize) -> Vec<Value> {
    let got = eventually(Duration::from_secs(15), || async {
        let got = stack.received(app, openid).await;
        (got.len() >= n).then_some(got)
    })
    .await;
    assert!(
        got.is_some(),
        "{openid} received {n} messages: {:#?}",
        stack.received(app, openid).await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.received(app, openid).await
}

#[tokio::test]
async fn keyword_and_event_rules_reply_passively_in_plain_and_safe_mode() {
    let stack = Platform::start(shared_config(), RULES, true).await;
    let _replier = stack.replier().await;

    for (app, mode) in [
        (PLAIN_APP, "plain"),
        (SAFE_APP, "safe"),
        (SAFE_APP, "compat"),
    ] {
        let user = format!("o_hello_{mode}");
        let outcome = stack.send(text(app, mode, &user, "hello")).await;
        assert_eq!(outcome["outcome"], "reply", "{mode}: {outcome:#}");
        assert_eq!(
            outcome["reply"]["Content"],
            format!("Hi {user}, you said hello"),
            "{mode}"
        );
        let got = received_settled(&stack, app, &user, 1).await;
        assert_eq!(got.len(), 1, "one reply, passive: {got:#?}");
        assert_eq!(got[0]["channel"], "passive");
    }

    // Subscribe from a QR code: a two-article news reply (allowed for events), templated.
    let outcome = stack
        .send(json!({"appid": SAFE_APP, "message": {"type": "event", "from": "o_sub", "event": "subscribe", "event_key": "qrscene_spring"}}))
        .await;
    assert_eq!(outcome["outcome"], "reply", "{outcome:#}");
    assert_eq!(outcome["reply"]["MsgType"], "news");
    assert_eq!(outcome["reply"]["ArticleCount"], "2", "{outcome:#}");
    assert_eq!(
        outcome["reply"]["Articles/item[0]/Description"], "scene spring",
        "{outcome:#}"
    );

    // A rule without a reply, and no rule at all: `success` at once (no waiting out the budget,
    // so WeChat's first try is answered).
    for content in ["shh please", "nothing matches this"] {
        let outcome = stack
            .send(text(PLAIN_APP, "plain", "o_quiet", content))
            .await;
        assert_eq!(outcome["outcome"], "success", "{content}: {outcome:#}");
        assert_eq!(outcome["attempts"].as_array().unwrap().len(), 1);
    }
    assert!(stack.received(PLAIN_APP, "o_quiet").await.is_empty());
}

#[tokio::test]
async fn without_a_replier_wechat_gets_success_within_the_budget() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 800;
    let stack = Platform::start(config, RULES, true).await;
    for (app, mode) in [(PLAIN_APP, "plain"), (SAFE_APP, "safe")] {
        let outcome = stack.send(text(app, mode, "o_alone", "hello")).await;
        // `success`, not an error page, on WeChat's first try (inside its 5 s).
        assert_eq!(outcome["outcome"], "success", "{mode}: {outcome:#}");
        assert_eq!(outcome["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(outcome["attempts"][0]["status"], 200);
    }
}

#[tokio::test]
async fn a_stalled_replier_falls_back_to_customer_service_exactly_once() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 300;
    let stack = Platform::start(config, RULES, true).await;
    let nats = stack.nats().await;
    let mut outcomes = nats
        .subscribe(subjects::notice_all(stack.prefix(), notices::REPLY_OUTCOME))
        .await
        .unwrap();
    let mut results = nats
        .subscribe(subjects::notice_all(stack.prefix(), notices::SEND_RESULT))
        .await
        .unwrap();

    // No replier yet: WeChat gets `success` when the budget is spent.
    let outcome = stack.send(text(SAFE_APP, "safe", "o_late", "hello")).await;
    assert_eq!(outcome["outcome"], "success", "{outcome:#}");

    // Two replicas start late: one of them answers, as a customer-service message.
    let _a = stack.replier().await;
    let _b = stack.replier().await;
    let got = received_settled(&stack, SAFE_APP, "o_late", 1).await;
    assert_eq!(got.len(), 1, "exactly one reply: {got:#?}");
    assert_eq!(got[0]["channel"], "custom");
    assert_eq!(
        got[0]["body"]["text"]["content"],
        "Hi o_late, you said hello"
    );

    let outcome: Value = serde_json::from_slice(
        &tokio::time::timeout(Duration::from_secs(5), outcomes.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(outcome["channel"], "custom", "{outcome}");
    assert_eq!(outcome["rule"], "hello");
    let result: Value = serde_json::from_slice(
        &tokio::time::timeout(Duration::from_secs(5), results.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(result["status"], "sent", "{result}");
    assert!(
        result["id"].as_str().unwrap().starts_with("reply:"),
        "{result}"
    );
}

#[tokio::test]
async fn a_replier_started_on_old_history_does_not_answer_it() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 300;
    config.replier.fallback_max_age_secs = 1;
    let stack = Platform::start(config, RULES, true).await;
    let nats = stack.nats().await;
    let mut outcomes = nats
        .subscribe(subjects::notice_all(stack.prefix(), notices::REPLY_OUTCOME))
        .await
        .unwrap();
    let outcome = stack
        .send(text(SAFE_APP, "safe", "o_history", "hello"))
        .await;
    assert_eq!(outcome["outcome"], "success", "{outcome:#}");
    // The message is history (older than fallback_max_age_secs) when the first replier starts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _replier = stack.replier().await;
    let outcome: Value = serde_json::from_slice(
        &tokio::time::timeout(Duration::from_secs(10), outcomes.next())
            .await
            .expect("an outcome")
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(outcome["channel"], "dropped", "{outcome}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stack.received(SAFE_APP, "o_history").await.is_empty());
}

#[tokio::test]
async fn rules_changed_at_run_time_take_effect_without_restart() {
    let stack = Platform::start(shared_config(), RULES, true).await;
    let _replier = stack.replier().await;
    let nats = stack.nats().await;
    let ask = |verb: &str, body: &str| {
        let subject = subjects::api(stack.prefix(), PLAIN_APP, apis::RULES, verb);
        let (nats, body) = (nats.clone(), body.to_owned());
        async move {
            let answer = nats.request(subject, body.into()).await.expect("answered");
            serde_json::from_slice::<Value>(&answer.payload).unwrap()
        }
    };

    let before = stack
        .send(text(PLAIN_APP, "plain", "o_promo", "promo"))
        .await;
    assert_eq!(before["outcome"], "success", "{before:#}");

    // The JSON of docs/rules.md, over raw NATS.
    let put = ask(
        "put",
        r#"{"rule": {"id": "promo", "match": {"kind": "keyword", "mode": "contains", "patterns": ["PROMO"]},
                     "reply": {"type": "text", "content": "20% off today"}}}"#,
    )
    .await;
    assert_eq!(put["created"], true, "{put}");
    let tested = ask("test", r#"{"text": "any promo?"}"#).await;
    assert_eq!(tested["rule"], "promo", "{tested}");
    let after = stack
        .send(text(PLAIN_APP, "plain", "o_promo", "promo"))
        .await;
    assert_eq!(after["outcome"], "reply", "{after:#}");
    assert_eq!(after["reply"]["Content"], "20% off today");

    // A run-time rule with a file rule's id masks it.
    let masked = ask(
        "put",
        r#"{"rule": {"id": "hello", "enabled": false, "match": {"kind": "keyword", "mode": "exact", "patterns": ["hello"]}}}"#,
    )
    .await;
    assert_eq!(masked["created"], true, "{masked}");
    let listed = ask("list", "{}").await;
    let hello = listed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"]["id"] == "hello")
        .unwrap();
    assert_eq!(hello["source"], "runtime", "{listed}");
    let outcome = stack
        .send(text(PLAIN_APP, "plain", "o_promo", "hello"))
        .await;
    assert_eq!(outcome["outcome"], "success", "masked: {outcome:#}");

    // Invalid rules are refused with a clear error and change nothing.
    let bad = ask(
        "put",
        r#"{"rule": {"id": "bad", "match": {"kind": "keyword", "mode": "regex", "patterns": ["(unclosed"]}, "reply": {"type": "text", "content": "x"}}}"#,
    )
    .await;
    assert_eq!(bad["error"]["code"], "invalid", "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("regex"),
        "{bad}"
    );
    let too_many = ask(
        "put",
        r#"{"rule": {"id": "news2", "match": {"kind": "keyword", "mode": "exact", "patterns": ["n"]},
                     "reply": {"type": "news", "articles": [{"title": "a"}, {"title": "b"}]}}}"#,
    )
    .await;
    assert_eq!(too_many["error"]["code"], "invalid", "{too_many}");

    // Deleting brings the file rule back; deleting a file rule is refused.
    let deleted = ask("delete", r#"{"id": "hello"}"#).await;
    assert!(deleted["version"].as_i64().unwrap() >= 3, "{deleted}");
    let refused = ask("delete", r#"{"id": "hello"}"#).await;
    assert_eq!(refused["error"]["code"], "not_found", "{refused}");
    let outcome = stack
        .send(text(PLAIN_APP, "plain", "o_promo", "hello"))
        .await;
    assert_eq!(outcome["outcome"], "reply", "{outcome:#}");
}

// Multi-threaded: the hand's task must not queue behind the in-process gateway and simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_by_hand_on_the_rendezvous_subject_reaches_the_user() {
    let mut config = shared_config();
    // WeChat's own limit is 5 s; the slack is for a loaded CI machine.
    config.gateway.reply_budget_ms = 4500;
    let stack = Platform::start(config, RULES, true).await;
    // No wxoa code: a JetStream consumer of its own and a request with the documented JSON.
    // (A core-NATS subscription would do too, but it is at-most-once: a subscriber starved on
    // a loaded machine is cut off by the server as a slow consumer and misses the message.)
    let nats = stack.nats().await;
    let stream = jetstream::new(nats.clone())
        .get_stream(wxoa_wire::names::streams::inbound(stack.prefix()))
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subjects::inbound_filters(stack.prefix())[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut inbound = consumer.messages().await.unwrap();
    let hand = tokio::spawn(async move {
        let message = inbound.next().await.unwrap().unwrap();
        let headers = message.headers.clone().unwrap();
        let subject = headers.get("Wx-Reply-Subject").unwrap().to_string();
        let answer = nats
            .request(
                subject,
                r#"{"reply": {"type": "text", "content": "made by hand"}}"#.into(),
            )
            .await
            .unwrap();
        message.ack().await.unwrap();
        String::from_utf8(answer.payload.to_vec()).unwrap()
    });
    let outcome = stack
        .send(text(SAFE_APP, "safe", "o_hand", "anyone?"))
        .await;
    // Bounded: when the callback never reached the gateway, the hand waits for nothing.
    let taken = tokio::time::timeout(Duration::from_secs(15), hand)
        .await
        .unwrap_or_else(|_| panic!("the hand got no message; the callback: {outcome:#}"))
        .unwrap();
    assert_eq!(
        outcome["outcome"], "reply",
        "{outcome:#}, the hand got {taken}"
    );
    assert_eq!(outcome["reply"]["Content"], "made by hand");
    assert_eq!(taken, r#"{"status":"taken"}"#);
}

#[tokio::test]
async fn send_commands_from_raw_nats_are_sent_once_with_results() {
    let stack = Platform::start(shared_config(), RULES, true).await;
    let _replier = stack.replier().await;
    let mut sends = Sends::new(&stack, PLAIN_APP).await;
    // The user wrote to the account (48 h window, 5 messages).
    stack
        .post(
            "/_sim/interactions",
            json!({"appid": PLAIN_APP, "openid": "o_cs", "kind": "message"}),
        )
        .await;
    let command = r#"{"id": "order-42", "openid": "o_cs", "typing": true,
                      "message": {"type": "text", "content": "Your order shipped"}}"#;
    sends.publish(command).await;
    let result = sends.next().await;
    assert_eq!(result["id"], "order-42");
    assert_eq!(result["status"], "sent", "{result}");

    // The same id again: announced again, not sent again.
    sends.publish(command).await;
    let again = sends.next().await;
    assert_eq!(again["status"], "sent");
    assert_eq!(
        again["at_ms"], result["at_ms"],
        "the stored result: {again}"
    );

    // WeChat busy once (-1): retried with backoff, then sent.
    stack
        .post(
            "/_sim/faults",
            json!({"appid": PLAIN_APP, "api": "/cgi-bin/message/custom/send", "errcode": -1, "times": 1}),
        )
        .await;
    sends.publish(r#"{"id": "busy-1", "openid": "o_cs", "message": {"type": "msgmenu", "head_content": "Rate us", "list": [{"id": "1", "content": "Good"}]}}"#).await;
    let busy = sends.next().await;
    assert_eq!(busy["status"], "sent", "{busy}");
    assert_eq!(busy["attempts"], 2, "{busy}");

    // Outside the window: WeChat's 45015, a clear failure, not retried.
    sends.publish(r#"{"id": "stranger-1", "openid": "o_never_wrote", "message": {"type": "text", "content": "hi"}}"#).await;
    let refused = sends.next().await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["errcode"], 45015, "{refused}");

    // Invalid commands fail with a reason, before any WeChat call.
    sends
        .publish(
            r#"{"id": "bad-1", "openid": "o_cs", "message": {"type": "news", "articles": []}}"#,
        )
        .await;
    let invalid = sends.next().await;
    assert_eq!(invalid["status"], "failed");
    assert!(
        invalid["error"]
            .as_str()
            .unwrap()
            .contains("exactly 1 article"),
        "{invalid}"
    );

    let got = stack.received(PLAIN_APP, "o_cs").await;
    assert_eq!(got.len(), 2, "order-42 once and busy-1 once: {got:#?}");
    assert_eq!(got[1]["msgtype"], "msgmenu");

    // The stored result, through the request API.
    let status = stack
        .nats()
        .await
        .request(
            subjects::api(stack.prefix(), PLAIN_APP, apis::SEND, "status"),
            r#"{"id": "stranger-1"}"#.into(),
        )
        .await
        .unwrap();
    let status: Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(status["errcode"], 45015, "{status}");
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_and_the_send_still_goes_out() {
    let stack = Platform::start(shared_config(), RULES, true).await;
    let _replier = stack.replier().await;
    let mut sends = Sends::new(&stack, SAFE_APP).await;
    stack
        .post(
            "/_sim/interactions",
            json!({"appid": SAFE_APP, "openid": "o_rev", "kind": "message"}),
        )
        .await;
    stack.post("/_sim/revoke", json!({"appid": SAFE_APP})).await;
    sends
        .publish(r#"{"id": "after-revoke", "openid": "o_rev", "message": {"type": "text", "content": "still here"}}"#)
        .await;
    let result = sends.next().await;
    assert_eq!(result["status"], "sent", "{result}");
    assert_eq!(stack.received(SAFE_APP, "o_rev").await.len(), 1);
}
