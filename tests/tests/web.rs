//! The web service end to end: OAuth2 web authorization against the simulator's authorize
//! page and sns endpoints (state, single-use codes, denial), the defences of `/start` and the
//! callback (bounded Redis, rate limits, return URLs resolved as a browser does, the login bound
//! to the browser that started it), CORS, JS-SDK configs the simulator accepts, and the demo
//! page in headless Chromium (Debian's `chromium` and `chromium-driver`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_tests::{PLAIN_APP, Platform, SAFE_APP, eventually, free_port, shared_config};

/// The platform with the web service (demo on); its base URL.
async fn web(platform: &Platform) -> String {
    web_with(platform, |_| {}).await
}

/// The platform with the web service (demo on, then `change` applied); its base URL.
async fn web_with(platform: &Platform, change: impl FnOnce(&mut Config)) -> String {
    let mut config = platform.config.clone();
    config.web.demo = true;
    change(&mut config);
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

/// A browser without redirects: an HTTP client and its own cookie jar (every cookie sent to
/// every host, which is enough here: the web service and the simulator).
struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    /// `GET url` with the jar's cookies; the answer's `Set-Cookie`s go into the jar (a
    /// `Max-Age=0` one removes its cookie).
    async fn get(&mut self, url: &str) -> reqwest::Response {
        self.get_with(url, &[]).await
    }

    async fn get_with(&mut self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.get(url);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", cookies.join("; "));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        for set in set_cookies(&response) {
            let (pair, attributes) = set.split_once(';').unwrap_or((&set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        response
    }
}

/// The `Set-Cookie` headers of an answer.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Set-Cookie` of cookie `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// The value of `name` in `url`'s query (or fragment).
fn query_param(url: &str, name: &str) -> String {
    url.split(['?', '&', '#'])
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} in {url}"))
        .to_owned()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// `/start` for `app` with `return`, then the simulator's base-scope authorize page: the
/// callback URL WeChat sends the browser back to (not visited).
async fn callback_url(browser: &mut Browser, base: &str, app: &str, ret: &str) -> String {
    let start = browser
        .get(&format!(
            "{base}/oauth/{app}/start?scope=snsapi_base&return={}",
            wxoa_wire::web::percent_encode(ret)
        ))
        .await;
    assert_eq!(start.status(), 302, "{:?}", start.text().await);
    let authorize = location(&start);
    let back = browser.get(authorize.split('#').next().unwrap()).await;
    assert_eq!(back.status(), 302);
    location(&back)
}

#[tokio::test]
async fn oauth_login_single_use_codes_states_and_denial() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web(&platform).await;
    let mut browser = Browser::new();

    // Start: to the authorize page, parameters in WeChat's order, a signed state, and the
    // login bound to this browser by a short-lived HttpOnly cookie (not Secure over http).
    let start = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/start?scope=snsapi_base&return=/demo"
        ))
        .await;
    assert_eq!(start.status(), 302);
    let binding = set_cookie(&start, "wxoa_login").expect("the login cookie");
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
        "{binding}"
    );
    assert!(!binding.contains("Secure"), "{binding}");
    let authorize = location(&start);
    let expected = format!(
        "{}/connect/oauth2/authorize?appid={PLAIN_APP}&redirect_uri={}&response_type=code&scope=snsapi_base&state=",
        platform.sim_url,
        wxoa_wire::web::percent_encode(&format!("{base}/oauth/{PLAIN_APP}/callback"))
    );
    assert!(authorize.starts_with(&expected), "{authorize}");
    assert!(authorize.ends_with("#wechat_redirect"), "{authorize}");
    let state = query_param(&authorize, "state");
    assert!(
        state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()),
        "WeChat's state: at most 128 bytes of a-zA-Z0-9: {state}"
    );

    // The simulator (base scope) sends the browser back with a code.
    let back = browser.get(authorize.split('#').next().unwrap()).await;
    assert_eq!(back.status(), 302);
    let callback = location(&back);
    let login_cookie = browser.jar["wxoa_login"].clone();
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), 302);
    assert_eq!(location(&done), format!("{base}/demo"));
    let cookie = set_cookie(&done, "wxoa_session").expect("the session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let cleared = set_cookie(&done, "wxoa_login").expect("the login cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(!browser.jar.contains_key("wxoa_login"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let http = &browser.http;
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

    // The same callback again, with the login cookie it had: its state was used.
    let replay = http
        .get(&callback)
        .header("cookie", format!("wxoa_login={login_cookie}"))
        .send()
        .await
        .unwrap();
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
    let code = query_param(&callback, "code");
    let again = browser
        .get(&format!("{base}/oauth/{PLAIN_APP}/start?return=/demo"))
        .await;
    let state = query_param(&location(&again), "state");
    let reused = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/callback?code={code}&state={state}"
        ))
        .await;
    assert_eq!(
        location(&reused),
        format!("{base}/demo?wxoa_error=code_used")
    );

    // A forged state, a return URL not allowed, an unknown app.
    let forged = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/callback?code=x&state={}",
            "0".repeat(64)
        ))
        .await;
    assert_eq!(forged.status(), 400);
    let evil = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/start?return=https://evil.example/"
        ))
        .await;
    assert_eq!(evil.status(), 403);
    let unknown = browser.get(&format!("{base}/oauth/wxnobody/start")).await;
    assert_eq!(unknown.status(), 404);

    // Userinfo scope: the user declines on the consent page.
    let start = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/start?scope=snsapi_userinfo&return=/demo"
        ))
        .await;
    let authorize = location(&start);
    let query = authorize
        .split('#')
        .next()
        .unwrap()
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    let page = browser.get(authorize.split('#').next().unwrap()).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"allow\"") && html.contains("id=\"deny\""),
        "{html}"
    );
    let denied = browser
        .get(&format!(
            "{}/connect/oauth2/authorize/confirm?{query}&openid=o_web_user&decision=deny",
            platform.sim_url
        ))
        .await;
    let back = browser.get(&location(&denied)).await;
    assert_eq!(
        location(&back),
        format!("{base}/demo?wxoa_error=access_denied")
    );
}

