//! The WeChat simulator: a real HTTP server that stands in for `api.weixin.qq.com`, and the
//! platform side that sends signed (optionally encrypted) callbacks to the gateway and checks
//! the replies the way WeChat does.
//!
//! What it does:
//! - The token APIs with WeChat's invalidation rules: `cgi-bin/token` (every call issues a new
//!   token, the previous one lives on for `sim.token_overlap_secs`), `cgi-bin/stable_token` (the
//!   same token while valid; `force_refresh` replaces it at once, at most
//!   [`FORCE_REFRESH_DAILY_LIMIT`] times a day and [`FORCE_REFRESH_MIN_GAP_SECS`] apart), the
//!   jsapi/wx_card ticket, and the IP-list APIs. Every token-checked API answers 41001 (missing),
//!   40001 (unknown, replaced or revoked) and 42001 (expired) as WeChat does.
//! - The control API under `/_sim/` ([`paths`]): call counters, token revocation, fault
//!   injection (latency, HTTP 5xx, any errcode such as -1 or 45009), a clock that can be moved
//!   forward, and `/_sim/send`, which runs [`callback::send`] against the gateway.
//! - [`callback`]: the platform side on its own (no server needed), used by `wxoa sim send`:
//!   builds the message XML, signs it, encrypts it in compatible and safe mode, POSTs it with
//!   WeChat's timeout and retries and judges the passive reply.
//!
//! - Customer-service messages (`message/custom/send`, `custom/typing`) with the 48 h / 1 min
//!   window WeChat opens on user interactions (recorded from `/_sim/send` or
//!   `/_sim/interactions`), and `/_sim/messages`: what each user received (customer-service
//!   sends and passive replies).
//!
//! - Users, tags, remarks and the blacklist (`user/get`, `user/info`, `tags/*`, ...) over a
//!   follower model that stays cheap at millions: `/_sim/users/generate` adds N generated
//!   followers in O(1) (openid [`generated_openid`], data derived from the index), `subscribe`
//!   and `unsubscribe` callbacks sent through `/_sim/send` add and remove followers, and
//!   `/_sim/users` answers a [`follower_digest`] so a client can check its copy.
//!
//! - Mass sends (`media/uploadnews`, `message/mass/*`) with WeChat's limits (2..=10 000
//!   openids, `clientmsgid` de-duplication, one send a day for subscription accounts, 4 a month
//!   per user for service accounts) and the `MASSSENDJOBFINISH` callback after a delay
//!   (`/_sim/mass`, `/_sim/mass/settings`).
//! - Template messages (`template/*`, `message/template/send`): 25 templates, service accounts
//!   only, `client_msg_id` de-duplication, a daily quota, records (`/_sim/templates`) and
//!   optional `TEMPLATESENDJOBFINISH` callbacks (`/_sim/template/settings`).
//!
//! - Web authorization (`/connect/oauth2/authorize` with a consent page for
//!   `snsapi_userinfo`, `sns/oauth2/*`, `sns/userinfo`, `sns/auth`) with single-use 5-minute
//!   codes and web tokens apart from the account's, and `/_sim/jssdk/verify`, which checks a
//!   `wx.config` signature against the jsapi_ticket the simulator hands out.
//!
//! - Custom menus (`menu/*`, `get_current_selfmenu_info`, conditional menus and `trymatch`)
//!   with WeChat's button rules; QR codes (`qrcode/create`, `showqrcode` answering a PNG,
//!   `/_sim/qrcodes`); quotas: every call is counted per app, path and China day,
//!   `openapi/quota/get` reports it against WeChat's daily limits, token-checked APIs with a
//!   listed (or `/_sim/quota/settings`) limit answer 45009 past it, and `clear_quota` resets the
//!   day's counters 10 times a month.
//!
//! - Material (`media/upload`, `media/get`, `media/uploadimg`, `material/*`) kept in memory with
//!   its bytes, checked by extension and magic bytes and sized per kind as WeChat does
//!   (temporary files live 3 days on the sim clock; URLs under `/_sim/mmbiz/`,
//!   `/_sim/material` lists them); drafts (`draft/*`) whose covers must be permanent images;
//!   publishing (`freepublish/*`): a draft published after the mass finish delay, its
//!   `PUBLISHJOBFINISH` callback, failures set with `/_sim/publish`; article comments
//!   (`comment/*`) on published articles and on articles that `/_sim/comments` creates.
//!
//! What it does not do: the other REST APIs (old news material `material/add_news`, ...)
//! answer 48001 until they are simulated; there is no IP allow-list, no
//! per-minute quota, no persistence (a restart forgets every token and file) and no HTTPS.
//!
//! # Layout
//! - [`Sim`]: bind, then [`Sim::run`] until cancelled.
//! - [`paths`]: every route it serves.
//! - [`callback`]: the platform side.
//! - [`SimError`]: every failure, mapped to an HTTP response in one place.

