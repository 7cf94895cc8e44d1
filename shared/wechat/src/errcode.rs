//! WeChat's global return codes (`docs/wechat-protocol.md` §6) sorted into what a caller should
//! do about them.
//!
//! `0` is success and is never classified. `45065` ("a mass send with this clientmsgid already
//! exists", which carries the existing `msg_id`) classifies as [`ErrorClass::Permanent`] but is
//! a success for the mass-send caller, which must check for it before treating the answer as a
//! failure.

use serde::{Deserialize, Serialize};

/// What a caller should do about a non-zero errcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The access_token was rejected (40001, 40014, 41001, 42001): ask the token service to
    /// invalidate it, then retry once with the new one.
    Refresh,
    /// Transient or a per-minute limit (-1, 45011, 45066, 61450): retry later with backoff.
    Backoff,
    /// A daily or per-period quota is spent (45009, 45028, 45047): do not retry automatically
    /// before the period ends.
    Quota,
    /// Everything else: this request will not succeed as it is; fix the input or the config.
    Permanent,
}

impl ErrorClass {
    /// The snake_case name, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Refresh => "refresh",
            ErrorClass::Backoff => "backoff",
            ErrorClass::Quota => "quota",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of a non-zero errcode (callers handle `0`, success, before asking).
pub fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        40001 | 40014 | 41001 | 42001 => ErrorClass::Refresh,
        -1 | 45011 | 45066 | 61450 => ErrorClass::Backoff,
        45009 | 45028 | 45047 => ErrorClass::Quota,
        _ => ErrorClass::Permanent,
    }
}

/// What an errcode means, in words an operator can act on (WeChat's global return codes and
/// those of the menu, material and comment APIs); `None` for codes not listed.
pub fn meaning(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        -1 => "WeChat is busy; retry later",
        40001 | 40014 => {
            "the access_token is invalid or not the latest (or the AppSecret is wrong)"
        }
        40003 => "invalid openid (not a follower of this account)",
        40004 => "invalid media type",
        40005 => "invalid file type",
        40006 => "invalid file size",
        40007 => "invalid media_id (unknown, deleted or an expired temporary media)",
        40009 => "image too large",
        40010 => "voice too large",
        40011 => "video too large",
        40012 => "thumb too large",
        40013 => "invalid AppID",
        40016..=40027 => "the menu breaks WeChat's button rules",
        40032 => "invalid openid list length",
        40033 => "invalid characters (\\uxxxx escapes)",
        40035 | 40097 => "invalid parameter",
        40037 => "invalid template_id",
        40054 | 40055 => "invalid button URL domain",
        40114 => "invalid index (no article at that position)",
        40164 => "the caller's IP is not in the account's IP allow-list",
        41001 => "the access_token is missing",
        41005 => "media data missing",
        42001 => "the access_token expired",
        43004 => "the user does not follow the account",
        44003 => "empty news",
        45009 => "the daily quota of this API is spent (clear_quota resets it)",
        45011 => "the per-minute quota of this API is spent; retry next minute",
        45015 => "the 48-hour reply window is closed",
        45047 => "too many customer-service messages to this user",
        45065 => "a mass send with this clientmsgid exists",
        46003 => "no menu is set",
        48001 => "this account may not call this API (unverified or not granted)",
        48006 => "clear_quota was used too often this month",
        53500 => "publishing is limited for this account",
        53501 => "the publishing quota is spent",
        53502 => "invalid publish_id",
        53600 => "invalid article_id (unknown or deleted)",
        65301..=65305 => "the conditional menu does not exist or its match rule is invalid",
        88000 => "comments are not open on this article",
        88001 => "the article (msg_data_id) does not exist",
        88003 => "too many elected comments",
        88005 => "the comment already has a reply",
        88007 => "the reply is empty or too long",
        88008 => "the comment does not exist",
        88010 => "count must be 1..=50",
        _ => return None,
    })
}

/// The `errcode` of a WeChat JSON answer; a missing errcode means success (`0`).
pub fn errcode_of(body: &serde_json::Value) -> i64 {
    match body.get("errcode") {
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(-1),
        _ => 0,
    }
}

