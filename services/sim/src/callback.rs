//! The platform side: what WeChat does when a user writes to an Official Account. Usable without
//! the server (the CLI's `wxoa sim send` calls [`send`] directly).
//!
//! [`send`] builds the message XML (or takes it verbatim), signs it (`signature` always;
//! `encrypt_type=aes` and `msg_signature` over `Encrypt` in compatible and safe mode), POSTs it
//! to `{gateway_url}/wechat/{appid}` with WeChat's timeout and tries (a retry resends the same
//! body: same MsgId, same signature) and judges the reply as WeChat does: `success` or an empty
//! body is no reply; anything else must be a reply XML (the signed, encrypted envelope in safe
//! mode) addressed to the sender from the account, with a MsgType WeChat can show.

use std::time::{Duration, Instant};

use rand::Rng;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wxoa_runtime::config::{AppConfig, SimConfig};
use wxoa_wire::inbound::Document;
use wxoa_wire::reply::cdata;
use wxoa_wire::signature;

/// The reply MsgTypes WeChat shows.
pub const REPLY_MSG_TYPES: &[&str] = &[
    "text",
    "image",
    "voice",
    "video",
    "music",
    "news",
    "transfer_customer_service",
];

/// The most reply body kept in an [`Attempt`] (the check always sees the whole body).
const MAX_KEPT_BODY: usize = 16 * 1024;

/// How the account's callback is configured in the MP console (消息加解密方式).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// 明文模式: the body is the message XML.
    Plain,
    /// 兼容模式: the message XML plus an `<Encrypt>` element; replies may be either.
    Compat,
    /// 安全模式: the body holds only `ToUserName` and `Encrypt`; replies must be encrypted.
    Safe,
}

/// One callback to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// The app (for [`send`], the [`AppConfig`] passed in is what counts).
    pub appid: String,
    /// Default: `safe` when the app has an EncodingAESKey, else `plain`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The full inner message XML, sent as is (takes precedence over `message`).
    #[serde(default)]
    pub xml: Option<String>,
    /// A message to build.
    #[serde(default)]
    pub message: Option<MessageSpec>,
    /// The query `timestamp` and the built message's CreateTime (default: now).
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// Tries in total (default: `sim.callback_tries`, WeChat's 3).
    #[serde(default)]
    pub tries: Option<u32>,
    /// Per-try timeout (default: `sim.callback_timeout_ms`, WeChat's 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// A message to build, tagged by `type`. `from` is the sender's OpenID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum MessageSpec {
    /// A text message.
    Text {
        /// The sender's OpenID.
        from: String,
        /// The text.
        content: String,
        /// MsgId (default: random).
        #[serde(default)]
        msg_id: Option<u64>,
    },
    /// An image message.
    Image {
        /// The sender's OpenID.
        from: String,
        /// PicUrl (default: a made-up URL).
        #[serde(default)]
        pic_url: Option<String>,
        /// MediaId (default: random).
        #[serde(default)]
        media_id: Option<String>,
        /// MsgId (default: random).
        #[serde(default)]
        msg_id: Option<u64>,
    },
    /// Any event (`subscribe`, `CLICK`, `SCAN`, ...).
    Event {
        /// The sender's OpenID.
        from: String,
        /// The Event value, as WeChat writes it.
        event: String,
        /// EventKey, when the event has one.
        #[serde(default)]
        event_key: Option<String>,
    },
}

impl MessageSpec {
    /// The sender's OpenID.
    pub fn from(&self) -> &str {
        match self {
            MessageSpec::Text { from, .. }
            | MessageSpec::Image { from, .. }
            | MessageSpec::Event { from, .. } => from,
        }
    }

