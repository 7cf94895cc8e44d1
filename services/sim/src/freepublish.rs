//! Publishing (发布能力): `freepublish/submit`, `get`, `getarticle`, `batchget` and `delete`,
//! the `PUBLISHJOBFINISH` callback a job posts to the gateway, and the control calls of
//! `/_sim/publish`.
//!
//! A submitted draft is a job in status 1 (publishing). After the mass send's finish delay
//! (`/_sim/mass/settings`) it succeeds: the draft leaves the draft box, the articles are
//! published under one `article_id` with a URL each, and every article gets its comment
//! thread at `(msg_data_id, index)`, 0-based, open when the article asked for
//! `need_open_comment`. A failure set with `/_sim/publish` (2 originality, 3 general,
//! 4 review) ends the next job submitted instead, with every article in `fail_idx` and the
//! draft kept. What is published is the draft as it was submitted.
//! When finish events are on, `PUBLISHJOBFINISH` is posted either way.
//!
//! Errors as WeChat: an unknown draft 40007, an unknown `publish_id` 53502, an unknown or
//! deleted `article_id` 53600, an `index` outside the article 40114, a `batchget` count
//! outside 1..=20 40097.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wxoa_wire::reply::cdata;

use crate::SimError;
use crate::callback::{self, Outcome};
use crate::mass::control_app;
use crate::paths;
use crate::rest::{authorized, batch_page, json_body, listed_articles, uint_field};
use crate::state::{Shared, random_string};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Published articles per `batchget` page.
const MAX_BATCH: u64 = 20;
/// The first `publish_id` (WeChat's are decimal strings of this size).
const FIRST_PUBLISH_ID: u64 = 2_247_500_000;

/// Publishing: in progress.
const PUBLISHING: u8 = 1;
/// Publishing: done.
const SUCCESS: u8 = 0;
/// Published, then every article deleted.
const ALL_DELETED: u8 = 5;

/// One publish job.
#[derive(Debug, Clone, Serialize)]
struct Job {
    #[serde(skip)]
    appid: String,
    publish_id: String,
    media_id: String,
    msg_data_id: u64,
    publish_status: u8,
    article_id: Option<String>,
    fail_idx: Vec<usize>,
    finish_posted: bool,
    finish_outcome: Option<Outcome>,
    /// The draft's articles when it was submitted: what is published.
    #[serde(skip)]
    articles: Vec<Value>,
    /// The failure `/_sim/publish` set for this job (taken at submit).
    #[serde(skip)]
    fail: Option<u8>,
}

/// One published message: its articles as `getarticle` answers them (with `url` and
/// `is_deleted`).
struct Published {
    appid: String,
    articles: Vec<Value>,
    update_time: i64,
    seq: u64,
}

/// Jobs and published articles of every app.
#[derive(Default)]
pub(crate) struct PublishStore {
    /// publish_id → job.
    jobs: BTreeMap<String, Job>,
    /// article_id → the published message.
    published: HashMap<String, Published>,
    /// appid → the outcome of the app's next job (2, 3 or 4), set by `/_sim/publish`.
    fail_next: HashMap<String, u8>,
    next_id: u64,
    seq: u64,
}

impl PublishStore {
    fn job(&mut self, appid: &str, publish_id: &str) -> Result<&mut Job, SimError> {
        self.jobs
            .get_mut(publish_id)
            .filter(|j| j.appid == appid)
            .ok_or_else(|| SimError::api(53502))
    }

    /// The app's published message `article_id`, unless every article is deleted (53600).
    fn published(&mut self, appid: &str, article_id: &str) -> Result<&mut Published, SimError> {
        self.published
            .get_mut(article_id)
            .filter(|p| p.appid == appid && !all_deleted(p))
            .ok_or_else(|| SimError::api(53600))
    }
}

fn all_deleted(published: &Published) -> bool {
    published
        .articles
        .iter()
        .all(|a| a["is_deleted"].as_bool() == Some(true))
}

/// The `PUBLISHJOBFINISH` event of a job, from the account's system user.
fn finish_xml(original_id: &str, create_time: i64, job: &Job, urls: &[String]) -> String {
    let mut x = String::with_capacity(600);
    x.push_str("<xml>");
    cdata(&mut x, "ToUserName", original_id);
    cdata(&mut x, "FromUserName", crate::mass::SYSTEM_OPENID);
    x.push_str(&format!("<CreateTime>{create_time}</CreateTime>"));
    cdata(&mut x, "MsgType", "event");
    cdata(&mut x, "Event", "PUBLISHJOBFINISH");
    x.push_str(&format!(
        "<PublishEventInfo><publish_id>{}</publish_id><publish_status>{}</publish_status>",
        job.publish_id, job.publish_status
    ));
    if let Some(article_id) = &job.article_id {
        cdata(&mut x, "article_id", article_id);
        x.push_str(&format!("<article_detail><count>{}</count>", urls.len()));
        for (i, url) in urls.iter().enumerate() {
            x.push_str(&format!("<item><idx>{}</idx>", i + 1));
            cdata(&mut x, "article_url", url);
            x.push_str("</item>");
        }
        x.push_str("</article_detail>");
    }
    for idx in &job.fail_idx {
        x.push_str(&format!("<fail_idx>{idx}</fail_idx>"));
    }
    x.push_str("</PublishEventInfo></xml>");
    x
}

