//! A rate limit shared by every replica: a Redis counter per second.

use std::time::Duration;

use crate::connect::RedisConn;

/// How many seconds [`acquire`] waits for room before it gives up.
const MAX_WAIT_SECS: u32 = 30;

/// Why no slot was had.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// Redis failed.
    #[error("rate counter: {0}")]
    Redis(#[from] redis::RedisError),
    /// The budget stayed used up.
    #[error("no room within {MAX_WAIT_SECS} s")]
    Busy,
}

/// Takes one slot of `limit` per second (0 = unlimited) from the counter `key(unix second)`,
/// waiting for the next second while the current one is used up.
pub async fn acquire(
    redis: &RedisConn,
    key: impl Fn(i64) -> String,
    limit: u32,
) -> Result<(), RateError> {
    if limit == 0 {
        return Ok(());
    }
    for _ in 0..MAX_WAIT_SECS * 2 {
        let now = crate::now_ms();
        let key = key(now.div_euclid(1000));
        let (used, _): (u32, bool) = redis::pipe()
            .incr(&key, 1)
            .expire(&key, 2)
            .query_async(&mut redis.clone())
            .await?;
        if used <= limit {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis((1000 - now.rem_euclid(1000)) as u64)).await;
    }
    Err(RateError::Busy)
}
