//! The bad-input matrix against a running gateway on real NATS: every request WeChat would never
//! send (or an attacker would) is refused with a clear 4xx, stores nothing, moves its rejection
//! counter on `/metrics`, and leaves the gateway serving; input that is merely new (an unknown
//! MsgType or Event) is accepted and carried as unknown.
//!
//! Each test runs a [`Platform`] (its own prefix and stream, the simulator as WeChat) plus one
//! more gateway instance on the same stream whose admin server this test reads: the platform's
//! gateway keeps its `Health` to itself. Valid callbacks are signed (and encrypted) by the
//! simulator's own [`callback::send`]; only what it refuses to build is written here by hand.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::Value;
use wxoa_runtime::admin::Health;
use wxoa_sim::callback::{self, CallbackOutcome, CallbackRequest, MessageSpec, Mode};
use wxoa_tests::{AES_KEY, PLAIN_APP, Platform, SAFE_APP, TOKEN, shared_config};
use wxoa_wire::crypto::AesKey;
use wxoa_wire::names::{streams, subjects};
use wxoa_wire::signature;

/// The counter of callback outcomes (`outcome` label) on the gateway's `/metrics`.
const CALLBACKS: &str = "wxoa_gateway_callbacks_total";
/// The nonce of every hand-built request.
const NONCE: &str = "1357924680";

/// A platform plus a second gateway instance (same config, same stream) with a readable
/// `/metrics`; the bad requests go to the second one.
struct Rig {
    platform: Platform,
    gateway: String,
    admin: String,
}

impl Rig {
    async fn start() -> Rig {
        let mut config = shared_config();
        // Answer right after the PubAck: no test here waits on a passive reply.
        config.gateway.reply_budget_ms = 0;
        let platform = Platform::start(config, "", false).await;
        let health = Health::default();
        let gateway = wxoa_gateway::App::build(&platform.config, health.clone())
            .await
            .expect("second gateway instance");
        let url = wxoa_tests::base_url(gateway.local_addr());
        tokio::spawn(gateway.run(platform.shutdown.clone()));
        let admin = wxoa_runtime::admin::serve(
            "127.0.0.1:0".parse().expect("an address"),
            health,
            platform.shutdown.clone(),
        )
        .await
        .expect("admin server");
        Rig {
            platform,
            gateway: url,
            admin: wxoa_tests::base_url(admin),
        }
    }

