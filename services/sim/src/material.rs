//! Material (素材): temporary media (`media/upload`, `media/get`), images for article content
//! (`media/uploadimg`), permanent material (`material/add_material`, `get_material`,
//! `del_material`, `get_materialcount`, `batchget_material`), the files at
//! `/_sim/mmbiz/<key>` (WeChat's `mmbiz.qpic.cn`) and the control listing `/_sim/material`.
//!
//! Files are kept in memory with their bytes and checked as WeChat does: the type by the file
//! name's extension and the content's magic bytes (40005), the size per kind (40009..=40012).
//! Temporary media live 3 days on the sim clock. URLs use the request's `Host`, so a client
//! reaches them the way it reached the API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use wxoa_wire::media::MediaKind;

use crate::SimError;
use crate::mass::control_app;
use crate::paths;
use crate::rest::{authorized, batch_page, json_body};
use crate::state::{Shared, random_string};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

const KB: usize = 1024;
const MB: usize = 1024 * KB;
/// Life of a temporary media file.
pub(crate) const TEMPORARY_LIFE_MS: i64 = 3 * 24 * 3600 * 1000;
/// The request-body limit of the upload routes: above every file limit, so an oversized file
/// still gets WeChat's size errcode.
pub(crate) const UPLOAD_BODY_LIMIT: usize = 24 * MB;
/// Items per `batchget_material` page.
const MAX_BATCH: u64 = 20;

/// What a file is for: the `type` of the upload APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Image,
    Voice,
    Video,
    Thumb,
}

impl Kind {
    /// The `type` parameter; anything else is 40004.
    fn parse(kind: Option<&str>) -> Result<Kind, SimError> {
        match kind {
            Some("image") => Ok(Kind::Image),
            Some("voice") => Ok(Kind::Voice),
            Some("video") => Ok(Kind::Video),
            Some("thumb") => Ok(Kind::Thumb),
            _ => Err(SimError::api(40004)),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Voice => "voice",
            Kind::Video => "video",
            Kind::Thumb => "thumb",
        }
    }
}

/// Where a file is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Storage {
    /// `media/upload`: 3 days.
    Temporary,
    /// `material/add_material`.
    Permanent,
    /// `media/uploadimg`: an image for article content, reached by its URL only.
    NewsImage,
}

/// A stored file.
struct Media {
    appid: String,
    media_id: String,
    kind: Kind,
    storage: Storage,
    name: String,
    content_type: String,
    bytes: Bytes,
    created_ms: i64,
    expires_ms: Option<i64>,
    /// `(title, introduction)` of a permanent video.
    video: Option<(String, String)>,
    /// The key of its URL, `/_sim/mmbiz/<key>`.
    url_key: String,
    /// Upload order.
    seq: u64,
}

