//! Broadcasts end to end: mass sends in batches with stable clientmsgids and their job-finish
//! reports, a template fan-out stopped half way that resumes with no duplicate and no skip (the
//! simulator's records prove it), and quotas that stop a job clearly.

use std::time::Duration;

use serde_json::{Value, json};
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, eventually, shared_config};
use wxoa_wire::names::{apis, subjects};

/// One request to `<prefix>.<app>.api.<area>.<verb>`.
async fn api(platform: &Platform, app: &str, area: &str, verb: &str, body: Value) -> Value {
    let answer = platform
        .nats()
        .await
        .request(
            subjects::api(platform.prefix(), app, area, verb),
            body.to_string().into(),
        )
        .await
        .expect("the worker answers");
    serde_json::from_slice(&answer.payload).unwrap()
}

async fn broadcast(platform: &Platform, app: &str, verb: &str, body: Value) -> Value {
    api(platform, app, apis::BROADCAST, verb, body).await
}

/// Waits until the job leaves `running` and `check` holds.
async fn job_until(
    platform: &Platform,
    app: &str,
    id: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(Duration::from_secs(60), || async {
        let status = broadcast(platform, app, "status", json!({"id": id})).await;
        check(&status).then_some(status)
    })
    .await
    .unwrap_or_else(|| panic!("broadcast {id} did not get there in 60 s"))
}

fn generated(i: usize) -> String {
    format!("oGEN{i:024}")
}

#[tokio::test]
async fn a_mass_send_to_25000_openids_is_three_batches_with_stable_clientmsgids() {
    let platform = Platform::start(shared_config(), "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": PLAIN_APP, "count": 25_000}),
        )
        .await;
    let _worker = platform.broadcast().await;
    let openids: Vec<String> = (0..25_000).map(generated).collect();
    let command = json!({"id": "spring", "kind": "mass", "to": {"type": "openids", "openids": openids},
                         "message": {"msgtype": "text", "text": {"content": "Spring sale"}}});
    let started = broadcast(&platform, PLAIN_APP, "start", command.clone()).await;
    assert_eq!(started["state"], "running", "{started}");
    let done = job_until(&platform, PLAIN_APP, "spring", |s| {
        s["state"] == "done" && s["finished"]["reports"] == 3
    })
    .await;
    assert_eq!(done["total"], 25_000, "{done}");
    assert_eq!(done["msg_ids"].as_array().unwrap().len(), 3, "{done}");
    assert_eq!(
        done["finished"]["sent"], 25_000,
        "the reports add up: {done}"
    );

    let jobs = platform.get(&format!("/_sim/mass?appid={PLAIN_APP}")).await;
    let mut batches: Vec<(String, u64)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["clientmsgid"].as_str().unwrap().to_owned(),
                j["recipients"].as_u64().unwrap(),
            )
        })
        .collect();
    batches.sort();
    assert_eq!(
        batches,
        vec![
            ("spring-0".to_owned(), 10_000),
            ("spring-1".to_owned(), 10_000),
            ("spring-2".to_owned(), 5_000)
        ]
    );

    // The same job id again is the same job: nothing is sent again.
    let again = broadcast(&platform, PLAIN_APP, "start", command).await;
    assert_eq!(again["state"], "done", "{again}");
    let jobs = platform.get(&format!("/_sim/mass?appid={PLAIN_APP}")).await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_template_fan_out_stopped_half_way_resumes_with_no_duplicate_and_no_skip() {
    let mut config = shared_config();
    config.broadcast.sends_per_sec = 400; // 3,000 sends take about 8 s: time to stop it
    config.broadcast.window = 100;
    config.broadcast.lease_ms = 1000;
    config.broadcast.check_interval_ms = 100;
    let platform = Platform::start(config, "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": SAFE_APP, "count": 3_000}),
        )
        .await;
    // The segment comes from the follower directory: sync it first.
    let _usersync = platform.usersync().await;
    api(&platform, SAFE_APP, apis::USERS, "sync", json!({})).await;
    let synced = eventually(Duration::from_secs(30), || async {
        let s = api(&platform, SAFE_APP, apis::USERS, "sync_status", json!({})).await;
        (s["state"] == "done").then_some(())
    })
    .await;
    assert!(synced.is_some(), "the directory was synced");

    let first = platform.broadcast().await;
    let added = broadcast(
        &platform,
        SAFE_APP,
        "template_add",
        json!({"template_id_short": "TM00015"}),
    )
    .await;
    let template_id = added["template_id"]
        .as_str()
        .expect("a template id")
        .to_owned();
    let command = json!({"id": "bills", "kind": "template", "to": {"type": "all"},
        "template_id": template_id, "url": "https://example.com/bill",
        "data": {"amount": {"value": "39.8元"}}});
    broadcast(&platform, SAFE_APP, "start", command).await;
    let partway = job_until(&platform, SAFE_APP, "bills", |s| {
        s["done"].as_u64() >= Some(1_000)
    })
    .await;
    assert!(partway["done"].as_u64() < Some(3_000), "{partway}");
    assert!(partway["eta_secs"].as_u64().is_some(), "{partway}");
    first.cancel();

    let _second = platform.broadcast().await;
    let done = job_until(&platform, SAFE_APP, "bills", |s| s["state"] != "running").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["total"], 3_000, "{done}");
    assert!(done["resumes"].as_u64() >= Some(1), "{done}");

    let summary = platform
        .get(&format!("/_sim/templates?appid={SAFE_APP}&summary=true"))
        .await;
    assert_eq!(
        summary["distinct_openids"], 3_000,
        "none skipped: {summary}"
    );
    assert_eq!(summary["duplicates"], 0, "none twice: {summary}");
}

