//! The defences of the public routes: return URLs resolved as a browser does, CORS origins,
//! who the client is (the peer, or `X-Forwarded-For` from a trusted proxy) and the per-client
//! limit of `/oauth/<appid>/start`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use axum::http::HeaderMap;
use reqwest::Url;
use wxoa_runtime::telemetry::OncePerMinute;

use crate::WebError;

/// The most `web.max_return_len` may be: the return travels in the login cookie, and a cookie
/// (name, value and attributes) must stay under the 4096 bytes browsers keep.
pub(crate) const MAX_RETURN_LEN: usize = 2048;
/// The longest return once resolved (absolute, percent-encoded) that a login cookie carries.
const MAX_RESOLVED_LEN: usize = MAX_RETURN_LEN + 512;

/// Where OAuth2 may send a user back: this service's origin, or under a `web.return_urls`
/// prefix (same origin, at a path boundary).
pub(crate) struct ReturnPolicy {
    own: Url,
    prefixes: Vec<Url>,
    max_len: usize,
}

impl ReturnPolicy {
    /// The policy of `public_url` (absolute, no trailing `/`), `return_urls` and `max_len`.
    pub(crate) fn new(
        public_url: &str,
        return_urls: &[String],
        max_len: usize,
    ) -> Result<ReturnPolicy, String> {
        let own =
            absolute(public_url).map_err(|e| format!("web.public_url {public_url:?}: {e}"))?;
        let prefixes = return_urls
            .iter()
            .map(|p| {
                let url = absolute(p).map_err(|e| format!("web.return_urls entry {p:?}: {e}"))?;
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(format!(
                        "web.return_urls entry {p:?}: a prefix has no query or fragment"
                    ));
                }
                Ok(url)
            })
            .collect::<Result<_, _>>()?;
        if max_len == 0 || max_len > MAX_RETURN_LEN {
            return Err(format!(
                "web.max_return_len = {max_len}: must be 1..={MAX_RETURN_LEN} (the return travels in a cookie)"
            ));
        }
        Ok(ReturnPolicy {
            own,
            prefixes,
            max_len,
        })
    }

    /// The absolute URL to send the user back to for `ret`, resolved against `public_url` as
    /// a browser resolves a link (WHATWG URL parsing): 400 when it is too long or not a URL,
    /// 403 when it lands anywhere but this service or under a `web.return_urls` prefix.
    pub(crate) fn check(&self, ret: &str) -> Result<String, WebError> {
        let too_long = |len: usize| {
            WebError::BadRequest(format!(
                "the return URL is {len} bytes; at most {} are accepted (web.max_return_len)",
                self.max_len
            ))
        };
        if ret.len() > self.max_len {
            return Err(too_long(ret.len()));
        }
        // Browsers drop tabs and newlines anywhere and spaces at the ends: refuse them rather
        // than guess.
        if ret.is_empty() || ret.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(WebError::BadRequest(
                "the return URL is empty or has spaces or control characters".into(),
            ));
        }
        let url = self
            .own
            .join(ret)
            .map_err(|e| WebError::BadRequest(format!("the return URL is not a URL: {e}")))?;
        self.vet(url, ret)
    }

    /// A return [`ReturnPolicy::check`] gave, checked again (the policy may have changed
    /// since; the login cookie that carried it is signed).
    pub(crate) fn recheck(&self, resolved: &str) -> Result<String, WebError> {
        let url = Url::parse(resolved)
            .map_err(|e| WebError::BadRequest(format!("the return URL is not a URL: {e}")))?;
        self.vet(url, resolved)
    }

    /// `url` (resolved from `ret`) when it may be returned to.
    fn vet(&self, url: Url, ret: &str) -> Result<String, WebError> {
        let refused = || {
            WebError::Forbidden(format!(
                "return URL {ret} is not allowed: it must be on this service or under web.return_urls"
            ))
        };
        let path = url.path().to_ascii_lowercase();
        // `//…` as a path, or an encoded `/` or `\`: a relative form of it, or a page that
        // decodes its path, would leave the origin.
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || path.starts_with("//")
            || path.contains("%2f")
            || path.contains("%5c")
        {
            return Err(refused());
        }
        let allowed = url.origin() == self.own.origin()
            || self
                .prefixes
                .iter()
                .any(|p| p.origin() == url.origin() && under(url.path(), p.path()));
        if !allowed {
            return Err(refused());
        }
        // Resolving adds the origin and may percent-encode: bounded too, for the cookie.
        let url = String::from(url);
        if url.len() > MAX_RESOLVED_LEN {
            return Err(WebError::BadRequest(format!(
                "the return URL is {} bytes once resolved; at most {MAX_RESOLVED_LEN}",
                url.len()
            )));
        }
        Ok(url)
    }
}

