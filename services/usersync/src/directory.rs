//! The follower directory in Redis: one hash per user (`keys::user`), the followers set
//! (`keys::followers`), a unionid → openid index, a set per tag and the blacklist set. Every
//! key carries the app's hash tag, so pipelines stay in one Redis Cluster slot.

use std::collections::HashMap;

use redis::AsyncCommands;
use wxoa_runtime::connect::RedisConn;
use wxoa_wire::names::keys;
use wxoa_wire::users::{UserRecord, openid_hash};

/// Reads and writes the directory.
#[derive(Clone)]
pub struct Directory {
    redis: RedisConn,
    prefix: String,
}

impl Directory {
    /// The directory under Redis key prefix `prefix`.
    pub fn new(redis: RedisConn, prefix: &str) -> Directory {
        Directory {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    /// Writes `users` (from WeChat) in one round trip after reading their current tags: the
    /// hash, followers set, unionid index and tag sets. With `seen`, also adds them to that set
    /// (a full sync's listed openids).
    pub async fn put(
        &self,
        app_id: &str,
        users: &[UserRecord],
        seen: Option<&str>,
    ) -> Result<(), redis::RedisError> {
        if users.is_empty() {
            return Ok(());
        }
        let mut read = redis::pipe();
        for user in users {
            read.hget(keys::user(&self.prefix, app_id, &user.openid), "tagid_list");
        }
        let old: Vec<Option<String>> = read.query_async(&mut self.redis.clone()).await?;
        let mut write = redis::pipe();
        let followers = keys::followers(&self.prefix, app_id);
        for (user, old) in users.iter().zip(old) {
            let key = keys::user(&self.prefix, app_id, &user.openid);
            let fields = user.to_fields();
            let absent: Vec<&str> = UserRecord::OPTIONAL_FIELDS
                .iter()
                .copied()
                .filter(|f| !fields.iter().any(|(k, _)| k == f))
                .collect();
            write.hset_multiple(&key, &fields).ignore();
            if !absent.is_empty() {
                write.hdel(&key, absent).ignore();
            }
            if user.subscribed {
                write.sadd(&followers, &user.openid).ignore();
            } else {
                write.srem(&followers, &user.openid).ignore();
            }
            if let Some(unionid) = &user.unionid {
                write
                    .set(keys::unionid(&self.prefix, app_id, unionid), &user.openid)
                    .ignore();
            }
            let old: Vec<i64> = old
                .unwrap_or_default()
                .split(',')
                .filter_map(|t| t.parse().ok())
                .collect();
            let now: &[i64] = if user.subscribed {
                &user.tagid_list
            } else {
                &[]
            };
            for tag in old.iter().filter(|t| !now.contains(t)) {
                write
                    .srem(keys::tag_members(&self.prefix, app_id, *tag), &user.openid)
                    .ignore();
            }
            for tag in now.iter().filter(|t| !old.contains(t)) {
                write
                    .sadd(keys::tag_members(&self.prefix, app_id, *tag), &user.openid)
                    .ignore();
            }
            if let Some(job) = seen {
                write
                    .sadd(keys::usersync_seen(&self.prefix, app_id, job), &user.openid)
                    .ignore();
            }
        }
        write.query_async::<()>(&mut self.redis.clone()).await
    }

    /// One user, if the directory knows them.
    pub async fn get(
        &self,
        app_id: &str,
        openid: &str,
    ) -> Result<Option<UserRecord>, redis::RedisError> {
        let fields: HashMap<String, String> = self
            .redis
            .clone()
            .hgetall(keys::user(&self.prefix, app_id, openid))
            .await?;
        Ok(UserRecord::from_fields(&fields))
    }

    /// Many users, in order (`None` where unknown), in one round trip.
    pub async fn get_many(
        &self,
        app_id: &str,
        openids: &[String],
    ) -> Result<Vec<Option<UserRecord>>, redis::RedisError> {
        let mut read = redis::pipe();
        for openid in openids {
            read.hgetall(keys::user(&self.prefix, app_id, openid));
        }
        let all: Vec<HashMap<String, String>> = read.query_async(&mut self.redis.clone()).await?;
        Ok(all.iter().map(UserRecord::from_fields).collect())
    }

    /// Marks users as left at `at_secs` (unix seconds): not in the followers set nor any tag set.
    pub async fn mark_left(
        &self,
        app_id: &str,
        openids: &[String],
        at_secs: i64,
        now_ms: i64,
    ) -> Result<(), redis::RedisError> {
        let users = self.get_many(app_id, openids).await?;
        let left: Vec<UserRecord> = openids
            .iter()
            .zip(users)
            .map(|(openid, user)| {
                let mut user = user.unwrap_or_else(|| UserRecord {
                    openid: openid.clone(),
                    ..UserRecord::default()
                });
                user.subscribed = false;
                user.unsubscribe_time = Some(at_secs);
                user.updated_ms = now_ms;
                user
            })
            .collect();
        // `put` drops non-followers from the followers and tag sets; their tag list is kept.
        self.put(app_id, &left, None).await
    }

    /// Followers now.
    pub async fn count(&self, app_id: &str) -> Result<u64, redis::RedisError> {
        self.redis
            .clone()
            .scard(keys::followers(&self.prefix, app_id))
            .await
    }

    /// A page of a set (followers, a tag, the blacklist) by `SSCAN` cursor: the next cursor
    /// (0 at the end) and the openids.
    pub async fn scan(
        &self,
        key: &str,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<String>), redis::RedisError> {
        redis::cmd("SSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.redis.clone())
            .await
    }

    /// The user with this unionid.
    pub async fn by_unionid(
        &self,
        app_id: &str,
        unionid: &str,
    ) -> Result<Option<UserRecord>, redis::RedisError> {
        let openid: Option<String> = self
            .redis
            .clone()
            .get(keys::unionid(&self.prefix, app_id, unionid))
            .await?;
        match openid {
            Some(openid) => self.get(app_id, &openid).await,
            None => Ok(None),
        }
    }

    /// Followers and their digest (XOR of [`openid_hash`]), as the simulator computes it.
    /// (`SSCAN` may return a member twice; each counts once.)
    pub async fn digest(&self, app_id: &str) -> Result<(u64, u64), redis::RedisError> {
        let key = keys::followers(&self.prefix, app_id);
        let (mut cursor, mut seen) = (0, std::collections::HashSet::new());
        loop {
            let (next, page) = self.scan(&key, cursor, 1000).await?;
            seen.extend(page.iter().map(|openid| openid_hash(openid)));
            if next == 0 {
                let digest = seen.iter().fold(0, |d, h| d ^ h);
                return Ok((seen.len() as u64, digest));
            }
            cursor = next;
        }
    }

    /// Adds or removes openids to a set key (blacklist), in one round trip.
    pub async fn set_members(
        &self,
        key: &str,
        openids: &[String],
        add: bool,
    ) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        if add {
            redis.sadd(key, openids).await
        } else {
            redis.srem(key, openids).await
        }
    }

    /// The Redis key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
