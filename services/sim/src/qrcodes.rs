//! QR codes with parameters (带参数二维码): `qrcode/create` (temporary and permanent, numeric
//! and string scenes), the image at `showqrcode?ticket=` (a PNG drawn from the ticket, not a
//! scannable code), and `/_sim/qrcodes`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use crate::SimError;
use crate::mass::control_app;
use crate::paths;
use crate::rest::authorized;
use crate::state::{Shared, random_string};

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Life of a temporary code without `expire_seconds`.
pub(crate) const DEFAULT_EXPIRE_SECS: i64 = 60;
/// Longest life of a temporary code (30 days).
pub(crate) const MAX_EXPIRE_SECS: i64 = 2_592_000;
/// Largest permanent numeric scene.
pub(crate) const MAX_PERMANENT_SCENE_ID: u64 = 100_000;
/// Permanent codes one app may have.
pub(crate) const MAX_PERMANENT: usize = 100_000;
/// Longest `scene_str`, in characters.
pub(crate) const MAX_SCENE_STR_CHARS: usize = 64;
/// The URL prefix of a code's content.
const URL_PREFIX: &str = "http://weixin.qq.com/q/";

/// One issued code.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QrCode {
    pub(crate) ticket: String,
    pub(crate) action_name: String,
    /// `{"scene_id":n}` or `{"scene_str":"..."}`.
    pub(crate) scene: Value,
    pub(crate) url: String,
    pub(crate) created_ms: i64,
    /// `None` for permanent codes.
    pub(crate) expires_ms: Option<i64>,
}

/// The codes of one app.
#[derive(Default)]
struct QrApp {
    codes: Vec<QrCode>,
    /// Permanent scene (`id:<n>` / `str:<s>`) → index in `codes`.
    permanent: HashMap<String, usize>,
}

/// QR codes of every app.
#[derive(Default)]
pub(crate) struct QrStore {
    apps: HashMap<String, QrApp>,
    /// ticket → (appid, index).
    tickets: HashMap<String, (String, usize)>,
}

/// A checked `qrcode/create` request.
#[derive(Debug)]
pub(crate) struct QrRequest {
    action_name: String,
    scene: Value,
    /// The permanent-scene key, `None` for temporary codes.
    permanent_key: Option<String>,
    expire_secs: Option<i64>,
}

/// Checks a `qrcode/create` body as WeChat: a known `action_name` and the scene it needs
/// (40097 otherwise): temporary `scene_id` 1..=4294967295, permanent 1..=100000, `scene_str`
/// 1..=64 characters; `expire_seconds` (temporary codes) 1..=2592000, default 60.
pub(crate) fn check_request(body: &Value) -> Result<QrRequest, SimError> {
    let invalid = || SimError::api(40097);
    let action_name = body
        .get("action_name")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let (permanent, numeric) = match action_name {
        "QR_SCENE" => (false, true),
        "QR_STR_SCENE" => (false, false),
        "QR_LIMIT_SCENE" => (true, true),
        "QR_LIMIT_STR_SCENE" => (true, false),
        _ => return Err(invalid()),
    };
    let scene = body
        .get("action_info")
        .and_then(|i| i.get("scene"))
        .filter(|s| s.is_object())
        .ok_or_else(invalid)?;
    let (scene, key) = if numeric {
        let id = match scene.get("scene_id") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(invalid)?;
        let max = if permanent {
            MAX_PERMANENT_SCENE_ID
        } else {
            u64::from(u32::MAX)
        };
        if !(1..=max).contains(&id) {
            return Err(invalid());
        }
        (json!({ "scene_id": id }), format!("id:{id}"))
    } else {
        let text = scene
            .get("scene_str")
            .and_then(Value::as_str)
            .ok_or_else(invalid)?;
        let chars = text.chars().count();
        if !(1..=MAX_SCENE_STR_CHARS).contains(&chars) {
            return Err(invalid());
        }
        (json!({ "scene_str": text }), format!("str:{text}"))
    };
    let expire_secs = if permanent {
        None
    } else {
        let secs = match body.get("expire_seconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRE_SECS,
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(invalid)?,
        };
        if !(1..=MAX_EXPIRE_SECS).contains(&secs) {
            return Err(invalid());
        }
        Some(secs)
    };
    Ok(QrRequest {
        action_name: action_name.to_owned(),
        scene,
        permanent_key: permanent.then_some(key),
        expire_secs,
    })
}

impl QrStore {
    /// Issues a code; a permanent scene the app already has answers its code again. More than
    /// [`MAX_PERMANENT`] permanent codes: 45009.
    pub(crate) fn create(
        &mut self,
        appid: &str,
        request: QrRequest,
        now_ms: i64,
    ) -> Result<QrCode, SimError> {
        let app = self.apps.entry(appid.to_owned()).or_default();
        if let Some(key) = &request.permanent_key {
            if let Some(&index) = app.permanent.get(key) {
                return Ok(app.codes[index].clone());
            }
            if app.permanent.len() >= MAX_PERMANENT {
                return Err(SimError::api(45009));
            }
        }
        let code = random_string(22);
        let ticket = format!("gQ{}==", random_string(62));
        let qr = QrCode {
            ticket: ticket.clone(),
            action_name: request.action_name,
            scene: request.scene,
            url: format!("{URL_PREFIX}{code}"),
            created_ms: now_ms,
            expires_ms: request
                .expire_secs
                .map(|s| now_ms.saturating_add(s.saturating_mul(1000))),
        };
        let index = app.codes.len();
        app.codes.push(qr.clone());
        if let Some(key) = request.permanent_key {
            app.permanent.insert(key, index);
        }
        self.tickets.insert(ticket, (appid.to_owned(), index));
        Ok(qr)
    }