/// `POST /cgi-bin/freepublish/submit {"media_id"}` → `{"errcode":0,"errmsg":"ok",
/// "publish_id","msg_data_id"}`; an unknown draft 40007.
pub(crate) async fn submit(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::FREEPUBLISH_SUBMIT).await?;
    let body = json_body(&body)?;
    let media_id = body
        .get("media_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut state = sim.lock();
    let articles = state.drafts.articles(&appid, media_id)?;
    let msg_data_id = state.mass.next_data_id();
    let publish = &mut state.publish;
    let fail = publish.fail_next.remove(&appid);
    let publish_id = (FIRST_PUBLISH_ID + publish.next_id).to_string();
    publish.next_id += 1;
    publish.jobs.insert(
        publish_id.clone(),
        Job {
            appid: appid.clone(),
            publish_id: publish_id.clone(),
            media_id: media_id.to_owned(),
            msg_data_id,
            publish_status: PUBLISHING,
            article_id: None,
            fail_idx: Vec::new(),
            finish_posted: false,
            finish_outcome: None,
            articles,
            fail,
        },
    );
    let settings = state.mass.settings();
    drop(state);
    tokio::spawn(finish(
        sim.clone(),
        appid,
        publish_id.clone(),
        settings.finish_delay_ms,
        settings.finish_events,
    ));
    Ok(Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "publish_id": publish_id,
        "msg_data_id": msg_data_id,
    })))
}

/// Ends a job after the delay: published (the draft taken from the draft box, comment threads
/// made) or failed as `/_sim/publish` said; then, when finish events are on, its
/// `PUBLISHJOBFINISH` callback.
async fn finish(sim: Arc<Shared>, appid: String, publish_id: String, delay_ms: u64, events: bool) {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let Some(app) = sim.app(&appid) else {
        return;
    };
    let (xml, now_secs) = {
        let mut state = sim.lock();
        let state = &mut *state;
        let now_secs = state.now_ms() / 1000;
        let Ok(job) = state.publish.job(&appid, &publish_id) else {
            return;
        };
        let media_id = job.media_id.clone();
        let articles = std::mem::take(&mut job.articles);
        // The draft deleted while the job ran: a general failure.
        let failure = match job.fail {
            Some(status) => Some(status),
            None if !state.drafts.contains(&appid, &media_id) => Some(3),
            None => None,
        };
        let seq = {
            state.publish.seq += 1;
            state.publish.seq
        };
        let job = state
            .publish
            .job(&appid, &publish_id)
            .expect("the job was found above");
        let mut urls = Vec::new();
        if let Some(status) = failure {
            job.publish_status = status;
            job.fail_idx = (1..=articles.len().max(1)).collect();
        } else {
            let article_id = random_string(43);
            job.publish_status = SUCCESS;
            job.article_id = Some(article_id.clone());
            let msg_data_id = job.msg_data_id;
            let mut published = Vec::with_capacity(articles.len());
            for (index, mut article) in articles.into_iter().enumerate() {
                let url = format!("https://mp.weixin.qq.com/s/{}", random_string(22));
                let open = article["need_open_comment"].as_u64() == Some(1);
                state
                    .comments
                    .add_article(&appid, msg_data_id, index as u64, open);
                article["url"] = json!(url);
                article["is_deleted"] = json!(false);
                urls.push(url);
                published.push(article);
            }
            state.drafts.remove(&media_id);
            state.publish.published.insert(
                article_id,
                Published {
                    appid: appid.clone(),
                    articles: published,
                    update_time: now_secs,
                    seq,
                },
            );
        }
        if !events {
            return;
        }
        let job = &state.publish.jobs[&publish_id];
        (finish_xml(&app.original_id, now_secs, job, &urls), now_secs)
    };
    let outcome = callback::post_event(&sim, app, xml, now_secs, "PUBLISHJOBFINISH").await;
    if let Ok(job) = sim.lock().publish.job(&appid, &publish_id) {
        job.finish_posted = true;
        job.finish_outcome = Some(outcome);
    }
}

