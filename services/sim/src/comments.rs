//! Article comments (留言管理): `comment/open`, `close`, `list`, `markelect`, `unmarkelect`,
//! `delete`, `reply/add` and `reply/delete`, and the control calls of `/_sim/comments` that
//! create the articles (a `(msg_data_id, index)` pair, comments open) and the users' comments.
//!
//! Errors as WeChat: an unknown article 88001, a closed one 88000 (for every verb but open,
//! close and list), an unknown comment 88008, more than 100 elected comments 88003, a second
//! reply 88005, an empty or too long reply 88007, no reply to delete 88009, a list `count`
//! outside 1..=50 88010; a missing or malformed id 40097.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::SimError;
use crate::mass::control_app;
use crate::paths;
use crate::rest::{authorized, json_body, uint_field};
use crate::state::Shared;

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Comments per `comment/list` page.
const MAX_LIST: u64 = 50;
/// Elected comments per article.
pub(crate) const MAX_ELECTED: usize = 100;
/// Characters of a reply.
pub(crate) const MAX_REPLY_CHARS: usize = 1000;

/// The account's reply to a comment.
#[derive(Debug, Clone, Serialize)]
struct Reply {
    content: String,
    create_time: i64,
}

/// A user's comment.
#[derive(Debug, Clone, Serialize)]
struct Comment {
    user_comment_id: u64,
    openid: String,
    content: String,
    create_time: i64,
    elected: bool,
    reply: Option<Reply>,
}

/// One article of a sent message.
struct Article {
    open: bool,
    comments: Vec<Comment>,
    last_id: u64,
}

/// (appid, msg_data_id, index).
type ArticleKey = (String, u64, u64);

/// The articles of every app.
#[derive(Default)]
pub(crate) struct CommentStore {
    articles: BTreeMap<ArticleKey, Article>,
}

impl CommentStore {
    /// The comment thread of a published article, open or closed as the article asked.
    pub(crate) fn add_article(&mut self, appid: &str, msg_data_id: u64, index: u64, open: bool) {
        self.articles
            .entry((appid.to_owned(), msg_data_id, index))
            .or_insert(Article {
                open,
                comments: Vec::new(),
                last_id: 0,
            });
    }

    fn article(&mut self, key: &ArticleKey) -> Result<&mut Article, SimError> {
        self.articles
            .get_mut(key)
            .ok_or_else(|| SimError::api(88001))
    }
}

/// The article a request names: `msg_data_id` (40097 without one) and `index` (default 0).
fn article_key(appid: &str, body: &Value) -> Result<ArticleKey, SimError> {
    let msg_data_id = uint_field(body, "msg_data_id").ok_or_else(|| SimError::api(40097))?;
    let index = match body.get("index") {
        None | Some(Value::Null) => 0,
        Some(_) => uint_field(body, "index").ok_or_else(|| SimError::api(40097))?,
    };
    Ok((appid.to_owned(), msg_data_id, index))
}

fn ok() -> Answer {
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `comment/open` and `comment/close`.
async fn set_open(sim: &Shared, q: &HashMap<String, String>, body: &Bytes, open: bool) -> Answer {
    let api = if open {
        paths::COMMENT_OPEN
    } else {
        paths::COMMENT_CLOSE
    };
    let appid = authorized(sim, q, api).await?;
    let key = article_key(&appid, &json_body(body)?)?;
    sim.lock().comments.article(&key)?.open = open;
    ok()
}

/// `POST /cgi-bin/comment/open {"msg_data_id","index"}`.
pub(crate) async fn open(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    set_open(&sim, &q, &body, true).await
}

/// `POST /cgi-bin/comment/close {"msg_data_id","index"}`.
pub(crate) async fn close(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    set_open(&sim, &q, &body, false).await
}

/// `POST /cgi-bin/comment/list {"msg_data_id","index","begin","count","type"}`: `type` 0 all,
/// 1 not elected, 2 elected; oldest first from `begin` → `{"errcode":0,"errmsg":"ok","total",
/// "comment":[{"user_comment_id","openid","create_time","content","comment_type","reply"?}]}`
/// (`comment_type` 1 = elected, `total` = the comments of that type).
pub(crate) async fn list(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::COMMENT_LIST).await?;
    let body = json_body(&body)?;
    let key = article_key(&appid, &body)?;
    let begin = uint_field(&body, "begin").unwrap_or(0);
    let count = uint_field(&body, "count")
        .filter(|c| (1..=MAX_LIST).contains(c))
        .ok_or_else(|| SimError::api(88010))?;
    let elected = match uint_field(&body, "type").unwrap_or(0) {
        0 => None,
        1 => Some(false),
        2 => Some(true),
        _ => return Err(SimError::api(40097)),
    };
    let mut state = sim.lock();
    let article = state.comments.article(&key)?;
    let matching: Vec<&Comment> = article
        .comments
        .iter()
        .filter(|c| elected.is_none_or(|e| c.elected == e))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(usize::try_from(begin).unwrap_or(usize::MAX))
        .take(usize::try_from(count).unwrap_or(0))
        .map(|c| {
            let mut v = json!({
                "user_comment_id": c.user_comment_id,
                "openid": c.openid,
                "create_time": c.create_time,
                "content": c.content,
                "comment_type": u8::from(c.elected),
            });
            if let Some(reply) = &c.reply {
                v["reply"] = json!(reply);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "total": matching.len(),
        "comment": page,
    })))
}

/// What a verb does to one comment.
#[derive(Clone, Copy)]
enum Verb {
    Elect,
    Unelect,
    Delete,
    Reply,
    Unreply,
}

