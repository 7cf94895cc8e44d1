//! The full sync: every follower of an app from `user/get` (pages of 10,000) and
//! `user/info/batchget` (100 at a time) into the directory, as a job that survives crashes.
//!
//! # Durable and resumable
//! The job lives in Redis (`keys::usersync_job`): its state and a checkpoint — the cursor that
//! fetched the current page and how much of it is written — updated after every batch. Any
//! replica runs it while it holds the lease (`keys::usersync_lease`, renewed every third of
//! `usersync.lease_ms`); when that worker dies the lease runs out and another replica (or the
//! same one, restarted) resumes from the checkpoint. A resumed page is written again from its
//! start: writes are idempotent, so the result is exact even if the list moved meanwhile.
//!
//! # Who left
//! Every listed openid goes into a per-job set (`keys::usersync_seen`). At the end, followers in
//! the directory that the sync did not list and that no event touched since the sync began are
//! marked as left.
//!
//! Memory stays flat in the number of followers: one page of openids and one batch of users.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wxoa_runtime::now_ms;
use wxoa_wire::names::{keys, notices};
use wxoa_wire::users::{SyncProgress, SyncState, UserRecord};

use crate::{Shared, UsersyncError};

/// `user/get`'s page size.
pub const PAGE: usize = 10_000;
/// `user/info/batchget`'s batch size.
pub const BATCH: usize = 100;
/// How often a running sync announces progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Transient WeChat failures in a row before the job fails.
const MAX_RETRIES: u32 = 8;

/// Starts a job unless one is running: `(started, state)`.
const START: &str = r"
if redis.call('HGET', KEYS[1], 'state') == 'running' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'running', 'cursor', '', 'offset', 0,
  'done', 0, 'total', 0, 'left', 0, 'resumes', 0, 'started_ms', ARGV[2], 'updated_ms', ARGV[2])
return 1
";

/// The Lua scripts of the job.
pub(crate) struct Scripts {
    start: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            start: redis::Script::new(START),
        }
    }
}

/// Starts a full sync of `app_id` (or finds the one running) and returns its progress.
pub(crate) async fn start(
    shared: &Shared,
    app_id: &str,
    id: Option<String>,
) -> Result<SyncProgress, UsersyncError> {
    let id = id.unwrap_or_else(|| format!("sync-{}-{:04x}", now_ms(), rand::random::<u16>()));
    if id.is_empty() || id.len() > 64 || !wxoa_wire::names::is_token(&id) {
        return Err(UsersyncError::Invalid(
            "a sync id is 1-64 characters of [A-Za-z0-9_-]".into(),
        ));
    }
    let key = keys::usersync_job(shared.dir.prefix(), app_id);
    let _: i64 = shared
        .scripts
        .start
        .key(&key)
        .arg(&id)
        .arg(now_ms())
        .invoke_async(&mut shared.redis.clone())
        .await?;
    shared.kick.notify_waiters();
    status(shared, app_id)
        .await?
        .ok_or_else(|| UsersyncError::NotFound("the job vanished".into()))
}

/// The app's latest full sync, if any.
pub(crate) async fn status(
    shared: &Shared,
    app_id: &str,
) -> Result<Option<SyncProgress>, UsersyncError> {
    let job: HashMap<String, String> = shared
        .redis
        .clone()
        .hgetall(keys::usersync_job(shared.dir.prefix(), app_id))
        .await?;
    Ok(progress_of(app_id, &job))
}

fn progress_of(app_id: &str, job: &HashMap<String, String>) -> Option<SyncProgress> {
    let n = |k: &str| job.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let state = match job.get("state")?.as_str() {
        "running" => SyncState::Running,
        "done" => SyncState::Done,
        _ => SyncState::Failed,
    };
    let (done, total) = (n("done").max(0) as u64, n("total").max(0) as u64);
    let (started, updated) = (n("started_ms"), n("updated_ms"));
    let secs = ((updated - started) as f64 / 1000.0).max(0.001);
    let rate = done as f64 / secs;
    Some(SyncProgress {
        id: job.get("id").cloned().unwrap_or_default(),
        app_id: app_id.to_owned(),
        state,
        done,
        total,
        rate_per_sec: (rate * 10.0).round() / 10.0,
        eta_secs: (state == SyncState::Running && rate > 0.0 && total >= done)
            .then(|| ((total - done) as f64 / rate).ceil() as u64),
        left: n("left").max(0) as u64,
        resumes: n("resumes").max(0) as u64,
        started_ms: started,
        updated_ms: updated,
        error: job.get("error").cloned(),
    })
}

