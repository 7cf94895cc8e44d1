//! Template messages (模板消息): the industry, the private templates (at most 25 in use),
//! `message/template/send` with its `client_msg_id` de-duplication and daily quota, the optional
//! `TEMPLATESENDJOBFINISH` callbacks, and the control calls `/_sim/templates` and
//! `/_sim/template/settings`.
//!
//! A send is O(1) under the lock: a template lookup among at most 25, a follower check, a
//! `HashMap` lookup for the `client_msg_id`, and a push onto the app's record list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wxoa_runtime::config::AccountKind;
use wxoa_wire::reply::cdata;

use crate::SimError;
use crate::callback::{self, Outcome};
use crate::mass::{DEFAULT_FINISH_DELAY_MS, control_app};
use crate::paths;
use crate::rest::authorized;
use crate::state::Shared;

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Templates one app may have in use.
const MAX_TEMPLATES: usize = 25;
/// Template sends per app and China day (settable with `daily_quota`).
pub(crate) const DEFAULT_DAILY_QUOTA: u64 = 100_000;
/// Records `GET /_sim/templates` lists at most (the newest).
const MAX_LISTED: usize = 10_000;
/// The first template `msgid`.
const FIRST_MSGID: u64 = 200_000_001;

/// WeChat's template industries: id `i` is entry `i - 1`, (first class, second class).
const INDUSTRIES: &[(&str, &str)] = &[
    ("IT科技", "互联网|电子商务"),
    ("IT科技", "IT软件与服务"),
    ("IT科技", "IT硬件与设备"),
    ("IT科技", "电子技术"),
    ("IT科技", "通信与运营商"),
    ("IT科技", "网络游戏"),
    ("金融业", "银行"),
    ("金融业", "基金理财信托"),
    ("金融业", "保险"),
    ("餐饮", "餐饮"),
    ("酒店旅游", "酒店"),
    ("酒店旅游", "旅游"),
    ("运输与仓储", "快递"),
    ("运输与仓储", "物流"),
    ("运输与仓储", "仓储"),
    ("教育", "培训"),
    ("教育", "院校"),
    ("政府与公共事业", "学术科研"),
    ("政府与公共事业", "交警"),
    ("政府与公共事业", "博物馆"),
    ("政府与公共事业", "公共事业|非盈利机构"),
    ("医药护理", "医药医疗"),
    ("医药护理", "护理美容"),
    ("医药护理", "保健与卫生"),
    ("交通工具", "汽车相关"),
    ("交通工具", "摩托车相关"),
    ("交通工具", "火车相关"),
    ("交通工具", "飞机相关"),
    ("房地产", "建筑"),
    ("房地产", "物业"),
    ("消费品", "消费品"),
    ("商业服务", "法律"),
    ("商业服务", "会展"),
    ("商业服务", "中介服务"),
    ("商业服务", "认证"),
    ("商业服务", "审计"),
    ("文体娱乐", "传媒"),
    ("文体娱乐", "体育"),
    ("文体娱乐", "娱乐休闲"),
    ("印刷", "印刷"),
    ("其它", "其它"),
];

/// A private template.
#[derive(Debug, Clone, Serialize)]
struct Template {
    template_id: String,
    title: String,
    primary_industry: String,
    deputy_industry: String,
    content: String,
    example: String,
}

/// One delivered template message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TemplateSend {
    openid: String,
    template_id: String,
    msgid: u64,
    client_msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogram: Option<Value>,
    data: Value,
    at_ms: i64,
}

/// The template state of one app.
#[derive(Default)]
pub(crate) struct TemplateApp {
    /// Industry ids (1-based) once set.
    industry: Option<(usize, usize)>,
    templates: Vec<Template>,
    sends: Vec<TemplateSend>,
    /// client_msg_id → the msgid of its send.
    by_client: HashMap<String, u64>,
    /// Sends answered from `by_client` (not sent again).
    deduplicated: u64,
    day: i64,
    day_sends: u64,
    finish_posted: u64,
    finish_failed: u64,
}

/// Runtime settings (`/_sim/template/settings`).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct TemplateSettings {
    finish_events: bool,
    finish_delay_ms: u64,
    daily_quota: u64,
}

/// Templates of every app.
pub(crate) struct TemplateStore {
    apps: HashMap<String, TemplateApp>,
    settings: TemplateSettings,
    next_msgid: u64,
}

