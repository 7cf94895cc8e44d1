//! The operator HTTP API (`wxoa admin`): JSON over HTTP for every app of the deployment,
//! authenticated with bearer tokens (`api.tokens`, compared in constant time; none → 401).
//! The OpenAPI document is `docs/admin-openapi.json`, served at `/openapi.json`.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/apps` | the apps: appid, kind, verified |
//! | `GET /v1/apps/{appid}/token` | token status: age, expiry, last forced refresh, force-refresh budget left — never the token |
//! | `GET /v1/apps/{appid}/quota` | per-API calls today as the platform counted them |
//! | `POST /v1/apps/{appid}/quota/get` | WeChat's quota of one API (`{"cgi_path"}`) |
//! | `POST /v1/apps/{appid}/quota/clear` | WeChat's `clear_quota` |
//! | `GET`, `PUT`, `DELETE /v1/apps/{appid}/menu` | the custom menu; `PUT` checks WeChat's rules first (422 with the place and the errcode WeChat would give) |
//! | `GET /v1/apps/{appid}/menu/current` | the menu users see, also one set in the console |
//! | `POST /v1/apps/{appid}/menu/conditional`, `DELETE …/menu/conditional/{menuid}`, `POST …/menu/trymatch` | conditional menus |
//! | `POST /v1/apps/{appid}/qrcodes` | a QR code: `{"scene_id" or "scene_str", "permanent"?, "expire_seconds"?}` → ticket, url and image URL |
//! | `POST /v1/apps/{appid}/media?type=&filename=`, `GET …/media/{media_id}` | temporary media: the body is the file, checked first (`wxoa_wire::media`) |
//! | `POST /v1/apps/{appid}/images?filename=` | an image for an article's content → its URL |
//! | `GET`, `POST /v1/apps/{appid}/materials`, `GET …/materials/count`, `GET`, `DELETE …/materials/{media_id}` | permanent material: list, add, count, download, delete |
//! | `GET`, `POST /v1/apps/{appid}/drafts`, `GET …/drafts/count`, `GET`, `DELETE …/drafts/{media_id}`, `PUT …/drafts/{media_id}/{index}` | drafts |
//! | `POST /v1/apps/{appid}/drafts/{media_id}/publish`, `GET …/publish-jobs/{publish_id}`, `GET …/published`, `GET`, `DELETE …/published/{article_id}[?index=N]` | publishing a draft, its job, the published articles |
//! | `…/articles/{msg_data_id}/{index}/comments`: `GET` (a page), `POST /open`, `POST /close`, `DELETE /{id}`, `POST`/`DELETE /{id}/elect`, `PUT`/`DELETE /{id}/reply` | article comments |
//! | `POST /v1/apps/{appid}/api/{area}/{verb}` | the workers' NATS APIs over HTTP: rules, send, users (and tags), broadcast |

#![warn(missing_docs)]

mod comments;
mod material;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use futures::future::BoxFuture;
use redis::AsyncCommands;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::connect::RedisConn;
use wxoa_wechat::{WechatClient, WechatError};
use wxoa_wire::names::keys;

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("../../../docs/admin-openapi.json");

