//! API call quotas: the per-app, per-path call counters of the current sim day (China time),
//! WeChat's daily limits (`openapi/quota/get`), the 45009 past a listed limit, `clear_quota`
//! (10 resets per app and calendar month, then 48006), and the control calls `/_sim/quota` and
//! `/_sim/quota/settings` that show the counters and change a limit.
//!
//! Every call is counted in `State::enter` (one `HashMap` update under the lock); the limit is
//! checked in `rest::authorized` after the token, so it applies to every token-checked API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::SimError;
use crate::mass::control_app;
use crate::paths;
use crate::rest::authorized;
use crate::state::Shared;

type Params = Query<HashMap<String, String>>;
type Answer = Result<Json<Value>, SimError>;

/// `clear_quota` resets per app and China calendar month, as WeChat.
pub(crate) const CLEAR_QUOTA_MONTHLY_LIMIT: u32 = 10;
/// The daily limit `openapi/quota/get` reports for a `/cgi-bin/` path the table does not list
/// (not enforced unless set through `/_sim/quota/settings`).
pub(crate) const DEFAULT_DAILY_LIMIT: u64 = 10_000;

/// WeChat's daily limits of a newly registered account (protocol §7); these are enforced.
pub(crate) const DAILY_LIMITS: &[(&str, u64)] = &[
    (paths::TOKEN, 2_000),
    (paths::STABLE_TOKEN, 500_000),
    (paths::MENU_CREATE, 1_000),
    (paths::MENU_GET, 10_000),
    (paths::MENU_DELETE, 1_000),
    (paths::TAGS_CREATE, 1_000),
    (paths::TAGS_GET, 1_000),
    (paths::TAGS_UPDATE, 1_000),
    (paths::TAGS_BATCH_TAG, 100_000),
    (paths::TAGS_BATCH_UNTAG, 100_000),
    (paths::MEDIA_UPLOAD, 100_000),
    (paths::MEDIA_GET, 200_000),
    (paths::CUSTOM_SEND, 500_000),
    (paths::MASS_SENDALL, 100),
    (paths::MASS_SEND, 100),
    (paths::UPLOAD_NEWS, 10),
    (paths::MASS_DELETE, 10),
    (paths::QRCODE_CREATE, 100_000),
    (paths::USER_GET, 500),
    (paths::USER_INFO, 5_000_000),
    (paths::USER_REMARK, 10_000),
];

/// The counters of one app.
#[derive(Default)]
struct AppQuota {
    /// The sim day `calls` belong to.
    day: i64,
    /// path → calls on `day`.
    calls: HashMap<String, u64>,
    /// The month `clears` belong to (`year * 12 + month - 1`).
    clear_month: i64,
    clears: u32,
}

/// Quotas of every app, and the limits set at run time.
#[derive(Default)]
pub(crate) struct QuotaStore {
    apps: HashMap<String, AppQuota>,
    /// path → daily limit set through `/_sim/quota/settings` (replaces the table's).
    overrides: HashMap<String, u64>,
}

impl QuotaStore {
    fn app(&mut self, appid: &str, day: i64) -> &mut AppQuota {
        let app = self.apps.entry(appid.to_owned()).or_default();
        if app.day != day {
            app.day = day;
            app.calls.clear();
        }
        app
    }

    /// Counts one call of `api` by `appid` on `day`.
    pub(crate) fn count(&mut self, appid: &str, api: &str, day: i64) {
        let app = self.app(appid, day);
        if let Some(n) = app.calls.get_mut(api) {
            *n += 1;
        } else {
            app.calls.insert(api.to_owned(), 1);
        }
    }

    /// Calls of `api` by `appid` on `day`.
    pub(crate) fn used(&self, appid: &str, api: &str, day: i64) -> u64 {
        self.apps
            .get(appid)
            .filter(|a| a.day == day)
            .and_then(|a| a.calls.get(api))
            .copied()
            .unwrap_or(0)
    }

    /// The enforced limit of `api`: set at run time, else the table's; `None` when unlisted.
    pub(crate) fn enforced_limit(&self, api: &str) -> Option<u64> {
        self.overrides.get(api).copied().or_else(|| {
            DAILY_LIMITS
                .iter()
                .find(|(path, _)| *path == api)
                .map(|(_, limit)| *limit)
        })
    }

    /// The limit `openapi/quota/get` reports.
    pub(crate) fn daily_limit(&self, api: &str) -> u64 {
        self.enforced_limit(api).unwrap_or(DEFAULT_DAILY_LIMIT)
    }

    /// Whether today's calls (this one included) went past the enforced limit.
    pub(crate) fn exceeded(&self, appid: &str, api: &str, day: i64) -> bool {
        self.enforced_limit(api)
            .is_some_and(|limit| self.used(appid, api, day) > limit)
    }

