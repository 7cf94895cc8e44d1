//! [`ReplierError`]: every failure of the replier, and how each maps to a JetStream settlement
//! (transient → nak with backoff, else terminate) and to a request-API error code.

use wxoa_runtime::consumer::Failure;
use wxoa_wire::command::{ApiError, ApiErrorBody};

/// A failure of the replier (starting, handling a message or command, answering a request).
#[derive(Debug, thiserror::Error)]
pub enum ReplierError {
    /// NATS or Redis did not accept the connection, or a stream could not be made.
    #[error("connecting: {0}")]
    Connect(#[from] wxoa_runtime::connect::ConnectError),
    /// A durable consumer could not be provisioned or run.
    #[error(transparent)]
    Consumer(#[from] wxoa_runtime::consumer::ConsumerError),
    /// A request subscription could not be made or ended.
    #[error(transparent)]
    Responder(#[from] wxoa_runtime::responder::ResponderError),
    /// The rules file or a rule is invalid.
    #[error(transparent)]
    Rule(#[from] wxoa_rules::RuleError),
    /// The rules file could not be read.
    #[error("reading rules file {path}: {message}")]
    RulesFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A message, command or request that will never be handled as it is.
    #[error("{0}")]
    Invalid(String),
    /// A request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Another replica holds the work; try again later.
    #[error("{0}")]
    Busy(String),
    /// Publishing to NATS (or JetStream) failed.
    #[error("publishing to NATS: {0}")]
    Publish(String),
    /// Redis failed.
    #[error("talking to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A WeChat call failed in a way worth retrying.
    #[error("calling WeChat: {0}")]
    Wechat(#[from] wxoa_wechat::WechatError),
}

impl Failure for ReplierError {
    fn is_transient(&self) -> bool {
        match self {
            ReplierError::Invalid(_) | ReplierError::NotFound(_) | ReplierError::Rule(_) => false,
            ReplierError::Wechat(e) => e.is_transient(),
            _ => true,
        }
    }
}

impl ReplierError {
    /// The request-API answer for this error: `{"error":{"code","message"}}`.
    pub fn to_api(&self) -> ApiErrorBody {
        let code = match self {
            ReplierError::Invalid(_) | ReplierError::Rule(_) => "invalid",
            ReplierError::NotFound(_) => "not_found",
            ReplierError::Busy(_)
            | ReplierError::Publish(_)
            | ReplierError::Redis(_)
            | ReplierError::Wechat(_) => "unavailable",
            _ => "internal",
        };
        ApiErrorBody {
            error: ApiError {
                code: code.to_owned(),
                message: self.to_string(),
            },
        }
    }
}