    /// The message XML as WeChat sends it to the account `original_id`.
    pub fn to_xml(&self, original_id: &str, create_time: i64) -> String {
        let mut x = String::with_capacity(320);
        x.push_str("<xml>");
        cdata(&mut x, "ToUserName", original_id);
        cdata(&mut x, "FromUserName", self.from());
        x.push_str(&format!("<CreateTime>{create_time}</CreateTime>"));
        match self {
            MessageSpec::Text {
                content, msg_id, ..
            } => {
                cdata(&mut x, "MsgType", "text");
                cdata(&mut x, "Content", content);
                x.push_str(&format!(
                    "<MsgId>{}</MsgId>",
                    msg_id.unwrap_or_else(random_msg_id)
                ));
            }
            MessageSpec::Image {
                pic_url,
                media_id,
                msg_id,
                ..
            } => {
                cdata(&mut x, "MsgType", "image");
                let pic = pic_url.clone().unwrap_or_else(|| {
                    format!("http://mmbiz.qpic.cn/mmbiz_jpg/sim{}/0", random_digits(12))
                });
                cdata(&mut x, "PicUrl", &pic);
                x.push_str(&format!(
                    "<MsgId>{}</MsgId>",
                    msg_id.unwrap_or_else(random_msg_id)
                ));
                let media = media_id
                    .clone()
                    .unwrap_or_else(|| format!("sim_media_{}", random_digits(16)));
                cdata(&mut x, "MediaId", &media);
            }
            MessageSpec::Event {
                event, event_key, ..
            } => {
                cdata(&mut x, "MsgType", "event");
                cdata(&mut x, "Event", event);
                if let Some(key) = event_key {
                    cdata(&mut x, "EventKey", key);
                }
            }
        }
        x.push_str("</xml>");
        x
    }
}

/// One HTTP try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// The response body (cut after 16 KiB).
    pub body: String,
    /// From sending to the end of the body (or the error).
    pub elapsed_ms: u64,
    /// Timeout or connection error, when no response came.
    pub error: Option<String>,
}

/// What WeChat made of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A valid passive reply: the user sees it.
    Reply,
    /// `success`: no reply.
    Success,
    /// An empty body: no reply.
    Empty,
    /// No 2xx answer in any try (or the request could not be built).
    Failed,
    /// An answer WeChat rejects: the user sees "该公众号暂时无法提供服务".
    Invalid,
}

/// The result of [`send`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackOutcome {
    /// Every try, in order.
    pub attempts: Vec<Attempt>,
    /// The verdict.
    pub outcome: Outcome,
    /// The reply XML (decrypted and verified in safe mode) as flattened fields
    /// (`{"ToUserName":…,"Content":…,"Articles/item/Title":…}`), whenever it parsed.
    pub reply: Option<Value>,
    /// What is wrong, for `failed` and `invalid`.
    pub problem: Option<String>,
}

impl CallbackOutcome {
    fn failed(attempts: Vec<Attempt>, problem: String) -> CallbackOutcome {
        CallbackOutcome {
            attempts,
            outcome: Outcome::Failed,
            reply: None,
            problem: Some(problem),
        }
    }
}

/// The full callback URL of an app: `{gateway_url}/wechat/{appid}` (without the query).
pub fn callback_url(gateway_url: &str, appid: &str) -> String {
    format!(
        "{}{}",
        gateway_url.trim_end_matches('/'),
        crate::paths::callback(appid)
    )
}

/// A built and signed callback, sent identically on every try.
struct Prepared {
    mode: Mode,
    openid: String,
    query: Vec<(&'static str, String)>,
    body: String,
}

fn prepare(app: &AppConfig, req: &CallbackRequest) -> Result<Prepared, String> {
    let mode = req.mode.unwrap_or(if app.aes_key.is_some() {
        Mode::Safe
    } else {
        Mode::Plain
    });
    let timestamp = req
        .timestamp
        .unwrap_or_else(|| wxoa_runtime::now_ms() / 1000);
    let (xml, openid) = match (&req.xml, &req.message) {
        (Some(xml), _) => {
            let doc = Document::parse(xml.as_bytes()).map_err(|e| format!("xml: {e}"))?;
            let from = doc
                .root()
                .get("FromUserName")
                .ok_or("xml: FromUserName is missing")?;
            let from = from.to_owned();
            (xml.clone(), from)
        }
        (None, Some(message)) => (
            message.to_xml(&app.original_id, timestamp),
            message.from().to_owned(),
        ),
        (None, None) => return Err("the request needs `xml` or `message`".into()),
    };
    let token = app.token.expose_secret();
    let ts = timestamp.to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u32..=u32::MAX)
        .to_string();
    let mut query = vec![
        ("signature", signature::server_signature(token, &ts, &nonce)),
        ("timestamp", ts.clone()),
        ("nonce", nonce.clone()),
        ("openid", openid.clone()),
    ];
    let body = match mode {
        Mode::Plain => xml,
        Mode::Compat | Mode::Safe => {
            let key = app.aes_key.as_ref().ok_or_else(|| {
                format!("{mode:?} mode needs the app's encoding_aes_key").to_lowercase()
            })?;
            let encrypt = key.encrypt(&app.appid, xml.as_bytes());
            query.push(("encrypt_type", "aes".into()));
            query.push((
                "msg_signature",
                signature::msg_signature(token, &ts, &nonce, &encrypt),
            ));
            let mut element = String::with_capacity(encrypt.len() + 32);
            cdata(&mut element, "Encrypt", &encrypt);
            if mode == Mode::Compat {
                let end = xml.rfind("</xml>").ok_or("xml: no closing </xml>")?;
                format!("{}{element}{}", &xml[..end], &xml[end..])
            } else {
                let mut body = String::with_capacity(element.len() + 80);
                body.push_str("<xml>");
                cdata(&mut body, "ToUserName", &app.original_id);
                body.push_str(&element);
                body.push_str("</xml>");
                body
            }
        }
    };
    Ok(Prepared {
        mode,
        openid,
        query,
        body,
    })
}

