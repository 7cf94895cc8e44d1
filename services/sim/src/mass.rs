//! Mass sends (群发): `media/uploadnews`, `message/mass/{sendall,send,preview,delete,get}`,
//! `mass/speed/{get,set}`, the `MASSSENDJOBFINISH` callback a job posts to the gateway after
//! the finish delay, and the control calls `/_sim/mass` and `/_sim/mass/settings`.
//!
//! Limits as WeChat: 2..=10 000 openids per `send` (40130), a `clientmsgid` is used once per app
//! (45065 with the existing `msg_id`, nothing is sent again), a subscription account has one
//! successful mass send per China day (45028), and on a service account each user receives at
//! most 4 mass messages per calendar month (the rest are counted as filtered).
//!
//! The monthly count stays cheap at millions of followers: a send to all adds to one per-app
//! counter, sends to a tag or to a list add to per-user counters (a user's count is the sum).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wxoa_runtime::config::AccountKind;
use wxoa_wire::reply::cdata;

use crate::SimError;
use crate::callback::{self, Outcome};
use crate::followers::{Followers, Uid};
use crate::paths;
use crate::rest::authorized;
use crate::state::{Shared, State as SimState};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Default delay between an accepted job and its `MASSSENDJOBFINISH` callback.
pub(crate) const DEFAULT_FINISH_DELAY_MS: u64 = 200;
/// The FromUserName of the finish events.
pub(crate) const SYSTEM_OPENID: &str = "o_sim_system";
/// Openids per `mass/send`.
const MIN_OPENIDS: usize = 2;
const MAX_OPENIDS: usize = 10_000;
/// Articles per `uploadnews`.
const MAX_ARTICLES: usize = 8;
/// Characters of a `clientmsgid`.
const MAX_CLIENTMSGID: usize = 64;
/// Mass messages one user of a service account receives per calendar month.
const MONTHLY_PER_USER: i64 = 4;
/// Successful mass sends of a subscription account per day.
const SUBSCRIPTION_DAILY: u32 = 1;
/// `realspeed` (10 000 per minute) of speed 0..=4.
const REAL_SPEEDS: [u32; 5] = [80, 60, 45, 30, 10];
/// The speed of an app that never set one.
const DEFAULT_SPEED: u8 = 2;
/// The first `msg_id` (preview and jobs share the sequence).
const FIRST_MSG_ID: u64 = 1_000_000_001;
/// The first `msg_data_id` of uploaded news.
const FIRST_DATA_ID: u64 = 2_247_480_001;

/// Where a job stands, as `mass/get` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum JobStatus {
    /// Until the finish delay is over.
    Sending,
    /// Finished.
    SendSuccess,
    /// Deleted by `mass/delete`.
    Delete,
}

/// An accepted mass job.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MassJob {
    msg_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_data_id: Option<u64>,
    clientmsgid: Option<String>,
    msgtype: String,
    /// `all`, `tag` or `openids`.
    target: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_id: Option<i64>,
    /// Users targeted (TotalCount).
    recipients: u64,
    sent: u64,
    filtered: u64,
    errors: u64,
    status: JobStatus,
    finish_posted: bool,
    /// What the gateway made of the finish callback, once posted.
    finish_outcome: Option<Outcome>,
    created_ms: i64,
    #[serde(skip)]
    articles: usize,
}

struct News {
    articles: usize,
    data_id: u64,
}

/// The monthly per-user count of a service account: a user's count is `all_sends` plus their
/// own entry (which may be negative: a blacklisted user did not get a send to all).
#[derive(Default)]
struct MonthlyCount {
    month: i64,
    all_sends: i64,
    personal: HashMap<Uid, i64>,
}

impl MonthlyCount {
    fn roll(&mut self, month: i64) {
        if self.month != month {
            *self = MonthlyCount {
                month,
                ..MonthlyCount::default()
            };
        }
    }

    fn count(&self, uid: Uid) -> i64 {
        self.all_sends + self.personal.get(&uid).copied().unwrap_or(0)
    }

    fn full(&self, uid: Uid) -> bool {
        self.count(uid) >= MONTHLY_PER_USER
    }
}