/// Runs or resumes the full syncs of every app, on every replica, until `shutdown`: each
/// `usersync.check_interval_ms` (or when a sync is started here) it takes the lease of any
/// running job whose lease is free. With `usersync.schedule_secs`, it also starts one per app
/// when the last ended that long ago.
pub(crate) async fn runner(shared: Arc<Shared>, shutdown: CancellationToken) {
    let (kick, interval) = (&shared.kick, shared.check_interval);
    wxoa_runtime::lease::every(&shutdown, kick, interval, || async {
        for app_id in &shared.apps {
            if let Err(e) = schedule(&shared, app_id).await {
                tracing::warn!(app_id, error = %e, "scheduling a full sync failed");
            }
            if let Err(e) = try_run(&shared, app_id, &shutdown).await
                && !matches!(e, UsersyncError::Stopped)
            {
                tracing::warn!(app_id, error = %e, "full sync stopped; it resumes later");
            }
        }
    })
    .await;
}

async fn schedule(shared: &Shared, app_id: &str) -> Result<(), UsersyncError> {
    if shared.schedule.is_zero() {
        return Ok(());
    }
    let due = match status(shared, app_id).await? {
        None => true,
        Some(p) => {
            p.state != SyncState::Running
                && now_ms() - p.updated_ms >= shared.schedule.as_millis() as i64
        }
    };
    if due {
        start(shared, app_id, None).await?;
    }
    Ok(())
}

