//! The operator API against the simulator: bearer authentication, menus checked before any
//! upstream call, QR codes with real images, quotas and token status.

use serde_json::{Value, json};
use wxoa_runtime::admin::Health;
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, shared_config};

const TOKEN: &str = "operator-test-token";

/// The platform with the operator API; its base URL.
async fn admin(platform: &Platform) -> String {
    let mut config = platform.config.clone();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.tokens = vec![TOKEN.to_owned().into()];
    let app = wxoa_admin::App::build(&config, Health::default())
        .await
        .expect("operator API");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(platform.shutdown.clone()));
    base
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn requests_without_the_right_bearer_token_are_refused() {
    let platform = Platform::start(shared_config(), "", false).await;
    let base = admin(&platform).await;
    let http = reqwest::Client::new();
    let none = http.get(format!("{base}/v1/apps")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .get(format!("{base}/v1/apps"))
        .bearer_auth("operator-test-tokeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, apps) = call(&base, reqwest::Method::GET, "/v1/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(apps["apps"].as_array().unwrap().len(), 2, "{apps}");
    // The OpenAPI document is public and lists the routes.
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/apps/{appid}/menu"]["put"].is_object());
}

#[tokio::test]
async fn menus_are_checked_before_any_call_and_round_trip() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = admin(&platform).await;
    let path = format!("/v1/apps/{PLAIN_APP}/menu");
    let four = json!({"type": "click", "name": "a", "key": "k"});
    let (status, refused) = call(
        &base,
        reqwest::Method::PUT,
        &path,
        Some(json!({"button": [four, four, four, four]})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("40016"),
        "{refused}"
    );
    let (status, refused) = call(
        &base,
        reqwest::Method::PUT,
        &path,
        Some(json!({"button": [{"name": "菜单", "sub_button": [{"type": "view", "name": "x", "url": "ftp://x"}]}]})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("button[0].sub_button[0].url"),
        "{refused}"
    );
    let stats = platform.get("/_sim/stats").await;
    assert!(
        stats["calls"][PLAIN_APP]["/cgi-bin/menu/create"].is_null(),
        "no upstream call for an invalid menu: {stats}"
    );

    let menu = json!({"button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {"name": "菜单", "sub_button": [{"type": "view", "name": "搜索", "url": "https://www.example.com/"}]}]});
    let (status, created) = call(&base, reqwest::Method::PUT, &path, Some(menu)).await;
    assert_eq!(status, 200, "{created}");
    let (_, got) = call(&base, reqwest::Method::GET, &path, None).await;
    assert_eq!(
        got["menu"]["button"][0]["key"], "V1001_TODAY_MUSIC",
        "{got}"
    );
    let (status, deleted) = call(&base, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, gone) = call(&base, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 400, "{gone}");
    assert_eq!(
        gone["error"]["errcode"], 46003,
        "WeChat's menu no exist: {gone}"
    );
}

#[tokio::test]
async fn qr_codes_quotas_and_token_status() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = admin(&platform).await;
    let qr = format!("/v1/apps/{SAFE_APP}/qrcodes");
    let (status, temporary) = call(
        &base,
        reqwest::Method::POST,
        &qr,
        Some(json!({"scene_id": 42, "expire_seconds": 3600})),
    )
    .await;
    assert_eq!(status, 200, "{temporary}");
    assert_eq!(temporary["expire_seconds"], 3600);
    let image = reqwest::get(temporary["image_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    let bytes = image.bytes().await.unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n".as_slice(), "a PNG image");
    let (status, permanent) = call(
        &base,
        reqwest::Method::POST,
        &qr,
        Some(json!({"scene_str": "poster-2026", "permanent": true})),
    )
    .await;
    assert_eq!(status, 200, "{permanent}");
    assert!(
        permanent.get("expire_seconds").is_none()
            || permanent["expire_seconds"].is_null()
            || permanent["expire_seconds"] == 0
    );
    let (status, _) = call(
        &base,
        reqwest::Method::POST,
        &qr,
        Some(json!({"scene_id": 100_001, "permanent": true})),
    )
    .await;
    assert_eq!(status, 422, "permanent scene ids stop at 100000");

    let (status, counts) = call(
        &base,
        reqwest::Method::GET,
        &format!("/v1/apps/{SAFE_APP}/quota"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(counts["calls"]["/cgi-bin/qrcode/create"], 2, "{counts}");
    let (status, quota) = call(
        &base,
        reqwest::Method::POST,
        &format!("/v1/apps/{SAFE_APP}/quota/get"),
        Some(json!({"cgi_path": "/cgi-bin/qrcode/create"})),
    )
    .await;
    assert_eq!(status, 200, "{quota}");
    assert!(quota["quota"]["used"].as_u64() >= Some(2), "{quota}");
    let (status, cleared) = call(
        &base,
        reqwest::Method::POST,
        &format!("/v1/apps/{SAFE_APP}/quota/clear"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");

    let (status, token) = call(
        &base,
        reqwest::Method::GET,
        &format!("/v1/apps/{SAFE_APP}/token"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(token["access_token"]["present"], true, "{token}");
    assert!(token["access_token"]["fingerprint"].is_string(), "{token}");
    assert_eq!(
        token["forced_refresh"]["left_today"]
            .as_u64()
            .map(|l| l <= 20),
        Some(true)
    );
    let (status, _) = call(&base, reqwest::Method::GET, "/v1/apps/wxnobody/token", None).await;
    assert_eq!(status, 404);
}