impl Media {
    fn live(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// The files of every app.
#[derive(Default)]
pub(crate) struct MaterialStore {
    /// media_id → file.
    files: HashMap<String, Media>,
    /// URL key → media_id.
    urls: HashMap<String, String>,
    seq: u64,
}

impl MaterialStore {
    /// The app's live file `media_id` kept as `storage`.
    fn find(&self, appid: &str, media_id: &str, storage: Storage, now_ms: i64) -> Option<&Media> {
        self.files
            .get(media_id)
            .filter(|m| m.appid == appid && m.storage == storage && m.live(now_ms))
    }

    /// Whether `media_id` is a permanent image or thumb of the app (a draft's cover).
    pub(crate) fn is_cover(&self, appid: &str, media_id: &str) -> bool {
        self.find(appid, media_id, Storage::Permanent, 0)
            .is_some_and(|m| matches!(m.kind, Kind::Image | Kind::Thumb))
    }

    fn add(
        &mut self,
        appid: &str,
        kind: Kind,
        storage: Storage,
        file: File,
        now_ms: i64,
    ) -> &Media {
        self.seq += 1;
        let media = Media {
            appid: appid.to_owned(),
            media_id: random_string(64),
            kind,
            storage,
            name: file.name,
            content_type: file.content_type,
            bytes: file.bytes,
            created_ms: now_ms,
            expires_ms: (storage == Storage::Temporary)
                .then(|| now_ms.saturating_add(TEMPORARY_LIFE_MS)),
            video: file.video,
            url_key: random_string(32),
            seq: self.seq,
        };
        self.urls
            .insert(media.url_key.clone(), media.media_id.clone());
        self.files.entry(media.media_id.clone()).or_insert(media)
    }

    /// Removes a permanent file of the app; false when there is none.
    fn remove(&mut self, appid: &str, media_id: &str) -> bool {
        if self.find(appid, media_id, Storage::Permanent, 0).is_none() {
            return false;
        }
        if let Some(media) = self.files.remove(media_id) {
            self.urls.remove(&media.url_key);
        }
        true
    }

    /// The app's files in upload order.
    fn of_app(&self, appid: &str) -> Vec<&Media> {
        let mut files: Vec<&Media> = self.files.values().filter(|m| m.appid == appid).collect();
        files.sort_by_key(|m| m.seq);
        files
    }
}

// ---- file checks ----------------------------------------------------------------------------

/// Checks an upload as WeChat does ([`wxoa_wire::media`]): the file name's extension and the
/// magic bytes must both be one of the kind's formats (40005), then the size (40009..=40012).
/// Answers the format.
pub(crate) fn check_file(
    kind: Kind,
    storage: Storage,
    filename: &str,
    bytes: &[u8],
) -> Result<&'static str, SimError> {
    let media = match (kind, storage) {
        (_, Storage::NewsImage) => MediaKind::ArticleImage,
        (Kind::Image, _) => MediaKind::Image,
        (Kind::Voice, _) => MediaKind::Voice,
        (Kind::Video, _) => MediaKind::Video,
        (Kind::Thumb, _) => MediaKind::Thumb,
    };
    media
        .check(filename, bytes, storage == Storage::Permanent)
        .map_err(|e| SimError::api(e.errcode()))
}

// ---- multipart ------------------------------------------------------------------------------

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parameter of a `Content-Disposition` or `Content-Type` value (quoted or not).
fn header_param(value: &str, key: &str) -> Option<String> {
    let mut rest = value;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let Some(v) = rest.strip_prefix(key).and_then(|v| v.strip_prefix('=')) else {
            continue;
        };
        return Some(match v.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or("").to_owned(),
            None => v.split(';').next().unwrap_or("").trim().to_owned(),
        });
    }
    None
}

/// The parts of a `multipart/form-data` body; `None` when it is not one.
fn parse_multipart(content_type: &str, body: &Bytes) -> Option<Vec<Part>> {
    let boundary = header_param(content_type, "boundary").filter(|b| !b.is_empty())?;
    let delimiter = format!("--{boundary}").into_bytes();
    let close = [b"\r\n".as_slice(), &delimiter].concat();
    let mut at = find(body, &delimiter)? + delimiter.len();
    let mut parts = Vec::new();
    while !body[at..].starts_with(b"--") {
        let start = at + 2;
        if !body[at..].starts_with(b"\r\n") {
            return None;
        }
        let head_end = start + find(&body[start..], b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&body[start..head_end]);
        let data_start = head_end + 4;
        let data_end = data_start + find(&body[data_start..], &close)?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body.slice(data_start..data_end),
        };
        for line in head.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-disposition") {
                part.name = header_param(value, "name").unwrap_or_default();
                part.filename = header_param(value, "filename");
            } else if name.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.to_owned());
            }
        }
        parts.push(part);
        at = data_end + close.len();
    }
    Some(parts)
}

/// A checked upload, ready to store.
struct File {
    name: String,
    content_type: String,
    bytes: Bytes,
    video: Option<(String, String)>,
}

/// The form of an upload request (no parts when it is not multipart).
fn form(headers: &HeaderMap, body: &Bytes) -> Vec<Part> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| parse_multipart(ct, body))
        .unwrap_or_default()
}

/// The `media` part of a form (41005 without one or when it is empty), checked for `kind` and
/// `storage`.
fn media_file(parts: &[Part], kind: Kind, storage: Storage) -> Result<File, SimError> {
    let part = parts
        .iter()
        .find(|p| p.name == "media" && !p.data.is_empty())
        .ok_or_else(|| SimError::api(41005))?;
    let filename = part.filename.as_deref().unwrap_or("");
    let format = check_file(kind, storage, filename, &part.data)?;
    // The base name, as a browser sends it.
    let name = filename.rsplit(['/', '\\']).next().unwrap_or("").to_owned();
    let content_type = part
        .content_type
        .clone()
        .filter(|ct| !ct.is_empty() && HeaderValue::from_str(ct).is_ok())
        .unwrap_or_else(|| wxoa_wire::media::content_type(format).to_owned());
    Ok(File {
        name,
        content_type,
        bytes: part.data.clone(),
        video: None,
    })
}

// ---- handlers -------------------------------------------------------------------------------