/// Runs the app's job if it is running and its lease is free.
async fn try_run(
    shared: &Arc<Shared>,
    app_id: &str,
    shutdown: &CancellationToken,
) -> Result<(), UsersyncError> {
    let job_key = keys::usersync_job(shared.dir.prefix(), app_id);
    let job: HashMap<String, String> = shared.redis.clone().hgetall(&job_key).await?;
    if job.get("state").map(String::as_str) != Some("running") {
        return Ok(());
    }
    let lease_key = keys::usersync_lease(shared.dir.prefix(), app_id);
    let Some(lease) = wxoa_runtime::lease::Lease::acquire(
        &shared.redis,
        lease_key,
        &shared.instance,
        shared.lease,
        shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    let result = Runner::new(shared, app_id, &job).run(lease.lost()).await;
    lease.release().await;
    match result {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(&e, UsersyncError::Wechat(w) if !w.is_transient())
                || matches!(&e, UsersyncError::Invalid(_)) =>
        {
            wxoa_runtime::lease::fail_job(&shared.redis, &job_key, &e.to_string()).await?;
            finished(shared, app_id).await;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Announces the job's final state.
async fn finished(shared: &Shared, app_id: &str) {
    if let Ok(Some(progress)) = status(shared, app_id).await {
        shared
            .notify(app_id, notices::USERSYNC_FINISHED, &progress)
            .await;
    }
}

/// One run of one job, from its checkpoint.
struct Runner<'a> {
    shared: &'a Shared,
    app_id: &'a str,
    id: String,
    job_key: String,
    cursor: String,
    done: u64,
    started_ms: i64,
    resumed: bool,
}

impl<'a> Runner<'a> {
    fn new(shared: &'a Shared, app_id: &'a str, job: &HashMap<String, String>) -> Runner<'a> {
        let n = |k: &str| job.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let cursor = job.get("cursor").cloned().unwrap_or_default();
        let offset = n("offset");
        Runner {
            shared,
            app_id,
            id: job.get("id").cloned().unwrap_or_default(),
            job_key: keys::usersync_job(shared.dir.prefix(), app_id),
            resumed: !cursor.is_empty() || n("done") > 0,
            // The current page is written again from its start.
            done: n("done").saturating_sub(offset),
            cursor,
            started_ms: job
                .get("started_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(now_ms),
        }
    }

    async fn run(mut self, stop: &CancellationToken) -> Result<(), UsersyncError> {
        let mut redis = self.shared.redis.clone();
        if self.resumed {
            let _: i64 = redis.hincr(&self.job_key, "resumes", 1).await?;
            tracing::info!(app_id = self.app_id, id = %self.id, done = self.done, "resuming a full sync");
        }
        let mut last_progress = tokio::time::Instant::now();
        loop {
            let query = [("next_openid", self.cursor.as_str())];
            let page = self.call(stop, "/cgi-bin/user/get", &query, None).await?;
            let total = page["total"].as_u64().unwrap_or(0);
            let openids: Vec<String> = page["data"]["openid"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|o| o.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if openids.is_empty() {
                break;
            }
            for (i, batch) in openids.chunks(BATCH).enumerate() {
                let body = json!({"user_list": batch.iter().map(|o| json!({"openid": o, "lang": "zh_CN"})).collect::<Vec<_>>()});
                let infos = self
                    .call(stop, "/cgi-bin/user/info/batchget", &[], Some(&body))
                    .await?;
                let now = now_ms();
                let users: Vec<UserRecord> = infos["user_info_list"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|u| UserRecord::from_wechat(u, now))
                            .collect()
                    })
                    .unwrap_or_default();
                self.shared
                    .dir
                    .put(self.app_id, &users, Some(&self.id))
                    .await?;
                self.done += batch.len() as u64;
                (self.shared.synced)
                    .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let offset = (i * BATCH + batch.len()).to_string();
                let _: () = redis
                    .hset_multiple(
                        &self.job_key,
                        &[
                            ("offset", offset),
                            ("done", self.done.to_string()),
                            ("total", total.to_string()),
                            ("updated_ms", now.to_string()),
                        ],
                    )
                    .await?;
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = tokio::time::Instant::now();
                    if let Some(progress) = status(self.shared, self.app_id).await? {
                        self.shared
                            .notify(self.app_id, notices::USERSYNC_PROGRESS, &progress)
                            .await;
                    }
                }
            }
            let next = page["next_openid"].as_str().unwrap_or_default().to_owned();
            self.cursor = next;
            let _: () = redis
                .hset_multiple(
                    &self.job_key,
                    &[("cursor", self.cursor.clone()), ("offset", "0".to_owned())],
                )
                .await?;
            if self.cursor.is_empty() || openids.len() < PAGE {
                break;
            }
        }
        let left = self.mark_left(stop).await?;
        let _: () = redis
            .hset_multiple(
                &self.job_key,
                &[
                    ("state", "done".to_owned()),
                    ("left", left.to_string()),
                    ("updated_ms", now_ms().to_string()),
                ],
            )
            .await?;
        tracing::info!(app_id = self.app_id, id = %self.id, done = self.done, left, "full sync done");
        finished(self.shared, self.app_id).await;
        Ok(())
    }

    /// Marks directory followers the sync did not list (and no event touched since it began)
    /// as left; cleans up the job's sets. Returns how many.
    async fn mark_left(&self, stop: &CancellationToken) -> Result<u64, UsersyncError> {
        let prefix = self.shared.dir.prefix();
        let seen = keys::usersync_seen(prefix, self.app_id, &self.id);
        let left_key = keys::usersync_left(prefix, self.app_id, &self.id);
        let mut redis = self.shared.redis.clone();
        let _: i64 = redis::cmd("SDIFFSTORE")
            .arg(&left_key)
            .arg(keys::followers(prefix, self.app_id))
            .arg(&seen)
            .query_async(&mut redis)
            .await?;
        let mut left = 0;
        loop {
            if stop.is_cancelled() {
                return Err(UsersyncError::Stopped);
            }
            let batch: Vec<String> = redis::cmd("SPOP")
                .arg(&left_key)
                .arg(500)
                .query_async(&mut redis)
                .await?;
            if batch.is_empty() {
                break;
            }
            let users = self.shared.dir.get_many(self.app_id, &batch).await?;
            let gone: Vec<String> = batch
                .into_iter()
                .zip(users)
                .filter(|(_, u)| u.as_ref().is_none_or(|u| u.updated_ms < self.started_ms))
                .map(|(openid, _)| openid)
                .collect();
            left += gone.len() as u64;
            let now = now_ms();
            self.shared
                .dir
                .mark_left(self.app_id, &gone, now / 1000, now)
                .await?;
        }
        let _: i64 = redis.del(&[&seen, &left_key]).await?;
        Ok(left)
    }

    /// A WeChat call within the app's rate, retried with backoff on transient failures.
    async fn call(
        &self,
        stop: &CancellationToken,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, UsersyncError> {
        let mut attempt = 0;
        loop {
            if stop.is_cancelled() {
                return Err(UsersyncError::Stopped);
            }
            self.shared.throttle(self.app_id).await?;
            let wechat = &self.shared.wechat;
            let answer = match body {
                Some(body) => wechat.post(self.app_id, path, body).await,
                None => wechat.get(self.app_id, path, query).await,
            };
            match answer {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    let wait = wxoa_runtime::consumer::backoff(
                        i64::from(attempt),
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                    );
                    tracing::warn!(app_id = self.app_id, error = %e, attempt, "WeChat call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