/// The mass-send state of one app.
#[derive(Default)]
pub(crate) struct MassApp {
    news: HashMap<String, News>,
    jobs: Vec<MassJob>,
    by_msg_id: HashMap<u64, usize>,
    by_clientmsgid: HashMap<String, u64>,
    sub_day: i64,
    sub_sends: u32,
    monthly: MonthlyCount,
    speed: Option<u8>,
}

impl MassApp {
    fn job_mut(&mut self, msg_id: u64) -> Option<&mut MassJob> {
        let i = *self.by_msg_id.get(&msg_id)?;
        self.jobs.get_mut(i)
    }
}

/// Runtime settings (`/_sim/mass/settings`).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct MassSettings {
    /// From an accepted job to its end and its finish event.
    pub(crate) finish_delay_ms: u64,
    /// Whether jobs post their finish events.
    pub(crate) finish_events: bool,
}

/// Mass sends of every app.
pub(crate) struct MassStore {
    apps: HashMap<String, MassApp>,
    settings: MassSettings,
    next_msg_id: u64,
    next_data_id: u64,
}

impl Default for MassStore {
    fn default() -> MassStore {
        MassStore {
            apps: HashMap::new(),
            settings: MassSettings {
                finish_delay_ms: DEFAULT_FINISH_DELAY_MS,
                finish_events: true,
            },
            next_msg_id: FIRST_MSG_ID,
            next_data_id: FIRST_DATA_ID,
        }
    }
}

impl MassStore {
    fn app(&mut self, appid: &str) -> &mut MassApp {
        if !self.apps.contains_key(appid) {
            self.apps.insert(appid.to_owned(), MassApp::default());
        }
        self.apps.get_mut(appid).expect("inserted above")
    }

    /// The settings jobs end by (publish jobs too).
    pub(crate) fn settings(&self) -> MassSettings {
        self.settings
    }

    /// A new `msg_data_id`: uploaded news, publish jobs and the articles of `/_sim/comments`
    /// share the sequence.
    pub(crate) fn next_data_id(&mut self) -> u64 {
        let id = self.next_data_id;
        self.next_data_id += 1;
        id
    }

    fn msg_id(&mut self) -> u64 {
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        id
    }
}

/// A request body; bad JSON is 47001.
fn parse(body: &Bytes) -> Result<Value, SimError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| SimError::api(47001))
}

fn ok() -> Answer {
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

fn non_empty_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A `msg_id` given as a number or a numeric string.
fn msg_id_of(body: &Value) -> Option<u64> {
    match body.get("msg_id")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn random_media_id() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(64)
        .map(char::from)
        .collect()
}

/// `POST /cgi-bin/media/uploadnews {"articles":[...]}` → `{"type":"news","media_id","created_at"}`:
/// 1..=8 articles (more: 45008), each with a non-empty `title` and `content` (else 40097).
pub(crate) async fn upload_news(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::UPLOAD_NEWS).await?;
    let body = parse(&body)?;
    let articles = body
        .get("articles")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::api(40097))?;
    if articles.len() > MAX_ARTICLES {
        return Err(SimError::api(45008));
    }
    let complete = articles
        .iter()
        .all(|a| non_empty_str(a, "title").is_some() && non_empty_str(a, "content").is_some());
    if !complete {
        return Err(SimError::api(40097));
    }
    let media_id = random_media_id();
    let mut state = sim.lock();
    let created_at = state.now_ms() / 1000;
    let data_id = state.mass.next_data_id();
    state.mass.app(&appid).news.insert(
        media_id.clone(),
        News {
            articles: articles.len(),
            data_id,
        },
    );
    drop(state);
    Ok(Json(
        json!({ "type": "news", "media_id": media_id, "created_at": created_at }),
    ))
}

