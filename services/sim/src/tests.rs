//! The simulator driven over HTTP on 127.0.0.1:0, and the platform side against a tiny gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wxoa_runtime::Config;
use wxoa_runtime::config::AppConfig;
use wxoa_wire::inbound::{Detail, EncryptedBody, Inbound};
use wxoa_wire::reply::{PassiveReply, encrypted_envelope};
use wxoa_wire::{crypto, signature};

use crate::callback::{self, CallbackRequest, MessageSpec, Mode, Outcome};
use crate::{FORCE_REFRESH_DAILY_LIMIT, Sim, paths};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn config(gateway_url: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [sim]
        listen = "127.0.0.1:0"
        gateway_url = "{gateway_url}"
        callback_timeout_ms = 300
        [[apps]]
        appid = "wxsafe"
        secret = "secret-safe"
        token = "tok-safe"
        encoding_aes_key = "{KEY}"
        original_id = "gh_safe"
        verified = true
        [[apps]]
        appid = "wxplain"
        secret = "secret-plain"
        token = "tok-plain"
        verified = true
        [[apps]]
        appid = "wxunverified"
        secret = "secret-unverified"
        token = "tok-unverified"
        "#
    ))
    .expect("test config")
}

fn app<'a>(config: &'a Config, appid: &str) -> &'a AppConfig {
    config.app(appid).expect("test app")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A running simulator, stopped on drop.
struct Running {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Running {
    async fn start(gateway_url: &str) -> Running {
        Running::start_with(&config(gateway_url)).await
    }

    async fn start_with(config: &Config) -> Running {
        let sim = Sim::build(config).await.expect("sim binds");
        let base = sim.base_url();
        assert!(
            base.starts_with("http://127.0.0.1:") && sim.local_addr().port() != 0,
            "{base}"
        );
        let stop = CancellationToken::new();
        tokio::spawn(sim.run(stop.clone()));
        Running {
            base,
            http: http(),
            stop,
        }
    }

    async fn get(&self, path_and_query: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn token_call(&self, appid: &str, secret: &str) -> Value {
        self.get(&format!(
            "{}?grant_type=client_credential&appid={appid}&secret={secret}",
            paths::TOKEN
        ))
        .await
    }

    async fn token(&self, appid: &str, secret: &str) -> String {
        let answer = self.token_call(appid, secret).await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {answer}"))
            .to_owned()
    }

    async fn stable(&self, appid: &str, secret: &str, force: bool) -> Value {
        let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": force});
        self.post(paths::STABLE_TOKEN, body).await
    }

    /// The errcode of a token-checked call (0 when it succeeded).
    async fn check(&self, token: &str) -> i64 {
        let answer = self
            .get(&format!("{}?access_token={token}", paths::CALLBACK_IP))
            .await;
        if answer["ip_list"].is_array() {
            return 0;
        }
        answer["errcode"]
            .as_i64()
            .unwrap_or_else(|| panic!("no errcode: {answer}"))
    }

    async fn advance(&self, secs: u64) {
        let answer = self
            .post(paths::CLOCK, json!({ "advance_secs": secs }))
            .await;
        assert!(answer["now_ms"].is_i64(), "{answer}");
    }
}

fn errcode(answer: &Value) -> i64 {
    answer["errcode"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn classic_token_overlap_and_errors() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let first = sim.token_call("wxsafe", "secret-safe").await;
    assert_eq!(first["expires_in"], 7200, "{first}");
    let a = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(sim.check(&a).await, 0);
    let b = sim.token("wxsafe", "secret-safe").await;
    assert_ne!(a, b);
    assert_eq!(
        sim.check(&a).await,
        0,
        "the replaced token lives on during the overlap"
    );
    assert_eq!(sim.check(&b).await, 0);
    sim.advance(301).await;
    assert_eq!(
        sim.check(&a).await,
        40001,
        "past the overlap the replaced token is invalid"
    );
    assert_eq!(sim.check(&b).await, 0);
    sim.advance(7200).await;
    assert_eq!(
        sim.check(&b).await,
        42001,
        "past its life the token is expired"
    );

    let missing = sim.get(paths::CALLBACK_IP).await;
    assert_eq!(errcode(&missing), 41001, "{missing}");
    assert!(
        missing["errmsg"].as_str().unwrap().contains(" rid: "),
        "{missing}"
    );
    assert_eq!(sim.check("garbage").await, 40001);
    assert_eq!(errcode(&sim.token_call("wxsafe", "wrong").await), 40125);
    assert_eq!(errcode(&sim.token_call("wxnope", "x").await), 40013);
    let bad_grant = sim
        .get(&format!(
            "{}?grant_type=x&appid=wxsafe&secret=secret-safe",
            paths::TOKEN
        ))
        .await;
    assert_eq!(errcode(&bad_grant), 40002);
    assert_eq!(
        errcode(&sim.post(paths::STABLE_TOKEN, json!("not an object")).await),
        47001
    );
    let unknown = sim.get("/cgi-bin/shorten/gen").await;
    assert_eq!(errcode(&unknown), 48001, "{unknown}");
}

#[tokio::test]
async fn stable_token_reuse_force_and_gap() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let s1 = sim.stable("wxsafe", "secret-safe", false).await;
    let t1 = s1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s1["expires_in"], 7200, "{s1}");
    let classic = sim.token("wxsafe", "secret-safe").await;
    sim.advance(100).await;
    let s2 = sim.stable("wxsafe", "secret-safe", false).await;
    assert_eq!(s2["access_token"], t1.as_str(), "same token while valid");
    let left = s2["expires_in"].as_i64().unwrap();
    assert!((7098..=7100).contains(&left), "{s2}");
    assert_eq!(
        sim.check(&t1).await,
        0,
        "a classic token does not touch the stable one"
    );

