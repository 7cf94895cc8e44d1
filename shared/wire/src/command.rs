//! Commands and their results: the `send` command (a customer-service message), its result
//! notice, the replier's outcome notice, and the error shape of wxoa's NATS request APIs.
//!
//! JSON Schema: `docs/send-command.schema.json`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::reply::{Article, PassiveReply};

/// The longest client-given command id.
pub const MAX_COMMAND_ID: usize = 128;

/// `<prefix>.<appid>.command.send`: send one customer-service message to one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendCommand {
    /// The client's id for this send (1–128 printable ASCII chars): a command with an id seen
    /// before is not sent again, its stored result is re-announced.
    pub id: String,
    /// The user's OpenID.
    pub openid: String,
    /// The message.
    pub message: CustomMessage,
    /// Show "typing…" to the user just before sending.
    #[serde(default)]
    pub typing: bool,
    /// Send as this customer-service agent (`test1@kftest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kf_account: Option<String>,
}

/// A customer-service message, tagged by `type` (WeChat's `msgtype`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CustomMessage {
    /// Text (may hold `<a href>` and mini-program links).
    Text {
        /// The text.
        content: String,
    },
    /// An uploaded image.
    Image {
        /// Its media id.
        media_id: String,
    },
    /// An uploaded voice.
    Voice {
        /// Its media id.
        media_id: String,
    },
    /// An uploaded video.
    Video {
        /// Its media id.
        media_id: String,
        /// The thumbnail's media id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thumb_media_id: Option<String>,
        /// Title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Music.
    Music {
        /// Title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The link.
        music_url: String,
        /// The high-quality link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hq_music_url: Option<String>,
        /// The thumbnail's media id.
        thumb_media_id: String,
    },
    /// One news card (WeChat takes exactly one).
    News {
        /// The card, in a list of one.
        articles: Vec<Article>,
    },
    /// A published or draft article by media id.
    Mpnews {
        /// Its media id.
        media_id: String,
    },
    /// A published article by article id.
    Mpnewsarticle {
        /// Its article id.
        article_id: String,
    },
    /// A menu of choices; a click comes back as a text message with `bizmsgmenuid`.
    #[serde(alias = "menu")]
    Msgmenu {
        /// Text above the choices.
        #[serde(default)]
        head_content: String,
        /// The choices.
        list: Vec<MenuItem>,
        /// Text below the choices.
        #[serde(default)]
        tail_content: String,
    },
    /// A card (卡券).
    Wxcard {
        /// The card id.
        card_id: String,
    },
    /// A mini-program page card.
    Miniprogrampage {
        /// Title.
        title: String,
        /// The mini program's AppID.
        appid: String,
        /// The page path.
        pagepath: String,
        /// The thumbnail's media id.
        thumb_media_id: String,
    },
}

/// One choice of a [`CustomMessage::Msgmenu`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    /// The id sent back on click.
    pub id: String,
    /// The text shown.
    pub content: String,
}

/// Why a command is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid send command: {0}")]
pub struct InvalidCommand(pub String);

impl SendCommand {
    /// Checks what WeChat would reject anyway, before any call: the id, the openid, empty
    /// required fields, a news message with other than one article, an empty menu.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        let bad = |m: &str| Err(InvalidCommand(m.to_owned()));
        if self.id.is_empty()
            || self.id.len() > MAX_COMMAND_ID
            || !self.id.bytes().all(|b| b.is_ascii_graphic())
        {
            return bad("id must be 1-128 printable ASCII characters");
        }
        if self.openid.is_empty() || self.openid.len() > 128 {
            return bad("openid must be 1-128 characters");
        }
        self.message.validate()
    }
}

