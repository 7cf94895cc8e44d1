//! Replay protection for plaintext callbacks.
//!
//! WeChat's plaintext signature covers the token, `timestamp` and `nonce`, not the body: anyone
//! who saw one callback URL (an ingress access log keeps query strings) could POST any XML under
//! it while the timestamp is inside `gateway.timestamp_window_secs`. So the first message a
//! signature carries is bound to it in Redis (`SET NX GET`: Redis 7.0 or later; kept twice
//! the window), and the same signature with another message is refused with 403. WeChat's own
//! retry carries the same message and passes.
//!
//! The binding is keyed by the signature, not by `(timestamp, nonce)`: the signature hashes
//! the sorted parts with no separator, so the digits of one URL can be split anew between
//! `timestamp` and `nonce` under the same signature. And it is not per app: apps that share a
//! Token share signatures, so a URL seen for one app is refused for the others. Its value names
//! the app, the message id and the fingerprint of every field, so a replay that keeps the MsgId
//! but changes the content is refused too, not left to JetStream's dedupe.
//!
//! Safe and compatible mode need none of this: their `msg_signature` covers the ciphertext.
//! Redis is connected on first use and never part of the gateway's readiness: while it is down,
//! plaintext callbacks get 503 (WeChat retries) and safe-mode callbacks go on.

use std::time::Duration;

use tokio::sync::OnceCell;
use wxoa_runtime::Config;
use wxoa_runtime::config::RedisConfig;
use wxoa_runtime::connect::RedisConn;
use wxoa_wire::envelope::Envelope;
use wxoa_wire::names::keys;
use wxoa_wire::signature::digest;

use crate::error::GatewayError;

/// The signature bindings of every plaintext app.
pub(crate) struct Nonces {
    config: RedisConfig,
    redis: OnceCell<RedisConn>,
    ttl_secs: u64,
    timeout: Duration,
}

impl Nonces {
    /// Bindings kept twice the timestamp window (twice the dedupe window when the timestamp
    /// check is off), on the Redis of `config`, connected on first use.
    pub(crate) fn new(config: &Config) -> Nonces {
        let window = match config.gateway.timestamp_window_secs {
            0 => config.nats.duplicate_window_secs,
            w => w,
        };
        Nonces {
            config: config.redis.clone(),
            redis: OnceCell::new(),
            ttl_secs: 2 * window.max(1),
            timeout: Duration::from_millis(config.gateway.nonce_timeout_ms),
        }
    }

    /// Binds the plaintext callback's `signature` to the message `env`, or refuses a signature
    /// already bound to another message. Redis down or slow: 503, never a silent pass.
    pub(crate) async fn bind(&self, signature: &str, env: &Envelope) -> Result<(), GatewayError> {
        let key = keys::gateway_nonce(
            &self.config.key_prefix,
            &digest([signature.to_ascii_lowercase()]),
        );
        let message = digest([env.id.as_str(), &env.message.fingerprint()]);
        tokio::time::timeout(self.timeout, async {
            let redis = self
                .redis
                .get_or_try_init(|| wxoa_runtime::connect::redis(&self.config))
                .await
                .map_err(|e| GatewayError::Nonce(e.to_string()))?;
            // One plain command (Redis 7.0 or later): set when absent, else the value bound
            // before, which must be this message's.
            let bound: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&message)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(self.ttl_secs)
                .query_async(&mut redis.clone())
                .await
                .map_err(|e| GatewayError::Nonce(e.to_string()))?;
            Ok(bound.is_none_or(|bound| bound == message))
        })
        .await
        .map_err(|_| GatewayError::Nonce("Redis did not answer in time".into()))?
        .and_then(|fresh| {
            if fresh {
                Ok(())
            } else {
                Err(GatewayError::ReplayedNonce)
            }
        })
    }
}