/// The `errmsg` of a WeChat JSON answer, empty when missing.
pub fn errmsg_of(body: &serde_json::Value) -> String {
    body.get("errmsg")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    /// Every row of the §6 table: (codes, class).
    const TABLE: &[(&[i64], ErrorClass)] = &[
        (&[-1], Backoff),
        (&[40001], Refresh),
        (
            &[40002, 40003, 40004, 40005, 40006, 40007, 40008],
            Permanent,
        ),
        (&[40009, 40010, 40011, 40012, 40013], Permanent),
        (&[40014], Refresh),
        (
            &[
                40015, 40016, 40017, 40018, 40019, 40020, 40021, 40022, 40023, 40024, 40025, 40026,
                40027, 40028, 40029, 40030, 40031, 40032, 40033, 40035, 40037, 40038, 40039,
            ],
            Permanent,
        ),
        (
            &[40048, 40054, 40055, 40050, 40051, 40060, 40097],
            Permanent,
        ),
        (
            &[
                40117, 40118, 40119, 40120, 40121, 40125, 40132, 40137, 40155, 40163, 40164, 40243,
            ],
            Permanent,
        ),
        (&[41001], Refresh),
        (
            &[41002, 41003, 41004, 41005, 41006, 41007, 41008, 41009],
            Permanent,
        ),
        (&[42001], Refresh),
        (&[42002, 42003, 42007], Permanent),
        (
            &[43001, 43002, 43003, 43004, 43005, 43019, 43101],
            Permanent,
        ),
        (&[44001, 44002, 44003, 44004], Permanent),
        (
            &[45001, 45002, 45003, 45004, 45005, 45006, 45007, 45008],
            Permanent,
        ),
        (&[45009], Quota),
        (&[45010], Permanent),
        (&[45011], Backoff),
        (&[45015, 45016, 45017, 45018], Permanent),
        (&[45028], Quota),
        (&[45047], Quota),
        (&[45064], Permanent),
        // 45065 is a success for the mass-send caller (see the module docs).
        (&[45065], Permanent),
        (&[45066], Backoff),
        (&[45067, 45072, 45080, 45081, 45083, 45084], Permanent),
        (
            &[45157, 45158, 45159, 45056, 45057, 45058, 45059],
            Permanent,
        ),
        (&[46001, 46002, 46003, 46004, 47001, 47003], Permanent),
        (&[48001, 48002, 48004, 48005, 48006, 48008], Permanent),
        (
            &[50001, 50002, 50005, 53500, 53501, 53502, 53600],
            Permanent,
        ),
        (
            &[61451, 61452, 61453, 61454, 61455, 61456, 61457],
            Permanent,
        ),
        (&[61450], Backoff),
        (&[61500, 63001, 63002], Permanent),
        (
            &[
                65301, 65302, 65303, 65304, 65305, 65306, 65307, 65308, 65309, 65310,
            ],
            Permanent,
        ),
        (
            &[65311, 65312, 65313, 65314, 65315, 65316, 65317],
            Permanent,
        ),
        (&[87009, 87014, 89501, 89503, 89506, 89507], Permanent),
        (&[9001001, 9001036], Permanent),
    ];

    #[test]
    fn classify_matches_the_table() {
        for (codes, class) in TABLE {
            for &code in *codes {
                assert_eq!(classify(code), *class, "errcode {code}");
            }
        }
        assert_eq!(classify(12345), Permanent, "unknown codes are permanent");
    }

    #[test]
    fn errcode_missing_is_zero() {
        let v = serde_json::json!({"access_token": "x", "expires_in": 7200});
        assert_eq!(errcode_of(&v), 0);
        assert_eq!(errmsg_of(&v), "");
        let v = serde_json::json!({"errcode": 40001, "errmsg": "invalid credential rid: 1"});
        assert_eq!(errcode_of(&v), 40001);
        assert_eq!(errmsg_of(&v), "invalid credential rid: 1");
        assert_eq!(errcode_of(&serde_json::json!({"errcode": "-1"})), -1);
    }
}