#![warn(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

pub mod callback;
mod comments;
mod control;
mod drafts;
mod followers;
mod freepublish;
mod mass;
mod material;
mod menus;
mod oauth;
pub mod paths;
mod qrcodes;
mod quota;
mod rest;
mod state;
mod templates;
#[cfg(test)]
mod tests;
mod users;

pub use followers::{
    GENERATED_OPENID_PREFIX, GENERATED_SCENES, GENERATED_SUBSCRIBE_BASE, GENERATED_UNIONID_PREFIX,
    fnv1a64, follower_digest, generated_openid,
};
pub use state::{FORCE_REFRESH_DAILY_LIMIT, FORCE_REFRESH_MIN_GAP_SECS};

/// The simulator: built and bound to its listen address, not yet serving.
pub struct Sim {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    shared: Arc<state::Shared>,
}

impl Sim {
    /// Binds `config.sim.listen` (port 0 picks a free port) and prepares the apps of
    /// `config.apps`.
    pub async fn build(config: &wxoa_runtime::Config) -> Result<Sim, SimError> {
        let addr = config.sim.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        let shared = Arc::new(state::Shared::new(
            config.sim.clone(),
            config.apps.clone(),
            http,
        ));
        Ok(Sim {
            listener,
            addr,
            shared,
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients use in place of `https://api.weixin.qq.com`, e.g.
    /// `http://127.0.0.1:9100` (a wildcard listen address becomes loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Serves the REST and control APIs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SimError> {
        let app = routes(self.shared);
        tracing::info!(addr = %self.addr, "wechat simulator listening");
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(SimError::Serve)
    }
}

fn routes(shared: Arc<state::Shared>) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    // Uploads may be larger than axum's default 2 MB body limit.
    let upload_limit = DefaultBodyLimit::max(material::UPLOAD_BODY_LIMIT);
    axum::Router::new()
        .route(paths::TOKEN, get(rest::token))
        .route(paths::STABLE_TOKEN, post(rest::stable_token))
        .route(paths::TICKET, get(rest::ticket))
        .route(paths::CALLBACK_IP, get(rest::callback_ip))
        .route(paths::API_DOMAIN_IP, get(rest::api_domain_ip))
        .route(paths::CUSTOM_SEND, post(rest::custom_send))
        .route(paths::CUSTOM_TYPING, post(rest::custom_typing))
        .route(paths::USER_GET, get(users::user_get))
        .route(paths::USER_INFO, get(users::user_info))
        .route(paths::USER_INFO_BATCHGET, post(users::user_batchget))
        .route(paths::USER_REMARK, post(users::user_remark))
        .route(paths::TAGS_CREATE, post(users::tags_create))
        .route(paths::TAGS_GET, get(users::tags_get))
        .route(paths::TAGS_UPDATE, post(users::tags_update))
        .route(paths::TAGS_DELETE, post(users::tags_delete))
        .route(paths::TAG_USERS, post(users::tag_users))
        .route(paths::TAGS_BATCH_TAG, post(users::tags_batch_tag))
        .route(paths::TAGS_BATCH_UNTAG, post(users::tags_batch_untag))
        .route(paths::TAGS_ID_LIST, post(users::tags_id_list))
        .route(paths::BLACKLIST_GET, post(users::blacklist_get))
        .route(paths::BLACKLIST_ADD, post(users::blacklist_add))
        .route(paths::BLACKLIST_REMOVE, post(users::blacklist_remove))
        .route(paths::UPLOAD_NEWS, post(mass::upload_news))
        .route(paths::MASS_SENDALL, post(mass::sendall))
        .route(paths::MASS_SEND, post(mass::send))
        .route(paths::MASS_PREVIEW, post(mass::preview))
        .route(paths::MASS_DELETE, post(mass::delete))
        .route(paths::MASS_GET, post(mass::get))
        .route(paths::MASS_SPEED_GET, post(mass::speed_get))
        .route(paths::MASS_SPEED_SET, post(mass::speed_set))
        .route(paths::TEMPLATE_SET_INDUSTRY, post(templates::set_industry))
        .route(paths::TEMPLATE_GET_INDUSTRY, get(templates::get_industry))
        .route(paths::TEMPLATE_ADD, post(templates::add_template))
        .route(paths::TEMPLATE_LIST, get(templates::list_templates))
        .route(paths::TEMPLATE_DELETE, post(templates::delete_template))
        .route(paths::TEMPLATE_SEND, post(templates::send))
        .route(paths::MENU_CREATE, post(menus::create))
        .route(paths::MENU_GET, get(menus::get))
        .route(paths::MENU_DELETE, get(menus::delete))
        .route(paths::MENU_SELFMENU_INFO, get(menus::selfmenu_info))
        .route(paths::MENU_ADD_CONDITIONAL, post(menus::add_conditional))
        .route(paths::MENU_DEL_CONDITIONAL, post(menus::del_conditional))
        .route(paths::MENU_TRYMATCH, post(menus::trymatch))
        .route(paths::QRCODE_CREATE, post(qrcodes::create))
        .route(paths::SHOW_QRCODE, get(qrcodes::show))
        .route(
            paths::MEDIA_UPLOAD,
            post(material::upload).layer(upload_limit),
        )
        .route(paths::MEDIA_GET, get(material::get))
        .route(
            paths::MEDIA_UPLOAD_IMG,
            post(material::upload_img).layer(upload_limit),
        )
        .route(
            paths::MATERIAL_ADD,
            post(material::add_material).layer(upload_limit),
        )
        .route(paths::MATERIAL_GET, post(material::get_material))
        .route(paths::MATERIAL_DELETE, post(material::del_material))
        .route(paths::MATERIAL_COUNT, get(material::count))
        .route(paths::MATERIAL_BATCHGET, post(material::batchget))
        .route(paths::DRAFT_ADD, post(drafts::add))
        .route(paths::DRAFT_GET, post(drafts::get))
        .route(paths::DRAFT_DELETE, post(drafts::delete))
        .route(paths::DRAFT_UPDATE, post(drafts::update))
        .route(paths::DRAFT_COUNT, get(drafts::count))
        .route(paths::DRAFT_BATCHGET, post(drafts::batchget))
        .route(paths::FREEPUBLISH_SUBMIT, post(freepublish::submit))
        .route(paths::FREEPUBLISH_GET, post(freepublish::get))
        .route(paths::FREEPUBLISH_GETARTICLE, post(freepublish::getarticle))
        .route(paths::FREEPUBLISH_DELETE, post(freepublish::delete))
        .route(paths::FREEPUBLISH_BATCHGET, post(freepublish::batchget))
        .route(paths::COMMENT_OPEN, post(comments::open))
        .route(paths::COMMENT_CLOSE, post(comments::close))
        .route(paths::COMMENT_LIST, post(comments::list))
        .route(paths::COMMENT_MARKELECT, post(comments::markelect))
        .route(paths::COMMENT_UNMARKELECT, post(comments::unmarkelect))
        .route(paths::COMMENT_DELETE, post(comments::delete))
        .route(paths::COMMENT_REPLY_ADD, post(comments::reply_add))
        .route(paths::COMMENT_REPLY_DELETE, post(comments::reply_delete))
        .route(paths::QUOTA_GET, post(quota::quota_get))
        .route(paths::CLEAR_QUOTA, post(quota::clear_quota))
        .route(paths::OAUTH_AUTHORIZE, get(oauth::authorize))
        .route(
            paths::OAUTH_CONFIRM,
            get(oauth::confirm_get).post(oauth::confirm_post),
        )
        .route(paths::SNS_ACCESS_TOKEN, get(oauth::access_token))
        .route(paths::SNS_REFRESH_TOKEN, get(oauth::refresh_token))
        .route(paths::SNS_USERINFO, get(oauth::userinfo))
        .route(paths::SNS_AUTH, get(oauth::auth))
        .route(
            paths::STATS,
            get(control::stats).delete(control::reset_stats),
        )
        .route(paths::REVOKE, post(control::revoke))
        .route(
            paths::FAULTS,
            get(control::list_faults)
                .post(control::add_fault)
                .delete(control::clear_faults),
        )
        .route(paths::SEND, post(control::send))
        .route(paths::INTERACTIONS, post(control::interaction))
        .route(
            paths::MESSAGES,
            get(control::messages).delete(control::clear_messages),
        )
        .route(paths::APPS, get(control::apps))
        .route(paths::USERS, get(control::users))
        .route(paths::USERS_GENERATE, post(control::generate_users))
        .route(paths::USERS_UNSUBSCRIBE, post(control::unsubscribe_user))
        .route(paths::MASS_JOBS, get(mass::jobs))
        .route(paths::MASS_SETTINGS, post(mass::settings))
        .route(
            paths::PUBLISH,
            get(freepublish::jobs).post(freepublish::fail_next),
        )
        .route(
            paths::TEMPLATE_SENDS,
            get(templates::sends).delete(templates::clear_sends),
        )
        .route(paths::TEMPLATE_SETTINGS, post(templates::settings))
        .route(paths::QRCODES, get(qrcodes::list))
        .route(paths::MATERIAL, get(material::list))
        .route(paths::MMBIZ, get(material::file))
        .route(
            paths::COMMENTS,
            get(comments::articles).post(comments::seed),
        )
        .route(paths::QUOTA, get(quota::report).post(quota::settings))
        .route(paths::QUOTA_SETTINGS, post(quota::settings))
        .route(paths::JSSDK_VERIFY, post(oauth::jssdk_verify))
        .route(paths::OAUTH, get(oauth::stats))
        .route(paths::OAUTH_SETTINGS, post(oauth::settings))
        .route(
            paths::CLOCK,
            get(control::clock).post(control::advance_clock),
        )
        .fallback(rest::not_simulated)
        .with_state(shared)
}

/// Every failure of the simulator. The API variants are answers, not faults of the simulator:
/// they become WeChat's JSON error (`Api`), an injected HTTP status (`Http`) or a control-API
/// error (`BadRequest`, `NotFound`), all in [`IntoResponse`].
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for callbacks could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// Serving stopped on an I/O error.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    /// A WeChat API error: `{"errcode":N,"errmsg":"... rid: ..."}` with HTTP 200.
    #[error("errcode {errcode}: {errmsg}")]
    Api {
        /// WeChat's error code.
        errcode: i64,
        /// WeChat's message, without the `rid` suffix.
        errmsg: String,
    },
    /// An injected HTTP failure status with a short text body.
    #[error("simulated HTTP {0}")]
    Http(u16),
    /// A control-API request that does not make sense.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A control-API request naming something the simulator does not know.
    #[error("not found: {0}")]
    NotFound(String),
}

impl SimError {
    /// WeChat's error `errcode` with its usual message.
    pub(crate) fn api(errcode: i64) -> SimError {
        SimError::Api {
            errcode,
            errmsg: state::errmsg(errcode).to_owned(),
        }
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        match self {
            SimError::Api { errcode, errmsg } => {
                let errmsg = format!("{errmsg} rid: {}", state::rid());
                Json(serde_json::json!({ "errcode": errcode, "errmsg": errmsg })).into_response()
            }
            SimError::Http(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let text = status.canonical_reason().unwrap_or("error");
                (status, format!("{} {text}", status.as_u16())).into_response()
            }
            SimError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": message })),
            )
                .into_response(),
            SimError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "error": message })),
            )
                .into_response(),
            other @ (SimError::Bind { .. } | SimError::Client(_) | SimError::Serve(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": other.to_string() })),
            )
                .into_response(),
        }
    }
}
