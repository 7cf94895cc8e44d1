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
    hex::encode(Sha1::digest(
        jssdk_string1(jsapi_ticket, noncestr, timestamp, url).as_bytes(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(
            percent_encode("a b+c/d?e=f&g#h%"),
            "a%20b%2Bc%2Fd%3Fe%3Df%26g%23h%25"
        );
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn jssdk_drops_the_fragment_only() {
        let plain = jssdk_string1("T", "N", "1", "https://e.com/p?a=1&b=%20");
        assert_eq!(
            plain,
            "jsapi_ticket=T&noncestr=N&timestamp=1&url=https://e.com/p?a=1&b=%20"
        );
        assert_eq!(
            jssdk_string1("T", "N", "1", "https://e.com/p?a=1&b=%20#x#y"),
            plain
        );
        assert_eq!(
            jssdk_signature("T", "N", "1", "https://e.com/#/route"),
            jssdk_signature("T", "N", "1", "https://e.com/")
        );
    }

    #[test]
    fn authorize_url_orders_state_before_component() {
        assert_eq!(
            oauth_authorize_url(
                "wx1",
                "https://e.com/cb",
                "snsapi_userinfo",
                Some("S"),
                Some("wxc")
            ),
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx1\
             &redirect_uri=https%3A%2F%2Fe.com%2Fcb&response_type=code&scope=snsapi_userinfo\
             &state=S&component_appid=wxc#wechat_redirect"
        );
    }
}
