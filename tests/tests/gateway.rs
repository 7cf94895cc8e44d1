//! The gateway end to end: real NATS, signed requests as WeChat sends them, bad input of
//! every kind, durable publish, dedupe, the reply rendezvous, and NATS going away.

use std::time::Duration;

use async_nats::jetstream;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::shutdown::CancellationToken;
use wxoa_tests::{
    AES_KEY, OwnNats, PLAIN_APP, SAFE_APP, TOKEN, fixture, shared_config, test_config,
};
use wxoa_wire::crypto::AesKey;
use wxoa_wire::inbound::Document;
use wxoa_wire::names::{headers, streams, subjects};
use wxoa_wire::reply::{PassiveReply, ReplyRequest, ReplyResponse};
use wxoa_wire::signature;

/// A running gateway and what a test needs to talk to it.
struct Gateway {
    url: String,
    config: Config,
    health: Health,
    nats: async_nats::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    async fn start(config: Config) -> Gateway {
        let nats = async_nats::connect(&config.nats.url).await.expect("nats");
        let health = Health::default();
        let app = wxoa_gateway::App::build(&config, health.clone())
            .await
            .expect("gateway builds");
        let url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { app.run(stop).await.expect("gateway runs") });
        Gateway {
            url,
            config,
            health,
            nats,
            shutdown,
            task,
        }
    }

    async fn stream_len(&self) -> u64 {
        let js = jetstream::new(self.nats.clone());
        let mut stream = js
            .get_stream(streams::inbound(&self.config.nats.prefix))
            .await
            .expect("stream");
        stream.info().await.expect("info").state.messages
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

fn now() -> String {
    (wxoa_runtime::now_ms() / 1000).to_string()
}

/// A plaintext-mode POST URL for `xml`, signed with the app token.
/// A signed plaintext callback URL with a nonce of its own, as WeChat sends each callback (the
/// gateway binds a plaintext nonce to the first message it carries).
fn plain_url(base: &str, app: &str, timestamp: &str) -> String {
    static NONCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100_000);
    let nonce = NONCES
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string();
    let nonce = nonce.as_str();
    let sig = signature::server_signature(TOKEN, timestamp, nonce);
    format!("{base}/wechat/{app}?signature={sig}&timestamp={timestamp}&nonce={nonce}&openid=o1")
}

/// A safe-mode request (URL, body) for `xml`.
fn safe_request(base: &str, xml: &str) -> (String, String) {
    let key = AesKey::from_encoding_aes_key(AES_KEY).unwrap();
    let encrypt = key.encrypt(SAFE_APP, xml.as_bytes());
    let (timestamp, nonce) = (now(), "777".to_owned());
    let sig = signature::server_signature(TOKEN, &timestamp, &nonce);
    let msig = signature::msg_signature(TOKEN, &timestamp, &nonce, &encrypt);
    let url = format!(
        "{base}/wechat/{SAFE_APP}?signature={sig}&timestamp={timestamp}&nonce={nonce}&openid=o1&encrypt_type=aes&msg_signature={msig}"
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_safe]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    (url, body)
}

fn text_xml(from: &str, msg_id: u64, content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_plain]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>",
        now()
    )
}

