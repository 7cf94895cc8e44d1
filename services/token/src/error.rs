//! [`TokenError`]: every failure of the token service.

use wxoa_wechat::WechatError;

/// A failure of the token service (starting, refreshing, answering).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// NATS or Redis did not accept the connection.
    #[error("connecting: {0}")]
    Connect(#[from] wxoa_runtime::connect::ConnectError),
    /// The refresh lock stayed taken for longer than a request may wait.
    #[error("the refresh lock of app {app_id} stayed taken for {waited_ms} ms")]
    LockBusy {
        /// The account.
        app_id: String,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The jsapi_ticket needs an access_token and Redis has none.
    #[error("no access_token in Redis for app {0} to fetch a ticket with")]
    NoAccessToken(String),
    /// Publishing to NATS failed.
    #[error("publishing to NATS: {0}")]
    Publish(String),
    /// Redis failed.
    #[error("talking to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The invalidation subscription could not be made.
    #[error("subscribing to {subject}: {message}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// A request named an app this deployment does not serve.
    #[error("unknown app {0}")]
    UnknownApp(String),
    /// WeChat refused or failed a token or ticket call.
    #[error("calling WeChat: {0}")]
    Wechat(#[from] WechatError),
}
