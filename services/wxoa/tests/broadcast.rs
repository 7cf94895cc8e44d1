//! `wxoa broadcast` as a process: a template fan-out killed half way (SIGKILL) is resumed by
//! another replica once its lease runs out — no recipient twice, none skipped, as the
//! simulator's records show; `wxoa broadcasts` starts and watches it.

use std::time::Duration;

use serde_json::{Value, json};
use wxoa_tests::{PLAIN_APP, Platform, eventually, shared_config};

mod common;
use common::wxoa;

fn broadcasts(platform: &Platform, args: &[&str]) -> Value {
    let mut all = vec!["broadcasts", "--app", PLAIN_APP];
    all.extend_from_slice(args);
    let out = wxoa(platform, &all).unwrap_or_else(|e| panic!("wxoa broadcasts {args:?}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

// The verbs run as blocking child processes: the in-process worker needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_fan_out_killed_half_way_sends_each_recipient_exactly_once() {
    let mut config = shared_config();
    config.broadcast.sends_per_sec = 300;
    config.broadcast.window = 50;
    config.broadcast.lease_ms = 1500;
    config.broadcast.check_interval_ms = 100;
    let platform = Platform::start(config, "", true).await;
    platform
        .post(
            "/_sim/users/generate",
            json!({"appid": PLAIN_APP, "count": 2_000}),
        )
        .await;
    let (mut first, admin) = common::service(&platform, "broadcast").await;
    let added = broadcasts(
        &platform,
        &["call", "template_add", r#"{"template_id_short":"TM9"}"#],
    );
    let openids: Vec<String> = (0..2_000).map(|i| format!("oGEN{i:024}")).collect();
    let job = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        job.path(),
        json!({"id": "killed", "kind": "template", "to": {"type": "openids", "openids": openids},
               "template_id": added["template_id"], "data": {"k": {"value": "v"}}})
        .to_string(),
    )
    .unwrap();
    let started = broadcasts(
        &platform,
        &["start", job.path().to_str().unwrap(), "--no-wait"],
    );
    assert_eq!(started["state"], "running", "{started}");
    let partway = eventually(Duration::from_secs(20), || async {
        let status = broadcasts(&platform, &["status", "killed"]);
        (status["done"].as_u64() >= Some(500)).then_some(status)
    })
    .await
    .expect("the job got a quarter of the way");
    assert!(partway["done"].as_u64() < Some(2_000), "{partway}");
    let sent = common::metric(
        &platform,
        admin,
        "wxoa_broadcast_recipients_total{outcome=\"sent\"}",
    )
    .await;
    assert!(sent >= 500, "job progress on /metrics: {sent} sent");

    // Killed mid-window: calls in flight, the checkpoint behind them.
    first.kill().unwrap();
    first.wait().unwrap();
    let _second = platform.broadcast().await;
    let done = eventually(Duration::from_secs(60), || async {
        let status = broadcasts(&platform, &["status", "killed"]);
        (status["state"] != "running").then_some(status)
    })
    .await
    .expect("the job ended");
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["resumes"].as_u64() >= Some(1), "{done}");
    let summary = platform
        .get(&format!("/_sim/templates?appid={PLAIN_APP}&summary=true"))
        .await;
    assert_eq!(
        summary["distinct_openids"], 2_000,
        "none skipped: {summary}"
    );
    assert_eq!(summary["duplicates"], 0, "none twice: {summary}");
    assert_eq!(summary["sends"], 2_000, "{summary}");
}
