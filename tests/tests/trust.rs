//! Trust at the edges, tried from outside: distinct events are never taken for retries, a
//! plaintext callback URL cannot be replayed with another body, a callback for another account
//! is refused, and a NATS client that may publish for one app can neither take another app's
//! passive reply nor steer the replier to a subject of its choosing. A lost answer from the
//! rendezvous is `uncertain`, never a second reply.
//!
//! Every test runs on real NATS and Redis with the simulator as WeChat, and counts what
//! JetStream holds and what the simulated users received.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use wxoa_tests::{HELLO_RULE, OwnRedis, PLAIN_APP, Platform, SAFE_APP, TOKEN, shared_config};
use wxoa_wire::envelope::{Envelope, reply_key};
use wxoa_wire::inbound::Inbound;
use wxoa_wire::names::{consumers, headers, notices, streams, subjects};
use wxoa_wire::reply::{PassiveReply, ReplyRequest, ReplyResponse};
use wxoa_wire::signature;

fn now() -> i64 {
    wxoa_runtime::now_ms() / 1000
}

/// An event of `from` to the plain or safe test app at `create_time`, with `body` after Event.
fn event_xml(app: &str, from: &str, create_time: i64, body: &str) -> String {
    let to = if app == PLAIN_APP {
        "gh_plain"
    } else {
        "gh_safe"
    };
    format!(
        "<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>{body}</xml>"
    )
}

/// Pairs of distinct events that the old key (sender, CreateTime, Event, top-level MsgID) took
/// for one.
const DISTINCT: &[&str] = &[
    "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[V1001_NEWS]]></EventKey>",
    "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[V1001_SHOP]]></EventKey>",
    "<Event><![CDATA[subscribe_msg_sent_event]]></Event><SubscribeMsgSentEvent><List>\
     <TemplateId><![CDATA[t1]]></TemplateId><MsgID>1001</MsgID><ErrorCode>0</ErrorCode></List></SubscribeMsgSentEvent>",
    "<Event><![CDATA[subscribe_msg_sent_event]]></Event><SubscribeMsgSentEvent><List>\
     <TemplateId><![CDATA[t1]]></TemplateId><MsgID>1002</MsgID><ErrorCode>0</ErrorCode></List></SubscribeMsgSentEvent>",
    "<Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo><publish_id>1</publish_id>\
     <publish_status>0</publish_status></PublishEventInfo>",
    "<Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo><publish_id>2</publish_id>\
     <publish_status>0</publish_status></PublishEventInfo>",
    "<Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[o_a]]></OpenID>\
     <AppID><![CDATA[wx1]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo>",
    "<Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[o_b]]></OpenID>\
     <AppID><![CDATA[wx1]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo>",
];

#[tokio::test]
async fn distinct_events_of_one_user_in_one_second_are_all_stored_and_retries_once() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let stack = Platform::start(config, "", false).await;
    let t = now();
    let mut sent = 0;
    for (app, mode) in [
        (PLAIN_APP, "plain"),
        (SAFE_APP, "safe"),
        (SAFE_APP, "compat"),
    ] {
        let from = format!("o_clicks_{mode}");
        for body in DISTINCT {
            let xml = event_xml(app, &from, t, body);
            let outcome = stack
                .send(json!({"appid": app, "mode": mode, "xml": xml, "tries": 1}))
                .await;
            assert_eq!(outcome["outcome"], "success", "{mode} {body}: {outcome:#}");
            sent += 1;
        }
        // WeChat's retry of one of them (the same XML; in safe mode encrypted anew).
        let xml = event_xml(app, &from, t, DISTINCT[1]);
        let retry = stack
            .send(json!({"appid": app, "mode": mode, "xml": xml, "tries": 1}))
            .await;
        assert_eq!(retry["outcome"], "success", "{mode} retry: {retry:#}");
    }
    assert_eq!(
        stack.stream_len().await,
        sent,
        "every distinct event stored once, the retries not again"
    );
}