async fn post(url: &str, body: String) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .expect("http");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn url_verification_echoes_only_when_signed() {
    let gw = Gateway::start(shared_config()).await;
    let ts = now();
    let sig = signature::server_signature(TOKEN, &ts, "n1");
    let ok = reqwest::get(format!(
        "{}/wechat/{PLAIN_APP}?signature={sig}&timestamp={ts}&nonce=n1&echostr=shr5ch",
        gw.url
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "shr5ch");
    let bad = reqwest::get(format!(
        "{}/wechat/{PLAIN_APP}?signature={sig}&timestamp={ts}&nonce=n2&echostr=shr5ch",
        gw.url
    ))
    .await
    .unwrap();
    assert_eq!(bad.status(), 403);
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected_and_nothing_is_stored() {
    let gw = Gateway::start(shared_config()).await;
    let xml = text_xml("o1", 1, "hi");
    let ts = now();
    // Wrong signature.
    let url = plain_url(&gw.url, PLAIN_APP, &ts).replacen("&nonce=", "&nonce=9", 1);
    assert_eq!(post(&url, xml.clone()).await.0, 403);
    // Stale timestamp (outside the 300 s window).
    let old = (wxoa_runtime::now_ms() / 1000 - 3600).to_string();
    assert_eq!(
        post(&plain_url(&gw.url, PLAIN_APP, &old), xml.clone())
            .await
            .0,
        403
    );
    // Plaintext for an app configured with an AES key: a downgrade, refused.
    let (safe_url, _) = safe_request(&gw.url, &xml);
    let downgrade = safe_url.split("&encrypt_type").next().unwrap().to_owned();
    assert_eq!(post(&downgrade, xml.clone()).await.0, 400);
    // Unknown app.
    assert_eq!(
        post(&plain_url(&gw.url, "wxnobody", &ts), xml.clone())
            .await
            .0,
        404
    );
    // Malformed and hostile XML.
    let url = plain_url(&gw.url, PLAIN_APP, &ts);
    assert_eq!(post(&url, "<xml><ToUserName>".into()).await.0, 400);
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><Content>&b;</Content></xml>"#;
    assert_eq!(post(&url, bomb.into()).await.0, 400);
    let deep = format!("<xml>{}{}</xml>", "<a>".repeat(100), "</a>".repeat(100));
    assert_eq!(post(&url, deep).await.0, 400);
    // Oversized body.
    let big = format!(
        "<xml><Content>{}</Content></xml>",
        "x".repeat(gw.config.gateway.body_limit_bytes + 1)
    );
    assert_eq!(post(&url, big).await.0, 413);
    // Missing query parameters.
    assert_eq!(
        post(&format!("{}/wechat/{PLAIN_APP}", gw.url), xml.clone())
            .await
            .0,
        400
    );
    // Broken ciphertext in safe mode, and a valid one for another appid.
    let (url, body) = safe_request(&gw.url, &text_xml("o1", 2, "x"));
    let broken = body.replace("<![CDATA[", "<![CDATA[AAAA");
    let msig_fixed = {
        let enc = Document::parse(broken.as_bytes())
            .unwrap()
            .root()
            .get("Encrypt")
            .unwrap()
            .to_owned();
        let q: Vec<&str> = url.split('&').collect();
        let ts = q.iter().find_map(|p| p.strip_prefix("timestamp=")).unwrap();
        let m = signature::msg_signature(TOKEN, ts, "777", &enc);
        url.split("&msg_signature=").next().unwrap().to_owned() + "&msg_signature=" + &m
    };
    assert_eq!(post(&msig_fixed, broken).await.0, 400);
    let key = AesKey::from_encoding_aes_key(AES_KEY).unwrap();
    let foreign = key.encrypt("wxsomeoneelse", text_xml("o1", 3, "x").as_bytes());
    let ts = now();
    let msig = signature::msg_signature(TOKEN, &ts, "9", &foreign);
    let sig = signature::server_signature(TOKEN, &ts, "9");
    let url = format!(
        "{}/wechat/{SAFE_APP}?signature={sig}&timestamp={ts}&nonce=9&encrypt_type=aes&msg_signature={msig}",
        gw.url
    );
    let (status, text) = post(&url, format!("<xml><Encrypt>{foreign}</Encrypt></xml>")).await;
    assert_eq!(status, 400);
    assert!(text.contains("-40005"), "{text}");
    assert_eq!(gw.stream_len().await, 0, "nothing rejected may be stored");
    gw.stop().await;
}

#[tokio::test]
async fn every_fixture_is_stored_once_with_envelope_headers() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0; // answer right after the PubAck
    // The fixtures are other accounts' callbacks: no ToUserName check.
    for app in &mut config.apps {
        app.original_id_configured = false;
    }
    let gw = Gateway::start(config).await;
    let names: Vec<String> = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/inbound"
    ))
    .expect("fixtures folder beside the checkout")
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .filter(|n| !n.starts_with("envelope_"))
    .collect();
    assert!(names.len() >= 30, "found {} fixtures", names.len());
    let ts = now();
    for name in &names {
        let xml = fixture(name);
        let (status, body) = post(&plain_url(&gw.url, PLAIN_APP, &ts), xml.clone()).await;
        assert_eq!((status, body.as_str()), (200, "success"), "{name}");
        // WeChat's retry of the same callback: deduplicated by JetStream.
        let (status, body) = post(&plain_url(&gw.url, PLAIN_APP, &ts), xml).await;
        assert_eq!((status, body.as_str()), (200, "success"), "{name} retry");
    }
    assert_eq!(gw.stream_len().await, names.len() as u64);
    // The stored messages carry the envelope and its headers.
    let js = jetstream::new(gw.nats.clone());
    let stream = js
        .get_stream(streams::inbound(&gw.config.nats.prefix))
        .await
        .unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(envelope["app_id"], PLAIN_APP);
    assert!(envelope["fields"].is_object() && envelope["detail"]["kind"].is_string());
    let h = first.headers;
    assert_eq!(
        h.get(headers::MSG_ID).unwrap().as_str(),
        envelope["id"].as_str().unwrap()
    );
    assert_eq!(h.get(headers::CE_SPECVERSION).unwrap().as_str(), "1.0");
    assert_eq!(
        h.get(headers::CE_SOURCE).unwrap().as_str(),
        format!("/wechat/{PLAIN_APP}")
    );
    assert!(h.get(headers::TRACEPARENT).is_some());
    assert!(
        h.get(headers::REPLY_SUBJECT).is_none(),
        "no rendezvous with a zero budget"
    );
    gw.stop().await;
}

