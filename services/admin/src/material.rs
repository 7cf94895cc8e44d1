//! Material (media), drafts and publishing: uploads checked against WeChat's rules before
//! any byte goes upstream, downloads answered as the file itself.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use wxoa_wechat::{Answer as Wechat, Upload};

use crate::{AdminError, Answer, Shared, app, wechat};
use wxoa_wire::media::{self, MediaKind};

/// The query of an upload: `?type=image&filename=a.jpg` (and a video's `title`, `introduction`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    filename: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    introduction: Option<String>,
}

/// Reads the body (at most the type's limit) and checks it: the upload to send.
async fn read_upload(
    kind: MediaKind,
    query: &UploadQuery,
    headers: &HeaderMap,
    body: Body,
    permanent: bool,
) -> Result<Upload, AdminError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared {
        kind.check_size(size)?;
    }
    // Streamed in, never more than the limit held: the bytes stay in memory so that a
    // rejected access_token can be retried with the same upload.
    let mut stream = body.into_data_stream();
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| AdminError::Invalid(format!("reading the upload: {e}")))?;
        kind.check_size((bytes.len() + chunk.len()) as u64)?;
        bytes.extend_from_slice(&chunk);
    }
    let bytes = bytes.freeze();
    let content_type = media::content_type(kind.check(&query.filename, &bytes, permanent)?);
    let mut fields = Vec::new();
    if permanent && kind == MediaKind::Video {
        let title = query
            .title
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AdminError::Invalid(
                    "a permanent video needs a title (and may have an introduction)".into(),
                )
            })?;
        let description = json!({"title": title, "introduction": query.introduction.as_deref().unwrap_or_default()});
        fields.push(("description".to_owned(), description.to_string()));
    }
    Ok(Upload {
        filename: query.filename.clone(),
        content_type: content_type.to_owned(),
        bytes,
        fields,
    })
}

fn kind_of(query: &UploadQuery) -> Result<MediaKind, AdminError> {
    let name = query
        .kind
        .as_deref()
        .ok_or_else(|| AdminError::Invalid("give ?type=image|voice|video|thumb".into()))?;
    Ok(MediaKind::parse(name)?)
}

/// Checks the upload for `kind` and sends it to WeChat's `path` (with `?type=` unless it is an
/// article image).
async fn forward(
    shared: &Shared,
    app_id: &str,
    kind: MediaKind,
    permanent: bool,
    path: &str,
    (query, headers, body): (UploadQuery, HeaderMap, Body),
) -> Answer {
    let app_id = app(shared, app_id)?;
    let upload = read_upload(kind, &query, &headers, body, permanent).await?;
    let params: &[(&str, &str)] = match kind {
        MediaKind::ArticleImage => &[],
        _ => &[("type", kind.name())],
    };
    Ok(Json(
        shared.wechat.upload(app_id, path, params, &upload).await?,
    ))
}

/// `POST /v1/apps/{appid}/media?type=&filename=`: a temporary media (3 days).
pub(crate) async fn media_upload(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let kind = kind_of(&query)?;
    let path = "/cgi-bin/media/upload";
    forward(&shared, &app_id, kind, false, path, (query, headers, body)).await
}

/// `POST /v1/apps/{appid}/materials?type=&filename=[&title=&introduction=]`: a permanent material.
pub(crate) async fn material_add(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let kind = kind_of(&query)?;
    let path = "/cgi-bin/material/add_material";
    forward(&shared, &app_id, kind, true, path, (query, headers, body)).await
}

/// `POST /v1/apps/{appid}/images?filename=`: an image for an article's content (its URL).
pub(crate) async fn article_image(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let (kind, path) = (MediaKind::ArticleImage, "/cgi-bin/media/uploadimg");
    forward(&shared, &app_id, kind, false, path, (query, headers, body)).await
}

