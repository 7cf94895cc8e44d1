//! The web service end to end: OAuth2 web authorization against the simulator's authorize
//! page and sns endpoints (state, single-use codes, denial), JS-SDK configs the simulator
//! accepts, and the demo page in headless Chromium (Debian's `chromium` and `chromium-driver`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use wxoa_runtime::admin::Health;
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, eventually, free_port, shared_config};

/// The platform with the web service (demo on); its base URL.
async fn web(platform: &Platform) -> String {
    let mut config = platform.config.clone();
    config.web.demo = true;
    let app = wxoa_web::App::build(&config, Health::default())
        .await
        .expect("web service");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(platform.shutdown.clone()));
    // The token service has put a jsapi_ticket in Redis.
    let http = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(10), || async {
        let answer = http
            .get(format!(
                "{base}/jssdk/config?appid={SAFE_APP}&url=http://x/"
            ))
            .send()
            .await
            .ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the web service serves JS-SDK configs");
    base
}

/// An HTTP client that does not follow redirects, with a cookie jar of one cookie.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn oauth_login_single_use_codes_states_and_denial() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web(&platform).await;
    let http = no_redirects();

    // Start: to the authorize page, parameters in WeChat's order, a signed state.
    let start = http
        .get(format!(
            "{base}/oauth/{PLAIN_APP}/start?scope=snsapi_base&return=/demo"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let authorize = location(&start);
    let expected = format!(
        "{}/connect/oauth2/authorize?appid={PLAIN_APP}&redirect_uri={}&response_type=code&scope=snsapi_base&state=",
        platform.sim_url,
        wxoa_wire::web::percent_encode(&format!("{base}/oauth/{PLAIN_APP}/callback"))
    );
    assert!(authorize.starts_with(&expected), "{authorize}");
    assert!(authorize.ends_with("#wechat_redirect"), "{authorize}");

    // The simulator (base scope) sends the browser back with a code.
    let back = http
        .get(authorize.split('#').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let callback = location(&back);
    let done = http.get(&callback).send().await.unwrap();
    assert_eq!(done.status(), 302);
    assert_eq!(location(&done), "/demo");
    let cookie = done.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let me: Value = http
        .get(format!("{base}/oauth/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["openid"], "o_web_user", "{me}");
    assert_eq!(me["user"]["scope"], "snsapi_base");
    // The token works as a bearer token too; a forged one does not.
    let token = me["token"].as_str().unwrap();
    let bearer = http
        .get(format!("{base}/oauth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let forged = http
        .get(format!("{base}/oauth/me"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let refreshed = http
        .post(format!("{base}/oauth/refresh"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200, "{:?}", refreshed.text().await);

    // The same callback again: its state was used.
    let replay = http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    let error: Value = replay.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("state"),
        "{error}"
    );

    // A fresh state with the used code: refused before WeChat is asked.
    let code = callback
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned();
    let again = http
        .get(format!("{base}/oauth/{PLAIN_APP}/start?return=/demo"))
        .send()
        .await
        .unwrap();
    let state = location(&again)
        .split(['?', '&', '#'])
        .find_map(|p| p.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let reused = http
        .get(format!(
            "{base}/oauth/{PLAIN_APP}/callback?code={code}&state={state}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&reused), "/demo?wxoa_error=code_used");

    // A forged state, a return URL not allowed, an unknown app.
    let forged = http
        .get(format!(
            "{base}/oauth/{PLAIN_APP}/callback?code=x&state={}",
            "0".repeat(64)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let evil = http
        .get(format!(
            "{base}/oauth/{PLAIN_APP}/start?return=https://evil.example/"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let unknown = http
        .get(format!("{base}/oauth/wxnobody/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Userinfo scope: the user declines on the consent page.
    let start = http
        .get(format!(
            "{base}/oauth/{PLAIN_APP}/start?scope=snsapi_userinfo&return=/demo"
        ))
        .send()
        .await
        .unwrap();
    let authorize = location(&start);
    let query = authorize
        .split('#')
        .next()
        .unwrap()
        .split_once('?')
        .unwrap()
        .1;
    let page = http
        .get(authorize.split('#').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"allow\"") && html.contains("id=\"deny\""),
        "{html}"
    );
    let denied = http
        .get(format!(
            "{}/connect/oauth2/authorize/confirm?{query}&openid=o_web_user&decision=deny",
            platform.sim_url
        ))
        .send()
        .await
        .unwrap();
    let back = http.get(location(&denied)).send().await.unwrap();
    assert_eq!(location(&back), "/demo?wxoa_error=access_denied");
}

#[tokio::test]
async fn jssdk_configs_are_accepted_and_origins_limited() {
    let mut config = shared_config();
    config.web.allowed_origins = vec!["https://shop.example.com".into()];
    let platform = Platform::start(config, "", true).await;
    let base = web(&platform).await;
    let http = reqwest::Client::new();
    let url = "https://shop.example.com/pay?order=42&x=1#section";
    let cfg: Value = http
        .get(format!("{base}/jssdk/config"))
        .query(&[
            ("appid", SAFE_APP),
            ("url", url),
            ("apis", "chooseImage,scanQRCode"),
        ])
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["appId"], SAFE_APP);
    assert_eq!(cfg["jsApiList"], json!(["chooseImage", "scanQRCode"]));
    // WeChat's side accepts it for the page without its fragment.
    let verdict: Value = platform
        .post(
            "/_sim/jssdk/verify",
            json!({"appid": SAFE_APP, "url": "https://shop.example.com/pay?order=42&x=1",
                   "timestamp": cfg["timestamp"], "noncestr": cfg["nonceStr"], "signature": cfg["signature"]}),
        )
        .await;
    assert_eq!(verdict["accepted"], true, "{verdict} for {cfg}");
    let other_page: Value = platform
        .post(
            "/_sim/jssdk/verify",
            json!({"appid": SAFE_APP, "url": "https://shop.example.com/other",
                   "timestamp": cfg["timestamp"], "noncestr": cfg["nonceStr"], "signature": cfg["signature"]}),
        )
        .await;
    assert_eq!(other_page["accepted"], false, "{other_page}");

    let foreign = http
        .get(format!("{base}/jssdk/config"))
        .query(&[("appid", SAFE_APP), ("url", url)])
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let bad = http
        .get(format!("{base}/jssdk/config"))
        .query(&[("appid", SAFE_APP), ("url", "not-a-url")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// A chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wd(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let request = http.request(method.clone(), &url);
    let request = if method == reqwest::Method::POST {
        request.json(&body)
    } else {
        request
    };
    let answer: Value = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .json()
        .await
        .unwrap();
    answer["value"].clone()
}

/// The text of the element `css`, or `None` when there is none yet.
async fn text_of(http: &reqwest::Client, session: &str, css: &str) -> Option<String> {
    let element = wd(
        http,
        reqwest::Method::POST,
        format!("{session}/element"),
        json!({"using": "css selector", "value": css}),
    )
    .await;
    let id = element.as_object()?.values().next()?.as_str()?.to_owned();
    wd(
        http,
        reqwest::Method::GET,
        format!("{session}/element/{id}/text"),
        Value::Null,
    )
    .await
    .as_str()
    .map(str::to_owned)
}

async fn click(http: &reqwest::Client, session: &str, css: &str) {
    let element = wd(
        http,
        reqwest::Method::POST,
        format!("{session}/element"),
        json!({"using": "css selector", "value": css}),
    )
    .await;
    let id = element
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no element {css}: {element}"))
        .to_owned();
    wd(
        http,
        reqwest::Method::POST,
        format!("{session}/element/{id}/click"),
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn the_demo_page_logs_in_and_verifies_the_jssdk_signature_in_chromium() {
    for program in ["chromium", "chromedriver"] {
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {program}"))
                .status()
                .is_ok_and(|s| s.success()),
            "{program} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
    }
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web(&platform).await;
    let port = free_port();
    let driver = Driver {
        child: Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let up = eventually(Duration::from_secs(10), || async {
        http.get(format!("{}/status", driver.url))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(up.is_some(), "chromedriver answers");
    let profile = tempfile::tempdir().unwrap();
    let created = wd(
        &http,
        reqwest::Method::POST,
        format!("{}/session", driver.url),
        json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1000,800",
                     format!("--user-data-dir={}", profile.path().display())]}}}}),
    )
    .await;
    let session = format!(
        "{}/session/{}",
        driver.url,
        created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
    );

    // Not logged in yet: the page offers the login link.
    wd(
        &http,
        reqwest::Method::POST,
        format!("{session}/url"),
        json!({"url": format!("{base}/demo?appid={SAFE_APP}")}),
    )
    .await;
    let offered = eventually(Duration::from_secs(10), || async {
        text_of(&http, &session, "#who")
            .await
            .filter(|t| t.starts_with("Not logged in"))
    })
    .await;
    if offered.is_none() {
        let source = wd(
            &http,
            reqwest::Method::GET,
            format!("{session}/source"),
            Value::Null,
        )
        .await;
        panic!("the demo page did not load: {created} {source}");
    }
    click(&http, &session, "#login").await;

    // The simulator's consent page: allow.
    let consent = eventually(Duration::from_secs(10), || async {
        text_of(&http, &session, "#allow").await
    })
    .await;
    assert!(consent.is_some(), "the consent page is shown");
    click(&http, &session, "#allow").await;

    // Back on the demo page: logged in, and WeChat's side accepts the JS-SDK signature.
    let who = eventually(Duration::from_secs(15), || async {
        text_of(&http, &session, "#who")
            .await
            .filter(|t| t.starts_with("Logged in as"))
    })
    .await
    .expect("logged in after consent");
    assert!(who.contains("o_web_user"), "{who}");
    let jssdk = eventually(Duration::from_secs(15), || async {
        text_of(&http, &session, "#jssdk")
            .await
            .filter(|t| t != "checking…")
    })
    .await
    .expect("the JS-SDK check ran");
    assert_eq!(jssdk, "signature accepted");

    let png = wd(
        &http,
        reqwest::Method::GET,
        format!("{session}/screenshot"),
        Value::Null,
    )
    .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "target", "screenshots"]
        .iter()
        .collect();
    std::fs::create_dir_all(&path).unwrap();
    let path = path.canonicalize().unwrap();
    let file = path.join("web-demo-logged-in.png");
    std::fs::write(&file, bytes).unwrap();
    println!("screenshot: {}", file.display());
    wd(&http, reqwest::Method::DELETE, session, Value::Null).await;
}
