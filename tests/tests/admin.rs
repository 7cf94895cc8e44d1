//! The operator API against the simulator: bearer authentication, menus checked before any
//! upstream call, QR codes with real images, quotas and token status.

use serde_json::{Value, json};
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, shared_config};

const TOKEN: &str = "operator-test-token";

/// The platform with the operator API; its base URL.
async fn admin(platform: &Platform) -> String {
    platform.operator_api(TOKEN).await
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
    let (status, current) = call(
        &base,
        reqwest::Method::GET,
        &format!("{path}/current"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["is_menu_open"], 1, "{current}");

    // Conditional menus: a match rule is required before any call; add, trymatch, delete.
    let conditional = format!("{path}/conditional");
    let buttons = json!([{"type": "click", "name": "中文", "key": "ZH"}]);
    let (status, refused) = call(
        &base,
        reqwest::Method::POST,
        &conditional,
        Some(json!({"button": buttons})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let rule = json!({"button": buttons, "matchrule": {"language": "zh_CN"}});
    let (status, added) = call(&base, reqwest::Method::POST, &conditional, Some(rule)).await;
    assert_eq!(status, 200, "{added}");
    let menuid = added["menuid"].as_str().unwrap().to_owned();
    let (status, unknown) = call(
        &base,
        reqwest::Method::POST,
        &format!("{path}/trymatch"),
        Some(json!({"user_id": "o_nobody"})),
    )
    .await;
    assert_eq!(status, 400, "{unknown}");
    assert_eq!(
        unknown["error"]["errcode"], 65302,
        "not a follower: {unknown}"
    );
    let one = format!("{conditional}/{menuid}");
    let (status, _) = call(&base, reqwest::Method::DELETE, &one, None).await;
    assert_eq!(status, 200);
    let (status, gone) = call(&base, reqwest::Method::DELETE, &one, None).await;
    assert_eq!(status, 400);
    assert_eq!(gone["error"]["errcode"], 65301, "{gone}");

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

/// `POST` of raw bytes (an upload) to the operator API.
async fn upload(base: &str, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A file with the magic bytes of its format and `len` bytes in all.
fn file(magic: &[u8], len: usize) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    bytes.extend((0..len - magic.len()).map(|i| (i * 7 % 251) as u8));
    bytes
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPG: &[u8] = b"\xFF\xD8\xFF\xE0";

#[tokio::test]
async fn material_round_trips_real_bytes_and_is_checked_before_upload() {
    use reqwest::Method;
    let platform = Platform::start(shared_config(), "", true).await;
    let base = admin(&platform).await;
    let app = format!("/v1/apps/{PLAIN_APP}");

    // Temporary: the bytes come back as they went, with their type.
    let image = file(PNG, 300_000);
    let (status, temporary) = upload(
        &base,
        &format!("{app}/media?type=image&filename=poster.png"),
        image.clone(),
    )
    .await;
    assert_eq!(status, 200, "{temporary}");
    let media_id = temporary["media_id"].as_str().unwrap();
    let got = reqwest::Client::new()
        .get(format!("{base}{app}/media/{media_id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().as_ref(), image.as_slice());

    // Refused before any upstream call: wrong content, wrong extension, too large, empty.
    let refusals = [
        ("type=image&filename=a.jpg", file(PNG, 100), 422, "40005"),
        ("type=voice&filename=a.png", file(PNG, 100), 422, "40005"),
        (
            "type=thumb&filename=t.jpg",
            file(JPG, 64 * 1024 + 1),
            413,
            "40012",
        ),
        ("type=image&filename=a.png", Vec::new(), 422, "41005"),
        ("type=doc&filename=a.png", file(PNG, 10), 422, "40004"),
    ];
    for (query, bytes, want, errcode) in refusals {
        let (status, refused) = upload(&base, &format!("{app}/media?{query}"), bytes).await;
        assert_eq!(status, want, "{query}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(errcode), "{query}: {refused}");
    }
    let stats = platform.get("/_sim/stats").await;
    assert_eq!(
        stats["calls"][PLAIN_APP]["/cgi-bin/media/upload"], 1,
        "only the valid upload reached WeChat: {stats}"
    );

    // Permanent: add, count, list, get, delete; then WeChat's 40007 with its meaning.
    let (status, added) = upload(
        &base,
        &format!("{app}/materials?type=image&filename=logo.png"),
        file(PNG, 5_000),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    let image_id = added["media_id"].as_str().unwrap().to_owned();
    assert!(added["url"].is_string(), "{added}");
    let (status, refused) = upload(
        &base,
        &format!("{app}/materials?type=video&filename=v.mp4"),
        file(b"\0\0\0\x18ftypmp42", 1_000),
    )
    .await;
    assert_eq!(status, 422, "a permanent video needs a title: {refused}");
    let (status, video) = upload(
        &base,
        &format!("{app}/materials?type=video&filename=v.mp4&title=Launch&introduction=hi"),
        file(b"\0\0\0\x18ftypmp42", 1_000),
    )
    .await;
    assert_eq!(status, 200, "{video}");
    let video_id = video["media_id"].as_str().unwrap();
    let (status, video) = call(
        &base,
        Method::GET,
        &format!("{app}/materials/{video_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(video["title"], "Launch", "a video answers JSON: {video}");
    let (_, thumb) = upload(
        &base,
        &format!("{app}/materials?type=thumb&filename=t.jpg"),
        file(JPG, 2_000),
    )
    .await;
    let thumb_id = thumb["media_id"].as_str().unwrap().to_owned();

    let (status, count) = call(&base, Method::GET, &format!("{app}/materials/count"), None).await;
    assert_eq!(status, 200, "{count}");
    assert_eq!(
        count["image_count"], 2,
        "WeChat counts thumbs as images: {count}"
    );
    assert_eq!(count["video_count"], 1, "{count}");
    let (status, list) = call(
        &base,
        Method::GET,
        &format!("{app}/materials?type=image&offset=0&count=20"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let items = list["item"].as_array().unwrap();
    assert!(
        items.iter().any(|i| i["media_id"] == image_id.as_str()),
        "{list}"
    );
    let (status, _) = call(
        &base,
        Method::GET,
        &format!("{app}/materials?type=image&count=21"),
        None,
    )
    .await;
    assert_eq!(status, 422, "count stops at 20");
    let got = reqwest::Client::new()
        .get(format!("{base}{app}/materials/{image_id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.bytes().await.unwrap().as_ref(),
        file(PNG, 5_000).as_slice()
    );
    let (status, _) = call(
        &base,
        Method::DELETE,
        &format!("{app}/materials/{image_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, gone) = call(
        &base,
        Method::GET,
        &format!("{app}/materials/{image_id}"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{gone}");
    assert_eq!(gone["error"]["errcode"], 40007, "{gone}");
    assert!(
        gone["error"]["meaning"]
            .as_str()
            .unwrap()
            .contains("media_id"),
        "{gone}"
    );

    // Article images and drafts.
    let (status, img) = upload(
        &base,
        &format!("{app}/images?filename=in.png"),
        file(PNG, 900),
    )
    .await;
    assert_eq!(status, 200, "{img}");
    let url = img["url"].as_str().unwrap();
    assert_eq!(
        reqwest::get(url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        file(PNG, 900).as_slice()
    );
    let article = json!({"title": "标题", "content": format!("<img src=\"{url}\">"), "thumb_media_id": thumb_id});
    let (status, refused) = call(
        &base,
        Method::POST,
        &format!("{app}/drafts"),
        Some(json!({"articles": []})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let (status, draft) = call(
        &base,
        Method::POST,
        &format!("{app}/drafts"),
        Some(json!({"articles": [article]})),
    )
    .await;
    assert_eq!(status, 200, "{draft}");
    let draft_id = draft["media_id"].as_str().unwrap();
    let (_, got) = call(
        &base,
        Method::GET,
        &format!("{app}/drafts/{draft_id}"),
        None,
    )
    .await;
    assert_eq!(got["news_item"][0]["title"], "标题", "{got}");
    let renamed = json!({"title": "新标题", "content": "x", "thumb_media_id": thumb_id});
    let (status, updated) = call(
        &base,
        Method::PUT,
        &format!("{app}/drafts/{draft_id}/0"),
        Some(renamed),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let (_, list) = call(
        &base,
        Method::GET,
        &format!("{app}/drafts?count=5&no_content=true"),
        None,
    )
    .await;
    assert_eq!(
        list["item"][0]["content"]["news_item"][0]["title"], "新标题",
        "{list}"
    );
    let (_, count) = call(&base, Method::GET, &format!("{app}/drafts/count"), None).await;
    assert_eq!(count["total_count"], 1, "{count}");
    let (status, _) = call(
        &base,
        Method::DELETE,
        &format!("{app}/drafts/{draft_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_draft_published_end_to_end_with_its_event_and_comments() {
    use reqwest::Method;
    use std::time::Duration;
    let platform = Platform::start(shared_config(), "", true).await;
    platform
        .post("/_sim/mass/settings", json!({"finish_delay_ms": 50}))
        .await;
    let base = admin(&platform).await;
    let app = format!("/v1/apps/{PLAIN_APP}");
    let (_, thumb) = upload(
        &base,
        &format!("{app}/materials?type=thumb&filename=t.jpg"),
        file(JPG, 2_000),
    )
    .await;
    let article = |title: &str| json!({"title": title, "content": "<p>正文</p>", "thumb_media_id": thumb["media_id"], "need_open_comment": 1});
    let draft = |articles: Value| {
        let base = base.clone();
        let path = format!("{app}/drafts");
        async move {
            let (status, draft) = call(
                &base,
                Method::POST,
                &path,
                Some(json!({"articles": articles})),
            )
            .await;
            assert_eq!(status, 200, "{draft}");
            draft["media_id"].as_str().unwrap().to_owned()
        }
    };
    let job = |publish_id: String| {
        let base = base.clone();
        let path = format!("{app}/publish-jobs/{publish_id}");
        async move { call(&base, Method::GET, &path, None).await }
    };

    let media_id = draft(json!([article("发布一"), article("发布二")])).await;
    let (status, submitted) = call(
        &base,
        Method::POST,
        &format!("{app}/drafts/{media_id}/publish"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    let publish_id = submitted["publish_id"].as_str().unwrap().to_owned();
    let msg_data_id = submitted["msg_data_id"].as_u64().unwrap();
    let done = wxoa_tests::eventually(Duration::from_secs(10), || async {
        let (_, answer) = job(publish_id.clone()).await;
        (answer["publish_status"] == 0).then_some(answer)
    })
    .await
    .expect("the job ends published");
    assert_eq!(done["article_detail"]["count"], 2, "{done}");
    let article_id = done["article_id"].as_str().unwrap().to_owned();

    // The simulator told the gateway, which stored the event in the inbound stream.
    let js = async_nats::jetstream::new(platform.nats().await);
    let stream = js
        .get_stream(wxoa_wire::names::streams::inbound(platform.prefix()))
        .await
        .unwrap();
    let subject =
        wxoa_wire::names::subjects::event(platform.prefix(), PLAIN_APP, "PUBLISHJOBFINISH");
    let stored = wxoa_tests::eventually(Duration::from_secs(10), || async {
        stream.get_last_raw_message_by_subject(&subject).await.ok()
    })
    .await
    .expect("PUBLISHJOBFINISH in the inbound stream");
    let event: Value = serde_json::from_slice(&stored.payload).unwrap();
    assert!(
        event.to_string().contains(&article_id),
        "the event names the article: {event}"
    );

    let (_, list) = call(
        &base,
        Method::GET,
        &format!("{app}/published?count=5"),
        None,
    )
    .await;
    assert_eq!(list["item"][0]["article_id"], article_id.as_str(), "{list}");
    let (status, _) = call(
        &base,
        Method::GET,
        &format!("{app}/published?count=21"),
        None,
    )
    .await;
    assert_eq!(status, 422, "count stops at 20, before any call");
    let (_, gone) = call(
        &base,
        Method::GET,
        &format!("{app}/drafts/{media_id}"),
        None,
    )
    .await;
    assert_eq!(
        gone["error"]["errcode"], 40007,
        "the draft left the box: {gone}"
    );

    // The published articles take comments.
    let comments = format!("{app}/articles/{msg_data_id}/1/comments");
    let (status, page) = call(&base, Method::GET, &comments, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 0, "{page}");

    let (status, zero) = call(
        &base,
        Method::DELETE,
        &format!("{app}/published/{article_id}?index=0"),
        None,
    )
    .await;
    assert_eq!(status, 422, "0 is not read as every article: {zero}");
    let (status, _) = call(
        &base,
        Method::DELETE,
        &format!("{app}/published/{article_id}?index=1"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, got) = call(
        &base,
        Method::GET,
        &format!("{app}/published/{article_id}"),
        None,
    )
    .await;
    assert_eq!(got["news_item"][0]["is_deleted"], true, "{got}");
    assert_eq!(got["news_item"][1]["is_deleted"], false, "{got}");
    let (status, _) = call(
        &base,
        Method::DELETE,
        &format!("{app}/published/{article_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, deleted) = call(
        &base,
        Method::GET,
        &format!("{app}/published/{article_id}"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(deleted["error"]["errcode"], 53600, "{deleted}");
    assert!(
        deleted["error"]["meaning"]
            .as_str()
            .unwrap()
            .contains("article_id"),
        "{deleted}"
    );

    // A job WeChat refuses, and one that does not exist.
    platform
        .post("/_sim/publish", json!({"appid": PLAIN_APP, "fail": 2}))
        .await;
    let kept = draft(json!([article("原创")])).await;
    let (_, refused) = call(
        &base,
        Method::POST,
        &format!("{app}/drafts/{kept}/publish"),
        None,
    )
    .await;
    let refused_id = refused["publish_id"].as_str().unwrap().to_owned();
    let failed = wxoa_tests::eventually(Duration::from_secs(10), || async {
        let (_, answer) = job(refused_id.clone()).await;
        (answer["publish_status"] != 1).then_some(answer)
    })
    .await
    .unwrap();
    assert_eq!(failed["publish_status"], 2, "{failed}");
    assert_eq!(failed["fail_idx"], json!([1]), "{failed}");
    let (status, unknown) = job("1".into()).await;
    assert_eq!(status, 400);
    assert_eq!(unknown["error"]["errcode"], 53502, "{unknown}");
}

#[tokio::test]
async fn article_comments_every_verb_and_wechat_errors() {
    use reqwest::Method;
    let platform = Platform::start(shared_config(), "", true).await;
    let base = admin(&platform).await;
    let created = platform
        .post(
            "/_sim/comments",
            json!({"appid": SAFE_APP, "comments": [
                {"openid": "o_reader_1", "content": "写得好"},
                {"openid": "o_reader_2", "content": "second"}]}),
        )
        .await;
    let msg_data_id = created["msg_data_id"].as_u64().expect("msg_data_id");
    let ids: Vec<u64> = created["user_comment_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let article = format!("/v1/apps/{SAFE_APP}/articles/{msg_data_id}/0/comments");
    let (status, list) = call(&base, Method::GET, &article, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2, "{list}");
    let (status, _) = call(&base, Method::GET, &format!("{article}?count=51"), None).await;
    assert_eq!(status, 422, "count stops at 50, before any call");

    let (status, _) = call(
        &base,
        Method::POST,
        &format!("{article}/{}/elect", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, elected) = call(&base, Method::GET, &format!("{article}?type=elected"), None).await;
    assert_eq!(elected["total"], 1, "{elected}");
    let (status, _) = call(
        &base,
        Method::DELETE,
        &format!("{article}/{}/elect", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let reply = format!("{article}/{}/reply", ids[0]);
    let (status, _) = call(&base, Method::PUT, &reply, Some(json!({"content": "谢谢"}))).await;
    assert_eq!(status, 200);
    let (status, again) = call(
        &base,
        Method::PUT,
        &reply,
        Some(json!({"content": "again"})),
    )
    .await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(again["error"]["errcode"], 88005, "already replied: {again}");
    let (_, list) = call(&base, Method::GET, &article, None).await;
    let first = list["comment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user_comment_id"] == ids[0])
        .unwrap();
    assert_eq!(first["reply"]["content"], "谢谢", "{list}");
    let (status, _) = call(&base, Method::DELETE, &reply, None).await;
    assert_eq!(status, 200);

    let (status, _) = call(
        &base,
        Method::DELETE,
        &format!("{article}/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, missing) = call(
        &base,
        Method::DELETE,
        &format!("{article}/{}", ids[1] + 1000),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(missing["error"]["errcode"], 88008, "{missing}");
    let (_, list) = call(&base, Method::GET, &article, None).await;
    assert_eq!(list["total"], 1, "{list}");

    let (status, _) = call(&base, Method::POST, &format!("{article}/close"), None).await;
    assert_eq!(status, 200);
    let (status, closed) = call(
        &base,
        Method::POST,
        &format!("{article}/{}/elect", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(closed["error"]["errcode"], 88000, "{closed}");
    let (status, _) = call(&base, Method::POST, &format!("{article}/open"), None).await;
    assert_eq!(status, 200);
    let nowhere = format!(
        "/v1/apps/{SAFE_APP}/articles/{}/0/comments",
        msg_data_id + 999
    );
    let (status, absent) = call(&base, Method::GET, &nowhere, None).await;
    assert_eq!(status, 400);
    assert_eq!(absent["error"]["errcode"], 88001, "{absent}");
}

#[tokio::test]
async fn worker_apis_over_http_and_every_route_is_documented() {
    use reqwest::Method;
    let platform = Platform::start(shared_config(), "", true).await;
    let base = admin(&platform).await;
    let api = format!("/v1/apps/{PLAIN_APP}/api");
    let (status, none) = call(&base, Method::POST, &format!("{api}/users/count"), None).await;
    assert_eq!(status, 503, "no usersync yet: {none}");
    assert!(
        none["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no users worker"),
        "{none}"
    );
    let _usersync = platform.usersync().await;
    let _replier = platform.replier().await;
    let (status, count) = call(&base, Method::POST, &format!("{api}/users/count"), None).await;
    assert_eq!(status, 200, "{count}");
    assert!(count["followers"].is_u64(), "{count}");
    let (status, rules) = call(
        &base,
        Method::POST,
        &format!("{api}/rules/list"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{rules}");
    let (status, bad) = call(&base, Method::POST, &format!("{api}/rules/put"), Some(json!({"rule": {"id": "bad", "match": {"kind": "keyword", "mode": "regex", "patterns": ["(unclosed"]}, "reply": {"type": "text", "content": "x"}}}))).await;
    assert_eq!(status, 422, "the replier refuses a bad regex: {bad}");
    let (status, _) = call(&base, Method::POST, &format!("{api}/nothing/list"), None).await;
    assert_eq!(status, 404);

    let doc: Value = serde_json::from_str(wxoa_admin::OPENAPI).unwrap();
    for (path, method) in [
        ("/v1/apps/{appid}/media", "post"),
        ("/v1/apps/{appid}/media/{media_id}", "get"),
        ("/v1/apps/{appid}/images", "post"),
        ("/v1/apps/{appid}/materials", "get"),
        ("/v1/apps/{appid}/materials", "post"),
        ("/v1/apps/{appid}/materials/count", "get"),
        ("/v1/apps/{appid}/materials/{media_id}", "delete"),
        ("/v1/apps/{appid}/drafts", "post"),
        ("/v1/apps/{appid}/drafts/{media_id}/{index}", "put"),
        ("/v1/apps/{appid}/drafts/{media_id}/publish", "post"),
        ("/v1/apps/{appid}/publish-jobs/{publish_id}", "get"),
        ("/v1/apps/{appid}/published", "get"),
        ("/v1/apps/{appid}/published/{article_id}", "delete"),
        (
            "/v1/apps/{appid}/articles/{msg_data_id}/{index}/comments",
            "get",
        ),
        (
            "/v1/apps/{appid}/articles/{msg_data_id}/{index}/comments/{user_comment_id}/reply",
            "put",
        ),
        ("/v1/apps/{appid}/api/{area}/{verb}", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
    }
}