    /// The live code of a ticket and its app.
    pub(crate) fn live(&self, ticket: &str, now_ms: i64) -> Option<(&str, &QrCode)> {
        let (appid, index) = self.tickets.get(ticket)?;
        let code = self.apps.get(appid)?.codes.get(*index)?;
        code.expires_ms
            .is_none_or(|e| e > now_ms)
            .then_some((appid.as_str(), code))
    }

    /// Permanent codes of an app.
    pub(crate) fn permanent_count(&self, appid: &str) -> usize {
        self.apps.get(appid).map_or(0, |a| a.permanent.len())
    }

    fn codes(&self, appid: &str) -> &[QrCode] {
        self.apps.get(appid).map_or(&[], |a| &a.codes)
    }
}

/// `POST /cgi-bin/qrcode/create`: `{"ticket","expire_seconds"?,"url"}`.
pub(crate) async fn create(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::QRCODE_CREATE).await?;
    let body: Value = serde_json::from_slice(&body).map_err(|_| SimError::api(47001))?;
    let request = check_request(&body)?;
    let mut state = sim.lock();
    let now = state.now_ms();
    let code = state.qrcodes.create(&appid, request, now)?;
    let mut answer = json!({ "ticket": code.ticket, "url": code.url });
    if let Some(expires) = code.expires_ms {
        answer["expire_seconds"] = json!((expires - code.created_ms) / 1000);
    }
    Ok(Json(answer))
}

/// `GET /cgi-bin/showqrcode?ticket=`: the PNG of a live code; 404 for an unknown or expired
/// ticket.
pub(crate) async fn show(State(sim): State<Arc<Shared>>, Query(q): Params) -> Response {
    let ticket = q.get("ticket").map(String::as_str).unwrap_or("");
    let appid = {
        let state = sim.lock();
        let now = state.now_ms();
        state.qrcodes.live(ticket, now).map(|(a, _)| a.to_owned())
    };
    if let Err(e) = sim.enter(appid.as_deref(), paths::SHOW_QRCODE, false).await {
        return e.into_response();
    }
    if appid.is_none() {
        return (StatusCode::NOT_FOUND, "unknown or expired ticket").into_response();
    }
    let png = png_for(ticket);
    ([(header::CONTENT_TYPE, "image/png")], png).into_response()
}

/// `GET /_sim/qrcodes?appid=`: `{appid, permanent, codes: [{ticket, action_name, scene, url,
/// created_ms, expires_ms, expired}]}`.
pub(crate) async fn list(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let state = sim.lock();
    let now = state.now_ms();
    let codes: Vec<Value> = state
        .qrcodes
        .codes(&appid)
        .iter()
        .map(|c| {
            let mut v = json!(c);
            v["expired"] = json!(c.expires_ms.is_some_and(|e| e <= now));
            v
        })
        .collect();
    Ok(Json(json!({
        "appid": appid,
        "permanent": state.qrcodes.permanent_count(&appid),
        "codes": codes,
    })))
}

// ---- PNG ----------------------------------------------------------------------------------

/// Modules per side of the drawn pattern, and pixels per module.
const MODULES: usize = 25;
const SCALE: usize = 4;
/// A white border of this many modules.
const QUIET: usize = 2;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    if raw.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    out.extend_from_slice(&adler32(raw).to_be_bytes());
    out
}

/// A grayscale PNG that looks like a QR code: three finder squares and modules derived from
/// the ticket (the same ticket always gives the same image).
pub(crate) fn png_for(ticket: &str) -> Vec<u8> {
    let side = (MODULES + 2 * QUIET) * SCALE;
    let seed = crate::fnv1a64(ticket.as_bytes());
    let dark = |mx: usize, my: usize| -> bool {
        let finder = |ox: usize, oy: usize| {
            let (dx, dy) = (mx.wrapping_sub(ox), my.wrapping_sub(oy));
            (dx < 7 && dy < 7).then(|| {
                let ring = dx == 0 || dy == 0 || dx == 6 || dy == 6;
                let core = (2..=4).contains(&dx) && (2..=4).contains(&dy);
                ring || core
            })
        };
        if let Some(d) = finder(0, 0)
            .or_else(|| finder(MODULES - 7, 0))
            .or_else(|| finder(0, MODULES - 7))
        {
            return d;
        }
        let n = (my * MODULES + mx) as u64;
        let mixed =
            (seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (mixed >> 61) & 1 == 1
    };
    let mut raw = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        raw.push(0); // filter: none
        for x in 0..side {
            let (mx, my) = (
                (x / SCALE).wrapping_sub(QUIET),
                (y / SCALE).wrapping_sub(QUIET),
            );
            let black = mx < MODULES && my < MODULES && dark(mx, my);
            raw.push(if black { 0 } else { 255 });
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let side32 = u32::try_from(side).unwrap_or(0);
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&side32.to_be_bytes());
    // 8-bit grayscale, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    png
}
