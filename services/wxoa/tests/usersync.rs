//! `wxoa usersync` as a process: a full sync killed half way (SIGKILL) is resumed by another
//! replica once its lease runs out and ends exact; the `wxoa users` verbs drive and watch it.

use std::time::Duration;

use serde_json::{Value, json};
use wxoa_tests::{PLAIN_APP, Platform, eventually, shared_config};

mod common;
use common::wxoa;

fn users(platform: &Platform, args: &[&str]) -> Value {
    let mut all = vec!["users", "--app", PLAIN_APP];
    all.extend_from_slice(args);
    let out = wxoa(platform, &all).unwrap_or_else(|e| panic!("wxoa users {args:?}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

// The verbs run as blocking child processes: the in-process worker needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_killed_half_way_is_resumed_by_another_replica_and_ends_exact() {
    let mut config = shared_config();
    config.usersync.calls_per_sec = 40; // about 4,000 followers a second: time to kill it
    config.usersync.lease_ms = 1500;
    config.usersync.check_interval_ms = 100;
    let platform = Platform::start(config, "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": PLAIN_APP, "count": 20_000}),
        )
        .await;
    let (mut first, admin) = common::service(&platform, "usersync").await;

    let started = users(&platform, &["sync", "--no-wait"]);
    assert_eq!(started["state"], "running", "{started}");
    let partway = eventually(Duration::from_secs(20), || async {
        let status = users(&platform, &["sync-status"]);
        (status["done"].as_u64() >= Some(5_000)).then_some(status)
    })
    .await
    .expect("the sync got a quarter of the way");
    assert!(partway["done"].as_u64() < Some(20_000), "{partway}");
    let synced = common::metric(&platform, admin, "wxoa_usersync_synced_total").await;
    assert!(synced >= 5_000, "sync progress on /metrics: {synced}");

    // Killed: no goodbye, the lease is left to run out.
    first.kill().unwrap();
    first.wait().unwrap();
    let _second = platform.usersync().await;
    let done = eventually(Duration::from_secs(60), || async {
        let status = users(&platform, &["sync-status"]);
        (status["state"] != "running").then_some(status)
    })
    .await
    .expect("the sync ended");
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["resumes"].as_u64() >= Some(1), "{done}");

    let sim = platform
        .get(&format!("/_sim/users?appid={PLAIN_APP}"))
        .await;
    let ours = users(&platform, &["digest"]);
    assert_eq!(ours["followers"], 20_000, "{ours}");
    assert_eq!(
        ours["digest"], sim["digest"],
        "exactly the simulator's followers"
    );
    assert_eq!(users(&platform, &["count"])["followers"], 20_000);
    let one = users(&platform, &["get", "oGEN000000000000000000000042"]);
    assert_eq!(one["unionid"], "uGEN000000000000000000000042", "{one}");
    let same = users(&platform, &["by-unionid", "uGEN000000000000000000000042"]);
    assert_eq!(same["openid"], "oGEN000000000000000000000042", "{same}");
}
