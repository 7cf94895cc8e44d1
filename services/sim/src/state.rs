//! All mutable state of the simulator, behind one `std::sync::Mutex` that is never held across
//! an `.await`: the clock, tokens and tickets, fault rules and counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wxoa_runtime::config::{AppConfig, SimConfig};

use crate::SimError;
use crate::callback::{CallbackOutcome, Outcome};
use crate::followers::Followers;
use crate::paths;

/// `stable_token` calls with `force_refresh: true` allowed per app and day (China time), as WeChat.
pub const FORCE_REFRESH_DAILY_LIMIT: u32 = 20;
/// Least time between two forced `stable_token` refreshes of one app, as WeChat.
pub const FORCE_REFRESH_MIN_GAP_SECS: u64 = 30;

/// The counter key of calls whose app could not be told (unknown appid or token).
pub(crate) const UNKNOWN_APP: &str = "-";
/// WeChat's day boundary: midnight China time (UTC+8).
const DAY_OFFSET_SECS: i64 = 8 * 3600;
/// A user message opens a customer-service window this long ...
const MESSAGE_WINDOW_MS: i64 = 48 * 3600 * 1000;
/// ... allowing this many messages.
const MESSAGE_WINDOW_SENDS: u32 = 5;
/// A menu click, subscribe or scan event opens a window this long ...
const EVENT_WINDOW_MS: i64 = 60 * 1000;
/// ... allowing this many messages.
const EVENT_WINDOW_SENDS: u32 = 3;
/// `custom/typing` needs an interaction this recent.
const TYPING_WINDOW_MS: i64 = 30 * 1000;

/// Dead token records are kept this long after expiry so they still answer 42001.
const KEEP_EXPIRED_MS: i64 = 24 * 3600 * 1000;

/// WeChat's usual message for an errcode (the `rid` is added when the response is built).
pub(crate) fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40004 => "invalid media type",
        40005 => "invalid file type",
        40007 => "invalid media_id",
        40008 => "invalid message type",
        40009 => "invalid image size",
        40010 => "invalid voice size",
        40011 => "invalid video size",
        40012 => "invalid thumb size",
        40013 => "invalid appid",
        40016 => "invalid button size",
        40017 => "invalid button type",
        40018 => "invalid button name size",
        40019 => "invalid button key size",
        40020 => "invalid button url size",
        40022 => "invalid sub button level",
        40023 => "invalid sub button size",
        40024 => "invalid sub button type",
        40025 => "invalid sub button name size",
        40026 => "invalid sub button key size",
        40027 => "invalid sub button url size",
        40029 => "invalid code",
        40030 => "invalid refresh_token",
        40032 => "invalid openid list size",
        40037 => "invalid template_id",
        40054 => "invalid sub button url domain",
        40055 => "invalid button url domain",
        40097 => "invalid args",
        40102 => "invalid industry id",
        40130 => "invalid openid size, at least two openid",
        40114 => "invalid index value",
        40125 => "invalid appsecret",
        40163 => "code been used",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41005 => "media data missing",
        41008 => "missing code",
        41009 => "missing openid",
        42001 => "access_token expired",
        43004 => "require subscribe",
        44003 => "empty news data",
        44004 => "empty content",
        45003 => "title size out of limit",
        45004 => "description size out of limit",
        45008 => "article size out of limit",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        45015 => "response out of time limit or subscription is canceled",
        45026 => "template num exceeds limit",
        45028 => "has no masssend quota",
        45047 => "out of response count limit",
        45056 => "too many tags",
        45057 => "can't delete the tag that has too many fans",
        45058 => "can't modify sys tag",
        45059 => "user has too many tags",
        45065 => "clientmsgid exist",
        45072 => "command invalid",
        45080 => "not allowed to send typing: no interaction in the last 30 seconds",
        45083 => "invalid speed",
        45084 => "no speed",
        45157 => "tag name duplicated",
        45158 => "tag name too long",
        45159 => "invalid tag id",
        46002 => "no menu version",
        46003 => "menu no exist",
        47001 => "data format error",
        48001 => "api unauthorized",
        48006 => "forbid to clear quota because of reaching the limit",
        65301 => "no such menuid",
        65302 => "no such user",
        65303 => "there is no selfmenu, please create selfmenu first",
        65304 => "match rule empty",
        65305 => "menu count limit",
        88000 => "without comment privilege",
        88001 => "msg_data is not exists",
        88003 => "elected comment upper limit",
        88005 => "already reply",
        88007 => "reply content beyond max len or content len is zero",
        88008 => "comment is not exists",
        88009 => "reply is not exists",
        88010 => "count range error. cout <= 0 or count > 50",
        _ => "simulated error",
    }
}

