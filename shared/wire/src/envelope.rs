//! The event envelope: what the gateway publishes for every inbound message and event.
//!
//! Payload: JSON of [`Envelope`] (its JSON Schema is `docs/envelope.schema.json`). Headers:
//! `Nats-Msg-Id`, CloudEvents binary mode, `traceparent`, and the reply rendezvous
//! (`Wx-Reply-Subject`, `Wx-Reply-Deadline`) while a passive reply is possible.

use serde::{Deserialize, Serialize};

use crate::inbound::Inbound;
use crate::names::headers;

/// The JSON payload published to the inbound stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The envelope's schema version.
    pub v: u32,
    /// The account's AppID.
    pub app_id: String,
    /// `<appid>:<dedupe key>`: the Nats-Msg-Id and CloudEvents id.
    pub id: String,
    /// When the gateway received the callback, unix milliseconds.
    pub received_at_ms: i64,
    /// The parsed message: common fields, `detail` and every element in `fields`.
    #[serde(flatten)]
    pub message: Inbound,
}

/// The current envelope schema version.
pub const ENVELOPE_VERSION: u32 = 1;

impl Envelope {
    /// Wraps a parsed message received at `received_at_ms` for `app_id`.
    pub fn new(app_id: &str, received_at_ms: i64, message: Inbound) -> Envelope {
        Envelope::keyed(app_id, received_at_ms, message, 0)
    }

    /// Like [`Envelope::new`], with events whose `CreateTime` is before
    /// `legacy_events_before` (unix seconds) keyed by the old rule
    /// ([`Inbound::legacy_event_key`]). A retry carries its event's `CreateTime`, so every
    /// try of one event gets the same key on either side of an upgrade.
    pub fn keyed(
        app_id: &str,
        received_at_ms: i64,
        message: Inbound,
        legacy_events_before: i64,
    ) -> Envelope {
        let legacy = (message.create_time < legacy_events_before)
            .then(|| message.legacy_event_key())
            .flatten();
        let key = legacy.unwrap_or_else(|| message.dedupe_key());
        Envelope {
            v: ENVELOPE_VERSION,
            app_id: app_id.to_owned(),
            id: format!("{app_id}:{key}"),
            received_at_ms,
            message,
        }
    }

    /// Decodes an envelope delivered from the inbound stream on `subject`, for the app the
    /// subject names. NATS permissions are granted per subject, so the subject is what a
    /// publisher was allowed to write: an envelope whose `app_id` (or `id`) names another app
    /// is refused, and no consumer acts for an app on a payload's word.
    pub fn from_stream(prefix: &str, subject: &str, payload: &[u8]) -> Result<Envelope, String> {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|e| format!("envelope JSON: {e}"))?;
        let app_id = crate::names::subjects::app_id_of(prefix, subject);
        if !crate::names::is_token(&envelope.app_id) || app_id != Some(envelope.app_id.as_str()) {
            return Err(format!(
                "envelope of app {:?} published on {subject:?}, which is not that app's subject",
                envelope.app_id
            ));
        }
        if !envelope
            .id
            .strip_prefix(envelope.app_id.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
        {
            return Err(format!(
                "envelope id {:?} is not of app {:?}",
                envelope.id, envelope.app_id
            ));
        }
        Ok(envelope)
    }

    /// The JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    /// The NATS headers, in order. `reply` is the rendezvous subject and deadline (unix ms)
    /// when a passive reply is still possible.
    pub fn headers(
        &self,
        traceparent: &str,
        reply: Option<(&str, i64)>,
    ) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(12);
        h.push((headers::MSG_ID, self.id.clone()));
        h.push((headers::CE_SPECVERSION, "1.0".to_owned()));
        h.push((headers::CE_ID, self.id.clone()));
        h.push((headers::CE_TYPE, self.message.ce_type()));
        h.push((headers::CE_SOURCE, format!("/wechat/{}", self.app_id)));
        h.push((headers::CE_TIME, rfc3339_millis(self.received_at_ms)));
        h.push((headers::CE_SUBJECT, self.message.from_user_name.clone()));
        h.push((headers::CE_DATACONTENTTYPE, "application/json".to_owned()));
        h.push((headers::TRACEPARENT, traceparent.to_owned()));
        if let Some((subject, deadline_ms)) = reply {
            h.push((headers::REPLY_SUBJECT, subject.to_owned()));
            h.push((headers::REPLY_DEADLINE, deadline_ms.to_string()));
        }
        h
    }
}

