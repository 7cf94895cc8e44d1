//! The verbs over the operator HTTP API (`wxoa admin`): material, drafts, comments, menus, QR
//! codes, quotas and token status. Answers print as tables (`--json`: the API's JSON); errors
//! carry WeChat's errcode and its meaning.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::{Value, json};
use wxoa_runtime::Config;

use crate::cli::{
    ApiArgs, CommentsCommand, DraftsCommand, MaterialCommand, PublishedCommand, QrcodeCommand,
};
use crate::verbs::{app_of, progress_bar};

/// A request to `/v1/apps/<app>/<path>` with the bearer token.
fn request(
    config: &Config,
    api: &ApiArgs,
    method: Method,
    path: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let app = app_of(config, api.app.clone())?;
    let url = format!("{}/v1/apps/{app}/{path}", api.api_url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(token) = &api.api_token {
        request = request.bearer_auth(token);
    }
    Ok(request)
}

/// Sends; a non-2xx answer becomes an error with the API's message, WeChat's errcode and
/// its meaning.
async fn send(
    api: &ApiArgs,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::Response> {
    let response = request
        .send()
        .await
        .with_context(|| format!("reaching the operator API at {}", api.api_url))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let error = &answer["error"];
    let errcode = match (error["errcode"].as_i64(), error["meaning"].as_str()) {
        (Some(code), Some(meaning)) => format!("\nWeChat errcode {code}: {meaning}"),
        (Some(code), None) => format!("\nWeChat errcode {code}"),
        _ => String::new(),
    };
    bail!(
        "{status}: {}{errcode}",
        error["message"].as_str().unwrap_or("no answer")
    )
}

/// One call to the operator API (`/v1/apps/<app>/<path>`): its JSON answer, or the error with
/// WeChat's errcode.
pub(crate) async fn operator(
    config: &Config,
    api: &ApiArgs,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = request(config, api, method, path)?;
    if let Some(body) = body {
        request = request.json(&body);
    }
    Ok(send(api, request).await?.json().await?)
}

/// How to print an answer as a table: the rows (a JSON pointer to an array, or to an object
/// whose entries are rows) and the columns (header, pointer within a row).
pub(crate) struct Table<'a> {
    pub(crate) rows: &'a str,
    pub(crate) columns: &'a [(&'a str, &'a str)],
}

/// Fields of an answer as `key  value` lines (nested keys joined with `.`).
pub(crate) const FIELDS: Table<'static> = Table {
    rows: "",
    columns: &[],
};

/// Prints the answer: its JSON with `--json`, else the table.
pub(crate) fn show(api: &ApiArgs, answer: &Value, table: &Table<'_>) -> anyhow::Result<()> {
    if api.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = match answer.pointer(table.rows) {
        Some(Value::Array(items)) if !table.columns.is_empty() => items
            .iter()
            .map(|item| {
                table
                    .columns
                    .iter()
                    .map(|(_, p)| item.pointer(p).map(cell).unwrap_or_default())
                    .collect()
            })
            .collect(),
        Some(Value::Object(map)) if !table.columns.is_empty() => {
            map.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect()
        }
        _ => {
            let mut lines = Vec::new();
            flatten("", answer, &mut lines);
            let width = lines
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(0);
            for (key, value) in lines {
                println!("{key:width$}  {value}");
            }
            return Ok(());
        }
    };
    let headers: Vec<&str> = table.columns.iter().map(|(h, _)| *h).collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.clone());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("(none)");
    }
    Ok(())
}

fn flatten(prefix: &str, value: &Value, lines: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, lines);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, lines);
            }
        }
        Value::String(s) => lines.push((prefix.to_owned(), s.clone())),
        other => lines.push((prefix.to_owned(), other.to_string())),
    }
}

/// Streams a file to the operator API with a progress bar on stderr; the JSON answer.
async fn upload(config: &Config, api: &ApiArgs, path: &str, file: &Path) -> anyhow::Result<Value> {
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let size = opened.metadata().await?.len();
    let started = Instant::now();
    let name = file.display().to_string();
    let chunks = futures::stream::unfold((opened, 0u64), move |(mut f, sent)| {
        let name = name.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 64 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => {
                    eprintln!();
                    None
                }
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    let rate = sent as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    eprint!(
                        "\r{}",
                        progress_bar(sent, size, &format!("bytes of {name}"), rate)
                    );
                    Some((Ok::<_, std::io::Error>(buf), (f, sent)))
                }
                Err(e) => Some((Err(e), (f, sent))),
            }
        }
    });
    let request = request(config, api, Method::POST, path)?
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(chunks));
    Ok(send(api, request).await?.json().await?)
}

