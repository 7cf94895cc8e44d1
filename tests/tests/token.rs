//! The token service and the WeChat client end to end: real NATS, real Redis, the simulator as
//! WeChat.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::shutdown::CancellationToken;
use wxoa_tests::{PLAIN_APP, SAFE_APP, eventually, shared_config};
use wxoa_wechat::WechatClient;
use wxoa_wire::names::{keys, subjects};
use wxoa_wire::token::{
    InvalidateRequest, InvalidateResponse, InvalidateStatus, RefreshedNotice, TokenKind,
    fingerprint,
};

const WAIT: Duration = Duration::from_secs(15);
const APPS: [&str; 2] = [PLAIN_APP, SAFE_APP];
const STABLE: &str = "/cgi-bin/stable_token";
const FORCE: &str = "/cgi-bin/stable_token#force";
const TICKET: &str = "/cgi-bin/ticket/getticket";
const CALLBACK_IP: &str = "/cgi-bin/getcallbackip";

/// One test's world: a config pointing at its own simulator, and handles to poke at things.
struct World {
    config: Config,
    sim: String,
    http: reqwest::Client,
    redis: wxoa_runtime::connect::RedisConn,
    nats: async_nats::Client,
    shutdown: CancellationToken,
}

impl World {
    async fn new() -> World {
        World::with_config(shared_config()).await
    }

    /// The same world with its Redis keys in a Redis Cluster of three masters.
    async fn on_cluster(cluster: &wxoa_tests::RedisCluster) -> World {
        let mut config = shared_config();
        config.redis.url = cluster.url().into();
        config.redis.cluster = true;
        World::with_config(config).await
    }

    async fn with_config(mut config: Config) -> World {
        let sim = wxoa_sim::Sim::build(&config).await.expect("sim binds");
        let base = sim.base_url();
        let shutdown = CancellationToken::new();
        tokio::spawn(sim.run(shutdown.clone()));
        config.wechat.api_base = base.clone();
        let redis = wxoa_runtime::connect::redis(&config.redis)
            .await
            .expect("redis");
        let nats = wxoa_runtime::connect::nats(&config.nats, "token-test")
            .await
            .expect("nats");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        World {
            config,
            sim: base,
            http,
            redis,
            nats,
            shutdown,
        }
    }