/// A request id like WeChat's `rid: 6655f2c3-1a2b3c4d-5e6f7a8b`.
pub(crate) fn rid() -> String {
    let mut rng = rand::rng();
    format!(
        "{:08x}-{:08x}-{:08x}",
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>()
    )
}

pub(crate) fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// What the handlers share: read-only configuration plus the locked state.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) apps: Vec<AppConfig>,
    pub(crate) http: reqwest::Client,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, apps: Vec<AppConfig>, http: reqwest::Client) -> Shared {
        let state = State::new(&apps);
        Shared {
            config,
            apps,
            http,
            state: Mutex::new(state),
        }
    }

    /// The state; a panic while it was held does not make it unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn app(&self, appid: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.appid == appid)
    }

    pub(crate) fn ttl_ms(&self) -> i64 {
        secs_to_ms(self.config.token_ttl_secs)
    }

    pub(crate) fn overlap_ms(&self) -> i64 {
        secs_to_ms(self.config.token_overlap_secs)
    }

    /// Below this much remaining life a stable token or ticket is renewed (WeChat: 5 min; never
    /// more than half the life, so short test lifetimes still reuse).
    pub(crate) fn renew_below_ms(&self) -> i64 {
        self.overlap_ms().min(self.ttl_ms() / 2)
    }

    /// Every API call starts here: it is counted, then the matching fault rules apply (their
    /// latency is slept without the lock, their failure returned).
    pub(crate) async fn enter(
        &self,
        appid: Option<&str>,
        api: &str,
        force: bool,
    ) -> Result<(), SimError> {
        let (latency_ms, failure) = self.lock().enter(appid.unwrap_or(UNKNOWN_APP), api, force);
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The simulated clock: the system time at start plus the monotonic (tokio) time since, plus
/// the offset the control API added. Under `tokio::time::pause` it follows the paused clock.
pub(crate) struct Clock {
    start_unix_ms: i64,
    start: tokio::time::Instant,
    offset_ms: i64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start_unix_ms: wxoa_runtime::now_ms(),
            start: tokio::time::Instant::now(),
            offset_ms: 0,
        }
    }

    /// Unix milliseconds, simulated.
    pub(crate) fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start_unix_ms
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms)
    }

    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    pub(crate) fn advance_ms(&mut self, ms: i64) {
        self.offset_ms = self.offset_ms.saturating_add(ms.max(0));
    }

    /// The WeChat day number (days since the epoch in China time).
    pub(crate) fn day(&self) -> i64 {
        (self.now_ms() / 1000 + DAY_OFFSET_SECS).div_euclid(86_400)
    }

    /// The China-time calendar month as `year * 12 + (month - 1)`.
    pub(crate) fn month(&self) -> i64 {
        let (year, month) = year_month(self.day());
        year * 12 + month - 1
    }
}

/// The (year, month 1..=12) of a day number (days since 1970-01-01), proleptic Gregorian.
pub(crate) fn year_month(days: i64) -> (i64, i64) {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Classic,
    Stable,
}

struct TokenRecord {
    appid: String,
    kind: TokenKind,
    expires_ms: i64,
    /// Replaced (classic: after the overlap; stable: at once) or revoked from this time on.
    dead_from_ms: Option<i64>,
}

#[derive(Default)]
struct AppState {
    /// The current stable_token token.
    stable: Option<String>,
    force_day: i64,
    force_count: u32,
    last_force_ms: Option<i64>,
    /// Ticket type → (ticket, expires at).
    tickets: HashMap<String, (String, i64)>,
}