/// A hand-built plaintext callback for the plain app: the query WeChat would sign.
fn plain_query(timestamp: i64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    let sig = signature::server_signature(TOKEN, &ts, nonce);
    format!("signature={sig}&timestamp={ts}&nonce={nonce}&openid=o_victim")
}

async fn post(stack: &Platform, query: &str, body: String) -> (u16, String) {
    let response = stack
        .http
        .post(format!(
            "{}/wechat/{PLAIN_APP}?{query}",
            stack.config.sim.gateway_url
        ))
        .header(reqwest::header::CONTENT_TYPE, "text/xml")
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_plaintext_callback_url_replayed_with_another_body_is_refused() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let stack = Platform::start(config, "", false).await;
    let t = now();
    let query = plain_query(t, "246813579");
    let genuine = event_xml(PLAIN_APP, "o_victim", t, DISTINCT[0]);
    assert_eq!(post(&stack, &query, genuine.clone()).await.0, 200);

    // Whoever saw the URL (an access log) posts other XML under it: a forged event, a message.
    for forged in [
        event_xml(PLAIN_APP, "o_victim", t, DISTINCT[1]),
        event_xml(PLAIN_APP, "o_other", t, DISTINCT[0]),
        wxoa_tests::numbered_text("o_victim", 99),
    ] {
        let (status, text) = post(&stack, &query, forged).await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("nonce"), "{text}");
    }
    // WeChat's retry of the genuine callback still passes, and is stored once.
    assert_eq!(post(&stack, &query, genuine).await.0, 200);
    assert_eq!(stack.stream_len().await, 1, "only the genuine event");

    // A forged event sent first, under a URL not yet used, takes that nonce; the genuine
    // event under its own URL is not dropped as its duplicate.
    let early = plain_query(t, "135792468");
    let victim = event_xml(PLAIN_APP, "o_victim", t, DISTINCT[2]);
    let forged = event_xml(PLAIN_APP, "o_victim", t, DISTINCT[3]);
    assert_eq!(post(&stack, &early, forged).await.0, 200);
    assert_eq!(
        post(&stack, &plain_query(t, "975318642"), victim).await.0,
        200
    );
    assert_eq!(
        stack.stream_len().await,
        3,
        "the genuine event is stored too"
    );
}

#[tokio::test]
async fn a_callback_for_another_account_is_refused() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let stack = Platform::start(config, "", false).await;
    for (app, mode) in [(PLAIN_APP, "plain"), (SAFE_APP, "safe")] {
        let xml = event_xml(app, "o_x", now(), DISTINCT[0]).replace(
            if app == PLAIN_APP {
                "gh_plain"
            } else {
                "gh_safe"
            },
            "gh_someone_else",
        );
        let outcome = stack
            .send(json!({"appid": app, "mode": mode, "xml": xml, "tries": 1}))
            .await;
        assert_eq!(outcome["outcome"], "failed", "{mode}: {outcome:#}");
        assert_eq!(outcome["attempts"][0]["status"], 403, "{mode}: {outcome:#}");
    }
    assert_eq!(stack.stream_len().await, 0);
}

#[tokio::test]
async fn plaintext_callbacks_fail_closed_while_redis_does_not_answer() {
    let redis = OwnRedis::start();
    let mut config = wxoa_tests::test_config(&wxoa_tests::servers().nats_url, &redis.url);
    config.gateway.reply_budget_ms = 0;
    config.gateway.nonce_timeout_ms = 300;
    config.sim.callback_timeout_ms = 2000;
    let stack = Platform::start(config, "", false).await;
    let text = |app: &str, mode: &str, id: u64| text_once(app, mode, "o_redis", id);
    assert_eq!(
        stack.send(text(PLAIN_APP, "plain", 1)).await["outcome"],
        "success"
    );
    redis.freeze();
    let outcome = stack.send(text(PLAIN_APP, "plain", 2)).await;
    assert_eq!(outcome["outcome"], "failed", "{outcome:#}");
    assert_eq!(outcome["attempts"][0]["status"], 503, "{outcome:#}");
    // Safe mode needs no nonce binding: it goes on.
    assert_eq!(
        stack.send(text(SAFE_APP, "safe", 3)).await["outcome"],
        "success"
    );
    redis.thaw();
    let back = wxoa_tests::eventually(Duration::from_secs(20), || {
        let fut = stack.send(text(PLAIN_APP, "plain", 2));
        async move { (fut.await["outcome"] == "success").then_some(()) }
    })
    .await;
    assert!(back.is_some(), "plaintext callbacks are stored again");
    assert_eq!(stack.stream_len().await, 3, "1, 2 and 3, each once");
}

