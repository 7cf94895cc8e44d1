//! The JSON of the token service's NATS contracts.
//!
//! - `<prefix>.<appid>.token.invalidate` (request/reply, queue group `wxoa-token`): an
//!   [`InvalidateRequest`] answered by an [`InvalidateResponse`].
//! - `<prefix>.<appid>.token.refreshed` (publish): a [`RefreshedNotice`].
//!
//! A token never travels on NATS: messages name it by its [`fingerprint`].

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Which credential a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// The `access_token` of the REST API.
    AccessToken,
    /// The JS-SDK `jsapi_ticket`.
    JsapiTicket,
}

impl TokenKind {
    /// The JSON name: `access_token` or `jsapi_ticket` (also used as a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::JsapiTicket => "jsapi_ticket",
        }
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first 16 lowercase hex chars of `sha1(token)`: names a token in logs and on NATS without
/// revealing it.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha1::digest(token.as_bytes());
    hex::encode(&digest[..8])
}

/// "The token with this fingerprint was rejected by WeChat (40001/40014/42001/41001)": sent
/// by any service to `<prefix>.<appid>.token.invalidate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateRequest {
    /// Which credential was rejected.
    pub kind: TokenKind,
    /// [`fingerprint`] of the rejected value; the token service refreshes only while it is still
    /// the current one (compare-and-refresh).
    pub fingerprint: String,
}

/// What the token service did about an [`InvalidateRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidateStatus {
    /// The rejected value was current; a new one is now in Redis.
    Refreshed,
    /// The rejected value is no longer current (someone refreshed already); re-read Redis.
    AlreadyRefreshed,
    /// A refresh is needed but the force-refresh budget (per day, or the least interval) is
    /// spent; the value in Redis is unchanged.
    Throttled,
    /// The refresh failed (WeChat error, Redis error, lock not obtained, unknown app, bad request).
    Failed,
}

impl InvalidateStatus {
    /// The JSON name, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidateStatus::Refreshed => "refreshed",
            InvalidateStatus::AlreadyRefreshed => "already_refreshed",
            InvalidateStatus::Throttled => "throttled",
            InvalidateStatus::Failed => "failed",
        }
    }

    /// True when Redis now holds a value other than the rejected one (retrying makes sense).
    pub fn is_fresh(self) -> bool {
        matches!(
            self,
            InvalidateStatus::Refreshed | InvalidateStatus::AlreadyRefreshed
        )
    }
}

impl std::fmt::Display for InvalidateStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The token service's answer to an [`InvalidateRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateResponse {
    /// What happened.
    pub status: InvalidateStatus,
    /// Why, for `throttled` and `failed` (never a token or secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InvalidateResponse {
    /// A response without an error text.
    pub fn ok(status: InvalidateStatus) -> Self {
        InvalidateResponse {
            status,
            error: None,
        }
    }

    /// A response with an error text.
    pub fn with_error(status: InvalidateStatus, error: impl Into<String>) -> Self {
        InvalidateResponse {
            status,
            error: Some(error.into()),
        }
    }
}

/// "A new value is in Redis": published by the token service on
/// `<prefix>.<appid>.token.refreshed` after every write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshedNotice {
    /// The account.
    pub app_id: String,
    /// Which credential.
    pub kind: TokenKind,
    /// [`fingerprint`] of the new value.
    pub fingerprint: String,
    /// Unix ms at which the Redis key expires (before WeChat's own expiry).
    pub expires_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprint_is_sha1_prefix() {
        // sha1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        assert_eq!(fingerprint("abc"), "a9993e364706816a");
        assert_eq!(fingerprint("").len(), 16);
        assert_ne!(fingerprint("t1"), fingerprint("t2"));
    }

    #[test]
    fn json_shapes() {
        let req = InvalidateRequest {
            kind: TokenKind::AccessToken,
            fingerprint: "0123".into(),
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"kind":"access_token","fingerprint":"0123"})
        );
        let back: InvalidateRequest =
            serde_json::from_value(json!({"kind":"jsapi_ticket","fingerprint":"ab"})).unwrap();
        assert_eq!(back.kind, TokenKind::JsapiTicket);

        let resp = InvalidateResponse::ok(InvalidateStatus::AlreadyRefreshed);
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"status":"already_refreshed"})
        );
        let resp = InvalidateResponse::with_error(InvalidateStatus::Throttled, "daily limit");
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"status":"throttled","error":"daily limit"})
        );
        let back: InvalidateResponse = serde_json::from_value(json!({"status":"failed"})).unwrap();
        assert_eq!(back.status, InvalidateStatus::Failed);
        assert!(back.error.is_none());

        let notice = RefreshedNotice {
            app_id: "wx1".into(),
            kind: TokenKind::JsapiTicket,
            fingerprint: "ff".into(),
            expires_at_ms: 7,
        };
        let v = serde_json::to_value(&notice).unwrap();
        assert_eq!(
            v,
            json!({"app_id":"wx1","kind":"jsapi_ticket","fingerprint":"ff","expires_at_ms":7})
        );
        assert_eq!(
            serde_json::from_value::<RefreshedNotice>(v).unwrap(),
            notice
        );
    }

    #[test]
    fn statuses() {
        assert!(InvalidateStatus::Refreshed.is_fresh());
        assert!(InvalidateStatus::AlreadyRefreshed.is_fresh());
        assert!(!InvalidateStatus::Throttled.is_fresh());
        assert!(!InvalidateStatus::Failed.is_fresh());
        assert_eq!(TokenKind::AccessToken.to_string(), "access_token");
        assert!(serde_json::from_value::<TokenKind>(json!("bogus")).is_err());
    }
}