    /// `clear_quota`: forgets today's counters of the app, at most
    /// [`CLEAR_QUOTA_MONTHLY_LIMIT`] times a month (else 48006).
    pub(crate) fn clear(&mut self, appid: &str, day: i64, month: i64) -> Result<u32, SimError> {
        let app = self.app(appid, day);
        if app.clear_month != month {
            app.clear_month = month;
            app.clears = 0;
        }
        if app.clears >= CLEAR_QUOTA_MONTHLY_LIMIT {
            return Err(SimError::api(48006));
        }
        app.clears += 1;
        app.calls.clear();
        Ok(app.clears)
    }

    /// Sets (or with `None` removes) the run-time limit of `api`.
    pub(crate) fn set_limit(&mut self, api: &str, limit: Option<u64>) {
        match limit {
            Some(limit) => {
                self.overrides.insert(api.to_owned(), limit);
            }
            None => {
                self.overrides.remove(api);
            }
        }
    }

    /// Today's counters and limits of one app, and its resets this month.
    fn report(&self, appid: &str, day: i64, month: i64) -> Value {
        let app = self.apps.get(appid);
        let calls: BTreeMap<&str, Value> = app
            .filter(|a| a.day == day)
            .map(|a| {
                a.calls
                    .iter()
                    .map(|(api, used)| {
                        let limit = self.daily_limit(api);
                        (
                            api.as_str(),
                            json!({
                                "used": used,
                                "daily_limit": limit,
                                "enforced": self.enforced_limit(api).is_some(),
                            }),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let clears = app
            .filter(|a| a.clear_month == month)
            .map_or(0, |a| a.clears);
        let overrides: BTreeMap<&String, &u64> = self.overrides.iter().collect();
        json!({
            "appid": appid,
            "day": day,
            "calls": calls,
            "clears_this_month": clears,
            "clear_limit": CLEAR_QUOTA_MONTHLY_LIMIT,
            "overrides": overrides,
        })
    }
}

fn json_body(body: &Bytes) -> Result<Value, SimError> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| SimError::api(47001))
}

/// `POST /cgi-bin/openapi/quota/get` `{"cgi_path"}`: today's calls of the path by the app.
pub(crate) async fn quota_get(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::QUOTA_GET).await?;
    let body = json_body(&body)?;
    let path = body
        .get("cgi_path")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with("/cgi-bin/") && p.len() > "/cgi-bin/".len())
        .ok_or_else(|| SimError::api(40097))?;
    let state = sim.lock();
    let day = state.clock.day();
    let limit = state.quota.daily_limit(path);
    let used = state.quota.used(&appid, path, day);
    Ok(Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "quota": { "daily_limit": limit, "used": used, "remain": limit.saturating_sub(used) },
    })))
}

/// `POST /cgi-bin/clear_quota` `{"appid"}`: resets the app's counters of today.
pub(crate) async fn clear_quota(
    State(sim): State<Arc<Shared>>,
    Query(q): Params,
    body: Bytes,
) -> Answer {
    let appid = authorized(&sim, &q, paths::CLEAR_QUOTA).await?;
    let body = json_body(&body)?;
    let claimed = body
        .get("appid")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SimError::api(41002))?;
    if claimed != appid {
        return Err(SimError::api(40013));
    }
    let mut state = sim.lock();
    let (day, month) = (state.clock.day(), state.clock.month());
    state.quota.clear(&appid, day, month)?;
    Ok(Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// `GET /_sim/quota?appid=`: `{appid, day, calls: {path: {used, daily_limit, enforced}},
/// clears_this_month, clear_limit, overrides}`.
pub(crate) async fn report(State(sim): State<Arc<Shared>>, Query(q): Params) -> Answer {
    let appid = control_app(&sim, q.get("appid"))?;
    let state = sim.lock();
    let (day, month) = (state.clock.day(), state.clock.month());
    Ok(Json(state.quota.report(&appid, day, month)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    api: String,
    daily_limit: Option<u64>,
}

/// `POST /_sim/quota/settings` `{"api","daily_limit"}`: a number sets (and enforces) the API's
/// daily limit, `null` goes back to WeChat's.
pub(crate) async fn settings(State(sim): State<Arc<Shared>>, body: Bytes) -> Answer {
    let request: SettingsRequest = serde_json::from_slice(&body)
        .map_err(|e| SimError::BadRequest(format!("invalid JSON body: {e}")))?;
    if !request.api.starts_with('/') {
        return Err(SimError::BadRequest(
            "api must be a path such as /cgi-bin/menu/create".into(),
        ));
    }
    let mut state = sim.lock();
    state.quota.set_limit(&request.api, request.daily_limit);
    let limit = state.quota.daily_limit(&request.api);
    let enforced = state.quota.enforced_limit(&request.api).is_some();
    Ok(Json(
        json!({ "api": request.api, "daily_limit": limit, "enforced": enforced }),
    ))
}