/// A rendezvous key for a dedupe key: 16 hex chars of its SHA-1 (a valid subject token).
pub fn reply_key(msg_id: &str) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(&Sha1::digest(msg_id.as_bytes())[..8])
}

/// A fresh W3C `traceparent` (version 00, sampled).
pub fn new_traceparent() -> String {
    let trace: [u8; 16] = rand::random();
    let span: [u8; 8] = rand::random();
    format!("00-{}-{}-01", hex::encode(trace), hex::encode(span))
}

/// Formats unix milliseconds as RFC 3339 UTC (`2024-01-02T03:04:05.678Z`).
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The UTC day of unix milliseconds as `yyyymmdd` (quota and budget keys).
pub fn utc_day(unix_ms: i64) -> String {
    let s = rfc3339_millis(unix_ms);
    format!("{}{}{}", &s[0..4], &s[5..7], &s[8..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_day(1_700_000_000_123), "20231114");
    }

    #[test]
    fn envelope_round_trips_with_headers() {
        let xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>event</MsgType><Event>CLICK</Event><EventKey>K</EventKey></xml>";
        let env = Envelope::new("wx1", 5, Inbound::parse(xml).unwrap());
        let back: Envelope = serde_json::from_slice(&env.to_json()).unwrap();
        assert_eq!(back, env);
        let json: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
        assert_eq!(json["detail"]["kind"], "click");
        assert_eq!(json["fields"]["EventKey"], "K");
        let h = env.headers("00-x-y-01", Some(("s", 9)));
        let id = format!("wx1:event:o1:1:CLICK:{}", env.message.fingerprint());
        assert!(h.contains(&(headers::MSG_ID, id.clone())));
        assert!(h.contains(&(headers::CE_ID, id)));
        assert!(h.contains(&(headers::CE_TYPE, "wechat.event.click".into())));
        assert!(h.contains(&(headers::REPLY_DEADLINE, "9".into())));
        assert_eq!(reply_key("a").len(), 16);
        assert_eq!(new_traceparent().len(), 55);
    }

    #[test]
    fn an_envelope_is_taken_only_on_its_own_apps_subject() {
        let xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>text</MsgType><Content>x</Content><MsgId>5</MsgId></xml>";
        let env = Envelope::new("wxa", 5, Inbound::parse(xml).unwrap());
        let json = env.to_json();
        assert_eq!(
            Envelope::from_stream("p", "p.wxa.message.text", &json).unwrap(),
            env
        );
        for subject in ["p.wxb.message.text", "q.wxa.message.text", "p"] {
            assert!(
                Envelope::from_stream("p", subject, &json).is_err(),
                "{subject}"
            );
        }
        let mut forged = env.clone();
        forged.id = "wxb:msg:o1:5".into();
        assert!(Envelope::from_stream("p", "p.wxa.message.text", &forged.to_json()).is_err());
        assert!(Envelope::from_stream("p", "p.wxa.message.text", b"{").is_err());
    }

    #[test]
    fn events_created_before_the_cutover_keep_the_legacy_key() {
        let xml = |t: i64| {
            format!(
                "<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>{t}</CreateTime>\
                 <MsgType>event</MsgType><Event>CLICK</Event><EventKey>K</EventKey></xml>"
            )
        };
        let at = |t: i64, cutover: i64| {
            Envelope::keyed(
                "wx1",
                5,
                Inbound::parse(xml(t).as_bytes()).unwrap(),
                cutover,
            )
            .id
        };
        assert_eq!(at(99, 100), "wx1:event:o1:99:CLICK");
        assert!(at(100, 100).starts_with("wx1:event:o1:100:CLICK:"));
        assert_eq!(
            at(99, 0),
            Envelope::new("wx1", 5, Inbound::parse(xml(99).as_bytes()).unwrap()).id
        );
        // Messages keep their key whatever the cutover.
        let text = b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>text</MsgType><Content>x</Content><MsgId>5</MsgId></xml>";
        assert_eq!(
            Envelope::keyed("wx1", 5, Inbound::parse(text).unwrap(), 100).id,
            "wx1:msg:o1:5"
        );
    }
}
