//! Broadcast jobs: started once per id, run by one replica at a time under a lease, resumed
//! from their checkpoint by another replica when that one dies.
//!
//! # Never twice, never skipped
//! The recipients are fixed at the start (a Redis list). The checkpoint (`next`) moves after
//! each window of recipients (mass: each batch of 10,000) is answered. A resumed job goes on
//! from the checkpoint, so the one window in flight at a crash is sent again — with the same
//! ids: a mass batch's `clientmsgid` (`<job>-<batch>`; WeChat answers 45065 with the first
//! msg_id and sends nothing) and each template message's `client_msg_id` (`<job>-<index>`;
//! WeChat answers a repeat with the first msgid and delivers nothing), and each
//! customer-service message's `send` command id (`<job>:<index>`; the sender sends an id once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wxoa_runtime::lease::Lease;
use wxoa_runtime::now_ms;
use wxoa_wire::broadcast::{
    BroadcastCommand, BroadcastKind, BroadcastProgress, BroadcastState, FinishCounts, MASS_BATCH,
    Segment, mass_clientmsgid, template_client_msg_id,
};
use wxoa_wire::command::SendCommand;
use wxoa_wire::names::{commands, headers, keys, notices, subjects};

use crate::{BroadcastError, Shared};

/// How often a running job announces progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Transient failures of one call before the job stops (to resume later).
const MAX_RETRIES: u32 = 6;
/// Jobs per app the runner looks at (newest first).
const RECENT: isize = 200;
/// WeChat errcodes that stop a whole job: quotas, no permission, a bad template or media.
const JOB_ERRORS: [i64; 8] = [45009, 45028, 48001, 48004, 40037, 40007, 45026, 43019];

/// Creates the job unless one with this id exists.
const START: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[2], 'spec', ARGV[3], 'state', 'running',
  'total', 0, 'done', 0, 'sent', 0, 'failed', 0, 'next', 0, 'resumes', 0,
  'started_ms', ARGV[4], 'updated_ms', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
";

/// Starts `command` (or finds the job with its id) and returns its progress.
pub(crate) async fn start(
    shared: &Shared,
    app_id: &str,
    command: &BroadcastCommand,
) -> Result<BroadcastProgress, BroadcastError> {
    command.validate().map_err(BroadcastError::Invalid)?;
    let prefix = &shared.key_prefix;
    let spec = serde_json::to_string(command).expect("a command serializes");
    let created: i64 = redis::Script::new(START)
        .key(keys::broadcast(prefix, app_id, &command.id))
        .key(keys::broadcasts(prefix, app_id))
        .arg(&command.id)
        .arg(command.kind())
        .arg(spec)
        .arg(now_ms())
        .invoke_async(&mut shared.redis.clone())
        .await?;
    if created == 1 {
        tracing::info!(app_id, id = %command.id, kind = command.kind(), "broadcast started");
        shared.kick.notify_waiters();
    }
    status(shared, app_id, &command.id).await
}

/// The job's progress.
pub(crate) async fn status(
    shared: &Shared,
    app_id: &str,
    id: &str,
) -> Result<BroadcastProgress, BroadcastError> {
    let job: HashMap<String, String> = shared
        .redis
        .clone()
        .hgetall(keys::broadcast(&shared.key_prefix, app_id, id))
        .await?;
    progress_of(app_id, &job).ok_or_else(|| BroadcastError::NotFound(format!("no broadcast {id}")))
}

/// The app's most recent jobs, newest first.
pub(crate) async fn list(
    shared: &Shared,
    app_id: &str,
) -> Result<Vec<BroadcastProgress>, BroadcastError> {
    let ids: Vec<String> = shared
        .redis
        .clone()
        .zrevrange(keys::broadcasts(&shared.key_prefix, app_id), 0, RECENT - 1)
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(status(shared, app_id, &id).await?);
    }
    Ok(out)
}

