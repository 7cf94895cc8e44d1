//! A lease in Redis: one holder at a time for a long job, renewed while it runs, taken over by
//! another replica when its holder dies.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::connect::RedisConn;

/// Renews the lease when this holder still holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Releases the lease when this holder still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A held lease (`SET key owner NX PX ttl`), renewed every third of `ttl` by a task. Work under
/// it watches [`Lease::lost`]: cancelled when the lease could not be renewed or the parent
/// token was cancelled.
pub struct Lease {
    redis: RedisConn,
    key: String,
    owner: String,
    lost: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease `key` for `owner` if it is free; `None` when another holder has it.
    pub async fn acquire(
        redis: &RedisConn,
        key: String,
        owner: &str,
        ttl: Duration,
        parent: &CancellationToken,
    ) -> Result<Option<Lease>, redis::RedisError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut redis.clone())
            .await?;
        if taken.is_none() {
            return Ok(None);
        }
        let lost = parent.child_token();
        let renewer = {
            let (redis, key, owner, lost) =
                (redis.clone(), key.clone(), owner.to_owned(), lost.clone());
            tokio::spawn(async move {
                let script = redis::Script::new(RENEW);
                loop {
                    tokio::select! {
                        _ = lost.cancelled() => return,
                        _ = tokio::time::sleep(ttl / 3) => {}
                    }
                    let renewed: Result<i64, _> = script
                        .key(&key)
                        .arg(&owner)
                        .arg(ttl_ms)
                        .invoke_async(&mut redis.clone())
                        .await;
                    if !matches!(renewed, Ok(1)) {
                        tracing::warn!(key, "lost a lease; stopping its work");
                        lost.cancel();
                        return;
                    }
                }
            })
        };
        Ok(Some(Lease {
            redis: redis.clone(),
            key,
            owner: owner.to_owned(),
            lost,
            renewer,
        }))
    }

    /// Cancelled when the lease is lost or the parent token is cancelled.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Stops renewing and gives the lease back (if still held).
    pub async fn release(self) {
        self.lost.cancel();
        let _ = self.renewer.await;
        let released: Result<i64, _> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.owner)
            .invoke_async(&mut self.redis.clone())
            .await;
        if let Err(e) = released {
            tracing::warn!(key = self.key, error = %e, "releasing a lease failed; it runs out");
        }
    }
}

/// The loop of a job runner: calls `tick` now, then again every `interval` or as soon as
/// `kick` is notified (a job was started here), until `shutdown`.
pub async fn every<F, Fut>(
    shutdown: &CancellationToken,
    kick: &tokio::sync::Notify,
    interval: Duration,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while !shutdown.is_cancelled() {
        tick().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = kick.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Marks the job hash `key` as failed with `error` (state, error, updated_ms).
pub async fn fail_job(redis: &RedisConn, key: &str, error: &str) -> Result<(), redis::RedisError> {
    redis::cmd("HSET")
        .arg(key)
        .arg("state")
        .arg("failed")
        .arg("error")
        .arg(error)
        .arg("updated_ms")
        .arg(crate::now_ms())
        .query_async(&mut redis.clone())
        .await
}