/// A text message with MsgId `id` from `from`, delivered once (no retries) in `mode`.
fn text_once(app: &str, mode: &str, from: &str, id: u64) -> Value {
    json!({"appid": app, "mode": mode, "tries": 1,
           "message": {"type": "text", "from": from, "content": "x", "msg_id": id}})
}

/// Reads the inbound stream from now on: the next message and its headers.
async fn inbound_reader(stack: &Platform) -> jetstream::consumer::pull::Stream {
    let js = jetstream::new(stack.nats().await);
    let stream = js
        .get_stream(streams::inbound(stack.prefix()))
        .await
        .expect("inbound stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    consumer.messages().await.expect("pull")
}

#[tokio::test]
async fn a_reply_request_on_another_apps_subject_does_not_take_its_waiter() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 4000;
    let stack = Platform::start(config, "", false).await;
    let mut inbound = inbound_reader(&stack).await;
    let nats = stack.nats().await;
    let sent = {
        let request = json!({"appid": SAFE_APP, "mode": "safe", "tries": 1,
            "message": {"type": "text", "from": "o_b_user", "content": "hello"}});
        let (http, url) = (stack.http.clone(), format!("{}/_sim/send", stack.sim_url));
        tokio::spawn(async move {
            let response = http.post(url).json(&request).send().await.expect("sim");
            response.json::<Value>().await.expect("JSON")
        })
    };
    let message = tokio::time::timeout(Duration::from_secs(10), inbound.next())
        .await
        .expect("the message is stored")
        .expect("a message")
        .expect("no error");
    let subject = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::REPLY_SUBJECT))
        .expect("a passive reply is possible")
        .to_string();
    // A client with rights on the plain app's subjects asks with the safe app's key.
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::MSG_ID))
        .expect("a message id")
        .to_string();
    let key = reply_key(&id);
    let gateway = subjects::reply_gateway(stack.prefix(), SAFE_APP, &key, &subject)
        .expect("the gateway's own rendezvous subject");
    let forged = subjects::reply(stack.prefix(), PLAIN_APP, gateway, &key);
    let ask = |subject: String, content: &str| {
        let request = ReplyRequest {
            reply: Some(PassiveReply::Text {
                content: content.into(),
            }),
        };
        let nats = nats.clone();
        async move {
            let answer = nats
                .request(subject, serde_json::to_vec(&request).unwrap().into())
                .await
                .expect("the gateway answers");
            serde_json::from_slice::<ReplyResponse>(&answer.payload).unwrap()
        }
    };
    assert_eq!(ask(forged, "not yours").await, ReplyResponse::Late);
    // The waiter was still there: the safe app's own subject takes it (so `late` above was the
    // app check, not the deadline).
    assert_eq!(ask(subject, "yours").await, ReplyResponse::Taken);
    let outcome = sent.await.unwrap();
    assert_eq!(outcome["outcome"], "reply", "{outcome:#}");
    assert_eq!(outcome["reply"]["Content"], "yours", "{outcome:#}");
}

