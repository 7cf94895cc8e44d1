//! The checks behind each fuzz target, kept in a library so that `tests/replay.rs` can run the
//! saved crash inputs (`regressions/<target>/`) and the seeds on stable without libFuzzer.
//!
//! Every function takes the raw fuzzer input and panics only when an invariant is broken:
//! parsing hostile input must never panic, and whatever is accepted must survive what the
//! gateway and the consumers do with it next (envelope, NATS headers and subject, JSON).

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use wxoa_runtime::Config;
use wxoa_wire::crypto::AesKey;
use wxoa_wire::envelope::{self, Envelope};
use wxoa_wire::inbound::{Detail, Document, EncryptedBody, Inbound};

/// The fixed key of the `decrypt` target: the wechatpy-generated cases in
/// `shared/vectors/decrypt.json` and `encrypt.json` (their ciphertexts are the seeds).
pub const ENCODING_AES_KEY: &str = "iouTTyPatiK27F4T3TgOLubYXrMxbyq0dvBPAG1XykI";
/// The appid those cases were encrypted for.
pub const APPID: &str = "wxab7ed013e50181d9";

/// A `decrypt` input starting with this byte is a plaintext buffer (random ‖ len ‖ msg ‖ appid
/// ‖ pad) that the target encrypts itself, so the fuzzer steers the layout checks directly;
/// any other input is the `Encrypt` text as received.
pub const RAW_PLAINTEXT: u8 = b'!';

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const APP: &str = "wxfuzz0000000001";

/// What the gateway does with a callback body: `Document`, `EncryptedBody` and `Inbound`
/// parsing; for an accepted message the envelope, its NATS headers and subject, and its JSON.
pub fn inbound_xml(data: &[u8]) {
    if let Ok(doc) = Document::parse(data) {
        // The paths become the keys of the envelope's `fields` object: one path, one element.
        let flat = doc.flatten();
        let mut paths: Vec<&str> = flat.iter().map(|(path, _)| path.as_str()).collect();
        paths.sort_unstable();
        if let Some(twice) = paths.windows(2).find(|w| w[0] == w[1]) {
            panic!("two elements flatten to the path {:?}: {flat:?}", twice[0]);
        }
    }
    let _ = EncryptedBody::parse(data);
    if let Ok(message) = Inbound::parse(data) {
        check_message(message);
    }
}

fn check_message(message: Inbound) {
    let env = Envelope::new(APP, 1_700_000_000_123, message);
    for (name, value) in env.headers(TRACEPARENT, Some(("p.wx.reply.g.k", 1))) {
        // A line break or NUL would split the NATS header block.
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "header {name} carries a control character: {value:?}"
        );
    }
    let subject = env.message.subject("wechat", APP);
    assert!(
        subject.split('.').all(wxoa_wire::names::is_token),
        "subject {subject:?} is not made of tokens"
    );
    let json = env.to_json();
    let back: Envelope = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "an envelope does not decode its own JSON: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    same_envelope(&back, &env);
}

/// Equal envelopes, except that floats (locations) only have to decode: JSON has no NaN or
/// infinity, and serde_json's default float parsing is not bit-exact.
fn same_envelope(back: &Envelope, env: &Envelope) {
    if has_float(&env.message.detail) {
        assert_eq!(
            std::mem::discriminant(&back.message.detail),
            std::mem::discriminant(&env.message.detail)
        );
        let strip = |e: &Envelope| {
            let mut e = e.clone();
            e.message.detail = Detail::Unknown;
            e
        };
        assert_eq!(strip(back), strip(env));
    } else {
        assert_eq!(back, env);
    }
}

fn has_float(detail: &Detail) -> bool {
    matches!(
        detail,
        Detail::Location { .. } | Detail::LocationReport { .. } | Detail::LocationSelect { .. }
    )
}

/// The key of the `decrypt` target.
pub fn key() -> AesKey {
    AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("the vectors' key is valid")
}