/// The keys under a test's Redis prefix and the bytes Redis says they take (`MEMORY USAGE`).
async fn redis_footprint(config: &Config) -> (usize, u64) {
    use secrecy::ExposeSecret;
    let client = redis::Client::open(config.redis.url.expose_secret()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", config.redis.key_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut bytes = 0;
    for key in &keys {
        let usage: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        bytes += usage.unwrap_or_default();
    }
    (keys.len(), bytes)
}

#[tokio::test]
async fn start_caps_the_return_length() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web(&platform).await;
    let mut browser = Browser::new();
    let longest = format!("/demo?{}", "a".repeat(1024 - 6));
    let fits = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/start?return={}",
            wxoa_wire::web::percent_encode(&longest)
        ))
        .await;
    assert_eq!(fits.status(), 302, "{:?}", fits.text().await);
    // A request head over the listener's buffer is refused before the handler (431).
    let huge = browser
        .get(&format!(
            "{base}/oauth/{PLAIN_APP}/start?return=/demo?{}",
            "a".repeat(48 * 1024)
        ))
        .await;
    assert_eq!(huge.status(), 431);
    for ret in [
        format!("{longest}a"),
        format!("/demo?{}", "a".repeat(8 * 1024)),
    ] {
        let long = browser
            .get(&format!(
                "{base}/oauth/{PLAIN_APP}/start?return={}",
                wxoa_wire::web::percent_encode(&ret)
            ))
            .await;
        assert_eq!(long.status(), 400, "a {}-byte return", ret.len());
        let error: Value = long.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("web.max_return_len"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn login_cookies_stay_under_what_browsers_keep() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web_with(&platform, |c| c.web.max_return_len = 2048).await;
    let mut browser = Browser::new();
    // The longest returns, plain and of characters that grow once encoded: a login cookie
    // browsers would drop (over 4096 bytes) is never set.
    for ret in [
        format!("/demo?{}", "a".repeat(2042)),
        format!("/demo?{}", "\\".repeat(2042)),
        format!("/demo?{}", "\"".repeat(2042)),
        format!("/demo?{}", "é".repeat(1021)),
    ] {
        let answer = browser
            .get(&format!(
                "{base}/oauth/{PLAIN_APP}/start?return={}",
                wxoa_wire::web::percent_encode(&ret)
            ))
            .await;
        match answer.status().as_u16() {
            302 => {
                let cookie = set_cookie(&answer, "wxoa_login").unwrap();
                assert!(cookie.len() <= 4096, "a {}-byte login cookie", cookie.len());
            }
            400 if !ret.contains('a') => {}
            other => panic!("/start answered {other}"),
        }
    }
}

#[tokio::test]
async fn pending_logins_per_app_are_capped_and_redis_stays_bounded() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web_with(&platform, |c| {
        c.web.max_pending_per_app = 50;
        c.web.start_per_client_per_min = 0;
    })
    .await;
    let (keys_before, bytes_before) = redis_footprint(&platform.config).await;
    let ret = format!("/demo?{}", "r".repeat(1000));
    let url = format!(
        "{base}/oauth/{PLAIN_APP}/start?return={}",
        wxoa_wire::web::percent_encode(&ret)
    );
    // A user starts a login, then a flood of 300 /starts (another client) fills the app's cap.
    let mut early = Browser::new();
    let early_start = early.get(&url).await;
    assert_eq!(early_start.status(), 302);
    let early_authorize = location(&early_start);
    let mut browser = Browser::new();
    let mut last_authorize = String::new();
    for _ in 0..300 {
        let answer = browser.get(&url).await;
        assert_eq!(answer.status(), 302, "/start is never locked by the cap");
        last_authorize = location(&answer);
    }
    // 301 starts with 1 KB returns: Redis holds no returns, only the app's newest 50 nonces.
    let (keys, bytes) = redis_footprint(&platform.config).await;
    println!(
        "redis after 301 /start with 1 KB returns: {} keys, {} bytes (before: {keys_before} keys, {bytes_before} bytes)",
        keys, bytes
    );
    assert!(keys <= keys_before + 1, "{keys} keys");
    assert!(
        bytes.saturating_sub(bytes_before) < 50 * 200,
        "{} bytes for 50 pending logins",
        bytes.saturating_sub(bytes_before)
    );
    let pending: u64 = redis::cmd("ZCARD")
        .arg(wxoa_wire::names::keys::web_pending_logins(
            &platform.config.redis.key_prefix,
            PLAIN_APP,
        ))
        .query_async(
            &mut wxoa_runtime::connect::redis(&platform.config.redis)
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(pending, 50, "at most the cap is kept");
    // The newest login finishes; the oldest made room, and its callback finds no state.
    let back = browser.get(last_authorize.split('#').next().unwrap()).await;
    assert_eq!(back.status(), 302);
    let done = browser.get(&location(&back)).await;
    assert_eq!(done.status(), 302, "{:?}", done.text().await);
    assert_eq!(location(&done), format!("{base}{ret}"));
    let back = early.get(early_authorize.split('#').next().unwrap()).await;
    assert_eq!(back.status(), 302);
    let evicted = early.get(&location(&back)).await;
    assert_eq!(evicted.status(), 400, "{:?}", evicted.text().await);
    // Another app has its own cap.
    let other = browser
        .get(&format!("{base}/oauth/{SAFE_APP}/start?return=/demo"))
        .await;
    assert_eq!(other.status(), 302);
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

#[tokio::test]
async fn callbacks_with_invalid_codes_leave_nothing_in_redis() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web_with(&platform, |c| c.web.start_per_client_per_min = 0).await;
    let (keys_before, _) = redis_footprint(&platform.config).await;
    let mut browser = Browser::new();
    // Valid states from this browser, codes WeChat never issued: each login ends at once, and
    // no code is remembered (only a code WeChat accepted or called used can be replayed).
    for i in 0..40 {
        let start = browser
            .get(&format!("{base}/oauth/{PLAIN_APP}/start?return=/demo"))
            .await;
        let state = query_param(&location(&start), "state");
        let done = browser
            .get(&format!(
                "{base}/oauth/{PLAIN_APP}/callback?code=forged{i}&state={state}"
            ))
            .await;
        assert_eq!(
            location(&done),
            format!("{base}/demo?wxoa_error=invalid_code")
        );
    }
    let (keys, _) = redis_footprint(&platform.config).await;
    assert!(
        keys <= keys_before + 1,
        "{keys} keys after 40 forged codes ({keys_before} before)"
    );
}

#[tokio::test]
async fn start_is_rate_limited_per_client_and_forwarded_for_only_from_trusted_proxies() {
    let platform = Platform::start(shared_config(), "", true).await;
    let limit = |c: &mut Config| c.web.start_per_client_per_min = 5;
    let direct = web_with(&platform, limit).await;
    let mut browser = Browser::new();
    let start = |base: &str| format!("{base}/oauth/{PLAIN_APP}/start?return=/demo");
    // No trusted proxy: the peer is the client, whatever X-Forwarded-For says.
    for i in 0..7 {
        let spoofed = format!("198.51.100.{i}");
        let answer = browser
            .get_with(&start(&direct), &[("x-forwarded-for", &spoofed)])
            .await;
        if i < 5 {
            assert_eq!(answer.status(), 302, "start {i}");
        } else {
            assert_eq!(answer.status(), 429, "start {i}");
            assert_eq!(answer.headers()["retry-after"], "60");
            let error: Value = answer.json().await.unwrap();
            let message = error["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("web.start_per_client_per_min"),
                "{message}"
            );
        }
    }
    // Behind a trusted proxy: the rightmost hop it did not add is the client, so a spoofed
    // leftmost hop changes nothing; clients have their own budgets; an IPv6 /64 is one client.
    let proxied = web_with(&platform, |c| {
        limit(c);
        c.web.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    for i in 0..5 {
        let hops = format!("10.9.9.{i}, 203.0.113.7");
        let answer = browser
            .get_with(&start(&proxied), &[("x-forwarded-for", &hops)])
            .await;
        assert_eq!(answer.status(), 302, "start {i}");
    }
    for hops in [
        "203.0.113.7",
        "1.2.3.4, 203.0.113.7",
        "203.0.113.7, 127.0.0.5",
    ] {
        let answer = browser
            .get_with(&start(&proxied), &[("x-forwarded-for", hops)])
            .await;
        assert_eq!(answer.status(), 429, "{hops}");
    }
    let other = browser
        .get_with(&start(&proxied), &[("x-forwarded-for", "203.0.113.8")])
        .await;
    assert_eq!(other.status(), 302);
    for i in 0..6 {
        let hop = format!("2001:db8:1:2::{i}");
        let answer = browser
            .get_with(&start(&proxied), &[("x-forwarded-for", &hop)])
            .await;
        assert_eq!(answer.status(), if i < 5 { 302 } else { 429 }, "{hop}");
    }
}

#[tokio::test]
async fn hostile_return_urls_are_refused_and_good_ones_work() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web_with(&platform, |c| {
        c.web.return_urls = vec!["https://shop.example.com/a".into()];
        c.web.start_per_client_per_min = 0;
    })
    .await;
    let other_port = format!("http://127.0.0.1:{}/demo", free_port());
    let hostile = [
        "https://evil.example/",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "\\\\evil.example/",
        "/\\/evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
        "\t//evil.example/",
        " //evil.example/",
        "/%5Cevil.example/",
        "/%5cevil.example/",
        "/%2F%2Fevil.example/",
        "/%2f/evil.example/",
        "/demo/..//evil.example/",
        "/./%2e%2e//evil.example",
        "https:evil.example",
        "https:/evil.example",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://shop.example.com/abc",
        "https://shop.example.com/",
        "https://shop.example.com",
        "https://shop.example.com.evil.com/a",
        "https://shop.example.com@evil.com/a",
        "https://user:pw@shop.example.com/a",
        "http://shop.example.com/a",
        "https://shop.example.com:8443/a",
        "https://shop.example.com/a/../b",
        "https://shop.example.com/a/%2e%2e/b",
        "https://shop.example.com/a%2fb",
        "https://shop.example.com/a\\..\\b",
        other_port.as_str(),
        "",
    ];
    let mut browser = Browser::new();
    let mut failures = Vec::new();
    for ret in hostile {
        let answer = browser
            .get(&format!(
                "{base}/oauth/{PLAIN_APP}/start?return={}",
                wxoa_wire::web::percent_encode(ret)
            ))
            .await;
        let status = answer.status().as_u16();
        if !(status == 400 || status == 403) || answer.headers().contains_key("location") {
            failures.push(format!("{ret:?} → {status}"));
        }
    }
    assert!(
        failures.is_empty(),
        "hostile returns let through: {failures:#?}"
    );

    // Good ones: this service (relative or absolute) and under the allowed prefix.
    let good = [
        ("/demo", format!("{base}/demo")),
        ("/demo?x=1&y=%2F#top", format!("{base}/demo?x=1&y=%2F#top")),
        ("/", format!("{base}/")),
        (&format!("{base}/demo"), format!("{base}/demo")),
        (
            "https://shop.example.com/a",
            "https://shop.example.com/a".into(),
        ),
        (
            "https://SHOP.example.com/a/b?c=d",
            "https://shop.example.com/a/b?c=d".into(),
        ),
        (
            "https://shop.example.com:443/a/",
            "https://shop.example.com/a/".into(),
        ),
    ];
    for (ret, expected) in good {
        let back = callback_url(&mut browser, &base, PLAIN_APP, ret).await;
        let done = browser.get(&back).await;
        assert_eq!(done.status(), 302, "{ret}");
        assert_eq!(location(&done), expected, "{ret}");
    }
}

#[tokio::test]
async fn the_callback_needs_the_browser_that_started_the_login() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web(&platform).await;
    // The attacker starts a login in their browser and captures the callback URL.
    let mut attacker = Browser::new();
    let captured = callback_url(&mut attacker, &base, PLAIN_APP, "/demo").await;

    // A victim's browser with no login cookie: refused, no session.
    let mut victim = Browser::new();
    let refused = victim.get(&captured).await;
    assert_eq!(refused.status(), 403);
    assert!(set_cookie(&refused, "wxoa_session").is_none());
    let error: Value = refused.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("browser"), "{message}");

    // A victim who started a login of their own: their cookie is for another state.
    let own = callback_url(&mut victim, &base, PLAIN_APP, "/demo").await;
    let refused = victim.get(&captured).await;
    assert_eq!(refused.status(), 403);
    assert!(set_cookie(&refused, "wxoa_session").is_none());
    // A forged cookie is no better.
    let mut forger = Browser::new();
    forger.jar.insert("wxoa_login".into(), "e30.AAAA".into());
    assert_eq!(forger.get(&captured).await.status(), 403);
    // The login cookie is for one app: the same state and cookie at another app's callback.
    let other_app = captured.replacen(
        &format!("/oauth/{PLAIN_APP}/"),
        &format!("/oauth/{SAFE_APP}/"),
        1,
    );
    assert_ne!(other_app, captured);
    let refused = attacker.get(&other_app).await;
    assert_eq!(refused.status(), 403, "{:?}", refused.text().await);
    // The victim's own login still works, and the refusals did not use the attacker's state.
    let done = victim.get(&own).await;
    assert_eq!(location(&done), format!("{base}/demo"));
    assert!(set_cookie(&done, "wxoa_session").is_some());
    let done = attacker.get(&captured).await;
    assert_eq!(location(&done), format!("{base}/demo"));
    assert!(set_cookie(&done, "wxoa_session").is_some());
}