/// Publishes an envelope into the inbound stream by hand, on `subject`, with `extra` headers.
async fn publish_envelope(
    stack: &Platform,
    subject: String,
    envelope: &Envelope,
    extra: &[(&str, String)],
) -> u64 {
    let js = jetstream::new(stack.nats().await);
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::MSG_ID, envelope.id.as_str());
    for (name, value) in extra {
        h.insert(*name, value.as_str());
    }
    js.publish_with_headers(subject, h, envelope.to_json().into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

/// Waits until the replier's durable consumer has settled (acked or terminated) every message
/// of the inbound stream up to `sequence`: whatever it did with them is done.
async fn replier_settled(stack: &Platform, sequence: u64) {
    let js = jetstream::new(stack.nats().await);
    let settled = wxoa_tests::eventually(Duration::from_secs(30), || {
        let js = js.clone();
        async move {
            let stream = js.get_stream(streams::inbound(stack.prefix())).await.ok()?;
            let mut consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer(consumers::REPLIER).await.ok()?;
            let info = consumer.info().await.ok()?;
            (info.ack_floor.stream_sequence >= sequence).then_some(())
        }
    })
    .await;
    assert!(settled.is_some(), "the replier settled message {sequence}");
}

fn hello(app: &str, from: &str, id: u64) -> Envelope {
    let to = if app == PLAIN_APP {
        "gh_plain"
    } else {
        "gh_safe"
    };
    let xml = format!(
        "<xml><ToUserName>{to}</ToUserName><FromUserName>{from}</FromUserName><CreateTime>{}</CreateTime>\
         <MsgType>text</MsgType><Content>hello</Content><MsgId>{id}</MsgId></xml>",
        now()
    );
    Envelope::new(
        app,
        wxoa_runtime::now_ms(),
        Inbound::parse(xml.as_bytes()).unwrap(),
    )
}

/// `openid` writes to `app` through the simulator (no rule matches), so WeChat's 48-hour
/// customer-service window is open for them.
async fn open_window(stack: &Platform, app: &str, openid: &str) {
    let mode = if app == PLAIN_APP { "plain" } else { "safe" };
    let outcome = stack
        .send(json!({"appid": app, "mode": mode, "tries": 1,
            "message": {"type": "text", "from": openid, "content": "no rule for this"}}))
        .await;
    assert_eq!(outcome["outcome"], "success", "{outcome:#}");
}

/// The next reply outcome notice within `wait`, if any.
async fn next_notice(sub: &mut async_nats::Subscriber, wait: Duration) -> Option<Value> {
    let m = tokio::time::timeout(wait, sub.next()).await.ok()??;
    serde_json::from_slice(&m.payload).ok()
}

#[tokio::test]
async fn the_replier_acts_only_for_the_subjects_app_and_only_on_its_own_rendezvous() {
    let stack = Platform::start(shared_config(), HELLO_RULE, true).await;
    let _replier = stack.replier().await;
    let nats = stack.nats().await;
    let mut outcomes = nats
        .subscribe(subjects::notice_all(stack.prefix(), notices::REPLY_OUTCOME))
        .await
        .unwrap();
    // A sniffing subject the forged header points at.
    let sniff = subjects::command(stack.prefix(), PLAIN_APP, "sniffed");
    let mut sniffed = nats.subscribe(sniff.clone()).await.unwrap();
    nats.flush().await.unwrap();
    open_window(&stack, PLAIN_APP, "o_steered").await;
    open_window(&stack, SAFE_APP, "o_foreign").await;

    // 1. On the plain app's subject, an envelope that claims the safe app: refused.
    let claims_other = hello(SAFE_APP, "o_foreign", 1);
    let foreign_seq = publish_envelope(
        &stack,
        subjects::message(stack.prefix(), PLAIN_APP, "text"),
        &claims_other,
        &[],
    )
    .await;
    // 2. The plain app's own message, with a reply subject that is not its rendezvous.
    let own = hello(PLAIN_APP, "o_steered", 2);
    // A deadline far enough ahead that a slow replier still reads the header as live.
    let deadline = (wxoa_runtime::now_ms() + 30_000).to_string();
    let own_seq = publish_envelope(
        &stack,
        subjects::message(stack.prefix(), PLAIN_APP, "text"),
        &own,
        &[
            (headers::REPLY_SUBJECT, sniff.clone()),
            (headers::REPLY_DEADLINE, deadline),
        ],
    )
    .await;
    // The steered one is answered once, as a customer-service message (no rendezvous to ask).
    let notice = next_notice(&mut outcomes, Duration::from_secs(15))
        .await
        .expect("an outcome for the plain app's message");
    assert_eq!(notice["message_id"], own.id, "{notice}");
    assert_eq!(notice["channel"], "custom", "{notice}");
    let got = wxoa_tests::eventually(Duration::from_secs(10), || async {
        let got = stack.received(PLAIN_APP, "o_steered").await;
        (!got.is_empty()).then_some(got)
    })
    .await
    .expect("the user got the reply");
    assert_eq!(got.len(), 1, "{got:#?}");
    // Both messages are settled: anything the replier did with them is done.
    replier_settled(&stack, foreign_seq.max(own_seq)).await;
    nats.flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sniffed.next())
            .await
            .is_err(),
        "nothing was published to the subject the header named"
    );
    assert!(
        stack.received(SAFE_APP, "o_foreign").await.is_empty(),
        "nothing was sent as the safe app"
    );
    assert!(
        next_notice(&mut outcomes, Duration::from_millis(500))
            .await
            .is_none(),
        "the foreign envelope got no outcome"
    );
}

