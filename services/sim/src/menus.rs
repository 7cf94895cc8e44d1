//! Custom menus (自定义菜单): `menu/create` with WeChat's button rules, `menu/get`,
//! `get_current_selfmenu_info`, `menu/delete`, and the conditional (personalised) menus
//! `menu/addconditional`, `menu/delconditional` and `menu/trymatch`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::SimError;
use crate::paths;
use crate::rest::authorized;
use crate::state::Shared;

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// Top-level buttons of a menu.
const MAX_BUTTONS: usize = 3;
/// Sub-buttons of one top-level button.
const MAX_SUB_BUTTONS: usize = 5;
/// Bytes of a top-level button name.
const MAX_NAME_BYTES: usize = 16;
/// Bytes of a sub-button name.
const MAX_SUB_NAME_BYTES: usize = 60;
/// Bytes of a `key`.
const MAX_KEY_BYTES: usize = 128;
/// Bytes of a `url`.
const MAX_URL_BYTES: usize = 1024;
/// Conditional menus one app may have.
const MAX_CONDITIONAL: usize = 20;
/// The first menuid handed out.
const FIRST_MENUID: u64 = 400_000_001;

/// The button types that need a `key`.
const KEY_TYPES: &[&str] = &[
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
];
/// The fields a `matchrule` may set.
const MATCH_FIELDS: &[&str] = &[
    "tag_id",
    "group_id",
    "sex",
    "country",
    "province",
    "city",
    "client_platform_type",
    "language",
];

/// A stored menu.
#[derive(Debug, Clone)]
struct Menu {
    menuid: u64,
    button: Value,
    matchrule: Option<Value>,
}

/// The menus of one app.
#[derive(Default)]
struct MenuApp {
    default: Option<Menu>,
    conditional: Vec<Menu>,
}

/// Menus of every app.
#[derive(Default)]
pub(crate) struct MenuStore {
    apps: HashMap<String, MenuApp>,
    issued: u64,
}

impl MenuStore {
    fn next_id(&mut self) -> u64 {
        self.issued += 1;
        FIRST_MENUID + self.issued - 1
    }
}

/// The errcodes of one button level: (type, name, key, url size, url domain).
struct Codes {
    kind: i64,
    name: i64,
    key: i64,
    url_size: i64,
    url_domain: i64,
    max_name: usize,
}

const TOP: Codes = Codes {
    kind: 40017,
    name: 40018,
    key: 40019,
    url_size: 40020,
    url_domain: 40055,
    max_name: MAX_NAME_BYTES,
};
const SUB: Codes = Codes {
    kind: 40024,
    name: 40025,
    key: 40026,
    url_size: 40027,
    url_domain: 40054,
    max_name: MAX_SUB_NAME_BYTES,
};

fn str_field<'a>(button: &'a Value, key: &str) -> &'a str {
    button.get(key).and_then(Value::as_str).unwrap_or("")
}

fn check_url(url: &str, codes: &Codes) -> Result<(), SimError> {
    if url.is_empty() || url.len() > MAX_URL_BYTES {
        return Err(SimError::api(codes.url_size));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(SimError::api(codes.url_domain));
    }
    Ok(())
}

/// A button with a `type` (a leaf).
fn check_leaf(button: &Value, codes: &Codes) -> Result<(), SimError> {
    let kind = str_field(button, "type");
    match kind {
        k if KEY_TYPES.contains(&k) => {
            let key = str_field(button, "key");
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                return Err(SimError::api(codes.key));
            }
        }
        "view" => check_url(str_field(button, "url"), codes)?,
        "miniprogram" => {
            if str_field(button, "appid").is_empty() || str_field(button, "pagepath").is_empty() {
                return Err(SimError::api(40097));
            }
            check_url(str_field(button, "url"), codes)?;
        }
        "media_id" | "view_limited" => {
            if str_field(button, "media_id").is_empty() {
                return Err(SimError::api(40007));
            }
        }
        "article_id" | "article_view_limited" => {
            if str_field(button, "article_id").is_empty() {
                return Err(SimError::api(40097));
            }
        }
        _ => return Err(SimError::api(codes.kind)),
    }
    Ok(())
}

