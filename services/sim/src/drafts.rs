//! Drafts (草稿箱): `draft/add`, `get`, `update`, `delete`, `count` and `batchget`. Every
//! article needs a title (at most 32 characters, 45003) and content (44003 without either)
//! and a cover `thumb_media_id` that is a permanent image or thumb of the app (40007); a
//! digest (at most 128 characters, 45004) defaults to the first 54 characters of the text.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::SimError;
use crate::material::MaterialStore;
use crate::paths;
use crate::rest::{authorized, batch_page, json_body, listed_articles, uint_field};
use crate::state::{Shared, random_string};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Articles per draft.
const MAX_ARTICLES: usize = 8;
/// Characters of a title.
const MAX_TITLE_CHARS: usize = 32;
/// Characters of a digest.
const MAX_DIGEST_CHARS: usize = 128;
/// Characters of the text a missing digest is taken from.
const DEFAULT_DIGEST_CHARS: usize = 54;
/// Drafts per `batchget` page.
const MAX_BATCH: u64 = 20;

/// A stored draft.
struct Draft {
    appid: String,
    /// The articles as `draft/get` answers them.
    articles: Vec<Value>,
    update_ms: i64,
    /// Order of the last change, for newest-first listings.
    seq: u64,
}

/// The drafts of every app.
#[derive(Default)]
pub(crate) struct DraftStore {
    /// media_id → draft.
    drafts: HashMap<String, Draft>,
    seq: u64,
}

impl DraftStore {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The app's draft `media_id` (else 40007).
    fn find(&self, appid: &str, media_id: &str) -> Result<&Draft, SimError> {
        self.drafts
            .get(media_id)
            .filter(|d| d.appid == appid)
            .ok_or_else(|| SimError::api(40007))
    }

    fn get_mut(&mut self, appid: &str, media_id: &str) -> Result<&mut Draft, SimError> {
        self.drafts
            .get_mut(media_id)
            .filter(|d| d.appid == appid)
            .ok_or_else(|| SimError::api(40007))
    }

    /// The articles of the app's draft `media_id` (else 40007), for publishing.
    pub(crate) fn articles(&self, appid: &str, media_id: &str) -> Result<Vec<Value>, SimError> {
        Ok(self.find(appid, media_id)?.articles.clone())
    }

    /// Whether the app has the draft `media_id`.
    pub(crate) fn contains(&self, appid: &str, media_id: &str) -> bool {
        self.find(appid, media_id).is_ok()
    }

    /// Takes a published draft out of the draft box.
    pub(crate) fn remove(&mut self, media_id: &str) {
        self.drafts.remove(media_id);
    }

    /// The app's drafts, newest change first, with their media_ids.
    fn of_app(&self, appid: &str) -> Vec<(&String, &Draft)> {
        let mut drafts: Vec<_> = self
            .drafts
            .iter()
            .filter(|(_, d)| d.appid == appid)
            .collect();
        drafts.sort_by_key(|(_, d)| std::cmp::Reverse(d.seq));
        drafts
    }
}

/// The text of `content` without its tags, cut to the default digest length.
fn default_digest(content: &str) -> String {
    let mut in_tag = false;
    content
        .chars()
        .filter(|c| match c {
            '<' => {
                in_tag = true;
                false
            }
            '>' => {
                in_tag = false;
                false
            }
            _ => !in_tag,
        })
        .take(DEFAULT_DIGEST_CHARS)
        .collect()
}

/// A 0/1 switch given as a number or a boolean (absent: 0).
fn switch(article: &Value, key: &str) -> u8 {
    match article.get(key) {
        Some(Value::Bool(b)) => u8::from(*b),
        Some(v) => u8::from(v.as_i64().is_some_and(|n| n != 0)),
        None => 0,
    }
}

/// Checks one article; answers it as `draft/get` shows it.
fn check_article(
    article: &Value,
    material: &MaterialStore,
    appid: &str,
) -> Result<Value, SimError> {
    let text = |key: &str| article.get(key).and_then(Value::as_str).unwrap_or("");
    let (title, content) = (text("title"), text("content"));
    if title.is_empty() || content.is_empty() {
        return Err(SimError::api(44003));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(SimError::api(45003));
    }
    if text("digest").chars().count() > MAX_DIGEST_CHARS {
        return Err(SimError::api(45004));
    }
    if !material.is_cover(appid, text("thumb_media_id")) {
        return Err(SimError::api(40007));
    }
    let digest = match text("digest") {
        "" => default_digest(content),
        digest => digest.to_owned(),
    };
    Ok(json!({
        "article_type": "news",
        "title": title,
        "author": text("author"),
        "digest": digest,
        "content": content,
        "content_source_url": text("content_source_url"),
        "thumb_media_id": text("thumb_media_id"),
        "need_open_comment": switch(article, "need_open_comment"),
        "only_fans_can_comment": switch(article, "only_fans_can_comment"),
    }))
}