#[tokio::test]
async fn a_lost_answer_from_the_rendezvous_is_uncertain_not_a_second_reply() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let stack = Platform::start(config, HELLO_RULE, true).await;
    let _replier = stack.replier().await;
    let nats = stack.nats().await;
    let mut outcomes = nats
        .subscribe(subjects::notice_all(stack.prefix(), notices::REPLY_OUTCOME))
        .await
        .unwrap();
    // A gateway instance that takes the reply (hands it to WeChat) and whose answer is lost.
    let envelope = hello(PLAIN_APP, "o_lost", 3);
    let rendezvous = subjects::reply(
        stack.prefix(),
        PLAIN_APP,
        "lostanswer",
        &reply_key(&envelope.id),
    );
    let mut taken = nats.subscribe(rendezvous.clone()).await.unwrap();
    nats.flush().await.unwrap();
    open_window(&stack, PLAIN_APP, "o_lost").await;
    let deadline = (wxoa_runtime::now_ms() + 5000).to_string();
    publish_envelope(
        &stack,
        subjects::message(stack.prefix(), PLAIN_APP, "text"),
        &envelope,
        &[
            (headers::REPLY_SUBJECT, rendezvous),
            (headers::REPLY_DEADLINE, deadline),
        ],
    )
    .await;
    let request = tokio::time::timeout(Duration::from_secs(10), taken.next())
        .await
        .expect("the replier asked the gateway")
        .unwrap();
    assert!(request.reply.is_some(), "a request that wants an answer");
    // ... and no answer comes back.
    let notice = next_notice(&mut outcomes, Duration::from_secs(30))
        .await
        .expect("an outcome");
    assert_eq!(notice["channel"], "uncertain", "{notice}");
    assert_eq!(notice["reason"], "timeout", "{notice}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        stack.received(PLAIN_APP, "o_lost").await.is_empty(),
        "no customer-service message after a reply that may have been taken"
    );
}

#[tokio::test]
async fn an_upgrade_with_the_cut_over_stores_a_retry_in_flight_once() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let t = now();
    config.gateway.legacy_event_keys_before = t + 600;
    let stack = Platform::start(config, "", false).await;
    // An old gateway stored the first try of a click under the old key, and its answer was lost.
    let xml = event_xml(SAFE_APP, "o_upgrade", t, DISTINCT[0]);
    let inbound = Inbound::parse(xml.as_bytes()).unwrap();
    let mut old = Envelope::new(SAFE_APP, wxoa_runtime::now_ms(), inbound.clone());
    old.id = format!("{SAFE_APP}:{}", inbound.legacy_event_key().unwrap());
    publish_envelope(&stack, inbound.subject(stack.prefix(), SAFE_APP), &old, &[]).await;
    // WeChat's retry reaches a new gateway, which keys it by the old rule: a duplicate.
    let retry = stack
        .send(json!({"appid": SAFE_APP, "mode": "safe", "xml": xml, "tries": 1}))
        .await;
    assert_eq!(retry["outcome"], "success", "{retry:#}");
    assert_eq!(
        stack.stream_len().await,
        1,
        "the retry was not stored again"
    );
    // Events created from the cut-over on get the current key: two clicks in one second.
    for body in &DISTINCT[..2] {
        let xml = event_xml(SAFE_APP, "o_upgrade", t + 600, body);
        let outcome = stack
            .send(json!({"appid": SAFE_APP, "mode": "safe", "xml": xml, "tries": 1}))
            .await;
        assert_eq!(outcome["outcome"], "success", "{outcome:#}");
    }
    assert_eq!(stack.stream_len().await, 3);
}

