//! Article comments: open, close, list (paged), elect, unelect, delete, reply, delete reply.
//! Every route is under `/v1/apps/{appid}/articles/{msg_data_id}/{index}/comments`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AdminError, Answer, Pending, Shared, from_path, wechat};

/// The article: its `msg_data_id` and its index in the news.
type Article = (String, u64, u32);
/// One comment of an article.
type Comment = (String, u64, u32, u64);

fn article_body(msg_data_id: u64, index: u32) -> Value {
    json!({"msg_data_id": msg_data_id, "index": index})
}

fn comment_body(msg_data_id: u64, index: u32, user_comment_id: u64) -> Value {
    json!({"msg_data_id": msg_data_id, "index": index, "user_comment_id": user_comment_id})
}

/// The handler of an article verb (`open`, `close`): posts `{msg_data_id, index}` to `path`.
pub(crate) fn on_article(
    path: &'static str,
) -> impl Fn(State<Arc<Shared>>, Path<Article>) -> Pending + Clone + Send + Sync + 'static {
    from_path(path, |(app_id, msg_data_id, index): Article| {
        (app_id, article_body(msg_data_id, index))
    })
}

/// The handler of a comment verb (elect, unelect, delete, delete the reply): posts
/// `{msg_data_id, index, user_comment_id}` to `path`.
pub(crate) fn on_comment(
    path: &'static str,
) -> impl Fn(State<Arc<Shared>>, Path<Comment>) -> Pending + Clone + Send + Sync + 'static {
    from_path(path, |(app_id, msg_data_id, index, id): Comment| {
        (app_id, comment_body(msg_data_id, index, id))
    })
}

/// `?begin=0&count=50&type=all|normal|elected`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    begin: u32,
    #[serde(default = "fifty")]
    count: u32,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

fn fifty() -> u32 {
    50
}

/// `GET …/comments?begin=&count=&type=`: one page of comments.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path((app_id, msg_data_id, index)): Path<Article>,
    Query(q): Query<ListQuery>,
) -> Answer {
    if !(1..=50).contains(&q.count) {
        return Err(AdminError::Invalid(
            "count must be 1..=50 (WeChat errcode 88010)".into(),
        ));
    }
    let kind = match q.kind.as_deref().unwrap_or("all") {
        "all" => 0,
        "normal" => 1,
        "elected" => 2,
        other => {
            return Err(AdminError::Invalid(format!(
                "type {other:?}: use all, normal or elected"
            )));
        }
    };
    let mut body = article_body(msg_data_id, index);
    body["begin"] = q.begin.into();
    body["count"] = q.count.into();
    body["type"] = kind.into();
    wechat(&shared, &app_id, "/cgi-bin/comment/list", Some(&body)).await
}

/// `{"content": "..."}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reply {
    content: String,
}

/// `PUT …/comments/{user_comment_id}/reply` with `{"content"}`.
pub(crate) async fn reply(
    State(shared): State<Arc<Shared>>,
    Path((app_id, msg_data_id, index, id)): Path<Comment>,
    Json(reply): Json<Reply>,
) -> Answer {
    if reply.content.trim().is_empty() {
        return Err(AdminError::Invalid(
            "the reply is empty (WeChat errcode 88007)".into(),
        ));
    }
    let mut body = comment_body(msg_data_id, index, id);
    body["content"] = reply.content.into();
    wechat(&shared, &app_id, "/cgi-bin/comment/reply/add", Some(&body)).await
}