fn check_name(button: &Value, codes: &Codes) -> Result<(), SimError> {
    let name = str_field(button, "name");
    if name.is_empty() || name.len() > codes.max_name {
        return Err(SimError::api(codes.name));
    }
    Ok(())
}

/// Non-empty `sub_button` list of a button, if it has one.
fn sub_buttons(button: &Value) -> Option<&Value> {
    button
        .get("sub_button")
        .filter(|s| s.as_array().is_none_or(|l| !l.is_empty()))
}

/// WeChat's menu rules: 1..=3 top-level buttons (40016), each with a name of at most 16 bytes
/// (40018) and either 1..=5 sub-buttons (40023) or a type with its fields; sub-buttons have
/// names of at most 60 bytes and the sub-button codes (40024..=40027, 40054).
pub(crate) fn check_menu(button: Option<&Value>) -> Result<(), SimError> {
    let buttons = button
        .and_then(Value::as_array)
        .filter(|b| (1..=MAX_BUTTONS).contains(&b.len()))
        .ok_or_else(|| SimError::api(40016))?;
    for top in buttons {
        check_name(top, &TOP)?;
        let has_type = top.get("type").is_some_and(|t| !t.is_null());
        match sub_buttons(top) {
            Some(subs) => {
                let subs = subs
                    .as_array()
                    .filter(|s| s.len() <= MAX_SUB_BUTTONS)
                    .ok_or_else(|| SimError::api(40023))?;
                for sub in subs {
                    check_name(sub, &SUB)?;
                    if sub_buttons(sub).is_some() {
                        return Err(SimError::api(40022));
                    }
                    check_leaf(sub, &SUB)?;
                }
            }
            None if has_type => check_leaf(top, &TOP)?,
            // Neither a type nor sub-buttons: an empty sub-menu.
            None if top.get("sub_button").is_some() => return Err(SimError::api(40023)),
            None => return Err(SimError::api(TOP.kind)),
        }
    }
    Ok(())
}

/// A `matchrule` with at least one non-empty known field (else 65304); answers it with the
/// values as strings, as `menu/get` shows them.
fn check_matchrule(rule: Option<&Value>) -> Result<Value, SimError> {
    let rule = rule
        .and_then(Value::as_object)
        .ok_or_else(|| SimError::api(65304))?;
    let mut out = serde_json::Map::new();
    for field in MATCH_FIELDS {
        let value = match rule.get(*field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        out.insert((*field).to_owned(), Value::String(value));
    }
    if out.is_empty() {
        return Err(SimError::api(65304));
    }
    Ok(Value::Object(out))
}

fn json_body(body: &Bytes) -> Result<Value, SimError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| SimError::api(47001))
}

/// `POST /cgi-bin/menu/create`: checks and stores the default menu (conditional menus stay).
pub(crate) async fn create(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_CREATE).await?;
    let body = json_body(&body)?;
    check_menu(body.get("button"))?;
    let mut state = sim.lock();
    let menuid = state.menus.next_id();
    state.menus.apps.entry(appid).or_default().default = Some(Menu {
        menuid,
        button: body["button"].clone(),
        matchrule: None,
    });
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `GET /cgi-bin/menu/get`: 46003 without a default menu.
pub(crate) async fn get(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_GET).await?;
    let state = sim.lock();
    let app = state.menus.apps.get(&appid);
    let menu = app
        .and_then(|a| a.default.as_ref())
        .ok_or_else(|| SimError::api(46003))?;
    let conditional: Vec<Value> = app
        .map(|a| &a.conditional[..])
        .unwrap_or_default()
        .iter()
        .map(|m| json!({ "button": m.button, "matchrule": m.matchrule, "menuid": m.menuid }))
        .collect();
    Ok(Json(json!({
        "menu": { "button": menu.button, "menuid": menu.menuid },
        "conditionalmenu": conditional,
    })))
}

/// A button as `get_current_selfmenu_info` shows it: sub-buttons under `sub_button.list`.
fn selfmenu_button(button: &Value) -> Value {
    match sub_buttons(button) {
        Some(subs) => json!({
            "name": button["name"],
            "sub_button": { "list": subs },
        }),
        None => {
            let mut leaf = button.clone();
            if let Some(o) = leaf.as_object_mut() {
                o.remove("sub_button");
            }
            leaf
        }
    }
}

