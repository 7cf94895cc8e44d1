//! [`WechatError`]: every failure of a WeChat API call, and whether retrying later may help.

use crate::errcode::ErrorClass;

/// A failed WeChat API call. Messages never hold a token, a secret or a URL with either
/// (reqwest errors are stripped of their URL).
#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat answered errcode {errcode} ({class}): {errmsg}")]
    Api {
        /// The errcode.
        errcode: i64,
        /// The errmsg as sent (with its ` rid: …` suffix).
        errmsg: String,
        /// What to do about it.
        class: ErrorClass,
    },
    /// The answer was not the JSON expected.
    #[error("decoding WeChat's answer: {0}")]
    Decode(String),
    /// The HTTP request failed (connect, timeout, body).
    #[error("calling WeChat: {0}")]
    Http(#[source] reqwest::Error),
    /// The token service did not produce a fresh token (no responder, timeout, throttled, failed).
    #[error("invalidating the token: {0}")]
    Invalidate(String),
    /// Redis holds no access_token for this app (the token service has not filled it yet).
    #[error("no access_token in Redis for app {app_id}")]
    NoToken {
        /// The account.
        app_id: String,
    },
    /// Redis failed.
    #[error("reading Redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// WeChat answered with an HTTP status other than 2xx.
    #[error("WeChat answered HTTP {0}")]
    Status(u16),
    /// The app is not in this deployment's configuration.
    #[error("unknown app {0}")]
    UnknownApp(String),
}

impl WechatError {
    /// True when the same call may succeed later (nak with backoff); false when it never will as
    /// it is (terminate). Quota errors are not transient: they last until the period ends.
    pub fn is_transient(&self) -> bool {
        match self {
            WechatError::Api { class, .. } => {
                matches!(class, ErrorClass::Backoff | ErrorClass::Refresh)
            }
            WechatError::Decode(_) | WechatError::UnknownApp(_) => false,
            WechatError::Http(_)
            | WechatError::Invalidate(_)
            | WechatError::NoToken { .. }
            | WechatError::Redis(_) => true,
            WechatError::Status(status) => *status >= 500 || *status == 429,
        }
    }

    /// True when WeChat may have carried out the call although it failed here: the request
    /// left (not a connect error) and no answer said otherwise (a timeout, a broken body). A
    /// caller that must not do a thing twice (send a message) treats such a call as done.
    pub fn maybe_delivered(&self) -> bool {
        match self {
            WechatError::Http(e) => !e.is_connect() && !e.is_builder(),
            _ => false,
        }
    }

    /// The errcode when WeChat answered one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// The class of the errcode when WeChat answered one.
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            WechatError::Api { class, .. } => Some(*class),
            _ => None,
        }
    }

    /// An HTTP error with its URL removed (it may carry `access_token` or `secret`).
    pub(crate) fn http(error: reqwest::Error) -> Self {
        WechatError::Http(error.without_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_or_not() {
        let api = |errcode| WechatError::Api {
            errcode,
            errmsg: String::new(),
            class: crate::errcode::classify(errcode),
        };
        assert!(api(-1).is_transient());
        assert!(api(45011).is_transient());
        assert!(api(40001).is_transient());
        assert!(!api(45009).is_transient());
        assert!(!api(40003).is_transient());
        assert!(WechatError::Status(503).is_transient());
        assert!(WechatError::Status(429).is_transient());
        assert!(!WechatError::Status(404).is_transient());
        assert!(
            WechatError::NoToken {
                app_id: "wx1".into()
            }
            .is_transient()
        );
        assert!(!WechatError::UnknownApp("wx9".into()).is_transient());
        assert!(!WechatError::Decode("x".into()).is_transient());
        assert_eq!(api(45009).errcode(), Some(45009));
        assert_eq!(api(45009).class(), Some(ErrorClass::Quota));
        assert_eq!(WechatError::Status(500).errcode(), None);
    }
}