/// A download answered as the file (with its type and name), or as WeChat's JSON.
fn file_response(answer: Wechat) -> Response {
    match answer {
        Wechat::Json(value) => Json(value).into_response(),
        Wechat::File {
            content_type,
            filename,
            bytes,
        } => {
            let disposition = match filename {
                Some(name) => format!("attachment; filename=\"{}\"", name.replace('"', "")),
                None => "attachment".to_owned(),
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response()
        }
    }
}

/// `GET /v1/apps/{appid}/media/{media_id}`: a temporary media's bytes (a video: its URL).
pub(crate) async fn media_get(
    State(shared): State<Arc<Shared>>,
    Path((app_id, media_id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let app_id = app(&shared, &app_id)?;
    let query = [("media_id", media_id.as_str())];
    let answer = shared
        .wechat
        .download(app_id, "/cgi-bin/media/get", &query, None)
        .await?;
    Ok(file_response(answer))
}

/// `GET /v1/apps/{appid}/materials/{media_id}`: a permanent material's bytes (a video: its
/// title, description and URL).
pub(crate) async fn material_get(
    State(shared): State<Arc<Shared>>,
    Path((app_id, media_id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let app_id = app(&shared, &app_id)?;
    let body = json!({ "media_id": media_id });
    let path = "/cgi-bin/material/get_material";
    let answer = shared
        .wechat
        .download(app_id, path, &[], Some(&body))
        .await?;
    Ok(file_response(answer))
}

/// `GET /v1/apps/{appid}/materials/count`.
pub(crate) async fn material_count(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> Answer {
    wechat(
        &shared,
        &app_id,
        "/cgi-bin/material/get_materialcount",
        None,
    )
    .await
}

/// The paging of a list: `?offset=0&count=20` (and a material list's `type`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    offset: u32,
    #[serde(default = "twenty")]
    count: u32,
    #[serde(default)]
    no_content: bool,
}

fn twenty() -> u32 {
    20
}

impl Page {
    fn checked(&self) -> Result<(), AdminError> {
        if (1..=20).contains(&self.count) {
            Ok(())
        } else {
            Err(AdminError::Invalid("count must be 1..=20".into()))
        }
    }
}

/// `GET /v1/apps/{appid}/materials?type=image&offset=0&count=20`.
pub(crate) async fn material_list(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(page): Query<Page>,
) -> Answer {
    page.checked()?;
    let kind = match page.kind.as_deref() {
        Some("news") => "news",
        Some(name) => MediaKind::parse(name)?.name(),
        None => {
            return Err(AdminError::Invalid(
                "give ?type=image|voice|video|news".into(),
            ));
        }
    };
    let body = json!({"type": kind, "offset": page.offset, "count": page.count});
    wechat(
        &shared,
        &app_id,
        "/cgi-bin/material/batchget_material",
        Some(&body),
    )
    .await
}

/// `POST /v1/apps/{appid}/drafts` with `{"articles": [...]}`.
pub(crate) async fn draft_add(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    let articles = body["articles"].as_array().map_or(0, Vec::len);
    if !(1..=8).contains(&articles) {
        return Err(AdminError::Invalid("a draft holds 1 to 8 articles".into()));
    }
    wechat(&shared, &app_id, "/cgi-bin/draft/add", Some(&body)).await
}

/// `GET /v1/apps/{appid}/drafts?offset=&count=&no_content=`.
pub(crate) async fn draft_list(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(page): Query<Page>,
) -> Answer {
    news_page(&shared, &app_id, &page, "/cgi-bin/draft/batchget").await
}

/// A page of news (drafts or published messages) from WeChat's `batchget` at `path`.
async fn news_page(shared: &Shared, app_id: &str, page: &Page, path: &str) -> Answer {
    page.checked()?;
    let body = json!({"offset": page.offset, "count": page.count, "no_content": u8::from(page.no_content)});
    wechat(shared, app_id, path, Some(&body)).await
}

/// `GET /v1/apps/{appid}/drafts/count`.
pub(crate) async fn draft_count(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> Answer {
    wechat(&shared, &app_id, "/cgi-bin/draft/count", None).await
}

/// `PUT /v1/apps/{appid}/drafts/{media_id}/{index}` with one article: replaces it.
pub(crate) async fn draft_update(
    State(shared): State<Arc<Shared>>,
    Path((app_id, media_id, index)): Path<(String, String, u32)>,
    Json(article): Json<Value>,
) -> Answer {
    let body = json!({"media_id": media_id, "index": index, "articles": article});
    wechat(&shared, &app_id, "/cgi-bin/draft/update", Some(&body)).await
}

/// `GET /v1/apps/{appid}/published?offset=&count=&no_content=`: published messages, newest
/// first.
pub(crate) async fn published_list(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(page): Query<Page>,
) -> Answer {
    news_page(&shared, &app_id, &page, "/cgi-bin/freepublish/batchget").await
}

/// `DELETE /v1/apps/{appid}/published/{article_id}?index=N`: deletes the article at `index`
/// (1-based, as WeChat counts here), or all of them without one.
pub(crate) async fn published_delete(
    State(shared): State<Arc<Shared>>,
    Path((app_id, article_id)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Answer {
    // WeChat reads 0 as "every article": only the absence of `index` may mean that here.
    if which.index == Some(0) {
        return Err(AdminError::Invalid(
            "index counts articles from 1; leave it out to delete every article".into(),
        ));
    }
    let body = json!({ "article_id": article_id, "index": which.index.unwrap_or(0) });
    wechat(&shared, &app_id, "/cgi-bin/freepublish/delete", Some(&body)).await
}

/// Which article of a published message (1-based; none: all).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Which {
    #[serde(default)]
    index: Option<u32>,
}