#[tokio::test]
async fn passive_reply_via_rendezvous_in_plaintext_and_safe_mode() {
    let gw = Gateway::start(shared_config()).await;
    let reply = PassiveReply::Text {
        content: "你好 ]]> <b>".into(),
    };
    let mut seen = wxoa_tests::spawn_replier(&gw.config, move |_| Some(reply.clone())).await;

    // Plaintext.
    let (status, body) = post(
        &plain_url(&gw.url, PLAIN_APP, &now()),
        text_xml("o_user", 10, "hi"),
    )
    .await;
    assert_eq!(status, 200);
    let doc = Document::parse(body.as_bytes()).expect("reply XML");
    assert_eq!(doc.root().get("Content"), Some("你好 ]]> <b>"));
    assert_eq!(doc.root().get("ToUserName"), Some("o_user"));
    assert_eq!(doc.root().get("FromUserName"), Some("gh_plain"));
    let (h, answer) = wxoa_tests::next_answer(&mut seen).await;
    assert_eq!(answer, ReplyResponse::Taken);
    let subject = h.get(headers::REPLY_SUBJECT).unwrap().to_string();
    assert!(
        subject.starts_with(&format!("{}.{PLAIN_APP}.reply.", gw.config.nats.prefix)),
        "{subject}"
    );
    let deadline: i64 = h
        .get(headers::REPLY_DEADLINE)
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    assert!(deadline > wxoa_runtime::now_ms() - 60_000);

    // Safe mode: the reply is the encrypted envelope, signed with the app token.
    let (url, body) = safe_request(
        &gw.url,
        &text_xml("o_user", 11, "hi").replace("gh_plain", "gh_safe"),
    );
    let (status, body) = post(&url, body).await;
    assert_eq!(status, 200);
    let env = Document::parse(body.as_bytes()).unwrap();
    let root = env.root();
    let (enc, msig) = (
        root.get("Encrypt").unwrap(),
        root.get("MsgSignature").unwrap(),
    );
    assert!(signature::verify_msg_signature(
        TOKEN,
        root.get("TimeStamp").unwrap(),
        root.get("Nonce").unwrap(),
        enc,
        msig
    ));
    let plain = AesKey::from_encoding_aes_key(AES_KEY)
        .unwrap()
        .decrypt(SAFE_APP, enc)
        .unwrap();
    let inner = Document::parse(&plain.message).unwrap();
    assert_eq!(inner.root().get("Content"), Some("你好 ]]> <b>"));
    assert_eq!(
        wxoa_tests::next_answer(&mut seen).await.1,
        ReplyResponse::Taken
    );
    gw.stop().await;
}