/// Checks the message of a mass send or preview; answers (msgtype, msg_data_id, articles).
fn check_message(body: &Value, app: &MassApp) -> Result<(String, Option<u64>, usize), SimError> {
    let msgtype = non_empty_str(body, "msgtype").ok_or_else(|| SimError::api(40008))?;
    let object = body
        .get(msgtype)
        .filter(|o| o.is_object())
        .ok_or_else(|| SimError::api(40008))?;
    let media = || non_empty_str(object, "media_id").ok_or_else(|| SimError::api(40007));
    let (data_id, articles) = match msgtype {
        "mpnews" => {
            let news = app.news.get(media()?).ok_or_else(|| SimError::api(40007))?;
            (Some(news.data_id), news.articles)
        }
        "text" => {
            non_empty_str(object, "content").ok_or_else(|| SimError::api(44004))?;
            (None, 0)
        }
        "voice" | "mpvideo" => {
            media()?;
            (None, 0)
        }
        "images" => {
            let ok = object
                .get("media_ids")
                .and_then(Value::as_array)
                .is_some_and(|ids| {
                    !ids.is_empty()
                        && ids
                            .iter()
                            .all(|i| i.as_str().is_some_and(|s| !s.is_empty()))
                });
            if !ok {
                return Err(SimError::api(40007));
            }
            (None, 0)
        }
        "wxcard" => {
            non_empty_str(object, "card_id").ok_or_else(|| SimError::api(40008))?;
            (None, 0)
        }
        _ => return Err(SimError::api(40008)),
    };
    Ok((msgtype.to_owned(), data_id, articles))
}

/// The `clientmsgid` of a request: at most 64 characters (else 40097).
fn clientmsgid_of(body: &Value) -> Result<Option<String>, SimError> {
    match body.get("clientmsgid") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_CLIENTMSGID => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(SimError::api(40097)),
        Some(_) => Err(SimError::api(47001)),
    }
}

/// Who a mass send goes to.
enum Audience {
    All,
    Tag(i64),
    List(Vec<String>),
}

impl Audience {
    fn target(&self) -> (&'static str, Option<i64>) {
        match self {
            Audience::All => ("all", None),
            Audience::Tag(id) => ("tag", Some(*id)),
            Audience::List(_) => ("openids", None),
        }
    }
}

/// (recipients, sent, filtered)
struct Counts(u64, u64, u64);

/// Delivers a send: counts recipients, sent and filtered (non-followers, repeated openids,
/// blacklisted users and, with `monthly`, users at their monthly limit) and updates the
/// monthly counts. The audience must have been checked (`Tag` exists).
fn deliver(
    followers: &Followers,
    monthly: Option<&mut MonthlyCount>,
    audience: &Audience,
) -> Result<Counts, SimError> {
    let mut scratch = MonthlyCount::default();
    let capped = monthly.is_some();
    let monthly = monthly.unwrap_or(&mut scratch);
    let take = |uid: Uid, monthly: &mut MonthlyCount| -> bool {
        if followers.is_blacklisted(uid) || (capped && monthly.full(uid)) {
            return false;
        }
        if capped {
            *monthly.personal.entry(uid).or_default() += 1;
        }
        true
    };
    match audience {
        Audience::All => {
            let total = followers.total();
            if capped && monthly.all_sends >= MONTHLY_PER_USER {
                return Ok(Counts(total, 0, total));
            }
            let mut filtered = 0u64;
            if capped {
                filtered += monthly
                    .personal
                    .iter()
                    .filter(|(u, _)| followers.is_following(**u) && monthly.full(**u))
                    .count() as u64;
            }
            for uid in followers.blacklisted() {
                if capped && monthly.full(uid) {
                    continue;
                }
                filtered += 1;
                if capped {
                    // It did not receive this one: take back the send to all below.
                    *monthly.personal.entry(uid).or_default() -= 1;
                }
            }
            if capped {
                monthly.all_sends += 1;
            }
            Ok(Counts(total, total - filtered, filtered))
        }
        Audience::Tag(id) => {
            let members = followers.tag_member_uids(*id)?;
            let mut sent = 0u64;
            for uid in members {
                if take(*uid, monthly) {
                    sent += 1;
                }
            }
            let total = members.len() as u64;
            Ok(Counts(total, sent, total - sent))
        }
        Audience::List(openids) => {
            let mut seen = HashSet::with_capacity(openids.len());
            let mut sent = 0u64;
            for openid in openids {
                let Some(uid) = followers.following_uid(openid) else {
                    continue;
                };
                if seen.insert(uid) && take(uid, monthly) {
                    sent += 1;
                }
            }
            let total = openids.len() as u64;
            Ok(Counts(total, sent, total - sent))
        }
    }
}

