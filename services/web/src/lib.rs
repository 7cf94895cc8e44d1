//! The public web service (`wxoa web`): OAuth2 web authorization and JS-SDK configs for pages
//! opened inside WeChat. Public-facing and separate from the admin API.
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth/<appid>/start?scope=snsapi_base\|snsapi_userinfo&return=<url>` | 302 to WeChat's authorize page with a signed, single-use `state`, and the `wxoa_login` cookie binding it to this browser; `return` must resolve (as a browser resolves it) to this service or under `web.return_urls`; limited per client and per app |
//! | `GET /oauth/<appid>/callback?code&state` | checks the state and the browser's `wxoa_login` cookie, uses the state once, exchanges the code (once), fetches the profile for `snsapi_userinfo`, sets the `wxoa_session` cookie (a signed token) and 302s to `return`; on failure 302s to `return` with `wxoa_error=<code>` |
//! | `GET /oauth/me` | the session's user (cookie or `Authorization: Bearer <token>`), with the token |
//! | `POST /oauth/refresh` | refreshes the session user's web access_token |
//! | `GET /jssdk/config?appid&url&apis=a,b` | `{appId, timestamp, nonceStr, signature, jsApiList}` from the jsapi_ticket the token service keeps in Redis (the URL's fragment removed, its query kept); browser origins limited to `web.allowed_origins`, which get CORS headers (`OPTIONS` answers the preflight) |
//! | `GET /demo`, `GET /demo/check` | the demo page (`web.demo`) and its signature check against the simulator |

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::connect::RedisConn;
use wxoa_wechat::WechatClient;

mod error;
mod guard;
pub mod jssdk;
pub mod oauth;
pub mod sign;

pub use error::WebError;

/// The shortest `web.session_secret` accepted: it keys the HMAC of states anyone can read.
pub const MIN_SECRET_BYTES: usize = 32;

/// The session cookie.
pub const COOKIE: &str = "wxoa_session";

/// What every handler shares.
pub(crate) struct Shared {
    config: Config,
    redis: RedisConn,
    wechat: WechatClient,
    http: reqwest::Client,
    signer: sign::Signer,
    public_url: String,
    /// Where OAuth2 may send users back.
    returns: guard::ReturnPolicy,
    /// Origins that get CORS headers (`web.allowed_origins` and this service's).
    origins: Vec<String>,
    /// `web.trusted_proxies`.
    proxies: Vec<guard::Cidr>,
    /// `/start`s per client per minute.
    start_limit: guard::StartLimit,
    /// Cookies get `Secure` (`public_url` is https).
    secure: bool,
    /// The login cookie's `Path`: `<public_url path>/oauth/`.
    login_path: String,
    no_peer_logged: AtomicBool,
    /// The warning that `web.max_pending_per_app` was reached.
    cap_logged: wxoa_runtime::telemetry::OncePerMinute,
}

impl Shared {
    /// The listener gave a request no peer address: the per-client limit cannot count it
    /// (logged once; `web.max_pending_per_app` still holds).
    fn no_peer_address(&self) {
        if self.config.web.start_per_client_per_min > 0
            && !self.no_peer_logged.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                "the listener gives no peer address (ConnectInfo): web.start_per_client_per_min cannot be applied"
            );
        }
    }
}

/// The web service, bound and not yet serving.
pub struct App {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    health: Health,
}

impl App {
    /// Checks `[web]`, binds `web.listen` and connects to NATS and Redis. Without
    /// `web.session_secret` it refuses to start unless `web.demo` is on: replicas with random
    /// keys would refuse each other's states and sessions.
    pub async fn build(config: &Config, health: Health) -> Result<App, WebError> {
        let web = &config.web;
        if web.session_secret.expose_secret().is_empty() {
            if !web.demo {
                return Err(WebError::Config(
                    "web.session_secret is empty: set one (the same on every replica; it signs states, login cookies and sessions). Only the demo (web.demo, as wxoa dev runs it) may run with a random key".into(),
                ));
            }
            tracing::warn!(
                "web.session_secret is empty: a random key for this process (demo only; sessions end with it)"
            );
        }
        let secret_len = web.session_secret.expose_secret().len();
        if (1..MIN_SECRET_BYTES).contains(&secret_len) {
            // Every state is public (in the authorize URL, with its MAC): a short key can be
            // searched offline, and with it any session forged.
            return Err(WebError::Config(format!(
                "web.session_secret is {secret_len} bytes: use at least {MIN_SECRET_BYTES} random \
                 bytes (e.g. `openssl rand -hex 32`)"
            )));
        }
        if web.max_pending_per_app == 0 {
            return Err(WebError::Config(
                "web.max_pending_per_app is 0: no login could start".into(),
            ));
        }
        let proxies = web
            .trusted_proxies
            .iter()
            .map(|p| guard::Cidr::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(WebError::Config)?;
        let listener = wxoa_runtime::serve::bind(web.listen)?;
        let addr = listener.local_addr()?;
        let public_url = if web.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            web.public_url.trim_end_matches('/').to_owned()
        };
        let returns = guard::ReturnPolicy::new(&public_url, &web.return_urls, web.max_return_len)
            .map_err(WebError::Config)?;
        let origins =
            guard::origins(&public_url, &web.allowed_origins).map_err(WebError::Config)?;
        let parsed = reqwest::Url::parse(&public_url)
            .map_err(|e| WebError::Config(format!("web.public_url {public_url:?}: {e}")))?;
        let public_path = parsed.path().trim_end_matches('/').to_owned();
        let (nats, redis) = wxoa_runtime::connect::watched(config, "wxoa-web", &health).await?;
        tracing::info!(%addr, public_url, "web service listening");
        let shared = Shared {
            wechat: WechatClient::new(config, redis.clone(), nats, &health),
            http: wxoa_wechat::http_client(&config.wechat),
            signer: sign::Signer::new(web.session_secret.expose_secret()),
            config: config.clone(),
            redis,
            secure: parsed.scheme() == "https",
            login_path: format!("{public_path}/oauth/"),
            public_url,
            returns,
            origins,
            proxies,
            start_limit: guard::StartLimit::new(web.start_per_client_per_min),
            no_peer_logged: AtomicBool::new(false),
            cap_logged: wxoa_runtime::telemetry::OncePerMinute::new(),
        };
        Ok(App {
            shared: Arc::new(shared),
            listener,
            health,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WebError> {
        let App {
            shared,
            listener,
            health,
        } = self;
        let mut router = Router::new()
            .route("/oauth/{appid}/start", get(oauth::start))
            .route("/oauth/{appid}/callback", get(oauth::callback))
            .route("/oauth/me", get(oauth::me))
            .route("/oauth/refresh", post(oauth::refresh))
            .route(
                "/jssdk/config",
                get(jssdk::config).options(jssdk::preflight),
            );
        if shared.config.web.demo {
            router = router
                .route("/demo", get(jssdk::demo))
                .route("/demo/check", get(jssdk::check));
        }
        wxoa_runtime::serve::serve(
            listener,
            shared.config.web.limits,
            router.with_state(shared),
            "web",
            health.clone(),
            async move {
                shutdown.cancelled().await;
                health.stopping();
            },
        )
        .await?;
        Ok(())
    }
}
