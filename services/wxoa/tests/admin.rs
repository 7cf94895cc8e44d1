//! The operator verbs (`wxoa menu`, `wxoa qrcode`, `wxoa quota`, `wxoa token-status`) against a
//! running operator API: human errors with WeChat's errcode, menus checked before they leave.

use std::process::Command;

use serde_json::Value;
use wxoa_tests::{PLAIN_APP, Platform, shared_config};

const TOKEN: &str = "cli-test-token";

fn verb(api: &str, args: &[&str]) -> Result<Value, String> {
    let out = typed(api, &[args, &["--json"]].concat())?;
    serde_json::from_str(&out).map_err(|e| e.to_string())
}

// The verbs run as blocking child processes: the in-process API needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_verbs_drive_the_api() {
    let platform = Platform::start(shared_config(), "", true).await;
    let api = platform.operator_api(TOKEN).await;

    let dir = tempfile::tempdir().unwrap();
    let menu = dir.path().join("menu.toml");
    std::fs::write(
        &menu,
        r#"
        [[button]]
        type = "click"
        name = "今日歌曲"
        key = "V1001_TODAY_MUSIC"

        [[button]]
        name = "菜单"
        [[button.sub_button]]
        type = "view"
        name = "搜索"
        url = "https://www.example.com/"
        "#,
    )
    .unwrap();
    verb(&api, &["menu", "apply", menu.to_str().unwrap()]).unwrap();
    let got = verb(&api, &["menu", "get"]).unwrap();
    assert_eq!(
        got["menu"]["button"][1]["sub_button"][0]["name"], "搜索",
        "{got}"
    );

    std::fs::write(&menu, "[[button]]\ntype = \"click\"\nname = \"x\"\n").unwrap();
    let refused = verb(&api, &["menu", "apply", menu.to_str().unwrap()]).unwrap_err();
    assert!(
        refused.contains("button[0].key") && refused.contains("40019"),
        "{refused}"
    );

    let png = dir.path().join("poster.png");
    let qr = verb(
        &api,
        &[
            "qrcode",
            "create",
            "--scene-str",
            "poster",
            "--permanent",
            "--output",
            png.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(
        qr["image_url"].as_str().unwrap().contains("showqrcode"),
        "{qr}"
    );
    let image = std::fs::read(&png).unwrap();
    assert!(image.starts_with(b"\x89PNG\r\n"), "the code's image saved");
    assert_eq!(qr["bytes"], image.len(), "{qr}");
    let refused = verb(&api, &["qrcode", "create", "--expire-seconds", "60"]).unwrap_err();
    assert!(refused.contains("scene"), "a code needs a scene: {refused}");
    let quota = verb(&api, &["quota", "--cgi-path", "/cgi-bin/qrcode/create"]).unwrap();
    assert!(quota["quota"]["used"].as_u64() >= Some(1), "{quota}");
    let status = verb(&api, &["token-status"]).unwrap();
    assert_eq!(status["access_token"]["present"], true, "{status}");

    let current = verb(&api, &["menu", "current"]).unwrap();
    assert_eq!(current["is_menu_open"], 1, "{current}");
    verb(&api, &["menu", "delete"]).unwrap();
    let missing = verb(&api, &["menu", "get"]).unwrap_err();
    assert!(
        missing.contains("46003"),
        "WeChat's errcode in the error: {missing}"
    );
    let unauthorized = Command::new(env!("CARGO_BIN_EXE_wxoa"))
        .args(["token-status", "--app", PLAIN_APP])
        .env("WXOA__APPS__0__APPID", PLAIN_APP)
        .env("WXOA__APPS__0__SECRET", "s")
        .env("WXOA__APPS__0__TOKEN", "t")
        .env("WXOA_API_URL", &api)
        .env("WXOA_API_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!unauthorized.status.success());
    assert!(String::from_utf8_lossy(&unauthorized.stderr).contains("401"));
}

/// `wxoa <args>` as the operator would type it: its stdout (tables), or its stderr.
fn typed(api: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_wxoa"))
        .args(args)
        .args(["--app", PLAIN_APP])
        .env_remove("WXOA_CONFIG")
        .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
        .env("WXOA__APPS__0__APPID", PLAIN_APP)
        .env("WXOA__APPS__0__SECRET", "s")
        .env("WXOA__APPS__0__TOKEN", "t")
        .env("WXOA_API_URL", api)
        .env("WXOA_API_TOKEN", TOKEN)
        .output()
        .expect("wxoa runs");
    wxoa_tests::stdout_or_stderr(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_drafts_and_comments_verbs_print_tables() {
    let platform = Platform::start(shared_config(), "", true).await;
    let api = platform.operator_api(TOKEN).await;

    let dir = tempfile::tempdir().unwrap();
    let poster = dir.path().join("poster.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..2_000_000u32).map(|i| (i % 251) as u8));
    std::fs::write(&poster, &bytes).unwrap();
    let poster = poster.to_str().unwrap();

    // Upload (streamed with a progress bar), list as a table, download the same bytes.
    let added = verb(
        &api,
        &[
            "material",
            "upload",
            poster,
            "--type",
            "image",
            "--permanent",
        ],
    )
    .unwrap();
    let media_id = added["media_id"].as_str().unwrap();
    let table = typed(&api, &["material", "list", "--type", "image"]).unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("MEDIA_ID"), "{table}");
    assert!(lines.next().unwrap().starts_with(media_id), "{table}");
    let copy = dir.path().join("copy.png");
    typed(
        &api,
        &["material", "get", media_id, "-o", copy.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), bytes, "the bytes round-trip");
    let count = typed(&api, &["material", "count"]).unwrap();
    assert!(
        count
            .lines()
            .any(|l| l.starts_with("image_count") && l.ends_with(" 1")),
        "{count}"
    );
    let wrong = typed(&api, &["material", "upload", poster, "--type", "voice"]).unwrap_err();
    assert!(wrong.contains("40005"), "refused before upload: {wrong}");
    typed(&api, &["material", "delete", media_id]).unwrap();
    let gone = typed(&api, &["material", "get", media_id]).unwrap_err();
    assert!(
        gone.contains("WeChat errcode 40007: invalid media_id"),
        "errcode and meaning: {gone}"
    );

    // A draft from a file, listed as a table.
    let thumb = dir.path().join("t.jpg");
    std::fs::write(&thumb, b"\xFF\xD8\xFF\xE0thumb").unwrap();
    let thumb = verb(
        &api,
        &[
            "material",
            "upload",
            thumb.to_str().unwrap(),
            "--type",
            "thumb",
            "--permanent",
        ],
    )
    .unwrap();
    let draft = dir.path().join("draft.json");
    let articles = serde_json::json!({"articles": [{"title": "新品", "content": "<p>hi</p>", "thumb_media_id": thumb["media_id"]}]});
    std::fs::write(&draft, articles.to_string()).unwrap();
    let added = verb(&api, &["drafts", "add", draft.to_str().unwrap()]).unwrap();
    let drafts = typed(&api, &["drafts", "list"]).unwrap();
    assert!(
        drafts.starts_with("MEDIA_ID") && drafts.contains("新品"),
        "{drafts}"
    );

    // Published, waited for, listed, deleted.
    platform
        .post(
            "/_sim/mass/settings",
            serde_json::json!({"finish_delay_ms": 300}),
        )
        .await;
    let draft_id = added["media_id"].as_str().unwrap();
    let published = typed(&api, &["drafts", "publish", draft_id, "--wait"]).unwrap();
    let first = published.lines().next().unwrap();
    assert!(
        first.starts_with("publish job ") && first.contains(": published, article_id "),
        "{published}"
    );
    let article_id = first.rsplit(' ').next().unwrap();
    assert!(
        published.lines().nth(1).unwrap().starts_with("IDX")
            && published.contains("https://mp.weixin.qq.com/s/"),
        "{published}"
    );
    let list = typed(&api, &["published", "list"]).unwrap();
    assert!(
        list.lines().nth(1).unwrap().starts_with(article_id) && list.contains("新品"),
        "{list}"
    );
    let got = typed(&api, &["published", "get", article_id]).unwrap();
    assert!(got.contains("新品") && got.contains("false"), "{got}");
    typed(&api, &["published", "delete", article_id, "--index", "1"]).unwrap();
    let gone = typed(&api, &["published", "get", article_id]).unwrap_err();
    assert!(gone.contains("53600"), "every article deleted: {gone}");

    // A refused job: the failure in words, a failing exit.
    platform
        .post(
            "/_sim/publish",
            serde_json::json!({"appid": PLAIN_APP, "fail": 4}),
        )
        .await;
    let second = verb(&api, &["drafts", "add", draft.to_str().unwrap()]).unwrap();
    let submitted = verb(
        &api,
        &["drafts", "publish", second["media_id"].as_str().unwrap()],
    )
    .unwrap();
    let publish_id = submitted["publish_id"].as_str().unwrap();
    let status = wxoa_tests::eventually(std::time::Duration::from_secs(10), || async {
        let status = typed(&api, &["published", "status", publish_id]).unwrap();
        (!status.contains("publishing")).then_some(status)
    })
    .await
    .expect("the job ends");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("status") && l.contains("refused by review")),
        "{status}"
    );
    platform
        .post(
            "/_sim/publish",
            serde_json::json!({"appid": PLAIN_APP, "fail": 3}),
        )
        .await;
    let third = verb(&api, &["drafts", "add", draft.to_str().unwrap()]).unwrap();
    let failed = typed(
        &api,
        &[
            "drafts",
            "publish",
            third["media_id"].as_str().unwrap(),
            "--wait",
        ],
    )
    .unwrap_err();
    assert!(failed.contains("ended: failed (articles [1])"), "{failed}");

    // Comments: list, reply, elect.
    let created = platform
        .post(
            "/_sim/comments",
            serde_json::json!({"appid": PLAIN_APP, "comments": [{"openid": "o_r", "content": "赞"}]}),
        )
        .await;
    let msg = created["msg_data_id"].as_u64().unwrap().to_string();
    let id = created["user_comment_ids"][0].as_u64().unwrap().to_string();
    typed(
        &api,
        &["comments", "--msg-data-id", &msg, "reply", &id, "谢谢"],
    )
    .unwrap();
    typed(&api, &["comments", "--msg-data-id", &msg, "elect", &id]).unwrap();
    let list = typed(&api, &["comments", "--msg-data-id", &msg, "list"]).unwrap();
    let row = list.lines().nth(1).unwrap();
    assert!(
        row.contains("o_r") && row.contains("赞") && row.contains("谢谢"),
        "{list}"
    );
    let twice = typed(
        &api,
        &["comments", "--msg-data-id", &msg, "reply", &id, "again"],
    )
    .unwrap_err();
    assert!(twice.contains("88005"), "{twice}");
}