/// The query of an upload.
fn upload_query(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", wxoa_wire::web::percent_encode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn file_name(file: &Path) -> anyhow::Result<&str> {
    file.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} has no usable file name", file.display()))
}

/// `wxoa material ...`
pub(crate) async fn material(
    config: &Config,
    api: &ApiArgs,
    command: MaterialCommand,
) -> anyhow::Result<()> {
    match command {
        MaterialCommand::Upload {
            file,
            kind,
            permanent,
            title,
            introduction,
        } => {
            let query = upload_query(&[
                ("type", Some(&kind)),
                ("filename", Some(file_name(&file)?)),
                ("title", title.as_deref()),
                ("introduction", introduction.as_deref()),
            ]);
            let route = if permanent { "materials" } else { "media" };
            let answer = upload(config, api, &format!("{route}?{query}"), &file).await?;
            show(api, &answer, &FIELDS)
        }
        MaterialCommand::Image { file } => {
            let query = upload_query(&[("filename", Some(file_name(&file)?))]);
            let answer = upload(config, api, &format!("images?{query}"), &file).await?;
            show(api, &answer, &FIELDS)
        }
        MaterialCommand::Get {
            media_id,
            temporary,
            output,
        } => {
            let route = if temporary { "media" } else { "materials" };
            let id = wxoa_wire::web::percent_encode(&media_id);
            let request = request(config, api, Method::GET, &format!("{route}/{id}"))?;
            let response = send(api, request).await?;
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
            if content_type.contains("json") {
                let answer: Value = response.json().await?;
                return show(api, &answer, &FIELDS);
            }
            let given = header(reqwest::header::CONTENT_DISPOSITION)
                .and_then(|d| {
                    d.split("filename=")
                        .nth(1)
                        .map(|n| n.trim_matches('"').to_owned())
                })
                .and_then(|n| Path::new(&n).file_name().map(|n| n.to_owned()));
            let target = output
                .or_else(|| given.map(Into::into))
                .unwrap_or_else(|| media_id.clone().into());
            let bytes = response.bytes().await?;
            tokio::fs::write(&target, &bytes)
                .await
                .with_context(|| format!("writing {}", target.display()))?;
            let answer = json!({"file": target.display().to_string(), "bytes": bytes.len(), "content_type": content_type});
            show(api, &answer, &FIELDS)
        }
        MaterialCommand::Delete { media_id } => {
            let id = wxoa_wire::web::percent_encode(&media_id);
            let path = format!("materials/{id}");
            let answer = operator(config, api, Method::DELETE, &path, None).await?;
            show(api, &answer, &FIELDS)
        }
        MaterialCommand::Count => {
            let answer = operator(config, api, Method::GET, "materials/count", None).await?;
            show(api, &answer, &FIELDS)
        }
        MaterialCommand::List {
            kind,
            offset,
            count,
        } => {
            let path = format!("materials?type={kind}&offset={offset}&count={count}");
            let answer = operator(config, api, Method::GET, &path, None).await?;
            let table = Table {
                rows: "/item",
                columns: &[
                    ("MEDIA_ID", "/media_id"),
                    ("NAME", "/name"),
                    ("UPDATED", "/update_time"),
                    ("URL", "/url"),
                ],
            };
            show(api, &answer, &table)
        }
    }
}

/// `wxoa qrcode ...`
pub(crate) async fn qrcode(
    config: &Config,
    api: &ApiArgs,
    command: QrcodeCommand,
) -> anyhow::Result<()> {
    let QrcodeCommand::Create {
        scene_id,
        scene_str,
        permanent,
        expire_seconds,
        output,
    } = command;
    let body = json!({"scene_id": scene_id, "scene_str": scene_str,
        "permanent": permanent, "expire_seconds": expire_seconds});
    let mut answer = operator(config, api, Method::POST, "qrcodes", Some(body)).await?;
    if let Some(target) = output {
        let url = answer["image_url"]
            .as_str()
            .context("the answer has no image_url")?;
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("fetching the image at {url}"))?;
        let bytes = response.bytes().await?;
        tokio::fs::write(&target, &bytes)
            .await
            .with_context(|| format!("writing {}", target.display()))?;
        answer["file"] = json!(target.display().to_string());
        answer["bytes"] = json!(bytes.len());
    }
    show(api, &answer, &FIELDS)
}

