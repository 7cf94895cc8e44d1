//! The simulated users, tags, remarks and blacklist APIs (the model is in `followers`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::SimError;
use crate::paths;
use crate::rest::authorized;
use crate::state::Shared;

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// A request body; bad JSON (or a field of the wrong type) is 47001.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, SimError> {
    serde_json::from_slice(body).map_err(|_| SimError::api(47001))
}

fn ok() -> Answer {
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `GET /cgi-bin/user/get?next_openid=`: `{total, count, data: {openid}, next_openid}`, 10 000
/// a page; `{total, count: 0, next_openid: ""}` past the end.
pub(crate) async fn user_get(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::USER_GET).await?;
    let after = q.get("next_openid").map_or("", String::as_str);
    let mut state = sim.lock();
    let followers = state.followers(&appid);
    let total = followers.total();
    let page = followers.list(after)?;
    drop(state);
    let mut answer = page.to_json();
    answer["total"] = json!(total);
    Ok(Json(answer))
}

/// `GET /cgi-bin/user/info?openid=&lang=`.
pub(crate) async fn user_info(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::USER_INFO).await?;
    let openid = q.get("openid").map_or("", String::as_str);
    let info = sim.lock().followers(&appid).info(openid)?;
    Ok(Json(info))
}

#[derive(Deserialize)]
struct BatchGetRequest {
    #[serde(default)]
    user_list: Vec<BatchGetUser>,
}

#[derive(Deserialize)]
struct BatchGetUser {
    #[serde(default)]
    openid: String,
}

/// `POST /cgi-bin/user/info/batchget {user_list: [{openid, lang}]}` → `{user_info_list}`.
pub(crate) async fn user_batchget(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::USER_INFO_BATCHGET).await?;
    let request: BatchGetRequest = parse(&body)?;
    let openids: Vec<String> = request.user_list.into_iter().map(|u| u.openid).collect();
    let list = sim.lock().followers(&appid).batch_info(&openids)?;
    Ok(Json(json!({ "user_info_list": list })))
}

#[derive(Deserialize)]
struct RemarkRequest {
    #[serde(default)]
    openid: String,
    #[serde(default)]
    remark: String,
}

/// `POST /cgi-bin/user/info/updateremark {openid, remark}`.
pub(crate) async fn user_remark(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::USER_REMARK).await?;
    let request: RemarkRequest = parse(&body)?;
    sim.lock()
        .followers(&appid)
        .set_remark(&request.openid, &request.remark)?;
    ok()
}

#[derive(Deserialize)]
struct TagRequest {
    tag: TagFields,
}

#[derive(Deserialize)]
struct TagFields {
    /// Absent: an invalid id (45159).
    #[serde(default = "no_tag")]
    id: i64,
    #[serde(default)]
    name: String,
}

fn no_tag() -> i64 {
    -1
}

/// `POST /cgi-bin/tags/create {tag: {name}}` → `{tag: {id, name}}`.
pub(crate) async fn tags_create(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TAGS_CREATE).await?;
    let request: TagRequest = parse(&body)?;
    let id = sim.lock().followers(&appid).create_tag(&request.tag.name)?;
    Ok(Json(
        json!({ "tag": { "id": id, "name": request.tag.name } }),
    ))
}

/// `GET /cgi-bin/tags/get` → `{tags: [{id, name, count}]}`.
pub(crate) async fn tags_get(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::TAGS_GET).await?;
    let tags = sim.lock().followers(&appid).tags_json();
    Ok(Json(json!({ "tags": tags })))
}

/// `POST /cgi-bin/tags/update {tag: {id, name}}`.
pub(crate) async fn tags_update(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TAGS_UPDATE).await?;
    let request: TagRequest = parse(&body)?;
    sim.lock()
        .followers(&appid)
        .update_tag(request.tag.id, &request.tag.name)?;
    ok()
}

/// `POST /cgi-bin/tags/delete {tag: {id}}`.
pub(crate) async fn tags_delete(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TAGS_DELETE).await?;
    let request: TagRequest = parse(&body)?;
    sim.lock().followers(&appid).delete_tag(request.tag.id)?;
    ok()
}

