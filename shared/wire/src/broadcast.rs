//! Broadcast jobs: the `broadcast` command (mass sends, template fan-outs, customer-service
//! fan-outs), who they go to, and their progress.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::CustomMessage;

/// The most openids of one `mass/send` call.
pub const MASS_BATCH: usize = 10_000;

/// The mass-send message types WeChat takes.
pub const MASS_TYPES: [&str; 6] = ["mpnews", "text", "voice", "images", "mpvideo", "wxcard"];

/// `<prefix>.<appid>.command.broadcast`: a broadcast job. A job id seen before is not started
/// again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastCommand {
    /// The job id: 1–64 of `[A-Za-z0-9_-]` (it is part of every batch's `clientmsgid`).
    pub id: String,
    /// Who receives it.
    pub to: Segment,
    /// What is sent.
    #[serde(flatten)]
    pub job: BroadcastKind,
}

/// Who a broadcast goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Segment {
    /// Every follower (mass: WeChat's `is_to_all`; others: the follower directory).
    All,
    /// The followers with a tag.
    Tag {
        /// The tag id.
        tag_id: i64,
    },
    /// These openids.
    Openids {
        /// The openids.
        openids: Vec<String>,
    },
}

/// What a broadcast sends, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BroadcastKind {
    /// A mass send (群发): `sendall` for all or a tag, `send` in batches of 10,000 for openids.
    Mass {
        /// WeChat's message: `{"msgtype": "text", "text": {"content": "…"}}` (mpnews, text,
        /// voice, images, mpvideo, wxcard).
        message: Value,
        /// Send even if WeChat judges an mpnews a reprint.
        #[serde(default)]
        send_ignore_reprint: bool,
    },
    /// One template message per recipient.
    Template {
        /// The template.
        template_id: String,
        /// The template data: `{"keyword1": {"value": "…"}}`.
        data: Value,
        /// A link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// A mini-program link: `{"appid", "pagepath"}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        miniprogram: Option<Value>,
    },
    /// One customer-service message per recipient, as `send` commands (only users inside their
    /// 48 h window receive it; the others fail with 45015).
    Custom {
        /// The message.
        message: CustomMessage,
    },
}

impl BroadcastCommand {
    /// Checks the command before any call.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > 48 || !crate::names::is_token(&self.id) {
            return Err("id must be 1-48 characters of [A-Za-z0-9_-]".into());
        }
        if let Segment::Openids { openids } = &self.to
            && (openids.is_empty() || openids.iter().any(String::is_empty))
        {
            return Err("openids must be a non-empty list of openids".into());
        }
        match &self.job {
            BroadcastKind::Mass { message, .. } => {
                let msgtype = message["msgtype"].as_str().unwrap_or_default();
                if !MASS_TYPES.contains(&msgtype) {
                    return Err(format!(
                        "message.msgtype must be one of {}",
                        MASS_TYPES.join(", ")
                    ));
                }
                if !message[msgtype].is_object() {
                    return Err(format!("message.{msgtype} must be an object"));
                }
                if let Segment::Openids { openids } = &self.to
                    && openids.len() < 2
                {
                    return Err("a mass send to openids needs at least 2".into());
                }
                Ok(())
            }
            BroadcastKind::Template {
                template_id, data, ..
            } => {
                if template_id.is_empty() {
                    return Err("template_id must not be empty".into());
                }
                if !data.is_object() {
                    return Err("data must be an object".into());
                }
                Ok(())
            }
            BroadcastKind::Custom { message } => message.validate().map_err(|e| e.0),
        }
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self.job {
            BroadcastKind::Mass { .. } => "mass",
            BroadcastKind::Template { .. } => "template",
            BroadcastKind::Custom { .. } => "custom",
        }
    }
}

/// The `clientmsgid` of mass batch `batch` of job `id`: the same on every retry, so WeChat
/// answers a batch sent before with 45065 and sends nothing twice.
pub fn mass_clientmsgid(id: &str, batch: usize) -> String {
    format!("{id}-{batch}")
}

/// The `client_msg_id` of the template message to recipient `index` of job `id`.
pub fn template_client_msg_id(id: &str, index: usize) -> String {
    format!("{id}-{index}")
}

/// A broadcast's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    /// Sending (or waiting for a worker to resume it).
    Running,
    /// Paused by request; `resume` goes on from the checkpoint.
    Paused,
    /// Cancelled by request.
    Cancelled,
    /// Every recipient was handled.
    Done,
    /// Stopped on an error (a quota, a refusal): see `error`.
    Failed,
}

/// `<prefix>.<appid>.notice.broadcast.progress` / `.finished` and the `broadcast.status` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastProgress {
    /// The job id.
    pub id: String,
    /// The account.
    pub app_id: String,
    /// `mass`, `template` or `custom`.
    pub kind: String,
    /// Its state.
    pub state: BroadcastState,
    /// Recipients (mass to all or a tag: 0 until WeChat's job-finish report).
    pub total: u64,
    /// Recipients handled (calls made and answered).
    pub done: u64,
    /// Accepted by WeChat.
    pub sent: u64,
    /// Refused for one recipient (not a follower, ...).
    pub failed: u64,
    /// Sends per second since the start.
    pub rate_per_sec: f64,
    /// Seconds left at that rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
    /// WeChat's job ids (mass: one per batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub msg_ids: Vec<i64>,
    /// From MASSSENDJOBFINISH / TEMPLATESENDJOBFINISH events: what WeChat finally delivered.
    pub finished: FinishCounts,
    /// Times a worker resumed it.
    pub resumes: u64,
    /// When it started, unix milliseconds.
    pub started_ms: i64,
    /// When it last moved, unix milliseconds.
    pub updated_ms: i64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts from WeChat's job-finish events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinishCounts {
    /// Job-finish events matched to this job.
    pub reports: u64,
    /// TotalCount (mass).
    pub total: u64,
    /// FilterCount (mass).
    pub filtered: u64,
    /// SentCount (mass), or template reports with status `success`.
    pub sent: u64,
    /// ErrorCount (mass), or template reports with another status.
    pub errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_validate() {
        let mass: BroadcastCommand = serde_json::from_value(serde_json::json!({
            "id": "spring-sale", "kind": "mass", "to": {"type": "openids", "openids": ["a", "b"]},
            "message": {"msgtype": "text", "text": {"content": "hi"}}
        }))
        .unwrap();
        mass.validate().unwrap();
        assert_eq!(mass.kind(), "mass");
        let template: BroadcastCommand = serde_json::from_value(serde_json::json!({
            "id": "t1", "kind": "template", "to": {"type": "tag", "tag_id": 2},
            "template_id": "TM1", "data": {"k": {"value": "v"}}, "url": "https://e.com"
        }))
        .unwrap();
        template.validate().unwrap();
        let mut bad = mass.clone();
        bad.id = "has space".into();
        assert!(bad.validate().is_err());
        let one = BroadcastCommand {
            to: Segment::Openids {
                openids: vec!["a".into()],
            },
            ..mass
        };
        assert!(one.validate().unwrap_err().contains("at least 2"));
        assert_eq!(mass_clientmsgid("job", 2), "job-2");
    }
}
