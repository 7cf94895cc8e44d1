//! The users request API (core NATS request/reply, JSON, queue group `wxoa-usersync`) on
//! `<prefix>.<appid>.api.users.<verb>`:
//!
//! | verb | request | answer |
//! |---|---|---|
//! | `get` | `{"openid"}` | the directory entry, with `blacklisted` |
//! | `count` | `{}` | `{"followers": n}` |
//! | `followers`, `by_tag` | `{"cursor"?, "count"?}` (+ `"tagid"`) | `{"cursor": next (0 = end), "openids": [...]}` |
//! | `by_unionid` | `{"unionid"}` | the directory entry |
//! | `digest` | `{}` | `{"followers", "digest"}` (XOR of FNV-1a 64 of the openids, hex) |
//! | `sync` | `{"id"?}` | the full sync's progress (started, or the one running) |
//! | `sync_status` | `{}` | the latest full sync's progress |
//! | `tags_list` | `{}` | WeChat's `{"tags": [...]}` |
//! | `tag_create` / `tag_update` / `tag_delete` | `{"name"}` / `{"id","name"}` / `{"id"}` | WeChat's answer |
//! | `tag_users` / `untag_users` | `{"tagid","openids"}` (any number; sent 50 at a time) | `{"changed": n}` |
//! | `user_tags` | `{"openid"}` | `{"tagid_list": [...]}` |
//! | `remark` | `{"openid","remark"}` | `{}` |
//! | `blacklist` | `{"begin_openid"?}` | WeChat's page |
//! | `blacklist_add` / `blacklist_remove` | `{"openids"}` (sent 20 at a time) | `{"changed": n}` |
//!
//! Changes made through WeChat are written to the directory as well. Errors answer
//! `{"error":{"code","message"}}` (WeChat refusals keep their errcode in the message).

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wxoa_runtime::now_ms;
use wxoa_wire::names::{keys, notices, subjects};
use wxoa_wire::users::{UserChange, UserRecord, UserUpdated};

use crate::{Shared, UsersyncError, sync};

/// Openids per `batchtagging` / `batchuntagging` call.
pub const TAG_BATCH: usize = 50;
/// Openids per `batchblacklist` / `batchunblacklist` call.
pub const BLACKLIST_BATCH: usize = 20;

#[derive(Deserialize)]
struct Openid {
    openid: String,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    cursor: u64,
    #[serde(default = "default_count")]
    count: usize,
    #[serde(default)]
    tagid: Option<i64>,
}

fn default_count() -> usize {
    1000
}

#[derive(Deserialize)]
struct Openids {
    openids: Vec<String>,
    #[serde(default)]
    tagid: Option<i64>,
}

/// Answers one request; the answer is JSON, errors included.
pub(crate) async fn answer(shared: Arc<Shared>, message: async_nats::Message) -> Option<Bytes> {
    let result = route(&shared, &message).await;
    if let Err(e) = &result {
        tracing::debug!(subject = %message.subject, error = %e, "request refused");
    }
    wxoa_runtime::responder::answer_json(result.map_err(|e| e.to_api()))
}

fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, UsersyncError> {
    wxoa_runtime::responder::parse_json(payload).map_err(UsersyncError::Invalid)
}