/// Pauses, resumes or cancels a job.
pub(crate) async fn control(
    shared: &Shared,
    app_id: &str,
    id: &str,
    to: BroadcastState,
) -> Result<BroadcastProgress, BroadcastError> {
    let current = status(shared, app_id, id).await?;
    let allowed = match to {
        BroadcastState::Paused | BroadcastState::Cancelled => {
            matches!(
                current.state,
                BroadcastState::Running | BroadcastState::Paused
            )
        }
        BroadcastState::Running => current.state == BroadcastState::Paused,
        _ => false,
    };
    if !allowed {
        return Err(BroadcastError::Invalid(format!(
            "broadcast {id} is {:?}: it cannot become {to:?}",
            current.state
        )));
    }
    let state = serde_json::to_value(to).expect("serializes");
    let _: () = shared
        .redis
        .clone()
        .hset_multiple(
            keys::broadcast(&shared.key_prefix, app_id, id),
            &[
                ("state", state.as_str().unwrap_or_default().to_owned()),
                ("updated_ms", now_ms().to_string()),
            ],
        )
        .await?;
    shared.kick.notify_waiters();
    status(shared, app_id, id).await
}

fn progress_of(app_id: &str, job: &HashMap<String, String>) -> Option<BroadcastProgress> {
    let n = |k: &str| job.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let u = |k: &str| n(k).max(0) as u64;
    let state: BroadcastState =
        serde_json::from_value(Value::String(job.get("state")?.clone())).ok()?;
    let (done, total) = (u("done"), u("total"));
    let (started, updated) = (n("started_ms"), n("updated_ms"));
    let rate = done as f64 / ((updated - started) as f64 / 1000.0).max(0.001);
    Some(BroadcastProgress {
        id: job.get("id").cloned().unwrap_or_default(),
        app_id: app_id.to_owned(),
        kind: job.get("kind").cloned().unwrap_or_default(),
        state,
        total,
        done,
        sent: u("sent"),
        failed: u("failed"),
        rate_per_sec: (rate * 10.0).round() / 10.0,
        eta_secs: (state == BroadcastState::Running && rate > 0.0 && total > done)
            .then(|| ((total - done) as f64 / rate).ceil() as u64),
        msg_ids: job
            .get("msg_ids")
            .map(|l| l.split(',').filter_map(|m| m.parse().ok()).collect())
            .unwrap_or_default(),
        finished: FinishCounts {
            reports: u("fin_reports"),
            total: u("fin_total"),
            filtered: u("fin_filtered"),
            sent: u("fin_sent"),
            errors: u("fin_errors"),
        },
        resumes: u("resumes"),
        started_ms: started,
        updated_ms: updated,
        error: job.get("error").cloned(),
    })
}

/// Runs or resumes the running jobs of every app, on every replica, until `shutdown`.
pub(crate) async fn runner(shared: Arc<Shared>, shutdown: CancellationToken) {
    let (kick, interval) = (&shared.kick, shared.check_interval);
    wxoa_runtime::lease::every(&shutdown, kick, interval, || async {
        for app_id in &shared.apps {
            if let Err(e) = run_app(&shared, app_id, &shutdown).await {
                tracing::warn!(app_id, error = %e, "broadcast runner failed; retrying");
            }
        }
    })
    .await;
}

