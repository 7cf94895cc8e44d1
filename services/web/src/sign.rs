//! Signed OAuth2 states and session tokens (HMAC-SHA1 with `web.session_secret`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The signing key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

/// The user a session token carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The account.
    pub app_id: String,
    /// The user's OpenID.
    pub openid: String,
    /// The UnionID, when bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// `snsapi_base` or `snsapi_userinfo`.
    pub scope: String,
    /// The profile from `/sns/userinfo` (userinfo scope only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<serde_json::Value>,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// A login in progress, in the HttpOnly cookie `/start` sets (signed, so the browser can
/// neither forge nor alter it): it binds the state to the browser that started the login and
/// carries where to send the user back, so Redis keeps nothing of it but the state's nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    /// The account.
    #[serde(rename = "a")]
    pub app_id: String,
    /// The hex SHA-1 of the state's nonce.
    #[serde(rename = "n")]
    pub nonce_hash: String,
    /// The absolute URL to send the user back to (checked at `/start`).
    #[serde(rename = "r")]
    pub ret: String,
    /// Expiry, unix seconds (the state's).
    #[serde(rename = "e")]
    pub exp: i64,
}

impl Login {
    /// The hash of `nonce` a login cookie holds.
    pub fn hash(nonce: &str) -> String {
        use sha1::Digest;
        hex::encode(Sha1::digest(nonce.as_bytes()))
    }
}

impl Signer {
    /// A signer with `secret`, or a random key when it is empty.
    pub fn new(secret: &str) -> Signer {
        let key = if secret.is_empty() {
            rand::random::<[u8; 32]>().to_vec()
        } else {
            secret.as_bytes().to_vec()
        };
        Signer { key }
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> HmacSha1 {
        let mut mac = HmacSha1::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(data);
        mac
    }

    /// A fresh OAuth2 `state`: 32 hex chars of nonce and 32 of its MAC (only `[0-9a-f]`, as
    /// WeChat allows). Returns `(state, nonce)`.
    pub fn new_state(&self) -> (String, String) {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let mac = hex::encode(self.mac("state", nonce.as_bytes()).finalize().into_bytes());
        (format!("{nonce}{}", &mac[..32]), nonce)
    }

    /// The nonce of a state this signer made.
    pub fn check_state<'a>(&self, state: &'a str) -> Option<&'a str> {
        if state.len() != 64 || !state.is_ascii() {
            return None;
        }
        let (nonce, mac) = state.split_at(32);
        let mac = hex::decode(mac).ok()?;
        self.mac("state", nonce.as_bytes())
            .verify_truncated_left(&mac)
            .ok()
            .map(|()| nonce)
    }

    /// `value` signed for `purpose`: `base64url(JSON).base64url(MAC)`.
    fn sign<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serializes"));
        let mac = self
            .mac(purpose, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The value of a token [`Signer::sign`] made for `purpose`.
    fn verify<T: for<'de> Deserialize<'de>>(&self, purpose: &str, token: &str) -> Option<T> {
        let (payload, mac) = token.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.mac(purpose, payload.as_bytes())
            .verify_slice(&mac)
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    /// A session token: `base64url(JSON).base64url(MAC)`.
    pub fn session_token(&self, session: &Session) -> String {
        self.sign("session", session)
    }

    /// The session of a token this signer made, if it has not expired at `now` (unix seconds).
    pub fn check_session(&self, token: &str, now: i64) -> Option<Session> {
        let session: Session = self.verify("session", token)?;
        (session.exp > now).then_some(session)
    }

    /// The value of the login cookie for `login`.
    pub fn login_cookie(&self, login: &Login) -> String {
        self.sign("login", login)
    }

    /// The login of a cookie value this signer made, if it has not expired at `now` (unix
    /// seconds).
    pub fn check_login(&self, cookie: &str, now: i64) -> Option<Login> {
        let login: Login = self.verify("login", cookie)?;
        (login.exp > now).then_some(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_sessions_are_signed() {
        let signer = Signer::new("secret");
        let (state, nonce) = signer.new_state();
        assert_eq!(state.len(), 64);
        assert!(state.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(signer.check_state(&state), Some(nonce.as_str()));
        let mut forged = state.clone();
        forged.replace_range(63..64, if state.ends_with('0') { "1" } else { "0" });
        assert_eq!(signer.check_state(&forged), None);
        assert_eq!(Signer::new("other").check_state(&state), None);

        let session = Session {
            app_id: "wx1".into(),
            openid: "o1".into(),
            unionid: None,
            scope: "snsapi_base".into(),
            profile: None,
            exp: 100,
        };
        let token = signer.session_token(&session);
        assert_eq!(signer.check_session(&token, 99), Some(session.clone()));
        assert_eq!(signer.check_session(&token, 100), None, "expired");
        assert_eq!(Signer::new("other").check_session(&token, 1), None);
        // Another payload under the original MAC: refused.
        let (_, mac) = token.split_once('.').unwrap();
        let other = signer.session_token(&Session {
            openid: "o2".into(),
            ..session
        });
        let (payload, _) = other.split_once('.').unwrap();
        assert_eq!(signer.check_session(&format!("{payload}.{mac}"), 1), None);

        // A login cookie: signed for its purpose only, and expiring.
        let login = Login {
            app_id: "wx1".into(),
            nonce_hash: Login::hash(&nonce),
            ret: "https://h/demo".into(),
            exp: 100,
        };
        let cookie = signer.login_cookie(&login);
        assert_eq!(signer.check_login(&cookie, 99), Some(login));
        assert_eq!(signer.check_login(&cookie, 100), None, "expired");
        assert_eq!(Signer::new("other").check_login(&cookie, 1), None);
        assert_eq!(signer.check_login(&token, 1), None, "a session is no login");
        assert_eq!(
            signer.check_session(&cookie, 1),
            None,
            "a login is no session"
        );
    }
}