impl CustomMessage {
    /// WeChat's `msgtype`.
    pub fn msg_type(&self) -> &'static str {
        match self {
            CustomMessage::Text { .. } => "text",
            CustomMessage::Image { .. } => "image",
            CustomMessage::Voice { .. } => "voice",
            CustomMessage::Video { .. } => "video",
            CustomMessage::Music { .. } => "music",
            CustomMessage::News { .. } => "news",
            CustomMessage::Mpnews { .. } => "mpnews",
            CustomMessage::Mpnewsarticle { .. } => "mpnewsarticle",
            CustomMessage::Msgmenu { .. } => "msgmenu",
            CustomMessage::Wxcard { .. } => "wxcard",
            CustomMessage::Miniprogrampage { .. } => "miniprogrampage",
        }
    }

    /// Checks required fields and counts.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        let required = |v: &str, name: &str| {
            if v.trim().is_empty() {
                Err(InvalidCommand(format!(
                    "{} message: {name} must not be empty",
                    self.msg_type()
                )))
            } else {
                Ok(())
            }
        };
        match self {
            CustomMessage::Text { content } => required(content, "content"),
            CustomMessage::Image { media_id }
            | CustomMessage::Voice { media_id }
            | CustomMessage::Mpnews { media_id }
            | CustomMessage::Video { media_id, .. } => required(media_id, "media_id"),
            CustomMessage::Music {
                music_url,
                thumb_media_id,
                ..
            } => {
                required(music_url, "music_url")?;
                required(thumb_media_id, "thumb_media_id")
            }
            CustomMessage::News { articles } => match articles.as_slice() {
                [article] => required(&article.title, "articles[0].title"),
                _ => Err(InvalidCommand(
                    "news message: exactly 1 article is allowed".to_owned(),
                )),
            },
            CustomMessage::Mpnewsarticle { article_id } => required(article_id, "article_id"),
            CustomMessage::Msgmenu { list, .. } => {
                if list.is_empty() {
                    return Err(InvalidCommand(
                        "msgmenu message: list must not be empty".to_owned(),
                    ));
                }
                list.iter().try_for_each(|item| {
                    required(&item.id, "list[].id")?;
                    required(&item.content, "list[].content")
                })
            }
            CustomMessage::Wxcard { card_id } => required(card_id, "card_id"),
            CustomMessage::Miniprogrampage {
                appid,
                pagepath,
                thumb_media_id,
                ..
            } => {
                required(appid, "appid")?;
                required(pagepath, "pagepath")?;
                required(thumb_media_id, "thumb_media_id")
            }
        }
    }

    /// The same content as a customer-service message, for a passive reply that could not be
    /// given in time. A news reply keeps its first article (WeChat sends one); a transfer to
    /// customer service has no customer-service form (`None`).
    pub fn from_passive(reply: &PassiveReply) -> Option<CustomMessage> {
        Some(match reply.clone() {
            PassiveReply::Text { content } => CustomMessage::Text { content },
            PassiveReply::Image { media_id } => CustomMessage::Image { media_id },
            PassiveReply::Voice { media_id } => CustomMessage::Voice { media_id },
            PassiveReply::Video {
                media_id,
                title,
                description,
            } => CustomMessage::Video {
                media_id,
                thumb_media_id: None,
                title,
                description,
            },
            PassiveReply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => CustomMessage::Music {
                title,
                description,
                music_url: music_url.unwrap_or_default(),
                hq_music_url,
                thumb_media_id,
            },
            PassiveReply::News { articles } => CustomMessage::News {
                articles: articles.into_iter().take(1).collect(),
            },
            PassiveReply::TransferCustomerService { .. } => return None,
        })
    }

    /// The body of `POST /cgi-bin/message/custom/send` for `openid`.
    pub fn to_wechat_json(&self, openid: &str, kf_account: Option<&str>) -> Value {
        let object = match self {
            CustomMessage::Text { content } => json!({ "content": content }),
            CustomMessage::Image { media_id }
            | CustomMessage::Voice { media_id }
            | CustomMessage::Mpnews { media_id } => json!({ "media_id": media_id }),
            CustomMessage::Video {
                media_id,
                thumb_media_id,
                title,
                description,
            } => json!({
                "media_id": media_id,
                "thumb_media_id": thumb_media_id.as_deref().unwrap_or(""),
                "title": title.as_deref().unwrap_or(""),
                "description": description.as_deref().unwrap_or(""),
            }),
            CustomMessage::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => json!({
                "title": title.as_deref().unwrap_or(""),
                "description": description.as_deref().unwrap_or(""),
                "musicurl": music_url,
                "hqmusicurl": hq_music_url.as_deref().unwrap_or(music_url),
                "thumb_media_id": thumb_media_id,
            }),
            CustomMessage::News { articles } => json!({
                "articles": articles.iter().map(|a| json!({
                    "title": a.title,
                    "description": a.description,
                    "url": a.url,
                    "picurl": a.pic_url,
                })).collect::<Vec<_>>()
            }),
            CustomMessage::Mpnewsarticle { article_id } => json!({ "article_id": article_id }),
            CustomMessage::Msgmenu {
                head_content,
                list,
                tail_content,
            } => json!({
                "head_content": head_content,
                "list": list.iter().map(|i| json!({"id": i.id, "content": i.content})).collect::<Vec<_>>(),
                "tail_content": tail_content,
            }),
            CustomMessage::Wxcard { card_id } => json!({ "card_id": card_id }),
            CustomMessage::Miniprogrampage {
                title,
                appid,
                pagepath,
                thumb_media_id,
            } => json!({
                "title": title,
                "appid": appid,
                "pagepath": pagepath,
                "thumb_media_id": thumb_media_id,
            }),
        };
        let mut body = json!({ "touser": openid, "msgtype": self.msg_type() });
        body[self.msg_type()] = object;
        if let Some(kf) = kf_account {
            body["customservice"] = json!({ "kf_account": kf });
        }
        body
    }
}