/// Posts an event the platform raises itself (a job's `…JOBFINISH`) to the gateway, as
/// [`send`] does with WeChat's timeout and tries, records it in the stats and logs a failure.
/// `what` names it in the log.
pub(crate) async fn post_event(
    sim: &crate::state::Shared,
    app: &AppConfig,
    xml: String,
    now_secs: i64,
    what: &str,
) -> Outcome {
    let request = CallbackRequest {
        appid: app.appid.clone(),
        mode: None,
        xml: Some(xml),
        message: None,
        timestamp: Some(now_secs),
        tries: None,
        timeout_ms: None,
    };
    let outcome = send(
        &sim.http,
        &sim.config.gateway_url,
        app,
        &request,
        &sim.config,
    )
    .await;
    if matches!(outcome.outcome, Outcome::Failed | Outcome::Invalid) {
        tracing::warn!(
            appid = %app.appid,
            event = what,
            problem = outcome.problem.as_deref().unwrap_or_default(),
            "event callback failed"
        );
    }
    sim.lock().record_callback(&app.appid, &outcome);
    outcome.outcome
}

/// Sends one callback as WeChat does and judges the reply. `req.tries`/`req.timeout_ms`
/// override `sim.callback_tries`/`sim.callback_timeout_ms`. Never fails: a request that cannot
/// be built is outcome `failed` with no attempts.
pub async fn send(
    http: &reqwest::Client,
    gateway_url: &str,
    app: &AppConfig,
    req: &CallbackRequest,
    sim: &SimConfig,
) -> CallbackOutcome {
    let prepared = match prepare(app, req) {
        Ok(p) => p,
        Err(problem) => return CallbackOutcome::failed(Vec::new(), problem),
    };
    let tries = req.tries.unwrap_or(sim.callback_tries).max(1);
    let timeout_ms = req.timeout_ms.unwrap_or(sim.callback_timeout_ms).max(1);
    let url = callback_url(gateway_url, &app.appid);
    let mut attempts = Vec::with_capacity(tries as usize);
    for _ in 0..tries {
        let started = Instant::now();
        let result = http
            .post(&url)
            .query(&prepared.query)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .header(reqwest::header::USER_AGENT, "Mozilla/4.0")
            .timeout(Duration::from_millis(timeout_ms))
            .body(prepared.body.clone())
            .send()
            .await;
        let (status, body, error) = match result {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(bytes) => (Some(status), Some(bytes), None),
                    Err(e) => (Some(status), None, Some(describe(&e, timeout_ms))),
                }
            }
            Err(e) => (None, None, Some(describe(&e, timeout_ms))),
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let text = body
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        attempts.push(Attempt {
            status: status.map(|s| s.as_u16()),
            body: keep(&text),
            elapsed_ms,
            error: error.clone(),
        });
        if let (Some(status), Some(bytes)) = (status, &body)
            && status.is_success()
        {
            return judge(app, &prepared, bytes, attempts);
        }
    }
    let last = attempts
        .last()
        .map_or_else(String::new, |a| match (&a.error, a.status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => format!("HTTP {status}"),
            (None, None) => String::new(),
        });
    CallbackOutcome::failed(
        attempts,
        format!("no valid answer in {tries} tries (last: {last})"),
    )
}

/// Judges a 2xx answer.
fn judge(
    app: &AppConfig,
    prepared: &Prepared,
    body: &[u8],
    attempts: Vec<Attempt>,
) -> CallbackOutcome {
    let done = |outcome, reply, problem| CallbackOutcome {
        attempts,
        outcome,
        reply,
        problem,
    };
    match check_reply(app, prepared.mode, &prepared.openid, body) {
        Ok(Verdict::Success) => done(Outcome::Success, None, None),
        Ok(Verdict::Empty) => done(Outcome::Empty, None, None),
        Ok(Verdict::Reply(fields)) => done(Outcome::Reply, Some(fields), None),
        Err((fields, problem)) => done(Outcome::Invalid, fields, Some(problem)),
    }
}