/// A job's answer: `{"errcode":0,"errmsg":"send job submission success","msg_id","msg_data_id"?}`.
fn job_answer(msg_id: u64, msg_data_id: Option<u64>) -> Json<Value> {
    let mut answer =
        json!({ "errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id });
    if let Some(id) = msg_data_id {
        answer["msg_data_id"] = json!(id);
    }
    Json(answer)
}

/// The shared part of `sendall` and `send`: dedupe, checks, quota, delivery, the job record and
/// its finish task.
fn submit(sim: &Arc<Shared>, appid: &str, body: &Value, audience: &Audience) -> Answer {
    let clientmsgid = clientmsgid_of(body)?;
    let subscription = sim
        .app(appid)
        .is_some_and(|a| a.kind == AccountKind::Subscription);
    let mut guard = sim.lock();
    let state: &mut SimState = &mut guard;
    let (day, month, now) = (state.clock.day(), state.clock.month(), state.now_ms());
    let msg_id = state.mass.next_msg_id;
    let app = state.mass.app(appid);
    if let Some(existing) = clientmsgid.as_ref().and_then(|c| app.by_clientmsgid.get(c)) {
        let errmsg = format!(
            "{} rid: {}",
            crate::state::errmsg(45065),
            crate::state::rid()
        );
        return Ok(Json(
            json!({ "errcode": 45065, "errmsg": errmsg, "msg_id": existing }),
        ));
    }
    let (msgtype, msg_data_id, articles) = check_message(body, app)?;
    if subscription {
        if app.sub_day != day {
            app.sub_day = day;
            app.sub_sends = 0;
        }
        if app.sub_sends >= SUBSCRIPTION_DAILY {
            return Err(SimError::api(45028));
        }
    }
    let empty = Followers::default();
    let followers = state.followers.get(appid).unwrap_or(&empty);
    let app = state.mass.apps.get_mut(appid).expect("created above");
    let monthly = if subscription {
        None
    } else {
        app.monthly.roll(month);
        Some(&mut app.monthly)
    };
    let Counts(recipients, sent, filtered) = deliver(followers, monthly, audience)?;
    if subscription {
        app.sub_sends += 1;
    }
    let (target, tag_id) = audience.target();
    if let Some(c) = &clientmsgid {
        app.by_clientmsgid.insert(c.clone(), msg_id);
    }
    app.by_msg_id.insert(msg_id, app.jobs.len());
    app.jobs.push(MassJob {
        msg_id,
        msg_data_id,
        clientmsgid,
        msgtype,
        target,
        tag_id,
        recipients,
        sent,
        filtered,
        errors: 0,
        status: JobStatus::Sending,
        finish_posted: false,
        finish_outcome: None,
        created_ms: now,
        articles,
    });
    state.mass.next_msg_id += 1;
    let settings = state.mass.settings;
    drop(guard);
    tokio::spawn(finish(sim.clone(), appid.to_owned(), msg_id, settings));
    Ok(job_answer(msg_id, msg_data_id))
}

/// The `MASSSENDJOBFINISH` event of a job.
pub(crate) fn finish_xml(original_id: &str, create_time: i64, job: &MassJob) -> String {
    let mut x = String::with_capacity(480);
    x.push_str("<xml>");
    cdata(&mut x, "ToUserName", original_id);
    cdata(&mut x, "FromUserName", SYSTEM_OPENID);
    x.push_str(&format!("<CreateTime>{create_time}</CreateTime>"));
    cdata(&mut x, "MsgType", "event");
    cdata(&mut x, "Event", "MASSSENDJOBFINISH");
    x.push_str(&format!("<MsgID>{}</MsgID>", job.msg_id));
    cdata(&mut x, "Status", "send success");
    x.push_str(&format!(
        "<TotalCount>{}</TotalCount><FilterCount>{}</FilterCount><SentCount>{}</SentCount><ErrorCount>{}</ErrorCount>",
        job.recipients, job.filtered, job.sent, job.errors
    ));
    x.push_str("</xml>");
    x
}

/// After the delay the job is finished (SEND_SUCCESS unless deleted) and, when finish events
/// are on, its `MASSSENDJOBFINISH` callback is posted with WeChat's timeout and tries.
async fn finish(sim: Arc<Shared>, appid: String, msg_id: u64, settings: MassSettings) {
    tokio::time::sleep(Duration::from_millis(settings.finish_delay_ms)).await;
    let Some(app) = sim.app(&appid) else {
        return;
    };
    let (xml, now_secs) = {
        let mut state = sim.lock();
        let now_secs = state.now_ms() / 1000;
        let Some(job) = state.mass.app(&appid).job_mut(msg_id) else {
            return;
        };
        if job.status == JobStatus::Sending {
            job.status = JobStatus::SendSuccess;
        }
        if !settings.finish_events {
            return;
        }
        (finish_xml(&app.original_id, now_secs, job), now_secs)
    };
    let outcome = callback::post_event(&sim, app, xml, now_secs, "MASSSENDJOBFINISH").await;
    let mut state = sim.lock();
    if let Some(job) = state.mass.app(&appid).job_mut(msg_id) {
        job.finish_posted = true;
        job.finish_outcome = Some(outcome);
    }
}

/// `POST /cgi-bin/message/mass/sendall {"filter":{"is_to_all","tag_id"},"msgtype",<object>,
/// "send_ignore_reprint","clientmsgid"?}`.
pub(crate) async fn sendall(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_SENDALL).await?;
    let body = parse(&body)?;
    let filter = body
        .get("filter")
        .filter(|f| f.is_object())
        .ok_or_else(|| SimError::api(40097))?;
    let audience = if filter
        .get("is_to_all")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        Audience::All
    } else {
        let tag_id = match filter.get("tag_id") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| SimError::api(40097))?;
        Audience::Tag(tag_id)
    };
    submit(&sim, &appid, &body, &audience)
}

