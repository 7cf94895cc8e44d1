//! The token and ticket endpoints (`docs/wechat-protocol.md` §5.1, §5.10).
//!
//! Only the token service calls these: every other service reads tokens from Redis through
//! [`crate::WechatClient`]. Calling them elsewhere would replace tokens behind the token
//! service's back (`cgi-bin/token`) or burn the daily force-refresh budget (`stable_token`).

use secrecy::{ExposeSecret, SecretString};

use crate::error::WechatError;
use crate::http::{send_json, url};

/// A credential WeChat issued: an access_token or a ticket. `Debug` shows its fingerprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The token or ticket itself; never log it (log [`wxoa_wire::token::fingerprint`]).
    pub value: String,
    /// Seconds it stays valid at WeChat, counted from the answer.
    pub expires_in: u64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("fingerprint", &wxoa_wire::token::fingerprint(&self.value))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `GET /cgi-bin/token`: a new access_token; the previous one stays valid for 5 more minutes.
pub async fn fetch_token(
    http: &reqwest::Client,
    api_base: &str,
    appid: &str,
    secret: &SecretString,
) -> Result<Issued, WechatError> {
    let request = http.get(url(api_base, "/cgi-bin/token")).query(&[
        ("grant_type", "client_credential"),
        ("appid", appid),
        ("secret", secret.expose_secret()),
    ]);
    issued(send_json(request).await?, "access_token")
}

/// `POST /cgi-bin/stable_token`: the current stable access_token (the same one while it is
/// valid), or with `force_refresh` a new one that invalidates the previous at once (WeChat allows
/// 20 a day, 30 s apart).
pub async fn fetch_stable_token(
    http: &reqwest::Client,
    api_base: &str,
    appid: &str,
    secret: &SecretString,
    force_refresh: bool,
) -> Result<Issued, WechatError> {
    let body = serde_json::json!({
        "grant_type": "client_credential",
        "appid": appid,
        "secret": secret.expose_secret(),
        "force_refresh": force_refresh,
    });
    let request = http
        .post(url(api_base, "/cgi-bin/stable_token"))
        .json(&body);
    issued(send_json(request).await?, "access_token")
}

/// `GET /cgi-bin/ticket/getticket?type=jsapi`: the JS-SDK ticket.
pub async fn fetch_jsapi_ticket(
    http: &reqwest::Client,
    api_base: &str,
    access_token: &str,
) -> Result<Issued, WechatError> {
    let request = http
        .get(url(api_base, "/cgi-bin/ticket/getticket"))
        .query(&[("access_token", access_token), ("type", "jsapi")]);
    issued(send_json(request).await?, "ticket")
}

fn issued(body: serde_json::Value, field: &str) -> Result<Issued, WechatError> {
    let value = body
        .get(field)
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| WechatError::Decode(format!("no {field} in the answer")))?;
    let expires_in = match body.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| WechatError::Decode("no valid expires_in in the answer".into()))?;
    Ok(Issued {
        value: value.to_owned(),
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_issued() {
        let got = issued(
            serde_json::json!({"access_token": "AT", "expires_in": 7200}),
            "access_token",
        )
        .unwrap();
        assert_eq!(
            got,
            Issued {
                value: "AT".into(),
                expires_in: 7200
            }
        );
        assert!(
            !format!("{got:?}").contains("AT\""),
            "Debug hides the value"
        );
        let got = issued(
            serde_json::json!({"errcode": 0, "errmsg": "ok", "ticket": "T", "expires_in": "7200"}),
            "ticket",
        )
        .unwrap();
        assert_eq!(got.expires_in, 7200);
        assert!(issued(serde_json::json!({"expires_in": 7200}), "access_token").is_err());
        assert!(issued(serde_json::json!({"access_token": "AT"}), "access_token").is_err());
    }
}