    /// `outcome → count` of [`CALLBACKS`], scraped from `/metrics`.
    async fn counters(&self) -> BTreeMap<String, u64> {
        let text = self
            .platform
            .http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("admin answers")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(CALLBACKS)?.strip_prefix("{outcome=\"")?;
                let (outcome, value) = rest.split_once("\"} ")?;
                Some((outcome.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Sends a hand-built request to the second gateway: (status, `Allow` header, body).
    async fn raw(&self, request: &Raw) -> (u16, String, String) {
        let response = self
            .platform
            .http
            .request(
                request.method.clone(),
                format!("{}{}", self.gateway, request.target),
            )
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(request.body.clone())
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let allow = response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, allow, response.text().await.unwrap_or_default())
    }

    /// The simulator, as WeChat, sends one callback to the second gateway (one try).
    async fn wechat(&self, mut request: CallbackRequest) -> CallbackOutcome {
        let app = self
            .platform
            .config
            .app(&request.appid)
            .expect("a harness app")
            .clone();
        request.tries = Some(1);
        callback::send(
            &self.platform.http,
            &self.gateway,
            &app,
            &request,
            &self.platform.config.sim,
        )
        .await
    }

    /// A valid text message still gets `success` and lands in the stream.
    async fn still_serving(&self, case: &str) -> Result<(), String> {
        let before = self.platform.stream_len().await;
        let outcome = self
            .wechat(CallbackRequest {
                appid: SAFE_APP.into(),
                mode: Some(Mode::Safe),
                xml: None,
                message: Some(MessageSpec::Text {
                    from: "o_probe".into(),
                    content: format!("after {case}"),
                    msg_id: None,
                }),
                timestamp: None,
                tries: None,
                timeout_ms: None,
            })
            .await;
        let status = outcome.attempts.first().and_then(|a| a.status);
        if status != Some(200) || self.platform.stream_len().await != before + 1 {
            return Err(format!(
                "a valid message after it was not stored: {outcome:?}"
            ));
        }
        Ok(())
    }

    /// The subject and envelope of the last message stored.
    async fn last_stored(&self) -> (String, Value) {
        let js = async_nats::jetstream::new(self.platform.nats().await);
        let mut stream = js
            .get_stream(streams::inbound(self.platform.prefix()))
            .await
            .expect("inbound stream");
        let last = stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let message = stream
            .get_raw_message(last)
            .await
            .unwrap_or_else(|e| panic!("message {last}: {e}"));
        let envelope = serde_json::from_slice(&message.payload).expect("envelope JSON");
        (message.subject.to_string(), envelope)
    }
}

/// A request built by hand: what the simulator will not build.
struct Raw {
    method: Method,
    /// Path and query.
    target: String,
    body: Vec<u8>,
}

fn now() -> i64 {
    wxoa_runtime::now_ms() / 1000
}

/// The query WeChat signs: `signature` with `token`, and in safe mode `msg_signature` over
/// `signed_encrypt`.
fn query(token: &str, timestamp: &str, signed_encrypt: Option<&str>) -> String {
    let sig = signature::server_signature(token, timestamp, NONCE);
    let mut q = format!("signature={sig}&timestamp={timestamp}&nonce={NONCE}&openid=o_bad");
    if let Some(encrypt) = signed_encrypt {
        let msig = signature::msg_signature(token, timestamp, NONCE, encrypt);
        q.push_str(&format!("&encrypt_type=aes&msg_signature={msig}"));
    }
    q
}

/// A plaintext-mode POST of `body` to the plaintext app, signed now.
fn plain(body: impl Into<Vec<u8>>) -> Raw {
    Raw {
        method: Method::POST,
        target: format!(
            "/wechat/{PLAIN_APP}?{}",
            query(TOKEN, &now().to_string(), None)
        ),
        body: body.into(),
    }
}

/// A safe-mode POST carrying `encrypt`, with `msg_signature` computed over `signed`.
fn safe_signed(encrypt: &str, signed: &str) -> Raw {
    Raw {
        method: Method::POST,
        target: format!(
            "/wechat/{SAFE_APP}?{}",
            query(TOKEN, &now().to_string(), Some(signed))
        ),
        body: format!("<xml><ToUserName><![CDATA[gh_safe]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
            .into_bytes(),
    }
}

/// A correctly signed safe-mode POST carrying `encrypt`.
fn safe(encrypt: &str) -> Raw {
    safe_signed(encrypt, encrypt)
}

fn key() -> AesKey {
    AesKey::from_encoding_aes_key(AES_KEY).expect("harness key")
}

/// `xml` encrypted for the safe-mode app, as bytes.
fn ciphertext(xml: &[u8]) -> Vec<u8> {
    STANDARD
        .decode(key().encrypt(SAFE_APP, xml))
        .expect("base64")
}

/// A text message from the simulator's own builder, for the plaintext account.
fn text_xml(content: &str) -> String {
    MessageSpec::Text {
        from: "o_bad".into(),
        content: content.into(),
        msg_id: None,
    }
    .to_xml("gh_plain", now())
}

/// `<xml>` with `head` as CDATA elements, then `rest` verbatim.
fn xml_with(head: &[(&str, &str)], rest: &str) -> String {
    let mut x = String::from("<xml>");
    for (name, value) in head {
        wxoa_wire::reply::cdata(&mut x, name, value);
    }
    x.push_str(rest);
    x.push_str("</xml>");
    x
}

/// One refused request and what the gateway must answer.
struct Refused {
    name: &'static str,
    request: Raw,
    status: u16,
    /// The body holds one of these.
    text: &'static [&'static str],
    /// The [`CALLBACKS`] outcome that moves by one; `None`: the request never reaches the
    /// handler (axum refuses it first) and no outcome moves.
    outcome: Option<&'static str>,
}

/// Sends each case; checks status, text, that nothing was stored, the counters, and that a
/// valid message still lands afterwards. Every failing case is named in one panic.
async fn run_refused(rig: &Rig, cases: Vec<Refused>) {
    let mut failures = Vec::new();
    for case in cases {
        let (stored, counters) = (rig.platform.stream_len().await, rig.counters().await);
        let (status, allow, body) = rig.raw(&case.request).await;
        println!("{}: {status} {body:?}", case.name);
        let mut problems = Vec::new();
        if status != case.status {
            problems.push(format!("status {status}, expected {}", case.status));
        }
        if status == 405 {
            if !allow.contains("POST") {
                problems.push(format!(
                    "405 without an Allow header naming POST: {allow:?}"
                ));
            }
        } else if !case.text.iter().any(|t| body.contains(t)) {
            problems.push(format!("body {body:?} names none of {:?}", case.text));
        }
        let now_stored = rig.platform.stream_len().await;
        if now_stored != stored {
            problems.push(format!("stored {} message(s)", now_stored - stored));
        }
        let after = rig.counters().await;
        let moved: BTreeMap<&str, u64> = after
            .iter()
            .map(|(o, v)| (o.as_str(), v - counters.get(o).copied().unwrap_or(0)))
            .filter(|(_, d)| *d > 0)
            .collect();
        let expected: BTreeMap<&str, u64> = case.outcome.into_iter().map(|o| (o, 1)).collect();
        if moved != expected {
            problems.push(format!("counters moved {moved:?}, expected {expected:?}"));
        }
        if let Err(e) = rig.still_serving(case.name).await {
            problems.push(e);
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn forged_requests_are_refused() {
    let rig = Rig::start().await;
    let xml = text_xml("forged");
    let stale = (now() - 3600).to_string();
    let future = (now() + 3600).to_string();
    let with_query = |q: String| Raw {
        method: Method::POST,
        target: format!("/wechat/{PLAIN_APP}?{q}"),
        body: xml.clone().into_bytes(),
    };
    let encrypt = key().encrypt(SAFE_APP, xml.as_bytes());
    let mut other = encrypt.clone();
    other.insert_str(0, "AAAA");
    // A genuine plaintext callback under its own nonce; below, its URL replayed with other XML.
    let seen_url = {
        let ts = now().to_string();
        let sig = signature::server_signature(TOKEN, &ts, "86420");
        format!("signature={sig}&timestamp={ts}&nonce=86420&openid=o_bad")
    };
    let genuine = with_query(seen_url.clone());
    assert_eq!(rig.raw(&genuine).await.0, 200, "the genuine callback");
    let for_another_account = xml.replace("gh_plain", "gh_not_this_one");
    let mut cases = vec![
        Refused {
            name: "plaintext URL replayed with another body",
            request: Raw {
                method: Method::POST,
                target: format!("/wechat/{PLAIN_APP}?{seen_url}"),
                body: text_xml("forged under a seen URL").into_bytes(),
            },
            status: 403,
            text: &["timestamp and nonce were already used"],
            outcome: Some("replayed_nonce"),
        },
        Refused {
            name: "ToUserName of another account (plaintext)",
            request: Raw {
                method: Method::POST,
                target: format!(
                    "/wechat/{PLAIN_APP}?{}",
                    query(TOKEN, &now().to_string(), None)
                ),
                body: for_another_account.clone().into_bytes(),
            },
            status: 403,
            text: &["ToUserName is not this account"],
            outcome: Some("wrong_account"),
        },
        Refused {
            name: "ToUserName of another account (safe mode)",
            request: safe(&key().encrypt(SAFE_APP, for_another_account.as_bytes())),
            status: 403,
            text: &["ToUserName is not this account"],
            outcome: Some("wrong_account"),
        },
        Refused {
            name: "forged signature (wrong token)",
            request: with_query(query("not-the-token", &now().to_string(), None)),
            status: 403,
            text: &["signature mismatch"],
            outcome: Some("bad_signature"),
        },
        Refused {
            name: "signature of another nonce",
            request: with_query(query(TOKEN, &now().to_string(), None).replace(NONCE, "1")),
            status: 403,
            text: &["signature mismatch"],
            outcome: Some("bad_signature"),
        },
        Refused {
            name: "stale timestamp (an hour old, correctly signed)",
            request: with_query(query(TOKEN, &stale, None)),
            status: 403,
            text: &["timestamp outside the accepted window"],
            outcome: Some("stale_timestamp"),
        },
        Refused {
            name: "timestamp an hour ahead",
            request: with_query(query(TOKEN, &future, None)),
            status: 403,
            text: &["timestamp outside the accepted window"],
            outcome: Some("stale_timestamp"),
        },
        Refused {
            name: "timestamp not a number",
            request: with_query(query(TOKEN, "yesterday", None)),
            status: 400,
            text: &["query parameter timestamp is missing or invalid"],
            outcome: Some("bad_query"),
        },
        Refused {
            name: "no signature",
            request: with_query(format!("timestamp={}&nonce={NONCE}", now())),
            status: 400,
            text: &["query parameter signature is missing or invalid"],
            outcome: Some("bad_query"),
        },
        Refused {
            name: "safe mode: msg_signature over another Encrypt",
            request: safe_signed(&encrypt, &other),
            status: 403,
            text: &["signature mismatch"],
            outcome: Some("bad_signature"),
        },
        Refused {
            name: "safe mode: msg_signature missing",
            request: Raw {
                method: Method::POST,
                target: format!(
                    "/wechat/{SAFE_APP}?{}&encrypt_type=aes",
                    query(TOKEN, &now().to_string(), None)
                ),
                body: safe(&encrypt).body,
            },
            status: 400,
            text: &["query parameter msg_signature is missing or invalid"],
            outcome: Some("bad_query"),
        },
        Refused {
            name: "safe mode: plaintext body (downgrade)",
            request: Raw {
                method: Method::POST,
                target: format!(
                    "/wechat/{SAFE_APP}?{}",
                    query(TOKEN, &now().to_string(), None)
                ),
                body: xml.clone().into_bytes(),
            },
            status: 400,
            text: &["query parameter encrypt_type is missing or invalid"],
            outcome: Some("bad_query"),
        },
        Refused {
            name: "unknown appid in the path",
            request: Raw {
                method: Method::POST,
                target: format!(
                    "/wechat/wxnobody?{}",
                    query(TOKEN, &now().to_string(), None)
                ),
                body: xml.clone().into_bytes(),
            },
            status: 404,
            text: &["unknown app"],
            outcome: Some("unknown_app"),
        },
        Refused {
            name: "appid that is no subject token",
            request: Raw {
                method: Method::POST,
                target: format!(
                    "/wechat/wx.%2A.%3E?{}",
                    query(TOKEN, &now().to_string(), None)
                ),
                body: xml.clone().into_bytes(),
            },
            status: 404,
            text: &["unknown app"],
            outcome: Some("unknown_app"),
        },
        Refused {
            name: "appid that is not UTF-8",
            request: Raw {
                method: Method::POST,
                target: format!(
                    "/wechat/wx%FF%FE?{}",
                    query(TOKEN, &now().to_string(), None)
                ),
                body: xml.clone().into_bytes(),
            },
            status: 400,
            text: &["UTF-8", "utf-8", "Invalid URL"],
            outcome: None,
        },
    ];
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        cases.push(Refused {
            name: match method.as_str() {
                "PUT" => "method PUT",
                "DELETE" => "method DELETE",
                _ => "method PATCH",
            },
            request: Raw {
                method,
                ..plain(xml.clone())
            },
            status: 405,
            text: &[],
            outcome: Some("bad_method"),
        });
    }
    run_refused(&rig, cases).await;
}

#[tokio::test]
async fn hostile_xml_is_refused() {
    let rig = Rig::start().await;
    let head = "<ToUserName>gh_plain</ToUserName><FromUserName>o_bad</FromUserName>\
                <CreateTime>1700000000</CreateTime><MsgType>text</MsgType>";
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]><xml>{head}<Content>&lol4;</Content></xml>"#
    );
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml>{head}<Content>&xxe;</Content></xml>"#
    );
    let dtd = format!(
        r#"<!DOCTYPE xml PUBLIC "-//X//EN" "http://127.0.0.1:9/x.dtd"><xml>{head}<Content>x</Content></xml>"#
    );
    let param = format!(
        r#"<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><xml>{head}</xml>"#
    );
    let undeclared = format!("<xml>{head}<Content>&xxe;</Content></xml>");
    let mut bad_utf8 = format!("<xml>{head}<Content>").into_bytes();
    bad_utf8.extend_from_slice(b"\xff\xfe\xc3\x28</Content></xml>");
    let mut bad_name = b"<xml>".to_vec();
    bad_name.extend_from_slice(head.as_bytes());
    bad_name.extend_from_slice(b"<\xffX>1</\xffX></xml>");
    let doctype: &[&str] = &["XML with a DOCTYPE is not accepted"];
    let malformed: &[&str] = &["malformed XML"];
    let cases = vec![
        Refused {
            name: "billion laughs",
            request: plain(laughs.clone()),
            status: 400,
            text: doctype,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "external entity (XXE)",
            request: plain(xxe.clone()),
            status: 400,
            text: doctype,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "external DTD",
            request: plain(dtd),
            status: 400,
            text: doctype,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "external parameter entity",
            request: plain(param),
            status: 400,
            text: doctype,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "undeclared entity without a DTD",
            request: plain(undeclared),
            status: 400,
            text: &["undeclared entity &xxe;"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "processing instruction",
            request: plain(format!("<?xml-stylesheet href=\"x\"?><xml>{head}</xml>")),
            status: 400,
            text: &["processing instructions are not accepted"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "nested deeper than the limit",
            request: plain(format!(
                "<xml>{head}{}{}</xml>",
                "<a>".repeat(64),
                "</a>".repeat(64)
            )),
            status: 400,
            text: &["nests deeper"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "invalid UTF-8 in text",
            request: plain(bad_utf8.clone()),
            status: 400,
            text: malformed,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "invalid UTF-8 in an element name",
            request: plain(bad_name),
            status: 400,
            text: malformed,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "not XML at all",
            request: plain("{\"ToUserName\":\"gh_plain\"}"),
            status: 400,
            text: malformed,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "empty body",
            request: plain(""),
            status: 400,
            text: malformed,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "root element is not <xml>",
            request: plain(format!("<message>{head}</message>")),
            status: 400,
            text: &["root element must be <xml>"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "safe mode: billion laughs inside the ciphertext",
            request: safe(&key().encrypt(SAFE_APP, laughs.as_bytes())),
            status: 400,
            text: doctype,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "safe mode: XXE in the outer body",
            request: Raw {
                body: xxe.clone().into_bytes(),
                ..safe("QUJD")
            },
            status: 400,
            text: doctype,
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "safe mode: invalid UTF-8 inside the ciphertext",
            request: safe(&key().encrypt(SAFE_APP, &bad_utf8)),
            status: 400,
            text: malformed,
            outcome: Some("bad_xml"),
        },
    ];
    run_refused(&rig, cases).await;
}

#[tokio::test]
async fn broken_ciphertext_is_refused() {
    let rig = Rig::start().await;
    let xml = text_xml("ciphertext");
    let good = ciphertext(xml.as_bytes());
    let encode = |bytes: &[u8]| STANDARD.encode(bytes);
    let b64 = encode(&good);
    // The pad block: with 16 + 4 + len + appid a multiple of 32, the last 32 bytes are all
    // padding (0x20). Flipping byte 15 of the second-to-last AES block flips the last plaintext
    // byte through CBC: the pad byte becomes 0, which is no valid pad length.
    let aligned = {
        let fill = 32 - (20 + xml.len() + SAFE_APP.len()) % 32;
        let xml = text_xml(&format!("ciphertext{}", "x".repeat(fill % 32)));
        let mut bytes = ciphertext(xml.as_bytes());
        let n = bytes.len();
        bytes[n - 17] ^= 0x20;
        encode(&bytes)
    };
    let foreign = key().encrypt("wxsomeoneelse000", xml.as_bytes());
    let other_key = AesKey::from_encoding_aes_key("0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")
        .expect("a key")
        .encrypt(SAFE_APP, xml.as_bytes());
    let cases = vec![
        Refused {
            name: "truncated ciphertext: a whole AES block cut off",
            request: safe(&encode(&good[..good.len() - 16])),
            status: 400,
            text: &["IllegalBuffer(-40008)", "ValidateAppidError(-40005)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "truncated ciphertext: not a whole number of blocks",
            request: safe(&encode(&good[..good.len() - 5])),
            status: 400,
            text: &["DecryptAESError(-40007)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "truncated base64",
            request: safe(&b64[..b64.len() - 3]),
            status: 400,
            text: &["DecodeBase64Error(-40010)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "Encrypt is not base64",
            request: safe("this is *not* base64!"),
            status: 400,
            text: &["DecodeBase64Error(-40010)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "bad padding (pad byte 0)",
            request: safe(&aligned),
            status: 400,
            text: &["IllegalBuffer(-40008)", "ValidateAppidError(-40005)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "wrong appid inside the ciphertext",
            request: safe(&foreign),
            status: 400,
            text: &["ValidateAppidError(-40005)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "encrypted with another key",
            request: safe(&other_key),
            status: 400,
            text: &["IllegalBuffer(-40008)", "ValidateAppidError(-40005)"],
            outcome: Some("bad_ciphertext"),
        },
        Refused {
            name: "Encrypt element missing",
            request: Raw {
                body: b"<xml><ToUserName>gh_safe</ToUserName></xml>".to_vec(),
                ..safe("")
            },
            status: 400,
            text: &["required element Encrypt is missing"],
            outcome: Some("bad_xml"),
        },
    ];
    run_refused(&rig, cases).await;
}

#[tokio::test]
async fn oversized_and_incomplete_messages_are_refused() {
    let rig = Rig::start().await;
    let limit = rig.platform.config.gateway.body_limit_bytes;
    let mut big = text_xml("").into_bytes();
    big.splice(
        big.len() - 6..big.len() - 6,
        std::iter::repeat_n(b'x', 10 * 1024 * 1024),
    );
    let fields = [
        ("ToUserName", "gh_plain"),
        ("FromUserName", "o_bad"),
        ("CreateTime", "1700000000"),
        ("MsgType", "text"),
    ];
    let without = |name: &str| {
        let head: Vec<(&str, &str)> = fields.iter().copied().filter(|(n, _)| *n != name).collect();
        plain(xml_with(&head, "<Content>x</Content>"))
    };
    let cases = vec![
        Refused {
            name: "10 MB body",
            request: plain(big),
            status: 413,
            text: &["length limit exceeded"],
            outcome: Some("too_large"),
        },
        Refused {
            name: "one byte over the body limit",
            request: plain(vec![b' '; limit + 1]),
            status: 413,
            text: &["length limit exceeded"],
            outcome: Some("too_large"),
        },
        Refused {
            name: "missing ToUserName",
            request: without("ToUserName"),
            status: 400,
            text: &["required element ToUserName is missing"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "missing FromUserName",
            request: without("FromUserName"),
            status: 400,
            text: &["required element FromUserName is missing"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "missing CreateTime",
            request: without("CreateTime"),
            status: 400,
            text: &["required element CreateTime is missing"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "missing MsgType",
            request: without("MsgType"),
            status: 400,
            text: &["required element MsgType is missing"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "event without Event",
            request: plain(xml_with(
                &[
                    ("ToUserName", "gh_plain"),
                    ("FromUserName", "o_bad"),
                    ("CreateTime", "1700000000"),
                    ("MsgType", "event"),
                ],
                "",
            )),
            status: 400,
            text: &["required element Event is missing"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "empty FromUserName",
            request: plain(xml_with(
                &[
                    ("ToUserName", "gh_plain"),
                    ("FromUserName", "  "),
                    ("CreateTime", "1700000000"),
                    ("MsgType", "text"),
                ],
                "",
            )),
            status: 400,
            text: &["required element FromUserName is missing"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "CreateTime not a number",
            request: plain(xml_with(
                &[
                    ("ToUserName", "gh_plain"),
                    ("FromUserName", "o_bad"),
                    ("CreateTime", "soon"),
                    ("MsgType", "text"),
                ],
                "",
            )),
            status: 400,
            text: &["element CreateTime is invalid"],
            outcome: Some("bad_xml"),
        },
        Refused {
            name: "line break in FromUserName (header injection)",
            request: plain(xml_with(
                &[
                    ("ToUserName", "gh_plain"),
                    ("FromUserName", "o\r\nNats-Msg-Id: x"),
                    ("CreateTime", "1700000000"),
                    ("MsgType", "text"),
                ],
                "",
            )),
            status: 400,
            text: &["element FromUserName is invalid"],
            outcome: Some("bad_xml"),
        },
    ];
    run_refused(&rig, cases).await;
}

/// What the stored envelope of an accepted odd message must hold.
struct Accepted {
    name: &'static str,
    request: CallbackRequest,
    subject: String,
    /// `(JSON pointer, value)` pairs of the stored envelope.
    expect: Vec<(&'static str, Value)>,
}

fn by_xml(appid: &str, mode: Mode, xml: String) -> CallbackRequest {
    CallbackRequest {
        appid: appid.into(),
        mode: Some(mode),
        xml: Some(xml),
        message: None,
        timestamp: None,
        tries: None,
        timeout_ms: None,
    }
}

#[tokio::test]
async fn unknown_types_and_huge_values_are_accepted_and_carried() {
    let rig = Rig::start().await;
    let prefix = rig.platform.prefix().to_owned();
    let hologram = |to: &str, msg_id: u32| {
        xml_with(
            &[
                ("ToUserName", to),
                ("FromUserName", "o_new"),
                ("CreateTime", "1700000000"),
                ("MsgType", "hologram"),
                ("Beam", "a&b <c>"),
            ],
            &format!("<Frames><f>1</f><f>2</f></Frames><MsgId>{msg_id}</MsgId>"),
        )
    };
    let unknown_event = |mode| CallbackRequest {
        appid: if mode == Mode::Plain {
            PLAIN_APP
        } else {
            SAFE_APP
        }
        .into(),
        mode: Some(mode),
        xml: None,
        message: Some(MessageSpec::Event {
            from: "o_new".into(),
            event: "Teleport_Finished".into(),
            event_key: Some("k1".into()),
        }),
        timestamp: None,
        tries: None,
        timeout_ms: None,
    };
    let huge = "字".repeat(20_000); // 60 000 bytes of UTF-8, under the 64 KiB body limit
    let long_type = "x".repeat(5_000);
    let long_from = "o".repeat(20_000);
    let huge_text = xml_with(
        &[
            ("ToUserName", "gh_plain"),
            ("FromUserName", "o_huge"),
            ("CreateTime", "1700000001"),
            ("MsgType", "text"),
            ("Content", &huge),
        ],
        "<MsgId>42</MsgId>",
    );
    let cases = vec![
        Accepted {
            name: "unknown MsgType, plaintext",
            request: by_xml(PLAIN_APP, Mode::Plain, hologram("gh_plain", 501)),
            subject: subjects::message(&prefix, PLAIN_APP, "hologram"),
            expect: vec![
                ("/msg_type", "hologram".into()),
                ("/detail/kind", "unknown".into()),
                ("/fields/Beam", "a&b <c>".into()),
                ("/fields/Frames~1f[1]", "2".into()),
            ],
        },
        Accepted {
            name: "unknown MsgType, safe mode",
            request: by_xml(SAFE_APP, Mode::Safe, hologram("gh_safe", 502)),
            subject: subjects::message(&prefix, SAFE_APP, "hologram"),
            expect: vec![
                ("/msg_type", "hologram".into()),
                ("/detail/kind", "unknown".into()),
                ("/app_id", SAFE_APP.into()),
            ],
        },
        Accepted {
            name: "unknown Event, plaintext",
            request: unknown_event(Mode::Plain),
            subject: subjects::event(&prefix, PLAIN_APP, "Teleport_Finished"),
            expect: vec![
                ("/msg_type", "event".into()),
                ("/event", "Teleport_Finished".into()),
                ("/detail/kind", "unknown".into()),
                ("/fields/EventKey", "k1".into()),
            ],
        },
        Accepted {
            name: "unknown Event, compatible mode",
            request: unknown_event(Mode::Compat),
            subject: subjects::event(&prefix, SAFE_APP, "Teleport_Finished"),
            expect: vec![
                ("/event", "Teleport_Finished".into()),
                ("/detail/kind", "unknown".into()),
            ],
        },
        Accepted {
            name: "60 kB Content",
            request: by_xml(PLAIN_APP, Mode::Plain, huge_text),
            subject: subjects::message(&prefix, PLAIN_APP, "text"),
            expect: vec![("/detail/content", huge.clone().into())],
        },
        Accepted {
            name: "5 000-char MsgType",
            request: by_xml(
                PLAIN_APP,
                Mode::Plain,
                xml_with(
                    &[
                        ("ToUserName", "gh_plain"),
                        ("FromUserName", "o_long"),
                        ("CreateTime", "1700000002"),
                        ("MsgType", &long_type),
                    ],
                    "",
                ),
            ),
            // The token is cut to a length NATS takes (see the test below); the envelope has
            // the value whole.
            subject: subjects::message(&prefix, PLAIN_APP, &long_type),
            expect: vec![
                ("/detail/kind", "unknown".into()),
                ("/msg_type", long_type.clone().into()),
            ],
        },
        Accepted {
            name: "20 000-char FromUserName",
            request: by_xml(
                PLAIN_APP,
                Mode::Plain,
                xml_with(
                    &[
                        ("ToUserName", "gh_plain"),
                        ("FromUserName", &long_from),
                        ("CreateTime", "1700000003"),
                        ("MsgType", "text"),
                        ("Content", "x"),
                    ],
                    "<MsgId>43</MsgId>",
                ),
            ),
            subject: subjects::message(&prefix, PLAIN_APP, "text"),
            expect: vec![("/from_user_name", long_from.clone().into())],
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let before = rig.platform.stream_len().await;
        let outcome = rig.wechat(case.request).await;
        let attempt = outcome.attempts.first();
        let (status, body) = (
            attempt.and_then(|a| a.status),
            attempt.map(|a| a.body.as_str()).unwrap_or_default(),
        );
        if (status, body) != (Some(200), "success") {
            failures.push(format!("{}: answered {status:?} {body:?}", case.name));
            continue;
        }
        if rig.platform.stream_len().await != before + 1 {
            failures.push(format!("{}: not stored once", case.name));
            continue;
        }
        let (subject, envelope) = rig.last_stored().await;
        if subject != case.subject {
            failures.push(format!("{}: stored on {subject:?}", case.name));
        }
        for (pointer, value) in &case.expect {
            if envelope.pointer(pointer) != Some(value) {
                let got = envelope.pointer(pointer).map(|v| {
                    let s = v.to_string();
                    s.chars().take(80).collect::<String>()
                });
                failures.push(format!("{}: {pointer} is {got:?}", case.name));
            }
        }
    }
    if let Err(e) = rig.still_serving("the accepted cases").await {
        failures.push(e);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Regression: a callback whose MsgType made the subject longer than NATS's control line got the
/// gateway's connection closed by the server, failing it (503) and the callbacks in flight
/// beside it. The subject is now cut; every callback here is stored.
#[tokio::test]
async fn a_huge_msg_type_does_not_cut_the_gateway_off_nats() {
    let rig = std::sync::Arc::new(Rig::start().await);
    let long_type = "x".repeat(5_000);
    let xml = xml_with(
        &[
            ("ToUserName", "gh_plain"),
            ("FromUserName", "o_long"),
            ("CreateTime", "1700000002"),
            ("MsgType", &long_type),
        ],
        "",
    );
    let beside: Vec<_> = (0..20u64)
        .map(|i| {
            let rig = rig.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(i * 5)).await;
                let outcome = rig
                    .wechat(CallbackRequest {
                        appid: PLAIN_APP.into(),
                        mode: Some(Mode::Plain),
                        xml: None,
                        message: Some(MessageSpec::Text {
                            from: "o_beside".into(),
                            content: format!("beside {i}"),
                            msg_id: Some(7000 + i),
                        }),
                        timestamp: None,
                        tries: None,
                        timeout_ms: None,
                    })
                    .await;
                outcome.attempts.first().and_then(|a| a.status)
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let (status, _, body) = rig.raw(&plain(xml)).await;
    let mut statuses = BTreeMap::new();
    for task in beside {
        *statuses.entry(task.await.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(
        (status, body.as_str()),
        (200, "success"),
        "the long MsgType"
    );
    assert_eq!(
        statuses,
        BTreeMap::from([(Some(200), 20)]),
        "callbacks beside it"
    );
    assert_eq!(rig.platform.stream_len().await, 21);
}
