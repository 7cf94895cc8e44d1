//! [`WebError`]: every failure of the web service, and its HTTP answer in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failure of the web service.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// NATS or Redis did not accept the connection.
    #[error("connecting: {0}")]
    Connect(#[from] wxoa_runtime::connect::ConnectError),
    /// Binding or serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The `[web]` configuration is refused at start.
    #[error("web configuration: {0}")]
    Config(String),
    /// The request is wrong (a missing or bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// No session, or an expired one.
    #[error("not logged in")]
    Unauthorized,
    /// The origin or return URL is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A limit was reached (`Retry-After` says when to try again).
    #[error("{0}")]
    TooManyRequests(String),
    /// The app is not served here.
    #[error("unknown app {0}")]
    UnknownApp(String),
    /// Redis failed.
    #[error("talking to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// WeChat refused or failed.
    #[error(transparent)]
    Wechat(#[from] wxoa_wechat::WechatError),
}

impl WebError {
    /// The error's stable code (`wxoa_error` in OAuth2 redirects, `error.code` in JSON).
    pub fn code(&self) -> &'static str {
        match self {
            WebError::BadRequest(_) => "bad_request",
            WebError::Unauthorized => "unauthorized",
            WebError::Forbidden(_) => "forbidden",
            WebError::TooManyRequests(_) => "too_many_requests",
            WebError::UnknownApp(_) => "unknown_app",
            WebError::Wechat(e) => match e.errcode() {
                Some(40029) => "invalid_code",
                Some(40163) => "code_used",
                Some(40030) => "invalid_refresh_token",
                _ => "wechat",
            },
            WebError::Redis(_) | WebError::Connect(_) | WebError::Io(_) | WebError::Config(_) => {
                "unavailable"
            }
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::UnknownApp(_) => StatusCode::NOT_FOUND,
            WebError::Wechat(e) if e.errcode().is_some() && !e.is_transient() => {
                StatusCode::BAD_REQUEST
            }
            WebError::Wechat(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        // A 503's cause (a Redis or NATS error, which may name internal addresses) goes to
        // the log, not to the browser.
        let message = if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "web request failed");
            "the service is unavailable; try again later".to_owned()
        } else {
            self.to_string()
        };
        let body = json!({"error": {"code": self.code(), "message": message}});
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, WebError::TooManyRequests(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}