/// `POST /cgi-bin/message/mass/send {"touser":[2..=10000 openids],"msgtype",<object>,
/// "clientmsgid"?}`.
pub(crate) async fn send(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_SEND).await?;
    let body = parse(&body)?;
    let openids: Vec<String> = match body.get("touser") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|o| o.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| SimError::api(40003))?,
        _ => return Err(SimError::api(40130)),
    };
    if !(MIN_OPENIDS..=MAX_OPENIDS).contains(&openids.len()) {
        return Err(SimError::api(40130));
    }
    submit(&sim, &appid, &body, &Audience::List(openids))
}

/// `POST /cgi-bin/message/mass/preview {"touser"|"towxname","msgtype",<object>}`: a follower
/// (40003) receives it at once (listed by `/_sim/messages`, channel `preview`).
pub(crate) async fn preview(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_PREVIEW).await?;
    let body = parse(&body)?;
    let touser = non_empty_str(&body, "touser").map(str::to_owned);
    let towxname = non_empty_str(&body, "towxname").is_some();
    let mut state = sim.lock();
    let (msgtype, _, _) = check_message(&body, state.mass.app(&appid))?;
    match &touser {
        Some(openid) => {
            if state.followers(&appid).following_uid(openid).is_none() {
                return Err(SimError::api(40003));
            }
        }
        None if towxname => {}
        None => return Err(SimError::api(40003)),
    }
    let msg_id = state.mass.msg_id();
    if let Some(openid) = touser {
        state.deliver(&appid, &openid, "preview", &msgtype, body);
    }
    drop(state);
    let errmsg = "preview success";
    Ok(Json(
        json!({ "errcode": 0, "errmsg": errmsg, "msg_id": msg_id }),
    ))
}

