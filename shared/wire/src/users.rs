//! The follower directory's contracts: a user as the directory keeps them, the `user.updated`
//! notice, the `usersync` command and the full-sync job's progress.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One user of one account, as the directory keeps them (a Redis hash per user).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The OpenID.
    pub openid: String,
    /// The UnionID, when the account is bound to an Open Platform account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// Follows the account now.
    pub subscribed: bool,
    /// When they (last) followed, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_time: Option<i64>,
    /// When they left, unix seconds (set while not subscribed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_time: Option<i64>,
    /// Their language (`zh_CN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The account's remark for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Their tag ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tagid_list: Vec<i64>,
    /// How they followed (`ADD_SCENE_QR_CODE`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_scene: Option<String>,
    /// The QR scene id they followed from (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene: Option<i64>,
    /// The QR scene string they followed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene_str: Option<String>,
    /// When the directory last changed this entry, unix milliseconds.
    #[serde(default)]
    pub updated_ms: i64,
}

impl UserRecord {
    /// A user from WeChat's `user/info` JSON (`subscribe: 0` gives only openid and unionid).
    pub fn from_wechat(info: &serde_json::Value, now_ms: i64) -> Option<UserRecord> {
        let s = |k: &str| {
            info[k]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Some(UserRecord {
            openid: s("openid")?,
            unionid: s("unionid"),
            subscribed: info["subscribe"].as_i64() == Some(1),
            subscribe_time: info["subscribe_time"].as_i64(),
            unsubscribe_time: None,
            language: s("language"),
            remark: s("remark"),
            tagid_list: info["tagid_list"]
                .as_array()
                .map(|l| l.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default(),
            subscribe_scene: s("subscribe_scene"),
            qr_scene: info["qr_scene"].as_i64().filter(|q| *q != 0),
            qr_scene_str: s("qr_scene_str"),
            updated_ms: now_ms,
        })
    }

    /// The Redis hash fields (absent values left out).
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("openid", self.openid.clone()),
            ("subscribed", u8::from(self.subscribed).to_string()),
            ("updated_ms", self.updated_ms.to_string()),
            (
                "tagid_list",
                self.tagid_list
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ];
        let mut opt = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                f.push((k, v));
            }
        };
        opt("unionid", self.unionid.clone());
        opt("subscribe_time", self.subscribe_time.map(|t| t.to_string()));
        opt(
            "unsubscribe_time",
            self.unsubscribe_time.map(|t| t.to_string()),
        );
        opt("language", self.language.clone());
        opt("remark", self.remark.clone());
        opt("subscribe_scene", self.subscribe_scene.clone());
        opt("qr_scene", self.qr_scene.map(|q| q.to_string()));
        opt("qr_scene_str", self.qr_scene_str.clone());
        f
    }

    /// The fields a hash may hold that [`UserRecord::to_fields`] leaves out when absent (to
    /// delete them when a value goes away).
    pub const OPTIONAL_FIELDS: [&'static str; 8] = [
        "unionid",
        "subscribe_time",
        "unsubscribe_time",
        "language",
        "remark",
        "subscribe_scene",
        "qr_scene",
        "qr_scene_str",
    ];

    /// A user from its Redis hash (`None` for an empty hash).
    pub fn from_fields(fields: &HashMap<String, String>) -> Option<UserRecord> {
        let s = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
        let n = |k: &str| fields.get(k).and_then(|v| v.parse().ok());
        Some(UserRecord {
            openid: s("openid")?,
            unionid: s("unionid"),
            subscribed: fields.get("subscribed").map(String::as_str) == Some("1"),
            subscribe_time: n("subscribe_time"),
            unsubscribe_time: n("unsubscribe_time"),
            language: s("language"),
            remark: s("remark"),
            tagid_list: fields
                .get("tagid_list")
                .map(|l| l.split(',').filter_map(|t| t.parse().ok()).collect())
                .unwrap_or_default(),
            subscribe_scene: s("subscribe_scene"),
            qr_scene: n("qr_scene"),
            qr_scene_str: s("qr_scene_str"),
            updated_ms: n("updated_ms").unwrap_or_default(),
        })
    }
}

/// What changed for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserChange {
    /// They followed.
    Subscribed,
    /// They left.
    Unsubscribed,
    /// They scanned a parametric QR code.
    Scanned,
    /// The account changed their tags, remark or blacklist state.
    Edited,
}

/// `<prefix>.<appid>.notice.user.updated`: a directory entry changed from an event or an edit
/// (full syncs announce progress instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// What happened.
    pub change: UserChange,
    /// The entry as it is now.
    pub user: UserRecord,
    /// The QR scene of a scan or follow, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<String>,
}

/// `<prefix>.<appid>.command.usersync`: start a full sync of the app's followers. A sync already
/// running is not started twice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncCommand {
    /// The job id (default: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A full sync's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Running (or waiting for a worker to resume it).
    Running,
    /// Finished: the directory equals WeChat's followers as listed.
    Done,
    /// Stopped on an error that retrying will not fix.
    Failed,
}

/// `<prefix>.<appid>.notice.usersync.progress` and `.finished`, and the `users.sync_status`
/// answer: a full sync's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// The job id.
    pub id: String,
    /// The account.
    pub app_id: String,
    /// Its state.
    pub state: SyncState,
    /// Followers written so far.
    pub done: u64,
    /// Followers WeChat reports.
    pub total: u64,
    /// Followers per second since the start.
    pub rate_per_sec: f64,
    /// Seconds left at that rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
    /// Users in the directory who were no longer followers, marked as left (when done).
    pub left: u64,
    /// Times a worker resumed it from its checkpoint.
    pub resumes: u64,
    /// When it started, unix milliseconds.
    pub started_ms: i64,
    /// When it last moved, unix milliseconds.
    pub updated_ms: i64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The FNV-1a 64 hash of an openid; the XOR of it over a set of openids is the set's digest
/// (the simulator's `/_sim/users` digest), order-independent and cheap to compare.
pub fn openid_hash(openid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in openid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_wechat_json_and_hash_fields() {
        let info = serde_json::json!({"subscribe":1,"openid":"o1","language":"zh_CN","subscribe_time":1382694957,
            "unionid":"u1","remark":"","groupid":0,"tagid_list":[128,2],"subscribe_scene":"ADD_SCENE_QR_CODE",
            "qr_scene":98765,"qr_scene_str":""});
        let user = UserRecord::from_wechat(&info, 7).unwrap();
        assert!(user.subscribed && user.remark.is_none() && user.qr_scene == Some(98765));
        let fields: HashMap<String, String> = user
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(UserRecord::from_fields(&fields), Some(user));
        let left =
            UserRecord::from_wechat(&serde_json::json!({"subscribe":0,"openid":"o2"}), 1).unwrap();
        assert!(!left.subscribed && left.tagid_list.is_empty());
        assert_eq!(openid_hash(""), 0xcbf2_9ce4_8422_2325);
    }
}