    /// Starts one token-service replica; its Health shows its metrics.
    async fn token_service(&self) -> Health {
        let health = Health::default();
        let app = wxoa_token::App::build(&self.config, health.clone())
            .await
            .expect("token service builds");
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = app.run(shutdown).await {
                panic!("token service failed: {e}");
            }
        });
        health
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_sim/stats", self.sim))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON")
    }

    async fn calls(&self, app: &str, api: &str) -> u64 {
        self.stats().await["calls"][app][api].as_u64().unwrap_or(0)
    }

    async fn sim_post(&self, path: &str, body: Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.sim))
            .json(&body)
            .send()
            .await
            .expect("sim control");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    fn key(&self, app: &str, kind: TokenKind) -> String {
        match kind {
            TokenKind::AccessToken => keys::access_token(&self.config.redis.key_prefix, app),
            TokenKind::JsapiTicket => keys::jsapi_ticket(&self.config.redis.key_prefix, app),
        }
    }

    /// The value and PTTL of a credential.
    async fn read(&self, app: &str, kind: TokenKind) -> (Option<String>, i64) {
        let key = self.key(app, kind);
        redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut self.redis.clone())
            .await
            .expect("redis read")
    }

    /// Waits until both credentials of every app are in Redis; returns the access tokens.
    async fn filled(&self) -> HashMap<String, String> {
        eventually(WAIT, || async {
            let mut tokens = HashMap::new();
            for app in APPS {
                let (token, _) = self.read(app, TokenKind::AccessToken).await;
                let (ticket, _) = self.read(app, TokenKind::JsapiTicket).await;
                ticket?;
                tokens.insert(app.to_owned(), token?);
            }
            Some(tokens)
        })
        .await
        .expect("the token service fills Redis")
    }

    async fn invalidate(&self, app: &str, kind: TokenKind, rejected: &str) -> InvalidateResponse {
        let request = InvalidateRequest {
            kind,
            fingerprint: fingerprint(rejected),
        };
        let answer = self
            .nats
            .send_request(
                subjects::token_invalidate(&self.config.nats.prefix, app),
                async_nats::Request::new()
                    .payload(serde_json::to_vec(&request).unwrap().into())
                    .timeout(Some(Duration::from_secs(20))),
            )
            .await
            .expect("the token service answers");
        serde_json::from_slice(&answer.payload).expect("an InvalidateResponse")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The sum of a counter over all its labels (matching `filter`) in a Health's metrics.
async fn counter(health: &Health, name: &str, filter: &str) -> u64 {
    health
        .render_metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn fills_redis_for_every_app_and_announces_it() {
    let world = World::new().await;
    let mut notices = world
        .nats
        .subscribe(subjects::token_refreshed_all(&world.config.nats.prefix))
        .await
        .unwrap();
    world.nats.flush().await.unwrap();
    let health = world.token_service().await;

    world.filled().await;
    let ttl_max = 7200 * 1000;
    for app in APPS {
        for kind in [TokenKind::AccessToken, TokenKind::JsapiTicket] {
            let (value, pttl) = world.read(app, kind).await;
            assert!(value.is_some_and(|v| !v.is_empty()), "{app} {kind}");
            assert!(
                pttl > 600_000 && pttl < ttl_max,
                "{app} {kind}: PTTL {pttl} is shorter than expires_in"
            );
        }
    }

    // One notice per credential, naming it by fingerprint only.
    let mut seen = HashMap::new();
    while seen.len() < 4 {
        let message = tokio::time::timeout(WAIT, notices.next())
            .await
            .expect("a notice")
            .expect("open");
        let text = String::from_utf8(message.payload.to_vec()).unwrap();
        let notice: RefreshedNotice = serde_json::from_str(&text).unwrap();
        assert_eq!(
            message.subject.as_str(),
            subjects::token_refreshed(&world.config.nats.prefix, &notice.app_id)
        );
        let (value, _) = world.read(&notice.app_id, notice.kind).await;
        let value = value.unwrap();
        assert_eq!(notice.fingerprint, fingerprint(&value));
        assert!(!text.contains(&value), "a notice never carries the token");
        assert!(notice.expires_at_ms > wxoa_runtime::now_ms());
        seen.insert((notice.app_id.clone(), notice.kind), notice);
    }
    eventually(WAIT, || async { health.ready().await.ok() })
        .await
        .expect("ready after subscribing");
}

#[tokio::test]
async fn two_replicas_make_exactly_one_upstream_call_per_app() {
    let world = World::new().await;
    // Slow token answers widen the window in which both replicas find the keys missing.
    world
        .sim_post(
            "/_sim/faults",
            json!({"api": STABLE, "latency_ms": 300, "times": 2}),
        )
        .await;
    let (a, b) = tokio::join!(world.token_service(), world.token_service());
    world.filled().await;
    // Both replicas keep checking (every 200 ms) and find nothing to do.
    eventually(WAIT, || async {
        let fresh = "outcome=\"fresh\"";
        let a = counter(&a, "wxoa_token_check_total", fresh).await;
        let b = counter(&b, "wxoa_token_check_total", fresh).await;
        (a >= 10 && b >= 10).then_some(())
    })
    .await
    .expect("both replicas keep checking");
    let stats = world.stats().await;
    for app in APPS {
        assert_eq!(stats["calls"][app][STABLE], 1, "{app}: {stats}");
        assert_eq!(stats["calls"][app][TICKET], 1, "{app}: {stats}");
        assert!(stats["calls"][app].get(FORCE).is_none(), "{app}: {stats}");
    }
    let busy = counter(&a, "wxoa_token_check_total", "outcome=\"busy\"").await
        + counter(&b, "wxoa_token_check_total", "outcome=\"busy\"").await;
    let refreshed = counter(&a, "wxoa_token_check_total", "outcome=\"refreshed\"").await
        + counter(&b, "wxoa_token_check_total", "outcome=\"refreshed\"").await;
    assert!(
        refreshed >= 2,
        "each app was refreshed by someone ({refreshed})"
    );
    assert!(busy + refreshed >= 2, "busy {busy}, refreshed {refreshed}");
}

#[tokio::test]
async fn an_invalidation_storm_costs_one_forced_refresh() {
    invalidation_storm(World::new().await).await;
}

#[tokio::test]
async fn redis_cluster_storm_and_client_recovery() {
    let cluster = wxoa_tests::RedisCluster::start();
    invalidation_storm(World::on_cluster(&cluster).await).await;
    client_recovery(World::on_cluster(&cluster).await).await;
}

async fn invalidation_storm(world: World) {
    let _a = world.token_service().await;
    let _b = world.token_service().await;
    let before = world.filled().await;
    let old = &before[PLAIN_APP];

    let answers = futures::future::join_all(
        (0..100).map(|_| world.invalidate(PLAIN_APP, TokenKind::AccessToken, old)),
    )
    .await;
    assert_eq!(answers.len(), 100);
    let refreshed = answers
        .iter()
        .filter(|a| a.status == InvalidateStatus::Refreshed)
        .count();
    let already = answers
        .iter()
        .filter(|a| a.status == InvalidateStatus::AlreadyRefreshed)
        .count();
    assert_eq!((refreshed, already), (1, 99), "{answers:?}");

    assert_eq!(world.calls(PLAIN_APP, FORCE).await, 1);
    let (new, _) = world.read(PLAIN_APP, TokenKind::AccessToken).await;
    let new = new.expect("a token");
    assert_ne!(&new, old, "the token in Redis was replaced");
    assert_eq!(
        world
            .read(SAFE_APP, TokenKind::AccessToken)
            .await
            .0
            .as_ref(),
        Some(&before[SAFE_APP])
    );

    // The rejected token again: someone already replaced it, WeChat is not asked.
    let again = world
        .invalidate(PLAIN_APP, TokenKind::AccessToken, old)
        .await;
    assert_eq!(again.status, InvalidateStatus::AlreadyRefreshed);
    // The new one right away: within force_refresh_min_interval_secs, so throttled, and kept.
    let throttled = world
        .invalidate(PLAIN_APP, TokenKind::AccessToken, &new)
        .await;
    assert_eq!(
        throttled.status,
        InvalidateStatus::Throttled,
        "{throttled:?}"
    );
    assert!(throttled.error.is_some());
    assert_eq!(world.calls(PLAIN_APP, FORCE).await, 1);
    assert_eq!(
        world.read(PLAIN_APP, TokenKind::AccessToken).await.0,
        Some(new)
    );

    // A ticket invalidation refetches the ticket (no force budget involved).
    let (ticket, _) = world.read(PLAIN_APP, TokenKind::JsapiTicket).await;
    let tickets_before = world.calls(PLAIN_APP, TICKET).await;
    let answer = world
        .invalidate(PLAIN_APP, TokenKind::JsapiTicket, &ticket.unwrap())
        .await;
    assert_eq!(answer.status, InvalidateStatus::Refreshed, "{answer:?}");
    assert_eq!(world.calls(PLAIN_APP, TICKET).await, tickets_before + 1);
}

#[tokio::test]
async fn the_client_recovers_from_a_revoked_token_with_one_retry() {
    client_recovery(World::new().await).await;
}

async fn client_recovery(world: World) {
    let _service = world.token_service().await;
    let before = world.filled().await;
    let client = WechatClient::new(
        &world.config,
        world.redis.clone(),
        world.nats.clone(),
        &Default::default(),
    );
    eventually(WAIT, || async { client.is_listening().then_some(()) })
        .await
        .expect("listening");

    let ips = client.callback_ips(PLAIN_APP).await.expect("callback_ips");
    assert!(!ips.is_empty());
    assert_eq!(
        client.access_token(PLAIN_APP).await.unwrap(),
        before[PLAIN_APP]
    );

    world
        .sim_post("/_sim/revoke", json!({"appid": PLAIN_APP}))
        .await;
    let ips = client
        .callback_ips(PLAIN_APP)
        .await
        .expect("callback_ips after revoke");
    assert!(!ips.is_empty());
    // First call, the rejected call, the retry; one forced refresh in between.
    assert_eq!(world.calls(PLAIN_APP, CALLBACK_IP).await, 3);
    assert_eq!(world.calls(PLAIN_APP, FORCE).await, 1);
    let now = client.access_token(PLAIN_APP).await.unwrap();
    assert_ne!(now, before[PLAIN_APP]);
    assert_eq!(
        world.read(PLAIN_APP, TokenKind::AccessToken).await.0,
        Some(now)
    );

    // Every HTTP call was counted for the day.
    let day = wxoa_wire::envelope::utc_day(wxoa_runtime::now_ms());
    let key = keys::api_calls(&world.config.redis.key_prefix, PLAIN_APP, &day);
    let (count, ttl): (Option<u64>, i64) = redis::pipe()
        .cmd("HGET")
        .arg(&key)
        .arg("/cgi-bin/getcallbackip")
        .cmd("TTL")
        .arg(&key)
        .query_async(&mut world.redis.clone())
        .await
        .unwrap();
    assert_eq!(count, Some(3));
    assert!(ttl > 24 * 3600, "{ttl}");

    // Typed errors: an app outside the config.
    assert!(matches!(
        client.callback_ips("wxnotconfigured").await,
        Err(wxoa_wechat::WechatError::UnknownApp(_))
    ));
}

#[tokio::test]
async fn a_failing_refresh_keeps_the_old_token_and_retries_next_tick() {
    let world = World::new().await;
    let _service = world.token_service().await;
    let before = world.filled().await;
    let calls_before: HashMap<&str, u64> = {
        let stats = world.stats().await;
        APPS.iter()
            .map(|app| (*app, stats["calls"][app][STABLE].as_u64().unwrap()))
            .collect()
    };
    // WeChat is busy (-1) three times for one app, down (HTTP 503) three times for the other.
    world
        .sim_post(
            "/_sim/faults",
            json!({"appid": PLAIN_APP, "api": STABLE, "errcode": -1, "times": 3}),
        )
        .await;
    world
        .sim_post(
            "/_sim/faults",
            json!({"appid": SAFE_APP, "api": STABLE, "http_status": 503, "times": 3}),
        )
        .await;
    // Both tokens are now due (PTTL under refresh_ahead_secs = 600 s).
    for app in APPS {
        let _: () = redis::cmd("PEXPIRE")
            .arg(world.key(app, TokenKind::AccessToken))
            .arg(60_000)
            .query_async(&mut world.redis.clone())
            .await
            .unwrap();
    }
    for app in APPS {
        eventually(WAIT, || async {
            let (value, pttl) = world.read(app, TokenKind::AccessToken).await;
            // Never lost while WeChat fails.
            assert_eq!(value.as_ref(), Some(&before[app]), "{app} keeps its token");
            (pttl > 600_000).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{app} is refreshed once WeChat answers"));
        // Three failures, then the call that worked.
        assert_eq!(
            world.calls(app, STABLE).await,
            calls_before[app] + 4,
            "{app}"
        );
    }
    assert_eq!(world.calls(PLAIN_APP, FORCE).await, 0);
}

#[tokio::test]
async fn classic_apps_get_a_new_token_per_invalidation_and_the_service_stops_cleanly() {
    let mut world = World::new().await;
    world.config.apps[0].token_api = wxoa_runtime::config::TokenApi::Classic;
    let classic = world.config.apps[0].appid.clone();
    let stop = CancellationToken::new();
    let health = Health::default();
    let app = wxoa_token::App::build(&world.config, health.clone())
        .await
        .unwrap();
    let running = tokio::spawn(app.run(stop.clone()));
    let before = world.filled().await;
    assert_eq!(world.calls(&classic, "/cgi-bin/token").await, 1);
    assert_eq!(world.calls(&classic, STABLE).await, 0);

    let answer = world
        .invalidate(&classic, TokenKind::AccessToken, &before[&classic])
        .await;
    assert_eq!(answer.status, InvalidateStatus::Refreshed, "{answer:?}");
    assert_eq!(world.calls(&classic, "/cgi-bin/token").await, 2);
    assert_ne!(
        world
            .read(&classic, TokenKind::AccessToken)
            .await
            .0
            .as_ref(),
        Some(&before[&classic])
    );

    // Unknown apps and bad requests are answered, not dropped.
    let answer = world
        .invalidate("wxnotconfigured", TokenKind::AccessToken, "x")
        .await;
    assert_eq!(answer.status, InvalidateStatus::Failed);

    eventually(WAIT, || async { health.ready().await.ok() })
        .await
        .expect("ready");
    stop.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("stops within the grace period")
        .unwrap()
        .expect("a clean stop");
    assert!(health.ready().await.is_err(), "not ready once stopping");
}