/// A fault rule as posted to `/_sim/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    /// Only calls of this app (absent: any app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) appid: Option<String>,
    /// Only calls of this API path (`/cgi-bin/stable_token#force` only forced refreshes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api: Option<String>,
    /// Delay before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) latency_ms: Option<u64>,
    /// Answer this HTTP status (400..=599) with a short text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) http_status: Option<u16>,
    /// Answer this WeChat errcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) errcode: Option<i64>,
    /// How many more calls it applies to (absent: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) times: Option<u32>,
}

impl FaultSpec {
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        if let Some(status) = self.http_status
            && !(400..=599).contains(&status)
        {
            return Err(SimError::BadRequest(format!(
                "http_status {status} is not in 400..=599"
            )));
        }
        if self.errcode == Some(0) {
            return Err(SimError::BadRequest("errcode 0 is not a fault".into()));
        }
        if self.times == Some(0) {
            return Err(SimError::BadRequest("times must be at least 1".into()));
        }
        if self.latency_ms.unwrap_or(0) > 600_000 {
            return Err(SimError::BadRequest(
                "latency_ms must be at most 600000".into(),
            ));
        }
        if self.latency_ms.unwrap_or(0) == 0 && self.http_status.is_none() && self.errcode.is_none()
        {
            return Err(SimError::BadRequest(
                "a fault needs latency_ms, http_status or errcode".into(),
            ));
        }
        Ok(())
    }

    fn matches(&self, appid: &str, api: &str, force: bool) -> bool {
        let app_ok = self.appid.as_deref().is_none_or(|a| a == appid);
        let api_ok = match self.api.as_deref() {
            None => true,
            Some(want) => {
                want == api || (force && want.strip_suffix(paths::FORCE_SUFFIX) == Some(api))
            }
        };
        app_ok && api_ok
    }
}

/// A stored fault rule.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultRule {
    pub(crate) id: u64,
    #[serde(flatten)]
    pub(crate) spec: FaultSpec,
}

/// Callback counters of one app (`/_sim/send`).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CallbackStats {
    sent: u64,
    attempts: u64,
    reply: u64,
    success: u64,
    empty: u64,
    failed: u64,
    invalid: u64,
}

/// A user interaction that opens a customer-service window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InteractionKind {
    /// The user sent a message: 5 sends within 48 h.
    Message,
    /// A menu click, subscribe or QR scan: 3 sends within 1 minute.
    Event,
}

/// The customer-service window of one (appid, openid): the newest interaction's allowance.
struct Window {
    at_ms: i64,
    expires_ms: i64,
    left: u32,
}

/// Something a user received.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Delivered {
    pub(crate) appid: String,
    pub(crate) openid: String,
    /// `custom` (customer-service send) or `passive` (callback reply).
    pub(crate) channel: &'static str,
    pub(crate) msgtype: String,
    /// The sent JSON, or the flattened reply fields.
    pub(crate) body: Value,
    pub(crate) at_ms: i64,
}

/// The counters `/_sim/stats` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Stats {
    /// appid → api → calls.
    calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// appid → callback counters.
    callbacks: BTreeMap<String, CallbackStats>,
}

/// The mutable state.
pub(crate) struct State {
    pub(crate) clock: Clock,
    apps: HashMap<String, AppState>,
    tokens: HashMap<String, TokenRecord>,
    faults: Vec<FaultRule>,
    next_fault_id: u64,
    serial: u64,
    stats: Stats,
    /// (appid, openid) → the customer-service window.
    windows: HashMap<(String, String), Window>,
    /// What users received, in order.
    delivered: Vec<Delivered>,
    /// appid → its followers, tags, remarks and blacklist.
    pub(crate) followers: HashMap<String, Followers>,
    /// Mass sends: news, jobs, quotas, settings.
    pub(crate) mass: crate::mass::MassStore,
    /// Templates and template sends.
    pub(crate) templates: crate::templates::TemplateStore,
    /// Web authorization: codes, web access tokens, refresh tokens.
    pub(crate) oauth: crate::oauth::OAuthStore,
    /// Custom menus (default and conditional).
    pub(crate) menus: crate::menus::MenuStore,
    /// QR codes.
    pub(crate) qrcodes: crate::qrcodes::QrStore,
    /// Per-day API call counters, daily limits and `clear_quota` resets.
    pub(crate) quota: crate::quota::QuotaStore,
    /// Temporary and permanent material and article images, with their bytes.
    pub(crate) material: crate::material::MaterialStore,
    /// Drafts.
    pub(crate) drafts: crate::drafts::DraftStore,
    /// Publish jobs and published articles.
    pub(crate) publish: crate::freepublish::PublishStore,
    /// Articles and their comments.
    pub(crate) comments: crate::comments::CommentStore,
}

