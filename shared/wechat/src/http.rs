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

/// Sends the request and returns the JSON answer when its errcode is 0 (or missing).
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
) -> Result<serde_json::Value, WechatError> {
    let response = request.send().await.map_err(WechatError::http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(WechatError::Status(status.as_u16()));
    }
    let bytes = response.bytes().await.map_err(WechatError::http)?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| WechatError::Decode(format!("not JSON ({} bytes): {e}", bytes.len())))?;
    if !body.is_object() {
        return Err(WechatError::Decode(
            "the answer is not a JSON object".into(),
        ));
    }
    match errcode_of(&body) {
        0 => Ok(body),
        errcode => Err(WechatError::Api {
            errcode,
            errmsg: errmsg_of(&body),
            class: classify(errcode),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_urls() {
        assert_eq!(url("http://h/", "/cgi-bin/token"), "http://h/cgi-bin/token");
        assert_eq!(url("http://h", "cgi-bin/token"), "http://h/cgi-bin/token");
    }
}
