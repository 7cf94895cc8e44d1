//! Passive replies: the typed reply, its XML, the encrypted envelope, and the JSON of the
//! reply rendezvous between a replier and the gateway (see `docs/reply-rendezvous.md`).

use serde::{Deserialize, Serialize};

use crate::crypto::AesKey;

/// The most articles a news reply may hold (1 when answering a user message).
pub const MAX_NEWS_ARTICLES: usize = 8;

/// A passive reply, tagged by `type` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PassiveReply {
    /// Text (may hold `<a href>` links and newlines).
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
        /// Optional title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Optional description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Music with a thumbnail.
    Music {
        /// Optional title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Optional description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Optional link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        music_url: Option<String>,
        /// Optional high-quality link (Wi-Fi).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hq_music_url: Option<String>,
        /// The thumbnail's media id.
        thumb_media_id: String,
    },
    /// News cards (1 for user messages, up to 8 otherwise).
    News {
        /// The cards.
        articles: Vec<Article>,
    },
    /// Hand the conversation to customer service, optionally to one agent.
    TransferCustomerService {
        /// The agent (`test1@test`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kf_account: Option<String>,
    },
}

/// One news card.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Article {
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Picture URL.
    #[serde(default)]
    pub pic_url: String,
    /// Link.
    #[serde(default)]
    pub url: String,
}