    let forced = sim.stable("wxsafe", "secret-safe", true).await;
    let t2 = forced["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t1, t2);
    assert_eq!(forced["expires_in"], 7200);
    assert_eq!(
        sim.check(&t1).await,
        40001,
        "force_refresh kills the previous token at once"
    );
    assert_eq!(sim.check(&t2).await, 0);
    assert_eq!(
        sim.check(&classic).await,
        0,
        "stable tokens do not touch classic ones"
    );
    assert_eq!(
        errcode(&sim.stable("wxsafe", "secret-safe", true).await),
        45011,
        "30 s gap"
    );
    sim.advance(31).await;
    let t3 = sim.stable("wxsafe", "secret-safe", true).await["access_token"].clone();
    assert!(t3.is_string() && t3 != t2.as_str());
    assert_eq!(errcode(&sim.stable("wxsafe", "wrong", false).await), 40125);

    // Near the end of its life a normal call renews; the old token lives to its end.
    let t3 = t3.as_str().unwrap().to_owned();
    sim.advance(7200 - 250).await;
    let renewed = sim.stable("wxsafe", "secret-safe", false).await;
    let t4 = renewed["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t4, t3);
    assert_eq!(sim.check(&t3).await, 0);
    sim.advance(260).await;
    assert_eq!(sim.check(&t3).await, 42001);
    assert_eq!(sim.check(&t4).await, 0);
}

#[tokio::test]
async fn stable_token_daily_force_limit() {
    let sim = Running::start("http://127.0.0.1:9").await;
    // Start just after a WeChat day boundary (midnight UTC+8) so the loop stays in one day.
    let now_ms = sim.get(paths::CLOCK).await["now_ms"].as_i64().unwrap();
    let into_day = (now_ms / 1000 + 8 * 3600).rem_euclid(86_400) as u64;
    sim.advance(86_400 - into_day + 60).await;
    for i in 0..FORCE_REFRESH_DAILY_LIMIT {
        let answer = sim.stable("wxplain", "secret-plain", true).await;
        assert!(answer["access_token"].is_string(), "force {i}: {answer}");
        sim.advance(31).await;
    }
    assert_eq!(
        errcode(&sim.stable("wxplain", "secret-plain", true).await),
        45009
    );
    assert!(sim.stable("wxplain", "secret-plain", false).await["access_token"].is_string());
    sim.advance(86_400).await;
    assert!(
        sim.stable("wxplain", "secret-plain", true).await["access_token"].is_string(),
        "a new day"
    );
    let stats = sim.get(paths::STATS).await;
    assert_eq!(
        stats["calls"]["wxplain"]["/cgi-bin/stable_token"], 23,
        "{stats}"
    );
    assert_eq!(
        stats["calls"]["wxplain"]["/cgi-bin/stable_token#force"], 22,
        "{stats}"
    );
}

#[tokio::test]
async fn revoke_invalidates_every_token() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let classic = sim.token("wxsafe", "secret-safe").await;
    let stable = sim.stable("wxsafe", "secret-safe", false).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = sim.token("wxplain", "secret-plain").await;
    let answer = sim.post(paths::REVOKE, json!({"appid": "wxsafe"})).await;
    assert_eq!(answer["revoked"], 2, "{answer}");
    assert_eq!(sim.check(&classic).await, 40001);
    assert_eq!(sim.check(&stable).await, 40001);
    assert_eq!(sim.check(&other).await, 0, "other apps keep their tokens");
    let fresh = sim.stable("wxsafe", "secret-safe", false).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, stable);
    assert_eq!(sim.check(&fresh).await, 0);
    let response = sim
        .http
        .post(format!("{}{}", sim.base, paths::REVOKE))
        .json(&json!({"appid": "wxnope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn ticket_needs_a_valid_token() {
    let sim = Running::start("http://127.0.0.1:9").await;
    assert_eq!(errcode(&sim.get(paths::TICKET).await), 41001);
    let token = sim.token("wxsafe", "secret-safe").await;
    let t1 = sim
        .get(&format!(
            "{}?access_token={token}&type=jsapi",
            paths::TICKET
        ))
        .await;
    assert_eq!(t1["errcode"], 0, "{t1}");
    assert_eq!(t1["errmsg"], "ok");
    assert_eq!(t1["expires_in"], 7200);
    let t2 = sim
        .get(&format!(
            "{}?access_token={token}&type=jsapi",
            paths::TICKET
        ))
        .await;
    assert_eq!(t1["ticket"], t2["ticket"], "the same ticket while valid");
    let card = sim
        .get(&format!(
            "{}?access_token={token}&type=wx_card",
            paths::TICKET
        ))
        .await;
    assert_ne!(card["ticket"], t1["ticket"]);
    assert_eq!(
        errcode(
            &sim.get(&format!("{}?access_token={token}&type=x", paths::TICKET))
                .await
        ),
        40097
    );
    let ips = sim
        .get(&format!("{}?access_token={token}", paths::API_DOMAIN_IP))
        .await;
    assert!(ips["ip_list"].is_array(), "{ips}");
}

#[tokio::test]
async fn faults_and_stats() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let apps = sim.get(paths::APPS).await;
    assert_eq!(apps, json!({"apps": ["wxsafe", "wxplain", "wxunverified"]}));

    // errcode -1 once on one API.
    let rule = sim
        .post(
            paths::FAULTS,
            json!({"api": paths::TOKEN, "errcode": -1, "times": 1}),
        )
        .await;
    assert_eq!(rule["id"], 1, "{rule}");
    assert_eq!(errcode(&sim.token_call("wxsafe", "secret-safe").await), -1);
    let token = sim.token("wxsafe", "secret-safe").await;

    // 45009 for one app until cleared.
    sim.post(paths::FAULTS, json!({"appid": "wxsafe", "errcode": 45009}))
        .await;
    assert_eq!(
        errcode(&sim.token_call("wxsafe", "secret-safe").await),
        45009
    );
    assert_eq!(
        sim.check(&token).await,
        45009,
        "token-checked APIs know the app by the token"
    );
    assert_eq!(errcode(&sim.token_call("wxplain", "secret-plain").await), 0);
    let listed = sim.get(paths::FAULTS).await;
    assert_eq!(
        listed["faults"].as_array().unwrap().len(),
        1,
        "the used-up rule is gone: {listed}"
    );
    let cleared = sim
        .http
        .delete(format!("{}{}", sim.base, paths::FAULTS))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.json::<Value>().await.unwrap()["cleared"], 1);
    assert_eq!(sim.check(&token).await, 0);

    // HTTP 503 twice.
    sim.post(paths::FAULTS, json!({"http_status": 503, "times": 2}))
        .await;
    for _ in 0..2 {
        let response = sim
            .http
            .get(format!(
                "{}{}?access_token={token}",
                sim.base,
                paths::CALLBACK_IP
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.text().await.unwrap().contains("503"));
    }
    assert_eq!(sim.check(&token).await, 0);

    // Latency on one API.
    sim.post(
        paths::FAULTS,
        json!({"api": paths::CALLBACK_IP, "latency_ms": 300, "times": 1}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(sim.check(&token).await, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(sim.check(&token).await, 0);
    assert!(started.elapsed() < Duration::from_millis(300));

    // Forced refreshes only.
    sim.post(
        paths::FAULTS,
        json!({"api": "/cgi-bin/stable_token#force", "errcode": -1, "times": 1}),
    )
    .await;
    assert!(sim.stable("wxplain", "secret-plain", false).await["access_token"].is_string());
    assert_eq!(
        errcode(&sim.stable("wxplain", "secret-plain", true).await),
        -1
    );

    // Bad rules are refused.
    for bad in [
        json!({"http_status": 200}),
        json!({"errcode": 0}),
        json!({}),
        json!({"nope": 1}),
    ] {
        let response = sim
            .http
            .post(format!("{}{}", sim.base, paths::FAULTS))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }

    let stats = sim.get(paths::STATS).await;
    let safe = &stats["calls"]["wxsafe"];
    assert_eq!(safe["/cgi-bin/token"], 3, "failed calls count too: {stats}");
    assert_eq!(safe["/cgi-bin/getcallbackip"], 7, "{stats}");
    assert_eq!(stats["calls"]["wxplain"]["/cgi-bin/token"], 1, "{stats}");
    assert_eq!(
        stats["calls"]["wxplain"]["/cgi-bin/stable_token"], 2,
        "{stats}"
    );
    assert_eq!(
        stats["calls"]["wxplain"]["/cgi-bin/stable_token#force"], 1,
        "{stats}"
    );
    sim.http
        .delete(format!("{}{}", sim.base, paths::STATS))
        .send()
        .await
        .unwrap();
    assert_eq!(
        sim.get(paths::STATS).await,
        json!({"calls": {}, "callbacks": {}})
    );
}

// ---- the platform side, against a tiny gateway ----

#[derive(Clone, Copy)]
enum Behaviour {
    /// A text reply, encrypted when the request was.
    Echo,
    /// A plaintext text reply whatever the mode.
    EchoPlain,
    /// An encrypted reply to the wrong user.
    WrongTo,
    /// An envelope signed with the wrong token.
    BadSignature,
    /// This status, body "busy".
    Status(u16),
    /// Sleep this long, then `success`.
    Sleep(u64),
    /// This body.
    Body(&'static str),
}

/// One request the gateway saw: its query and body.
type Seen = (HashMap<String, String>, String);

#[derive(Clone)]
struct Gateway {
    config: Arc<Config>,
    behaviour: Arc<Mutex<Behaviour>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Gateway {
    async fn start(behaviour: Behaviour) -> (Gateway, String, CancellationToken) {
        let gateway = Gateway {
            config: Arc::new(config("unused")),
            behaviour: Arc::new(Mutex::new(behaviour)),
            seen: Arc::default(),
        };
        let router = axum::Router::new()
            .route("/wechat/{appid}", axum::routing::post(handle))
            .with_state(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        });
        (gateway, url, stop)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Verifies like the real gateway must (signature, msg_signature, decryption), then answers.
async fn handle(
    State(gw): State<Gateway>,
    Path(appid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    gw.seen.lock().unwrap().push((q.clone(), body.clone()));
    let behaviour = *gw.behaviour.lock().unwrap();
    match behaviour {
        Behaviour::Status(status) => {
            return (StatusCode::from_u16(status).unwrap(), "busy").into_response();
        }
        Behaviour::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return "success".into_response();
        }
        Behaviour::Body(body) => return body.into_response(),
        _ => {}
    }
    let app = gw.config.app(&appid).expect("known app");
    let token = app.token.expose_secret();
    let (ts, nonce) = (&q["timestamp"], &q["nonce"]);
    assert!(
        signature::verify_server_signature(token, ts, nonce, &q["signature"]),
        "signature"
    );
    let encrypted = q.get("encrypt_type").map(String::as_str) == Some("aes");
    let inner = if encrypted {
        let envelope = EncryptedBody::parse(body.as_bytes()).expect("envelope");
        assert!(signature::verify_msg_signature(
            token,
            ts,
            nonce,
            &envelope.encrypt,
            &q["msg_signature"]
        ));
        let key = app.aes_key.as_ref().expect("key");
        key.decrypt(&appid, &envelope.encrypt)
            .expect("decrypts")
            .message
    } else {
        body.into_bytes()
    };
    let msg = Inbound::parse(&inner).expect("inbound parses");
    assert_eq!(q["openid"], msg.from_user_name);
    let content = match &msg.detail {
        Detail::Text { content, .. } => format!("echo: {content}"),
        _ => format!(
            "{}: {}",
            msg.msg_type,
            msg.event.clone().unwrap_or_default()
        ),
    };
    let reply = PassiveReply::Text { content };
    let to = if matches!(behaviour, Behaviour::WrongTo) {
        "o_other"
    } else {
        msg.from_user_name.as_str()
    };
    let xml = reply.to_xml(to, &msg.to_user_name, msg.create_time);
    if !encrypted || matches!(behaviour, Behaviour::EchoPlain) {
        return xml.into_response();
    }
    let sign_with = if matches!(behaviour, Behaviour::BadSignature) {
        "wrong-token"
    } else {
        token
    };
    let key = app.aes_key.as_ref().expect("key");
    encrypted_envelope(
        key,
        &appid,
        sign_with,
        &crypto::random_prefix(),
        &xml,
        "1700000000",
        "42",
    )
    .into_response()
}

fn text(from: &str, content: &str) -> CallbackRequest {
    CallbackRequest {
        appid: String::new(),
        mode: None,
        xml: None,
        message: Some(MessageSpec::Text {
            from: from.into(),
            content: content.into(),
            msg_id: None,
        }),
        timestamp: None,
        tries: None,
        timeout_ms: None,
    }
}

#[tokio::test]
async fn callback_safe_mode_reply_and_invalid_replies() {
    let (gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let config = config(&url);
    let app = app(&config, "wxsafe");
    let http = http();
    let send =
        async |req: CallbackRequest| callback::send(&http, &url, app, &req, &config.sim).await;

    let outcome = send(text("o_user1", "hi")).await;
    assert_eq!(outcome.outcome, Outcome::Reply, "{outcome:?}");
    let reply = outcome.reply.as_ref().unwrap();
    assert_eq!(reply["Content"], "echo: hi");
    assert_eq!(reply["ToUserName"], "o_user1");
    assert_eq!(reply["FromUserName"], "gh_safe");
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.attempts[0].status, Some(200));
    let (query, body) = gw.seen().pop().unwrap();
    assert_eq!(query["encrypt_type"], "aes");
    assert_eq!(query["openid"], "o_user1");
    assert!(
        body.contains("<Encrypt>") && body.contains("gh_safe") && !body.contains("Content"),
        "{body}"
    );

    // Compatible mode: plaintext elements plus Encrypt; either reply form is fine.
    let mut compat = text("o_user1", "yo");
    compat.mode = Some(Mode::Compat);
    assert_eq!(send(compat.clone()).await.outcome, Outcome::Reply);
    let (_, body) = gw.seen().pop().unwrap();
    assert!(
        body.contains("<Content><![CDATA[yo]]></Content>") && body.contains("<Encrypt>"),
        "{body}"
    );
    gw.set(Behaviour::EchoPlain);
    assert_eq!(send(compat).await.outcome, Outcome::Reply);

    let invalid = |expect: &'static str| {
        move |outcome: callback::CallbackOutcome| {
            assert_eq!(outcome.outcome, Outcome::Invalid, "{outcome:?}");
            let problem = outcome.problem.unwrap();
            assert!(problem.contains(expect), "{problem}");
        }
    };
    invalid("encrypted reply envelope")(send(text("o_user1", "hi")).await);
    gw.set(Behaviour::WrongTo);
    let wrong = send(text("o_user1", "hi")).await;
    assert_eq!(
        wrong.reply.as_ref().unwrap()["ToUserName"],
        "o_other",
        "fields kept for debugging"
    );
    invalid("ToUserName")(wrong);
    gw.set(Behaviour::BadSignature);
    invalid("MsgSignature")(send(text("o_user1", "hi")).await);
    gw.set(Behaviour::Body("<xml><a>"));
    invalid("XML")(send(text("o_user1", "hi")).await);
    gw.set(Behaviour::Body("{\"ok\":true}"));
    invalid("XML")(send(text("o_user1", "hi")).await);

    gw.set(Behaviour::Body("success"));
    assert_eq!(send(text("o_user1", "hi")).await.outcome, Outcome::Success);
    gw.set(Behaviour::Body(""));
    assert_eq!(send(text("o_user1", "hi")).await.outcome, Outcome::Empty);
}

#[tokio::test]
async fn callback_plain_mode_and_verbatim_xml() {
    let (gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let config = config(&url);
    let app = app(&config, "wxplain");
    let event = CallbackRequest {
        message: Some(MessageSpec::Event {
            from: "o_2".into(),
            event: "subscribe".into(),
            event_key: None,
        }),
        timestamp: Some(1_700_000_123),
        ..text("", "")
    };
    let outcome = callback::send(&http(), &url, app, &event, &config.sim).await;
    assert_eq!(outcome.outcome, Outcome::Reply, "{outcome:?}");
    assert_eq!(outcome.reply.unwrap()["Content"], "event: subscribe");
    let (query, body) = gw.seen().pop().unwrap();
    assert!(!query.contains_key("encrypt_type") && query["timestamp"] == "1700000123");
    let msg = Inbound::parse(body.as_bytes()).unwrap();
    assert_eq!(msg.to_user_name, "gh_plain", "default original_id");
    assert_eq!(msg.create_time, 1_700_000_123);

    let xml = "<xml><ToUserName>gh_plain</ToUserName><FromUserName>o_x</FromUserName>\
        <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>raw</Content><MsgId>5</MsgId></xml>";
    let verbatim = CallbackRequest {
        xml: Some(xml.into()),
        message: None,
        ..text("", "")
    };
    let outcome = callback::send(&http(), &url, app, &verbatim, &config.sim).await;
    assert_eq!(outcome.reply.unwrap()["Content"], "echo: raw");
    assert_eq!(gw.seen().pop().unwrap().1, xml);

    let mut safe = text("o_2", "hi");
    safe.mode = Some(Mode::Safe);
    let outcome = callback::send(&http(), &url, app, &safe, &config.sim).await;
    assert_eq!(outcome.outcome, Outcome::Failed);
    assert!(outcome.attempts.is_empty() && outcome.problem.unwrap().contains("encoding_aes_key"));
    let neither = CallbackRequest {
        message: None,
        ..text("", "")
    };
    assert_eq!(
        callback::send(&http(), &url, app, &neither, &config.sim)
            .await
            .outcome,
        Outcome::Failed
    );
}

#[tokio::test]
async fn callback_retries_the_same_message() {
    let (gw, url, _stop) = Gateway::start(Behaviour::Status(503)).await;
    let config = config(&url);
    let app = app(&config, "wxsafe");
    let outcome = callback::send(&http(), &url, app, &text("o_3", "hi"), &config.sim).await;
    assert_eq!(outcome.outcome, Outcome::Failed, "{outcome:?}");
    assert_eq!(outcome.attempts.len(), 3);
    assert!(
        outcome
            .attempts
            .iter()
            .all(|a| a.status == Some(503) && a.body == "busy")
    );
    let seen = gw.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s == &seen[0]),
        "every try sends the same query and body"
    );

    // Timeouts are retried too.
    gw.set(Behaviour::Sleep(1000));
    let mut slow = text("o_3", "hi");
    slow.tries = Some(2);
    slow.timeout_ms = Some(100);
    let started = Instant::now();
    let outcome = callback::send(&http(), &url, app, &slow, &config.sim).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.outcome, Outcome::Failed);
    assert_eq!(outcome.attempts.len(), 2);
    assert!(
        outcome
            .attempts
            .iter()
            .all(|a| a.error.as_deref() == Some("timeout after 100 ms")),
        "{outcome:?}"
    );

    // A gateway that is not there.
    let outcome = callback::send(&http(), "http://127.0.0.1:9", app, &slow, &config.sim).await;
    assert_eq!(outcome.outcome, Outcome::Failed);
    assert!(
        outcome
            .attempts
            .iter()
            .all(|a| a.status.is_none() && a.error.is_some()),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn sim_send_runs_the_platform_side() {
    let (_gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let sim = Running::start(&url).await;
    let request = json!({
        "appid": "wxsafe",
        "message": {"type": "event", "from": "o_4", "event": "CLICK", "event_key": "MENU_1"}
    });
    let outcome = sim.post(paths::SEND, request).await;
    assert_eq!(outcome["outcome"], "reply", "{outcome}");
    assert_eq!(outcome["reply"]["Content"], "event: CLICK");
    assert_eq!(outcome["attempts"][0]["status"], 200);
    let image =
        json!({"appid": "wxplain", "mode": "plain", "message": {"type": "image", "from": "o_4"}});
    assert_eq!(sim.post(paths::SEND, image).await["outcome"], "reply");
    let stats = sim.get(paths::STATS).await;
    assert_eq!(stats["callbacks"]["wxsafe"]["sent"], 1, "{stats}");
    assert_eq!(stats["callbacks"]["wxsafe"]["reply"], 1, "{stats}");
    assert_eq!(stats["callbacks"]["wxplain"]["attempts"], 1, "{stats}");
    let response = sim
        .http
        .post(format!("{}{}", sim.base, paths::SEND))
        .json(&json!({"appid": "wxnope", "message": {"type": "text", "from": "o", "content": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

// ---- customer-service messages ----

impl Running {
    async fn interact(&self, appid: &str, openid: &str, kind: &str) -> Value {
        let body = json!({"appid": appid, "openid": openid, "kind": kind});
        self.post(paths::INTERACTIONS, body).await
    }

    /// The errcode of `custom/send` with this body.
    async fn custom(&self, token: &str, body: Value) -> i64 {
        let path = format!("{}?access_token={token}", paths::CUSTOM_SEND);
        let answer = self.post(&path, body).await;
        answer["errcode"]
            .as_i64()
            .unwrap_or_else(|| panic!("no errcode: {answer}"))
    }

    async fn custom_text(&self, token: &str, openid: &str, content: &str) -> i64 {
        let body = json!({"touser": openid, "msgtype": "text", "text": {"content": content}});
        self.custom(token, body).await
    }

    async fn typing(&self, token: &str, openid: &str, command: &str) -> i64 {
        let path = format!("{}?access_token={token}", paths::CUSTOM_TYPING);
        let answer = self
            .post(&path, json!({"touser": openid, "command": command}))
            .await;
        errcode(&answer)
    }

    async fn messages(&self, appid: &str, openid: &str) -> Vec<Value> {
        let answer = self
            .get(&format!(
                "{}?appid={appid}&openid={openid}",
                paths::MESSAGES
            ))
            .await;
        answer["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("no messages: {answer}"))
            .clone()
    }
}

#[tokio::test]
async fn custom_send_message_window() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let unverified = sim.token("wxunverified", "secret-unverified").await;
    assert_eq!(
        sim.custom_text(&unverified, "o_1", "hi").await,
        48001,
        "an unverified account may not send customer-service messages"
    );
    let token = sim.token("wxsafe", "secret-safe").await;
    assert_eq!(
        sim.custom_text(&token, "o_1", "hi").await,
        45015,
        "no interaction, no window"
    );
    let opened = sim.interact("wxsafe", "o_1", "message").await;
    assert_eq!(opened["allowed"], 5, "{opened}");
    for i in 0..5 {
        assert_eq!(sim.custom_text(&token, "o_1", &format!("m{i}")).await, 0);
    }
    assert_eq!(sim.custom_text(&token, "o_1", "m5").await, 45047);
    assert_eq!(
        sim.custom_text(&token, "o_2", "x").await,
        45015,
        "windows are per user"
    );

    // The newest interaction replaces the allowance; 48 h later the window is closed.
    sim.interact("wxsafe", "o_1", "message").await;
    sim.advance(47 * 3600).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    assert_eq!(sim.custom_text(&token, "o_1", "late").await, 0);
    sim.advance(3600).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    assert_eq!(sim.custom_text(&token, "o_1", "too late").await, 45015);

    let messages = sim.messages("wxsafe", "o_1").await;
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["body"]["text"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m0", "m1", "m2", "m3", "m4", "late"]);
    assert_eq!(messages[0]["channel"], "custom");
    assert_eq!(messages[0]["msgtype"], "text");
    assert_eq!(messages[0]["appid"], "wxsafe");
    assert_eq!(messages[0]["openid"], "o_1");
    assert!(messages[0]["at_ms"].as_i64().unwrap() < messages[5]["at_ms"].as_i64().unwrap());
    assert!(sim.messages("wxsafe", "o_2").await.is_empty());
    assert!(sim.messages("wxplain", "o_1").await.is_empty());

    let stats = sim.get(paths::STATS).await;
    assert_eq!(stats["calls"]["wxsafe"][paths::CUSTOM_SEND], 10, "{stats}");
    let cleared = sim
        .http
        .delete(format!("{}{}", sim.base, paths::MESSAGES))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.json::<Value>().await.unwrap()["cleared"], 6);
    assert!(sim.messages("wxsafe", "o_1").await.is_empty());
}

#[tokio::test]
async fn custom_send_event_window() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let token = sim.token("wxplain", "secret-plain").await;
    let opened = sim.interact("wxplain", "o_e", "event").await;
    assert_eq!(opened["allowed"], 3, "{opened}");
    for _ in 0..3 {
        assert_eq!(sim.custom_text(&token, "o_e", "hi").await, 0);
    }
    assert_eq!(sim.custom_text(&token, "o_e", "hi").await, 45047);

    sim.interact("wxplain", "o_e", "event").await;
    assert_eq!(sim.custom_text(&token, "o_e", "hi").await, 0);
    sim.advance(61).await;
    assert_eq!(sim.custom_text(&token, "o_e", "hi").await, 45015);

    // Bad requests.
    let unknown = sim
        .http
        .post(format!("{}{}", sim.base, paths::INTERACTIONS))
        .json(&json!({"appid": "wxnope", "openid": "o", "kind": "event"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad_kind = sim
        .http
        .post(format!("{}{}", sim.base, paths::INTERACTIONS))
        .json(&json!({"appid": "wxplain", "openid": "o", "kind": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_kind.status(), 400);
}

#[tokio::test]
async fn custom_send_validation_token_and_faults() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let token = sim.token("wxsafe", "secret-safe").await;
    sim.interact("wxsafe", "o_v", "message").await;

    let article =
        json!({"title": "t", "description": "d", "url": "http://x", "picurl": "http://p"});
    let two = json!({"touser": "o_v", "msgtype": "news", "news": {"articles": [article, article]}});
    assert_eq!(sim.custom(&token, two).await, 45008);
    let none = json!({"touser": "o_v", "msgtype": "news", "news": {"articles": []}});
    assert_eq!(sim.custom(&token, none).await, 45008);
    assert_eq!(sim.custom_text(&token, "o_v", "").await, 44004);
    for bad in [
        json!({"touser": "o_v", "msgtype": "sticker", "sticker": {"media_id": "m"}}),
        json!({"touser": "o_v", "msgtype": "image", "image": {}}),
        json!({"touser": "o_v", "msgtype": "image"}),
        json!({"touser": "o_v", "msgtype": "miniprogrampage", "miniprogrampage": {"appid": "wxa"}}),
    ] {
        assert_eq!(sim.custom(&token, bad.clone()).await, 40008, "{bad}");
    }
    assert_eq!(
        sim.custom(&token, json!({"msgtype": "text", "text": {"content": "x"}}))
            .await,
        40003
    );
    let bad_json = sim
        .http
        .post(format!(
            "{}{}?access_token={token}",
            sim.base,
            paths::CUSTOM_SEND
        ))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(errcode(&bad_json.json().await.unwrap()), 47001);
    assert!(
        sim.messages("wxsafe", "o_v").await.is_empty(),
        "refused sends use no allowance and deliver nothing"
    );

    // Faults by api path.
    sim.post(
        paths::FAULTS,
        json!({"api": paths::CUSTOM_SEND, "errcode": -1, "times": 1}),
    )
    .await;
    assert_eq!(sim.custom_text(&token, "o_v", "a").await, -1);
    let news = json!({"touser": "o_v", "msgtype": "news", "news": {"articles": [article]},
        "customservice": {"kf_account": "test1@kftest"}});
    assert_eq!(sim.custom(&token, news).await, 0);
    let card = json!({"touser": "o_v", "msgtype": "wxcard", "wxcard": {"card_id": "c"}});
    assert_eq!(sim.custom(&token, card).await, 0);
    let kinds: Vec<Value> = sim
        .messages("wxsafe", "o_v")
        .await
        .iter()
        .map(|m| m["msgtype"].clone())
        .collect();
    assert_eq!(kinds, [json!("news"), json!("wxcard")]);

    // Token errors.
    let missing = sim
        .post(
            paths::CUSTOM_SEND,
            json!({"touser": "o_v", "msgtype": "text", "text": {"content": "x"}}),
        )
        .await;
    assert_eq!(errcode(&missing), 41001);
    sim.post(paths::REVOKE, json!({"appid": "wxsafe"})).await;
    assert_eq!(sim.custom_text(&token, "o_v", "x").await, 40001);
    let token = sim.token("wxsafe", "secret-safe").await;
    sim.advance(7201).await;
    assert_eq!(sim.custom_text(&token, "o_v", "x").await, 42001);
}

#[tokio::test]
async fn custom_typing_rules() {
    let sim = Running::start("http://127.0.0.1:9").await;
    let token = sim.token("wxsafe", "secret-safe").await;
    assert_eq!(sim.typing(&token, "o_t", "Typing").await, 45080);
    sim.interact("wxsafe", "o_t", "message").await;
    assert_eq!(sim.typing(&token, "o_t", "Typing").await, 0);
    assert_eq!(sim.typing(&token, "o_t", "CancelTyping").await, 0);
    assert_eq!(sim.typing(&token, "o_t", "Dance").await, 45072);
    sim.advance(31).await;
    assert_eq!(sim.typing(&token, "o_t", "Typing").await, 45080);
    assert_eq!(
        sim.custom_text(&token, "o_t", "still in the 48 h window")
            .await,
        0
    );
    assert_eq!(sim.typing("garbage", "o_t", "Typing").await, 40001);
}

#[tokio::test]
async fn sim_send_opens_windows_and_records_replies() {
    let (_gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let sim = Running::start(&url).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let click = json!({
        "appid": "wxsafe",
        "message": {"type": "event", "from": "o_s", "event": "CLICK", "event_key": "MENU_1"}
    });
    assert_eq!(sim.post(paths::SEND, click).await["outcome"], "reply");
    for _ in 0..3 {
        assert_eq!(sim.custom_text(&token, "o_s", "after click").await, 0);
    }
    assert_eq!(sim.custom_text(&token, "o_s", "one more").await, 45047);

    let hello = json!({
        "appid": "wxsafe",
        "message": {"type": "text", "from": "o_s", "content": "hello"}
    });
    assert_eq!(sim.post(paths::SEND, hello).await["outcome"], "reply");
    assert_eq!(sim.custom_text(&token, "o_s", "after message").await, 0);

    let unsubscribe = json!({
        "appid": "wxsafe",
        "message": {"type": "event", "from": "o_u", "event": "unsubscribe"}
    });
    sim.post(paths::SEND, unsubscribe).await;
    assert_eq!(sim.custom_text(&token, "o_u", "bye").await, 45015);

    let messages = sim.messages("wxsafe", "o_s").await;
    let channels: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap(),
                m["msgtype"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        [
            ("passive", "text"),
            ("custom", "text"),
            ("custom", "text"),
            ("custom", "text"),
            ("passive", "text"),
            ("custom", "text"),
        ]
    );
    assert_eq!(messages[0]["body"]["Content"], "event: CLICK");
    assert_eq!(messages[0]["body"]["ToUserName"], "o_s");
}

// ---- users, tags, remarks and blacklist ----

const GATEWAY_DOWN: &str = "http://127.0.0.1:9";

impl Running {
    /// A token-checked GET with `query` (`k=v&...`, may be empty).
    async fn api_get(&self, path: &str, token: &str, query: &str) -> Value {
        self.get(&format!("{path}?access_token={token}&{query}"))
            .await
    }

    /// A token-checked POST.
    async fn api_post(&self, path: &str, token: &str, body: Value) -> Value {
        self.post(&format!("{path}?access_token={token}"), body)
            .await
    }

    async fn generate(&self, appid: &str, count: u64) -> Value {
        self.post(
            paths::USERS_GENERATE,
            json!({"appid": appid, "count": count}),
        )
        .await
    }

    async fn followers(&self, appid: &str) -> Value {
        self.get(&format!("{}?appid={appid}", paths::USERS)).await
    }

    /// A follow event through `/_sim/send` (the follower state changes before the callback is
    /// POSTed, so an unreachable gateway is fine).
    async fn follow_event(&self, appid: &str, openid: &str, event: &str, key: Option<&str>) {
        let mut message = json!({"type": "event", "from": openid, "event": event});
        if let Some(key) = key {
            message["event_key"] = json!(key);
        }
        let outcome = self
            .post(
                paths::SEND,
                json!({"appid": appid, "mode": "plain", "tries": 1, "message": message}),
            )
            .await;
        assert!(outcome["outcome"].is_string(), "{outcome}");
    }

    /// Every follower by paging through `user/get`; checks the page shapes.
    async fn all_followers(&self, token: &str) -> Vec<String> {
        let mut all = Vec::new();
        let mut next = String::new();
        loop {
            let page = self
                .api_get(paths::USER_GET, token, &format!("next_openid={next}"))
                .await;
            let count = page["count"].as_u64().unwrap_or_else(|| panic!("{page}"));
            if count == 0 {
                assert!(page.get("data").is_none(), "{page}");
                assert_eq!(page["next_openid"], "", "{page}");
                return all;
            }
            assert!(count <= 10_000, "{count}");
            let openids = page["data"]["openid"].as_array().unwrap();
            assert_eq!(openids.len() as u64, count);
            all.extend(openids.iter().map(|o| o.as_str().unwrap().to_owned()));
            assert_eq!(page["next_openid"], *all.last().unwrap());
            next = all.last().unwrap().clone();
        }
    }

    async fn unsubscribe_status(&self, appid: &str, openid: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{}", self.base, paths::USERS_UNSUBSCRIBE))
            .json(&json!({"appid": appid, "openid": openid}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

fn gen_ids(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(crate::generated_openid).collect()
}

#[tokio::test]
async fn user_get_pages_followers_and_digest_tracks_them() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;

    let empty = sim.api_get(paths::USER_GET, &token, "").await;
    assert_eq!(empty, json!({"total": 0, "count": 0, "next_openid": ""}));
    assert_eq!(sim.followers("wxsafe").await["digest"], "0000000000000000");

    let generated = sim.generate("wxsafe", 25_000).await;
    assert_eq!(generated, json!({"appid": "wxsafe", "followers": 25_000}));
    let first = sim.api_get(paths::USER_GET, &token, "next_openid=").await;
    assert_eq!(first["total"], 25_000);
    assert_eq!(first["count"], 10_000);
    assert_eq!(first["data"]["openid"][0], "oGEN000000000000000000000000");
    assert_eq!(first["next_openid"], crate::generated_openid(9_999));
    let second = sim
        .api_get(
            paths::USER_GET,
            &token,
            &format!("next_openid={}", crate::generated_openid(9_999)),
        )
        .await;
    assert_eq!(second["count"], 10_000);
    assert_eq!(second["data"]["openid"][0], crate::generated_openid(10_000));
    let third = sim
        .api_get(
            paths::USER_GET,
            &token,
            &format!("next_openid={}", second["next_openid"].as_str().unwrap()),
        )
        .await;
    assert_eq!(third["count"], 5_000);
    assert_eq!(third["next_openid"], crate::generated_openid(24_999));
    let end = sim
        .api_get(
            paths::USER_GET,
            &token,
            &format!("next_openid={}", crate::generated_openid(24_999)),
        )
        .await;
    assert_eq!(end, json!({"total": 25_000, "count": 0, "next_openid": ""}));

    let all = sim.all_followers(&token).await;
    assert_eq!(all, gen_ids(0..25_000));
    let before = sim.followers("wxsafe").await;
    assert_eq!(before["followers"], 25_000);
    assert_eq!(before["digest"], crate::follower_digest(&all));
    assert_eq!(before["digest"].as_str().unwrap().len(), 16);

    // One leaves: the digest changes and still matches a fresh copy.
    let leaver = crate::generated_openid(12_345);
    let (status, answer) = sim.unsubscribe_status("wxsafe", &leaver).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"appid": "wxsafe", "followers": 24_999}));
    let after = sim.followers("wxsafe").await;
    assert_ne!(after["digest"], before["digest"]);
    let all = sim.all_followers(&token).await;
    assert_eq!(all.len(), 24_999);
    assert!(!all.contains(&leaver));
    assert_eq!(after["digest"], crate::follower_digest(&all));
    // The page after a cursor skips the leaver; a leaver is still a valid cursor.
    let page = sim
        .api_get(
            paths::USER_GET,
            &token,
            &format!("next_openid={}", crate::generated_openid(12_344)),
        )
        .await;
    assert_eq!(page["data"]["openid"][0], crate::generated_openid(12_346));
    let page = sim
        .api_get(paths::USER_GET, &token, &format!("next_openid={leaver}"))
        .await;
    assert_eq!(page["data"]["openid"][0], crate::generated_openid(12_346));
    assert_eq!(
        errcode(
            &sim.api_get(paths::USER_GET, &token, "next_openid=o_nobody")
                .await
        ),
        40003
    );

    // Explicit followers come after the generated ones, in insertion order.
    sim.follow_event("wxsafe", "o_b", "subscribe", None).await;
    sim.follow_event("wxsafe", "o_a", "subscribe", None).await;
    let all = sim.all_followers(&token).await;
    assert_eq!(all.len(), 25_001);
    assert_eq!(all[24_999..], ["o_b".to_owned(), "o_a".to_owned()]);
    let from_b = sim
        .api_get(paths::USER_GET, &token, "next_openid=o_b")
        .await;
    assert_eq!(from_b["data"]["openid"], json!(["o_a"]));
    assert_eq!(
        sim.followers("wxsafe").await["digest"],
        crate::follower_digest(&all)
    );
    sim.follow_event("wxsafe", "o_b", "unsubscribe", None).await;
    let all = sim.all_followers(&token).await;
    assert_eq!(all.last().unwrap(), "o_a");
    assert_eq!(all.len(), 25_000);
    let now = sim.followers("wxsafe").await;
    assert_eq!(now["followers"], 25_000);
    assert_eq!(now["digest"], crate::follower_digest(&all));
    // Generating more appends after the digest cache.
    sim.generate("wxsafe", 3).await;
    let all = sim.all_followers(&token).await;
    // 24 999 generated (one left), then 3 new generated ones, then the explicit o_a.
    assert_eq!(all[24_999..25_002], gen_ids(25_000..25_003)[..]);
    assert_eq!(all.last().unwrap(), "o_a");
    assert_eq!(
        sim.followers("wxsafe").await["digest"],
        crate::follower_digest(&all)
    );

    // Control-API errors.
    let (status, _) = sim.unsubscribe_status("wxsafe", &leaver).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = sim.unsubscribe_status("wxnope", &leaver).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = sim
        .http
        .post(format!("{}{}", sim.base, paths::USERS_GENERATE))
        .json(&json!({"appid": "wxnope", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = sim
        .http
        .get(format!("{}{}", sim.base, paths::USERS))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Apps are separate.
    assert_eq!(sim.followers("wxplain").await["followers"], 0);

    // Token checks and counters come with every users API.
    assert_eq!(errcode(&sim.get(paths::USER_GET).await), 41001);
    assert_eq!(
        errcode(&sim.api_get(paths::USER_GET, "garbage", "").await),
        40001
    );
    sim.post(
        paths::FAULTS,
        json!({"api": paths::USER_GET, "errcode": -1, "times": 1}),
    )
    .await;
    assert_eq!(errcode(&sim.api_get(paths::USER_GET, &token, "").await), -1);
    let stats = sim.get(paths::STATS).await;
    assert!(
        stats["calls"]["wxsafe"][paths::USER_GET].as_u64().unwrap() > 10,
        "{stats}"
    );
}

#[tokio::test]
async fn user_info_of_generated_explicit_left_and_unknown_users() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    sim.generate("wxsafe", 10).await;
    let info = |openid: String| {
        let sim = &sim;
        let token = &token;
        async move {
            sim.api_get(
                paths::USER_INFO,
                token,
                &format!("openid={openid}&lang=zh_CN"),
            )
            .await
        }
    };

    let seven = crate::generated_openid(7);
    assert_eq!(
        info(seven.clone()).await,
        json!({
            "subscribe": 1,
            "openid": seven,
            "language": "zh_CN",
            "subscribe_time": crate::GENERATED_SUBSCRIBE_BASE + 7,
            "unionid": "uGEN000000000000000000000007",
            "remark": "",
            "groupid": 0,
            "tagid_list": [],
            "subscribe_scene": crate::GENERATED_SCENES[1],
            "qr_scene": 0,
            "qr_scene_str": "",
        })
    );

    let now_secs = sim.get(paths::CLOCK).await["now_ms"].as_i64().unwrap() / 1000;
    sim.follow_event("wxsafe", "o_qr", "subscribe", Some("qrscene_42"))
        .await;
    sim.follow_event("wxsafe", "o_str", "subscribe", Some("qrscene_promo"))
        .await;
    sim.follow_event("wxsafe", "o_search", "subscribe", None)
        .await;
    let qr = info("o_qr".into()).await;
    assert_eq!(qr["subscribe"], 1, "{qr}");
    assert_eq!(qr["unionid"], "uo_qr");
    assert_eq!(qr["subscribe_scene"], "ADD_SCENE_QR_CODE");
    assert_eq!(qr["qr_scene"], 42);
    assert_eq!(qr["qr_scene_str"], "");
    let time = qr["subscribe_time"].as_i64().unwrap();
    assert!(
        (now_secs..now_secs + 5).contains(&time),
        "{time} {now_secs}"
    );
    let by_str = info("o_str".into()).await;
    assert_eq!(by_str["qr_scene"], 0);
    assert_eq!(by_str["qr_scene_str"], "promo");
    assert_eq!(
        info("o_search".into()).await["subscribe_scene"],
        "ADD_SCENE_SEARCH"
    );
    // A verbatim `xml` callback counts too.
    let xml = "<xml><ToUserName><![CDATA[gh_safe]]></ToUserName>\
        <FromUserName><![CDATA[o_xml]]></FromUserName><CreateTime>1</CreateTime>\
        <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>\
        <EventKey><![CDATA[qrscene_7]]></EventKey></xml>";
    let outcome = sim
        .post(
            paths::SEND,
            json!({"appid": "wxsafe", "mode": "plain", "tries": 1, "xml": xml}),
        )
        .await;
    assert_eq!(outcome["outcome"], "failed", "{outcome}");
    assert_eq!(info("o_xml".into()).await["qr_scene"], 7);

    // Users who left.
    sim.follow_event("wxsafe", "o_qr", "unsubscribe", None)
        .await;
    assert_eq!(
        info("o_qr".into()).await,
        json!({"subscribe": 0, "openid": "o_qr", "unionid": "uo_qr"})
    );
    let three = crate::generated_openid(3);
    sim.follow_event("wxsafe", &three, "unsubscribe", None)
        .await;
    assert_eq!(
        info(three.clone()).await,
        json!({"subscribe": 0, "openid": three, "unionid": "uGEN000000000000000000000003"})
    );
    assert_eq!(sim.followers("wxsafe").await["followers"], 12);
    // ... and came back.
    sim.advance(100).await;
    sim.follow_event("wxsafe", &three, "subscribe", Some("qrscene_9"))
        .await;
    let back = info(three.clone()).await;
    assert_eq!(back["subscribe"], 1);
    assert_eq!(back["qr_scene"], 9);
    assert!(back["subscribe_time"].as_i64().unwrap() >= now_secs + 100);
    assert_eq!(sim.followers("wxsafe").await["followers"], 13);

    // Unknown users.
    assert_eq!(errcode(&info("o_nobody".into()).await), 40003);
    assert_eq!(errcode(&info(crate::generated_openid(10)).await), 40003);
    assert_eq!(errcode(&info(String::new()).await), 40003);
    assert_eq!(
        errcode(
            &sim.api_get(paths::USER_INFO, "garbage", "openid=o_str")
                .await
        ),
        40001
    );

    // batchget.
    let batch = |openids: Vec<String>| {
        let list: Vec<Value> = openids
            .iter()
            .map(|o| json!({"openid": o, "lang": "zh_CN"}))
            .collect();
        sim.api_post(
            paths::USER_INFO_BATCHGET,
            &token,
            json!({"user_list": list}),
        )
    };
    let answer = batch(vec![seven.clone(), "o_qr".into(), "o_str".into()]).await;
    let list = answer["user_info_list"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{answer}");
    assert_eq!(list[0], info(seven.clone()).await);
    assert_eq!(list[1]["subscribe"], 0);
    assert_eq!(list[2]["qr_scene_str"], "promo");
    assert_eq!(errcode(&batch(vec![]).await), 40032);
    assert_eq!(errcode(&batch(vec![seven.clone(); 101]).await), 40032);
    let hundred = batch(vec![seven.clone(); 100]).await;
    assert_eq!(hundred["user_info_list"].as_array().unwrap().len(), 100);
    assert_eq!(
        errcode(&batch(vec![seven.clone(), "o_nobody".into()]).await),
        40003
    );
    assert_eq!(
        errcode(
            &sim.api_post(paths::USER_INFO_BATCHGET, &token, json!({"user_list": 5}))
                .await
        ),
        47001
    );
}

#[tokio::test]
async fn tags_create_update_delete_and_their_errors() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let post = |path: &'static str, body: Value| sim.api_post(path, &token, body);

    let created = post(paths::TAGS_CREATE, json!({"tag": {"name": "广东"}})).await;
    assert_eq!(created, json!({"tag": {"id": 100, "name": "广东"}}));
    let second = post(paths::TAGS_CREATE, json!({"tag": {"name": "北京"}})).await;
    assert_eq!(second["tag"]["id"], 101);
    assert_eq!(
        errcode(&post(paths::TAGS_CREATE, json!({"tag": {"name": "广东"}})).await),
        45157
    );
    assert_eq!(
        errcode(&post(paths::TAGS_CREATE, json!({"tag": {"name": "星标组"}})).await),
        45157
    );
    let thirty = "字".repeat(30);
    assert_eq!(
        post(paths::TAGS_CREATE, json!({"tag": {"name": thirty}})).await["tag"]["id"],
        102
    );
    let long = post(paths::TAGS_CREATE, json!({"tag": {"name": "x".repeat(31)}})).await;
    assert_eq!(errcode(&long), 45158);
    assert!(
        long["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("tag name too long"),
        "{long}"
    );
    assert_eq!(
        errcode(&post(paths::TAGS_CREATE, json!({"tag": {"name": ""}})).await),
        45158
    );
    assert_eq!(
        errcode(&post(paths::TAGS_CREATE, json!({"name": "x"})).await),
        47001
    );

    let tags = sim.api_get(paths::TAGS_GET, &token, "").await;
    assert_eq!(
        tags,
        json!({"tags": [
            {"id": 2, "name": "星标组", "count": 0},
            {"id": 100, "name": "广东", "count": 0},
            {"id": 101, "name": "北京", "count": 0},
            {"id": 102, "name": thirty, "count": 0},
        ]})
    );

    let update =
        |id: i64, name: &str| post(paths::TAGS_UPDATE, json!({"tag": {"id": id, "name": name}}));
    assert_eq!(errcode(&update(100, "广东人").await), 0);
    assert_eq!(
        errcode(&update(100, "广东人").await),
        0,
        "its own name is no duplicate"
    );
    assert_eq!(errcode(&update(100, "北京").await), 45157);
    assert_eq!(errcode(&update(100, &"x".repeat(31)).await), 45158);
    for system in [0, 1, 2] {
        assert_eq!(errcode(&update(system, "mine").await), 45058);
        assert_eq!(
            errcode(&post(paths::TAGS_DELETE, json!({"tag": {"id": system}})).await),
            45058
        );
    }
    assert_eq!(errcode(&update(999, "x").await), 45159);
    assert_eq!(
        errcode(&post(paths::TAGS_DELETE, json!({"tag": {"id": 999}})).await),
        45159
    );
    assert_eq!(
        sim.api_get(paths::TAGS_GET, &token, "").await["tags"][1]["name"],
        "广东人"
    );

    // Tagging users.
    sim.generate("wxsafe", 10_100).await;
    let ids = gen_ids(0..10_100);
    let tag = |openids: &[String], tagid: i64| {
        post(
            paths::TAGS_BATCH_TAG,
            json!({"openid_list": openids, "tagid": tagid}),
        )
    };
    let untag = |openids: &[String], tagid: i64| {
        post(
            paths::TAGS_BATCH_UNTAG,
            json!({"openid_list": openids, "tagid": tagid}),
        )
    };
    assert_eq!(errcode(&tag(&[], 100).await), 40032);
    assert_eq!(errcode(&tag(&ids[..51], 100).await), 40032);
    assert_eq!(errcode(&untag(&ids[..51], 100).await), 40032);
    assert_eq!(errcode(&tag(&ids[..1], 999).await), 45159);
    assert_eq!(errcode(&tag(&ids[..1], 1).await), 45159);
    let unknown = vec![ids[0].clone(), "o_nobody".to_owned()];
    assert_eq!(errcode(&tag(&unknown, 100).await), 40003);
    let idlist = |openid: &str| post(paths::TAGS_ID_LIST, json!({"openid": openid}));
    assert_eq!(
        idlist(&ids[0]).await,
        json!({"tagid_list": []}),
        "a failed call tags nobody"
    );
    assert_eq!(errcode(&idlist("o_nobody").await), 40003);

    // 10 050 members of tag 100: pages of 10 000.
    for chunk in ids[..10_050].chunks(50) {
        assert_eq!(errcode(&tag(chunk, 100).await), 0);
    }
    assert_eq!(
        errcode(&tag(&ids[..2], 2).await),
        0,
        "the star tag can be given"
    );
    assert_eq!(idlist(&ids[1]).await, json!({"tagid_list": [100, 2]}));
    let members = |tagid: i64, next: &str| {
        post(
            paths::TAG_USERS,
            json!({"tagid": tagid, "next_openid": next}),
        )
    };
    let first = members(100, "").await;
    assert_eq!(first["count"], 10_000);
    assert_eq!(first["data"]["openid"][0], ids[0]);
    assert_eq!(first["next_openid"], ids[9_999]);
    let second = members(100, &ids[9_999]).await;
    assert_eq!(second["count"], 50);
    assert_eq!(
        second["data"]["openid"].as_array().unwrap()[..],
        ids[10_000..10_050]
            .iter()
            .map(|o| json!(o))
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(second["next_openid"], ids[10_049]);
    assert_eq!(
        members(100, &ids[10_049]).await,
        json!({"count": 0, "next_openid": ""})
    );
    assert_eq!(errcode(&members(999, "").await), 45159);
    assert_eq!(errcode(&members(100, "o_nobody").await), 40003);
    let tags = sim.api_get(paths::TAGS_GET, &token, "").await;
    assert_eq!(tags["tags"][0]["count"], 2);
    assert_eq!(tags["tags"][1]["count"], 10_050);
    let info = sim
        .api_get(paths::USER_INFO, &token, &format!("openid={}", ids[1]))
        .await;
    assert_eq!(info["tagid_list"], json!([100, 2]));

    // Untagging, and a tag leaving with its users' memberships.
    assert_eq!(errcode(&untag(&ids[..1], 100).await), 0);
    assert_eq!(
        errcode(&untag(&ids[..1], 100).await),
        0,
        "untagging twice is fine"
    );
    assert_eq!(idlist(&ids[0]).await, json!({"tagid_list": [2]}));
    assert_eq!(members(100, "").await["data"]["openid"][0], ids[1]);
    assert_eq!(
        errcode(&post(paths::TAGS_DELETE, json!({"tag": {"id": 100}})).await),
        0
    );
    assert_eq!(idlist(&ids[1]).await, json!({"tagid_list": [2]}));
    assert_eq!(errcode(&members(100, "").await), 45159);
    // A follower who leaves loses their tags.
    sim.unsubscribe_status("wxsafe", &ids[0]).await;
    assert_eq!(
        sim.api_get(paths::TAGS_GET, &token, "").await["tags"][0]["count"],
        1
    );
    assert_eq!(
        errcode(&tag(&ids[..1], 101).await),
        40003,
        "not a follower any more"
    );

    // At most 20 tags per user.
    let user = &ids[5..6];
    let mut given = Vec::new();
    for n in 0..20 {
        let id = post(
            paths::TAGS_CREATE,
            json!({"tag": {"name": format!("t{n}")}}),
        )
        .await["tag"]["id"]
            .as_i64()
            .unwrap();
        assert_eq!(errcode(&tag(user, id).await), 0);
        given.push(id);
    }
    assert_eq!(errcode(&tag(user, 101).await), 45059);
    assert_eq!(
        errcode(&tag(user, given[3]).await),
        0,
        "a tag it already has is fine"
    );
    assert_eq!(
        errcode(&tag(&ids[5..7], 101).await),
        45059,
        "all or nothing"
    );
    assert_eq!(idlist(&ids[6]).await, json!({"tagid_list": []}));
    assert_eq!(idlist(&ids[5]).await["tagid_list"], json!(given));

    // At most 100 created tags (another app starts with none).
    let plain = sim.token("wxplain", "secret-plain").await;
    for n in 0..100 {
        let created = sim
            .api_post(
                paths::TAGS_CREATE,
                &plain,
                json!({"tag": {"name": format!("tag {n}")}}),
            )
            .await;
        assert_eq!(created["tag"]["id"], 100 + n, "{created}");
    }
    let too_many = sim
        .api_post(
            paths::TAGS_CREATE,
            &plain,
            json!({"tag": {"name": "one more"}}),
        )
        .await;
    assert_eq!(errcode(&too_many), 45056);
    assert_eq!(
        errcode(
            &sim.api_post(paths::TAGS_DELETE, &plain, json!({"tag": {"id": 150}}))
                .await
        ),
        0
    );
    let again = sim
        .api_post(
            paths::TAGS_CREATE,
            &plain,
            json!({"tag": {"name": "one more"}}),
        )
        .await;
    assert_eq!(again["tag"]["id"], 200, "ids are not reused");
}

#[tokio::test]
async fn remarks() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    sim.generate("wxsafe", 3).await;
    let one = crate::generated_openid(1);
    let remark = |openid: &str, remark: &str| {
        sim.api_post(
            paths::USER_REMARK,
            &token,
            json!({"openid": openid, "remark": remark}),
        )
    };
    let answer = remark(&one, "pangzi").await;
    assert_eq!(answer, json!({"errcode": 0, "errmsg": "ok"}));
    let info = |openid: String| {
        let (sim, token) = (&sim, &token);
        async move {
            sim.api_get(paths::USER_INFO, token, &format!("openid={openid}"))
                .await
        }
    };
    assert_eq!(info(one.clone()).await["remark"], "pangzi");
    assert_eq!(info(crate::generated_openid(2)).await["remark"], "");
    let thirty = "备".repeat(30);
    assert_eq!(errcode(&remark(&one, &thirty).await), 0);
    assert_eq!(info(one.clone()).await["remark"], thirty);
    let long = remark(&one, &"x".repeat(31)).await;
    assert_eq!(errcode(&long), 40097);
    assert!(
        long["errmsg"].as_str().unwrap().starts_with("invalid args"),
        "{long}"
    );
    assert_eq!(info(one.clone()).await["remark"], thirty);
    assert_eq!(errcode(&remark("o_nobody", "x").await), 40003);
    sim.follow_event("wxsafe", "o_e", "subscribe", None).await;
    assert_eq!(errcode(&remark("o_e", "explicit").await), 0);
    assert_eq!(info("o_e".into()).await["remark"], "explicit");
    assert_eq!(errcode(&remark(&one, "").await), 0);
    assert_eq!(info(one).await["remark"], "");
    assert_eq!(
        errcode(
            &sim.api_post(paths::USER_REMARK, "garbage", json!({"openid": "o_e"}))
                .await
        ),
        40001
    );
}

#[tokio::test]
async fn blacklist_add_list_remove() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    sim.generate("wxsafe", 30).await;
    sim.follow_event("wxsafe", "o_e", "subscribe", None).await;
    let ids = gen_ids(0..30);
    let add = |openids: Vec<String>| {
        sim.api_post(
            paths::BLACKLIST_ADD,
            &token,
            json!({"openid_list": openids}),
        )
    };
    let remove = |openids: Vec<String>| {
        sim.api_post(
            paths::BLACKLIST_REMOVE,
            &token,
            json!({"openid_list": openids}),
        )
    };
    let get =
        |begin: &str| sim.api_post(paths::BLACKLIST_GET, &token, json!({"begin_openid": begin}));

    assert_eq!(
        get("").await,
        json!({"total": 0, "count": 0, "next_openid": ""})
    );
    assert_eq!(errcode(&add(vec![]).await), 40032);
    assert_eq!(errcode(&add(ids[..21].to_vec()).await), 40032);
    assert_eq!(errcode(&remove(ids[..21].to_vec()).await), 40032);
    assert_eq!(
        errcode(&add(vec![ids[0].clone(), "o_nobody".into()]).await),
        40003
    );
    assert_eq!(get("").await["total"], 0, "a failed call blacklists nobody");

    // Added in any order, listed in the stable order.
    assert_eq!(errcode(&add(vec!["o_e".into()]).await), 0);
    assert_eq!(errcode(&add(ids[10..30].to_vec()).await), 0);
    assert_eq!(errcode(&add(ids[..5].to_vec()).await), 0);
    assert_eq!(errcode(&add(ids[..1].to_vec()).await), 0, "twice is fine");
    let mut expected: Vec<String> = ids[..5].to_vec();
    expected.extend_from_slice(&ids[10..30]);
    expected.push("o_e".into());
    let all = get("").await;
    assert_eq!(all["total"], 26);
    assert_eq!(all["count"], 26);
    assert_eq!(all["data"]["openid"], json!(expected));
    assert_eq!(all["next_openid"], "o_e");
    let rest = get(&ids[4]).await;
    assert_eq!(rest["total"], 26);
    assert_eq!(rest["count"], 21);
    assert_eq!(rest["data"]["openid"][0], ids[10]);
    assert_eq!(
        get("o_e").await,
        json!({"total": 26, "count": 0, "next_openid": ""})
    );
    assert_eq!(errcode(&get("o_nobody").await), 40003);
    let empty_body = sim
        .http
        .post(format!(
            "{}{}?access_token={token}",
            sim.base,
            paths::BLACKLIST_GET
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(empty_body["total"], 26, "{empty_body}");

    // Blacklisted users stay followers.
    let followers = sim.api_get(paths::USER_GET, &token, "").await;
    assert_eq!(followers["total"], 31);
    let info = sim
        .api_get(paths::USER_INFO, &token, &format!("openid={}", ids[0]))
        .await;
    assert_eq!(info["subscribe"], 1);

    assert_eq!(errcode(&remove(ids[..3].to_vec()).await), 0);
    assert_eq!(errcode(&remove(vec!["o_nobody".into()]).await), 40003);
    let after = get("").await;
    assert_eq!(after["total"], 23);
    assert_eq!(after["data"]["openid"][0], ids[3]);
    // A follower who leaves leaves the blacklist too.
    sim.follow_event("wxsafe", "o_e", "unsubscribe", None).await;
    let after = get("").await;
    assert_eq!(after["total"], 22);
    assert_eq!(after["next_openid"], ids[29]);
}

#[tokio::test]
async fn a_million_generated_followers_are_cheap() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let generated = sim.generate("wxsafe", 1_000_000).await;
    assert_eq!(generated["followers"], 1_000_000);
    let first = sim.api_get(paths::USER_GET, &token, "").await;
    assert_eq!(first["total"], 1_000_000);
    assert_eq!(first["count"], 10_000);
    let tail = sim
        .api_get(
            paths::USER_GET,
            &token,
            &format!("next_openid={}", crate::generated_openid(999_995)),
        )
        .await;
    assert_eq!(tail["data"]["openid"], json!(gen_ids(999_996..1_000_000)));
    let last = sim
        .api_get(
            paths::USER_INFO,
            &token,
            &format!("openid={}", crate::generated_openid(999_999)),
        )
        .await;
    assert_eq!(
        last["subscribe_time"],
        crate::GENERATED_SUBSCRIBE_BASE + 999_999
    );
    let digest = sim.followers("wxsafe").await;
    assert_eq!(digest["followers"], 1_000_000);
    assert_eq!(digest["digest"].as_str().unwrap().len(), 16);
    let over = sim
        .http
        .post(format!("{}{}", sim.base, paths::USERS_GENERATE))
        .json(&json!({"appid": "wxsafe", "count": 200_000_000u64}))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::BAD_REQUEST);
}

// ---- mass sends and template messages ----

/// The test apps plus `wxsub`, a verified subscription account.
fn config_with_subscription(gateway_url: &str) -> Config {
    let mut text = format!(
        r#"
        [sim]
        listen = "127.0.0.1:0"
        gateway_url = "{gateway_url}"
        callback_timeout_ms = 300
        [[apps]]
        appid = "wxplain"
        secret = "secret-plain"
        token = "tok-plain"
        verified = true
        [[apps]]
        appid = "wxunverified"
        secret = "secret-unverified"
        token = "tok-unverified"
        "#
    );
    text.push_str(
        r#"
        [[apps]]
        appid = "wxsub"
        secret = "secret-sub"
        token = "tok-sub"
        kind = "subscription"
        verified = true
        "#,
    );
    Config::from_toml(&text).expect("test config")
}

fn text_msg(content: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": content}})
}

/// `base` with the fields of `extra` added.
fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// The finish events (`event`) the gateway saw, as flattened plain-mode XML fields.
fn finish_events(gw: &Gateway, event: &str) -> Vec<HashMap<String, String>> {
    gw.seen()
        .into_iter()
        .filter_map(|(_, body)| {
            let doc = wxoa_wire::inbound::Document::parse(body.as_bytes()).ok()?;
            let fields: HashMap<String, String> = doc.flatten().into_iter().collect();
            (fields.get("Event").map(String::as_str) == Some(event)).then_some(fields)
        })
        .collect()
}

async fn wait_for<F: Fn() -> bool>(what: &str, done: F) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Running {
    async fn mass_jobs(&self, appid: &str) -> Vec<Value> {
        let answer = self
            .get(&format!("{}?appid={appid}", paths::MASS_JOBS))
            .await;
        answer["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("no jobs: {answer}"))
            .clone()
    }

    async fn mass_status(&self, token: &str, msg_id: &Value) -> Value {
        let answer = self
            .api_post(paths::MASS_GET, token, json!({"msg_id": msg_id}))
            .await;
        answer["msg_status"].clone()
    }

    async fn template_summary(&self, appid: &str) -> Value {
        self.get(&format!(
            "{}?appid={appid}&summary=true",
            paths::TEMPLATE_SENDS
        ))
        .await
    }
}

#[tokio::test]
async fn mass_send_in_chunks_dedupes_and_posts_finish_callbacks() {
    let (gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let sim = Running::start(&url).await;
    let token = sim.token("wxplain", "secret-plain").await;
    sim.generate("wxplain", 25_000).await;
    let ids = gen_ids(0..25_000);

    let mut msg_ids = Vec::new();
    for (i, chunk) in ids.chunks(10_000).enumerate() {
        let body = with(
            text_msg("hello"),
            json!({"touser": chunk, "clientmsgid": format!("launch-{i}")}),
        );
        let answer = sim.api_post(paths::MASS_SEND, &token, body).await;
        assert_eq!(errcode(&answer), 0, "{answer}");
        assert_eq!(answer["errmsg"], "send job submission success");
        assert!(answer.get("msg_data_id").is_none(), "{answer}");
        msg_ids.push(answer["msg_id"].clone());
    }
    assert_eq!(sim.mass_status(&token, &msg_ids[0]).await, "SENDING");

    // The same clientmsgid again: its msg_id, nothing sent again.
    let again = with(
        text_msg("hello"),
        json!({"touser": &ids[..10_000], "clientmsgid": "launch-1"}),
    );
    let answer = sim.api_post(paths::MASS_SEND, &token, again).await;
    assert_eq!(errcode(&answer), 45065, "{answer}");
    assert_eq!(answer["msg_id"], msg_ids[1], "{answer}");
    assert!(
        answer["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("clientmsgid exist")
    );

    // 2..=10 000 openids.
    for n in [0, 1, 10_001] {
        let body = with(text_msg("x"), json!({"touser": gen_ids(0..n)}));
        let answer = sim.api_post(paths::MASS_SEND, &token, body).await;
        assert_eq!(errcode(&answer), 40130, "{n}: {answer}");
    }

    wait_for("3 MASSSENDJOBFINISH callbacks", || {
        finish_events(&gw, "MASSSENDJOBFINISH").len() == 3
    })
    .await;
    let events = finish_events(&gw, "MASSSENDJOBFINISH");
    for (event, (msg_id, total)) in events
        .iter()
        .zip(msg_ids.iter().zip([10_000, 10_000, 5_000]))
    {
        assert_eq!(event["MsgID"], msg_id.to_string(), "{event:?}");
        assert_eq!(event["MsgType"], "event");
        assert_eq!(event["Status"], "send success");
        assert_eq!(event["ToUserName"], "gh_plain");
        assert_eq!(event["FromUserName"], "o_sim_system");
        assert_eq!(event["TotalCount"], total.to_string());
        assert_eq!(event["SentCount"], total.to_string());
        assert_eq!(event["FilterCount"], "0");
        assert_eq!(event["ErrorCount"], "0");
    }
    let mut jobs = sim.mass_jobs("wxplain").await;
    for _ in 0..100 {
        if jobs.iter().all(|j| j["finish_posted"] == true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        jobs = sim.mass_jobs("wxplain").await;
    }
    assert_eq!(jobs.len(), 3, "the 45065 answer made no job");
    assert_eq!(jobs[2]["clientmsgid"], "launch-2");
    assert_eq!(jobs[2]["msgtype"], "text");
    assert_eq!(jobs[2]["target"], "openids");
    assert_eq!(
        (
            &jobs[2]["recipients"],
            &jobs[2]["sent"],
            &jobs[2]["filtered"]
        ),
        (&json!(5_000), &json!(5_000), &json!(0))
    );
    for job in &jobs {
        assert_eq!(job["status"], "SEND_SUCCESS", "{job}");
        assert_eq!(job["finish_posted"], true, "{job}");
        assert_eq!(job["finish_outcome"], "reply", "{job}");
    }
    assert_eq!(sim.mass_status(&token, &msg_ids[2]).await, "SEND_SUCCESS");

    // Non-followers and repeated openids are filtered; a service-account user gets 4 a month.
    let body = with(
        text_msg("x"),
        json!({"touser": [ids[0], ids[0], "o_nobody", ids[1]]}),
    );
    let answer = sim.api_post(paths::MASS_SEND, &token, body).await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    let job = sim.mass_jobs("wxplain").await[3].clone();
    assert_eq!(
        (&job["recipients"], &job["sent"], &job["filtered"]),
        (&json!(4), &json!(2), &json!(2))
    );
    for expected_sent in [2, 2, 0] {
        let body = with(text_msg("x"), json!({"touser": [ids[0], ids[1]]}));
        let answer = sim.api_post(paths::MASS_SEND, &token, body).await;
        assert_eq!(errcode(&answer), 0, "{answer}");
        let job = sim.mass_jobs("wxplain").await.last().unwrap().clone();
        assert_eq!(job["sent"], expected_sent, "{job}");
    }
    sim.advance(32 * 86_400).await;
    let token = sim.token("wxplain", "secret-plain").await;
    let body = with(text_msg("x"), json!({"touser": [ids[0], ids[1]]}));
    sim.api_post(paths::MASS_SEND, &token, body).await;
    let job = sim.mass_jobs("wxplain").await.last().unwrap().clone();
    assert_eq!(job["sent"], 2, "a new month: {job}");
}

#[tokio::test]
async fn mass_sendall_to_tag_and_all_message_checks_and_subscription_quota() {
    let sim = Running::start_with(&config_with_subscription(GATEWAY_DOWN)).await;
    sim.post(paths::MASS_SETTINGS, json!({"finish_events": false}))
        .await;
    let token = sim.token("wxplain", "secret-plain").await;
    sim.generate("wxplain", 100).await;
    let tag = sim
        .api_post(paths::TAGS_CREATE, &token, json!({"tag": {"name": "vip"}}))
        .await["tag"]["id"]
        .clone();
    let tagged = sim
        .api_post(
            paths::TAGS_BATCH_TAG,
            &token,
            json!({"openid_list": gen_ids(0..50), "tagid": tag}),
        )
        .await;
    assert_eq!(errcode(&tagged), 0, "{tagged}");
    let blocked = sim
        .api_post(
            paths::BLACKLIST_ADD,
            &token,
            json!({"openid_list": gen_ids(1..2)}),
        )
        .await;
    assert_eq!(errcode(&blocked), 0, "{blocked}");

    // uploadnews and mpnews.
    let article = json!({"title": "T", "content": "<p>c</p>", "thumb_media_id": "m"});
    for (articles, code) in [
        (vec![], 40097),
        (vec![article.clone(); 9], 45008),
        (vec![json!({"title": "T"})], 40097),
    ] {
        let answer = sim
            .api_post(paths::UPLOAD_NEWS, &token, json!({"articles": articles}))
            .await;
        assert_eq!(errcode(&answer), code, "{answer}");
    }
    let news = sim
        .api_post(
            paths::UPLOAD_NEWS,
            &token,
            json!({"articles": [article.clone(), article]}),
        )
        .await;
    assert_eq!(news["type"], "news", "{news}");
    assert!(news["created_at"].is_i64(), "{news}");
    let media_id = news["media_id"].as_str().unwrap().to_owned();

    let to_tag = json!({"filter": {"is_to_all": false, "tag_id": tag}, "send_ignore_reprint": 0});
    let bad = [
        (json!({"msgtype": "nope", "nope": {}}), 40008),
        (json!({"msgtype": "text"}), 40008),
        (
            json!({"msgtype": "mpnews", "mpnews": {"media_id": "unknown"}}),
            40007,
        ),
        (
            json!({"msgtype": "images", "images": {"media_ids": []}}),
            40007,
        ),
        (json!({"msgtype": "text", "text": {"content": ""}}), 44004),
    ];
    for (message, code) in bad {
        let answer = sim
            .api_post(
                paths::MASS_SENDALL,
                &token,
                with(to_tag.clone(), message.clone()),
            )
            .await;
        assert_eq!(errcode(&answer), code, "{message}: {answer}");
    }
    let unknown_tag = with(
        json!({"filter": {"is_to_all": false, "tag_id": 999}}),
        text_msg("x"),
    );
    assert_eq!(
        errcode(&sim.api_post(paths::MASS_SENDALL, &token, unknown_tag).await),
        45159
    );
    let long_id = with(
        with(to_tag.clone(), text_msg("x")),
        json!({"clientmsgid": "x".repeat(65)}),
    );
    assert_eq!(
        errcode(&sim.api_post(paths::MASS_SENDALL, &token, long_id).await),
        40097
    );

    let mpnews = json!({"msgtype": "mpnews", "mpnews": {"media_id": media_id}});
    let answer = sim
        .api_post(paths::MASS_SENDALL, &token, with(to_tag, mpnews))
        .await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    assert!(answer["msg_data_id"].is_u64(), "{answer}");
    let to_all = with(json!({"filter": {"is_to_all": true}}), text_msg("all"));
    let answer = sim.api_post(paths::MASS_SENDALL, &token, to_all).await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    let jobs = sim.mass_jobs("wxplain").await;
    assert_eq!(jobs[0]["target"], "tag");
    assert_eq!(jobs[0]["tag_id"], tag);
    assert_eq!(jobs[0]["msgtype"], "mpnews");
    assert_eq!(
        (
            &jobs[0]["recipients"],
            &jobs[0]["sent"],
            &jobs[0]["filtered"]
        ),
        (&json!(50), &json!(49), &json!(1)),
        "the blacklisted member is filtered"
    );
    assert_eq!(jobs[1]["target"], "all");
    assert_eq!(
        (
            &jobs[1]["recipients"],
            &jobs[1]["sent"],
            &jobs[1]["filtered"]
        ),
        (&json!(100), &json!(99), &json!(1))
    );
    // Two more to all and one to the tag: the tagged users reach 4 this month.
    for _ in 0..2 {
        let to_all = with(json!({"filter": {"is_to_all": true}}), text_msg("all"));
        sim.api_post(paths::MASS_SENDALL, &token, to_all).await;
    }
    let to_all = with(json!({"filter": {"is_to_all": true}}), text_msg("all"));
    sim.api_post(paths::MASS_SENDALL, &token, to_all).await;
    let last = sim.mass_jobs("wxplain").await.last().unwrap().clone();
    assert_eq!(
        (&last["recipients"], &last["sent"], &last["filtered"]),
        (&json!(100), &json!(50), &json!(50)),
        "49 tagged users at 4 this month and the blacklisted one: {last}"
    );

    // A subscription account: one successful mass send a day.
    let sub = sim.token("wxsub", "secret-sub").await;
    sim.generate("wxsub", 10).await;
    let first = with(
        with(json!({"filter": {"is_to_all": true}}), text_msg("a")),
        json!({"clientmsgid": "daily-1"}),
    );
    let answer = sim.api_post(paths::MASS_SENDALL, &sub, first.clone()).await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    let first_id = answer["msg_id"].clone();
    let second = with(json!({"touser": gen_ids(0..3)}), text_msg("b"));
    let answer = sim.api_post(paths::MASS_SEND, &sub, second.clone()).await;
    assert_eq!(errcode(&answer), 45028, "{answer}");
    let answer = sim.api_post(paths::MASS_SENDALL, &sub, first).await;
    assert_eq!(errcode(&answer), 45065, "{answer}");
    assert_eq!(answer["msg_id"], first_id);
    sim.advance(86_400).await;
    let sub = sim.token("wxsub", "secret-sub").await;
    let answer = sim.api_post(paths::MASS_SEND, &sub, second).await;
    assert_eq!(errcode(&answer), 0, "the next day: {answer}");
    let jobs = sim.mass_jobs("wxsub").await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["sent"], 10);
}

#[tokio::test]
async fn mass_preview_delete_get_and_speed() {
    let sim = Running::start(GATEWAY_DOWN).await;
    sim.post(paths::MASS_SETTINGS, json!({"finish_delay_ms": 0}))
        .await;
    let token = sim.token("wxplain", "secret-plain").await;
    sim.generate("wxplain", 3).await;
    let gen0 = crate::generated_openid(0);

    let preview = with(json!({"touser": gen0}), text_msg("look"));
    let answer = sim.api_post(paths::MASS_PREVIEW, &token, preview).await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    assert_eq!(answer["errmsg"], "preview success");
    assert!(answer["msg_id"].is_u64());
    let received = sim.messages("wxplain", &gen0).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["channel"], "preview");
    assert_eq!(received[0]["body"]["text"]["content"], "look");
    let stranger = with(json!({"touser": "o_stranger"}), text_msg("look"));
    assert_eq!(
        errcode(&sim.api_post(paths::MASS_PREVIEW, &token, stranger).await),
        40003
    );

    let body = with(json!({"touser": gen_ids(0..3)}), text_msg("x"));
    let answer = sim.api_post(paths::MASS_SEND, &token, body).await;
    let msg_id = answer["msg_id"].clone();
    let mut status = sim.mass_status(&token, &msg_id).await;
    for _ in 0..100 {
        if status == "SEND_SUCCESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        status = sim.mass_status(&token, &msg_id).await;
    }
    assert_eq!(status, "SEND_SUCCESS");
    // The gateway is down: the callback failed, it was still posted (tried).
    let mut job = sim.mass_jobs("wxplain").await[0].clone();
    for _ in 0..200 {
        if job["finish_posted"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        job = sim.mass_jobs("wxplain").await[0].clone();
    }
    assert_eq!(job["finish_outcome"], "failed", "{job}");
    let as_string = json!(msg_id.to_string());
    assert_eq!(sim.mass_status(&token, &as_string).await, "SEND_SUCCESS");
    let unknown = sim
        .api_post(paths::MASS_GET, &token, json!({"msg_id": 1}))
        .await;
    assert_eq!(errcode(&unknown), 40097);
    let unknown = sim
        .api_post(paths::MASS_DELETE, &token, json!({"msg_id": 1}))
        .await;
    assert_eq!(errcode(&unknown), 40097);
    let beyond = sim
        .api_post(
            paths::MASS_DELETE,
            &token,
            json!({"msg_id": msg_id, "article_idx": 1}),
        )
        .await;
    assert_eq!(errcode(&beyond), 40097, "a text job has no article 1");
    let deleted = sim
        .api_post(paths::MASS_DELETE, &token, json!({"msg_id": msg_id}))
        .await;
    assert_eq!(errcode(&deleted), 0, "{deleted}");
    assert_eq!(sim.mass_status(&token, &msg_id).await, "DELETE");

    let speed = sim.api_post(paths::MASS_SPEED_GET, &token, json!({})).await;
    assert_eq!(speed, json!({"speed": 2, "realspeed": 45}));
    let set = sim
        .api_post(paths::MASS_SPEED_SET, &token, json!({"speed": 4}))
        .await;
    assert_eq!(errcode(&set), 0, "{set}");
    let speed = sim.api_post(paths::MASS_SPEED_GET, &token, json!({})).await;
    assert_eq!(speed, json!({"speed": 4, "realspeed": 10}));
    for (body, code) in [
        (json!({"speed": 5}), 45083),
        (json!({"speed": -1}), 45083),
        (json!({}), 45084),
    ] {
        let answer = sim.api_post(paths::MASS_SPEED_SET, &token, body).await;
        assert_eq!(errcode(&answer), code, "{answer}");
    }
    let stats = sim.get(paths::STATS).await;
    assert_eq!(
        stats["calls"]["wxplain"][paths::MASS_SPEED_SET],
        4,
        "{stats}"
    );
}

#[tokio::test]
async fn template_industry_and_management() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxplain", "secret-plain").await;
    let empty = sim.api_get(paths::TEMPLATE_GET_INDUSTRY, &token, "").await;
    assert_eq!(empty["primary_industry"]["first_class"], "");
    let set = sim
        .api_post(
            paths::TEMPLATE_SET_INDUSTRY,
            &token,
            json!({"industry_id1": "1", "industry_id2": 4}),
        )
        .await;
    assert_eq!(errcode(&set), 0, "{set}");
    let industry = sim.api_get(paths::TEMPLATE_GET_INDUSTRY, &token, "").await;
    assert_eq!(
        industry,
        json!({
            "primary_industry": {"first_class": "IT科技", "second_class": "互联网|电子商务"},
            "secondary_industry": {"first_class": "IT科技", "second_class": "电子技术"},
        })
    );
    let bad = sim
        .api_post(
            paths::TEMPLATE_SET_INDUSTRY,
            &token,
            json!({"industry_id1": "1", "industry_id2": "42"}),
        )
        .await;
    assert_eq!(errcode(&bad), 40102);

    let mut ids = Vec::new();
    for i in 0..25 {
        let answer = sim
            .api_post(
                paths::TEMPLATE_ADD,
                &token,
                json!({"template_id_short": format!("TM{i:05}"), "keyword_name_list": ["商品", "金额"]}),
            )
            .await;
        assert_eq!(errcode(&answer), 0, "{answer}");
        ids.push(answer["template_id"].as_str().unwrap().to_owned());
    }
    let full = sim
        .api_post(
            paths::TEMPLATE_ADD,
            &token,
            json!({"template_id_short": "TM99999"}),
        )
        .await;
    assert_eq!(errcode(&full), 45026, "{full}");
    assert!(
        full["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("template num exceeds limit")
    );
    let empty_short = sim
        .api_post(
            paths::TEMPLATE_ADD,
            &token,
            json!({"template_id_short": ""}),
        )
        .await;
    assert_eq!(errcode(&empty_short), 40097);
    let list = sim.api_get(paths::TEMPLATE_LIST, &token, "").await;
    let list = list["template_list"].as_array().unwrap().clone();
    assert_eq!(list.len(), 25);
    assert_eq!(list[0]["template_id"], ids[0]);
    assert_eq!(list[0]["title"], "TM00000");
    assert_eq!(list[0]["primary_industry"], "IT科技");
    assert_eq!(list[0]["deputy_industry"], "互联网|电子商务");
    assert!(
        list[0]["content"]
            .as_str()
            .unwrap()
            .contains("商品：{{keyword1.DATA}}")
    );
    assert!(list[0]["example"].is_string());

    let unknown = sim
        .api_post(
            paths::TEMPLATE_DELETE,
            &token,
            json!({"template_id": "nope"}),
        )
        .await;
    assert_eq!(errcode(&unknown), 40037);
    assert!(
        unknown["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("invalid template_id")
    );
    let deleted = sim
        .api_post(
            paths::TEMPLATE_DELETE,
            &token,
            json!({"template_id": ids[3]}),
        )
        .await;
    assert_eq!(errcode(&deleted), 0);
    let again = sim
        .api_post(
            paths::TEMPLATE_ADD,
            &token,
            json!({"template_id_short": "TM99999"}),
        )
        .await;
    assert_eq!(errcode(&again), 0, "{again}");
}

impl Running {
    async fn add_template(&self, token: &str) -> String {
        let answer = self
            .api_post(
                paths::TEMPLATE_ADD,
                token,
                json!({"template_id_short": "TM00015"}),
            )
            .await;
        answer["template_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no template_id: {answer}"))
            .to_owned()
    }
}

fn template_body(openid: &str, template_id: &str, client_msg_id: Option<&str>) -> Value {
    let mut body = json!({
        "touser": openid,
        "template_id": template_id,
        "url": "http://example.com/order/1",
        "data": {"keyword1": {"value": "巧克力"}, "keyword2": {"value": "39.8元"}},
    });
    if let Some(id) = client_msg_id {
        body["client_msg_id"] = json!(id);
    }
    body
}

#[tokio::test]
async fn template_send_rules_dedupe_quota_and_records() {
    let sim = Running::start_with(&config_with_subscription(GATEWAY_DOWN)).await;
    for (appid, secret) in [
        ("wxunverified", "secret-unverified"),
        ("wxsub", "secret-sub"),
    ] {
        let token = sim.token(appid, secret).await;
        sim.generate(appid, 1).await;
        let template = sim.add_template(&token).await;
        let gen0 = crate::generated_openid(0);
        let answer = sim
            .api_post(
                paths::TEMPLATE_SEND,
                &token,
                template_body(&gen0, &template, None),
            )
            .await;
        assert_eq!(errcode(&answer), 48001, "{appid}: {answer}");
    }

    let token = sim.token("wxplain", "secret-plain").await;
    sim.generate("wxplain", 10).await;
    let template = sim.add_template(&token).await;
    let other = sim.add_template(&token).await;
    let ids = gen_ids(0..10);
    let send = |body: Value| sim.api_post(paths::TEMPLATE_SEND, &token, body);
    assert_eq!(
        errcode(&send(template_body("o_stranger", &template, None)).await),
        43004
    );
    assert_eq!(
        errcode(&send(template_body(&ids[0], "unknown", None)).await),
        40037
    );
    let mut no_data = template_body(&ids[0], &template, None);
    no_data.as_object_mut().unwrap().remove("data");
    assert_eq!(errcode(&send(no_data).await), 47001);

    let first = send(template_body(&ids[0], &template, Some("order-1"))).await;
    assert_eq!(errcode(&first), 0, "{first}");
    assert_eq!(first["errmsg"], "ok");
    let msgid = first["msgid"].clone();
    assert!(msgid.is_u64());
    let repeat = send(template_body(&ids[1], &other, Some("order-1"))).await;
    assert_eq!(repeat, first, "the same answer as the first send");

    sim.post(paths::TEMPLATE_SETTINGS, json!({"daily_quota": 5}))
        .await;
    for (openid, template) in [
        (&ids[0], &template),
        (&ids[0], &other),
        (&ids[1], &template),
        (&ids[0], &template),
    ] {
        let answer = send(template_body(openid, template, None)).await;
        assert_eq!(errcode(&answer), 0, "{answer}");
    }
    let over = send(template_body(&ids[2], &template, None)).await;
    assert_eq!(errcode(&over), 45009, "{over}");
    let repeat = send(template_body(&ids[0], &template, Some("order-1"))).await;
    assert_eq!(
        repeat["msgid"], msgid,
        "a repeat is answered past the quota too"
    );
    sim.advance(86_400).await;
    let token = sim.token("wxplain", "secret-plain").await;
    let send = |body: Value| sim.api_post(paths::TEMPLATE_SEND, &token, body);
    let next_day = send(template_body(&ids[2], &template, Some("order-2"))).await;
    assert_eq!(errcode(&next_day), 0, "{next_day}");

    let summary = sim.template_summary("wxplain").await;
    assert_eq!(summary["sends"], 6, "{summary}");
    assert_eq!(summary["distinct_openids"], 3, "{summary}");
    // Pairs: (0,t) ×3, (0,o), (1,t), (2,t): 6 sends, 4 distinct pairs.
    assert_eq!(summary["duplicates"], 2, "{summary}");
    assert_eq!(summary["deduplicated"], 2, "{summary}");
    assert_eq!(summary["sent_today"], 1, "{summary}");
    let records = sim
        .get(&format!("{}?appid=wxplain", paths::TEMPLATE_SENDS))
        .await;
    assert_eq!(records["total"], 6);
    assert_eq!(records["truncated"], false);
    let list = records["sends"].as_array().unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(list[0]["openid"], ids[0]);
    assert_eq!(list[0]["template_id"], template);
    assert_eq!(list[0]["msgid"], msgid);
    assert_eq!(list[0]["client_msg_id"], "order-1");
    assert_eq!(list[0]["url"], "http://example.com/order/1");
    assert_eq!(list[0]["data"]["keyword1"]["value"], "巧克力");
    assert!(list[0]["at_ms"].is_i64());
    assert_eq!(list[5]["client_msg_id"], "order-2");
    assert_eq!(list[1]["client_msg_id"], Value::Null);

    let cleared = sim
        .http
        .delete(format!(
            "{}{}?appid=wxplain",
            sim.base,
            paths::TEMPLATE_SENDS
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(cleared, json!({"appid": "wxplain", "cleared": 6}));
    assert_eq!(sim.template_summary("wxplain").await["sends"], 0);
    let missing = sim
        .http
        .get(format!("{}{}", sim.base, paths::TEMPLATE_SENDS))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

#[tokio::test]
async fn template_finish_events_only_when_enabled() {
    let (gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let sim = Running::start(&url).await;
    let token = sim.token("wxplain", "secret-plain").await;
    sim.generate("wxplain", 2).await;
    let template = sim.add_template(&token).await;
    let users = gen_ids(0..2);
    let quiet = sim
        .api_post(
            paths::TEMPLATE_SEND,
            &token,
            template_body(&users[0], &template, None),
        )
        .await;
    assert_eq!(errcode(&quiet), 0, "{quiet}");
    let settings = sim
        .post(
            paths::TEMPLATE_SETTINGS,
            json!({"finish_events": true, "finish_delay_ms": 20}),
        )
        .await;
    assert_eq!(
        settings,
        json!({"finish_events": true, "finish_delay_ms": 20, "daily_quota": 100_000})
    );
    let loud = sim
        .api_post(
            paths::TEMPLATE_SEND,
            &token,
            template_body(&users[1], &template, None),
        )
        .await;
    assert_eq!(errcode(&loud), 0, "{loud}");
    wait_for("TEMPLATESENDJOBFINISH", || {
        !finish_events(&gw, "TEMPLATESENDJOBFINISH").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = finish_events(&gw, "TEMPLATESENDJOBFINISH");
    assert_eq!(
        events.len(),
        1,
        "only the send made with events on: {events:?}"
    );
    assert_eq!(events[0]["MsgID"], loud["msgid"].to_string());
    assert_eq!(events[0]["Status"], "success");
    assert_eq!(events[0]["FromUserName"], users[1]);
    assert_eq!(events[0]["MsgType"], "event");
    let summary = sim.template_summary("wxplain").await;
    assert_eq!(summary["finish_posted"], 1, "{summary}");
    assert_eq!(summary["finish_failed"], 0, "{summary}");
}

#[tokio::test]
async fn template_sends_are_fast() {
    let sim = Arc::new(Running::start(GATEWAY_DOWN).await);
    let token = sim.token("wxplain", "secret-plain").await;
    sim.generate("wxplain", 1_000).await;
    let template = sim.add_template(&token).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let (sim, token, template) = (sim.clone(), token.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..250u64 {
                let openid = crate::generated_openid((worker * 250 + i) % 1_000);
                let id = format!("bench-{worker}-{i}");
                let answer = sim
                    .api_post(
                        paths::TEMPLATE_SEND,
                        &token,
                        template_body(&openid, &template, Some(&id)),
                    )
                    .await;
                assert_eq!(errcode(&answer), 0, "{answer}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(sim.template_summary("wxplain").await["sends"], 2_000);
    assert!(
        elapsed < Duration::from_secs(20),
        "2000 sends took {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Web authorization (OAuth2) and the JS-SDK signature check.

/// A client that does not follow redirects, to read the `Location` of the authorize flow.
fn no_redirect_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The query parameters of a URL (values as sent: the sim only sends unreserved characters).
fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

impl Running {
    /// A raw GET without following redirects: (status, Location, body).
    async fn raw_get(&self, path_and_query: &str) -> (StatusCode, Option<String>, String) {
        let response = no_redirect_http()
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location, response.text().await.unwrap())
    }

    async fn authorize(
        &self,
        appid: &str,
        redirect_uri: &str,
        scope: &str,
        state: &str,
    ) -> (StatusCode, Option<String>, String) {
        let path =
            wxoa_wire::web::oauth_authorize_url(appid, redirect_uri, scope, Some(state), None);
        let path = path
            .strip_prefix("https://open.weixin.qq.com")
            .unwrap()
            .split('#')
            .next()
            .unwrap()
            .to_owned();
        self.raw_get(&path).await
    }

    /// The consent form submitted (GET, as the page's form does): the redirect location.
    async fn consent(
        &self,
        appid: &str,
        redirect_uri: &str,
        openid: &str,
        decision: &str,
    ) -> String {
        let enc = wxoa_wire::web::percent_encode;
        let (status, location, body) = self
            .raw_get(&format!(
                "{}?appid={appid}&redirect_uri={}&scope=snsapi_userinfo&state=S1&openid={}&decision={decision}",
                paths::OAUTH_CONFIRM,
                enc(redirect_uri),
                enc(openid)
            ))
            .await;
        assert_eq!(status, StatusCode::FOUND, "{body}");
        location.unwrap()
    }

    /// A code for `openid` through the consent page.
    async fn userinfo_code(&self, appid: &str, openid: &str) -> String {
        let location = self
            .consent(appid, "https://app.example/cb", openid, "allow")
            .await;
        query_of(&location)["code"].clone()
    }

    async fn base_code(&self, appid: &str) -> String {
        let (status, location, body) = self
            .authorize(appid, "https://app.example/cb", "snsapi_base", "B")
            .await;
        assert_eq!(status, StatusCode::FOUND, "{body}");
        query_of(&location.unwrap())["code"].clone()
    }

    async fn exchange(&self, appid: &str, secret: &str, code: &str) -> Value {
        self.get(&format!(
            "{}?appid={appid}&secret={secret}&code={code}&grant_type=authorization_code",
            paths::SNS_ACCESS_TOKEN
        ))
        .await
    }

    async fn sns_userinfo(&self, token: &str, openid: &str) -> Value {
        self.get(&format!(
            "{}?access_token={token}&openid={openid}&lang=zh_CN",
            paths::SNS_USERINFO
        ))
        .await
    }

    async fn sns_auth(&self, token: &str, openid: &str) -> Value {
        self.get(&format!(
            "{}?access_token={token}&openid={openid}",
            paths::SNS_AUTH
        ))
        .await
    }
}

#[tokio::test]
async fn oauth_base_scope_redirects_at_once() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let (status, location, _) = sim
        .authorize("wxplain", "https://app.example/cb", "snsapi_base", "st8")
        .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = location.unwrap();
    assert!(
        location.starts_with("https://app.example/cb?code="),
        "{location}"
    );
    let q = query_of(&location);
    assert_eq!(q["state"], "st8");
    assert_eq!(q["code"].len(), 32, "{location}");
    assert!(location.ends_with("&state=st8"), "{location}");

    // An existing query is kept; a fragment stays at the end.
    let (status, location, _) = sim
        .authorize(
            "wxplain",
            "http://app.example/p?x=1&y=two#frag",
            "snsapi_base",
            "abc",
        )
        .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = location.unwrap();
    assert!(
        location.starts_with("http://app.example/p?x=1&y=two&code="),
        "{location}"
    );
    assert!(location.ends_with("&state=abc#frag"), "{location}");

    // The base user, then another one chosen through the settings.
    let code = sim.base_code("wxplain").await;
    let grant = sim.exchange("wxplain", "secret-plain", &code).await;
    assert_eq!(grant["openid"], "o_web_user", "{grant}");
    assert_eq!(grant["scope"], "snsapi_base");
    let set = sim
        .post(paths::OAUTH_SETTINGS, json!({"base_openid": "o_other"}))
        .await;
    assert_eq!(set["base_openid"], "o_other");
    let code = sim.base_code("wxplain").await;
    let grant = sim.exchange("wxplain", "secret-plain", &code).await;
    assert_eq!(grant["openid"], "o_other", "{grant}");

    // Bad links: an HTML error page with status 400 naming the problem.
    for (query, problem) in [
        (
            "appid=wxnope&redirect_uri=https%3A%2F%2Fa.b%2F&response_type=code&scope=snsapi_base",
            "appid",
        ),
        (
            "appid=wxplain&redirect_uri=https%3A%2F%2Fa.b%2F&response_type=token&scope=snsapi_base",
            "response_type",
        ),
        (
            "appid=wxplain&redirect_uri=https%3A%2F%2Fa.b%2F&response_type=code&scope=snsapi_login",
            "scope",
        ),
        (
            "appid=wxplain&redirect_uri=%2Frelative&response_type=code&scope=snsapi_base",
            "redirect_uri",
        ),
        (
            "appid=wxplain&redirect_uri=ftp%3A%2F%2Fa.b%2F&response_type=code&scope=snsapi_base",
            "redirect_uri",
        ),
    ] {
        let (status, location, body) = sim
            .raw_get(&format!("{}?{query}", paths::OAUTH_AUTHORIZE))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(location.is_none());
        assert!(body.contains("<html") && body.contains(problem), "{body}");
    }
}

#[tokio::test]
async fn oauth_userinfo_scope_consent_page_allow_and_deny() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let (status, location, page) = sim
        .authorize(
            "wxsafe",
            "https://app.example/cb?from=menu",
            "snsapi_userinfo",
            "S1",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(location.is_none());
    for needle in [
        "id=\"openid\"",
        "value=\"o_web_user\"",
        "id=\"allow\"",
        "id=\"deny\"",
        "action=\"/connect/oauth2/authorize/confirm\"",
        "name=\"appid\" value=\"wxsafe\"",
        "name=\"redirect_uri\" value=\"https://app.example/cb?from=menu\"",
        "name=\"scope\" value=\"snsapi_userinfo\"",
        "name=\"state\" value=\"S1\"",
        "name=\"decision\" value=\"allow\"",
        "name=\"decision\" value=\"deny\"",
        "gh_safe",
    ] {
        assert!(page.contains(needle), "{needle} missing in {page}");
    }
    assert!(!page.contains("src=") && !page.contains("href="), "{page}");

    // Allow: a code for the chosen user, the redirect_uri's query kept.
    let location = sim
        .consent(
            "wxsafe",
            "https://app.example/cb?from=menu",
            "o_alice",
            "allow",
        )
        .await;
    assert!(
        location.starts_with("https://app.example/cb?from=menu&code="),
        "{location}"
    );
    let q = query_of(&location);
    assert_eq!(q["state"], "S1");
    let grant = sim.exchange("wxsafe", "secret-safe", &q["code"]).await;
    assert_eq!(grant["openid"], "o_alice", "{grant}");
    assert_eq!(grant["scope"], "snsapi_userinfo");

    // Deny: back with the state and no code.
    let location = sim
        .consent("wxsafe", "https://app.example/cb", "o_alice", "deny")
        .await;
    assert_eq!(location, "https://app.example/cb?state=S1");

    // The form posted urlencoded works too.
    let response = no_redirect_http()
        .post(format!("{}{}", sim.base, paths::OAUTH_CONFIRM))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "appid=wxsafe&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=snsapi_userinfo\
             &state=P&openid=o+bob%21&decision=allow",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let grant = sim
        .exchange("wxsafe", "secret-safe", &query_of(&location)["code"])
        .await;
    assert_eq!(grant["openid"], "o bob!", "{grant}");

    // A bad decision is an error page.
    let (status, _, _) = sim
        .raw_get(&format!(
            "{}?appid=wxsafe&redirect_uri=https%3A%2F%2Fa.b%2F&scope=snsapi_userinfo&openid=o&decision=maybe",
            paths::OAUTH_CONFIRM
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oauth_code_exchange_rules() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let code = sim.userinfo_code("wxplain", "o_carol").await;
    let grant = sim.exchange("wxplain", "secret-plain", &code).await;
    assert_eq!(errcode(&grant), 0, "{grant}");
    assert_eq!(grant["expires_in"], 7200);
    assert_eq!(grant["openid"], "o_carol");
    assert_eq!(grant["unionid"], "uo_carol");
    assert_eq!(grant["is_snapshotuser"], 0);
    assert!(grant["access_token"].as_str().unwrap().len() > 20);
    assert!(grant["refresh_token"].as_str().unwrap().len() > 20);

    // Single use.
    let again = sim.exchange("wxplain", "secret-plain", &code).await;
    assert_eq!(errcode(&again), 40163, "{again}");
    assert!(
        again["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("code been used"),
        "{again}"
    );
    // Unknown, another app's, wrong secret, unknown app, bad grant_type.
    let unknown = sim.exchange("wxplain", "secret-plain", "nosuchcode").await;
    assert_eq!(errcode(&unknown), 40029);
    assert!(
        unknown["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("invalid code")
    );
    let other = sim.userinfo_code("wxsafe", "o_carol").await;
    assert_eq!(
        errcode(&sim.exchange("wxplain", "secret-plain", &other).await),
        40029
    );
    let fresh = sim.userinfo_code("wxplain", "o_carol").await;
    assert_eq!(
        errcode(&sim.exchange("wxplain", "wrong", &fresh).await),
        40125
    );
    assert_eq!(
        errcode(&sim.exchange("wxnope", "secret-plain", &fresh).await),
        40013
    );
    let bad_grant = sim
        .get(&format!(
            "{}?appid=wxplain&secret=secret-plain&code={fresh}&grant_type=client_credential",
            paths::SNS_ACCESS_TOKEN
        ))
        .await;
    assert_eq!(errcode(&bad_grant), 40002);
    // The failed attempts did not use it up.
    assert_eq!(
        errcode(&sim.exchange("wxplain", "secret-plain", &fresh).await),
        0
    );

    // Expired after 5 minutes on the sim clock.
    let late = sim.userinfo_code("wxplain", "o_carol").await;
    sim.advance(301).await;
    assert_eq!(
        errcode(&sim.exchange("wxplain", "secret-plain", &late).await),
        40029
    );

    let stats = sim.get(&format!("{}?appid=wxplain", paths::OAUTH)).await;
    assert_eq!(stats["codes_issued"], 3, "{stats}");
    assert_eq!(stats["codes_used"], 2, "{stats}");
    assert_eq!(stats["tokens"], 2, "{stats}");
    let calls = sim.get(paths::STATS).await;
    assert_eq!(
        calls["calls"]["wxplain"][paths::SNS_ACCESS_TOKEN],
        8,
        "{calls}"
    );
}

#[tokio::test]
async fn oauth_refresh_userinfo_auth_and_separate_tokens() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let code = sim.userinfo_code("wxplain", "o_dave").await;
    let grant = sim.exchange("wxplain", "secret-plain", &code).await;
    let token = grant["access_token"].as_str().unwrap().to_owned();
    let refresh = grant["refresh_token"].as_str().unwrap().to_owned();

    // userinfo and auth.
    let info = sim.sns_userinfo(&token, "o_dave").await;
    assert_eq!(errcode(&info), 0, "{info}");
    assert_eq!(info["openid"], "o_dave");
    assert_eq!(info["nickname"], "Web User o_dave");
    assert_eq!(info["sex"], 0);
    assert_eq!(info["privilege"], json!([]));
    assert_eq!(info["unionid"], "uo_dave");
    assert_eq!(errcode(&sim.sns_userinfo(&token, "o_eve").await), 40003);
    assert_eq!(errcode(&sim.sns_userinfo("bogus", "o_dave").await), 40001);
    let ok = sim.sns_auth(&token, "o_dave").await;
    assert_eq!(ok, json!({"errcode": 0, "errmsg": "ok"}));
    assert_eq!(errcode(&sim.sns_auth(&token, "o_eve").await), 40003);
    assert_eq!(errcode(&sim.sns_auth("bogus", "o_dave").await), 40001);

    // A base grant's token may not read userinfo, but is valid for auth.
    let base = sim.base_code("wxplain").await;
    let base_grant = sim.exchange("wxplain", "secret-plain", &base).await;
    let base_token = base_grant["access_token"].as_str().unwrap();
    assert_eq!(
        errcode(&sim.sns_userinfo(base_token, "o_web_user").await),
        48001
    );
    assert_eq!(errcode(&sim.sns_auth(base_token, "o_web_user").await), 0);

    // Web tokens and account tokens never cross.
    assert_eq!(sim.check(&token).await, 40001);
    let account = sim.token("wxplain", "secret-plain").await;
    assert_eq!(sim.check(&account).await, 0);
    assert_eq!(errcode(&sim.sns_userinfo(&account, "o_dave").await), 40001);

    // Refresh: a new access token, the same refresh token.
    let refresh_call = |rt: &str, grant_type: &str| {
        format!(
            "{}?appid=wxplain&grant_type={grant_type}&refresh_token={rt}",
            paths::SNS_REFRESH_TOKEN
        )
    };
    let renewed = sim.get(&refresh_call(&refresh, "refresh_token")).await;
    assert_eq!(errcode(&renewed), 0, "{renewed}");
    assert_eq!(renewed["refresh_token"], refresh.as_str());
    assert_eq!(renewed["openid"], "o_dave");
    assert_eq!(renewed["scope"], "snsapi_userinfo");
    assert_eq!(renewed["expires_in"], 7200);
    let new_token = renewed["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_eq!(errcode(&sim.sns_userinfo(&new_token, "o_dave").await), 0);
    let unknown = sim.get(&refresh_call("nope", "refresh_token")).await;
    assert_eq!(errcode(&unknown), 40030);
    assert!(
        unknown["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("invalid refresh_token")
    );
    assert_eq!(
        errcode(&sim.get(&refresh_call(&refresh, "authorization_code")).await),
        40002
    );

    // Web tokens expire after 2 h (40001), refresh tokens after 30 days.
    sim.advance(7201).await;
    assert_eq!(errcode(&sim.sns_auth(&new_token, "o_dave").await), 40001);
    let renewed = sim.get(&refresh_call(&refresh, "refresh_token")).await;
    assert_eq!(errcode(&renewed), 0, "{renewed}");
    sim.advance(30 * 86_400).await;
    assert_eq!(
        errcode(&sim.get(&refresh_call(&refresh, "refresh_token")).await),
        40030
    );

    // Faults apply to the sns paths as to the others.
    let fault = sim
        .post(
            paths::FAULTS,
            json!({"api": paths::SNS_USERINFO, "errcode": -1, "times": 1}),
        )
        .await;
    assert!(fault["id"].is_u64(), "{fault}");
    let code = sim.userinfo_code("wxplain", "o_dave").await;
    let grant = sim.exchange("wxplain", "secret-plain", &code).await;
    let token = grant["access_token"].as_str().unwrap();
    assert_eq!(errcode(&sim.sns_userinfo(token, "o_dave").await), -1);
    assert_eq!(errcode(&sim.sns_userinfo(token, "o_dave").await), 0);
    let calls = sim.get(paths::STATS).await;
    assert!(
        calls["calls"]["wxplain"][paths::SNS_USERINFO]
            .as_u64()
            .unwrap()
            >= 6,
        "{calls}"
    );
}

#[tokio::test]
async fn jssdk_verify_against_the_current_ticket() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let url = "https://app.example/page?a=1";
    let now = sim.get(paths::CLOCK).await["now_ms"].as_i64().unwrap() / 1000;
    let verify = |ticket: &str, timestamp: i64, key: &str| {
        let signature =
            wxoa_wire::web::jssdk_signature(ticket, "Nonce123", &timestamp.to_string(), url);
        let mut body = json!({"appid": "wxplain", "url": format!("{url}#/route"),
            "timestamp": timestamp, "signature": signature});
        body[key] = json!("Nonce123");
        body
    };

    // No ticket issued yet.
    let answer = sim
        .post(paths::JSSDK_VERIFY, verify("x", now, "noncestr"))
        .await;
    assert_eq!(
        answer,
        json!({"accepted": false, "reason": "no jsapi_ticket issued"})
    );

    let token = sim.token("wxplain", "secret-plain").await;
    let ticket = sim
        .get(&format!(
            "{}?access_token={token}&type=jsapi",
            paths::TICKET
        ))
        .await["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    for key in ["noncestr", "nonceStr"] {
        let answer = sim
            .post(paths::JSSDK_VERIFY, verify(&ticket, now, key))
            .await;
        assert_eq!(answer, json!({"accepted": true}), "{key}");
    }
    // A string timestamp is fine too.
    let mut body = verify(&ticket, now, "noncestr");
    body["timestamp"] = json!(now.to_string());
    assert_eq!(
        sim.post(paths::JSSDK_VERIFY, body).await,
        json!({"accepted": true})
    );

    // A wrong signature: another ticket (the wx_card one), another url.
    let card = sim
        .get(&format!(
            "{}?access_token={token}&type=wx_card",
            paths::TICKET
        ))
        .await["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = sim
        .post(paths::JSSDK_VERIFY, verify(&card, now, "noncestr"))
        .await;
    assert_eq!(
        answer,
        json!({"accepted": false, "reason": "invalid signature"})
    );
    let mut body = verify(&ticket, now, "noncestr");
    body["url"] = json!("https://app.example/other");
    assert_eq!(
        sim.post(paths::JSSDK_VERIFY, body).await["reason"],
        "invalid signature"
    );

    // An old timestamp, correctly signed.
    let old = now - 2 * 3600 - 10;
    let answer = sim
        .post(paths::JSSDK_VERIFY, verify(&ticket, old, "noncestr"))
        .await;
    assert_eq!(
        answer,
        json!({"accepted": false, "reason": "timestamp too old"})
    );

    // Another app has no ticket; an unknown app is a 404.
    let mut body = verify(&ticket, now, "noncestr");
    body["appid"] = json!("wxsafe");
    assert_eq!(
        sim.post(paths::JSSDK_VERIFY, body).await["reason"],
        "no jsapi_ticket issued"
    );
    let response = sim
        .http
        .post(format!("{}{}", sim.base, paths::JSSDK_VERIFY))
        .json(&json!({"appid": "wxnope", "url": url, "timestamp": now, "noncestr": "n", "signature": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

// ---- menus, QR codes, quotas ----------------------------------------------------------------

fn click(name: &str, key: &str) -> Value {
    json!({"type": "click", "name": name, "key": key})
}

fn view(name: &str, url: &str) -> Value {
    json!({"type": "view", "name": name, "url": url})
}

#[tokio::test]
async fn menu_create_validation_errors() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let create =
        |button: Value| sim.api_post(paths::MENU_CREATE, &token, json!({"button": button}));
    let sub = |subs: Vec<Value>| json!({"name": "菜单", "sub_button": subs});
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(Value, i64, &str)> = vec![
        (json!([]), 40016, "no buttons"),
        (json!(vec![click("a", "k"); 4]), 40016, "four buttons"),
        (json!("x"), 40016, "not a list"),
        (json!([click("", "k")]), 40018, "empty name"),
        (json!([click(&long(17), "k")]), 40018, "17-byte top name"),
        (
            json!([click("一二三四五六", "k")]),
            40018,
            "18 bytes of Chinese",
        ),
        (
            json!([{"name": "a", "type": "nope"}]),
            40017,
            "unknown type",
        ),
        (json!([{"name": "a"}]), 40017, "neither type nor sub_button"),
        (json!([click("a", "")]), 40019, "empty key"),
        (json!([click("a", &long(129))]), 40019, "129-byte key"),
        (
            json!([{"type": "scancode_push", "name": "a"}]),
            40019,
            "scancode without key",
        ),
        (json!([view("a", "")]), 40020, "empty url"),
        (
            json!([view("a", &format!("https://a.cn/{}", long(1020)))]),
            40020,
            "long url",
        ),
        (json!([view("a", "ftp://a.cn/")]), 40055, "not http(s)"),
        (
            json!([{"name": "a", "sub_button": []}]),
            40023,
            "empty sub menu",
        ),
        (
            json!([sub(vec![click("s", "k"); 6])]),
            40023,
            "six sub buttons",
        ),
        (
            json!([sub(vec![click(&long(61), "k")])]),
            40025,
            "61-byte sub name",
        ),
        (
            json!([sub(vec![json!({"name": "s", "type": "bad"})])]),
            40024,
            "sub type",
        ),
        (json!([sub(vec![click("s", &long(129))])]), 40026, "sub key"),
        (json!([sub(vec![view("s", "")])]), 40027, "sub url size"),
        (
            json!([sub(vec![view("s", "weixin://x")])]),
            40054,
            "sub url domain",
        ),
        (
            json!([sub(vec![sub(vec![click("s", "k")])])]),
            40022,
            "nested sub menu",
        ),
        (
            json!([{"type": "media_id", "name": "m"}]),
            40007,
            "media_id missing",
        ),
        (
            json!([{"type": "article_id", "name": "m"}]),
            40097,
            "article_id missing",
        ),
        (
            json!([{"type": "miniprogram", "name": "m", "url": "http://a.cn", "pagepath": "p"}]),
            40097,
            "miniprogram without appid",
        ),
        (
            json!([{"type": "miniprogram", "name": "m", "appid": "wxa", "pagepath": "p"}]),
            40020,
            "miniprogram without url",
        ),
    ];
    for (button, code, what) in cases {
        let answer = create(button).await;
        assert_eq!(errcode(&answer), code, "{what}: {answer}");
    }
    let answer = sim
        .post(
            &format!("{}?access_token={token}", paths::MENU_CREATE),
            json!({}),
        )
        .await;
    assert_eq!(errcode(&answer), 40016, "{answer}");
    // Nothing was stored.
    assert_eq!(
        errcode(&sim.api_get(paths::MENU_GET, &token, "").await),
        46003
    );

    // The limits themselves are fine: 16-byte top name, 60-byte sub name, 128-byte key,
    // 1024-byte url, 5 sub-buttons, every type.
    let url = format!("https://a.cn/{}", long(1024 - "https://a.cn/".len()));
    let ok = json!([
        {"name": "一二三四五x", "sub_button": [
            click(&long(60), &long(128)),
            view("v", &url),
            {"type": "miniprogram", "name": "mp", "url": "http://mp.weixin.qq.com", "appid": "wx286b93c14bbf93aa", "pagepath": "pages/lunar/index"},
            {"type": "media_id", "name": "m", "media_id": "MEDIA"},
            {"type": "article_view_limited", "name": "a", "article_id": "ART"},
        ]},
        {"name": "扫码", "sub_button": [
            {"type": "scancode_push", "name": "s1", "key": "k1"},
            {"type": "scancode_waitmsg", "name": "s2", "key": "k2"},
            {"type": "pic_sysphoto", "name": "s3", "key": "k3"},
            {"type": "pic_photo_or_album", "name": "s4", "key": "k4"},
            {"type": "pic_weixin", "name": "s5", "key": "k5"},
        ]},
        {"type": "location_select", "name": "位置", "key": "loc", "sub_button": []},
    ]);
    let answer = create(ok).await;
    assert_eq!(answer, json!({"errcode": 0, "errmsg": "ok"}));
}

#[tokio::test]
async fn menu_create_get_selfmenu_delete() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let none = sim.api_get(paths::MENU_GET, &token, "").await;
    assert_eq!(errcode(&none), 46003, "{none}");
    assert!(
        none["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("menu no exist")
    );
    let info = sim.api_get(paths::MENU_SELFMENU_INFO, &token, "").await;
    assert_eq!(info["is_menu_open"], 0, "{info}");

    let buttons = json!([
        click("今日歌曲", "V1001_TODAY_MUSIC"),
        {"name": "菜单", "sub_button": [view("搜索", "http://www.soso.com/"), click("赞", "V1001_GOOD")]},
    ]);
    let answer = sim
        .api_post(paths::MENU_CREATE, &token, json!({"button": buttons}))
        .await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    let menu = sim.api_get(paths::MENU_GET, &token, "").await;
    assert_eq!(menu["menu"]["button"], buttons, "{menu}");
    assert!(menu["menu"]["menuid"].is_u64(), "{menu}");
    assert_eq!(menu["conditionalmenu"], json!([]));
    let info = sim.api_get(paths::MENU_SELFMENU_INFO, &token, "").await;
    assert_eq!(info["is_menu_open"], 1, "{info}");
    assert_eq!(info["selfmenu_info"]["button"][0], buttons[0]);
    assert_eq!(info["selfmenu_info"]["button"][1]["name"], "菜单");
    assert_eq!(
        info["selfmenu_info"]["button"][1]["sub_button"]["list"],
        buttons[1]["sub_button"]
    );
    // Another app has none.
    let other = sim.token("wxplain", "secret-plain").await;
    assert_eq!(
        errcode(&sim.api_get(paths::MENU_GET, &other, "").await),
        46003
    );

    // A second create replaces the menu.
    let replaced = json!([click("新", "NEW")]);
    sim.api_post(paths::MENU_CREATE, &token, json!({"button": replaced}))
        .await;
    let menu = sim.api_get(paths::MENU_GET, &token, "").await;
    assert_eq!(menu["menu"]["button"], replaced);

    let answer = sim.api_get(paths::MENU_DELETE, &token, "").await;
    assert_eq!(answer, json!({"errcode": 0, "errmsg": "ok"}));
    assert_eq!(
        errcode(&sim.api_get(paths::MENU_GET, &token, "").await),
        46003
    );
    // Deleting without a menu is fine; the token is checked.
    assert_eq!(
        errcode(&sim.api_get(paths::MENU_DELETE, &token, "").await),
        0
    );
    assert_eq!(
        errcode(&sim.api_get(paths::MENU_DELETE, "bad", "").await),
        40001
    );
}

#[tokio::test]
async fn conditional_menus_add_trymatch_delete() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    sim.generate("wxsafe", 3).await;
    let ids = gen_ids(0..3);
    let tag = sim
        .api_post(paths::TAGS_CREATE, &token, json!({"tag": {"name": "vip"}}))
        .await["tag"]["id"]
        .as_i64()
        .unwrap();
    let tagged = sim
        .api_post(
            paths::TAGS_BATCH_TAG,
            &token,
            json!({"openid_list": [ids[0]], "tagid": tag}),
        )
        .await;
    assert_eq!(errcode(&tagged), 0, "{tagged}");

    let vip = json!([click("VIP", "VIP")]);
    let add = |rule: Value| {
        sim.api_post(
            paths::MENU_ADD_CONDITIONAL,
            &token,
            json!({"button": vip, "matchrule": rule}),
        )
    };
    // No default menu yet.
    assert_eq!(
        errcode(&add(json!({"tag_id": tag.to_string()})).await),
        65303
    );
    let default = json!([click("默认", "DEFAULT")]);
    sim.api_post(paths::MENU_CREATE, &token, json!({"button": default}))
        .await;
    assert_eq!(errcode(&add(json!({})).await), 65304);
    assert_eq!(errcode(&add(json!({"tag_id": ""})).await), 65304);
    let answer = sim
        .api_post(
            paths::MENU_ADD_CONDITIONAL,
            &token,
            json!({"button": [], "matchrule": {"tag_id": "2"}}),
        )
        .await;
    assert_eq!(
        errcode(&answer),
        40016,
        "the buttons are checked as menu/create"
    );

    let platform = add(json!({"client_platform_type": "2"})).await;
    assert!(platform["menuid"].is_string(), "{platform}");
    let answer = add(json!({"tag_id": tag})).await;
    let menuid = answer["menuid"].as_str().unwrap().to_owned();

    let menu = sim.api_get(paths::MENU_GET, &token, "").await;
    let conditional = menu["conditionalmenu"].as_array().unwrap();
    assert_eq!(conditional.len(), 2, "{menu}");
    assert_eq!(
        conditional[1]["matchrule"],
        json!({"tag_id": tag.to_string()})
    );
    assert_eq!(conditional[1]["menuid"].to_string(), menuid);
    assert_eq!(conditional[1]["button"], vip);

    let trymatch =
        |user: &str| sim.api_post(paths::MENU_TRYMATCH, &token, json!({"user_id": user}));
    assert_eq!(trymatch(&ids[0]).await, json!({"button": vip}));
    assert_eq!(trymatch(&ids[1]).await, json!({"button": default}));
    assert_eq!(errcode(&trymatch("o_nobody").await), 65302);
    assert_eq!(
        errcode(&sim.api_post(paths::MENU_TRYMATCH, &token, json!({})).await),
        40097
    );

    let del = |id: Value| sim.api_post(paths::MENU_DEL_CONDITIONAL, &token, json!({"menuid": id}));
    assert_eq!(errcode(&del(json!("1")).await), 65301);
    assert_eq!(errcode(&del(json!("x")).await), 40097);
    assert_eq!(errcode(&del(json!(menuid)).await), 0);
    assert_eq!(errcode(&del(json!(menuid)).await), 65301);
    assert_eq!(trymatch(&ids[0]).await, json!({"button": default}));

    // menu/delete removes the conditional menus too.
    sim.api_get(paths::MENU_DELETE, &token, "").await;
    let platform_id = platform["menuid"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(errcode(&del(json!(platform_id)).await), 65301);
    assert_eq!(errcode(&trymatch(&ids[0]).await), 46003);
}

fn qr(action: &str, scene: Value) -> Value {
    json!({"action_name": action, "action_info": {"scene": scene}})
}

/// Percent-encodes a ticket for a query string.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn qrcodes_temporary_permanent_string_and_image() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let create = |body: Value| sim.api_post(paths::QRCODE_CREATE, &token, body);

    // Temporary, default and explicit life.
    let temp = create(qr("QR_SCENE", json!({"scene_id": 123}))).await;
    assert_eq!(temp["expire_seconds"], 60, "{temp}");
    assert!(
        temp["url"]
            .as_str()
            .unwrap()
            .starts_with("http://weixin.qq.com/q/"),
        "{temp}"
    );
    let mut body = qr("QR_STR_SCENE", json!({"scene_str": "test"}));
    body["expire_seconds"] = json!(2_592_000);
    let month = create(body).await;
    assert_eq!(month["expire_seconds"], 2_592_000, "{month}");
    let mut body = qr("QR_SCENE", json!({"scene_id": 4_294_967_295u64}));
    body["expire_seconds"] = json!(604_800);
    assert_eq!(create(body).await["expire_seconds"], 604_800);

    // Permanent: no expire_seconds, the same scene answers the same code.
    let limit = create(qr("QR_LIMIT_SCENE", json!({"scene_id": 100_000}))).await;
    assert!(
        limit["ticket"].is_string() && limit.get("expire_seconds").is_none(),
        "{limit}"
    );
    let again = create(qr("QR_LIMIT_SCENE", json!({"scene_id": 100_000}))).await;
    assert_eq!(again["ticket"], limit["ticket"]);
    let limit_str = create(qr(
        "QR_LIMIT_STR_SCENE",
        json!({"scene_str": "x".repeat(64)}),
    ))
    .await;
    assert!(limit_str["ticket"].is_string(), "{limit_str}");

    // The rules: 40097.
    let mut too_long = qr("QR_SCENE", json!({"scene_id": 1}));
    too_long["expire_seconds"] = json!(2_592_001);
    let mut zero = qr("QR_SCENE", json!({"scene_id": 1}));
    zero["expire_seconds"] = json!(0);
    for (body, what) in [
        (too_long, "over 30 days"),
        (zero, "no life"),
        (qr("QR_SCENE", json!({"scene_id": 0})), "scene_id 0"),
        (
            qr("QR_SCENE", json!({"scene_id": 4_294_967_296u64})),
            "over 32 bits",
        ),
        (qr("QR_SCENE", json!({"scene_id": -1})), "negative"),
        (
            qr("QR_LIMIT_SCENE", json!({"scene_id": 100_001})),
            "permanent over 100000",
        ),
        (qr("QR_LIMIT_SCENE", json!({"scene_id": 0})), "permanent 0"),
        (
            qr("QR_STR_SCENE", json!({"scene_str": ""})),
            "empty scene_str",
        ),
        (
            qr("QR_LIMIT_STR_SCENE", json!({"scene_str": "字".repeat(65)})),
            "65 chars",
        ),
        (
            qr("QR_STR_SCENE", json!({"scene_id": 1})),
            "string scene without scene_str",
        ),
        (qr("QR_NOPE", json!({"scene_id": 1})), "bad action_name"),
        (
            json!({"action_name": "QR_SCENE", "action_info": {"scene_id": 1}}),
            "no scene wrapper",
        ),
        (json!({"action_name": "QR_SCENE"}), "no action_info"),
    ] {
        let answer = create(body).await;
        assert_eq!(errcode(&answer), 40097, "{what}: {answer}");
    }

    // The image: a PNG without access_token.
    let show = |ticket: &str| {
        sim.http
            .get(format!(
                "{}{}?ticket={}",
                sim.base,
                paths::SHOW_QRCODE,
                url_encode(ticket)
            ))
            .send()
    };
    let ticket = temp["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.contains('='), "the ticket needs encoding: {ticket}");
    let response = show(&ticket).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    assert_eq!(show("nope").await.unwrap().status().as_u16(), 404);

    // The control listing.
    let listed = sim.get(&format!("{}?appid=wxsafe", paths::QRCODES)).await;
    assert_eq!(listed["permanent"], 2, "{listed}");
    let codes = listed["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 5, "{listed}");
    assert_eq!(codes[0]["ticket"], temp["ticket"]);
    assert_eq!(codes[0]["action_name"], "QR_SCENE");
    assert_eq!(codes[0]["scene"], json!({"scene_id": 123}));
    assert_eq!(codes[0]["expired"], false);
    assert!(codes[3]["expires_ms"].is_null(), "{listed}");

    // Temporary codes expire; permanent ones do not.
    sim.advance(61).await;
    assert_eq!(show(&ticket).await.unwrap().status().as_u16(), 404);
    let listed = sim.get(&format!("{}?appid=wxsafe", paths::QRCODES)).await;
    assert_eq!(listed["codes"][0]["expired"], true);
    let limit_ticket = limit["ticket"].as_str().unwrap();
    assert_eq!(show(limit_ticket).await.unwrap().status().as_u16(), 200);
    let month_ticket = month["ticket"].as_str().unwrap();
    assert_eq!(show(month_ticket).await.unwrap().status().as_u16(), 200);
}

#[test]
fn permanent_qrcodes_stop_at_100000() {
    use crate::qrcodes::{MAX_PERMANENT, QrStore, check_request};
    let mut store = QrStore::default();
    for i in 0..MAX_PERMANENT {
        let request = check_request(&qr(
            "QR_LIMIT_STR_SCENE",
            json!({"scene_str": i.to_string()}),
        ))
        .expect("valid");
        store.create("wxa", request, 0).expect("within the limit");
    }
    assert_eq!(store.permanent_count("wxa"), MAX_PERMANENT);
    let old = check_request(&qr("QR_LIMIT_STR_SCENE", json!({"scene_str": "7"}))).unwrap();
    assert!(
        store.create("wxa", old, 0).is_ok(),
        "an existing scene is answered again"
    );
    let new = check_request(&qr("QR_LIMIT_SCENE", json!({"scene_id": 1}))).unwrap();
    match store.create("wxa", new, 0) {
        Err(crate::SimError::Api { errcode, .. }) => assert_eq!(errcode, 45009),
        other => panic!("expected 45009: {other:?}"),
    }
    let temp = check_request(&qr("QR_SCENE", json!({"scene_id": 1}))).unwrap();
    assert!(
        store.create("wxa", temp, 0).is_ok(),
        "temporary codes are not limited"
    );
}

#[tokio::test]
async fn quota_get_limits_and_clear_quota() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let quota = |path: &str| sim.api_post(paths::QUOTA_GET, &token, json!({"cgi_path": path}));
    let menu = json!({"button": [click("a", "k")]});

    let answer = quota(paths::MENU_CREATE).await;
    assert_eq!(
        answer,
        json!({"errcode": 0, "errmsg": "ok", "quota": {"daily_limit": 1000, "used": 0, "remain": 1000}})
    );
    for _ in 0..2 {
        sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await;
    }
    assert_eq!(quota(paths::MENU_CREATE).await["quota"]["used"], 2);
    assert_eq!(quota(paths::MENU_CREATE).await["quota"]["remain"], 998);
    // Table values, the default, and the wrong paths.
    assert_eq!(
        quota(paths::CUSTOM_SEND).await["quota"]["daily_limit"],
        500_000
    );
    assert_eq!(quota(paths::USER_GET).await["quota"]["daily_limit"], 500);
    assert_eq!(quota(paths::TOKEN).await["quota"]["used"], 1);
    assert_eq!(
        quota("/cgi-bin/whatever").await["quota"]["daily_limit"],
        10_000
    );
    assert_eq!(quota(paths::QUOTA_GET).await["quota"]["used"], 8);
    assert_eq!(errcode(&quota("/sns/userinfo").await), 40097);
    assert_eq!(
        errcode(&sim.api_post(paths::QUOTA_GET, &token, json!({})).await),
        40097
    );
    // Another app's counters are its own.
    let other = sim.token("wxplain", "secret-plain").await;
    let answer = sim
        .api_post(
            paths::QUOTA_GET,
            &other,
            json!({"cgi_path": paths::MENU_CREATE}),
        )
        .await;
    assert_eq!(answer["quota"]["used"], 0, "{answer}");

    // A low limit: the 4th call of the day is refused.
    let set = sim
        .post(
            paths::QUOTA_SETTINGS,
            json!({"api": paths::MENU_CREATE, "daily_limit": 3}),
        )
        .await;
    assert_eq!(
        set,
        json!({"api": paths::MENU_CREATE, "daily_limit": 3, "enforced": true})
    );
    assert_eq!(
        errcode(&sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await),
        0
    );
    let refused = sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await;
    assert_eq!(errcode(&refused), 45009, "{refused}");
    let answer = quota(paths::MENU_CREATE).await;
    assert_eq!(answer["quota"]["daily_limit"], 3);
    assert_eq!(answer["quota"]["remain"], 0);
    // The other app still has its own calls.
    assert_eq!(
        errcode(&sim.api_post(paths::MENU_CREATE, &other, menu.clone()).await),
        0
    );

    // clear_quota: appid checks, then the counters start again.
    let clear = |appid: &str| sim.api_post(paths::CLEAR_QUOTA, &token, json!({"appid": appid}));
    assert_eq!(errcode(&clear("wxplain").await), 40013);
    assert_eq!(
        errcode(&sim.api_post(paths::CLEAR_QUOTA, &token, json!({})).await),
        41002
    );
    assert_eq!(clear("wxsafe").await, json!({"errcode": 0, "errmsg": "ok"}));
    assert_eq!(quota(paths::MENU_CREATE).await["quota"]["used"], 0);
    assert_eq!(
        errcode(&sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await),
        0
    );

    // A new sim day also starts again.
    for _ in 0..3 {
        sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await;
    }
    assert_eq!(
        errcode(&sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await),
        45009
    );
    sim.advance(86_400).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    assert_eq!(
        errcode(&sim.api_post(paths::MENU_CREATE, &token, menu.clone()).await),
        0
    );

    // At most 10 clears a month: the 11th is 48006 (one was used above).
    let clear = |n: usize| {
        let token = token.clone();
        let sim = &sim;
        async move {
            let answer = sim
                .api_post(paths::CLEAR_QUOTA, &token, json!({"appid": "wxsafe"}))
                .await;
            (n, errcode(&answer))
        }
    };
    let report = sim.get(&format!("{}?appid=wxsafe", paths::QUOTA)).await;
    let month_used = report["clears_this_month"].as_u64().unwrap();
    for n in month_used..10 {
        assert_eq!(clear(n as usize).await.1, 0, "clear {}", n + 1);
    }
    let (_, code) = clear(11).await;
    assert_eq!(code, 48006);
    let report = sim.get(&format!("{}?appid=wxsafe", paths::QUOTA)).await;
    assert_eq!(report["clears_this_month"], 10, "{report}");
    assert_eq!(report["overrides"][paths::MENU_CREATE], 3, "{report}");
    assert_eq!(
        report["calls"][paths::CLEAR_QUOTA]["used"],
        1,
        "the last good clear emptied the counters: {report}"
    );

    // Back to WeChat's limit.
    let set = sim
        .post(
            paths::QUOTA_SETTINGS,
            json!({"api": paths::MENU_CREATE, "daily_limit": null}),
        )
        .await;
    assert_eq!(set["daily_limit"], 1000, "{set}");
}

// ---- material, drafts, comments -------------------------------------------------------------

/// `len` bytes starting with `magic`, the rest a pattern (so a round trip checks every byte).
fn fake_file(magic: &[u8], len: usize) -> Vec<u8> {
    let pattern: Vec<u8> = (0..=250).collect();
    let mut bytes = magic.to_vec();
    while bytes.len() < len {
        let take = (len - bytes.len()).min(pattern.len());
        bytes.extend_from_slice(&pattern[..take]);
    }
    bytes
}

const JPG: &[u8] = b"\xff\xd8\xff\xe0";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
const AMR: &[u8] = b"#!AMR\n";
const MP4: &[u8] = b"\0\0\0\x18ftypmp42";
const WAV: &[u8] = b"RIFF\x24\0\0\0WAVEfmt ";

/// One form part: (name, filename, content type, data).
type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body and its Content-Type.
fn multipart(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "----simtest7d1f";
    let mut body = Vec::new();
    for (name, filename, content_type, data) in parts {
        body.extend(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes(),
        );
        if let Some(filename) = filename {
            body.extend(format!("; filename=\"{filename}\"").bytes());
        }
        if let Some(content_type) = content_type {
            body.extend(format!("\r\nContent-Type: {content_type}").bytes());
        }
        body.extend(b"\r\n\r\n");
        body.extend(*data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

impl Running {
    /// A token-checked multipart POST; `query` as in [`Running::api_get`].
    async fn upload(&self, path: &str, token: &str, query: &str, parts: &[FormPart<'_>]) -> Value {
        let (content_type, body) = multipart(parts);
        self.http
            .post(format!("{}{path}?access_token={token}&{query}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A permanent thumb of the token's app, a draft's cover: its media_id.
    async fn permanent_thumb(&self, token: &str) -> String {
        self.upload_file(
            paths::MATERIAL_ADD,
            token,
            "thumb",
            "t.jpg",
            &fake_file(JPG, 100),
        )
        .await["media_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Uploads one `media` file.
    async fn upload_file(
        &self,
        path: &str,
        token: &str,
        kind: &str,
        name: &str,
        data: &[u8],
    ) -> Value {
        self.upload(
            path,
            token,
            &format!("type={kind}"),
            &[("media", Some(name), None, data)],
        )
        .await
    }

    /// A raw GET (full URL): status, Content-Type, Content-Disposition, bytes.
    async fn fetch(&self, request: reqwest::RequestBuilder) -> (u16, String, String, Vec<u8>) {
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        let (content_type, disposition) = (header("content-type"), header("content-disposition"));
        let status = response.status().as_u16();
        (
            status,
            content_type,
            disposition,
            response.bytes().await.unwrap().to_vec(),
        )
    }

    async fn fetch_url(&self, url: &str) -> (u16, String, String, Vec<u8>) {
        self.fetch(self.http.get(url)).await
    }

    async fn media_get(&self, token: &str, media_id: &str) -> (u16, String, String, Vec<u8>) {
        let url = format!(
            "{}{}?access_token={token}&media_id={media_id}",
            self.base,
            paths::MEDIA_GET
        );
        self.fetch_url(&url).await
    }

    async fn material_get(&self, token: &str, media_id: &str) -> (u16, String, String, Vec<u8>) {
        let url = format!("{}{}?access_token={token}", self.base, paths::MATERIAL_GET);
        self.fetch(self.http.post(url).json(&json!({"media_id": media_id})))
            .await
    }
}

/// The errcode of a raw answer that should be JSON.
fn raw_errcode((_, content_type, _, bytes): &(u16, String, String, Vec<u8>)) -> i64 {
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    errcode(&serde_json::from_slice(bytes).unwrap())
}

#[tokio::test]
async fn temporary_media_round_trip_and_expiry() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let image = fake_file(JPG, 5_000);
    let answer = sim
        .upload(
            paths::MEDIA_UPLOAD,
            &token,
            "type=image",
            &[("media", Some("猫 1.jpg"), Some("image/jpeg"), &image)],
        )
        .await;
    assert_eq!(answer["type"], "image", "{answer}");
    assert!(answer["created_at"].is_i64(), "{answer}");
    let image_id = answer["media_id"].as_str().unwrap().to_owned();

    let (status, content_type, disposition, bytes) = sim.media_get(&token, &image_id).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(disposition, "attachment; filename=\"猫 1.jpg\"");
    assert_eq!(bytes, image, "the bytes round-trip");

    // A thumb answers thumb_media_id; the Content-Type defaults from the format.
    let thumb = fake_file(JPG, 1_000);
    let answer = sim
        .upload_file(paths::MEDIA_UPLOAD, &token, "thumb", "t.JPEG", &thumb)
        .await;
    assert_eq!(answer["type"], "thumb", "{answer}");
    assert!(answer.get("media_id").is_none(), "{answer}");
    let thumb_id = answer["thumb_media_id"].as_str().unwrap().to_owned();
    let got = sim.media_get(&token, &thumb_id).await;
    assert_eq!((got.1.as_str(), &got.3), ("image/jpeg", &thumb));

    let voice = fake_file(AMR, 3_000);
    let answer = sim
        .upload_file(paths::MEDIA_UPLOAD, &token, "voice", "v.amr", &voice)
        .await;
    let voice_id = answer["media_id"].as_str().unwrap().to_owned();
    assert_eq!(sim.media_get(&token, &voice_id).await.3, voice);

    // A video answers its URL instead.
    let video = fake_file(MP4, 20_000);
    let answer = sim
        .upload_file(paths::MEDIA_UPLOAD, &token, "video", "v.mp4", &video)
        .await;
    let video_id = answer["media_id"].as_str().unwrap().to_owned();
    let got = sim.media_get(&token, &video_id).await;
    let url: Value = serde_json::from_slice(&got.3).unwrap();
    let video_url = url["video_url"].as_str().unwrap().to_owned();
    assert!(
        video_url.starts_with(&format!("{}/_sim/mmbiz/", sim.base)),
        "{url}"
    );
    let (status, content_type, _, bytes) = sim.fetch_url(&video_url).await;
    assert_eq!((status, content_type.as_str()), (200, "video/mp4"));
    assert_eq!(bytes, video);

    // Unknown ids, another app's id, a temporary id as permanent material: 40007.
    assert_eq!(raw_errcode(&sim.media_get(&token, "nope").await), 40007);
    let other = sim.token("wxplain", "secret-plain").await;
    assert_eq!(raw_errcode(&sim.media_get(&other, &image_id).await), 40007);
    assert_eq!(
        raw_errcode(&sim.material_get(&token, &image_id).await),
        40007
    );
    assert_eq!(raw_errcode(&sim.media_get("bad", &image_id).await), 40001);

    let listed = sim.get(&format!("{}?appid=wxsafe", paths::MATERIAL)).await;
    let files = listed["files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "{listed}");
    assert_eq!(files[0]["media_id"], image_id.as_str());
    assert_eq!(files[0]["type"], "image");
    assert_eq!(files[0]["storage"], "temporary");
    assert_eq!(files[0]["name"], "猫 1.jpg");
    assert_eq!(files[0]["size"], 5_000);
    assert_eq!(
        files[0]["fnv1a64"],
        format!("{:016x}", crate::fnv1a64(&image))
    );
    assert_eq!(files[0]["expired"], false);
    assert_eq!(files[1]["type"], "thumb");
    let quota = sim.get(&format!("{}?appid=wxsafe", paths::QUOTA)).await;
    assert_eq!(quota["calls"][paths::MEDIA_UPLOAD]["used"], 4, "{quota}");
    assert_eq!(quota["calls"][paths::MEDIA_UPLOAD]["daily_limit"], 100_000);

    // Three days later they are gone.
    sim.advance(3 * 86_400 - 10).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    assert_eq!(sim.media_get(&token, &image_id).await.0, 200);
    sim.advance(10).await;
    assert_eq!(raw_errcode(&sim.media_get(&token, &image_id).await), 40007);
    assert_eq!(sim.fetch_url(&video_url).await.0, 404);
    let listed = sim.get(&format!("{}?appid=wxsafe", paths::MATERIAL)).await;
    assert_eq!(listed["files"][0]["expired"], true, "{listed}");
}

#[tokio::test]
async fn permanent_material_count_batchget_delete() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let image = fake_file(PNG, 4_000);
    let answer = sim
        .upload_file(paths::MATERIAL_ADD, &token, "image", "a.png", &image)
        .await;
    let image_id = answer["media_id"].as_str().unwrap().to_owned();
    let image_url = answer["url"].as_str().unwrap().to_owned();
    assert_eq!(sim.fetch_url(&image_url).await.3, image);
    let (status, content_type, disposition, bytes) = sim.material_get(&token, &image_id).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "image/png");
    assert_eq!(disposition, "attachment; filename=\"a.png\"");
    assert_eq!(bytes, image);
    // Permanent ids are not temporary media.
    assert_eq!(raw_errcode(&sim.media_get(&token, &image_id).await), 40007);

    // A video needs its description.
    let video = fake_file(MP4, 9_000);
    let no_description = sim
        .upload_file(paths::MATERIAL_ADD, &token, "video", "v.mp4", &video)
        .await;
    assert_eq!(errcode(&no_description), 40097, "{no_description}");
    let description = json!({"title": "标题", "introduction": "简介"}).to_string();
    let answer = sim
        .upload(
            paths::MATERIAL_ADD,
            &token,
            "type=video",
            &[
                ("media", Some("v.mp4"), Some("video/mp4"), &video),
                ("description", None, None, description.as_bytes()),
            ],
        )
        .await;
    let video_id = answer["media_id"].as_str().unwrap().to_owned();
    assert!(
        answer.get("url").is_none(),
        "only images have a url: {answer}"
    );
    let got = sim.material_get(&token, &video_id).await;
    let info: Value = serde_json::from_slice(&got.3).unwrap();
    assert_eq!(info["title"], "标题", "{info}");
    assert_eq!(info["description"], "简介");
    assert_eq!(
        sim.fetch_url(info["down_url"].as_str().unwrap()).await.3,
        video
    );

    // wav is a permanent voice format only.
    let wav = fake_file(WAV, 2_000);
    let temp = sim
        .upload_file(paths::MEDIA_UPLOAD, &token, "voice", "v.wav", &wav)
        .await;
    assert_eq!(errcode(&temp), 40005, "{temp}");
    let voice = sim
        .upload_file(paths::MATERIAL_ADD, &token, "voice", "v.wav", &wav)
        .await;
    let voice_id = voice["media_id"].as_str().unwrap().to_owned();
    assert_eq!(sim.material_get(&token, &voice_id).await.3, wav);
    let thumb = fake_file(JPG, 2_000);
    let thumb_id = sim
        .upload_file(paths::MATERIAL_ADD, &token, "thumb", "t.jpg", &thumb)
        .await["media_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let count = sim.api_get(paths::MATERIAL_COUNT, &token, "").await;
    assert_eq!(
        count,
        json!({"voice_count": 1, "video_count": 1, "image_count": 2, "news_count": 0})
    );
    let batch = |body: Value| sim.api_post(paths::MATERIAL_BATCHGET, &token, body);
    let images = batch(json!({"type": "image", "offset": 0, "count": 20})).await;
    assert_eq!(images["total_count"], 2, "{images}");
    assert_eq!(images["item_count"], 2);
    let items = images["item"].as_array().unwrap();
    assert_eq!(items[0]["media_id"], thumb_id.as_str(), "newest first");
    assert_eq!(items[1]["media_id"], image_id.as_str());
    assert_eq!(items[1]["name"], "a.png");
    assert_eq!(items[1]["url"], image_url.as_str());
    assert!(items[1]["update_time"].is_i64());
    let page = batch(json!({"type": "image", "offset": 1, "count": 1})).await;
    assert_eq!(page["item"][0]["media_id"], image_id.as_str(), "{page}");
    assert_eq!(page["total_count"], 2);
    let videos = batch(json!({"type": "video", "offset": 0, "count": 5})).await;
    assert_eq!(videos["item"][0]["media_id"], video_id.as_str());
    let news = batch(json!({"type": "news", "offset": 0, "count": 5})).await;
    assert_eq!(news, json!({"total_count": 0, "item_count": 0, "item": []}));
    for (body, code) in [
        (json!({"type": "image", "offset": 0, "count": 0}), 40097),
        (json!({"type": "image", "offset": 0, "count": 21}), 40097),
        (json!({"type": "image", "offset": -1, "count": 1}), 40097),
        (json!({"type": "music", "offset": 0, "count": 1}), 40004),
        (json!({"type": "thumb", "offset": 0, "count": 1}), 40004),
    ] {
        assert_eq!(errcode(&batch(body.clone()).await), code, "{body}");
    }

    let delete = |id: &str| sim.api_post(paths::MATERIAL_DELETE, &token, json!({"media_id": id}));
    assert_eq!(
        delete(&image_id).await,
        json!({"errcode": 0, "errmsg": "ok"})
    );
    assert_eq!(errcode(&delete(&image_id).await), 40007);
    assert_eq!(errcode(&delete("nope").await), 40007);
    assert_eq!(
        raw_errcode(&sim.material_get(&token, &image_id).await),
        40007
    );
    assert_eq!(sim.fetch_url(&image_url).await.0, 404);
    let count = sim.api_get(paths::MATERIAL_COUNT, &token, "").await;
    assert_eq!(count["image_count"], 1, "{count}");
    let other = sim.token("wxplain", "secret-plain").await;
    assert_eq!(
        errcode(
            &sim.api_post(
                paths::MATERIAL_DELETE,
                &other,
                json!({"media_id": thumb_id})
            )
            .await
        ),
        40007,
        "another app's material"
    );
}

#[tokio::test]
async fn upload_type_and_size_errors() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let jpg = fake_file(JPG, 100);
    let up = |path: &'static str, kind: &'static str, name: &'static str, data: Vec<u8>| {
        let (sim, token) = (&sim, &token);
        async move { errcode(&sim.upload_file(path, token, kind, name, &data).await) }
    };
    for path in [paths::MEDIA_UPLOAD, paths::MATERIAL_ADD] {
        assert_eq!(
            up(path, "file", "a.jpg", jpg.clone()).await,
            40004,
            "{path}"
        );
        assert_eq!(
            up(path, "image", "a.png", jpg.clone()).await,
            40005,
            "{path}: the content is jpg"
        );
        assert_eq!(
            up(path, "image", "a.txt", b"hello".to_vec()).await,
            40005,
            "{path}"
        );
        assert_eq!(
            up(path, "image", "a", jpg.clone()).await,
            40005,
            "{path}: no extension"
        );
        assert_eq!(
            up(path, "thumb", "a.png", fake_file(PNG, 100)).await,
            40005,
            "{path}"
        );
        assert_eq!(
            up(path, "video", "a.mp4", jpg.clone()).await,
            40005,
            "{path}"
        );
        assert_eq!(
            up(path, "thumb", "a.jpg", fake_file(JPG, 64 * 1024)).await,
            0,
            "{path}"
        );
        assert_eq!(
            up(path, "thumb", "a.jpg", fake_file(JPG, 64 * 1024 + 1)).await,
            40012,
            "{path}"
        );
        assert_eq!(
            up(
                path,
                "voice",
                "a.mp3",
                fake_file(b"ID3", 2 * 1024 * 1024 + 1)
            )
            .await,
            40010,
            "{path}"
        );
        assert_eq!(
            up(path, "image", "a.jpg", Vec::new()).await,
            41005,
            "{path}: empty"
        );
        // No `media` field, or not a form at all.
        let answer = sim
            .upload(
                path,
                &token,
                "type=image",
                &[("file", Some("a.jpg"), None, &jpg)],
            )
            .await;
        assert_eq!(errcode(&answer), 41005, "{path}: {answer}");
        let answer = sim
            .post(
                &format!("{path}?access_token={token}&type=image"),
                json!({}),
            )
            .await;
        assert_eq!(errcode(&answer), 41005, "{path}: {answer}");
    }
    let answer = sim
        .upload_file(paths::MEDIA_UPLOAD, "", "image", "a.jpg", &jpg)
        .await;
    assert_eq!(errcode(&answer), 41001, "{answer}");

    // uploadimg: jpg/png up to 1 MB, served at its URL.
    let img = |name: &'static str, data: Vec<u8>| {
        let (sim, token) = (&sim, &token);
        async move {
            sim.upload_file(paths::MEDIA_UPLOAD_IMG, token, "", name, &data)
                .await
        }
    };
    let png = fake_file(PNG, 1024 * 1024);
    let answer = img("p.png", png.clone()).await;
    let url = answer["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/_sim/mmbiz/", sim.base)),
        "{answer}"
    );
    let (status, content_type, _, bytes) = sim.fetch_url(&url).await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(bytes, png);
    assert_eq!(
        errcode(&img("p.png", fake_file(PNG, 1024 * 1024 + 1)).await),
        40009
    );
    assert_eq!(
        errcode(&img("g.gif", fake_file(b"GIF89a", 100)).await),
        40005
    );
    // Article images are not material.
    let count = sim.api_get(paths::MATERIAL_COUNT, &token, "").await;
    assert_eq!(count["image_count"], 1, "the permanent thumb: {count}");
    assert_eq!(
        sim.fetch_url(&format!("{}/_sim/mmbiz/nope", sim.base))
            .await
            .0,
        404
    );
}

#[test]
fn file_checks_by_extension_magic_and_size() {
    use crate::material::{Kind, Storage, check_file};
    let check =
        |kind, storage, name: &str, bytes: Vec<u8>| match check_file(kind, storage, name, &bytes) {
            Ok(_) => 0,
            Err(crate::SimError::Api { errcode, .. }) => errcode,
            Err(other) => panic!("{other}"),
        };
    let (temp, perm, news) = (Storage::Temporary, Storage::Permanent, Storage::NewsImage);
    let (image, voice, video, thumb) = (Kind::Image, Kind::Voice, Kind::Video, Kind::Thumb);
    const WMA: &[u8] = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11";
    const MB: usize = 1024 * 1024;
    assert_eq!(check(image, temp, "A.JPG", fake_file(JPG, 10)), 0);
    assert_eq!(check(image, perm, "a.jpeg", fake_file(JPG, 10)), 0);
    assert_eq!(check(image, temp, "a.bmp", fake_file(b"BM", 10)), 0);
    assert_eq!(check(image, temp, "a.gif", fake_file(b"GIF87a", 10)), 0);
    assert_eq!(check(image, temp, "a.gif", fake_file(PNG, 10)), 40005);
    assert_eq!(
        check(image, temp, "a.gif", fake_file(b"GIF89a", 10 * MB)),
        0
    );
    assert_eq!(
        check(image, perm, "a.gif", fake_file(b"GIF89a", 10 * MB + 1)),
        40009
    );
    assert_eq!(check(voice, temp, "a.mp3", vec![0xff, 0xfb, 0x90, 0x44]), 0);
    assert_eq!(check(voice, perm, "a.wma", fake_file(WMA, 20)), 0);
    assert_eq!(check(voice, temp, "a.wma", fake_file(WMA, 20)), 40005);
    assert_eq!(check(video, temp, "a.mp4", fake_file(MP4, 10 * MB)), 0);
    assert_eq!(
        check(video, perm, "a.mp4", fake_file(MP4, 10 * MB + 1)),
        40011
    );
    assert_eq!(check(thumb, temp, "a.jpeg", fake_file(JPG, 10)), 0);
    assert_eq!(check(image, news, "a.bmp", fake_file(b"BM", 10)), 40005);
}

#[tokio::test]
async fn drafts_add_get_update_batchget_delete() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let thumb = sim.permanent_thumb(&token).await;
    let temporary = sim
        .upload_file(
            paths::MEDIA_UPLOAD,
            &token,
            "image",
            "t.jpg",
            &fake_file(JPG, 100),
        )
        .await["media_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let article = |title: &str| json!({"title": title, "content": "<p>正文<b>内容</b></p>", "thumb_media_id": thumb, "author": "作者", "need_open_comment": 1});
    let add =
        |articles: Value| sim.api_post(paths::DRAFT_ADD, &token, json!({"articles": articles}));
    let mut temp_cover = article("a");
    temp_cover["thumb_media_id"] = json!(temporary);
    let mut no_content = article("a");
    no_content["content"] = json!("");
    for (articles, code, what) in [
        (json!([]), 44003, "no articles"),
        (
            json!([{"content": "x", "thumb_media_id": thumb}]),
            44003,
            "no title",
        ),
        (json!([no_content]), 44003, "no content"),
        (json!([temp_cover]), 40007, "a temporary cover"),
        (
            json!([article("x"), {"title": "t", "content": "c"}]),
            40007,
            "no cover",
        ),
        (json!(vec![article("x"); 9]), 45008, "nine articles"),
        (
            json!([article(&"字".repeat(33))]),
            45003,
            "33-character title",
        ),
    ] {
        let answer = add(articles).await;
        assert_eq!(errcode(&answer), code, "{what}: {answer}");
    }
    let answer = add(json!([article(&"字".repeat(32)), article("second")])).await;
    let media_id = answer["media_id"].as_str().unwrap().to_owned();

    let get = |id: &str| sim.api_post(paths::DRAFT_GET, &token, json!({"media_id": id}));
    let draft = get(&media_id).await;
    let items = draft["news_item"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{draft}");
    assert_eq!(items[1]["title"], "second");
    assert_eq!(items[1]["digest"], "正文内容", "the text of the content");
    assert_eq!(items[1]["thumb_media_id"], thumb.as_str());
    assert_eq!(items[1]["need_open_comment"], 1);
    assert_eq!(items[1]["only_fans_can_comment"], 0);
    assert_eq!(errcode(&get("nope").await), 40007);
    let other = sim.token("wxplain", "secret-plain").await;
    assert_eq!(
        errcode(
            &sim.api_post(paths::DRAFT_GET, &other, json!({"media_id": media_id}))
                .await
        ),
        40007
    );

    let second = add(json!([article("another")])).await["media_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sim.api_get(paths::DRAFT_COUNT, &token, "").await,
        json!({"total_count": 2})
    );

    let update = |index: Value, article: Value| {
        sim.api_post(
            paths::DRAFT_UPDATE,
            &token,
            json!({"media_id": media_id, "index": index, "articles": article}),
        )
    };
    let mut changed = article("changed");
    changed["digest"] = json!("摘要");
    assert_eq!(
        update(json!(1), changed.clone()).await,
        json!({"errcode": 0, "errmsg": "ok"})
    );
    assert_eq!(errcode(&update(json!(2), changed.clone()).await), 40114);
    assert_eq!(
        errcode(&update(json!(0), json!({"title": "x"})).await),
        44003
    );
    let draft = get(&media_id).await;
    assert_eq!(draft["news_item"][1]["title"], "changed");
    assert_eq!(draft["news_item"][1]["digest"], "摘要");

    let batch = |body: Value| sim.api_post(paths::DRAFT_BATCHGET, &token, body);
    let list = batch(json!({"offset": 0, "count": 20})).await;
    assert_eq!(list["total_count"], 2, "{list}");
    assert_eq!(
        list["item"][0]["media_id"],
        media_id.as_str(),
        "the newest change first"
    );
    assert_eq!(list["item"][1]["media_id"], second.as_str());
    assert_eq!(
        list["item"][0]["content"]["news_item"][1]["title"],
        "changed"
    );
    assert!(list["item"][0]["update_time"].is_i64());
    let list = batch(json!({"offset": 1, "count": 1, "no_content": 1})).await;
    assert_eq!(list["item_count"], 1, "{list}");
    let item = &list["item"][0]["content"]["news_item"][0];
    assert_eq!(item["title"], "another");
    assert!(item.get("content").is_none(), "{item}");
    assert_eq!(
        errcode(&batch(json!({"offset": 0, "count": 21})).await),
        40097
    );

    let delete = |id: &str| sim.api_post(paths::DRAFT_DELETE, &token, json!({"media_id": id}));
    assert_eq!(errcode(&delete(&second).await), 0);
    assert_eq!(errcode(&delete(&second).await), 40007);
    assert_eq!(errcode(&get(&second).await), 40007);
    assert_eq!(
        sim.api_get(paths::DRAFT_COUNT, &token, "").await["total_count"],
        1
    );
}

#[tokio::test]
async fn comments_every_verb_and_its_errors() {
    let sim = Running::start(GATEWAY_DOWN).await;
    let token = sim.token("wxsafe", "secret-safe").await;
    let seeded = sim
        .post(
            paths::COMMENTS,
            json!({"appid": "wxsafe", "comments": [
                {"openid": "o1", "content": "一"},
                {"openid": "o2", "content": "二"},
                {"openid": "o3", "content": "三"},
            ]}),
        )
        .await;
    assert_eq!(seeded["index"], 0, "{seeded}");
    assert_eq!(seeded["open"], true);
    assert_eq!(seeded["user_comment_ids"], json!([1, 2, 3]));
    let data_id = seeded["msg_data_id"].as_u64().unwrap();
    let more = sim
        .post(
            paths::COMMENTS,
            json!({"appid": "wxsafe", "msg_data_id": data_id, "comments": [{"openid": "o4", "content": "四"}]}),
        )
        .await;
    assert_eq!(more["user_comment_ids"], json!([4]), "{more}");

    let call = |path: &'static str, extra: Value| {
        let mut body = json!({"msg_data_id": data_id, "index": 0});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        sim.api_post(path, &token, body)
    };
    let on = |path: &'static str, id: u64| call(path, json!({"user_comment_id": id}));
    let list = |kind: u64| {
        call(
            paths::COMMENT_LIST,
            json!({"begin": 0, "count": 50, "type": kind}),
        )
    };

    let all = list(0).await;
    assert_eq!(all["errcode"], 0, "{all}");
    assert_eq!(all["total"], 4);
    let first = &all["comment"][0];
    assert_eq!(first["user_comment_id"], 1);
    assert_eq!(first["openid"], "o1");
    assert_eq!(first["content"], "一");
    assert_eq!(first["comment_type"], 0);
    assert!(
        first["create_time"].is_i64() && first.get("reply").is_none(),
        "{first}"
    );
    let page = call(
        paths::COMMENT_LIST,
        json!({"begin": 1, "count": 2, "type": 0}),
    )
    .await;
    assert_eq!(page["total"], 4);
    assert_eq!(page["comment"][0]["user_comment_id"], 2, "{page}");
    assert_eq!(page["comment"].as_array().unwrap().len(), 2);
    for count in [0, 51] {
        let answer = call(
            paths::COMMENT_LIST,
            json!({"begin": 0, "count": count, "type": 0}),
        )
        .await;
        assert_eq!(errcode(&answer), 88010, "count {count}: {answer}");
    }
    let unknown = sim
        .api_post(
            paths::COMMENT_LIST,
            &token,
            json!({"msg_data_id": 1, "index": 0, "begin": 0, "count": 5, "type": 0}),
        )
        .await;
    assert_eq!(errcode(&unknown), 88001, "{unknown}");
    assert_eq!(
        errcode(&call(paths::COMMENT_LIST, json!({"index": 1, "count": 5})).await),
        88001
    );

    // Elect.
    assert_eq!(
        on(paths::COMMENT_MARKELECT, 1).await,
        json!({"errcode": 0, "errmsg": "ok"})
    );
    let elected = list(2).await;
    assert_eq!(elected["total"], 1, "{elected}");
    assert_eq!(elected["comment"][0]["comment_type"], 1);
    assert_eq!(list(1).await["total"], 3);
    assert_eq!(errcode(&on(paths::COMMENT_MARKELECT, 99).await), 88008);
    assert_eq!(errcode(&on(paths::COMMENT_UNMARKELECT, 1).await), 0);
    assert_eq!(list(2).await["total"], 0);
    assert_eq!(errcode(&on(paths::COMMENT_UNMARKELECT, 99).await), 88008);

    // Reply.
    let reply = |id: u64, content: &str| {
        call(
            paths::COMMENT_REPLY_ADD,
            json!({"user_comment_id": id, "content": content}),
        )
    };
    assert_eq!(errcode(&reply(2, "谢谢").await), 0);
    assert_eq!(errcode(&reply(2, "again").await), 88005);
    assert_eq!(errcode(&reply(3, "").await), 88007);
    assert_eq!(errcode(&reply(3, &"字".repeat(1001)).await), 88007);
    assert_eq!(errcode(&reply(3, &"字".repeat(1000)).await), 0);
    assert_eq!(errcode(&reply(99, "x").await), 88008);
    let replied = &list(0).await["comment"][1];
    assert_eq!(replied["reply"]["content"], "谢谢", "{replied}");
    assert!(replied["reply"]["create_time"].is_i64());
    assert_eq!(errcode(&on(paths::COMMENT_REPLY_DELETE, 2).await), 0);
    assert_eq!(errcode(&on(paths::COMMENT_REPLY_DELETE, 2).await), 88009);
    assert!(list(0).await["comment"][1].get("reply").is_none());

    // Delete.
    assert_eq!(errcode(&on(paths::COMMENT_DELETE, 4).await), 0);
    assert_eq!(errcode(&on(paths::COMMENT_DELETE, 4).await), 88008);
    assert_eq!(list(0).await["total"], 3);

    // Closed: the verbs answer 88000, listing still works; open again.
    assert_eq!(errcode(&call(paths::COMMENT_CLOSE, json!({})).await), 0);
    for path in [
        paths::COMMENT_MARKELECT,
        paths::COMMENT_UNMARKELECT,
        paths::COMMENT_DELETE,
        paths::COMMENT_REPLY_DELETE,
    ] {
        assert_eq!(errcode(&on(path, 1).await), 88000, "{path}");
    }
    assert_eq!(errcode(&reply(1, "x").await), 88000);
    assert_eq!(list(0).await["total"], 3);
    let state = sim.get(&format!("{}?appid=wxsafe", paths::COMMENTS)).await;
    assert_eq!(state["articles"][0]["open"], false, "{state}");
    assert_eq!(errcode(&call(paths::COMMENT_OPEN, json!({})).await), 0);
    assert_eq!(errcode(&on(paths::COMMENT_MARKELECT, 1).await), 0);
    for path in [paths::COMMENT_OPEN, paths::COMMENT_CLOSE] {
        let unknown = sim
            .api_post(path, &token, json!({"msg_data_id": data_id, "index": 5}))
            .await;
        assert_eq!(errcode(&unknown), 88001, "{path}");
        let missing = sim.api_post(path, &token, json!({"index": 0})).await;
        assert_eq!(errcode(&missing), 40097, "{path}");
    }
    // Another app does not see the article.
    let other = sim.token("wxplain", "secret-plain").await;
    let answer = sim
        .api_post(paths::COMMENT_OPEN, &other, json!({"msg_data_id": data_id}))
        .await;
    assert_eq!(errcode(&answer), 88001);

    let state = sim.get(&format!("{}?appid=wxsafe", paths::COMMENTS)).await;
    let article = &state["articles"][0];
    assert_eq!(article["msg_data_id"], data_id, "{state}");
    assert_eq!(article["open"], true);
    assert_eq!(article["comments"][0]["elected"], true);
    assert_eq!(article["comments"].as_array().unwrap().len(), 3);

    // At most 100 elected comments per article (index 1: another article).
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"openid": format!("o{i}"), "content": "x"}))
        .collect();
    let seeded = sim
        .post(
            paths::COMMENTS,
            json!({"appid": "wxsafe", "msg_data_id": data_id, "index": 1, "comments": many}),
        )
        .await;
    assert_eq!(
        seeded["user_comment_ids"][100], 101,
        "ids are per article: {seeded}"
    );
    let elect = |id: u64| {
        sim.api_post(
            paths::COMMENT_MARKELECT,
            &token,
            json!({"msg_data_id": data_id, "index": 1, "user_comment_id": id}),
        )
    };
    for id in 1..=100 {
        assert_eq!(errcode(&elect(id).await), 0, "{id}");
    }
    assert_eq!(errcode(&elect(101).await), 88003);
    assert_eq!(
        errcode(&elect(100).await),
        0,
        "an elected one stays elected"
    );

    // Control-API errors.
    let bad = sim
        .http
        .post(format!("{}{}", sim.base, paths::COMMENTS))
        .json(&json!({"appid": "wxnope", "comments": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 404);
    let bad = sim
        .http
        .post(format!("{}{}", sim.base, paths::COMMENTS))
        .json(&json!({"appid": "wxsafe", "comments": [{"openid": "", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn publishing_a_draft_posts_its_finish_event_and_opens_its_comments() {
    let (gw, url, _stop) = Gateway::start(Behaviour::Echo).await;
    let sim = Running::start(&url).await;
    // Long enough to see the job still publishing on a loaded machine.
    sim.post(paths::MASS_SETTINGS, json!({"finish_delay_ms": 1000}))
        .await;
    let token = sim.token("wxplain", "secret-plain").await;
    let thumb = sim.permanent_thumb(&token).await;
    let article = |title: &str, comments: u8| json!({"title": title, "content": "<p>正文</p>", "thumb_media_id": thumb, "need_open_comment": comments});
    let (sim_ref, token_ref) = (&sim, &token);
    let draft = |articles: Value| async move {
        sim_ref
            .api_post(paths::DRAFT_ADD, token_ref, json!({"articles": articles}))
            .await["media_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let submit = |media_id: &str| {
        sim.api_post(
            paths::FREEPUBLISH_SUBMIT,
            &token,
            json!({"media_id": media_id}),
        )
    };
    let status = |publish_id: &Value| {
        sim.api_post(
            paths::FREEPUBLISH_GET,
            &token,
            json!({"publish_id": publish_id}),
        )
    };
    assert_eq!(errcode(&submit("nope").await), 40007);

    let media_id = draft(json!([article("一", 1), article("二", 0)])).await;
    let job = submit(&media_id).await;
    assert_eq!(errcode(&job), 0, "{job}");
    assert!(job["publish_id"].is_string(), "a decimal string: {job}");
    let data_id = job["msg_data_id"].as_u64().unwrap();
    assert_eq!(status(&job["publish_id"]).await["publish_status"], 1);
    // A change after the submit is not what gets published.
    let changed = sim
        .api_post(
            paths::DRAFT_UPDATE,
            &token,
            json!({"media_id": media_id, "index": 0, "articles": article("改", 1)}),
        )
        .await;
    assert_eq!(errcode(&changed), 0, "{changed}");
    wait_for("PUBLISHJOBFINISH", || {
        !finish_events(&gw, "PUBLISHJOBFINISH").is_empty()
    })
    .await;
    let done = status(&job["publish_id"]).await;
    assert_eq!(done["publish_status"], 0, "{done}");
    assert_eq!(done["article_detail"]["count"], 2, "{done}");
    assert_eq!(done["article_detail"]["item"][1]["idx"], 2, "{done}");
    let article_id = done["article_id"].as_str().unwrap().to_owned();

    // The event parses as the gateway's parser reads it.
    let (_, body) = gw
        .seen()
        .into_iter()
        .find(|(_, body)| body.contains("PUBLISHJOBFINISH"))
        .unwrap();
    let message = wxoa_wire::inbound::Inbound::parse(body.as_bytes()).unwrap();
    match message.detail {
        wxoa_wire::inbound::Detail::PublishJobFinish {
            publish_id,
            publish_status,
            article_id: id,
        } => {
            assert_eq!(publish_id.as_deref(), job["publish_id"].as_str());
            assert_eq!(publish_status, Some(0));
            assert_eq!(id.as_deref(), Some(article_id.as_str()));
        }
        other => panic!("not a PublishJobFinish: {other:?}"),
    }

    // The draft left the draft box; the articles are published with their URLs.
    assert_eq!(
        errcode(
            &sim.api_post(paths::DRAFT_GET, &token, json!({"media_id": media_id}))
                .await
        ),
        40007
    );
    let got = sim
        .api_post(
            paths::FREEPUBLISH_GETARTICLE,
            &token,
            json!({"article_id": article_id}),
        )
        .await;
    assert_eq!(got["news_item"][0]["title"], "一", "{got}");
    assert_eq!(got["news_item"][1]["is_deleted"], false, "{got}");
    assert!(
        got["news_item"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://mp.weixin.qq.com/s/")
    );
    let list = sim
        .api_post(
            paths::FREEPUBLISH_BATCHGET,
            &token,
            json!({"offset": 0, "count": 20, "no_content": 1}),
        )
        .await;
    assert_eq!(list["total_count"], 1, "{list}");
    assert_eq!(list["item"][0]["article_id"], article_id.as_str());
    assert!(
        list["item"][0]["content"]["news_item"][0]
            .get("content")
            .is_none()
    );
    assert_eq!(
        errcode(
            &sim.api_post(
                paths::FREEPUBLISH_BATCHGET,
                &token,
                json!({"offset": 0, "count": 21})
            )
            .await
        ),
        40097
    );

    // Comments: open on the article that asked for them, closed on the other.
    let list_comments = |index: u64| {
        sim.api_post(
            paths::COMMENT_LIST,
            &token,
            json!({"msg_data_id": data_id, "index": index, "begin": 0, "count": 10, "type": 0}),
        )
    };
    assert_eq!(errcode(&list_comments(0).await), 0);
    assert_eq!(errcode(&list_comments(1).await), 0);
    let elect = sim
        .api_post(
            paths::COMMENT_MARKELECT,
            &token,
            json!({"msg_data_id": data_id, "index": 1, "user_comment_id": 1}),
        )
        .await;
    assert_eq!(errcode(&elect), 88000, "comments closed: {elect}");

    // Delete one article, then the other: the message is gone, the job says 5.
    let delete = |index: Value| {
        sim.api_post(
            paths::FREEPUBLISH_DELETE,
            &token,
            json!({"article_id": article_id, "index": index}),
        )
    };
    assert_eq!(errcode(&delete(json!(3)).await), 40114);
    assert_eq!(errcode(&delete(json!(1)).await), 0);
    assert_eq!(
        status(&job["publish_id"]).await["article_detail"]["count"],
        1
    );
    assert_eq!(errcode(&delete(json!(2)).await), 0);
    assert_eq!(status(&job["publish_id"]).await["publish_status"], 5);
    assert_eq!(errcode(&delete(json!(0)).await), 53600);
    assert_eq!(
        sim.api_post(
            paths::FREEPUBLISH_BATCHGET,
            &token,
            json!({"offset": 0, "count": 20})
        )
        .await["total_count"],
        0
    );

    // A failure set through the control API: every article failed, the draft kept.
    let answer = sim
        .post(paths::PUBLISH, json!({"appid": "wxplain", "fail": 4}))
        .await;
    assert_eq!(answer["fail"], 4, "{answer}");
    let kept = draft(json!([article("三", 0)])).await;
    let failed = submit(&kept).await;
    wait_for("the failed job's event", || {
        finish_events(&gw, "PUBLISHJOBFINISH").len() == 2
    })
    .await;
    let failed = status(&failed["publish_id"]).await;
    assert_eq!(failed["publish_status"], 4, "{failed}");
    assert_eq!(failed["fail_idx"], json!([1]), "{failed}");
    assert!(failed.get("article_id").is_none(), "{failed}");
    assert_eq!(
        errcode(
            &sim.api_post(paths::DRAFT_GET, &token, json!({"media_id": kept}))
                .await
        ),
        0
    );
    assert_eq!(errcode(&status(&json!("1")).await), 53502);
    let jobs = sim.get(&format!("{}?appid=wxplain", paths::PUBLISH)).await;
    assert_eq!(jobs["jobs"][0]["finish_posted"], true, "{jobs}");
    assert_eq!(jobs["jobs"][1]["publish_status"], 4, "{jobs}");
}