async fn run_app(
    shared: &Arc<Shared>,
    app_id: &str,
    shutdown: &CancellationToken,
) -> Result<(), BroadcastError> {
    let prefix = &shared.key_prefix;
    let ids: Vec<String> = shared
        .redis
        .clone()
        .zrevrange(keys::broadcasts(prefix, app_id), 0, RECENT - 1)
        .await?;
    for id in ids {
        let key = keys::broadcast(prefix, app_id, &id);
        let job: HashMap<String, String> = shared.redis.clone().hgetall(&key).await?;
        if job.get("state").map(String::as_str) != Some("running") {
            continue;
        }
        let Some(lease) = Lease::acquire(
            &shared.redis,
            keys::broadcast_lease(prefix, app_id, &id),
            &shared.instance,
            shared.lease,
            shutdown,
        )
        .await?
        else {
            continue;
        };
        let result = Runner::new(shared, app_id, &job)?.run(lease.lost()).await;
        lease.release().await;
        match result {
            Ok(()) | Err(BroadcastError::Stopped) => {}
            Err(e @ (BroadcastError::Wechat(_) | BroadcastError::Invalid(_)))
                if !wxoa_runtime::consumer::Failure::is_transient(&e) =>
            {
                tracing::warn!(app_id, id, error = %e, "broadcast failed");
                wxoa_runtime::lease::fail_job(&shared.redis, &key, &e.to_string()).await?;
                announce(shared, app_id, &id, notices::BROADCAST_FINISHED).await;
            }
            Err(e) => tracing::warn!(app_id, id, error = %e, "broadcast stopped; it resumes later"),
        }
    }
    Ok(())
}

/// Publishes the job's progress as a notice of `kind`.
pub(crate) async fn announce(shared: &Shared, app_id: &str, id: &str, kind: &str) {
    if let Ok(progress) = status(shared, app_id, id).await {
        shared.notify(app_id, kind, &progress).await;
    }
}

/// One run of one job, from its checkpoint.
struct Runner<'a> {
    shared: &'a Shared,
    app_id: &'a str,
    command: BroadcastCommand,
    key: String,
    to_key: String,
    next: usize,
    materialized: bool,
    last_progress: tokio::time::Instant,
}

/// How one recipient's call ended.
enum Outcome {
    Sent(Option<i64>),
    Failed,
}

