//! The follower directory end to end: subscribe/unsubscribe events through the gateway, full
//! syncs against the simulator's followers (resumed after a stop, exact), tag, remark and
//! blacklist management, and clear errors.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, eventually, shared_config};
use wxoa_wire::names::{apis, commands, notices, subjects};

/// One request to `<prefix>.<app>.api.users.<verb>`.
async fn users(platform: &Platform, app: &str, verb: &str, body: Value) -> Value {
    let answer = platform
        .nats()
        .await
        .request(
            subjects::api(platform.prefix(), app, apis::USERS, verb),
            body.to_string().into(),
        )
        .await
        .expect("usersync answers");
    serde_json::from_slice(&answer.payload).unwrap()
}

/// The simulator's followers of `app` and their digest.
async fn sim_followers(platform: &Platform, app: &str) -> Value {
    platform.get(&format!("/_sim/users?appid={app}")).await
}

/// Waits for the app's full sync to end; returns its progress.
async fn sync_done(platform: &Platform, app: &str) -> Value {
    let done = eventually(Duration::from_secs(60), || async {
        let status = users(platform, app, "sync_status", json!({})).await;
        (status["state"] != "running").then_some(status)
    })
    .await;
    done.expect("the full sync ended within 60 s")
}

#[tokio::test]
async fn subscribe_and_unsubscribe_events_keep_the_directory() {
    let platform = Platform::start(shared_config(), "", true).await;
    let _usersync = platform.usersync().await;
    let nats = platform.nats().await;
    let mut updates = nats
        .subscribe(subjects::notice(
            platform.prefix(),
            SAFE_APP,
            notices::USER_UPDATED,
        ))
        .await
        .unwrap();
    nats.flush().await.unwrap();

    let outcome = platform
        .send(json!({"appid": SAFE_APP, "message": {"type": "event", "from": "o_fan", "event": "subscribe", "event_key": "qrscene_42"}}))
        .await;
    assert_ne!(outcome["outcome"], "failed", "{outcome:#}");
    let user = eventually(Duration::from_secs(1), || async {
        let user = users(&platform, SAFE_APP, "get", json!({"openid": "o_fan"})).await;
        (user["subscribed"] == true).then_some(user)
    })
    .await
    .expect("a subscribe is in the directory within a second");
    assert_eq!(user["qr_scene"], 42, "{user}");
    assert_eq!(user["subscribe_scene"], "ADD_SCENE_QR_CODE", "{user}");
    let notice: Value = serde_json::from_slice(
        &tokio::time::timeout(Duration::from_secs(5), updates.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(notice["change"], "subscribed", "{notice}");
    assert_eq!(notice["scene"], "42", "{notice}");
    assert_eq!(
        users(&platform, SAFE_APP, "count", json!({})).await["followers"],
        1
    );

    platform
        .send(json!({"appid": SAFE_APP, "message": {"type": "event", "from": "o_fan", "event": "unsubscribe"}}))
        .await;
    let left = eventually(Duration::from_secs(2), || async {
        let user = users(&platform, SAFE_APP, "get", json!({"openid": "o_fan"})).await;
        (user["subscribed"] == false).then_some(user)
    })
    .await
    .expect("an unsubscribe is marked");
    assert!(left["unsubscribe_time"].as_i64().is_some(), "{left}");
    assert_eq!(
        users(&platform, SAFE_APP, "count", json!({})).await["followers"],
        0
    );

    // Clear errors for what the directory does not know.
    let unknown = users(&platform, SAFE_APP, "get", json!({"openid": "o_nobody"})).await;
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");
    let bad = users(&platform, SAFE_APP, "get", json!({"open_id": "typo"})).await;
    assert_eq!(bad["error"]["code"], "invalid", "{bad}");
}

#[tokio::test]
async fn a_full_sync_stopped_half_way_resumes_and_ends_exact() {
    let mut config = shared_config();
    config.usersync.calls_per_sec = 50; // about 5,000 followers a second: time to stop it
    config.usersync.lease_ms = 1000;
    config.usersync.check_interval_ms = 100;
    let platform = Platform::start(config, "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": PLAIN_APP, "count": 24_000}),
        )
        .await;
    // A follower the directory knows who then left without an event reaching us.
    let first = platform.usersync().await;
    platform
        .send(json!({"appid": PLAIN_APP, "message": {"type": "event", "from": "o_gone", "event": "subscribe"}}))
        .await;
    eventually(Duration::from_secs(2), || async {
        let user = users(&platform, PLAIN_APP, "get", json!({"openid": "o_gone"})).await;
        (user["subscribed"] == true).then_some(())
    })
    .await
    .expect("o_gone is in the directory");
    platform
        .post(
            "/_sim/users/unsubscribe",
            json!({"appid": PLAIN_APP, "openid": "o_gone"}),
        )
        .await;

    let started = users(&platform, PLAIN_APP, "sync", json!({"id": "sync-test"})).await;
    assert_eq!(started["state"], "running", "{started}");
    let again = users(&platform, PLAIN_APP, "sync", json!({})).await;
    assert_eq!(
        again["id"], "sync-test",
        "a running sync is not started twice"
    );
    let partway = eventually(Duration::from_secs(20), || async {
        let status = users(&platform, PLAIN_APP, "sync_status", json!({})).await;
        (status["done"].as_u64() >= Some(8_000)).then_some(status)
    })
    .await
    .expect("the sync got a third of the way");
    assert!(partway["done"].as_u64() < Some(24_000), "{partway}");
    assert!(partway["eta_secs"].as_u64().is_some(), "{partway}");
    first.cancel();

    let _second = platform.usersync().await;
    let done = sync_done(&platform, PLAIN_APP).await;
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["resumes"].as_u64() >= Some(1), "{done}");
    assert_eq!(done["left"], 1, "o_gone was marked as left: {done}");

    let sim = sim_followers(&platform, PLAIN_APP).await;
    let ours = users(&platform, PLAIN_APP, "digest", json!({})).await;
    assert_eq!(sim["followers"], 24_000, "{sim}");
    assert_eq!(ours["followers"], sim["followers"], "no missing, no extra");
    assert_eq!(ours["digest"], sim["digest"], "the same followers");
    let gone = users(&platform, PLAIN_APP, "get", json!({"openid": "o_gone"})).await;
    assert_eq!(gone["subscribed"], false, "{gone}");
}

