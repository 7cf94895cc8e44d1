//! The replier's request API (core NATS request/reply, JSON, queue group `wxoa-replier`):
//!
//! | subject | request | answer |
//! |---|---|---|
//! | `<prefix>.<appid>.api.rules.list` | `{}` | [`ListResponse`] |
//! | `<prefix>.<appid>.api.rules.get` | [`IdRequest`] | [`ListedRule`] |
//! | `<prefix>.<appid>.api.rules.put` | [`PutRequest`] | [`PutResponse`] |
//! | `<prefix>.<appid>.api.rules.delete` | [`IdRequest`] | [`DeleteResponse`] |
//! | `<prefix>.<appid>.api.rules.test` | [`TestMessage`] | [`TestResponse`] |
//! | `<prefix>.<appid>.api.send.status` | [`IdRequest`] | [`wxoa_wire::command::SendResult`] |
//!
//! Errors answer `{"error":{"code":"invalid|not_found|unavailable|internal","message":"..."}}`.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wxoa_rules::Rule;
use wxoa_runtime::now_ms;
use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Inbound;
use wxoa_wire::names::{apis, subjects};
use wxoa_wire::reply::PassiveReply;

use crate::store::Source;
use crate::{ReplierError, Shared};

/// `rules.get`, `rules.delete`, `send.status`: `{"id": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdRequest {
    /// The rule or command id.
    pub id: String,
}

/// One rule with its source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListedRule {
    /// `file` or `runtime`.
    pub source: Source,
    /// The rule.
    pub rule: Rule,
}

/// `rules.list`: every rule of the app in evaluation order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    /// The run-time rules version the list was built from.
    pub version: i64,
    /// The rules.
    pub rules: Vec<ListedRule>,
}

/// `rules.put`: `{"rule": {...}}`, created or replaced by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutRequest {
    /// The rule.
    pub rule: Rule,
}

/// The answer to `rules.put`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutResponse {
    /// True when no run-time rule had this id before.
    pub created: bool,
    /// The new version.
    pub version: i64,
}

/// The answer to `rules.delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The new version.
    pub version: i64,
}

/// `rules.test`: a message to try the rules on — `xml` (the full inner XML), or `text`,
/// `event` (+ `event_key`), or `msg_type` (+ `recognition` for voice).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestMessage {
    /// The sender (default `o_test_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// A text message with this content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An event of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The event's EventKey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_key: Option<String>,
    /// A message of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_type: Option<String>,
    /// Speech recognition of a voice message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recognition: Option<String>,
    /// The message XML as WeChat sends it (decrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<String>,
}

/// The answer to `rules.test`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResponse {
    /// The rule that matched.
    pub rule: Option<String>,
    /// The rendered reply (`null`: no rule, or the rule says no reply).
    pub reply: Option<PassiveReply>,
}

impl TestMessage {
    /// The message as WeChat would send it to the account `to`.
    pub fn to_xml(&self, to: &str) -> Result<String, ReplierError> {
        if let Some(xml) = &self.xml {
            return Ok(xml.clone());
        }
        let openid = self.openid.as_deref().unwrap_or("o_test_user");
        let mut x = String::from("<xml>");
        let mut cdata = |name: &str, value: &str| wxoa_wire::reply::cdata(&mut x, name, value);
        cdata("ToUserName", to);
        cdata("FromUserName", openid);
        let now = now_ms() / 1000;
        if let Some(text) = &self.text {
            cdata("MsgType", "text");
            cdata("Content", text);
        } else if let Some(event) = &self.event {
            cdata("MsgType", "event");
            cdata("Event", event);
            if let Some(key) = &self.event_key {
                cdata("EventKey", key);
            }
        } else if let Some(msg_type) = &self.msg_type {
            cdata("MsgType", msg_type);
            if let Some(recognition) = &self.recognition {
                cdata("Recognition", recognition);
            }
        } else {
            return Err(ReplierError::Invalid(
                "a test message needs xml, text, event or msg_type".into(),
            ));
        }
        if self.event.is_none() {
            cdata("MsgId", &now.to_string());
        }
        Ok(format!("{x}<CreateTime>{now}</CreateTime></xml>"))
    }
}

/// Answers one request; the answer is JSON, errors included.
pub(crate) async fn answer(shared: Arc<Shared>, message: async_nats::Message) -> Option<Bytes> {
    let result = route(&shared, &message).await;
    if let Err(e) = &result {
        tracing::debug!(subject = %message.subject, error = %e, "request refused");
    }
    wxoa_runtime::responder::answer_json(result.map_err(|e| e.to_api()))
}

fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, ReplierError> {
    wxoa_runtime::responder::parse_json(payload).map_err(ReplierError::Invalid)
}