impl<'a> Runner<'a> {
    fn new(
        shared: &'a Shared,
        app_id: &'a str,
        job: &HashMap<String, String>,
    ) -> Result<Runner<'a>, BroadcastError> {
        let command: BroadcastCommand =
            serde_json::from_str(job.get("spec").map(String::as_str).unwrap_or_default())
                .map_err(|e| BroadcastError::Invalid(format!("stored job spec: {e}")))?;
        Ok(Runner {
            shared,
            app_id,
            key: keys::broadcast(&shared.key_prefix, app_id, &command.id),
            to_key: keys::broadcast_recipients(&shared.key_prefix, app_id, &command.id),
            next: job.get("next").and_then(|v| v.parse().ok()).unwrap_or(0),
            materialized: job.get("materialized").is_some(),
            command,
            last_progress: tokio::time::Instant::now(),
        })
    }

    async fn run(mut self, stop: &CancellationToken) -> Result<(), BroadcastError> {
        let mut redis = self.shared.redis.clone();
        if self.materialized || self.next > 0 {
            let _: i64 = redis.hincr(&self.key, "resumes", 1).await?;
            tracing::info!(app_id = self.app_id, id = %self.command.id, next = self.next, "resuming a broadcast");
        }
        let sendall = matches!(
            (&self.command.job, &self.command.to),
            (
                BroadcastKind::Mass { .. },
                Segment::All | Segment::Tag { .. }
            )
        );
        if sendall {
            self.sendall(stop).await?;
        } else {
            let total = self.materialize().await?;
            while self.next < total {
                self.check(stop).await?;
                let window = match self.command.job {
                    BroadcastKind::Mass { .. } => MASS_BATCH,
                    _ => self.shared.window,
                };
                let end = (self.next + window).min(total);
                let openids: Vec<String> = redis
                    .lrange(&self.to_key, self.next as isize, end as isize - 1)
                    .await?;
                let outcomes = match &self.command.job {
                    BroadcastKind::Mass { .. } => self.mass_batch(&openids, stop).await?,
                    BroadcastKind::Template { .. } => self.templates(&openids, stop).await?,
                    BroadcastKind::Custom { .. } => self.customs(&openids).await?,
                };
                self.checkpoint(end, &outcomes).await?;
            }
        }
        let _: () = redis
            .hset_multiple(
                &self.key,
                &[
                    ("state", "done".to_owned()),
                    ("updated_ms", now_ms().to_string()),
                ],
            )
            .await?;
        tracing::info!(app_id = self.app_id, id = %self.command.id, "broadcast done");
        announce(
            self.shared,
            self.app_id,
            &self.command.id,
            notices::BROADCAST_FINISHED,
        )
        .await;
        Ok(())
    }

    /// Stops on shutdown, a lost lease, a pause or a cancel.
    async fn check(&self, stop: &CancellationToken) -> Result<(), BroadcastError> {
        if stop.is_cancelled() {
            return Err(BroadcastError::Stopped);
        }
        let state: Option<String> = self.shared.redis.clone().hget(&self.key, "state").await?;
        if state.as_deref() != Some("running") {
            tracing::info!(id = %self.command.id, state, "broadcast no longer running here");
            return Err(BroadcastError::Stopped);
        }
        Ok(())
    }

    /// Fixes the recipients (once; a half-written list is written again) and returns how many.
    async fn materialize(&mut self) -> Result<usize, BroadcastError> {
        let mut redis = self.shared.redis.clone();
        if self.materialized {
            return Ok(redis.llen(&self.to_key).await?);
        }
        let _: i64 = redis.del(&self.to_key).await?;
        let prefix = &self.shared.key_prefix;
        match &self.command.to {
            Segment::Openids { openids } => {
                for chunk in openids.chunks(1000) {
                    let _: i64 = redis.rpush(&self.to_key, chunk).await?;
                }
            }
            segment => {
                let set = match segment {
                    Segment::Tag { tag_id } => keys::tag_members(prefix, self.app_id, *tag_id),
                    _ => keys::followers(prefix, self.app_id),
                };
                // Each member once even if SSCAN repeats one.
                let mut seen = std::collections::HashSet::new();
                let mut cursor = 0u64;
                loop {
                    let (next, page): (u64, Vec<String>) = redis::cmd("SSCAN")
                        .arg(&set)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut redis)
                        .await?;
                    let fresh: Vec<String> = page
                        .into_iter()
                        .filter(|o| seen.insert(wxoa_wire::users::openid_hash(o)))
                        .collect();
                    if !fresh.is_empty() {
                        let _: i64 = redis.rpush(&self.to_key, fresh).await?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
        let total: usize = redis.llen(&self.to_key).await?;
        let _: () = redis
            .hset_multiple(
                &self.key,
                &[
                    ("materialized", "1".to_owned()),
                    ("total", total.to_string()),
                    ("updated_ms", now_ms().to_string()),
                ],
            )
            .await?;
        self.materialized = true;
        Ok(total)
    }

    /// Records a window: counts, msg_ids for job-finish matching, the checkpoint.
    async fn checkpoint(&mut self, end: usize, outcomes: &[Outcome]) -> Result<(), BroadcastError> {
        let sent = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Sent(_)))
            .count();
        let msg_ids: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Sent(id) => *id,
                Outcome::Failed => None,
            })
            .collect();
        let mut pipe = redis::pipe();
        let handled = (end - self.next) as i64;
        pipe.hincr(&self.key, "done", handled)
            .ignore()
            .hincr(&self.key, "sent", sent as i64)
            .ignore()
            .hincr(&self.key, "failed", (outcomes.len() - sent) as i64)
            .ignore()
            .hset(&self.key, "next", end)
            .ignore()
            .hset(&self.key, "updated_ms", now_ms())
            .ignore();
        if !msg_ids.is_empty() {
            let map = keys::broadcast_msgids(&self.shared.key_prefix, self.app_id);
            let pairs: Vec<(i64, &str)> = msg_ids
                .iter()
                .map(|m| (*m, self.command.id.as_str()))
                .collect();
            pipe.hset_multiple(&map, &pairs).ignore();
        }
        pipe.query_async::<()>(&mut self.shared.redis.clone())
            .await?;
        let [sent_total, failed_total] = &self.shared.recipients;
        sent_total.fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
        failed_total.fetch_add(
            (outcomes.len() - sent) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.next = end;
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = tokio::time::Instant::now();
            announce(
                self.shared,
                self.app_id,
                &self.command.id,
                notices::BROADCAST_PROGRESS,
            )
            .await;
        }
        Ok(())
    }

    /// `message/mass/sendall` to all followers or a tag, once (`clientmsgid` `<job>-0`).
    async fn sendall(&mut self, stop: &CancellationToken) -> Result<(), BroadcastError> {
        let BroadcastKind::Mass {
            message,
            send_ignore_reprint,
        } = &self.command.job
        else {
            unreachable!("sendall is for mass jobs");
        };
        let mut body = message.clone();
        body["filter"] = match &self.command.to {
            Segment::Tag { tag_id } => json!({"is_to_all": false, "tag_id": tag_id}),
            _ => json!({"is_to_all": true}),
        };
        body["send_ignore_reprint"] = json!(u8::from(*send_ignore_reprint));
        body["clientmsgid"] = json!(mass_clientmsgid(&self.command.id, 0));
        let msg_id = self
            .mass_call("/cgi-bin/message/mass/sendall", &body, stop)
            .await?;
        self.record_msg_id(msg_id).await?;
        let id = (msg_id != 0).then_some(msg_id);
        self.checkpoint(0, &[Outcome::Sent(id)]).await
    }

    /// One `message/mass/send` batch (`clientmsgid` `<job>-<batch>`).
    async fn mass_batch(
        &mut self,
        openids: &[String],
        stop: &CancellationToken,
    ) -> Result<Vec<Outcome>, BroadcastError> {
        let BroadcastKind::Mass {
            message,
            send_ignore_reprint,
        } = &self.command.job
        else {
            unreachable!("mass batches are for mass jobs");
        };
        let mut body = message.clone();
        body["touser"] = json!(openids);
        body["send_ignore_reprint"] = json!(u8::from(*send_ignore_reprint));
        body["clientmsgid"] = json!(mass_clientmsgid(&self.command.id, self.next / MASS_BATCH));
        let msg_id = self
            .mass_call("/cgi-bin/message/mass/send", &body, stop)
            .await?;
        self.record_msg_id(msg_id).await?;
        // The batch is one submission: its recipients count as sent; WeChat's report follows.
        let id = (msg_id != 0).then_some(msg_id);
        Ok(openids
            .iter()
            .enumerate()
            .map(|(i, _)| Outcome::Sent(id.filter(|_| i == 0)))
            .collect())
    }

    async fn record_msg_id(&self, msg_id: i64) -> Result<(), BroadcastError> {
        if msg_id == 0 {
            return Ok(());
        }
        let mut redis = self.shared.redis.clone();
        let ids: Option<String> = redis.hget(&self.key, "msg_ids").await?;
        let mut ids: Vec<String> = ids
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !ids.contains(&msg_id.to_string()) {
            ids.push(msg_id.to_string());
        }
        let _: () = redis.hset(&self.key, "msg_ids", ids.join(",")).await?;
        Ok(())
    }

    /// A mass call; 45065 (this `clientmsgid` was sent before) is the earlier submission.
    async fn mass_call(
        &self,
        path: &str,
        body: &Value,
        stop: &CancellationToken,
    ) -> Result<i64, BroadcastError> {
        let mut attempt = 0;
        loop {
            if stop.is_cancelled() {
                return Err(BroadcastError::Stopped);
            }
            match self.shared.wechat.post(self.app_id, path, body).await {
                Ok(answer) => return Ok(answer["msg_id"].as_i64().unwrap_or_default()),
                Err(e) if e.errcode() == Some(45065) => {
                    // Sent before this run (the batch in flight at a crash): WeChat sends it
                    // no second time. Its msg_id was recorded then, if the crash came later.
                    tracing::info!(path, "batch sent before (45065): not sent again");
                    return Ok(0);
                }
                Err(e) if e.is_transient() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One template message per recipient, `concurrency` at once, each within the app's rate.
    async fn templates(
        &self,
        openids: &[String],
        stop: &CancellationToken,
    ) -> Result<Vec<Outcome>, BroadcastError> {
        let BroadcastKind::Template {
            template_id,
            data,
            url,
            miniprogram,
        } = &self.command.job
        else {
            unreachable!("template calls are for template jobs");
        };
        let base = self.next;
        // The calls are built first (a plain Vec of futures keeps the stream `Send`).
        let calls: Vec<_> = openids
            .iter()
            .enumerate()
            .map(|(i, openid)| {
                let mut body = json!({
                    "touser": openid,
                    "template_id": template_id,
                    "data": data,
                    "client_msg_id": template_client_msg_id(&self.command.id, base + i),
                });
                if let Some(url) = url {
                    body["url"] = json!(url);
                }
                if let Some(mp) = miniprogram {
                    body["miniprogram"] = mp.clone();
                }
                self.template_call(body, stop)
            })
            .collect();
        let results: Vec<Result<Outcome, BroadcastError>> = futures::stream::iter(calls)
            .buffered(self.shared.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn template_call(
        &self,
        body: Value,
        stop: &CancellationToken,
    ) -> Result<Outcome, BroadcastError> {
        let mut attempt = 0;
        loop {
            if stop.is_cancelled() {
                return Err(BroadcastError::Stopped);
            }
            self.shared.throttle(self.app_id).await?;
            match self
                .shared
                .wechat
                .post(self.app_id, "/cgi-bin/message/template/send", &body)
                .await
            {
                Ok(answer) => return Ok(Outcome::Sent(answer["msgid"].as_i64())),
                Err(e) if e.errcode().is_some_and(|c| JOB_ERRORS.contains(&c)) => {
                    return Err(e.into());
                }
                Err(e) if e.is_transient() || e.maybe_delivered() => {
                    // Safe to repeat: the client_msg_id makes WeChat deliver it once.
                    if attempt >= MAX_RETRIES {
                        return Err(e.into());
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, touser = %body["touser"], "template refused for one recipient");
                    return Ok(Outcome::Failed);
                }
            }
        }
    }

    /// One `send` command per recipient (id `<job>:<index>`), published to JetStream.
    async fn customs(&self, openids: &[String]) -> Result<Vec<Outcome>, BroadcastError> {
        let BroadcastKind::Custom { message } = &self.command.job else {
            unreachable!("customer-service fan-outs are for custom jobs");
        };
        let subject = subjects::command(&self.shared.prefix, self.app_id, commands::SEND);
        let mut acks = Vec::with_capacity(openids.len());
        for (i, openid) in openids.iter().enumerate() {
            let command = SendCommand {
                id: format!("{}:{}", self.command.id, self.next + i),
                openid: openid.clone(),
                message: message.clone(),
                typing: false,
                kf_account: None,
            };
            let mut h = HeaderMap::new();
            h.insert(headers::MSG_ID, command.id.as_str());
            wxoa_runtime::telemetry::inject(&mut h);
            let payload = serde_json::to_vec(&command).expect("a command serializes");
            acks.push(
                self.shared
                    .js
                    .publish_with_headers(subject.clone(), h, payload.into())
                    .await
                    .map_err(|e| BroadcastError::Publish(e.to_string()))?,
            );
        }
        for ack in acks {
            ack.await
                .map_err(|e| BroadcastError::Publish(e.to_string()))?;
        }
        Ok(openids.iter().map(|_| Outcome::Sent(None)).collect())
    }
}

fn backoff(attempt: u32) -> Duration {
    wxoa_runtime::consumer::backoff(
        i64::from(attempt),
        Duration::from_millis(200),
        Duration::from_secs(10),
    )
}
