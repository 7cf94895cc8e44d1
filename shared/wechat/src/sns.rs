//! Web authorization (网页授权, `docs/wechat-protocol.md` §5.9): the per-user web access_token
//! from an OAuth2 code, its refresh, and the user's profile. These tokens are the user's, not
//! the account's: they never go to `/cgi-bin/*`.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::WechatError;
use crate::http::{send_json, url};

/// A web access_token grant. `Debug` hides the tokens.
#[derive(Clone, Deserialize, Serialize)]
pub struct WebGrant {
    /// The web access_token.
    pub access_token: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
    /// The refresh token (30 days).
    pub refresh_token: String,
    /// The user.
    pub openid: String,
    /// `snsapi_base` or `snsapi_userinfo`.
    pub scope: String,
    /// The UnionID, when the account is bound to an Open Platform account.
    #[serde(default)]
    pub unionid: Option<String>,
}

impl std::fmt::Debug for WebGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebGrant")
            .field("openid", &self.openid)
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

fn grant(body: serde_json::Value) -> Result<WebGrant, WechatError> {
    serde_json::from_value(body).map_err(|e| WechatError::Decode(format!("web grant: {e}")))
}

/// `GET /sns/oauth2/access_token`: exchanges a code (single use, 5 minutes) for a grant.
pub async fn exchange_code(
    http: &reqwest::Client,
    api_base: &str,
    appid: &str,
    secret: &SecretString,
    code: &str,
) -> Result<WebGrant, WechatError> {
    let request = http.get(url(api_base, "/sns/oauth2/access_token")).query(&[
        ("appid", appid),
        ("secret", secret.expose_secret()),
        ("code", code),
        ("grant_type", "authorization_code"),
    ]);
    grant(send_json(request).await?)
}

/// `GET /sns/oauth2/refresh_token`: a new web access_token from the refresh token.
pub async fn refresh(
    http: &reqwest::Client,
    api_base: &str,
    appid: &str,
    refresh_token: &str,
) -> Result<WebGrant, WechatError> {
    let request = http
        .get(url(api_base, "/sns/oauth2/refresh_token"))
        .query(&[
            ("appid", appid),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]);
    grant(send_json(request).await?)
}

/// `GET /sns/userinfo` (needs an `snsapi_userinfo` grant): the user's profile as WeChat gives it.
pub async fn userinfo(
    http: &reqwest::Client,
    api_base: &str,
    web_token: &str,
    openid: &str,
) -> Result<serde_json::Value, WechatError> {
    let request = http.get(url(api_base, "/sns/userinfo")).query(&[
        ("access_token", web_token),
        ("openid", openid),
        ("lang", "zh_CN"),
    ]);
    send_json(request).await
}