/// `wxoa drafts ...`
pub(crate) async fn drafts(
    config: &Config,
    api: &ApiArgs,
    command: DraftsCommand,
) -> anyhow::Result<()> {
    let articles = Table {
        rows: "/news_item",
        columns: &[
            ("TITLE", "/title"),
            ("AUTHOR", "/author"),
            ("THUMB", "/thumb_media_id"),
            ("URL", "/url"),
        ],
    };
    let (answer, table) = match command {
        DraftsCommand::Add { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let answer = operator(config, api, Method::POST, "drafts", Some(body)).await?;
            (answer, FIELDS)
        }
        DraftsCommand::Get { media_id } => {
            let path = format!("drafts/{}", wxoa_wire::web::percent_encode(&media_id));
            (
                operator(config, api, Method::GET, &path, None).await?,
                articles,
            )
        }
        DraftsCommand::Delete { media_id } => {
            let path = format!("drafts/{}", wxoa_wire::web::percent_encode(&media_id));
            (
                operator(config, api, Method::DELETE, &path, None).await?,
                FIELDS,
            )
        }
        DraftsCommand::Count => (
            operator(config, api, Method::GET, "drafts/count", None).await?,
            FIELDS,
        ),
        DraftsCommand::List { offset, count } => {
            let path = format!("drafts?offset={offset}&count={count}&no_content=true");
            let answer = operator(config, api, Method::GET, &path, None).await?;
            let table = Table {
                rows: "/item",
                columns: &[
                    ("MEDIA_ID", "/media_id"),
                    ("FIRST TITLE", "/content/news_item/0/title"),
                    ("UPDATED", "/update_time"),
                ],
            };
            (answer, table)
        }
        DraftsCommand::Publish {
            media_id,
            wait,
            timeout,
        } => {
            let path = format!(
                "drafts/{}/publish",
                wxoa_wire::web::percent_encode(&media_id)
            );
            let submitted = operator(config, api, Method::POST, &path, None).await?;
            if !wait {
                return show(api, &submitted, &FIELDS);
            }
            let publish_id = submitted["publish_id"]
                .as_str()
                .context("the answer has no publish_id")?;
            let ended = publish_wait(config, api, publish_id, Duration::from_secs(timeout)).await?;
            show_publish_job(api, &ended)?;
            if publish_failed(&ended) {
                bail!(
                    "publish job {publish_id} ended: {} (articles {})",
                    publish_status_meaning(ended["publish_status"].as_i64().unwrap_or(-1)),
                    ended["fail_idx"]
                );
            }
            return Ok(());
        }
    };
    show(api, &answer, &table)
}

/// A publish job's path.
fn publish_job_path(publish_id: &str) -> String {
    format!(
        "publish-jobs/{}",
        wxoa_wire::web::percent_encode(publish_id)
    )
}

