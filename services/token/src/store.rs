//! The token service's Redis state: the credentials, the refresh lock and the force-refresh
//! budget. Keys come from `wxoa_wire::names::keys`.

use wxoa_wire::names::keys;
use wxoa_wire::token::TokenKind;

/// How long the force-refresh counters live (the day they count, plus slack).
const FORCE_KEYS_TTL_SECS: i64 = 2 * 24 * 3600;

/// Deletes the lock only when it still holds our value (it may have expired and been retaken).
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Redis access for one deployment (one key prefix).
#[derive(Clone)]
pub(crate) struct Store {
    redis: wxoa_runtime::connect::RedisConn,
    prefix: String,
    release: std::sync::Arc<redis::Script>,
}

/// A held refresh lock; release it with [`Store::unlock`] (else it expires after its TTL).
pub(crate) struct Lock {
    key: String,
    value: String,
}

impl Store {
    pub(crate) fn new(redis: wxoa_runtime::connect::RedisConn, prefix: &str) -> Store {
        Store {
            redis,
            prefix: prefix.to_owned(),
            release: std::sync::Arc::new(redis::Script::new(RELEASE)),
        }
    }

    fn key(&self, app_id: &str, kind: TokenKind) -> String {
        match kind {
            TokenKind::AccessToken => keys::access_token(&self.prefix, app_id),
            TokenKind::JsapiTicket => keys::jsapi_ticket(&self.prefix, app_id),
        }
    }

    /// The current value.
    pub(crate) async fn get(
        &self,
        app_id: &str,
        kind: TokenKind,
    ) -> Result<Option<String>, redis::RedisError> {
        redis::cmd("GET")
            .arg(self.key(app_id, kind))
            .query_async(&mut self.redis.clone())
            .await
    }

    /// PTTL of the access_token and the jsapi_ticket (-2 missing, -1 no expiry).
    pub(crate) async fn pttls(&self, app_id: &str) -> Result<(i64, i64), redis::RedisError> {
        redis::pipe()
            .cmd("PTTL")
            .arg(self.key(app_id, TokenKind::AccessToken))
            .cmd("PTTL")
            .arg(self.key(app_id, TokenKind::JsapiTicket))
            .query_async(&mut self.redis.clone())
            .await
    }

    /// Writes a value with a TTL.
    pub(crate) async fn set(
        &self,
        app_id: &str,
        kind: TokenKind,
        value: &str,
        ttl_ms: u64,
    ) -> Result<(), redis::RedisError> {
        redis::cmd("SET")
            .arg(self.key(app_id, kind))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.redis.clone())
            .await
    }

    /// Takes the app's refresh lock (`SET NX PX` with a random value) if it is free.
    pub(crate) async fn try_lock(
        &self,
        app_id: &str,
        ttl_ms: u64,
    ) -> Result<Option<Lock>, redis::RedisError> {
        let key = keys::token_lock(&self.prefix, app_id);
        let value = format!("{:032x}", rand::random::<u128>());
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(taken.map(|_| Lock { key, value }))
    }

    /// Releases the lock if it is still ours; failures are logged (it expires anyway).
    pub(crate) async fn unlock(&self, lock: Lock) {
        let released: Result<i64, _> = self
            .release
            .key(&lock.key)
            .arg(&lock.value)
            .invoke_async(&mut self.redis.clone())
            .await;
        match released {
            Ok(1) => {}
            Ok(_) => tracing::warn!("the refresh lock had expired before it was released"),
            Err(e) => {
                tracing::warn!(error = %e, "releasing the refresh lock failed; it will expire")
            }
        }
    }

    /// Forced refreshes used on `day` and the unix ms of the last one.
    pub(crate) async fn force_budget(
        &self,
        app_id: &str,
        day: &str,
    ) -> Result<(u64, Option<i64>), redis::RedisError> {
        let (count, last): (Option<u64>, Option<i64>) = redis::pipe()
            .cmd("GET")
            .arg(keys::token_force_count(&self.prefix, app_id, day))
            .cmd("GET")
            .arg(keys::token_force_last(&self.prefix, app_id))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok((count.unwrap_or(0), last))
    }

    /// Counts one forced refresh on `day` at `now_ms`.
    pub(crate) async fn record_force(
        &self,
        app_id: &str,
        day: &str,
        now_ms: i64,
    ) -> Result<(), redis::RedisError> {
        let count = keys::token_force_count(&self.prefix, app_id, day);
        redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&count)
            .ignore()
            .cmd("EXPIRE")
            .arg(&count)
            .arg(FORCE_KEYS_TTL_SECS)
            .ignore()
            .cmd("SET")
            .arg(keys::token_force_last(&self.prefix, app_id))
            .arg(now_ms)
            .arg("EX")
            .arg(FORCE_KEYS_TTL_SECS)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await
    }
}
