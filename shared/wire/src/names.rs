//! Every NATS subject, stream, consumer, header and Redis key wxoa uses, defined once.
//!
//! Subjects start with a configurable prefix (default `wechat`) so environments and tests can
//! share one server; stream names are derived from it (`wechat` → `WECHAT_INBOUND`). Any token
//! built from outside data passes through [`token`], which keeps `[A-Za-z0-9_-]` only.

/// The default subject and Redis key prefix.
pub const DEFAULT_PREFIX: &str = "wechat";

/// The longest token [`token`] makes. WeChat's types, events and appids are far shorter, but a
/// callback body can make a MsgType any length, and NATS closes a connection whose control line
/// passes `max_control_line` (4 KiB): every publish in flight on it would fail.
pub const MAX_TOKEN_CHARS: usize = 128;

/// Makes outside data safe as one subject token: every char outside `[A-Za-z0-9_-]` becomes
/// `_`, at most [`MAX_TOKEN_CHARS`] are kept, and an empty value becomes `unknown`. It is never
/// published raw (the envelope keeps the value whole).
pub fn token(raw: &str) -> String {
    if raw.is_empty() {
        return "unknown".to_owned();
    }
    raw.chars()
        .take(MAX_TOKEN_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// True when `raw` is already a valid subject token (used to validate appids in config).
pub fn is_token(raw: &str) -> bool {
    !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Subject builders.
pub mod subjects {
    use super::token;

    /// `<prefix>.<appid>.message.<msgtype>`: an inbound user message.
    pub fn message(prefix: &str, app_id: &str, msg_type: &str) -> String {
        format!("{prefix}.{}.message.{}", token(app_id), token(msg_type))
    }

    /// `<prefix>.<appid>.event.<event>`: an inbound event, its name lower-cased.
    pub fn event(prefix: &str, app_id: &str, event: &str) -> String {
        format!(
            "{prefix}.{}.event.{}",
            token(app_id),
            token(&event.to_ascii_lowercase())
        )
    }

    /// `<prefix>.*.message.>` and `<prefix>.*.event.>`: what the inbound stream holds.
    pub fn inbound_filters(prefix: &str) -> Vec<String> {
        vec![
            format!("{prefix}.*.message.>"),
            format!("{prefix}.*.event.>"),
        ]
    }

    /// `<prefix>.<appid>.reply.<gateway>.<key>`: the passive-reply rendezvous of one inbound
    /// message, answered by the gateway instance `<gateway>` that holds WeChat's request.
    pub fn reply(prefix: &str, app_id: &str, gateway: &str, key: &str) -> String {
        format!(
            "{prefix}.{}.reply.{}.{}",
            token(app_id),
            token(gateway),
            token(key)
        )
    }

    /// The gateway instance of `subject` when it is the rendezvous subject of app `app_id`'s
    /// message with rendezvous key `key` (`<prefix>.<appid>.reply.<gateway>.<key>`), else
    /// `None`: a replier sends a reply request only to the subject it would build itself, never
    /// to one a message merely carries.
    pub fn reply_gateway<'a>(
        prefix: &str,
        app_id: &str,
        key: &str,
        subject: &'a str,
    ) -> Option<&'a str> {
        let head = format!("{prefix}.{}.reply.", token(app_id));
        let (gateway, rest_key) = subject.strip_prefix(head.as_str())?.split_once('.')?;
        (super::is_token(gateway) && rest_key == token(key)).then_some(gateway)
    }

    /// `<prefix>.*.reply.<gateway>.*`: every rendezvous one gateway instance answers.
    pub fn reply_listen(prefix: &str, gateway: &str) -> String {
        format!("{prefix}.*.reply.{}.*", token(gateway))
    }

    /// `<prefix>.<appid>.token.refreshed`: a new access_token or ticket is in Redis.
    pub fn token_refreshed(prefix: &str, app_id: &str) -> String {
        format!("{prefix}.{}.token.refreshed", token(app_id))
    }

    /// `<prefix>.*.token.refreshed`: refresh notices of every app.
    pub fn token_refreshed_all(prefix: &str) -> String {
        format!("{prefix}.*.token.refreshed")
    }

    /// `<prefix>.<appid>.token.invalidate`: "this token was rejected", answered by the token service.
    pub fn token_invalidate(prefix: &str, app_id: &str) -> String {
        format!("{prefix}.{}.token.invalidate", token(app_id))
    }

    /// `<prefix>.*.token.invalidate`: what the token service listens on.
    pub fn token_invalidate_all(prefix: &str) -> String {
        format!("{prefix}.*.token.invalidate")
    }

    /// `<prefix>.<appid>.command.<kind>`: work for the workers.
    pub fn command(prefix: &str, app_id: &str, kind: &str) -> String {
        format!("{prefix}.{}.command.{}", token(app_id), token(kind))
    }

    /// `<prefix>.*.command.<kind>`: one kind of command of every app (a worker's filter).
    pub fn command_all(prefix: &str, kind: &str) -> String {
        format!("{prefix}.*.command.{}", token(kind))
    }

    /// `<prefix>.*.command.>`: what the command stream holds.
    pub fn commands_filter(prefix: &str) -> String {
        format!("{prefix}.*.command.>")
    }

    /// `<prefix>.<appid>.notice.<kind>`: facts workers announce (`kind` from [`super::notices`]).
    pub fn notice(prefix: &str, app_id: &str, kind: &str) -> String {
        format!("{prefix}.{}.notice.{kind}", token(app_id))
    }

    /// `<prefix>.*.notice.<kind>`: one kind of notice of every app.
    pub fn notice_all(prefix: &str, kind: &str) -> String {
        format!("{prefix}.*.notice.{kind}")
    }

    /// `<prefix>.<appid>.api.<area>.<verb>`: a request API of a service (JSON in, JSON out,
    /// errors as `{"error":{"code","message"}}`).
    pub fn api(prefix: &str, app_id: &str, area: &str, verb: &str) -> String {
        format!("{prefix}.{}.api.{area}.{}", token(app_id), token(verb))
    }

    /// `<prefix>.*.api.<area>.*`: every request of one API area (a responder's subscription).
    pub fn api_listen(prefix: &str, area: &str) -> String {
        format!("{prefix}.*.api.{area}.*")
    }

    /// The verb (last token) of an API subject.
    pub fn api_verb(subject: &str) -> &str {
        subject.rsplit('.').next().unwrap_or_default()
    }

    /// The appid token of a subject under `prefix` (the second token), if any.
    pub fn app_id_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(prefix)?
            .strip_prefix('.')?
            .split('.')
            .next()
    }
}

