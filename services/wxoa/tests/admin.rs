//! The operator verbs (`wxoa menu`, `wxoa qrcode`, `wxoa quota`, `wxoa token-status`) against a
//! running operator API: human errors with WeChat's errcode, menus checked before they leave.

use std::process::Command;

use serde_json::Value;
use wxoa_runtime::admin::Health;
use wxoa_tests::{PLAIN_APP, Platform, shared_config};

const TOKEN: &str = "cli-test-token";

fn verb(api: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_wxoa"))
        .args(args)
        .args(["--app", PLAIN_APP])
        .env_remove("WXOA_CONFIG")
        .env("WXOA__APPS__0__APPID", PLAIN_APP)
        .env("WXOA__APPS__0__SECRET", "s")
        .env("WXOA__APPS__0__TOKEN", "t")
        .env("WXOA_API_URL", api)
        .env("WXOA_API_TOKEN", TOKEN)
        .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
        .output()
        .expect("wxoa runs");
    if out.status.success() {
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

// The verbs run as blocking child processes: the in-process API needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_verbs_drive_the_api() {
    let platform = Platform::start(shared_config(), "", true).await;
    let mut config = platform.config.clone();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.tokens = vec![TOKEN.to_owned().into()];
    let app = wxoa_admin::App::build(&config, Health::default())
        .await
        .unwrap();
    let api = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(platform.shutdown.clone()));

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

    let qr = verb(&api, &["qrcode", "--scene-str", "poster", "--permanent"]).unwrap();
    assert!(
        qr["image_url"].as_str().unwrap().contains("showqrcode"),
        "{qr}"
    );
    let quota = verb(&api, &["quota", "--cgi-path", "/cgi-bin/qrcode/create"]).unwrap();
    assert!(quota["quota"]["used"].as_u64() >= Some(1), "{quota}");
    let status = verb(&api, &["token-status"]).unwrap();
    assert_eq!(status["access_token"]["present"], true, "{status}");

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