/// `POST /cgi-bin/message/mass/delete {"msg_id","article_idx"?}`: the job's status becomes
/// DELETE; unknown `msg_id` or an `article_idx` beyond the news 40097.
pub(crate) async fn delete(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_DELETE).await?;
    let body = parse(&body)?;
    let msg_id = msg_id_of(&body).ok_or_else(|| SimError::api(40097))?;
    let article_idx = match body.get("article_idx") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| SimError::api(40097))?,
    };
    let mut state = sim.lock();
    let job = state
        .mass
        .app(&appid)
        .job_mut(msg_id)
        .ok_or_else(|| SimError::api(40097))?;
    if article_idx > job.articles as u64 {
        return Err(SimError::api(40097));
    }
    job.status = JobStatus::Delete;
    drop(state);
    ok()
}

/// `POST /cgi-bin/message/mass/get {"msg_id"}` → `{"msg_id","msg_status"}`; unknown 40097.
pub(crate) async fn get(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_GET).await?;
    let body = parse(&body)?;
    let msg_id = msg_id_of(&body).ok_or_else(|| SimError::api(40097))?;
    let mut state = sim.lock();
    let job = state
        .mass
        .app(&appid)
        .job_mut(msg_id)
        .ok_or_else(|| SimError::api(40097))?;
    let status = job.status;
    drop(state);
    Ok(Json(json!({ "msg_id": msg_id, "msg_status": status })))
}

/// `POST /cgi-bin/message/mass/speed/get {}` → `{"speed","realspeed"}` (default speed 2).
pub(crate) async fn speed_get(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_SPEED_GET).await?;
    let speed = sim.lock().mass.app(&appid).speed.unwrap_or(DEFAULT_SPEED);
    let realspeed = REAL_SPEEDS[usize::from(speed)];
    Ok(Json(json!({ "speed": speed, "realspeed": realspeed })))
}

/// `POST /cgi-bin/message/mass/speed/set {"speed":0..=4}`: else 45083 (missing: 45084).
pub(crate) async fn speed_set(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MASS_SPEED_SET).await?;
    let body = parse(&body)?;
    let speed = match body.get("speed") {
        None | Some(Value::Null) => return Err(SimError::api(45084)),
        Some(v) => v
            .as_u64()
            .and_then(|s| u8::try_from(s).ok())
            .filter(|s| usize::from(*s) < REAL_SPEEDS.len())
            .ok_or_else(|| SimError::api(45083))?,
    };
    sim.lock().mass.app(&appid).speed = Some(speed);
    ok()
}

// ---- control API ----

/// The appid of a control query: 400 when missing, 404 when unknown.
pub(crate) fn control_app(sim: &Shared, appid: Option<&String>) -> Result<String, SimError> {
    let appid = appid
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::BadRequest("appid is missing".into()))?;
    if sim.app(appid).is_none() {
        return Err(SimError::NotFound(format!("unknown appid {appid:?}")));
    }
    Ok(appid.clone())
}

/// `GET /_sim/mass?appid=` → `{"appid","jobs":[{msg_id, msg_data_id?, clientmsgid, msgtype,
/// target, tag_id?, recipients, sent, filtered, errors, status, finish_posted, finish_outcome,
/// created_ms}]}`.
pub(crate) async fn jobs(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let jobs = sim.lock().mass.app(&appid).jobs.clone();
    Ok(Json(json!({ "appid": appid, "jobs": jobs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    #[serde(default)]
    finish_delay_ms: Option<u64>,
    #[serde(default)]
    finish_events: Option<bool>,
}

/// `POST /_sim/mass/settings {"finish_delay_ms"?, "finish_events"?}` → the settings.
pub(crate) async fn settings(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: SettingsRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    if request.finish_delay_ms.is_some_and(|d| d > 600_000) {
        return Err(SimError::BadRequest(
            "finish_delay_ms must be at most 600000".into(),
        ));
    }
    let mut state = sim.lock();
    let settings = &mut state.mass.settings;
    if let Some(delay) = request.finish_delay_ms {
        settings.finish_delay_ms = delay;
    }
    if let Some(on) = request.finish_events {
        settings.finish_events = on;
    }
    let settings = *settings;
    drop(state);
    Ok(Json(json!(settings)))
}