/// How a send command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// WeChat accepted the message.
    Sent,
    /// It was not sent and will not be: see `errcode` / `error`.
    Failed,
    /// A worker stopped during the call to WeChat: WeChat may or may not have delivered it,
    /// and it is not sent again (a user never gets a message twice).
    Uncertain,
}

/// `<prefix>.<appid>.notice.send.result`: the result of a send command (also answered by the
/// `send.status` request API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendResult {
    /// The command id.
    pub id: String,
    /// The account.
    pub app_id: String,
    /// The user.
    pub openid: String,
    /// How it ended.
    pub status: SendStatus,
    /// WeChat's errcode when it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// What went wrong, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Deliveries of the command it took.
    pub attempts: i64,
    /// When it ended, unix milliseconds.
    pub at_ms: i64,
}

/// How the replier answered one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyChannel {
    /// In the HTTP answer to WeChat's callback.
    Passive,
    /// As a customer-service message (a `send` command with id `reply:<message id>`).
    Custom,
    /// No rule matched, or the rule says no reply.
    None,
    /// Too late for a passive reply and the account may not send customer-service messages
    /// (not verified), or the reply has no customer-service form.
    Dropped,
    /// An earlier attempt stopped at an unknown point: not answered again.
    Uncertain,
}

/// `<prefix>.<appid>.notice.reply.outcome`: how the replier answered one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyOutcome {
    /// The message's envelope id (`<appid>:<dedupe key>`).
    pub message_id: String,
    /// The user.
    pub openid: String,
    /// The rule that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How it was answered.
    pub channel: ReplyChannel,
    /// Why it was not answered passively (`late`, `no_responders`, `timeout`, `rejected: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When, unix milliseconds.
    pub at_ms: i64,
}

/// The customer-service command id of the fallback for an inbound message.
pub fn fallback_id(message_id: &str) -> String {
    format!("reply:{message_id}")
}

/// The error answer of every wxoa NATS request API: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// `invalid` (fix the request), `not_found`, `unavailable` (retry later) or `internal`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// The JSON wrapper of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_command_json_and_wechat_body() {
        let cmd: SendCommand = serde_json::from_value(json!({
            "id": "order-1", "openid": "o1", "typing": true,
            "message": {"type": "menu", "head_content": "h", "list": [{"id": "1", "content": "好"}]}
        }))
        .unwrap();
        cmd.validate().unwrap();
        let body = cmd.message.to_wechat_json("o1", Some("a@b"));
        assert_eq!(body["msgtype"], "msgmenu");
        assert_eq!(body["msgmenu"]["list"][0]["content"], "好");
        assert_eq!(body["customservice"]["kf_account"], "a@b");

        let bad = json!({"id": "x", "openid": "o", "message": {"type": "text", "content": "a"}, "extra": 1});
        assert!(serde_json::from_value::<SendCommand>(bad).is_err());
        let news = SendCommand {
            id: "n".into(),
            openid: "o".into(),
            message: CustomMessage::News {
                articles: vec![Article::default(); 2],
            },
            typing: false,
            kf_account: None,
        };
        assert!(news.validate().is_err());
        let mut empty_id = news.clone();
        empty_id.id = "a b".into();
        assert!(empty_id.validate().unwrap_err().0.contains("id"));
    }

    #[test]
    fn passive_replies_map_to_custom_messages() {
        let text = PassiveReply::Text {
            content: "hi".into(),
        };
        assert_eq!(
            CustomMessage::from_passive(&text),
            Some(CustomMessage::Text {
                content: "hi".into()
            })
        );
        let news = PassiveReply::News {
            articles: vec![Article::default(); 3],
        };
        match CustomMessage::from_passive(&news) {
            Some(CustomMessage::News { articles }) => assert_eq!(articles.len(), 1),
            other => panic!("{other:?}"),
        }
        let transfer = PassiveReply::TransferCustomerService { kf_account: None };
        assert_eq!(CustomMessage::from_passive(&transfer), None);
    }
}