async fn route(shared: &Shared, message: &async_nats::Message) -> Result<Value, UsersyncError> {
    let app_id = subjects::app_id_of(&shared.prefix, &message.subject)
        .filter(|a| shared.serves(a))
        .ok_or_else(|| UsersyncError::NotFound(format!("no app served at {}", message.subject)))?;
    let payload = &message.payload;
    let dir = &shared.dir;
    let prefix = dir.prefix();
    Ok(match subjects::api_verb(&message.subject) {
        "get" => {
            let Openid { openid } = parse(payload)?;
            let user = dir.get(app_id, &openid).await?.ok_or_else(|| {
                UsersyncError::NotFound(format!("no user {openid} in the directory"))
            })?;
            let blacklisted: bool = redis::cmd("SISMEMBER")
                .arg(keys::blacklist(prefix, app_id))
                .arg(&openid)
                .query_async(&mut shared.redis.clone())
                .await?;
            let mut json = serde_json::to_value(user).expect("serializes");
            json["blacklisted"] = blacklisted.into();
            json
        }
        "count" => json!({"followers": dir.count(app_id).await?}),
        verb @ ("followers" | "by_tag") => {
            let page: Page = parse(payload)?;
            let key = if verb == "followers" {
                keys::followers(prefix, app_id)
            } else {
                let tagid = page
                    .tagid
                    .ok_or_else(|| UsersyncError::Invalid("by_tag needs a tagid".into()))?;
                keys::tag_members(prefix, app_id, tagid)
            };
            let (cursor, openids) = dir
                .scan(&key, page.cursor, page.count.clamp(1, 10_000))
                .await?;
            json!({"cursor": cursor, "openids": openids})
        }
        "by_unionid" => {
            #[derive(Deserialize)]
            struct Unionid {
                unionid: String,
            }
            let Unionid { unionid } = parse(payload)?;
            let user = dir.by_unionid(app_id, &unionid).await?.ok_or_else(|| {
                UsersyncError::NotFound(format!("no user with unionid {unionid}"))
            })?;
            serde_json::to_value(user).expect("serializes")
        }
        "digest" => {
            let (followers, digest) = dir.digest(app_id).await?;
            json!({"followers": followers, "digest": format!("{digest:016x}")})
        }
        "sync" => {
            let command: wxoa_wire::users::SyncCommand = parse(payload)?;
            serde_json::to_value(sync::start(shared, app_id, command.id).await?)
                .expect("serializes")
        }
        "sync_status" => serde_json::to_value(
            sync::status(shared, app_id)
                .await?
                .ok_or_else(|| UsersyncError::NotFound("no full sync has run".into()))?,
        )
        .expect("serializes"),
        "tags_list" => shared.wechat.get(app_id, "/cgi-bin/tags/get", &[]).await?,
        "tag_create" => {
            #[derive(Deserialize)]
            struct Name {
                name: String,
            }
            let Name { name } = parse(payload)?;
            shared
                .wechat
                .post(
                    app_id,
                    "/cgi-bin/tags/create",
                    &json!({"tag": {"name": name}}),
                )
                .await?
        }
        "tag_update" => {
            #[derive(Deserialize)]
            struct Tag {
                id: i64,
                name: String,
            }
            let Tag { id, name } = parse(payload)?;
            shared
                .wechat
                .post(
                    app_id,
                    "/cgi-bin/tags/update",
                    &json!({"tag": {"id": id, "name": name}}),
                )
                .await?
        }
        "tag_delete" => {
            #[derive(Deserialize)]
            struct Id {
                id: i64,
            }
            let Id { id } = parse(payload)?;
            let answer = shared
                .wechat
                .post(app_id, "/cgi-bin/tags/delete", &json!({"tag": {"id": id}}))
                .await?;
            // WeChat took the tag off its users: so does the directory.
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(keys::tag_members(prefix, app_id, id))
                .query_async(&mut shared.redis.clone())
                .await?;
            for chunk in members.chunks(500) {
                retag(shared, app_id, chunk, id, false).await?;
            }
            answer
        }
        verb @ ("tag_users" | "untag_users") => {
            let Openids { openids, tagid } = parse(payload)?;
            let tagid =
                tagid.ok_or_else(|| UsersyncError::Invalid(format!("{verb} needs a tagid")))?;
            let add = verb == "tag_users";
            let path = if add {
                "/cgi-bin/tags/members/batchtagging"
            } else {
                "/cgi-bin/tags/members/batchuntagging"
            };
            for chunk in openids.chunks(TAG_BATCH) {
                shared
                    .wechat
                    .post(app_id, path, &json!({"openid_list": chunk, "tagid": tagid}))
                    .await?;
                retag(shared, app_id, chunk, tagid, add).await?;
            }
            json!({"changed": openids.len()})
        }
        "user_tags" => {
            let Openid { openid } = parse(payload)?;
            let answer = shared
                .wechat
                .post(
                    app_id,
                    "/cgi-bin/tags/getidlist",
                    &json!({"openid": openid}),
                )
                .await?;
            if let Some(mut user) = dir.get(app_id, &openid).await? {
                user.tagid_list = answer["tagid_list"]
                    .as_array()
                    .map(|l| l.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                user.updated_ms = now_ms();
                dir.put(app_id, std::slice::from_ref(&user), None).await?;
            }
            answer
        }
        "remark" => {
            #[derive(Deserialize)]
            struct Remark {
                openid: String,
                remark: String,
            }
            let Remark { openid, remark } = parse(payload)?;
            shared
                .wechat
                .post(
                    app_id,
                    "/cgi-bin/user/info/updateremark",
                    &json!({"openid": openid, "remark": remark}),
                )
                .await?;
            if let Some(mut user) = dir.get(app_id, &openid).await? {
                user.remark = Some(remark).filter(|r| !r.is_empty());
                user.updated_ms = now_ms();
                dir.put(app_id, std::slice::from_ref(&user), None).await?;
                edited(shared, app_id, user).await;
            }
            json!({})
        }
        "blacklist" => {
            #[derive(Deserialize)]
            struct Begin {
                #[serde(default)]
                begin_openid: String,
            }
            let Begin { begin_openid } = parse(payload)?;
            shared
                .wechat
                .post(
                    app_id,
                    "/cgi-bin/tags/members/getblacklist",
                    &json!({"begin_openid": begin_openid}),
                )
                .await?
        }
        verb @ ("blacklist_add" | "blacklist_remove") => {
            let Openids { openids, .. } = parse(payload)?;
            let add = verb == "blacklist_add";
            let path = if add {
                "/cgi-bin/tags/members/batchblacklist"
            } else {
                "/cgi-bin/tags/members/batchunblacklist"
            };
            for chunk in openids.chunks(BLACKLIST_BATCH) {
                shared
                    .wechat
                    .post(app_id, path, &json!({"openid_list": chunk}))
                    .await?;
                dir.set_members(&keys::blacklist(prefix, app_id), chunk, add)
                    .await?;
            }
            json!({"changed": openids.len()})
        }
        verb => {
            return Err(UsersyncError::NotFound(format!(
                "no API users.{verb} (get, count, followers, by_tag, by_unionid, digest, sync, sync_status, \
                 tags_list, tag_create, tag_update, tag_delete, tag_users, untag_users, user_tags, remark, \
                 blacklist, blacklist_add, blacklist_remove)"
            )));
        }
    })
}

/// Adds `tagid` to (or removes it from) the directory entries of `openids` it knows.
async fn retag(
    shared: &Shared,
    app_id: &str,
    openids: &[String],
    tagid: i64,
    add: bool,
) -> Result<(), UsersyncError> {
    let now = now_ms();
    let users: Vec<UserRecord> = shared
        .dir
        .get_many(app_id, openids)
        .await?
        .into_iter()
        .flatten()
        .map(|mut user| {
            user.tagid_list.retain(|t| *t != tagid);
            if add {
                user.tagid_list.push(tagid);
            }
            user.updated_ms = now;
            user
        })
        .collect();
    shared.dir.put(app_id, &users, None).await?;
    for user in users {
        edited(shared, app_id, user).await;
    }
    Ok(())
}

async fn edited(shared: &Shared, app_id: &str, user: UserRecord) {
    shared
        .notify(
            app_id,
            notices::USER_UPDATED,
            &UserUpdated {
                change: UserChange::Edited,
                user,
                scene: None,
            },
        )
        .await;
}
