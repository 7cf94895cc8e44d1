//! The gateway's one error enum and its one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wxoa_wire::crypto::CryptoError;
use wxoa_wire::inbound::XmlError;

/// Why a callback was not accepted (or the gateway could not start).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The safe-mode ciphertext is broken or for another appid.
    #[error("decrypting the callback: {0}")]
    Crypto(#[from] CryptoError),
    /// The server could not bind or serve.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// A required query parameter is missing or not of its form.
    #[error("query parameter {0} is missing or invalid")]
    Param(&'static str),
    /// NATS did not store the message (down, or no PubAck in time).
    #[error("storing the message in JetStream: {0}")]
    Publish(String),
    /// Redis could not bind a plaintext callback's nonce (down, or no answer in time).
    #[error("checking the callback's nonce in Redis: {0}")]
    Nonce(String),
    /// The signature does not match.
    #[error("signature mismatch")]
    Signature,
    /// Connecting or provisioning at startup failed.
    #[error("starting the gateway: {0}")]
    Startup(#[from] wxoa_runtime::connect::ConnectError),
    /// The timestamp is outside the accepted window.
    #[error("timestamp outside the accepted window")]
    StaleTimestamp,
    /// A plaintext callback's `(timestamp, nonce)` was already used for another message: a
    /// replayed URL with a forged body.
    #[error("this timestamp and nonce were already used for another message")]
    ReplayedNonce,
    /// ToUserName is not the app's configured original id.
    #[error("ToUserName is not this account's original id")]
    WrongAccount,
    /// No `[[apps]]` entry for this appid.
    #[error("unknown app")]
    UnknownApp,
    /// The body is not acceptable XML.
    #[error("reading the message XML: {0}")]
    Xml(#[from] XmlError),
    /// The body could not be read: over `gateway.body_limit_bytes` (413) or broken.
    #[error("reading the body: {message}")]
    Body {
        /// 413 for a body over the limit, else 400.
        status: StatusCode,
        /// Why.
        message: String,
    },
    /// A method other than GET (URL verification) and POST (callbacks).
    #[error("method not allowed: WeChat sends GET (URL verification) and POST (callbacks)")]
    Method,
}

impl GatewayError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Crypto(_) | GatewayError::Param(_) | GatewayError::Xml(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::Signature
            | GatewayError::StaleTimestamp
            | GatewayError::ReplayedNonce
            | GatewayError::WrongAccount => StatusCode::FORBIDDEN,
            GatewayError::UnknownApp => StatusCode::NOT_FOUND,
            GatewayError::Publish(_) | GatewayError::Nonce(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Body { status, .. } => *status,
            GatewayError::Method => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Io(_) | GatewayError::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The closed-set metric label of this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            GatewayError::Crypto(_) => "bad_ciphertext",
            GatewayError::Param(_) => "bad_query",
            GatewayError::Xml(_) => "bad_xml",
            GatewayError::Signature => "bad_signature",
            GatewayError::StaleTimestamp => "stale_timestamp",
            GatewayError::ReplayedNonce => "replayed_nonce",
            GatewayError::WrongAccount => "wrong_account",
            GatewayError::UnknownApp => "unknown_app",
            GatewayError::Publish(_) | GatewayError::Nonce(_) => "unavailable",
            GatewayError::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                "too_large"
            }
            GatewayError::Body { .. } => "bad_body",
            GatewayError::Method => "bad_method",
            GatewayError::Io(_) | GatewayError::Startup(_) => "internal",
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A 5xx body says no more than that: its cause (a Redis or NATS error, which may name
        // internal addresses) goes to the log only.
        let body = if status.is_server_error() {
            tracing::warn!(error = %self, "callback not stored");
            "the callback was not stored; retry later".to_owned()
        } else {
            tracing::debug!(error = %self, "callback rejected");
            self.to_string()
        };
        let mut response = (status, body).into_response();
        if let GatewayError::Method = self {
            response.headers_mut().insert(
                axum::http::header::ALLOW,
                axum::http::HeaderValue::from_static("GET, POST"),
            );
        }
        response
    }
}
