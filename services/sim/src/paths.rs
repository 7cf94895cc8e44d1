//! Every route the simulator serves, defined once. The REST paths double as the `api` names
//! of the call counters and fault rules.

/// `GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`.
pub const TOKEN: &str = "/cgi-bin/token";
/// `POST /cgi-bin/stable_token` with `{grant_type, appid, secret, force_refresh}`.
pub const STABLE_TOKEN: &str = "/cgi-bin/stable_token";
/// Appended to [`STABLE_TOKEN`] in counters and fault rules for calls with `force_refresh: true`.
pub const FORCE_SUFFIX: &str = "#force";
/// `GET /cgi-bin/ticket/getticket?access_token=&type=jsapi|wx_card`.
pub const TICKET: &str = "/cgi-bin/ticket/getticket";
/// `GET /cgi-bin/getcallbackip?access_token=`.
pub const CALLBACK_IP: &str = "/cgi-bin/getcallbackip";
/// `GET /cgi-bin/get_api_domain_ip?access_token=`.
pub const API_DOMAIN_IP: &str = "/cgi-bin/get_api_domain_ip";
/// `POST /cgi-bin/message/custom/send?access_token=` with `{touser, msgtype, <type object>}`.
pub const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";
/// `POST /cgi-bin/message/custom/typing?access_token=` with `{touser, command}`.
pub const CUSTOM_TYPING: &str = "/cgi-bin/message/custom/typing";

/// `GET` the call counters, `DELETE` to reset them.
pub const STATS: &str = "/_sim/stats";
/// `POST {"appid"}`: every current access token of the app becomes invalid (40001).
pub const REVOKE: &str = "/_sim/revoke";
/// `GET` lists, `POST` adds, `DELETE` clears fault rules.
pub const FAULTS: &str = "/_sim/faults";
/// `POST` a [`crate::callback::CallbackRequest`]: send it to the gateway, answer the outcome.
pub const SEND: &str = "/_sim/send";
/// `GET` the appids the simulator knows.
pub const APPS: &str = "/_sim/apps";
/// `GET` the simulated clock, `POST {"advance_secs"}` to move it forward.
pub const CLOCK: &str = "/_sim/clock";
/// `POST {"appid","openid","kind":"message"|"event"}`: record a user interaction (opens the
/// customer-service window) without sending a callback.
pub const INTERACTIONS: &str = "/_sim/interactions";
/// `GET ?appid=&openid=` what users received (customer-service sends and passive replies),
/// `DELETE` to forget it.
pub const MESSAGES: &str = "/_sim/messages";

/// The gateway's callback route for one app: `/wechat/<appid>`.
pub fn callback(appid: &str) -> String {
    format!("/wechat/{appid}")
}