/// Stream names, derived from the subject prefix.
pub mod streams {
    fn base(prefix: &str) -> String {
        prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The inbound stream: `WECHAT_INBOUND` for the default prefix.
    pub fn inbound(prefix: &str) -> String {
        format!("{}_INBOUND", base(prefix))
    }

    /// The command stream: `WECHAT_COMMANDS` for the default prefix.
    pub fn commands(prefix: &str) -> String {
        format!("{}_COMMANDS", base(prefix))
    }
}

/// Queue groups of core-NATS responders.
pub mod queues {
    /// The token service's invalidation responders.
    pub const TOKEN: &str = "wxoa-token";
    /// The replier's API responders (rules, send status).
    pub const REPLIER: &str = "wxoa-replier";
    /// The user-sync worker's API responders (users).
    pub const USERSYNC: &str = "wxoa-usersync";
    /// The broadcast worker's API responders.
    pub const BROADCAST: &str = "wxoa-broadcast";
}

/// Durable JetStream consumer names.
pub mod consumers {
    /// The replier on the inbound stream.
    pub const REPLIER: &str = "wxoa-replier";
    /// The customer-service sender on `command.send`.
    pub const SENDER: &str = "wxoa-sender";
    /// The user-sync worker on inbound events.
    pub const USERSYNC_EVENTS: &str = "wxoa-usersync";
    /// The user-sync worker on `command.usersync`.
    pub const USERSYNC_COMMANDS: &str = "wxoa-usersync-commands";
    /// The broadcast worker on `command.broadcast`.
    pub const BROADCAST_COMMANDS: &str = "wxoa-broadcast";
    /// The broadcast worker on MASSSENDJOBFINISH events.
    pub const BROADCAST_MASS_FINISH: &str = "wxoa-broadcast-massfinish";
    /// The broadcast worker on TEMPLATESENDJOBFINISH events.
    pub const BROADCAST_TEMPLATE_FINISH: &str = "wxoa-broadcast-templatefinish";
}

/// Command kinds (`<prefix>.<appid>.command.<kind>`).
pub mod commands {
    /// Send one customer-service message ([`crate::command::SendCommand`]).
    pub const SEND: &str = "send";
    /// Start a full follower sync ([`crate::users::SyncCommand`]).
    pub const USERSYNC: &str = "usersync";
    /// A broadcast job ([`crate::broadcast::BroadcastCommand`]).
    pub const BROADCAST: &str = "broadcast";
}

/// Notice kinds (`<prefix>.<appid>.notice.<kind>`).
pub mod notices {
    /// The result of a send command ([`crate::command::SendResult`]).
    pub const SEND_RESULT: &str = "send.result";
    /// How the replier answered a message ([`crate::command::ReplyOutcome`]).
    pub const REPLY_OUTCOME: &str = "reply.outcome";
    /// An app's run-time rules changed (`{"version": n}`): repliers reload them.
    pub const RULES_CHANGED: &str = "rules.changed";
    /// A directory entry changed ([`crate::users::UserUpdated`]).
    pub const USER_UPDATED: &str = "user.updated";
    /// A full sync moved ([`crate::users::SyncProgress`]).
    pub const USERSYNC_PROGRESS: &str = "usersync.progress";
    /// A full sync ended ([`crate::users::SyncProgress`]).
    pub const USERSYNC_FINISHED: &str = "usersync.finished";
    /// A broadcast moved ([`crate::broadcast::BroadcastProgress`]).
    pub const BROADCAST_PROGRESS: &str = "broadcast.progress";
    /// A broadcast ended, or WeChat reported on it ([`crate::broadcast::BroadcastProgress`]).
    pub const BROADCAST_FINISHED: &str = "broadcast.finished";
}

/// Request API areas (`<prefix>.<appid>.api.<area>.<verb>`).
pub mod apis {
    /// Auto-reply rules: `list`, `get`, `put`, `delete`, `test`.
    pub const RULES: &str = "rules";
    /// Send commands: `status`.
    pub const SEND: &str = "send";
    /// The follower directory and user management (see the user-sync worker).
    pub const USERS: &str = "users";
    /// Broadcast jobs, mass-send and template management.
    pub const BROADCAST: &str = "broadcast";
}

/// NATS header names.
pub mod headers {
    /// JetStream's dedupe id: `<appid>:<dedupe key>`.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// CloudEvents binary mode: spec version (`1.0`).
    pub const CE_SPECVERSION: &str = "ce-specversion";
    /// CloudEvents: the event id (the Nats-Msg-Id).
    pub const CE_ID: &str = "ce-id";
    /// CloudEvents: `wechat.message.<type>` or `wechat.event.<event>`.
    pub const CE_TYPE: &str = "ce-type";
    /// CloudEvents: `/wechat/<appid>`.
    pub const CE_SOURCE: &str = "ce-source";
    /// CloudEvents: when the gateway received the callback (RFC 3339).
    pub const CE_TIME: &str = "ce-time";
    /// CloudEvents: the sender's openid.
    pub const CE_SUBJECT: &str = "ce-subject";
    /// CloudEvents: `application/json`.
    pub const CE_DATACONTENTTYPE: &str = "ce-datacontenttype";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// The full rendezvous subject to send the passive reply to (only while one is possible).
    pub const REPLY_SUBJECT: &str = "Wx-Reply-Subject";
    /// Unix milliseconds after which a passive reply is no longer taken.
    pub const REPLY_DEADLINE: &str = "Wx-Reply-Deadline";
}

/// Redis keys. Every key of one account carries the `{<appid>}` hash tag, so all of them land in
/// one Redis Cluster slot.
pub mod keys {
    /// `<prefix>:{<appid>}:access_token`: the current access_token, with a TTL.
    pub fn access_token(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:access_token")
    }