/// `POST /cgi-bin/freepublish/get {"publish_id"}` → `{"publish_id","publish_status",
/// "article_id"?,"article_detail"?:{"count","item":[{"idx","article_url"}]},"fail_idx"}`.
pub(crate) async fn get(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::FREEPUBLISH_GET).await?;
    let body = json_body(&body)?;
    let publish_id = match body.get("publish_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(SimError::api(53502)),
    };
    let mut state = sim.lock();
    let job = state.publish.job(&appid, &publish_id)?.clone();
    let mut answer = json!({
        "publish_id": job.publish_id,
        "publish_status": job.publish_status,
        "fail_idx": job.fail_idx,
    });
    if let Some(article_id) = &job.article_id {
        let urls: Vec<Value> = state
            .publish
            .published
            .get(article_id)
            .map(|p| {
                p.articles
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a["is_deleted"].as_bool() != Some(true))
                    .map(|(i, a)| json!({"idx": i + 1, "article_url": a["url"]}))
                    .collect()
            })
            .unwrap_or_default();
        if urls.is_empty() && job.publish_status == SUCCESS {
            answer["publish_status"] = json!(ALL_DELETED);
        }
        answer["article_id"] = json!(article_id);
        answer["article_detail"] = json!({"count": urls.len(), "item": urls});
    }
    Ok(Json(answer))
}

fn article_id_of(body: &Value) -> &str {
    body.get("article_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `POST /cgi-bin/freepublish/getarticle {"article_id"}` → `{"news_item":[...]}`, each with
/// its `url` and `is_deleted`.
pub(crate) async fn getarticle(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::FREEPUBLISH_GETARTICLE).await?;
    let body = json_body(&body)?;
    let mut state = sim.lock();
    let published = state.publish.published(&appid, article_id_of(&body))?;
    Ok(Json(json!({ "news_item": published.articles })))
}

/// `POST /cgi-bin/freepublish/delete {"article_id","index"?}`: deletes the article at
/// `index` (1-based; absent or 0: all of them).
pub(crate) async fn delete(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::FREEPUBLISH_DELETE).await?;
    let body = json_body(&body)?;
    let index = match body.get("index") {
        None | Some(Value::Null) => 0,
        Some(_) => uint_field(&body, "index").ok_or_else(|| SimError::api(40114))?,
    };
    let mut state = sim.lock();
    let published = state.publish.published(&appid, article_id_of(&body))?;
    let count = published.articles.len() as u64;
    match index {
        0 => published
            .articles
            .iter_mut()
            .for_each(|a| a["is_deleted"] = json!(true)),
        i if i <= count => published.articles[(i - 1) as usize]["is_deleted"] = json!(true),
        _ => return Err(SimError::api(40114)),
    }
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `POST /cgi-bin/freepublish/batchget {"offset","count","no_content"?}` → `{"total_count",
/// "item_count","item":[{"article_id","content":{"news_item":[...]},"update_time"}]}`, newest
/// first, without messages whose articles are all deleted; `no_content: 1` leaves out each
/// article's `content`.
pub(crate) async fn batchget(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::FREEPUBLISH_BATCHGET).await?;
    let body = json_body(&body)?;
    let (skip, take) = batch_page(&body, MAX_BATCH)?;
    let state = sim.lock();
    let mut mine: Vec<(&String, &Published)> = state
        .publish
        .published
        .iter()
        .filter(|(_, p)| p.appid == appid && !all_deleted(p))
        .collect();
    mine.sort_by_key(|(_, p)| std::cmp::Reverse(p.seq));
    let items: Vec<Value> = mine
        .iter()
        .skip(skip)
        .take(take)
        .map(|(article_id, published)| {
            json!({
                "article_id": article_id,
                "content": { "news_item": listed_articles(&published.articles, &body) },
                "update_time": published.update_time,
            })
        })
        .collect();
    Ok(Json(json!({
        "total_count": mine.len(),
        "item_count": items.len(),
        "item": items,
    })))
}

// ---- control API ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    appid: String,
    fail: u8,
}

/// `POST /_sim/publish {"appid","fail":2|3|4}`: the app's next publish job submitted ends
/// with that status (2 originality, 3 general, 4 review) → `{"appid","fail"}`.
pub(crate) async fn fail_next(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: FailRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    let appid = control_app(&sim, Some(&request.appid))?;
    if !(2..=4).contains(&request.fail) {
        return Err(SimError::BadRequest(
            "fail is 2 (originality), 3 (general) or 4 (review)".into(),
        ));
    }
    sim.lock()
        .publish
        .fail_next
        .insert(appid.clone(), request.fail);
    Ok(Json(json!({ "appid": appid, "fail": request.fail })))
}

/// `GET /_sim/publish?appid=` → `{"appid","jobs":[{publish_id, media_id, msg_data_id,
/// publish_status, article_id, fail_idx, finish_posted, finish_outcome}]}`, oldest first.
pub(crate) async fn jobs(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let state = sim.lock();
    let jobs: Vec<&Job> = state
        .publish
        .jobs
        .values()
        .filter(|j| j.appid == appid)
        .collect();
    Ok(Json(json!({ "appid": appid, "jobs": jobs })))
}