impl Default for TemplateStore {
    fn default() -> TemplateStore {
        TemplateStore {
            apps: HashMap::new(),
            settings: TemplateSettings {
                finish_events: false,
                finish_delay_ms: DEFAULT_FINISH_DELAY_MS,
                daily_quota: DEFAULT_DAILY_QUOTA,
            },
            next_msgid: FIRST_MSGID,
        }
    }
}

impl TemplateStore {
    fn app(&mut self, appid: &str) -> &mut TemplateApp {
        if !self.apps.contains_key(appid) {
            self.apps.insert(appid.to_owned(), TemplateApp::default());
        }
        self.apps.get_mut(appid).expect("inserted above")
    }
}

/// A request body; bad JSON (or a field of the wrong type) is 47001.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, SimError> {
    serde_json::from_slice(body).map_err(|_| SimError::api(47001))
}

fn ok() -> Answer {
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// An industry id given as a number or a numeric string: 1..=41, else 40102.
fn industry_id(value: Option<&Value>) -> Result<usize, SimError> {
    let id = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    id.and_then(|i| usize::try_from(i).ok())
        .filter(|i| (1..=INDUSTRIES.len()).contains(i))
        .ok_or_else(|| SimError::api(40102))
}

fn industry_json(id: Option<usize>) -> Value {
    let (first, second) = id.map_or(("", ""), |i| INDUSTRIES[i - 1]);
    json!({ "first_class": first, "second_class": second })
}

/// `POST /cgi-bin/template/api_set_industry {"industry_id1","industry_id2"}`: ids 1..=41
/// (else 40102).
pub(crate) async fn set_industry(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TEMPLATE_SET_INDUSTRY).await?;
    let body: Value = parse(&body)?;
    let primary = industry_id(body.get("industry_id1"))?;
    let secondary = industry_id(body.get("industry_id2"))?;
    sim.lock().templates.app(&appid).industry = Some((primary, secondary));
    ok()
}

/// `GET /cgi-bin/template/get_industry` → `{"primary_industry":{"first_class","second_class"},
/// "secondary_industry":{...}}` (empty strings until set).
pub(crate) async fn get_industry(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::TEMPLATE_GET_INDUSTRY).await?;
    let industry = sim.lock().templates.app(&appid).industry;
    Ok(Json(json!({
        "primary_industry": industry_json(industry.map(|i| i.0)),
        "secondary_industry": industry_json(industry.map(|i| i.1)),
    })))
}

#[derive(Deserialize)]
struct AddRequest {
    #[serde(default)]
    template_id_short: String,
    #[serde(default)]
    keyword_name_list: Option<Vec<String>>,
}

fn random_template_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..43)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// `POST /cgi-bin/template/api_add_template {"template_id_short","keyword_name_list"?}` →
/// `{"errcode":0,"errmsg":"ok","template_id"}`; empty short id 40097, 25 in use 45026.
pub(crate) async fn add_template(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TEMPLATE_ADD).await?;
    let request: AddRequest = parse(&body)?;
    if request.template_id_short.is_empty() {
        return Err(SimError::api(40097));
    }
    let keywords = request
        .keyword_name_list
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| vec!["项目".to_owned(), "时间".to_owned()]);
    let mut content = String::from("{{first.DATA}}\n");
    let mut example = String::new();
    for (i, name) in keywords.iter().enumerate() {
        content.push_str(&format!("{name}：{{{{keyword{}.DATA}}}}\n", i + 1));
        example.push_str(&format!("{name}：示例{}\n", i + 1));
    }
    content.push_str("{{remark.DATA}}");
    let mut state = sim.lock();
    let app = state.templates.app(&appid);
    if app.templates.len() >= MAX_TEMPLATES {
        return Err(SimError::api(45026));
    }
    let (primary, deputy) = app.industry.map_or(("", ""), |(i, _)| INDUSTRIES[i - 1]);
    let template_id = random_template_id();
    app.templates.push(Template {
        template_id: template_id.clone(),
        title: request.template_id_short,
        primary_industry: primary.to_owned(),
        deputy_industry: deputy.to_owned(),
        content,
        example: example.trim_end().to_owned(),
    });
    drop(state);
    Ok(Json(
        json!({ "errcode": 0, "errmsg": "ok", "template_id": template_id }),
    ))
}