#[tokio::test]
async fn tags_remarks_and_the_blacklist_round_trip() {
    let platform = Platform::start(shared_config(), "", true).await;
    let _usersync = platform.usersync().await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": SAFE_APP, "count": 120}),
        )
        .await;
    // Started by a command on JetStream, as any program in any language may.
    let js = async_nats::jetstream::new(platform.nats().await);
    js.publish(
        subjects::command(platform.prefix(), SAFE_APP, commands::USERSYNC),
        r#"{"id": "by-command"}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let started = eventually(Duration::from_secs(5), || async {
        let status = users(&platform, SAFE_APP, "sync_status", json!({})).await;
        (status["id"] == "by-command").then_some(())
    })
    .await;
    assert!(started.is_some(), "the usersync command started a sync");
    assert_eq!(sync_done(&platform, SAFE_APP).await["state"], "done");
    let page = users(&platform, SAFE_APP, "followers", json!({"count": 1000})).await;
    let mut openids: Vec<String> = page["openids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    openids.sort();
    assert_eq!(openids.len(), 120);

    let created = users(&platform, SAFE_APP, "tag_create", json!({"name": "VIP"})).await;
    let tagid = created["tag"]["id"].as_i64().expect("a tag id");
    // 60 openids: more than one batchtagging call (50 each).
    let tagged = users(
        &platform,
        SAFE_APP,
        "tag_users",
        json!({"tagid": tagid, "openids": &openids[..60]}),
    )
    .await;
    assert_eq!(tagged["changed"], 60, "{tagged}");
    let members = users(&platform, SAFE_APP, "by_tag", json!({"tagid": tagid})).await;
    assert_eq!(members["openids"].as_array().unwrap().len(), 60);
    let one = users(&platform, SAFE_APP, "get", json!({"openid": openids[0]})).await;
    assert_eq!(one["tagid_list"], json!([tagid]), "{one}");
    let wechat = users(
        &platform,
        SAFE_APP,
        "user_tags",
        json!({"openid": openids[0]}),
    )
    .await;
    assert_eq!(wechat["tagid_list"], json!([tagid]), "{wechat}");
    let tags = users(&platform, SAFE_APP, "tags_list", json!({})).await;
    assert!(
        tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == tagid && t["count"] == 60),
        "{tags}"
    );
    users(
        &platform,
        SAFE_APP,
        "untag_users",
        json!({"tagid": tagid, "openids": &openids[..10]}),
    )
    .await;
    let members = users(&platform, SAFE_APP, "by_tag", json!({"tagid": tagid})).await;
    assert_eq!(members["openids"].as_array().unwrap().len(), 50);
    users(&platform, SAFE_APP, "tag_delete", json!({"id": tagid})).await;
    let members = users(&platform, SAFE_APP, "by_tag", json!({"tagid": tagid})).await;
    assert!(
        members["openids"].as_array().unwrap().is_empty(),
        "{members}"
    );
    let one = users(&platform, SAFE_APP, "get", json!({"openid": openids[20]})).await;
    assert!(one.get("tagid_list").is_none(), "{one}");

    let remark = users(
        &platform,
        SAFE_APP,
        "remark",
        json!({"openid": openids[1], "remark": "big spender"}),
    )
    .await;
    assert_eq!(remark, json!({}));
    let one = users(&platform, SAFE_APP, "get", json!({"openid": openids[1]})).await;
    assert_eq!(one["remark"], "big spender");

    let blocked = users(
        &platform,
        SAFE_APP,
        "blacklist_add",
        json!({"openids": &openids[..25]}),
    )
    .await;
    assert_eq!(blocked["changed"], 25);
    let list = users(&platform, SAFE_APP, "blacklist", json!({})).await;
    assert_eq!(list["total"], 25, "{list}");
    let one = users(&platform, SAFE_APP, "get", json!({"openid": openids[2]})).await;
    assert_eq!(one["blacklisted"], true);
    users(
        &platform,
        SAFE_APP,
        "blacklist_remove",
        json!({"openids": &openids[..25]}),
    )
    .await;
    let one = users(&platform, SAFE_APP, "get", json!({"openid": openids[2]})).await;
    assert_eq!(one["blacklisted"], false);

    // WeChat's refusals come back with their errcode.
    let long = users(
        &platform,
        SAFE_APP,
        "tag_create",
        json!({"name": "a name far longer than thirty characters"}),
    )
    .await;
    assert_eq!(long["error"]["code"], "invalid", "{long}");
    assert!(
        long["error"]["message"].as_str().unwrap().contains("45158"),
        "{long}"
    );
    let stranger = users(
        &platform,
        SAFE_APP,
        "remark",
        json!({"openid": "o_not_a_follower", "remark": "x"}),
    )
    .await;
    assert!(
        stranger["error"]["message"]
            .as_str()
            .unwrap()
            .contains("40003"),
        "{stranger}"
    );
}