impl State {
    fn new(apps: &[AppConfig]) -> State {
        State {
            clock: Clock::new(),
            apps: apps
                .iter()
                .map(|a| (a.appid.clone(), AppState::default()))
                .collect(),
            tokens: HashMap::new(),
            faults: Vec::new(),
            next_fault_id: 1,
            serial: 0,
            stats: Stats::default(),
            windows: HashMap::new(),
            delivered: Vec::new(),
            followers: apps
                .iter()
                .map(|a| (a.appid.clone(), Followers::default()))
                .collect(),
            mass: crate::mass::MassStore::default(),
            templates: crate::templates::TemplateStore::default(),
            oauth: crate::oauth::OAuthStore::default(),
            menus: crate::menus::MenuStore::default(),
            qrcodes: crate::qrcodes::QrStore::default(),
            quota: crate::quota::QuotaStore::default(),
            material: crate::material::MaterialStore::default(),
            drafts: crate::drafts::DraftStore::default(),
            publish: crate::freepublish::PublishStore::default(),
            comments: crate::comments::CommentStore::default(),
        }
    }

    /// The followers of an app.
    pub(crate) fn followers(&mut self, appid: &str) -> &mut Followers {
        if !self.followers.contains_key(appid) {
            self.followers
                .insert(appid.to_owned(), Followers::default());
        }
        self.followers.get_mut(appid).expect("inserted above")
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Counts the call and consumes the matching fault rules: the summed latency and the first
    /// failure (an HTTP status wins over an errcode within one rule).
    fn enter(&mut self, appid: &str, api: &str, force: bool) -> (u64, Option<SimError>) {
        let day = self.clock.day();
        self.quota.count(appid, api, day);
        let calls = self.stats.calls.entry(appid.to_owned()).or_default();
        *calls.entry(api.to_owned()).or_default() += 1;
        if force {
            *calls
                .entry(format!("{api}{}", paths::FORCE_SUFFIX))
                .or_default() += 1;
        }
        let mut latency_ms = 0u64;
        let mut failure = None;
        for rule in &mut self.faults {
            if !rule.spec.matches(appid, api, force) {
                continue;
            }
            if let Some(times) = &mut rule.spec.times {
                *times = times.saturating_sub(1);
            }
            latency_ms = latency_ms.saturating_add(rule.spec.latency_ms.unwrap_or(0));
            if failure.is_none() {
                failure = match (rule.spec.http_status, rule.spec.errcode) {
                    (Some(status), _) => Some(SimError::Http(status)),
                    (None, Some(errcode)) => Some(SimError::api(errcode)),
                    (None, None) => None,
                };
            }
        }
        self.faults.retain(|r| r.spec.times != Some(0));
        (latency_ms, failure)
    }

    pub(crate) fn add_fault(&mut self, spec: FaultSpec) -> FaultRule {
        let rule = FaultRule {
            id: self.next_fault_id,
            spec,
        };
        self.next_fault_id += 1;
        self.faults.push(rule.clone());
        rule
    }

    pub(crate) fn faults(&self) -> Vec<FaultRule> {
        self.faults.clone()
    }

    pub(crate) fn clear_faults(&mut self) -> usize {
        std::mem::take(&mut self.faults).len()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats.clone()
    }

    pub(crate) fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    pub(crate) fn record_callback(&mut self, appid: &str, outcome: &CallbackOutcome) {
        let c = self.stats.callbacks.entry(appid.to_owned()).or_default();
        c.sent += 1;
        c.attempts += outcome.attempts.len() as u64;
        match outcome.outcome {
            Outcome::Reply => c.reply += 1,
            Outcome::Success => c.success += 1,
            Outcome::Empty => c.empty += 1,
            Outcome::Failed => c.failed += 1,
            Outcome::Invalid => c.invalid += 1,
        }
    }

    /// The app a token was issued to, valid or not.
    pub(crate) fn token_app(&self, token: &str) -> Option<String> {
        self.tokens.get(token).map(|r| r.appid.clone())
    }

    /// Checks an `access_token` query value; answers the app it belongs to.
    pub(crate) fn check_token(&self, token: Option<&str>) -> Result<String, SimError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SimError::api(41001))?;
        let record = self.tokens.get(token).ok_or_else(|| SimError::api(40001))?;
        let now = self.now_ms();
        if record.dead_from_ms.is_some_and(|dead| dead <= now) {
            return Err(SimError::api(40001));
        }
        if record.expires_ms <= now {
            return Err(SimError::api(42001));
        }
        Ok(record.appid.clone())
    }

    fn is_live(&self, token: &str) -> bool {
        self.check_token(Some(token)).is_ok()
    }

    fn new_token(&mut self, appid: &str, kind: TokenKind, ttl_ms: i64) -> String {
        let now = self.now_ms();
        self.tokens
            .retain(|_, r| r.expires_ms.saturating_add(KEEP_EXPIRED_MS) > now);
        self.serial += 1;
        let token = format!("{}_{}", self.serial, random_string(96));
        self.tokens.insert(
            token.clone(),
            TokenRecord {
                appid: appid.to_owned(),
                kind,
                expires_ms: now.saturating_add(ttl_ms),
                dead_from_ms: None,
            },
        );
        token
    }

    /// `cgi-bin/token`: a new token; the app's earlier classic tokens die after `overlap_ms`.
    pub(crate) fn issue_classic(&mut self, appid: &str, ttl_ms: i64, overlap_ms: i64) -> String {
        let dead_from = self.now_ms().saturating_add(overlap_ms);
        for record in self.tokens.values_mut() {
            if record.appid == appid && record.kind == TokenKind::Classic {
                record.dead_from_ms =
                    Some(record.dead_from_ms.map_or(dead_from, |d| d.min(dead_from)));
            }
        }
        self.new_token(appid, TokenKind::Classic, ttl_ms)
    }

    /// `cgi-bin/stable_token`: the current token and its remaining seconds. Without `force` it
    /// is reused while it has at least `renew_below_ms` left (a renewed token leaves the old
    /// one valid to its end); with `force` the old one dies at once, within WeChat's limits.
    pub(crate) fn issue_stable(
        &mut self,
        appid: &str,
        force: bool,
        ttl_ms: i64,
        renew_below_ms: i64,
    ) -> Result<(String, i64), SimError> {
        let now = self.now_ms();
        let day = self.clock.day();
        let current = self.apps.get(appid).and_then(|a| a.stable.clone());
        if force {
            let app = self.apps.entry(appid.to_owned()).or_default();
            if app.force_day != day {
                app.force_day = day;
                app.force_count = 0;
            }
            if app.force_count >= FORCE_REFRESH_DAILY_LIMIT {
                return Err(SimError::api(45009));
            }
            let gap_ms = secs_to_ms(FORCE_REFRESH_MIN_GAP_SECS);
            if app
                .last_force_ms
                .is_some_and(|last| now < last.saturating_add(gap_ms))
            {
                return Err(SimError::api(45011));
            }
            app.force_count += 1;
            app.last_force_ms = Some(now);
            if let Some(old) = current.and_then(|t| self.tokens.get_mut(&t)) {
                old.dead_from_ms = Some(now);
            }
        } else if let Some(token) = current.filter(|t| self.is_live(t)) {
            let remaining = self.tokens.get(&token).map_or(0, |r| r.expires_ms - now);
            if remaining >= renew_below_ms {
                return Ok((token, remaining / 1000));
            }
        }
        let token = self.new_token(appid, TokenKind::Stable, ttl_ms);
        self.apps.entry(appid.to_owned()).or_default().stable = Some(token.clone());
        Ok((token, ttl_ms / 1000))
    }

    /// The app's ticket of `kind`, reused while it has at least `renew_below_ms` left.
    pub(crate) fn ticket(
        &mut self,
        appid: &str,
        kind: &str,
        ttl_ms: i64,
        renew_below_ms: i64,
    ) -> (String, i64) {
        let now = self.now_ms();
        let app = self.apps.entry(appid.to_owned()).or_default();
        if let Some((ticket, expires)) = app.tickets.get(kind)
            && expires - now >= renew_below_ms
        {
            return (ticket.clone(), (expires - now) / 1000);
        }
        let ticket = random_string(86);
        app.tickets.insert(
            kind.to_owned(),
            (ticket.clone(), now.saturating_add(ttl_ms)),
        );
        (ticket, ttl_ms / 1000)
    }

    /// The app's current ticket of `kind` (the one `ticket/getticket` hands out) and when it
    /// expires, without issuing one; `None` when none was ever issued.
    pub(crate) fn current_ticket(&self, appid: &str, kind: &str) -> Option<(String, i64)> {
        self.apps
            .get(appid)
            .and_then(|a| a.tickets.get(kind))
            .cloned()
    }

    /// Kills every live token of the app; answers how many.
    pub(crate) fn revoke(&mut self, appid: &str) -> usize {
        let now = self.now_ms();
        let mut revoked = 0;
        for record in self.tokens.values_mut() {
            if record.appid == appid
                && record.expires_ms > now
                && record.dead_from_ms.is_none_or(|d| d > now)
            {
                record.dead_from_ms = Some(now);
                revoked += 1;
            }
        }
        if let Some(app) = self.apps.get_mut(appid) {
            app.stable = None;
        }
        revoked
    }

    /// Records a user interaction: the newest one replaces the window; answers (expires at,
    /// sends allowed).
    pub(crate) fn record_interaction(
        &mut self,
        appid: &str,
        openid: &str,
        kind: InteractionKind,
    ) -> (i64, u32) {
        let now = self.now_ms();
        let (life_ms, left) = match kind {
            InteractionKind::Message => (MESSAGE_WINDOW_MS, MESSAGE_WINDOW_SENDS),
            InteractionKind::Event => (EVENT_WINDOW_MS, EVENT_WINDOW_SENDS),
        };
        let expires_ms = now.saturating_add(life_ms);
        self.windows.insert(
            (appid.to_owned(), openid.to_owned()),
            Window {
                at_ms: now,
                expires_ms,
                left,
            },
        );
        (expires_ms, left)
    }

    /// A customer-service send: 45015 outside the window, 45047 past its allowance; else it
    /// is delivered.
    pub(crate) fn custom_send(
        &mut self,
        appid: &str,
        openid: &str,
        msgtype: &str,
        body: Value,
    ) -> Result<(), SimError> {
        let now = self.now_ms();
        let window = self
            .windows
            .get_mut(&(appid.to_owned(), openid.to_owned()))
            .filter(|w| w.expires_ms > now)
            .ok_or_else(|| SimError::api(45015))?;
        if window.left == 0 {
            return Err(SimError::api(45047));
        }
        window.left -= 1;
        self.deliver(appid, openid, "custom", msgtype, body);
        Ok(())
    }

    /// `custom/typing`: 45080 unless the user interacted in the last 30 s.
    pub(crate) fn typing(&self, appid: &str, openid: &str) -> Result<(), SimError> {
        let now = self.now_ms();
        let recent = self
            .windows
            .get(&(appid.to_owned(), openid.to_owned()))
            .is_some_and(|w| now < w.at_ms.saturating_add(TYPING_WINDOW_MS));
        if recent {
            Ok(())
        } else {
            Err(SimError::api(45080))
        }
    }

    /// Appends to what the user received.
    pub(crate) fn deliver(
        &mut self,
        appid: &str,
        openid: &str,
        channel: &'static str,
        msgtype: &str,
        body: Value,
    ) {
        let at_ms = self.now_ms();
        self.delivered.push(Delivered {
            appid: appid.to_owned(),
            openid: openid.to_owned(),
            channel,
            msgtype: msgtype.to_owned(),
            body,
            at_ms,
        });
    }

    /// What users received, in order, optionally of one app and/or user.
    pub(crate) fn delivered(&self, appid: Option<&str>, openid: Option<&str>) -> Vec<Delivered> {
        self.delivered
            .iter()
            .filter(|d| appid.is_none_or(|a| a == d.appid) && openid.is_none_or(|o| o == d.openid))
            .cloned()
            .collect()
    }

    /// Forgets what users received; answers how many entries.
    pub(crate) fn clear_delivered(&mut self) -> usize {
        std::mem::take(&mut self.delivered).len()
    }
}