fn media_id_of(body: &Value) -> &str {
    body.get("media_id").and_then(Value::as_str).unwrap_or("")
}

fn ok() -> Answer {
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `POST /cgi-bin/draft/add {"articles":[...]}` → `{"media_id"}`: 1..=8 articles (none 44003,
/// more 45008).
pub(crate) async fn add(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::DRAFT_ADD).await?;
    let body = json_body(&body)?;
    let articles = body
        .get("articles")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::api(44003))?;
    if articles.len() > MAX_ARTICLES {
        return Err(SimError::api(45008));
    }
    let mut state = sim.lock();
    let articles = articles
        .iter()
        .map(|a| check_article(a, &state.material, &appid))
        .collect::<Result<Vec<_>, _>>()?;
    let now = state.now_ms();
    let seq = state.drafts.next_seq();
    let media_id = random_string(64);
    state.drafts.drafts.insert(
        media_id.clone(),
        Draft {
            appid,
            articles,
            update_ms: now,
            seq,
        },
    );
    Ok(Json(json!({ "media_id": media_id })))
}

/// `POST /cgi-bin/draft/get {"media_id"}` → `{"news_item":[...]}`; unknown 40007.
pub(crate) async fn get(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::DRAFT_GET).await?;
    let body = json_body(&body)?;
    let state = sim.lock();
    let draft = state.drafts.find(&appid, media_id_of(&body))?;
    Ok(Json(json!({ "news_item": draft.articles })))
}

/// `POST /cgi-bin/draft/delete {"media_id"}`; unknown 40007.
pub(crate) async fn delete(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::DRAFT_DELETE).await?;
    let body = json_body(&body)?;
    let mut state = sim.lock();
    state.drafts.find(&appid, media_id_of(&body))?;
    state.drafts.drafts.remove(media_id_of(&body));
    ok()
}

/// `POST /cgi-bin/draft/update {"media_id","index","articles":{...}}`: replaces one article
/// (unknown draft 40007, `index` outside the draft 40114).
pub(crate) async fn update(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::DRAFT_UPDATE).await?;
    let body = json_body(&body)?;
    let mut state = sim.lock();
    let state = &mut *state;
    let now = state.now_ms();
    let seq = state.drafts.next_seq();
    let draft = state.drafts.get_mut(&appid, media_id_of(&body))?;
    let index = uint_field(&body, "index")
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i < draft.articles.len())
        .ok_or_else(|| SimError::api(40114))?;
    let article = body
        .get("articles")
        .filter(|a| a.is_object())
        .ok_or_else(|| SimError::api(44003))?;
    draft.articles[index] = check_article(article, &state.material, &appid)?;
    draft.update_ms = now;
    draft.seq = seq;
    ok()
}

/// `GET /cgi-bin/draft/count` → `{"total_count"}`.
pub(crate) async fn count(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::DRAFT_COUNT).await?;
    let total = sim.lock().drafts.of_app(&appid).len();
    Ok(Json(json!({ "total_count": total })))
}

/// `POST /cgi-bin/draft/batchget {"offset","count","no_content"?}` → `{"total_count",
/// "item_count","item":[{"media_id","content":{"news_item":[...]},"update_time"}]}`, newest
/// change first; `count` outside 1..=20 or a bad `offset` 40097; `no_content: 1` leaves out
/// each article's `content`.
pub(crate) async fn batchget(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::DRAFT_BATCHGET).await?;
    let body = json_body(&body)?;
    let (skip, take) = batch_page(&body, MAX_BATCH)?;
    let state = sim.lock();
    let drafts = state.drafts.of_app(&appid);
    let items: Vec<Value> = drafts
        .iter()
        .skip(skip)
        .take(take)
        .map(|(media_id, draft)| {
            json!({
                "media_id": media_id,
                "content": { "news_item": listed_articles(&draft.articles, &body) },
                "update_time": draft.update_ms / 1000,
            })
        })
        .collect();
    Ok(Json(json!({
        "total_count": drafts.len(),
        "item_count": items.len(),
        "item": items,
    })))
}