    /// `<prefix>:{<appid>}:jsapi_ticket`: the current JS-SDK ticket, with a TTL.
    pub fn jsapi_ticket(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:jsapi_ticket")
    }

    /// `<prefix>:{<appid>}:token:lock`: the refresh lock (`SET NX PX`, compare-and-delete).
    pub fn token_lock(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:token:lock")
    }

    /// `<prefix>:{<appid>}:token:force:<yyyymmdd>`: stable_token force refreshes used that day.
    pub fn token_force_count(prefix: &str, app_id: &str, day: &str) -> String {
        format!("{prefix}:{{{app_id}}}:token:force:{day}")
    }

    /// `<prefix>:{<appid>}:token:force:last`: unix ms of the last forced refresh.
    pub fn token_force_last(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:token:force:last")
    }

    /// `<prefix>:{<appid>}:rules`: run-time auto-reply rules, a hash of id → rule JSON.
    pub fn rules(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:rules")
    }

    /// `<prefix>:{<appid>}:rules:version`: bumped by every rule change.
    pub fn rules_version(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:rules:version")
    }

    /// `<prefix>:nonce:<digest>`: the app and message a plaintext callback's signature was
    /// first used for; `<digest>` is 32 hex of the SHA-1 of the lower-cased `signature` (one
    /// value for every split of its digits between `timestamp` and `nonce`). Not per app: apps
    /// that share a Token share signatures, so a URL seen for one must not pass for another.
    pub fn gateway_nonce(prefix: &str, digest: &str) -> String {
        format!("{prefix}:nonce:{digest}")
    }