/// The URL of a stored file, on the host the request came to.
fn file_url(sim: &Shared, headers: &HeaderMap, key: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| sim.config.listen.to_string(), str::to_owned);
    format!("http://{host}{}", paths::mmbiz(key))
}

/// The bytes of a file as a download: its Content-Type and
/// `Content-Disposition: attachment; filename="<name>"`.
fn download(media: &Media) -> Response {
    let content_type = HeaderValue::from_str(&media.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let name: String = media
        .name
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let disposition =
        HeaderValue::from_bytes(format!("attachment; filename=\"{name}\"").as_bytes())
            .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        media.bytes.clone(),
    )
        .into_response()
}

fn media_id_of(body: &Value) -> &str {
    body.get("media_id").and_then(Value::as_str).unwrap_or("")
}

/// `POST /cgi-bin/media/upload?type=`: `{"type","media_id","created_at"}` (a thumb:
/// `thumb_media_id`); the file lives 3 days.
pub(crate) async fn upload(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MEDIA_UPLOAD).await?;
    let kind = Kind::parse(q.get("type").map(String::as_str))?;
    let file = media_file(&form(&headers, &body), kind, Storage::Temporary)?;
    let mut state = sim.lock();
    let now = state.now_ms();
    let media = state
        .material
        .add(&appid, kind, Storage::Temporary, file, now);
    let id_key = if kind == Kind::Thumb {
        "thumb_media_id"
    } else {
        "media_id"
    };
    Ok(Json(
        json!({ "type": kind.as_str(), id_key: media.media_id, "created_at": now / 1000 }),
    ))
}

/// `GET /cgi-bin/media/get?media_id=`: the bytes of a live temporary file, a video as
/// `{"video_url"}`; 40007 for anything else.
pub(crate) async fn get(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let appid = authorized(&sim, &q, paths::MEDIA_GET).await?;
    let media_id = q.get("media_id").map_or("", String::as_str);
    let state = sim.lock();
    let media = state
        .material
        .find(&appid, media_id, Storage::Temporary, state.now_ms())
        .ok_or_else(|| SimError::api(40007))?;
    if media.kind == Kind::Video {
        let url = file_url(&sim, &headers, &media.url_key);
        return Ok(Json(json!({ "video_url": url })).into_response());
    }
    Ok(download(media))
}

/// `POST /cgi-bin/media/uploadimg`: a jpg/png of at most 1 MB for article content →
/// `{"url"}`.
pub(crate) async fn upload_img(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MEDIA_UPLOAD_IMG).await?;
    let file = media_file(&form(&headers, &body), Kind::Image, Storage::NewsImage)?;
    let mut state = sim.lock();
    let now = state.now_ms();
    let media = state
        .material
        .add(&appid, Kind::Image, Storage::NewsImage, file, now);
    Ok(Json(
        json!({ "url": file_url(&sim, &headers, &media.url_key) }),
    ))
}

/// `POST /cgi-bin/material/add_material?type=`: `{"media_id","url"}` (`url` for images only).
/// A video needs the form field `description` = `{"title","introduction"}` (else 40097).
pub(crate) async fn add_material(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MATERIAL_ADD).await?;
    let kind = Kind::parse(q.get("type").map(String::as_str))?;
    let parts = form(&headers, &body);
    let mut file = media_file(&parts, kind, Storage::Permanent)?;
    if kind == Kind::Video {
        let description = parts
            .iter()
            .find(|p| p.name == "description")
            .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
            .filter(Value::is_object)
            .ok_or_else(|| SimError::api(40097))?;
        let text = |key: &str| description[key].as_str().unwrap_or("").to_owned();
        file.video = Some((text("title"), text("introduction")));
    }
    let mut state = sim.lock();
    let now = state.now_ms();
    let media = state
        .material
        .add(&appid, kind, Storage::Permanent, file, now);
    let mut answer = json!({ "media_id": media.media_id });
    if kind == Kind::Image {
        answer["url"] = json!(file_url(&sim, &headers, &media.url_key));
    }
    Ok(Json(answer))
}

/// `POST /cgi-bin/material/get_material {"media_id"}`: the bytes of a permanent image, voice
/// or thumb; a video as `{"title","description","down_url"}`; 40007 for anything else.
pub(crate) async fn get_material(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    let appid = authorized(&sim, &q, paths::MATERIAL_GET).await?;
    let body = json_body(&body)?;
    let state = sim.lock();
    let media = state
        .material
        .find(&appid, media_id_of(&body), Storage::Permanent, 0)
        .ok_or_else(|| SimError::api(40007))?;
    if let Some((title, introduction)) = &media.video {
        let url = file_url(&sim, &headers, &media.url_key);
        return Ok(
            Json(json!({ "title": title, "description": introduction, "down_url": url }))
                .into_response(),
        );
    }
    Ok(download(media))
}