/// `GET /cgi-bin/get_current_selfmenu_info`: `is_menu_open` 0 and no buttons without a menu.
pub(crate) async fn selfmenu_info(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_SELFMENU_INFO).await?;
    let state = sim.lock();
    let menu = state
        .menus
        .apps
        .get(&appid)
        .and_then(|a| a.default.as_ref());
    let Some(menu) = menu else {
        return Ok(Json(
            json!({ "is_menu_open": 0, "selfmenu_info": { "button": [] } }),
        ));
    };
    let buttons: Vec<Value> = menu
        .button
        .as_array()
        .map(|b| b.iter().map(selfmenu_button).collect())
        .unwrap_or_default();
    Ok(Json(
        json!({ "is_menu_open": 1, "selfmenu_info": { "button": buttons } }),
    ))
}

/// `GET /cgi-bin/menu/delete`: the default and every conditional menu (fine without a menu).
pub(crate) async fn delete(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_DELETE).await?;
    sim.lock().menus.apps.remove(&appid);
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `POST /cgi-bin/menu/addconditional`: `{"menuid":"<id>"}`; needs a default menu (65303).
pub(crate) async fn add_conditional(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_ADD_CONDITIONAL).await?;
    let body = json_body(&body)?;
    check_menu(body.get("button"))?;
    let matchrule = check_matchrule(body.get("matchrule"))?;
    let mut state = sim.lock();
    let has_default = state
        .menus
        .apps
        .get(&appid)
        .is_some_and(|a| a.default.is_some());
    if !has_default {
        return Err(SimError::api(65303));
    }
    let count = state
        .menus
        .apps
        .get(&appid)
        .map_or(0, |a| a.conditional.len());
    if count >= MAX_CONDITIONAL {
        return Err(SimError::api(65305));
    }
    let menuid = state.menus.next_id();
    state
        .menus
        .apps
        .entry(appid)
        .or_default()
        .conditional
        .push(Menu {
            menuid,
            button: body["button"].clone(),
            matchrule: Some(matchrule),
        });
    Ok(Json(json!({ "menuid": menuid.to_string() })))
}

/// `POST /cgi-bin/menu/delconditional` `{"menuid"}` (number or string): unknown 65301.
pub(crate) async fn del_conditional(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_DEL_CONDITIONAL).await?;
    let body = json_body(&body)?;
    let menuid = match body.get("menuid") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| SimError::api(40097))?;
    let mut state = sim.lock();
    let menus = state
        .menus
        .apps
        .get_mut(&appid)
        .map(|a| &mut a.conditional)
        .ok_or_else(|| SimError::api(65301))?;
    let index = menus
        .iter()
        .position(|m| m.menuid == menuid)
        .ok_or_else(|| SimError::api(65301))?;
    menus.remove(index);
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// Whether a follower with `tags` (and language `zh_CN`) matches a rule: every field set must
/// match; the simulator knows no sex, region or platform, so rules with those never match.
fn matches(rule: &Value, tags: &[u32]) -> bool {
    let Some(rule) = rule.as_object() else {
        return false;
    };
    rule.iter().all(|(field, value)| {
        let value = value.as_str().unwrap_or("");
        match field.as_str() {
            "tag_id" | "group_id" => tags.iter().any(|t| t.to_string() == value),
            "language" => value == "zh_CN",
            _ => false,
        }
    })
}

/// `POST /cgi-bin/menu/trymatch` `{"user_id"}`: the buttons the follower sees: the first
/// conditional menu (in `menu/get` order) whose rule matches, else the default menu.
pub(crate) async fn trymatch(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::MENU_TRYMATCH).await?;
    let body = json_body(&body)?;
    let user = body
        .get("user_id")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| SimError::api(40097))?;
    let mut state = sim.lock();
    let tags = state
        .followers(&appid)
        .tag_ids(user)
        .map_err(|_| SimError::api(65302))?;
    let app = state
        .menus
        .apps
        .get(&appid)
        .filter(|a| a.default.is_some())
        .ok_or_else(|| SimError::api(46003))?;
    let menu = app
        .conditional
        .iter()
        .find(|m| m.matchrule.as_ref().is_some_and(|r| matches(r, &tags)))
        .or(app.default.as_ref())
        .ok_or_else(|| SimError::api(46003))?;
    Ok(Json(json!({ "button": menu.button })))
}
