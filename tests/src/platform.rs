//! [`Platform`]: the gateway, the simulator (as WeChat and its users) and, on demand, the token
//! service and repliers of one test, wired together in this process.

use std::time::Duration;

use serde_json::Value;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::shutdown::CancellationToken;

use crate::{AES_KEY, eventually};

/// Builds a worker `App` with the platform's config, runs it under a child of the platform's
/// shutdown token, waits until it is ready and returns that token.
macro_rules! start_worker {
    ($platform:expr, $app:path, $what:literal) => {{
        let (stop, health) = ($platform.shutdown.child_token(), Health::default());
        let app = <$app>::build(&$platform.config, health.clone())
            .await
            .expect($what);
        tokio::spawn(app.run(stop.clone()));
        ready(&health, $what).await;
        stop
    }};
}

/// One test's running platform; everything stops when it is dropped.
pub struct Platform {
    /// The config every service of the platform runs with (`wechat.api_base` is the simulator,
    /// `replier.rules_file` the rules given to [`Platform::start`]).
    pub config: Config,
    /// The simulator's base URL.
    pub sim_url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// Cancelled on drop.
    pub shutdown: CancellationToken,
    _rules: tempfile::NamedTempFile,
}

impl Platform {
    /// Starts the gateway and the simulator for `config`, with `rules` (TOML, may be empty) as
    /// the rules file; with `token`, also the token service, and waits until it has fetched a
    /// token for every app.
    pub async fn start(mut config: Config, rules: &str, token: bool) -> Platform {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), rules).expect("rules written");
        config.replier.rules_file = Some(file.path().to_owned());
        let shutdown = CancellationToken::new();
        let gateway = wxoa_gateway::App::build(&config, Health::default())
            .await
            .expect("gateway");
        config.sim.gateway_url = format!("http://{}", gateway.local_addr());
        let sim = wxoa_sim::Sim::build(&config).await.expect("sim");
        let sim_url = sim.base_url();
        config.wechat.api_base = sim_url.clone();
        config.wechat.open_base = sim_url.clone();
        config.web.listen = "127.0.0.1:0".parse().expect("an address");
        tokio::spawn(gateway.run(shutdown.clone()));
        tokio::spawn(sim.run(shutdown.clone()));
        let platform = Platform {
            config,
            sim_url,
            // Bounded: a request that hangs fails its test instead of stopping the run.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            shutdown,
            _rules: file,
        };
        if token {
            let service = wxoa_token::App::build(&platform.config, Health::default())
                .await
                .expect("token service");
            tokio::spawn(service.run(platform.shutdown.clone()));
            let filled = eventually(Duration::from_secs(10), || async {
                let stats = platform.get("/_sim/stats").await;
                platform
                    .config
                    .apps
                    .iter()
                    .all(|a| stats["calls"][&a.appid]["/cgi-bin/stable_token"].as_u64() >= Some(1))
                    .then_some(())
            })
            .await;
            assert!(filled.is_some(), "the token service fetched tokens");
        }
        platform
    }

    /// Starts a replier in this process and waits until it is ready; cancel the returned token
    /// to stop it.
    pub async fn replier(&self) -> CancellationToken {
        start_worker!(self, wxoa_replier::App, "replier")
    }

    /// Starts a broadcast worker in this process (see [`Platform::replier`]).
    pub async fn broadcast(&self) -> CancellationToken {
        start_worker!(self, wxoa_broadcast::App, "broadcast worker")
    }

    /// Starts a user-sync worker in this process (see [`Platform::replier`]).
    pub async fn usersync(&self) -> CancellationToken {
        start_worker!(self, wxoa_usersync::App, "usersync")
    }

    /// `GET <sim><path>` as JSON.
    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim_url))
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("JSON")
    }

    /// `POST <sim><path>` with a JSON body, as JSON.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.sim_url))
            .json(&body)
            .send()
            .await
            .expect("sim answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The simulator delivers a callback, as WeChat would, and checks the answer
    /// (`POST /_sim/send`).
    pub async fn send(&self, request: Value) -> Value {
        self.post("/_sim/send", request).await
    }

    /// What the user `openid` of `app` received, in order (`GET /_sim/messages`).
    pub async fn received(&self, app: &str, openid: &str) -> Vec<Value> {
        self.get(&format!("/_sim/messages?appid={app}&openid={openid}"))
            .await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A new NATS client.
    pub async fn nats(&self) -> async_nats::Client {
        async_nats::connect(&self.config.nats.url)
            .await
            .expect("nats")
    }

    /// Messages in the inbound stream.
    pub async fn stream_len(&self) -> u64 {
        let js = async_nats::jetstream::new(self.nats().await);
        let mut stream = js
            .get_stream(wxoa_wire::names::streams::inbound(self.prefix()))
            .await
            .expect("inbound stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// The operator API (`wxoa admin`) on a free port, taking bearer `token`; its base URL.
    pub async fn operator_api(&self, token: &str) -> String {
        let mut config = self.config.clone();
        config.api.listen = "127.0.0.1:0".parse().expect("an address");
        config.api.tokens = vec![token.to_owned().into()];
        let app = wxoa_admin::App::build(&config, Health::default())
            .await
            .expect("the operator API starts");
        let base = format!("http://{}", app.local_addr());
        tokio::spawn(app.run(self.shutdown.clone()));
        base
    }

    /// The subject prefix.
    pub fn prefix(&self) -> &str {
        &self.config.nats.prefix
    }

    /// The environment that gives a `wxoa` process this platform's config (no config file):
    /// connections, prefixes, the simulator as WeChat, the rules, the workers' settings and the apps (the harness apps: safe mode uses [`AES_KEY`]).
    pub fn env(&self) -> Vec<(String, String)> {
        use secrecy::ExposeSecret;
        let c = &self.config;
        let mut env = vec![
            ("NATS__URL", c.nats.url.clone()),
            ("NATS__PREFIX", c.nats.prefix.clone()),
            ("REDIS__URL", c.redis.url.expose_secret().to_owned()),
            ("REDIS__KEY_PREFIX", c.redis.key_prefix.clone()),
            ("WECHAT__API_BASE", c.wechat.api_base.clone()),
            ("REPLIER__ACK_WAIT_MS", c.replier.ack_wait_ms.to_string()),
            (
                "USERSYNC__CALLS_PER_SEC",
                c.usersync.calls_per_sec.to_string(),
            ),
            ("USERSYNC__LEASE_MS", c.usersync.lease_ms.to_string()),
            (
                "USERSYNC__CHECK_INTERVAL_MS",
                c.usersync.check_interval_ms.to_string(),
            ),
        ];
        if let Some(rules) = &c.replier.rules_file {
            env.push(("REPLIER__RULES_FILE", rules.display().to_string()));
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (format!("{}{k}", wxoa_runtime::config::ENV_PREFIX), v))
            .collect();
        for (i, app) in c.apps.iter().enumerate() {
            let key = |name: &str| format!("{}APPS__{i}__{name}", wxoa_runtime::config::ENV_PREFIX);
            env.push((key("APPID"), app.appid.clone()));
            env.push((key("SECRET"), app.secret.expose_secret().to_owned()));
            env.push((key("TOKEN"), app.token.expose_secret().to_owned()));
            env.push((key("ORIGINAL_ID"), app.original_id.clone()));
            env.push((key("VERIFIED"), app.verified.to_string()));
            if app.aes_key.is_some() {
                env.push((key("ENCODING_AES_KEY"), AES_KEY.to_owned()));
            }
        }
        env
    }
}

/// Waits until `health` reports ready.
async fn ready(health: &Health, what: &str) {
    let ready = eventually(Duration::from_secs(10), || async {
        health.ready().await.ok()
    })
    .await;
    assert!(ready.is_some(), "the {what} became ready");
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