/// `POST /cgi-bin/material/del_material {"media_id"}`: a permanent file (else 40007).
pub(crate) async fn del_material(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MATERIAL_DELETE).await?;
    let body = json_body(&body)?;
    if !sim.lock().material.remove(&appid, media_id_of(&body)) {
        return Err(SimError::api(40007));
    }
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// Whether a permanent file is listed under the `batchget_material` type `kind` (thumbs are
/// images, as in WeChat's image library).
fn listed_as(media: &Media, kind: Kind) -> bool {
    media.storage == Storage::Permanent
        && (media.kind == kind || (kind == Kind::Image && media.kind == Kind::Thumb))
}

/// `GET /cgi-bin/material/get_materialcount`: permanent files per type (`news_count` 0: the
/// old news material is not simulated, see drafts).
pub(crate) async fn count(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::MATERIAL_COUNT).await?;
    let state = sim.lock();
    let files = state.material.of_app(&appid);
    let count = |kind| files.iter().filter(|m| listed_as(m, kind)).count();
    Ok(Json(json!({
        "voice_count": count(Kind::Voice),
        "video_count": count(Kind::Video),
        "image_count": count(Kind::Image),
        "news_count": 0,
    })))
}

/// `POST /cgi-bin/material/batchget_material {"type","offset","count"}`: a page of the
/// permanent files of a type, newest first: `{"total_count","item_count","item":[{"media_id",
/// "name","update_time","url"}]}`. Type `news` is always empty; another type 40004; `count`
/// outside 1..=20 or a bad `offset` 40097.
pub(crate) async fn batchget(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MATERIAL_BATCHGET).await?;
    let body = json_body(&body)?;
    let kind = match body.get("type").and_then(Value::as_str) {
        Some("news") => None,
        Some("thumb") => return Err(SimError::api(40004)),
        other => Some(Kind::parse(other)?),
    };
    let (skip, take) = batch_page(&body, MAX_BATCH)?;
    let state = sim.lock();
    let mut files: Vec<&Media> = state
        .material
        .of_app(&appid)
        .into_iter()
        .filter(|m| kind.is_some_and(|k| listed_as(m, k)))
        .collect();
    files.reverse();
    let items: Vec<Value> = files
        .iter()
        .skip(skip)
        .take(take)
        .map(|m| {
            json!({
                "media_id": m.media_id,
                "name": m.name,
                "update_time": m.created_ms / 1000,
                "url": file_url(&sim, &headers, &m.url_key),
            })
        })
        .collect();
    Ok(Json(json!({
        "total_count": files.len(),
        "item_count": items.len(),
        "item": items,
    })))
}

/// `GET /_sim/mmbiz/<key>`: the bytes of a stored file with its Content-Type; 404 when the key
/// is unknown, the file deleted or expired.
pub(crate) async fn file(State(sim): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    let state = sim.lock();
    let now = state.now_ms();
    let media = state
        .material
        .urls
        .get(&key)
        .and_then(|id| state.material.files.get(id))
        .filter(|m| m.live(now));
    match media {
        Some(m) => (
            [(header::CONTENT_TYPE, m.content_type.clone())],
            m.bytes.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "unknown, deleted or expired file").into_response(),
    }
}

/// `GET /_sim/material?appid=`: `{appid, files: [{media_id, type, storage, name, content_type,
/// size, fnv1a64, created_ms, expires_ms, expired, url, title?, introduction?}]}` in upload
/// order (`storage`: temporary, permanent or news_image).
pub(crate) async fn list(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    headers: HeaderMap,
) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let state = sim.lock();
    let now = state.now_ms();
    let files: Vec<Value> = state
        .material
        .of_app(&appid)
        .into_iter()
        .map(|m| {
            let mut v = json!({
                "media_id": m.media_id,
                "type": m.kind,
                "storage": m.storage,
                "name": m.name,
                "content_type": m.content_type,
                "size": m.bytes.len(),
                "fnv1a64": format!("{:016x}", crate::fnv1a64(&m.bytes)),
                "created_ms": m.created_ms,
                "expires_ms": m.expires_ms,
                "expired": !m.live(now),
                "url": file_url(&sim, &headers, &m.url_key),
            });
            if let Some((title, introduction)) = &m.video {
                v["title"] = json!(title);
                v["introduction"] = json!(introduction);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "appid": appid, "files": files })))
}