#[tokio::test]
async fn a_quota_error_stops_the_job_clearly() {
    let platform = Platform::start(shared_config(), "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": PLAIN_APP, "count": 200}),
        )
        .await;
    platform
        .post("/_sim/template/settings", json!({"daily_quota": 50}))
        .await;
    let _worker = platform.broadcast().await;
    let added = broadcast(
        &platform,
        PLAIN_APP,
        "template_add",
        json!({"template_id_short": "TM1"}),
    )
    .await;
    let openids: Vec<String> = (0..200).map(generated).collect();
    broadcast(
        &platform,
        PLAIN_APP,
        "start",
        json!({"id": "too-many", "kind": "template",
        "to": {"type": "openids", "openids": openids},
        "template_id": added["template_id"], "data": {}}),
    )
    .await;
    let failed = job_until(&platform, PLAIN_APP, "too-many", |s| {
        s["state"] != "running"
    })
    .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("45009"),
        "the error names WeChat's quota: {failed}"
    );
    let summary = platform
        .get(&format!("/_sim/templates?appid={PLAIN_APP}&summary=true"))
        .await;
    assert_eq!(summary["sends"], 50, "{summary}");

    // Bad commands are refused before anything runs.
    let bad = broadcast(
        &platform,
        PLAIN_APP,
        "start",
        json!({"id": "x y", "kind": "template",
        "to": {"type": "all"}, "template_id": "T", "data": {}}),
    )
    .await;
    assert_eq!(bad["error"]["code"], "invalid", "{bad}");
}