/// `GET /cgi-bin/template/get_all_private_template` → `{"template_list":[{template_id, title,
/// primary_industry, deputy_industry, content, example}]}`.
pub(crate) async fn list_templates(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::TEMPLATE_LIST).await?;
    let list = sim.lock().templates.app(&appid).templates.clone();
    Ok(Json(json!({ "template_list": list })))
}

#[derive(Deserialize)]
struct DeleteRequest {
    #[serde(default)]
    template_id: String,
}

/// `POST /cgi-bin/template/del_private_template {"template_id"}`: unknown 40037.
pub(crate) async fn delete_template(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::TEMPLATE_DELETE).await?;
    let request: DeleteRequest = parse(&body)?;
    let mut state = sim.lock();
    let templates = &mut state.templates.app(&appid).templates;
    let at = templates
        .iter()
        .position(|t| t.template_id == request.template_id)
        .ok_or_else(|| SimError::api(40037))?;
    templates.remove(at);
    drop(state);
    ok()
}

#[derive(Deserialize)]
struct SendRequest {
    #[serde(default)]
    touser: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    miniprogram: Option<Value>,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

fn sent(msgid: u64) -> Answer {
    Ok(Json(
        json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }),
    ))
}

/// `POST /cgi-bin/message/template/send {"touser","template_id","url"?,"miniprogram"?,
/// "client_msg_id"?,"data":{...}}` → `{"errcode":0,"errmsg":"ok","msgid"}`.
pub(crate) async fn send(State(sim): State<Arc<Shared>>, Query(q): Params, body: Bytes) -> Answer {
    let appid = authorized(&sim, &q, paths::TEMPLATE_SEND).await?;
    if !sim
        .app(&appid)
        .is_some_and(|a| a.verified && a.kind == AccountKind::Service)
    {
        return Err(SimError::api(48001));
    }
    let request: SendRequest = parse(&body)?;
    if request.touser.is_empty() {
        return Err(SimError::api(40003));
    }
    let data = request
        .data
        .filter(Value::is_object)
        .ok_or_else(|| SimError::api(47001))?;
    let client_msg_id = request.client_msg_id.filter(|c| !c.is_empty());
    let mut guard = sim.lock();
    let state = &mut *guard;
    let (day, now) = (state.clock.day(), state.now_ms());
    let settings = state.templates.settings;
    let msgid = state.templates.next_msgid;
    let following = state
        .followers
        .get(&appid)
        .is_some_and(|f| f.following_uid(&request.touser).is_some());
    let app = state.templates.app(&appid);
    if let Some(first) = client_msg_id.as_ref().and_then(|c| app.by_client.get(c)) {
        let first = *first;
        app.deduplicated += 1;
        return sent(first);
    }
    if !app
        .templates
        .iter()
        .any(|t| t.template_id == request.template_id)
    {
        return Err(SimError::api(40037));
    }
    if !following {
        return Err(SimError::api(43004));
    }
    if app.day != day {
        app.day = day;
        app.day_sends = 0;
    }
    if app.day_sends >= settings.daily_quota {
        return Err(SimError::api(45009));
    }
    app.day_sends += 1;
    if let Some(c) = &client_msg_id {
        app.by_client.insert(c.clone(), msgid);
    }
    let openid = settings.finish_events.then(|| request.touser.clone());
    app.sends.push(TemplateSend {
        openid: request.touser,
        template_id: request.template_id,
        msgid,
        client_msg_id,
        url: request.url,
        miniprogram: request.miniprogram,
        data,
        at_ms: now,
    });
    state.templates.next_msgid += 1;
    drop(guard);
    if let Some(openid) = openid {
        tokio::spawn(finish(
            sim.clone(),
            appid,
            openid,
            msgid,
            settings.finish_delay_ms,
        ));
    }
    sent(msgid)
}

/// The `TEMPLATESENDJOBFINISH` event of a send, from the recipient.
fn finish_xml(original_id: &str, openid: &str, create_time: i64, msgid: u64) -> String {
    let mut x = String::with_capacity(320);
    x.push_str("<xml>");
    cdata(&mut x, "ToUserName", original_id);
    cdata(&mut x, "FromUserName", openid);
    x.push_str(&format!("<CreateTime>{create_time}</CreateTime>"));
    cdata(&mut x, "MsgType", "event");
    cdata(&mut x, "Event", "TEMPLATESENDJOBFINISH");
    x.push_str(&format!("<MsgID>{msgid}</MsgID>"));
    cdata(&mut x, "Status", "success");
    x.push_str("</xml>");
    x
}