/// A reply that WeChat would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Too few or too many news articles.
    #[error("a news reply needs 1 to {max} articles, got {got}")]
    ArticleCount {
        /// The most allowed here.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A required value is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

impl PassiveReply {
    /// The reply's `MsgType`.
    pub fn msg_type(&self) -> &'static str {
        match self {
            PassiveReply::Text { .. } => "text",
            PassiveReply::Image { .. } => "image",
            PassiveReply::Voice { .. } => "voice",
            PassiveReply::Video { .. } => "video",
            PassiveReply::Music { .. } => "music",
            PassiveReply::News { .. } => "news",
            PassiveReply::TransferCustomerService { .. } => "transfer_customer_service",
        }
    }

    /// Checks WeChat's rules; `to_user_message` is true when answering a user message (news
    /// then holds exactly one article).
    pub fn validate(&self, to_user_message: bool) -> Result<(), ReplyError> {
        match self {
            PassiveReply::Image { media_id }
            | PassiveReply::Voice { media_id }
            | PassiveReply::Video { media_id, .. }
                if media_id.is_empty() =>
            {
                return Err(ReplyError::Empty("media_id"));
            }
            PassiveReply::Music { thumb_media_id, .. } if thumb_media_id.is_empty() => {
                return Err(ReplyError::Empty("thumb_media_id"));
            }
            PassiveReply::News { articles } => {
                let max = if to_user_message {
                    1
                } else {
                    MAX_NEWS_ARTICLES
                };
                if articles.is_empty() || articles.len() > max {
                    return Err(ReplyError::ArticleCount {
                        max,
                        got: articles.len(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Renders the reply XML. `to_user` is the user's OpenID (the request's FromUserName),
    /// `from_user` the account's `gh_…` (the request's ToUserName).
    pub fn to_xml(&self, to_user: &str, from_user: &str, create_time: i64) -> String {
        let mut x = String::with_capacity(256);
        x.push_str("<xml>");
        cdata(&mut x, "ToUserName", to_user);
        cdata(&mut x, "FromUserName", from_user);
        x.push_str(&format!("<CreateTime>{create_time}</CreateTime>"));
        cdata(&mut x, "MsgType", self.msg_type());
        match self {
            PassiveReply::Text { content } => cdata(&mut x, "Content", content),
            PassiveReply::Image { media_id } => {
                wrap(&mut x, "Image", |x| cdata(x, "MediaId", media_id))
            }
            PassiveReply::Voice { media_id } => {
                wrap(&mut x, "Voice", |x| cdata(x, "MediaId", media_id))
            }
            PassiveReply::Video {
                media_id,
                title,
                description,
            } => wrap(&mut x, "Video", |x| {
                cdata(x, "MediaId", media_id);
                opt(x, "Title", title);
                opt(x, "Description", description);
            }),
            PassiveReply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => wrap(&mut x, "Music", |x| {
                opt(x, "Title", title);
                opt(x, "Description", description);
                opt(x, "MusicUrl", music_url);
                opt(x, "HQMusicUrl", hq_music_url);
                cdata(x, "ThumbMediaId", thumb_media_id);
            }),
            PassiveReply::News { articles } => {
                x.push_str(&format!("<ArticleCount>{}</ArticleCount>", articles.len()));
                wrap(&mut x, "Articles", |x| {
                    for a in articles {
                        wrap(x, "item", |x| {
                            cdata(x, "Title", &a.title);
                            cdata(x, "Description", &a.description);
                            cdata(x, "PicUrl", &a.pic_url);
                            cdata(x, "Url", &a.url);
                        });
                    }
                })
            }
            PassiveReply::TransferCustomerService { kf_account } => {
                if let Some(account) = kf_account {
                    wrap(&mut x, "TransInfo", |x| cdata(x, "KfAccount", account));
                }
            }
        }
        x.push_str("</xml>");
        x
    }
}

/// Appends `<name><![CDATA[value]]></name>`, splitting any `]]>` inside the value.
pub fn cdata(x: &mut String, name: &str, value: &str) {
    x.push('<');
    x.push_str(name);
    x.push_str("><![CDATA[");
    x.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    x.push_str("]]></");
    x.push_str(name);
    x.push('>');
}

/// Appends `value` as escaped element text (`&`, `<`, `>`), for values written outside CDATA.
fn escape_text(x: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => x.push_str("&amp;"),
            '<' => x.push_str("&lt;"),
            '>' => x.push_str("&gt;"),
            c => x.push(c),
        }
    }
}

fn opt(x: &mut String, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        cdata(x, name, v);
    }
}

fn wrap(x: &mut String, name: &str, inner: impl FnOnce(&mut String)) {
    x.push('<');
    x.push_str(name);
    x.push('>');
    inner(x);
    x.push_str("</");
    x.push_str(name);
    x.push('>');
}

/// The safe-mode reply envelope: `Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`.
pub fn encrypted_envelope(
    key: &AesKey,
    app_id: &str,
    token: &str,
    random: &[u8; 16],
    reply_xml: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let encrypt = key.encrypt_with(app_id, random, reply_xml.as_bytes());
    let signature = crate::signature::msg_signature(token, timestamp, nonce, &encrypt);
    let mut x = String::with_capacity(encrypt.len() + 200);
    x.push_str("<xml>");
    cdata(&mut x, "Encrypt", &encrypt);
    cdata(&mut x, "MsgSignature", &signature);
    x.push_str("<TimeStamp>");
    escape_text(&mut x, timestamp);
    x.push_str("</TimeStamp>");
    cdata(&mut x, "Nonce", nonce);
    x.push_str("</xml>");
    x
}

/// What a replier sends to a rendezvous subject (`Wx-Reply-Subject`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRequest {
    /// The reply, or `null` for an explicit "no reply" (the gateway answers `success` at once).
    pub reply: Option<PassiveReply>,
}

/// The gateway's answer to a [`ReplyRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ReplyResponse {
    /// The reply will be returned to WeChat.
    Taken,
    /// Too late, or already answered: send it another way (customer-service message).
    Late,
    /// The reply breaks WeChat's rules; nothing was returned for it.
    Rejected {
        /// Why.
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdata_end_is_split() {
        let xml = PassiveReply::Text {
            content: "a]]>b".into(),
        }
        .to_xml("o", "gh", 1);
        assert!(
            xml.contains("<Content><![CDATA[a]]]]><![CDATA[>b]]></Content>"),
            "{xml}"
        );
        let doc = crate::inbound::Document::parse(xml.as_bytes()).unwrap();
        assert_eq!(doc.root().get("Content"), Some("a]]>b"));
    }

    #[test]
    fn hostile_values_survive_every_field() {
        let nasty = "a]]>b<c>&d;]]]]>\n<![CDATA[x]]>";
        let article = Article {
            title: nasty.into(),
            description: nasty.into(),
            pic_url: nasty.into(),
            url: nasty.into(),
        };
        let replies = [
            PassiveReply::Text {
                content: nasty.into(),
            },
            PassiveReply::Image {
                media_id: nasty.into(),
            },
            PassiveReply::Voice {
                media_id: nasty.into(),
            },
            PassiveReply::Video {
                media_id: nasty.into(),
                title: Some(nasty.into()),
                description: None,
            },
            PassiveReply::Music {
                title: Some(nasty.into()),
                description: Some(nasty.into()),
                music_url: Some(nasty.into()),
                hq_music_url: Some(nasty.into()),
                thumb_media_id: nasty.into(),
            },
            PassiveReply::News {
                articles: vec![article.clone(), article],
            },
            PassiveReply::TransferCustomerService {
                kf_account: Some(nasty.into()),
            },
        ];
        for reply in replies {
            let xml = reply.to_xml(nasty, nasty, -1);
            let doc = crate::inbound::Document::parse(xml.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}\n{xml}", reply.msg_type()));
            let flat = doc.flatten();
            assert_eq!(
                doc.root().child("MsgType").map(|n| n.text()),
                Some(reply.msg_type())
            );
            assert_eq!(doc.root().child("CreateTime").map(|n| n.text()), Some("-1"));
            // Every value but MsgType, CreateTime and ArticleCount is the hostile string, intact.
            let values: Vec<&str> = flat
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "MsgType" | "CreateTime" | "ArticleCount"))
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(values.len() >= 3, "{xml}");
            assert!(
                values.iter().all(|v| *v == nasty),
                "{}: {flat:?}",
                reply.msg_type()
            );
        }
    }

    #[test]
    fn optional_parts_are_left_out() {
        let bare = PassiveReply::TransferCustomerService { kf_account: None }.to_xml("o", "gh", 1);
        assert!(!bare.contains("TransInfo"), "{bare}");
        let video = PassiveReply::Video {
            media_id: "m".into(),
            title: None,
            description: None,
        }
        .to_xml("o", "gh", 1);
        assert!(
            video.contains("<Video><MediaId><![CDATA[m]]></MediaId></Video>"),
            "{video}"
        );
        let news = PassiveReply::News {
            articles: vec![Article::default(); 3],
        }
        .to_xml("o", "gh", 1);
        assert!(news.contains("<ArticleCount>3</ArticleCount>"), "{news}");
    }

    #[test]
    fn encrypted_envelope_reads_back() {
        let key =
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let xml = PassiveReply::Text {
            content: "hi]]>".into(),
        }
        .to_xml("o", "gh", 1);
        let env = encrypted_envelope(
            &key,
            "wx1",
            "tok",
            b"0123456789abcdef",
            &xml,
            "1700000000",
            "n<&",
        );
        assert!(env.contains("<TimeStamp>1700000000</TimeStamp>"), "{env}");
        let body = crate::inbound::EncryptedBody::parse(env.as_bytes()).unwrap();
        let doc = crate::inbound::Document::parse(env.as_bytes()).unwrap();
        let sig = doc.root().get("MsgSignature").unwrap();
        assert_eq!(doc.root().get("Nonce"), Some("n<&"));
        assert!(crate::signature::verify_msg_signature(
            "tok",
            "1700000000",
            "n<&",
            &body.encrypt,
            sig
        ));
        assert_eq!(
            key.decrypt("wx1", &body.encrypt).unwrap().message,
            xml.as_bytes()
        );
        // An echoed timestamp is outside data: it cannot break out of its element.
        let env = encrypted_envelope(
            &key,
            "wx1",
            "tok",
            b"0123456789abcdef",
            &xml,
            "1</TimeStamp><X>&",
            "n",
        );
        let doc = crate::inbound::Document::parse(env.as_bytes()).unwrap();
        assert_eq!(doc.root().get("TimeStamp"), Some("1</TimeStamp><X>&"));
        assert!(doc.root().child("X").is_none());
    }

    #[test]
    fn news_limits() {
        let one = PassiveReply::News {
            articles: vec![Article::default()],
        };
        let two = PassiveReply::News {
            articles: vec![Article::default(), Article::default()],
        };
        assert!(one.validate(true).is_ok());
        assert!(two.validate(true).is_err());
        assert!(two.validate(false).is_ok());
        assert!(
            PassiveReply::News { articles: vec![] }
                .validate(false)
                .is_err()
        );
        assert!(
            PassiveReply::Image {
                media_id: String::new()
            }
            .validate(false)
            .is_err()
        );
    }

    #[test]
    fn rendezvous_json() {
        let req: ReplyRequest =
            serde_json::from_str(r#"{"reply":{"type":"text","content":"hi"}}"#).unwrap();
        assert_eq!(
            req.reply,
            Some(PassiveReply::Text {
                content: "hi".into()
            })
        );
        assert_eq!(
            serde_json::to_string(&ReplyResponse::Taken).unwrap(),
            r#"{"status":"taken"}"#
        );
        let none: ReplyRequest = serde_json::from_str(r#"{"reply":null}"#).unwrap();
        assert!(none.reply.is_none());
    }
}