fn json<T: Serialize>(value: T) -> Result<serde_json::Value, ReplierError> {
    serde_json::to_value(value).map_err(|e| ReplierError::Invalid(e.to_string()))
}

async fn route(
    shared: &Shared,
    message: &async_nats::Message,
) -> Result<serde_json::Value, ReplierError> {
    let app_id = subjects::app_id_of(&shared.prefix, &message.subject)
        .filter(|a| shared.store.serves(a))
        .ok_or_else(|| ReplierError::NotFound(format!("no app served at {}", message.subject)))?;
    let verb = subjects::api_verb(&message.subject);
    let area = message
        .subject
        .rsplit('.')
        .nth(1)
        .ok_or_else(|| ReplierError::NotFound("no API area".into()))?;
    let payload = &message.payload;
    match (area, verb) {
        (apis::RULES, "list") => {
            let rules = shared.store.get(app_id).expect("served");
            json(ListResponse {
                version: rules.version,
                rules: rules
                    .set
                    .rules()
                    .iter()
                    .map(|rule| ListedRule {
                        source: rules.source(&rule.id),
                        rule: rule.clone(),
                    })
                    .collect(),
            })
        }
        (apis::RULES, "get") => {
            let IdRequest { id } = parse(payload)?;
            let rules = shared.store.get(app_id).expect("served");
            let rule = rules
                .set
                .rules()
                .iter()
                .find(|r| r.id == id)
                .ok_or_else(|| ReplierError::NotFound(format!("no rule `{id}`")))?;
            json(ListedRule {
                source: rules.source(&id),
                rule: rule.clone(),
            })
        }
        (apis::RULES, "put") => {
            let PutRequest { rule } = parse(payload)?;
            let (created, version) = shared.store.put(app_id, rule).await?;
            changed(shared, app_id, version).await?;
            json(PutResponse { created, version })
        }
        (apis::RULES, "delete") => {
            let IdRequest { id } = parse(payload)?;
            let version = shared.store.delete(app_id, &id).await?;
            changed(shared, app_id, version).await?;
            json(DeleteResponse { version })
        }
        (apis::RULES, "test") => {
            let test: TestMessage = parse(payload)?;
            let rules = shared.store.get(app_id).expect("served");
            let xml = test.to_xml("gh_test")?;
            let inbound = Inbound::parse(xml.as_bytes())
                .map_err(|e| ReplierError::Invalid(format!("test message: {e}")))?;
            let envelope = Envelope::new(app_id, now_ms(), inbound);
            let decision = rules.set.decide(&envelope);
            json(TestResponse {
                rule: decision.as_ref().map(|d| d.rule.id.clone()),
                reply: decision.and_then(|d| d.reply),
            })
        }
        (apis::SEND, "status") => {
            let IdRequest { id } = parse(payload)?;
            let result = crate::send::status(shared, app_id, &id)
                .await?
                .ok_or_else(|| ReplierError::NotFound(format!("no result for send `{id}`")))?;
            json(result)
        }
        _ => Err(ReplierError::NotFound(format!(
            "no API {area}.{verb} (rules: list, get, put, delete, test; send: status)"
        ))),
    }
}

/// Reloads the app here at once (so the caller sees the change), then tells every replica.
async fn changed(shared: &Shared, app_id: &str, version: i64) -> Result<(), ReplierError> {
    shared.store.reload(app_id).await?;
    crate::announce_rules(shared, app_id, version).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(message: TestMessage) -> Inbound {
        Inbound::parse(message.to_xml("gh_test").unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn test_messages_become_wechat_xml() {
        let text = parsed(TestMessage {
            text: Some("a]]>b <c>".into()),
            ..TestMessage::default()
        });
        assert_eq!(text.msg_type, "text");
        assert_eq!(text.from_user_name, "o_test_user");
        assert!(text.msg_id.is_some());
        let event = parsed(TestMessage {
            event: Some("subscribe".into()),
            event_key: Some("qrscene_7".into()),
            openid: Some("o_1".into()),
            ..TestMessage::default()
        });
        assert_eq!(event.event.as_deref(), Some("subscribe"));
        assert_eq!(event.from_user_name, "o_1");
        let voice = parsed(TestMessage {
            msg_type: Some("voice".into()),
            recognition: Some("hello".into()),
            ..TestMessage::default()
        });
        assert_eq!(voice.msg_type, "voice");
        assert!(TestMessage::default().to_xml("gh").is_err());
    }

    #[test]
    fn errors_map_to_api_codes() {
        let code = |e: ReplierError| e.to_api().error.code;
        assert_eq!(code(ReplierError::Invalid("x".into())), "invalid");
        assert_eq!(code(ReplierError::NotFound("x".into())), "not_found");
        assert_eq!(code(ReplierError::Busy("x".into())), "unavailable");
    }
}