#[derive(Deserialize)]
struct TagUsersRequest {
    #[serde(default = "no_tag")]
    tagid: i64,
    #[serde(default)]
    next_openid: String,
}

/// `POST /cgi-bin/user/tag/get {tagid, next_openid}` → `{count, data: {openid}, next_openid}`.
pub(crate) async fn tag_users(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TAG_USERS).await?;
    let request: TagUsersRequest = parse(&body)?;
    let page = sim
        .lock()
        .followers(&appid)
        .tag_members(request.tagid, &request.next_openid)?;
    Ok(Json(page.to_json()))
}

#[derive(Deserialize)]
struct TaggingRequest {
    #[serde(default)]
    openid_list: Vec<String>,
    #[serde(default = "no_tag")]
    tagid: i64,
}

async fn tagging(sim: &Shared, q: &HashMap<String, String>, body: &Bytes, add: bool) -> Answer {
    let api = if add {
        paths::TAGS_BATCH_TAG
    } else {
        paths::TAGS_BATCH_UNTAG
    };
    let appid = authorized(sim, q, api).await?;
    let request: TaggingRequest = parse(body)?;
    sim.lock()
        .followers(&appid)
        .tag_users(&request.openid_list, request.tagid, add)?;
    ok()
}

/// `POST /cgi-bin/tags/members/batchtagging {openid_list, tagid}`.
pub(crate) async fn tags_batch_tag(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    tagging(&sim, &q, &body, true).await
}

/// `POST /cgi-bin/tags/members/batchuntagging {openid_list, tagid}`.
pub(crate) async fn tags_batch_untag(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    tagging(&sim, &q, &body, false).await
}

#[derive(Deserialize)]
struct OpenidRequest {
    #[serde(default)]
    openid: String,
}

/// `POST /cgi-bin/tags/getidlist {openid}` → `{tagid_list}`.
pub(crate) async fn tags_id_list(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TAGS_ID_LIST).await?;
    let request: OpenidRequest = parse(&body)?;
    let ids = sim.lock().followers(&appid).tag_ids(&request.openid)?;
    Ok(Json(json!({ "tagid_list": ids })))
}

#[derive(Deserialize)]
struct BlacklistGetRequest {
    #[serde(default)]
    begin_openid: String,
}

/// `POST /cgi-bin/tags/members/getblacklist {begin_openid}` → `{total, count, data: {openid},
/// next_openid}`.
pub(crate) async fn blacklist_get(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::BLACKLIST_GET).await?;
    // WeChat accepts an empty body as "from the start".
    let request: BlacklistGetRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BlacklistGetRequest {
            begin_openid: String::new(),
        }
    } else {
        parse(&body)?
    };
    let mut state = sim.lock();
    let followers = state.followers(&appid);
    let total = followers.blacklist_total();
    let page = followers.blacklist_page(&request.begin_openid)?;
    drop(state);
    let mut answer = page.to_json();
    answer["total"] = json!(total);
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct OpenidListRequest {
    #[serde(default)]
    openid_list: Vec<String>,
}

async fn blacklisting(
    sim: &Shared,
    q: &HashMap<String, String>,
    body: &Bytes,
    add: bool,
) -> Answer {
    let api = if add {
        paths::BLACKLIST_ADD
    } else {
        paths::BLACKLIST_REMOVE
    };
    let appid = authorized(sim, q, api).await?;
    let request: OpenidListRequest = parse(body)?;
    sim.lock()
        .followers(&appid)
        .blacklist_users(&request.openid_list, add)?;
    ok()
}

/// `POST /cgi-bin/tags/members/batchblacklist {openid_list}`.
pub(crate) async fn blacklist_add(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    blacklisting(&sim, &q, &body, true).await
}

/// `POST /cgi-bin/tags/members/batchunblacklist {openid_list}`.
pub(crate) async fn blacklist_remove(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    blacklisting(&sim, &q, &body, false).await
}