/// Safe-mode decryption as the gateway runs it (`decrypt` for the app, then the XML parse), and
/// for every success: re-encrypting the result decrypts to the same parts.
pub fn decrypt(data: &[u8]) {
    let key = key();
    let encrypt = match data.split_first() {
        Some((&RAW_PLAINTEXT, plain)) => {
            let Some(encrypt) = raw_encrypt(&key, plain) else {
                return;
            };
            encrypt
        }
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    let for_app = key.decrypt(APPID, &encrypt);
    let any = key.decrypt_any(&encrypt);
    match (&for_app, &any) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(_), Err(e)) => panic!("decrypt succeeded where decrypt_any failed: {e}"),
        (Err(_), _) => {}
    }
    if let Ok(plain) = for_app {
        assert_eq!(plain.receive_id, APPID);
        if let Ok(message) = Inbound::parse(&plain.message) {
            check_message(message);
        }
    }
    if let Ok(plain) = any {
        let again = key.encrypt_with(&plain.receive_id, &plain.random, &plain.message);
        let back = key
            .decrypt_any(&again)
            .expect("a re-encrypted message decrypts");
        assert_eq!(back, plain);
    }
}

/// Encrypts `plain` cut to whole AES blocks, with no padding of its own: the pad bytes, the
/// length field and the receive id are whatever the fuzzer wrote.
fn raw_encrypt(key: &AesKey, plain: &[u8]) -> Option<String> {
    let len = plain.len() - plain.len() % 16;
    if len == 0 {
        return None;
    }
    let mut buf = plain[..len].to_vec();
    let out = cbc::Encryptor::<aes::Aes256>::new(key.key().into(), key.iv().into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .expect("whole blocks");
    Some(STANDARD.encode(out))
}

/// The input of a `decrypt` plaintext seed: [`RAW_PLAINTEXT`] and the padded buffer.
pub fn raw_plaintext_input(padded: &[u8]) -> Vec<u8> {
    let mut input = vec![RAW_PLAINTEXT];
    input.extend_from_slice(padded);
    input
}

/// What a consumer does with a delivery of the inbound stream: decode the envelope JSON (also
/// as `Envelope::from_stream` does, for its own app's subject), then read it (ids, subject,
/// CloudEvents type, headers, times), and encode it again.
pub fn envelope_decode(data: &[u8]) {
    let Ok(env) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    let subject = wxoa_wire::names::subjects::message("wechat", &env.app_id, "text");
    let _ = Envelope::from_stream("wechat", &subject, data);
    let message = &env.message;
    let _ = (
        message.legacy_event_key(),
        message.fingerprint(),
        envelope::reply_key(&env.id),
        message.dedupe_key(),
        message.ce_type(),
        message.can_reply(),
        message.is_event(),
        message.field("Content"),
        envelope::utc_day(env.received_at_ms),
    );
    let subject = message.subject("wechat", &env.app_id);
    assert!(
        subject.split('.').all(wxoa_wire::names::is_token),
        "subject {subject:?} is not made of tokens"
    );
    let _ = env.headers(TRACEPARENT, Some(("p.wx.reply.g.k", i64::MAX)));
    let json = env.to_json();
    let back: Envelope = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "a decoded envelope does not decode its own JSON: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    same_envelope(&back, &env);
}

/// The file layer of the config loader: TOML text → [`Config`], then what every service reads
/// of it (apps by appid, the redacted `Debug`).
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    for app in &config.apps {
        assert!(wxoa_wire::names::is_token(&app.appid), "{:?}", app.appid);
        assert_eq!(
            config.app(&app.appid).map(|a| a.appid.as_str()),
            Some(app.appid.as_str())
        );
    }
    assert!(
        config
            .nats
            .prefix
            .split('.')
            .all(wxoa_wire::names::is_token)
    );
    let _ = format!("{config:?}");
}

/// The check of one target.
pub type Check = fn(&[u8]);

/// The targets by name, for the replay test.
pub const TARGETS: &[(&str, Check)] = &[
    ("inbound_xml", inbound_xml),
    ("decrypt", decrypt),
    ("envelope_decode", envelope_decode),
    ("config_load", config_load),
];