enum Verdict {
    Success,
    Empty,
    Reply(Value),
}

/// WeChat's check of a passive reply; an error carries the parsed fields (when the XML parsed)
/// and the problem.
fn check_reply(
    app: &AppConfig,
    mode: Mode,
    openid: &str,
    body: &[u8],
) -> Result<Verdict, (Option<Value>, String)> {
    if body.is_empty() {
        return Ok(Verdict::Empty);
    }
    if body == b"success" {
        return Ok(Verdict::Success);
    }
    let text = std::str::from_utf8(body).map_err(|_| (None, "reply is not UTF-8".to_owned()))?;
    let outer = Document::parse(text.as_bytes()).map_err(|e| {
        (
            None,
            format!("reply is neither `success`, empty nor XML: {e}"),
        )
    })?;
    let encrypted = outer.root().child("Encrypt").is_some();
    let inner = match (mode, encrypted) {
        (Mode::Safe, false) => {
            return Err((
                Some(fields(&outer)),
                "safe mode needs an encrypted reply envelope".into(),
            ));
        }
        (Mode::Plain, true) => {
            return Err((
                Some(fields(&outer)),
                "encrypted reply in plaintext mode".into(),
            ));
        }
        (Mode::Plain | Mode::Compat, false) => outer,
        (Mode::Safe | Mode::Compat, true) => open_envelope(app, &outer).map_err(|p| (None, p))?,
    };
    let flat = fields(&inner);
    let root = inner.root();
    let problem = if root.get("ToUserName") != Some(openid) {
        Some(format!(
            "ToUserName {:?} is not the sender {openid:?}",
            root.get("ToUserName")
        ))
    } else if root.get("FromUserName") != Some(app.original_id.as_str()) {
        Some(format!(
            "FromUserName {:?} is not the account {:?}",
            root.get("FromUserName"),
            app.original_id
        ))
    } else if root.num::<i64>("CreateTime").is_none() {
        Some(format!(
            "CreateTime {:?} is not an integer",
            root.get("CreateTime")
        ))
    } else if !root
        .get("MsgType")
        .is_some_and(|t| REPLY_MSG_TYPES.contains(&t))
    {
        Some(format!(
            "MsgType {:?} is not a reply type",
            root.get("MsgType")
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err((Some(flat), problem)),
        None => Ok(Verdict::Reply(flat)),
    }
}

/// Verifies and decrypts the encrypted reply envelope; answers the inner document.
fn open_envelope(app: &AppConfig, outer: &Document) -> Result<Document, String> {
    let root = outer.root();
    let mut missing = ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
        .into_iter()
        .filter(|name| root.get(name).is_none());
    if let Some(name) = missing.next() {
        return Err(format!("reply envelope lacks {name}"));
    }
    let get = |name: &str| root.get(name).unwrap_or_default();
    let key = app
        .aes_key
        .as_ref()
        .ok_or("encrypted reply but the app has no encoding_aes_key")?;
    let token = app.token.expose_secret();
    if !signature::verify_msg_signature(
        token,
        get("TimeStamp"),
        get("Nonce"),
        get("Encrypt"),
        get("MsgSignature"),
    ) {
        return Err("reply MsgSignature does not verify with the app token".into());
    }
    let decrypted = key
        .decrypt(&app.appid, get("Encrypt"))
        .map_err(|e| format!("reply Encrypt does not decrypt for {}: {e}", app.appid))?;
    Document::parse(&decrypted.message).map_err(|e| format!("decrypted reply is not XML: {e}"))
}

fn fields(doc: &Document) -> Value {
    Value::Object(
        doc.flatten()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// A reqwest error with its causes; timeouts named as such.
fn describe(error: &reqwest::Error, timeout_ms: u64) -> String {
    if error.is_timeout() {
        return format!("timeout after {timeout_ms} ms");
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn keep(text: &str) -> String {
    if text.len() <= MAX_KEPT_BODY {
        return text.to_owned();
    }
    let mut end = MAX_KEPT_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A 17-digit MsgId, like WeChat's.
fn random_msg_id() -> u64 {
    rand::rng().random_range(10_000_000_000_000_000..100_000_000_000_000_000)
}

fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}