impl Verb {
    fn api(self) -> &'static str {
        match self {
            Verb::Elect => paths::COMMENT_MARKELECT,
            Verb::Unelect => paths::COMMENT_UNMARKELECT,
            Verb::Delete => paths::COMMENT_DELETE,
            Verb::Reply => paths::COMMENT_REPLY_ADD,
            Verb::Unreply => paths::COMMENT_REPLY_DELETE,
        }
    }
}

/// The verbs on one comment `{"msg_data_id","index","user_comment_id"}` (and `content` for a
/// reply) of an open article.
async fn on_comment(sim: &Shared, q: &HashMap<String, String>, body: &Bytes, verb: Verb) -> Answer {
    let appid = authorized(sim, q, verb.api()).await?;
    let body = json_body(body)?;
    let key = article_key(&appid, &body)?;
    let id = uint_field(&body, "user_comment_id").ok_or_else(|| SimError::api(40097))?;
    let mut state = sim.lock();
    let now = state.now_ms() / 1000;
    let article = state.comments.article(&key)?;
    if !article.open {
        return Err(SimError::api(88000));
    }
    let elected = article.comments.iter().filter(|c| c.elected).count();
    let index = article
        .comments
        .iter()
        .position(|c| c.user_comment_id == id)
        .ok_or_else(|| SimError::api(88008))?;
    let comment = &mut article.comments[index];
    match verb {
        Verb::Elect => {
            if !comment.elected && elected >= MAX_ELECTED {
                return Err(SimError::api(88003));
            }
            comment.elected = true;
        }
        Verb::Unelect => comment.elected = false,
        Verb::Delete => {
            article.comments.remove(index);
        }
        Verb::Reply => {
            let content = body.get("content").and_then(Value::as_str).unwrap_or("");
            if content.is_empty() || content.chars().count() > MAX_REPLY_CHARS {
                return Err(SimError::api(88007));
            }
            if comment.reply.is_some() {
                return Err(SimError::api(88005));
            }
            comment.reply = Some(Reply {
                content: content.to_owned(),
                create_time: now,
            });
        }
        Verb::Unreply => {
            comment.reply.take().ok_or_else(|| SimError::api(88009))?;
        }
    }
    ok()
}

/// `POST /cgi-bin/comment/markelect`: elect a comment (at most 100 per article).
pub(crate) async fn markelect(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    on_comment(&sim, &q, &body, Verb::Elect).await
}

/// `POST /cgi-bin/comment/unmarkelect`.
pub(crate) async fn unmarkelect(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    on_comment(&sim, &q, &body, Verb::Unelect).await
}

/// `POST /cgi-bin/comment/delete`.
pub(crate) async fn delete(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    on_comment(&sim, &q, &body, Verb::Delete).await
}

/// `POST /cgi-bin/comment/reply/add` with `content` (1..=1000 characters).
pub(crate) async fn reply_add(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    on_comment(&sim, &q, &body, Verb::Reply).await
}

/// `POST /cgi-bin/comment/reply/delete`.
pub(crate) async fn reply_delete(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    on_comment(&sim, &q, &body, Verb::Unreply).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedComment {
    openid: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedRequest {
    appid: String,
    #[serde(default)]
    msg_data_id: Option<u64>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    comments: Vec<SeedComment>,
}

/// `POST /_sim/comments {"appid","msg_data_id"?,"index"?,"comments":[{"openid","content"}]}`:
/// creates the article if needed (comments open; without `msg_data_id` a new one from the
/// `msg_data_id` sequence, `index` default 0) and adds the comments at the sim clock →
/// `{"appid","msg_data_id","index","open","user_comment_ids":[...]}`.
pub(crate) async fn seed(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: SeedRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    let appid = control_app(&sim, Some(&request.appid))?;
    if request
        .comments
        .iter()
        .any(|c| c.openid.is_empty() || c.content.is_empty())
    {
        return Err(SimError::BadRequest(
            "every comment needs an openid and content".into(),
        ));
    }
    let mut state = sim.lock();
    let now = state.now_ms() / 1000;
    let msg_data_id = match request.msg_data_id {
        Some(id) => id,
        None => state.mass.next_data_id(),
    };
    let index = request.index.unwrap_or(0);
    let article = state
        .comments
        .articles
        .entry((appid.clone(), msg_data_id, index))
        .or_insert_with(|| Article {
            open: true,
            comments: Vec::new(),
            last_id: 0,
        });
    let mut ids = Vec::with_capacity(request.comments.len());
    for c in request.comments {
        article.last_id += 1;
        ids.push(article.last_id);
        article.comments.push(Comment {
            user_comment_id: article.last_id,
            openid: c.openid,
            content: c.content,
            create_time: now,
            elected: false,
            reply: None,
        });
    }
    Ok(Json(json!({
        "appid": appid,
        "msg_data_id": msg_data_id,
        "index": index,
        "open": article.open,
        "user_comment_ids": ids,
    })))
}

/// `GET /_sim/comments?appid=`: `{"appid","articles":[{"msg_data_id","index","open",
/// "comments":[{"user_comment_id","openid","content","create_time","elected","reply"}]}]}`.
pub(crate) async fn articles(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let state = sim.lock();
    let articles: Vec<Value> = state
        .comments
        .articles
        .iter()
        .filter(|((a, _, _), _)| *a == appid)
        .map(|((_, msg_data_id, index), article)| {
            json!({
                "msg_data_id": msg_data_id,
                "index": index,
                "open": article.open,
                "comments": article.comments,
            })
        })
        .collect();
    Ok(Json(json!({ "appid": appid, "articles": articles })))
}