#[tokio::test]
async fn late_reply_is_told_late_and_explicit_no_reply_answers_success() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 300;
    let gw = Gateway::start(config).await;
    // No replier: the budget runs out, WeChat gets "success" (and the message is stored).
    let (status, body) = post(
        &plain_url(&gw.url, PLAIN_APP, &now()),
        text_xml("o2", 20, "x"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(gw.stream_len().await, 1);
    // A replier that comes too late hears "late".
    let js = jetstream::new(gw.nats.clone());
    let stream = js
        .get_stream(streams::inbound(&gw.config.nats.prefix))
        .await
        .unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    let subject = stored
        .headers
        .get(headers::REPLY_SUBJECT)
        .unwrap()
        .to_string();
    let late = gw
        .nats
        .request(
            subject,
            serde_json::to_vec(&ReplyRequest {
                reply: Some(PassiveReply::Text {
                    content: "x".into(),
                }),
            })
            .unwrap()
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<ReplyResponse>(&late.payload).unwrap(),
        ReplyResponse::Late
    );
    // An explicit "no reply" ends the wait at once.
    let mut seen = wxoa_tests::spawn_replier(&gw.config, |_| None).await;
    let (status, body) = post(
        &plain_url(&gw.url, PLAIN_APP, &now()),
        text_xml("o2", 21, "x"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(
        wxoa_tests::next_answer(&mut seen).await.1,
        ReplyResponse::Taken
    );
    gw.stop().await;
}

#[tokio::test]
async fn nats_down_answers_503_and_nothing_is_lost() {
    let mut nats = OwnNats::start();
    let s = wxoa_tests::servers();
    let mut config = test_config(&nats.url, &s.redis_url);
    config.nats.storage = wxoa_runtime::config::Storage::File;
    config.gateway.reply_budget_ms = 0;
    config.gateway.publish_timeout_ms = 1000;
    let gw = Gateway::start(config).await;
    let (ok, _) = post(
        &plain_url(&gw.url, PLAIN_APP, &now()),
        text_xml("o3", 30, "before"),
    )
    .await;
    assert_eq!(ok, 200);
    assert_eq!(gw.health.ready().await, Ok(()));
    let admin = wxoa_runtime::admin::serve(
        "127.0.0.1:0".parse().unwrap(),
        gw.health.clone(),
        gw.shutdown.clone(),
    )
    .await
    .unwrap();
    let readyz = || async move {
        let response = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .unwrap();
        response.status().as_u16()
    };
    assert_eq!(readyz().await, 200);

    nats.stop();
    let not_ready = wxoa_tests::eventually(Duration::from_secs(10), || async {
        (readyz().await == 503).then_some(())
    })
    .await;
    assert!(not_ready.is_some(), "/readyz says 503 while NATS is down");
    let during = text_xml("o3", 31, "during");
    let (status, _) = post(&plain_url(&gw.url, PLAIN_APP, &now()), during.clone()).await;
    assert_eq!(
        status, 503,
        "never success for a message that is not stored"
    );

    nats.restart();
    // WeChat retries the same message; once NATS is back it is stored exactly once.
    let stored = wxoa_tests::eventually(Duration::from_secs(20), || {
        let (url, body) = (plain_url(&gw.url, PLAIN_APP, &now()), during.clone());
        async move { (post(&url, body).await.0 == 200).then_some(()) }
    })
    .await;
    assert!(stored.is_some(), "gateway recovered after NATS came back");
    assert_eq!(readyz().await, 200, "ready again");
    let (status, _) = post(&plain_url(&gw.url, PLAIN_APP, &now()), during).await;
    assert_eq!(status, 200);
    let gw_nats = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(gw_nats);
    let mut stream = js
        .get_stream(streams::inbound(&gw.config.nats.prefix))
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        2,
        "before + during, no duplicate"
    );
    gw.stop().await;
}

#[test]
fn subjects_used_here_come_from_the_wire_crate() {
    assert_eq!(subjects::message("p", "wx1", "text"), "p.wx1.message.text");
}
