//! The gateway's per-request CPU work, without I/O.
//!
//! - `plaintext`: verify `signature`, parse the XML, build the envelope, its JSON and headers.
//! - `safe_mode`: read `Encrypt`, verify `msg_signature`, decrypt, parse, envelope JSON.
//! - `passive_reply`: render a text reply, and render it into an encrypted envelope.
//!
//! The input is `shared/fixtures/inbound/msg_text.xml` beside the checkout, read at run time.
//! Run: `cargo bench -p wxoa-wire --bench inbound -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wxoa_wire::crypto::{self, AesKey};
use wxoa_wire::envelope::{self, Envelope};
use wxoa_wire::inbound::{EncryptedBody, Inbound};
use wxoa_wire::names::{self, DEFAULT_PREFIX};
use wxoa_wire::reply::{self, PassiveReply};
use wxoa_wire::signature;

/// The text-message fixture, relative to this crate (the same layout as the vector tests).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/inbound/msg_text.xml"
);

const APP_ID: &str = "wx0123456789abcdef";
const TOKEN: &str = "wxoaBenchToken2024";
const ENCODING_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const TIMESTAMP: &str = "1700000101";
const NONCE: &str = "1320562132";
const GATEWAY: &str = "gw-1";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const RECEIVED_AT_MS: i64 = 1_700_000_101_250;

fn fixture() -> Vec<u8> {
    std::fs::read(FIXTURE).unwrap_or_else(|e| {
        panic!(
            "cannot read the bench fixture {FIXTURE}: {e} (shared/ must sit beside the checkout)"
        )
    })
}

/// What the gateway does with a verified plaintext body: the envelope, its JSON and headers.
fn publish_parts(xml: &[u8]) -> (String, Vec<u8>, Vec<(&'static str, String)>) {
    let message = Inbound::parse(xml).expect("the fixture parses");
    let subject = message.subject(DEFAULT_PREFIX, APP_ID);
    let can_reply = message.can_reply();
    let env = Envelope::new(APP_ID, RECEIVED_AT_MS, message);
    let json = env.to_json();
    let reply_subject = can_reply.then(|| {
        names::subjects::reply(
            DEFAULT_PREFIX,
            APP_ID,
            GATEWAY,
            &envelope::reply_key(&env.id),
        )
    });
    let headers = env.headers(
        TRACEPARENT,
        reply_subject
            .as_deref()
            .map(|s| (s, RECEIVED_AT_MS + 4_500)),
    );
    (subject, json, headers)
}

fn plaintext(c: &mut Criterion) {
    let xml = fixture();
    let sig = signature::server_signature(TOKEN, TIMESTAMP, NONCE);
    let mut group = c.benchmark_group("plaintext");
    group.bench_function("verify_parse_envelope_json_headers", |b| {
        b.iter(|| {
            assert!(signature::verify_server_signature(
                black_box(TOKEN),
                black_box(TIMESTAMP),
                black_box(NONCE),
                black_box(&sig),
            ));
            publish_parts(black_box(&xml))
        })
    });
    group.bench_function("parse_only", |b| {
        b.iter(|| Inbound::parse(black_box(&xml)).expect("the fixture parses"))
    });
    group.finish();
}

fn safe_mode(c: &mut Criterion) {
    let xml = fixture();
    let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("a valid key");
    let message = Inbound::parse(&xml).expect("the fixture parses");
    let encrypt = key.encrypt_with(APP_ID, b"0123456789abcdef", &xml);
    let body = format!(
        "<xml>\n    <ToUserName><![CDATA[{}]]></ToUserName>\n    <Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>\n",
        message.to_user_name
    )
    .into_bytes();
    let msg_sig = signature::msg_signature(TOKEN, TIMESTAMP, NONCE, &encrypt);

    let mut group = c.benchmark_group("safe_mode");
    group.bench_function("verify_decrypt_parse_envelope_json", |b| {
        b.iter(|| {
            let outer = EncryptedBody::parse(black_box(&body)).expect("the body parses");
            assert!(signature::verify_msg_signature(
                TOKEN,
                TIMESTAMP,
                NONCE,
                &outer.encrypt,
                black_box(&msg_sig),
            ));
            let plain = key
                .decrypt(APP_ID, &outer.encrypt)
                .expect("the body decrypts");
            let message = Inbound::parse(&plain.message).expect("the plaintext parses");
            Envelope::new(APP_ID, RECEIVED_AT_MS, message).to_json()
        })
    });
    group.bench_function("decrypt_only", |b| {
        b.iter(|| key.decrypt(APP_ID, black_box(&encrypt)).expect("decrypts"))
    });
    group.finish();
}

fn passive_reply(c: &mut Criterion) {
    let xml = fixture();
    let message = Inbound::parse(&xml).expect("the fixture parses");
    let key = AesKey::from_encoding_aes_key(ENCODING_AES_KEY).expect("a valid key");
    let reply = PassiveReply::Text {
        content:
            "您好，我们的营业时间是每天 9:00–21:00。<a href=\"https://example.com/hours\">详情</a>"
                .to_owned(),
    };
    // The reply goes back to the sender, from the account.
    let (to, from, now) = (
        &message.from_user_name,
        &message.to_user_name,
        message.create_time + 1,
    );

    let mut group = c.benchmark_group("passive_reply");
    group.bench_function("render", |b| {
        b.iter(|| black_box(&reply).to_xml(to, from, now))
    });
    group.bench_function("render_encrypted_envelope", |b| {
        b.iter(|| {
            let reply_xml = black_box(&reply).to_xml(to, from, now);
            reply::encrypted_envelope(
                &key,
                APP_ID,
                TOKEN,
                &crypto::random_prefix(),
                &reply_xml,
                TIMESTAMP,
                NONCE,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, plaintext, safe_mode, passive_reply);
criterion_main!(benches);