#[tokio::test]
async fn a_plaintext_signature_is_bound_however_its_digits_are_split_and_for_every_app() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    // Replaying recorded traffic: no timestamp window, so any split of the digits parses.
    config.gateway.timestamp_window_secs = 0;
    config.gateway.allow_any_timestamp = true;
    // A second plaintext account with the same Token (operators reuse one).
    let mut twin = config.app(PLAIN_APP).expect("the plain app").clone();
    twin.appid = "wxplaintwin00003".into();
    twin.original_id_configured = false;
    config.apps.push(twin);
    let stack = Platform::start(config, "", false).await;
    let url = |app: &str, ts: &str, nonce: &str| {
        let sig = signature::server_signature(TOKEN, ts, nonce);
        format!(
            "{}/wechat/{app}?signature={sig}&timestamp={ts}&nonce={nonce}&openid=o_victim",
            stack.config.sim.gateway_url
        )
    };
    let post = |url: String, body: String| {
        let http = stack.http.clone();
        async move {
            let r = http.post(url).body(body).send().await.expect("answers");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let genuine = wxoa_tests::numbered_text("o_victim", 1);
    assert_eq!(
        post(url(PLAIN_APP, "1700000000", "5555"), genuine).await.0,
        200
    );
    // The same signature: sha1 of the sorted parts with no separator, so moving a digit from
    // the nonce to the timestamp keeps it.
    assert_eq!(
        signature::server_signature(TOKEN, "1700000000", "5555"),
        signature::server_signature(TOKEN, "17000000005", "555")
    );
    let forged = wxoa_tests::numbered_text("o_victim", 2);
    let (status, text) = post(url(PLAIN_APP, "17000000005", "555"), forged.clone()).await;
    assert_eq!(status, 403, "the digits split anew: {text}");
    // The URL seen for one app, posted to its twin with the same Token.
    let (status, text) = post(url("wxplaintwin00003", "1700000000", "5555"), forged).await;
    assert_eq!(status, 403, "another app with the same Token: {text}");
    // The same MsgId with other content under the seen URL: refused too, not left to dedupe.
    let edited = wxoa_tests::numbered_text("o_victim", 1).replace("m1", "edited");
    let (status, text) = post(url(PLAIN_APP, "1700000000", "5555"), edited).await;
    assert_eq!(status, 403, "same MsgId, other content: {text}");
    assert_eq!(stack.stream_len().await, 1);
}

#[tokio::test]
async fn the_gateway_starts_and_serves_safe_mode_without_redis() {
    // Nothing listens at the Redis URL.
    let dead_redis = format!("redis://127.0.0.1:{}", wxoa_tests::free_port());
    let mut config = wxoa_tests::test_config(&wxoa_tests::servers().nats_url, &dead_redis);
    config.gateway.reply_budget_ms = 0;
    config.gateway.nonce_timeout_ms = 500;
    config.sim.callback_timeout_ms = 3000;
    let stack = Platform::start(config, "", false).await;
    let text = |app: &str, mode: &str, id: u64| text_once(app, mode, "o_noredis", id);
    assert_eq!(
        stack.send(text(SAFE_APP, "safe", 1)).await["outcome"],
        "success"
    );
    let plain = stack.send(text(PLAIN_APP, "plain", 2)).await;
    assert_eq!(plain["attempts"][0]["status"], 503, "{plain:#}");
    assert_eq!(stack.stream_len().await, 1);
}
