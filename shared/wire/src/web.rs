//! Web development helpers: the JS-SDK `wx.config` signature and the OAuth2 authorize URL.

use sha1::{Digest, Sha1};

/// `string1` of the JS-SDK signature: `jsapi_ticket=…&noncestr=…&timestamp=…&url=…` (raw
/// values; the URL without its `#` fragment).
pub fn jssdk_string1(jsapi_ticket: &str, noncestr: &str, timestamp: &str, url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    format!("jsapi_ticket={jsapi_ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}")
}

/// The JS-SDK signature: `hex(sha1(string1))`.
pub fn jssdk_signature(jsapi_ticket: &str, noncestr: &str, timestamp: &str, url: &str) -> String {
    hex::encode(Sha1::digest(jssdk_string1(jsapi_ticket, noncestr, timestamp, url).as_bytes()))
}

/// Percent-encodes every byte outside `[A-Za-z0-9_.~-]` (no safe characters).
pub fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The web-authorization URL, with its parameters in the order WeChat requires.
pub fn oauth_authorize_url(
    app_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: Option<&str>,
    component_appid: Option<&str>,
) -> String {
    let mut url = format!(
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid={app_id}&redirect_uri={}&response_type=code&scope={scope}",
        percent_encode(redirect_uri)
    );
    if let Some(state) = state {
        url.push_str("&state=");
        url.push_str(state);
    }
    if let Some(component) = component_appid {
        url.push_str("&component_appid=");
        url.push_str(component);
    }
    url.push_str("#wechat_redirect");
    url
}