/// Polls a publish job until it is no longer publishing (status 1), at most `timeout`.
async fn publish_wait(
    config: &Config,
    api: &ApiArgs,
    publish_id: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let path = publish_job_path(publish_id);
    eprintln!("publish job {publish_id} submitted");
    loop {
        let job = operator(config, api, Method::GET, &path, None)
            .await
            .with_context(|| format!("asking for publish job {publish_id}"))?;
        if job["publish_status"] != 1 {
            eprintln!();
            return Ok(job);
        }
        if started.elapsed() > timeout {
            bail!("publish job {publish_id} still publishing after {timeout:?}");
        }
        eprint!(
            "\rpublishing {publish_id}: {:.0}s",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What WeChat's `publish_status` means.
fn publish_status_meaning(status: i64) -> &'static str {
    match status {
        0 => "published",
        1 => "publishing",
        2 => "failed: originality check",
        3 => "failed",
        4 => "refused by review",
        5 => "published, then every article deleted",
        6 => "published, then every article banned",
        _ => "unknown status",
    }
}

/// Prints a publish job with its status in words: once published, a line and each article's
/// URL; otherwise its fields (the failed articles in `fail_idx`).
fn show_publish_job(api: &ApiArgs, job: &Value) -> anyhow::Result<()> {
    let status = job["publish_status"].as_i64().unwrap_or(-1);
    let mut answer = job.clone();
    answer["status"] = json!(publish_status_meaning(status));
    if status != 0 || api.json {
        return show(api, &answer, &FIELDS);
    }
    println!(
        "publish job {}: published, article_id {}",
        job["publish_id"].as_str().unwrap_or_default(),
        job["article_id"].as_str().unwrap_or_default()
    );
    let table = Table {
        rows: "/article_detail/item",
        columns: &[("IDX", "/idx"), ("URL", "/article_url")],
    };
    show(api, &answer, &table)
}

/// Whether a publish job ended without publishing (originality, general or review failure).
fn publish_failed(job: &Value) -> bool {
    (2..=4).contains(&job["publish_status"].as_i64().unwrap_or(-1))
}

/// `wxoa published ...`
pub(crate) async fn published(
    config: &Config,
    api: &ApiArgs,
    command: PublishedCommand,
) -> anyhow::Result<()> {
    let id = wxoa_wire::web::percent_encode;
    match command {
        PublishedCommand::List { offset, count } => {
            let path = format!("published?offset={offset}&count={count}&no_content=true");
            let answer = operator(config, api, Method::GET, &path, None).await?;
            let table = Table {
                rows: "/item",
                columns: &[
                    ("ARTICLE_ID", "/article_id"),
                    ("FIRST TITLE", "/content/news_item/0/title"),
                    ("URL", "/content/news_item/0/url"),
                    ("UPDATED", "/update_time"),
                ],
            };
            show(api, &answer, &table)
        }
        PublishedCommand::Get { article_id } => {
            let path = format!("published/{}", id(&article_id));
            let answer = operator(config, api, Method::GET, &path, None).await?;
            let table = Table {
                rows: "/news_item",
                columns: &[
                    ("TITLE", "/title"),
                    ("AUTHOR", "/author"),
                    ("DELETED", "/is_deleted"),
                    ("URL", "/url"),
                ],
            };
            show(api, &answer, &table)
        }
        PublishedCommand::Delete { article_id, index } => {
            let mut path = format!("published/{}", id(&article_id));
            if let Some(index) = index {
                path.push_str(&format!("?index={index}"));
            }
            let answer = operator(config, api, Method::DELETE, &path, None).await?;
            show(api, &answer, &FIELDS)
        }
        PublishedCommand::Status { publish_id } => {
            let path = publish_job_path(&publish_id);
            let job = operator(config, api, Method::GET, &path, None).await?;
            show_publish_job(api, &job)
        }
    }
}

/// `wxoa comments ...` on the article `(msg_data_id, index)`.
pub(crate) async fn comments(
    config: &Config,
    api: &ApiArgs,
    (msg_data_id, index): (u64, u32),
    command: CommentsCommand,
) -> anyhow::Result<()> {
    let base = format!("articles/{msg_data_id}/{index}/comments");
    let (method, path, body) = match command {
        CommentsCommand::Open => (Method::POST, format!("{base}/open"), None),
        CommentsCommand::Close => (Method::POST, format!("{base}/close"), None),
        CommentsCommand::List { begin, count, kind } => {
            let path = format!("{base}?begin={begin}&count={count}&type={kind}");
            let answer = operator(config, api, Method::GET, &path, None).await?;
            let table = Table {
                rows: "/comment",
                columns: &[
                    ("ID", "/user_comment_id"),
                    ("OPENID", "/openid"),
                    ("ELECTED", "/comment_type"),
                    ("CONTENT", "/content"),
                    ("REPLY", "/reply/content"),
                ],
            };
            return show(api, &answer, &table);
        }
        CommentsCommand::Elect { comment } => {
            (Method::POST, format!("{base}/{comment}/elect"), None)
        }
        CommentsCommand::Unelect { comment } => {
            (Method::DELETE, format!("{base}/{comment}/elect"), None)
        }
        CommentsCommand::Delete { comment } => (Method::DELETE, format!("{base}/{comment}"), None),
        CommentsCommand::Reply { comment, content } => (
            Method::PUT,
            format!("{base}/{comment}/reply"),
            Some(json!({ "content": content })),
        ),
        CommentsCommand::DeleteReply { comment } => {
            (Method::DELETE, format!("{base}/{comment}/reply"), None)
        }
    };
    let answer = operator(config, api, method, &path, body).await?;
    show(api, &answer, &FIELDS)
}
