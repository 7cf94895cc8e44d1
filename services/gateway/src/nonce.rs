//! Replay protection for plaintext callbacks.
//!
//! WeChat's plaintext signature covers the token, `timestamp` and `nonce`, not the body: anyone
//! who saw one callback URL (an ingress access log keeps query strings) could POST any XML under
//! it while the timestamp is inside `gateway.timestamp_window_secs`. So the first message a
//! `(timestamp, nonce)` carries is bound to it in Redis (`SET NX`, kept twice the window), and
//! the same pair with another message is refused with 403. WeChat's own retry of the message
//! carries the same message and passes. Safe and compatible mode need none of this: their
//! `msg_signature` covers the ciphertext.

use std::time::Duration;

use wxoa_runtime::Config;
use wxoa_runtime::connect::RedisConn;
use wxoa_wire::envelope::reply_key;
use wxoa_wire::names::keys;

use crate::error::GatewayError;

/// Sets the binding when absent; 1 when the pair is fresh or bound to this message, 0 when it
/// is bound to another one.
const BIND: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
";

/// The nonce bindings of every plaintext app.
pub(crate) struct Nonces {
    redis: RedisConn,
    script: redis::Script,
    prefix: String,
    ttl_secs: u64,
    timeout: Duration,
}

impl Nonces {
    /// Bindings kept twice the timestamp window (twice the dedupe window when the timestamp
    /// check is off).
    pub(crate) fn new(config: &Config, redis: RedisConn) -> Nonces {
        let window = match config.gateway.timestamp_window_secs {
            0 => config.nats.duplicate_window_secs,
            w => w,
        };
        Nonces {
            redis,
            script: redis::Script::new(BIND),
            prefix: config.redis.key_prefix.clone(),
            ttl_secs: 2 * window.max(1),
            timeout: Duration::from_millis(config.gateway.nonce_timeout_ms),
        }
    }

    /// Binds `(timestamp, nonce)` of `app_id` to the message `msg_id`, or refuses a pair
    /// already bound to another message. Redis down or slow: 503, never a silent pass.
    pub(crate) async fn bind(
        &self,
        app_id: &str,
        timestamp: &str,
        nonce: &str,
        msg_id: &str,
    ) -> Result<(), GatewayError> {
        let key = keys::gateway_nonce(
            &self.prefix,
            app_id,
            &reply_key(&format!("{timestamp}:{nonce}")),
        );
        let mut invocation = self.script.key(key);
        invocation.arg(reply_key(msg_id)).arg(self.ttl_secs);
        let mut redis = self.redis.clone();
        let bound: i64 = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut redis))
            .await
            .map_err(|_| GatewayError::Nonce("Redis did not answer in time".into()))?
            .map_err(|e| GatewayError::Nonce(e.to_string()))?;
        if bound == 1 {
            Ok(())
        } else {
            Err(GatewayError::ReplayedNonce)
        }
    }
}