#[tokio::test]
async fn a_state_is_used_once_under_concurrent_callbacks() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web(&platform).await;
    let mut browser = Browser::new();
    let callback = callback_url(&mut browser, &base, PLAIN_APP, "/demo").await;
    let cookie = format!("wxoa_login={}", browser.jar["wxoa_login"]);
    let tries = (0..8).map(|_| {
        let (http, callback, cookie) = (browser.http.clone(), callback.clone(), cookie.clone());
        tokio::spawn(async move {
            let answer = http
                .get(&callback)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (
                answer.status().as_u16(),
                set_cookie(&answer, "wxoa_session").is_some(),
            )
        })
    });
    let mut answers = Vec::new();
    for try_ in tries {
        answers.push(try_.await.unwrap());
    }
    answers.sort();
    let mut expected = vec![(302, true)];
    expected.extend([(400, false); 7]);
    expected.sort();
    assert_eq!(answers, expected);
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let platform = Platform::start(shared_config(), "", true).await;
    let public = "https://web.example.com";
    let base = web_with(&platform, |c| c.web.public_url = public.into()).await;
    let mut browser = Browser::new();
    let start = browser
        .get(&format!("{base}/oauth/{PLAIN_APP}/start?return=/demo"))
        .await;
    assert_eq!(start.status(), 302);
    let binding = set_cookie(&start, "wxoa_login").unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=600"] {
        assert!(binding.contains(attribute), "{attribute}: {binding}");
    }
    // The simulator sends the browser to the public URL; here it is the listener.
    let back = browser
        .get(location(&start).split('#').next().unwrap())
        .await;
    let callback = location(&back).replacen(public, &base, 1);
    let done = browser.get(&callback).await;
    assert_eq!(location(&done), format!("{public}/demo"));
    let session = set_cookie(&done, "wxoa_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }
    let cleared = set_cookie(&done, "wxoa_login").unwrap();
    assert!(
        cleared.contains("Secure") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn cors_headers_only_for_allowed_origins() {
    let platform = Platform::start(shared_config(), "", true).await;
    let base = web_with(&platform, |c| {
        c.web.allowed_origins = vec!["https://shop.example.com".into()];
    })
    .await;
    let http = reqwest::Client::new();
    let config = format!("{base}/jssdk/config?appid={SAFE_APP}&url=https://shop.example.com/p");
    let allowed = http
        .get(&config)
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let headers = allowed.headers();
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://shop.example.com")
    );
    assert!(
        headers.get_all("vary").iter().any(|v| v
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("origin")),
        "{headers:?}"
    );
    assert!(!headers.contains_key("access-control-allow-credentials"));
    let preflight = http
        .request(reqwest::Method::OPTIONS, &config)
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://shop.example.com")
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    // Other origins: no CORS headers (and 403), for the request and its preflight.
    for origin in [
        "https://evil.example",
        "https://shop.example.com.evil.example",
        "null",
    ] {
        let foreign = http
            .get(&config)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 403, "{origin}");
        assert!(
            !foreign
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let preflight = http
            .request(reqwest::Method::OPTIONS, &config)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(!preflight.status().is_success(), "{origin}");
        assert!(
            !preflight
                .headers()
                .contains_key("access-control-allow-origin")
        );
    }
    // Without an Origin (servers, same origin): served, no CORS headers needed.
    let plain = http.get(&config).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(!plain.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_web_service_refuses_to_start_without_a_session_secret() {
    let platform = Platform::start(shared_config(), "", false).await;
    let mut config = platform.config.clone();
    config.web.demo = false;
    let refused = wxoa_web::App::build(&config, Health::default()).await;
    let error = refused.err().expect("refused without web.session_secret");
    assert!(error.to_string().contains("web.session_secret"), "{error}");
    // A short secret is refused too: states are public, a short key can be searched offline.
    config.web.session_secret = "short-secret".to_owned().into();
    let short = wxoa_web::App::build(&config, Health::default()).await;
    let error = short.err().expect("refused with a 12-byte secret");
    assert!(error.to_string().contains("at least 32"), "{error}");
    // With a secret, or in the demo (`wxoa dev`), it starts.
    config.web.session_secret = "a-long-enough-test-session-secret".to_owned().into();
    assert!(
        wxoa_web::App::build(&config, Health::default())
            .await
            .is_ok()
    );
    config.web.session_secret = String::new().into();
    config.web.demo = true;
    assert!(
        wxoa_web::App::build(&config, Health::default())
            .await
            .is_ok()
    );
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