/// A failure of the operator API, answered as `{"error":{"code","message","errcode"?}}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// NATS or Redis did not accept the connection.
    #[error("connecting: {0}")]
    Connect(#[from] wxoa_runtime::connect::ConnectError),
    /// Binding or serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// No or a wrong bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The app is not served here.
    #[error("unknown app {0}")]
    UnknownApp(String),
    /// The request breaks WeChat's rules (checked before any call).
    #[error("{0}")]
    Invalid(String),
    /// An upload breaks WeChat's file rules (checked before any call).
    #[error(transparent)]
    Media(#[from] wxoa_wire::media::MediaError),
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// A worker answered a NATS API request with an error (or did not answer).
    #[error("{message}")]
    Worker {
        /// `invalid`, `not_found`, `unavailable` or `internal`.
        code: String,
        /// What went wrong.
        message: String,
    },
    /// Redis failed.
    #[error("talking to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// WeChat refused or failed.
    #[error(transparent)]
    Wechat(#[from] WechatError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::UnknownApp(_) | AdminError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            AdminError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            AdminError::Media(wxoa_wire::media::MediaError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            AdminError::Media(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            AdminError::Worker { code, .. } => match code.as_str() {
                "invalid" => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
                "not_found" => (StatusCode::NOT_FOUND, "not_found"),
                "unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                _ => (StatusCode::BAD_GATEWAY, "internal"),
            },
            AdminError::Wechat(e) if e.errcode().is_some() && !e.is_transient() => {
                (StatusCode::BAD_REQUEST, "wechat")
            }
            AdminError::Wechat(_) => (StatusCode::BAD_GATEWAY, "wechat"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let mut error = json!({"code": code, "message": self.to_string()});
        if let AdminError::Wechat(e) = &self
            && let Some(errcode) = e.errcode()
        {
            error["errcode"] = errcode.into();
            if let Some(meaning) = wxoa_wechat::errcode::meaning(errcode) {
                error["meaning"] = meaning.into();
            }
        }
        let mut response = (status, Json(json!({"error": error}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        response
    }
}

struct Shared {
    config: Config,
    redis: RedisConn,
    nats: async_nats::Client,
    wechat: WechatClient,
}

type Answer = Result<Json<Value>, AdminError>;

/// The operator API, bound and not yet serving.
pub struct App {
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    health: Health,
}

impl App {
    /// Connects to NATS and Redis and binds `api.listen`.
    pub async fn build(config: &Config, health: Health) -> Result<App, AdminError> {
        let (nats, redis) = wxoa_runtime::connect::watched(config, "wxoa-admin", &health).await?;
        let listener = tokio::net::TcpListener::bind(config.api.listen).await?;
        if config.api.tokens.is_empty() {
            tracing::warn!("api.tokens is empty: every call will be refused (401)");
        }
        tracing::info!(addr = %listener.local_addr()?, "operator API listening");
        let shared = Shared {
            wechat: WechatClient::new(config, redis.clone(), nats.clone(), &health),
            nats,
            config: config.clone(),
            redis,
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
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AdminError> {
        let App {
            shared,
            listener,
            health,
        } = self;
        let api = Router::new()
            .route("/v1/apps", get(apps))
            .route("/v1/apps/{appid}/token", get(token_status))
            .route("/v1/apps/{appid}/quota", get(quota_counts))
            .route("/v1/apps/{appid}/quota/get", post(quota_get))
            .route("/v1/apps/{appid}/quota/clear", post(quota_clear))
            .route(
                "/v1/apps/{appid}/menu",
                get(menu_get).put(menu_put).delete(menu_delete),
            )
            .route("/v1/apps/{appid}/menu/conditional", post(menu_conditional))
            .route(
                "/v1/apps/{appid}/menu/conditional/{menuid}",
                delete(by_id("menuid", "/cgi-bin/menu/delconditional")),
            )
            .route("/v1/apps/{appid}/menu/trymatch", post(menu_trymatch))
            .route("/v1/apps/{appid}/menu/current", get(menu_current))
            .route("/v1/apps/{appid}/qrcodes", post(qrcode))
            .route("/v1/apps/{appid}/media", post(material::media_upload))
            .route(
                "/v1/apps/{appid}/media/{media_id}",
                get(material::media_get),
            )
            .route("/v1/apps/{appid}/images", post(material::article_image))
            .route(
                "/v1/apps/{appid}/materials",
                get(material::material_list).post(material::material_add),
            )
            .route(
                "/v1/apps/{appid}/materials/count",
                get(material::material_count),
            )
            .route(
                "/v1/apps/{appid}/materials/{media_id}",
                get(material::material_get)
                    .delete(by_id("media_id", "/cgi-bin/material/del_material")),
            )
            .route(
                "/v1/apps/{appid}/drafts",
                get(material::draft_list).post(material::draft_add),
            )
            .route("/v1/apps/{appid}/drafts/count", get(material::draft_count))
            .route(
                "/v1/apps/{appid}/drafts/{media_id}",
                get(by_id("media_id", "/cgi-bin/draft/get"))
                    .delete(by_id("media_id", "/cgi-bin/draft/delete")),
            )
            .route(
                "/v1/apps/{appid}/drafts/{media_id}/{index}",
                put(material::draft_update),
            )
            // Publishing: the job ends later (`PUBLISHJOBFINISH` on NATS, or the job's status).
            .route(
                "/v1/apps/{appid}/drafts/{media_id}/publish",
                post(by_id("media_id", "/cgi-bin/freepublish/submit")),
            )
            .route(
                "/v1/apps/{appid}/publish-jobs/{publish_id}",
                get(by_id("publish_id", "/cgi-bin/freepublish/get")),
            )
            .route("/v1/apps/{appid}/published", get(material::published_list))
            .route(
                "/v1/apps/{appid}/published/{article_id}",
                get(by_id("article_id", "/cgi-bin/freepublish/getarticle"))
                    .delete(material::published_delete),
            )
            .nest(
                "/v1/apps/{appid}/articles/{msg_data_id}/{index}/comments",
                Router::new()
                    .route("/", get(comments::list))
                    .route("/open", post(comments::on_article("/cgi-bin/comment/open")))
                    .route(
                        "/close",
                        post(comments::on_article("/cgi-bin/comment/close")),
                    )
                    .route(
                        "/{user_comment_id}",
                        delete(comments::on_comment("/cgi-bin/comment/delete")),
                    )
                    .route(
                        "/{user_comment_id}/elect",
                        post(comments::on_comment("/cgi-bin/comment/markelect"))
                            .delete(comments::on_comment("/cgi-bin/comment/unmarkelect")),
                    )
                    .route(
                        "/{user_comment_id}/reply",
                        put(comments::reply)
                            .delete(comments::on_comment("/cgi-bin/comment/reply/delete")),
                    ),
            )
            .route("/v1/apps/{appid}/api/{area}/{verb}", post(proxy::request))
            .route_layer(middleware::from_fn_with_state(shared.clone(), authorize));
        let router = api
            .route(
                "/openapi.json",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
            )
            .with_state(shared);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                health.stopping();
            })
            .await?;
        Ok(())
    }
}

/// Lets a request through when its bearer token equals one of `api.tokens` (constant time).
async fn authorize(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized)?;
    let mut ok = subtle::Choice::from(0);
    for token in &shared.config.api.tokens {
        let token = token.expose_secret().as_bytes();
        if !token.is_empty() {
            ok |= token.ct_eq(given.as_bytes());
        }
    }
    if bool::from(ok) {
        Ok(next.run(request).await)
    } else {
        Err(AdminError::Unauthorized)
    }
}

/// WeChat's answer to `POST <path>` (or `GET` without a body) for the app, as the response.
async fn wechat(shared: &Shared, app_id: &str, path: &str, body: Option<&Value>) -> Answer {
    let app_id = app(shared, app_id)?;
    Ok(Json(match body {
        Some(body) => shared.wechat.post(app_id, path, body).await?,
        None => shared.wechat.get(app_id, path, &[]).await?,
    }))
}

/// An answer being made.
type Pending = BoxFuture<'static, Answer>;

/// A handler for routes whose WeChat API takes a body made from the path alone: `body` turns
/// the path parameters into the app and the body, which is posted to `path`.
fn from_path<P, B>(
    path: &'static str,
    body: B,
) -> impl Fn(State<Arc<Shared>>, Path<P>) -> Pending + Clone + Send + Sync + 'static
where
    P: Send + 'static,
    B: Fn(P) -> (String, Value) + Clone + Send + Sync + 'static,
{
    move |State(shared), Path(params)| {
        let (app_id, body) = body(params);
        Box::pin(async move { wechat(&shared, &app_id, path, Some(&body)).await })
    }
}

/// [`from_path`] for `…/{appid}/…/{id}` routes whose WeChat API takes that one id as `key`.
fn by_id(
    key: &'static str,
    path: &'static str,
) -> impl Fn(State<Arc<Shared>>, Path<(String, String)>) -> Pending + Clone + Send + Sync + 'static
{
    from_path(path, move |(app_id, id): (String, String)| {
        (app_id, json!({ key: id }))
    })
}

fn app<'a>(shared: &'a Shared, app_id: &str) -> Result<&'a str, AdminError> {
    shared
        .config
        .app(app_id)
        .map(|a| a.appid.as_str())
        .ok_or_else(|| AdminError::UnknownApp(app_id.to_owned()))
}

async fn apps(State(shared): State<Arc<Shared>>) -> Answer {
    let apps: Vec<Value> = shared
        .config
        .apps
        .iter()
        .map(|a| {
            json!({"appid": a.appid, "kind": format!("{:?}", a.kind).to_lowercase(),
                   "verified": a.verified, "safe_mode": a.aes_key.is_some()})
        })
        .collect();
    Ok(Json(json!({ "apps": apps })))
}

async fn token_status(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Answer {
    let app_id = app(&shared, &app_id)?;
    let prefix = &shared.config.redis.key_prefix;
    let now = wxoa_runtime::now_ms();
    let day = wxoa_wire::envelope::utc_day(now);
    let (ttl, ticket_ttl, forced, last): (i64, i64, Option<u32>, Option<i64>) = redis::pipe()
        .ttl(keys::access_token(prefix, app_id))
        .ttl(keys::jsapi_ticket(prefix, app_id))
        .get(keys::token_force_count(prefix, app_id, &day))
        .get(keys::token_force_last(prefix, app_id))
        .query_async(&mut shared.redis.clone())
        .await?;
    let token = shared.wechat.access_token(app_id).await.ok();
    let limit = shared.config.token.force_refresh_daily_limit;
    Ok(Json(json!({
        "appid": app_id,
        "access_token": {
            "present": ttl > 0,
            "expires_in_secs": (ttl > 0).then_some(ttl),
            "fingerprint": token.as_deref().map(wxoa_wire::token::fingerprint),
        },
        "jsapi_ticket": {"present": ticket_ttl > 0, "expires_in_secs": (ticket_ttl > 0).then_some(ticket_ttl)},
        "forced_refresh": {
            "used_today": forced.unwrap_or(0),
            "left_today": limit.saturating_sub(forced.unwrap_or(0)),
            "last_ms": last,
        },
    })))
}

async fn quota_counts(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Answer {
    let app_id = app(&shared, &app_id)?;
    let day = wxoa_wire::envelope::utc_day(wxoa_runtime::now_ms());
    let calls: std::collections::BTreeMap<String, u64> = shared
        .redis
        .clone()
        .hgetall(keys::api_calls(
            &shared.config.redis.key_prefix,
            app_id,
            &day,
        ))
        .await?;
    Ok(Json(json!({"appid": app_id, "day": day, "calls": calls})))
}

async fn quota_get(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    let app_id = app(&shared, &app_id)?;
    if body["cgi_path"]
        .as_str()
        .is_none_or(|p| !p.starts_with('/'))
    {
        return Err(AdminError::Invalid(
            "cgi_path must be an API path like /cgi-bin/message/custom/send".into(),
        ));
    }
    wechat(&shared, app_id, "/cgi-bin/openapi/quota/get", Some(&body)).await
}

async fn quota_clear(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Answer {
    let app_id = app(&shared, &app_id)?;
    wechat(
        &shared,
        app_id,
        "/cgi-bin/clear_quota",
        Some(&json!({"appid": app_id})),
    )
    .await
}

/// Checks a menu before any call: 422 with the place, the reason and WeChat's errcode.
fn check_menu(menu: &Value) -> Result<(), AdminError> {
    wxoa_wire::menu::validate(menu).map_err(|e| AdminError::Invalid(e.to_string()))
}

async fn menu_get(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Answer {
    wechat(&shared, &app_id, "/cgi-bin/menu/get", None).await
}

async fn menu_put(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Json(menu): Json<Value>,
) -> Answer {
    let app_id = app(&shared, &app_id)?;
    check_menu(&menu)?;
    wechat(&shared, app_id, "/cgi-bin/menu/create", Some(&menu)).await
}

/// The menu as users see it, including one set in WeChat's console (`get_current_selfmenu_info`).
async fn menu_current(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Answer {
    let path = "/cgi-bin/get_current_selfmenu_info";
    wechat(&shared, &app_id, path, None).await
}

async fn menu_delete(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Answer {
    wechat(&shared, &app_id, "/cgi-bin/menu/delete", None).await
}

async fn menu_conditional(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Json(menu): Json<Value>,
) -> Answer {
    let app_id = app(&shared, &app_id)?;
    check_menu(&menu)?;
    if menu["matchrule"].as_object().is_none_or(|m| m.is_empty()) {
        return Err(AdminError::Invalid(
            "a conditional menu needs a matchrule (tag_id, client_platform_type, ...)".into(),
        ));
    }
    wechat(&shared, app_id, "/cgi-bin/menu/addconditional", Some(&menu)).await
}

async fn menu_trymatch(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    wechat(&shared, &app_id, "/cgi-bin/menu/trymatch", Some(&body)).await
}

/// `POST /v1/apps/{appid}/qrcodes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QrRequest {
    #[serde(default)]
    scene_id: Option<u64>,
    #[serde(default)]
    scene_str: Option<String>,
    #[serde(default)]
    permanent: bool,
    #[serde(default)]
    expire_seconds: Option<u64>,
}

async fn qrcode(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Json(q): Json<QrRequest>,
) -> Answer {
    let app_id = app(&shared, &app_id)?;
    let (action, scene) = match (q.scene_id, &q.scene_str, q.permanent) {
        (Some(id), None, false) if id > 0 && id <= u64::from(u32::MAX) => {
            ("QR_SCENE", json!({"scene_id": id}))
        }
        (Some(id), None, true) if (1..=100_000).contains(&id) => {
            ("QR_LIMIT_SCENE", json!({"scene_id": id}))
        }
        (None, Some(s), permanent) if !s.is_empty() && s.len() <= 64 => (
            if permanent {
                "QR_LIMIT_STR_SCENE"
            } else {
                "QR_STR_SCENE"
            },
            json!({"scene_str": s}),
        ),
        _ => {
            return Err(AdminError::Invalid(
                "give scene_id (temporary: 1..2^32-1, permanent: 1..100000) or scene_str (1-64 chars)"
                    .into(),
            ));
        }
    };
    let mut body = json!({"action_name": action, "action_info": {"scene": scene}});
    if !q.permanent {
        let expire = q.expire_seconds.unwrap_or(604_800);
        if !(60..=2_592_000).contains(&expire) {
            return Err(AdminError::Invalid(
                "expire_seconds must be 60..2592000 (30 days)".into(),
            ));
        }
        body["expire_seconds"] = expire.into();
    }
    let mut answer = shared
        .wechat
        .post(app_id, "/cgi-bin/qrcode/create", &body)
        .await?;
    let ticket = answer["ticket"].as_str().unwrap_or_default().to_owned();
    answer["image_url"] = format!(
        "{}/cgi-bin/showqrcode?ticket={}",
        showqrcode_base(&shared.config.wechat.api_base),
        wxoa_wire::web::percent_encode(&ticket)
    )
    .into();
    Ok(Json(answer))
}

/// Where QR images are served: WeChat's `mp.weixin.qq.com`, or the simulator.
fn showqrcode_base(api_base: &str) -> &str {
    if api_base.contains("api.weixin.qq.com") {
        "https://mp.weixin.qq.com"
    } else {
        api_base.trim_end_matches('/')
    }
}