/// `path` is `prefix` or below it at a `/` boundary.
fn under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// An absolute http(s) URL without credentials.
fn absolute(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("not an absolute http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("has credentials".into());
    }
    Ok(url)
}

/// The origins of `web.allowed_origins` (normalized: `https://Shop.example.com/` →
/// `https://shop.example.com`) and this service's own.
pub(crate) fn origins(public_url: &str, allowed: &[String]) -> Result<Vec<String>, String> {
    let mut origins = Vec::with_capacity(allowed.len() + 1);
    for entry in allowed {
        let url =
            absolute(entry).map_err(|e| format!("web.allowed_origins entry {entry:?}: {e}"))?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "web.allowed_origins entry {entry:?}: an origin is scheme://host[:port], no path"
            ));
        }
        origins.push(url.origin().ascii_serialization());
    }
    let own = absolute(public_url).map_err(|e| format!("web.public_url {public_url:?}: {e}"))?;
    origins.push(own.origin().ascii_serialization());
    Ok(origins)
}

/// An address or a CIDR block of `web.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, `127.0.0.1` (one address).
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("web.trusted_proxies entry {text:?}: not an IP address or CIDR");
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client of a request from `peer`: the peer itself unless it is a trusted proxy; then
/// the rightmost `X-Forwarded-For` hop that is not a trusted proxy (hops left of it are
/// whatever the client sent, so never believed). A hop that is not an address ends the walk
/// at the hop to its right.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[Cidr]) -> IpAddr {
    let trusted = |ip: IpAddr| proxies.iter().any(|p| p.contains(ip));
    let mut client = canonical(peer);
    if !trusted(client) {
        return client;
    }
    // Bytes, not `to_str`: a proxy appends its hop to the client's own line, so a line with a
    // non-UTF-8 byte the client wrote still ends with the hop the proxy saw.
    let hops: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|hop| hop_ip(hop.trim()))
        else {
            break;
        };
        client = canonical(ip);
        if !trusted(client) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn hop_ip(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// What the limit counts by: an IPv4 address, or an IPv6 /64 (one subscriber's prefix).
fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// Clients counted at most (those seen in the last minute); beyond, new clients pass
/// uncounted (the per-app cap still holds) rather than the map growing without bound.
const MAX_CLIENTS: usize = 100_000;

/// Starts per client per minute, in this process: a token bucket per client holding up to
/// `per_min` starts and refilled at `per_min` a minute (no double burst at window edges).
pub(crate) struct StartLimit {
    per_min: u32,
    buckets: Mutex<Buckets>,
    overflow_logged: OncePerMinute,
    refused_logged: OncePerMinute,
}

/// The clients seen in the last minute: their tokens and when they were last counted; a
/// client not seen for a minute has a full bucket, so it is dropped.
struct Buckets {
    clients: HashMap<IpAddr, (f64, i64)>,
    swept_ms: i64,
}

impl StartLimit {
    /// At most `per_min` starts per client per minute; 0: no limit.
    pub(crate) fn new(per_min: u32) -> StartLimit {
        StartLimit {
            per_min,
            buckets: Mutex::new(Buckets {
                clients: HashMap::new(),
                swept_ms: 0,
            }),
            overflow_logged: OncePerMinute::new(),
            refused_logged: OncePerMinute::new(),
        }
    }

    /// Counts a start of `client` at `now_ms`; `false` when it is over the limit.
    pub(crate) fn allow(&self, client: IpAddr, now_ms: i64) -> bool {
        if self.per_min == 0 {
            return true;
        }
        let burst = f64::from(self.per_min);
        let per_ms = burst / 60_000.0;
        let key = client_key(client);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms - buckets.swept_ms >= 60_000 {
            buckets
                .clients
                .retain(|_, (_, last)| now_ms - *last < 60_000);
            buckets.swept_ms = now_ms;
        }
        let full = buckets.clients.len() >= MAX_CLIENTS;
        match buckets.clients.get_mut(&key) {
            Some((tokens, last)) => {
                *tokens = (*tokens + (now_ms - *last).max(0) as f64 * per_ms).min(burst);
                *last = now_ms;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    return true;
                }
                if self.refused_logged.first(now_ms) {
                    tracing::warn!(
                        client = %key,
                        per_min = self.per_min,
                        "a client reached web.start_per_client_per_min (logged once a minute); if every client shows as one proxy address, set web.trusted_proxies"
                    );
                }
                false
            }
            None if full => {
                if self.overflow_logged.first(now_ms) {
                    tracing::warn!(
                        clients = MAX_CLIENTS,
                        "more clients started logins in a minute than the per-client limit counts; the others pass uncounted (web.max_pending_per_app still holds)"
                    );
                }
                true
            }
            None => {
                buckets.clients.insert(key, (burst - 1.0, now_ms));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReturnPolicy {
        ReturnPolicy::new(
            "http://127.0.0.1:8090",
            &[
                "https://shop.example.com/a".into(),
                "https://pay.example.com/".into(),
            ],
            1024,
        )
        .unwrap()
    }

    #[test]
    fn returns_resolve_as_a_browser_does() {
        let p = policy();
        for (ret, to) in [
            ("/demo", "http://127.0.0.1:8090/demo"),
            ("/demo?x=%2F#f", "http://127.0.0.1:8090/demo?x=%2F#f"),
            ("demo", "http://127.0.0.1:8090/demo"),
            ("/a\\b", "http://127.0.0.1:8090/a/b"),
            ("https://shop.example.com/a", "https://shop.example.com/a"),
            (
                "https://shop.example.com/a/b",
                "https://shop.example.com/a/b",
            ),
            (
                "https://shop.example.com/a?q",
                "https://shop.example.com/a?q",
            ),
            ("https://pay.example.com/x", "https://pay.example.com/x"),
        ] {
            assert_eq!(p.check(ret).ok().as_deref(), Some(to), "{ret}");
        }
        for ret in [
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/%5cevil.example",
            "/%2F%2Fevil.example",
            "/x/..//evil.example",
            "https://shop.example.com/abc",
            "https://shop.example.com/",
            "https://shop.example.com.evil.com/a",
            "https://shop.example.com@evil.com/a",
            "https://u@shop.example.com/a",
            "https://shop.example.com/a/../b",
            "javascript:alert(1)",
            "http://127.0.0.1:8091/",
            "",
        ] {
            assert!(p.check(ret).is_err(), "{ret:?} let through");
        }
        assert!(p.check(&format!("/{}", "a".repeat(1023))).is_ok());
        assert!(matches!(
            p.check(&format!("/{}", "a".repeat(1024))),
            Err(WebError::BadRequest(_))
        ));
        assert!(ReturnPolicy::new("http://h", &["/relative".into()], 10).is_err());
        assert!(ReturnPolicy::new("http://h", &[], MAX_RETURN_LEN + 1).is_err());
    }

    #[test]
    fn origins_are_normalized_and_checked() {
        assert_eq!(
            origins(
                "http://127.0.0.1:8090",
                &["https://Shop.Example.com/".into()]
            )
            .unwrap(),
            ["https://shop.example.com", "http://127.0.0.1:8090"]
        );
        assert!(origins("http://h", &["https://shop.example.com/path".into()]).is_err());
        assert!(origins("http://h", &["shop.example.com".into()]).is_err());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let proxies = [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap(),
        ];
        let xff = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", v.parse().unwrap());
            h
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer is the client, whatever it says.
        assert_eq!(
            client_ip(ip("192.0.2.1"), &xff("1.1.1.1"), &proxies),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_ip(
                ip("10.1.1.1"),
                &xff("6.6.6.6, 192.0.2.9, 10.2.2.2"),
                &proxies
            ),
            ip("192.0.2.9")
        );
        assert_eq!(
            client_ip(ip("::1"), &xff("[2001:db8::5]:443"), &proxies),
            ip("2001:db8::5")
        );
        // A non-UTF-8 byte the client wrote does not hide the hop the proxy appended.
        let mut raw = HeaderMap::new();
        raw.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"\xff\xfe, 192.0.2.7").unwrap(),
        );
        assert_eq!(client_ip(ip("10.1.1.1"), &raw, &proxies), ip("192.0.2.7"));
        assert_eq!(
            client_ip(ip("10.1.1.1"), &xff("6.6.6.6, junk"), &proxies),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.1.1.1"), &HeaderMap::new(), &proxies),
            ip("10.1.1.1")
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("::ffff:1.2.3.4"))
        );
    }

    #[test]
    fn starts_are_limited_per_client_and_minute() {
        let limit = StartLimit::new(2);
        let a = "192.0.2.1".parse().unwrap();
        let b = "2001:db8:0:1::1".parse().unwrap();
        let b2 = "2001:db8:0:1::2".parse().unwrap();
        assert!(limit.allow(a, 0) && limit.allow(a, 1));
        assert!(!limit.allow(a, 2));
        assert!(limit.allow(b, 3) && limit.allow(b2, 4));
        assert!(!limit.allow(b, 5), "one /64 is one client");
        assert!(limit.allow(a, 30_002), "one start back after half a minute");
        assert!(!limit.allow(a, 30_003));
        assert!(
            limit.allow(a, 200_000) && limit.allow(a, 200_001),
            "full again"
        );
        assert!(!limit.allow(a, 200_002));
        assert_eq!(
            limit.buckets.lock().unwrap().clients.len(),
            1,
            "idle clients swept"
        );
        assert!(StartLimit::new(0).allow(a, 0));
    }
}
