//! The public web service (`wxoa web`): OAuth2 web authorization and JS-SDK configs for pages
//! opened inside WeChat. Public-facing and separate from the admin API.
//!
//! | route | what |
//! |---|---|
//! | `GET /oauth/<appid>/start?scope=snsapi_base\|snsapi_userinfo&return=<url>` | 302 to WeChat's authorize page with a signed, single-use `state`; `return` must be a path here or under `web.return_urls` |
//! | `GET /oauth/<appid>/callback?code&state` | checks the state, exchanges the code (once), fetches the profile for `snsapi_userinfo`, sets the `wxoa_session` cookie (a signed token) and 302s to `return`; on failure 302s to `return` with `wxoa_error=<code>` |
//! | `GET /oauth/me` | the session's user (cookie or `Authorization: Bearer <token>`), with the token |
//! | `POST /oauth/refresh` | refreshes the session user's web access_token |
//! | `GET /jssdk/config?appid&url&apis=a,b` | `{appId, timestamp, nonceStr, signature, jsApiList}` from the jsapi_ticket the token service keeps in Redis (the URL's fragment removed, its query kept); browser origins limited to `web.allowed_origins` |
//! | `GET /demo`, `GET /demo/check` | the demo page (`web.demo`) and its signature check against the simulator |

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::connect::RedisConn;
use wxoa_wechat::WechatClient;

mod error;
pub mod jssdk;
pub mod oauth;
pub mod sign;

pub use error::WebError;

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
}

/// The web service, bound and not yet serving.
pub struct App {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    health: Health,
}

impl App {
    /// Connects to NATS and Redis and binds `web.listen`.
    pub async fn build(config: &Config, health: Health) -> Result<App, WebError> {
        let (nats, redis) = wxoa_runtime::connect::watched(config, "wxoa-web", &health).await?;
        let listener = tokio::net::TcpListener::bind(config.web.listen).await?;
        let addr = listener.local_addr()?;
        let public_url = if config.web.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.web.public_url.trim_end_matches('/').to_owned()
        };
        tracing::info!(%addr, public_url, "web service listening");
        let shared = Shared {
            wechat: WechatClient::new(config, redis.clone(), nats, &health),
            http: wxoa_wechat::http_client(&config.wechat),
            signer: sign::Signer::new(config.web.session_secret.expose_secret()),
            config: config.clone(),
            redis,
            public_url,
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
            .route("/jssdk/config", get(jssdk::config));
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