    /// `<prefix>:{<appid>}:reply:<key>`: how the replier is answering one message (its claim).
    pub fn reply_claim(prefix: &str, app_id: &str, key: &str) -> String {
        format!("{prefix}:{{{app_id}}}:reply:{key}")
    }

    /// `<prefix>:{<appid>}:send:<key>`: the state and result of one send command.
    pub fn send_state(prefix: &str, app_id: &str, key: &str) -> String {
        format!("{prefix}:{{{app_id}}}:send:{key}")
    }

    /// `<prefix>:{<appid>}:rate:<what>:<unix second>`: a per-second call counter.
    pub fn rate(prefix: &str, app_id: &str, what: &str, second: i64) -> String {
        format!("{prefix}:{{{app_id}}}:rate:{what}:{second}")
    }

    /// `<prefix>:{<appid>}:user:<openid>`: one directory entry (a hash).
    pub fn user(prefix: &str, app_id: &str, openid: &str) -> String {
        format!("{prefix}:{{{app_id}}}:user:{openid}")
    }

    /// `<prefix>:{<appid>}:followers`: the openids following now (a set).
    pub fn followers(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:followers")
    }

    /// `<prefix>:{<appid>}:unionid:<unionid>`: the openid of a unionid.
    pub fn unionid(prefix: &str, app_id: &str, unionid: &str) -> String {
        format!("{prefix}:{{{app_id}}}:unionid:{unionid}")
    }

    /// `<prefix>:{<appid>}:tag:<tagid>`: the openids with a tag (a set).
    pub fn tag_members(prefix: &str, app_id: &str, tagid: i64) -> String {
        format!("{prefix}:{{{app_id}}}:tag:{tagid}")
    }

    /// `<prefix>:{<appid>}:blacklist`: blacklisted openids (a set).
    pub fn blacklist(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:blacklist")
    }

    /// `<prefix>:{<appid>}:usersync:job`: the full sync's state and checkpoint (a hash).
    pub fn usersync_job(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:usersync:job")
    }

    /// `<prefix>:{<appid>}:usersync:lease`: the worker running the full sync.
    pub fn usersync_lease(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:usersync:lease")
    }

    /// `<prefix>:{<appid>}:usersync:seen:<job>`: openids listed by one full sync (a set).
    pub fn usersync_seen(prefix: &str, app_id: &str, job: &str) -> String {
        format!("{prefix}:{{{app_id}}}:usersync:seen:{job}")
    }

    /// `<prefix>:{<appid>}:usersync:left:<job>`: followers one full sync did not list (a set).
    pub fn usersync_left(prefix: &str, app_id: &str, job: &str) -> String {
        format!("{prefix}:{{{app_id}}}:usersync:left:{job}")
    }