#[tokio::test]
async fn jobs_pause_resume_and_cancel() {
    let mut config = shared_config();
    config.broadcast.sends_per_sec = 100;
    config.broadcast.window = 20;
    let platform = Platform::start(config, "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": PLAIN_APP, "count": 2_000}),
        )
        .await;
    let _worker = platform.broadcast().await;
    let added = broadcast(
        &platform,
        PLAIN_APP,
        "template_add",
        json!({"template_id_short": "TM2"}),
    )
    .await;
    let openids: Vec<String> = (0..2_000).map(generated).collect();
    let job = |id: &str| {
        json!({"id": id, "kind": "template", "to": {"type": "openids", "openids": openids},
               "template_id": added["template_id"], "data": {}})
    };
    broadcast(&platform, PLAIN_APP, "start", job("slow")).await;
    job_until(&platform, PLAIN_APP, "slow", |s| {
        s["done"].as_u64() >= Some(100)
    })
    .await;
    let paused = broadcast(&platform, PLAIN_APP, "pause", json!({"id": "slow"})).await;
    assert_eq!(paused["state"], "paused", "{paused}");
    // The window in flight may still finish (waiting for its rate slots up to a second); after
    // that the job stands still. A job that kept going would need 20 s and never stand still.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut previous = broadcast(&platform, PLAIN_APP, "status", json!({"id": "slow"})).await;
    let b = loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = broadcast(&platform, PLAIN_APP, "status", json!({"id": "slow"})).await;
        if now["done"] == previous["done"] {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a paused job stands still: {now}"
        );
        previous = now;
    };
    assert!(b["done"].as_u64() < Some(2_000), "{b}");
    let resumed = broadcast(&platform, PLAIN_APP, "resume", json!({"id": "slow"})).await;
    assert_eq!(resumed["state"], "running", "{resumed}");
    job_until(&platform, PLAIN_APP, "slow", |s| {
        s["done"].as_u64() > b["done"].as_u64()
    })
    .await;
    let cancelled = broadcast(&platform, PLAIN_APP, "cancel", json!({"id": "slow"})).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let again = broadcast(&platform, PLAIN_APP, "resume", json!({"id": "slow"})).await;
    assert_eq!(
        again["error"]["code"], "invalid",
        "a cancelled job stays cancelled: {again}"
    );
    let listed = broadcast(&platform, PLAIN_APP, "list", json!({})).await;
    assert_eq!(listed["jobs"][0]["id"], "slow", "{listed}");
}

#[tokio::test]
async fn a_customer_service_fan_out_goes_through_send_commands() {
    let platform = Platform::start(shared_config(), "", true).await;
    let _replier = platform.replier().await;
    let _worker = platform.broadcast().await;
    // Two users wrote to the account in the last 48 h; one never did.
    for openid in ["o_cs_1", "o_cs_2"] {
        platform
            .post(
                "/_sim/interactions",
                json!({"appid": SAFE_APP, "openid": openid, "kind": "message"}),
            )
            .await;
    }
    broadcast(
        &platform,
        SAFE_APP,
        "start",
        json!({"id": "notice", "kind": "custom",
        "to": {"type": "openids", "openids": ["o_cs_1", "o_cs_2", "o_cs_never"]},
        "message": {"type": "text", "content": "Store closes early today"}}),
    )
    .await;
    let done = job_until(&platform, SAFE_APP, "notice", |s| s["state"] != "running").await;
    assert_eq!(done["state"], "done", "{done}");
    for (openid, n) in [("o_cs_1", 1), ("o_cs_2", 1), ("o_cs_never", 0)] {
        let got = eventually(Duration::from_secs(10), || async {
            let got = platform.received(SAFE_APP, openid).await;
            (got.len() == n).then_some(got)
        })
        .await;
        assert!(got.is_some(), "{openid} received {n}");
    }
    let status = api(
        &platform,
        SAFE_APP,
        apis::SEND,
        "status",
        json!({"id": "notice:2"}),
    )
    .await;
    assert_eq!(status["errcode"], 45015, "outside the window: {status}");
}

#[tokio::test]
async fn template_job_finish_reports_are_matched_to_their_job() {
    let platform = Platform::start(shared_config(), "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": SAFE_APP, "count": 5}),
        )
        .await;
    platform
        .post("/_sim/template/settings", json!({"finish_events": true}))
        .await;
    let _worker = platform.broadcast().await;
    let added = broadcast(
        &platform,
        SAFE_APP,
        "template_add",
        json!({"template_id_short": "TM5"}),
    )
    .await;
    let openids: Vec<String> = (0..5).map(generated).collect();
    broadcast(
        &platform,
        SAFE_APP,
        "start",
        json!({"id": "reported", "kind": "template",
        "to": {"type": "openids", "openids": openids},
        "template_id": added["template_id"], "data": {"k": {"value": "v"}}}),
    )
    .await;
    let done = job_until(&platform, SAFE_APP, "reported", |s| {
        s["state"] == "done" && s["finished"]["reports"] == 5
    })
    .await;
    assert_eq!(done["finished"]["sent"], 5, "{done}");
    assert_eq!(done["finished"]["errors"], 0, "{done}");
}
