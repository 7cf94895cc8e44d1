//! [`WorkerError`]: every failure of a worker that calls WeChat (user sync, broadcasts), how it
//! settles a JetStream message and how it answers a request.

use wxoa_runtime::consumer::Failure;
use wxoa_wire::command::{ApiError, ApiErrorBody};

/// A failure of a worker (starting, handling a message, running a job, answering a request).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// NATS or Redis did not accept the connection, or a stream could not be made.
    #[error("connecting: {0}")]
    Connect(#[from] wxoa_runtime::connect::ConnectError),
    /// A durable consumer could not be provisioned or run.
    #[error(transparent)]
    Consumer(#[from] wxoa_runtime::consumer::ConsumerError),
    /// A request subscription could not be made or ended.
    #[error(transparent)]
    Responder(#[from] wxoa_runtime::responder::ResponderError),
    /// A message, command or request that will never be handled as it is.
    #[error("{0}")]
    Invalid(String),
    /// Work stopped for a shutdown, a lost lease, a pause or a cancel.
    #[error("stopped (shutdown or lost lease)")]
    Stopped,
    /// A request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Publishing to NATS (or JetStream) failed.
    #[error("publishing to NATS: {0}")]
    Publish(String),
    /// Redis failed.
    #[error("talking to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The rate limit stayed used up.
    #[error(transparent)]
    Rate(#[from] wxoa_runtime::rate::RateError),
    /// A WeChat call failed.
    #[error(transparent)]
    Wechat(#[from] crate::WechatError),
}

impl Failure for WorkerError {
    fn is_transient(&self) -> bool {
        match self {
            WorkerError::Invalid(_) | WorkerError::NotFound(_) => false,
            WorkerError::Wechat(e) => e.is_transient(),
            _ => true,
        }
    }
}

impl WorkerError {
    /// The request-API answer for this error: `{"error":{"code","message"}}`; a WeChat refusal
    /// keeps its errcode in the message.
    pub fn to_api(&self) -> ApiErrorBody {
        let code = match self {
            WorkerError::Invalid(_) => "invalid",
            WorkerError::NotFound(_) => "not_found",
            WorkerError::Wechat(e) if !e.is_transient() && e.errcode().is_some() => "invalid",
            WorkerError::Redis(_) | WorkerError::Rate(_) | WorkerError::Wechat(_) => "unavailable",
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
