//! The one place an HTTP answer from WeChat becomes JSON or a [`WechatError`].

use std::time::Duration;

use crate::errcode::{classify, errcode_of, errmsg_of};
use crate::error::WechatError;

/// An HTTP client for the WeChat API with the configured per-request timeout.
pub fn http_client(config: &wxoa_runtime::config::WechatConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms.max(1)))
        .connect_timeout(Duration::from_millis(config.timeout_ms.clamp(1, 3000)))
        .user_agent(concat!("wxoa/", env!("CARGO_PKG_VERSION")))
        .build()
        // Only fails when the TLS backend cannot start; the default client would fail the same way.
        .unwrap_or_default()
}

/// `base` + `path` with exactly one `/` between them.
pub(crate) fn url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// What WeChat answered with errcode 0: JSON, or a file (from the download APIs).
#[derive(Debug, Clone)]
pub enum Answer {
    /// A JSON object.
    Json(serde_json::Value),
    /// A file, as sent.
    File {
        /// Its `Content-Type`.
        content_type: String,
        /// The file name of its `Content-Disposition`, if any.
        filename: Option<String>,
        /// The content.
        bytes: bytes::Bytes,
    },
}

impl Answer {
    /// The JSON answer; a file where JSON was expected is [`WechatError::Decode`].
    pub fn json(self) -> Result<serde_json::Value, WechatError> {
        match self {
            Answer::Json(value) => Ok(value),
            Answer::File { content_type, .. } => Err(WechatError::Decode(format!(
                "expected JSON, WeChat answered a file ({content_type})"
            ))),
        }
    }
}

/// Sends the request. JSON (or text) answers must be objects with errcode 0 (or none); any
/// other content type is a file.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Answer, WechatError> {
    let response = request.send().await.map_err(WechatError::http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(WechatError::Status(status.as_u16()));
    }
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    let disposition = header(reqwest::header::CONTENT_DISPOSITION);
    let bytes = response.bytes().await.map_err(WechatError::http)?;
    let is_json = content_type.is_empty()
        || content_type.contains("json")
        || content_type.starts_with("text/");
    if !is_json {
        return Ok(Answer::File {
            content_type,
            filename: disposition.as_deref().and_then(filename_of),
            bytes,
        });
    }
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| WechatError::Decode(format!("not JSON ({} bytes): {e}", bytes.len())))?;
    if !body.is_object() {
        return Err(WechatError::Decode(
            "the answer is not a JSON object".into(),
        ));
    }
    match errcode_of(&body) {
        0 => Ok(Answer::Json(body)),
        errcode => Err(WechatError::Api {
            errcode,
            errmsg: errmsg_of(&body),
            class: classify(errcode),
        }),
    }
}

/// Sends the request and returns the JSON answer when its errcode is 0 (or missing).
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
) -> Result<serde_json::Value, WechatError> {
    send(request).await?.json()
}

/// The `filename` of a `Content-Disposition` header.
fn filename_of(disposition: &str) -> Option<String> {
    disposition.split(';').find_map(|part| {
        let value = part.trim().strip_prefix("filename=")?;
        Some(value.trim_matches('"').to_owned()).filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_urls() {
        assert_eq!(url("http://h/", "/cgi-bin/token"), "http://h/cgi-bin/token");
        assert_eq!(url("http://h", "cgi-bin/token"), "http://h/cgi-bin/token");
    }

    #[test]
    fn reads_file_names() {
        assert_eq!(
            filename_of(r#"attachment; filename="a b.jpg""#).as_deref(),
            Some("a b.jpg")
        );
        assert_eq!(filename_of("attachment"), None);
    }
}