/// Posts the `TEMPLATESENDJOBFINISH` event after the delay, with WeChat's timeout and tries.
async fn finish(sim: Arc<Shared>, appid: String, openid: String, msgid: u64, delay_ms: u64) {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let Some(app) = sim.app(&appid) else {
        return;
    };
    let now_secs = sim.lock().now_ms() / 1000;
    let xml = finish_xml(&app.original_id, &openid, now_secs, msgid);
    let outcome = callback::post_event(&sim, app, xml, now_secs, "TEMPLATESENDJOBFINISH").await;
    let failed = matches!(outcome, Outcome::Failed | Outcome::Invalid);
    let mut state = sim.lock();
    let app = state.templates.app(&appid);
    app.finish_posted += 1;
    if failed {
        app.finish_failed += 1;
    }
}

// ---- control API ----

/// `GET /_sim/templates?appid=&summary=true` → `{"appid","sends","distinct_openids",
/// "duplicates","deduplicated","finish_posted","finish_failed","sent_today"}`; without
/// `summary` → `{"appid","sends":[records, newest last, at most 10 000],"total","truncated"}`.
pub(crate) async fn sends(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let summary = q
        .get("summary")
        .is_some_and(|s| matches!(s.as_str(), "true" | "1"));
    let mut state = sim.lock();
    let day = state.clock.day();
    let app = state.templates.app(&appid);
    if summary {
        let mut openids = HashSet::new();
        let mut pairs = HashSet::new();
        for s in &app.sends {
            openids.insert(s.openid.as_str());
            pairs.insert((s.openid.as_str(), s.template_id.as_str()));
        }
        let answer = json!({
            "appid": appid,
            "sends": app.sends.len(),
            "distinct_openids": openids.len(),
            "duplicates": app.sends.len() - pairs.len(),
            "deduplicated": app.deduplicated,
            "finish_posted": app.finish_posted,
            "finish_failed": app.finish_failed,
            "sent_today": if app.day == day { app.day_sends } else { 0 },
        });
        return Ok(Json(answer));
    }
    let total = app.sends.len();
    let listed = app.sends[total.saturating_sub(MAX_LISTED)..].to_vec();
    drop(state);
    Ok(Json(json!({
        "appid": appid,
        "sends": listed,
        "total": total,
        "truncated": total > MAX_LISTED,
    })))
}

/// `DELETE /_sim/templates?appid=` → `{"appid","cleared":n}`: forgets the records, the
/// `client_msg_id`s and the finish counters (not the day's quota use).
pub(crate) async fn clear_sends(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let mut state = sim.lock();
    let app = state.templates.app(&appid);
    let cleared = std::mem::take(&mut app.sends).len();
    app.by_client = HashMap::new();
    app.deduplicated = 0;
    app.finish_posted = 0;
    app.finish_failed = 0;
    drop(state);
    Ok(Json(json!({ "appid": appid, "cleared": cleared })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    #[serde(default)]
    finish_events: Option<bool>,
    #[serde(default)]
    finish_delay_ms: Option<u64>,
    #[serde(default)]
    daily_quota: Option<u64>,
}

/// `POST /_sim/template/settings {"finish_events"?, "finish_delay_ms"?, "daily_quota"?}` → the
/// settings.
pub(crate) async fn settings(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: SettingsRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    if request.finish_delay_ms.is_some_and(|d| d > 600_000) {
        return Err(SimError::BadRequest(
            "finish_delay_ms must be at most 600000".into(),
        ));
    }
    let mut state = sim.lock();
    let settings = &mut state.templates.settings;
    if let Some(on) = request.finish_events {
        settings.finish_events = on;
    }
    if let Some(delay) = request.finish_delay_ms {
        settings.finish_delay_ms = delay;
    }
    if let Some(quota) = request.daily_quota {
        settings.daily_quota = quota;
    }
    let settings = *settings;
    drop(state);
    Ok(Json(json!(settings)))
}