    /// `<prefix>:{<appid>}:broadcasts`: the app's broadcast jobs (a sorted set by start time).
    pub fn broadcasts(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:broadcasts")
    }

    /// `<prefix>:{<appid>}:broadcast:<job>`: one broadcast's state and checkpoint (a hash).
    pub fn broadcast(prefix: &str, app_id: &str, job: &str) -> String {
        format!("{prefix}:{{{app_id}}}:broadcast:{job}")
    }

    /// `<prefix>:{<appid>}:broadcast:<job>:to`: a broadcast's recipients, fixed at its start (a list).
    pub fn broadcast_recipients(prefix: &str, app_id: &str, job: &str) -> String {
        format!("{prefix}:{{{app_id}}}:broadcast:{job}:to")
    }

    /// `<prefix>:{<appid>}:broadcast:<job>:lease`: the worker running a broadcast.
    pub fn broadcast_lease(prefix: &str, app_id: &str, job: &str) -> String {
        format!("{prefix}:{{{app_id}}}:broadcast:{job}:lease")
    }

    /// `<prefix>:{<appid>}:broadcast:msgids`: WeChat msg_id → broadcast job (a hash).
    pub fn broadcast_msgids(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:broadcast:msgids")
    }

    /// `<prefix>:{<appid>}:web:state:pending`: the app's pending OAuth2 logins, a sorted set
    /// of state nonces scored by expiry (unix ms); taking a nonce out is its single use.
    pub fn web_pending_logins(prefix: &str, app_id: &str) -> String {
        format!("{prefix}:{{{app_id}}}:web:state:pending")
    }

    /// `<prefix>:{<appid>}:web:code:<hash>`: an OAuth2 code already exchanged.
    pub fn web_code(prefix: &str, app_id: &str, hash: &str) -> String {
        format!("{prefix}:{{{app_id}}}:web:code:{hash}")
    }

    /// `<prefix>:{<appid>}:web:grant:<openid>`: a user's web access_token and refresh token.
    pub fn web_grant(prefix: &str, app_id: &str, openid: &str) -> String {
        format!("{prefix}:{{{app_id}}}:web:grant:{openid}")
    }

    /// `<prefix>:{<appid>}:quota:<yyyymmdd>`: calls of each API that day (a hash: API path →
    /// count).
    pub fn api_calls(prefix: &str, app_id: &str, day: &str) -> String {
        format!("{prefix}:{{{app_id}}}:quota:{day}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_escape_outside_data() {
        assert_eq!(
            subjects::event("wechat", "wx1", "SCAN"),
            "wechat.wx1.event.scan"
        );
        assert_eq!(
            subjects::event("wechat", "wx1", "a.b*>c"),
            "wechat.wx1.event.a_b__c"
        );
        assert_eq!(subjects::message("t", "wx1", ""), "t.wx1.message.unknown");
        assert_eq!(subjects::app_id_of("t.x", "t.x.wx1.reply.g.k"), Some("wx1"));
        let reply = subjects::reply("t.x", "wx1", "g1", "k1");
        assert_eq!(
            subjects::reply_gateway("t.x", "wx1", "k1", &reply),
            Some("g1")
        );
        for other in [
            subjects::reply("t.x", "wx2", "g1", "k1"),
            subjects::reply("t.x", "wx1", "g1", "k2"),
            subjects::reply("t", "wx1", "g1", "k1"),
            "t.x.wx1.command.send".to_owned(),
            "t.x.wx1.reply.g1.k1.more".to_owned(),
            "t.x.wx1.reply.*.k1".to_owned(),
            "t.x.wx1.reply..k1".to_owned(),
        ] {
            assert_eq!(
                subjects::reply_gateway("t.x", "wx1", "k1", &other),
                None,
                "{other}"
            );
        }
        assert_eq!(streams::inbound("wechat"), "WECHAT_INBOUND");
        assert_eq!(streams::inbound("t-1a"), "T_1A_INBOUND");
        assert_eq!(
            keys::access_token("wechat", "wx1"),
            "wechat:{wx1}:access_token"
        );
        assert!(is_token("wx_1-a") && !is_token("wx.1") && !is_token(""));
        assert_eq!(token(&"a".repeat(5_000)).len(), MAX_TOKEN_CHARS);
    }
}
