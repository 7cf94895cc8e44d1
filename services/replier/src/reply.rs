//! Answering one inbound message: decide from the rules, then reply through the gateway's
//! rendezvous while the deadline allows, else as a customer-service message — once.
//!
//! # Never twice
//! Before acting, the replier claims the message in Redis (`keys::reply_claim`, set only if
//! absent, kept `replier.state_ttl_secs`), recording the channel it is about to use:
//! - `p` (passive): a redelivery may ask the gateway again, but only before the deadline; the
//!   gateway hands a waiter to the first taker, so the user still gets one reply. After the
//!   deadline the earlier attempt's fate is unknown and nothing more is sent (`uncertain`).
//!   A request whose answer never came back is `uncertain` too: the gateway may have taken the
//!   reply, so no fallback follows. Only an answer that says it was not taken (`late`,
//!   `rejected`) or no gateway listening (`no_responders`) lets the fallback go out.
//! - `c` (customer service): the fallback `send` command (id `reply:<message id>`, also its
//!   `Nats-Msg-Id`) is published again; the sender sends each id once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use wxoa_rules::{Decision, Match};
use wxoa_runtime::consumer::Delivery;
use wxoa_runtime::now_ms;
use wxoa_wire::command::{CustomMessage, ReplyChannel, ReplyOutcome, SendCommand, fallback_id};
use wxoa_wire::envelope::{Envelope, reply_key};
use wxoa_wire::names::{commands, headers, keys, notices, subjects};
use wxoa_wire::reply::{PassiveReply, ReplyRequest, ReplyResponse};

use crate::{ReplierError, Shared};

/// How long past the deadline a rendezvous request may still wait for the gateway's answer.
/// Generous: the gateway drops its waiter at the deadline and answers `late` at once, so a
/// longer wait costs only fallback latency when the gateway is slow, while an answer that misses
/// it turns into `uncertain` (no reply at all).
const ANSWER_SLACK: Duration = Duration::from_secs(2);

/// The claim value: a passive reply is being attempted.
const PASSIVE: &str = "p";
/// The claim value: the customer-service fallback is (being) published.
const CUSTOM: &str = "c";

/// Why the rendezvous did not take the reply.
enum Missed {
    Late,
    NoResponders,
    /// The request went out and no answer came back: the gateway may have taken the reply
    /// (the answer was lost) or not. Nothing more may be sent.
    Timeout,
    /// An answer came back that this replier cannot read (a newer gateway, a garbled
    /// message): it may say `taken`. Nothing more may be sent.
    Unreadable(String),
    Rejected(String),
}

impl Missed {
    /// True when the gateway certainly did not take the reply, so the fallback may go out.
    fn not_taken(&self) -> bool {
        !matches!(self, Missed::Timeout | Missed::Unreadable(_))
    }

    fn reason(&self) -> String {
        match self {
            Missed::Late => "late".to_owned(),
            Missed::NoResponders => "no_responders".to_owned(),
            Missed::Timeout => "timeout".to_owned(),
            Missed::Rejected(e) => format!("rejected: {e}"),
            Missed::Unreadable(e) => format!("unreadable gateway answer: {e}"),
        }
    }
}

/// Handles one delivery from the inbound stream.
pub(crate) async fn handle(shared: Arc<Shared>, delivery: Delivery) -> Result<(), ReplierError> {
    let envelope = Envelope::from_stream(&shared.prefix, &delivery.subject, &delivery.payload)
        .map_err(ReplierError::Invalid)?;
    let rendezvous = rendezvous(&shared.prefix, &envelope, delivery.headers.as_ref());
    let Some(rules) = shared.store.get(&envelope.app_id) else {
        tracing::debug!(app_id = %envelope.app_id, "message of an app this deployment does not serve");
        return Ok(());
    };
    let message = &envelope.message;
    // Events WeChat never answers (unsubscribe, job-finish reports, ...) take event rules only:
    // a default or message rule must not write to a user who just left.
    let decision = rules
        .set
        .decide(&envelope)
        .filter(|d| message.can_reply() || matches!(d.rule.matcher, Match::Event { .. }));
    let usable = |reply: &PassiveReply| match reply {
        PassiveReply::Text { content } if content.trim().is_empty() => false,
        reply => reply.validate(!message.is_event()).is_ok(),
    };
    let (rule, reply) = match decision {
        Some(Decision {
            rule,
            reply: Some(reply),
        }) if usable(&reply) => (rule.id.clone(), reply),
        other => {
            // Nothing to say: let the gateway answer `success` now instead of at the deadline.
            if let Some((subject, _)) = &rendezvous {
                let body = serde_json::to_vec(&ReplyRequest { reply: None })
                    .expect("a reply request always serializes");
                if let Err(e) = shared.nats.publish(subject.clone(), body.into()).await {
                    tracing::debug!(error = %e, "telling the gateway there is no reply failed");
                }
            }
            shared.count(ReplyChannel::None);
            match other {
                Some(Decision {
                    rule,
                    reply: Some(reply),
                }) => {
                    tracing::warn!(id = %envelope.id, rule = %rule.id, kind = reply.msg_type(), "the rule rendered a reply WeChat would refuse (an empty text?); not sent")
                }
                other => {
                    tracing::debug!(id = %envelope.id, rule = other.map(|d| d.rule.id.as_str()), "no reply")
                }
            }
            return Ok(());
        }
    };
    let now = now_ms();
    let missed_reason = if rendezvous.is_some() {
        "late"
    } else {
        "no passive reply possible"
    };
    let passive = rendezvous.filter(|(_, deadline)| now < *deadline);
    let claim_key = keys::reply_claim(
        &shared.key_prefix,
        &envelope.app_id,
        &reply_key(&envelope.id),
    );
    let earlier = shared
        .claim(&claim_key, if passive.is_some() { PASSIVE } else { CUSTOM })
        .await?;

    let outcome = match (earlier.as_deref(), passive) {
        // First attempt, in time.
        (None, Some((subject, deadline))) => {
            match ask_gateway(&shared, &subject, deadline, &reply).await {
                Ok(()) => (ReplyChannel::Passive, None),
                Err(missed) if missed.not_taken() => {
                    let reason = missed.reason();
                    set_claim(&shared, &claim_key, CUSTOM).await?;
                    (fallback(&shared, &envelope, &reply).await?, Some(reason))
                }
                // The answer was lost: the user may have the reply already. The claim stays
                // `p`, so no redelivery sends the fallback either.
                Err(missed) => (ReplyChannel::Uncertain, Some(missed.reason())),
            }
        }
        // First attempt, too late for a passive reply; or the fallback was already chosen.
        (None, None) | (Some(CUSTOM), _) => (
            fallback(&shared, &envelope, &reply).await?,
            Some(missed_reason.to_owned()),
        ),
        // An earlier attempt asked the gateway: ask again while the deadline allows; the
        // gateway answers the first taker only.
        (Some(_), Some((subject, deadline))) => {
            match ask_gateway(&shared, &subject, deadline, &reply).await {
                Ok(()) => (ReplyChannel::Passive, None),
                Err(missed) => (ReplyChannel::Uncertain, Some(missed.reason())),
            }
        }
        (Some(_), None) => (
            ReplyChannel::Uncertain,
            Some("an earlier attempt stopped after asking the gateway".to_owned()),
        ),
    };
    let (channel, reason) = outcome;
    shared.count(channel);
    if channel != ReplyChannel::Passive {
        tracing::info!(id = %envelope.id, rule, channel = ?channel, reason = reason.as_deref(), "replied without a passive reply");
        let notice = ReplyOutcome {
            message_id: envelope.id.clone(),
            openid: envelope.message.from_user_name.clone(),
            rule: Some(rule),
            channel,
            reason,
            at_ms: now_ms(),
        };
        shared
            .notify(&envelope.app_id, notices::REPLY_OUTCOME, &notice)
            .await;
    }
    Ok(())
}

/// The rendezvous subject and deadline from the headers, when a passive reply is possible.
/// The subject is taken only when it is the one the gateway builds for this very message of
/// this app (`<prefix>.<appid>.reply.<gateway>.<key>`): a message that names any other subject
/// would have the replier publish there with its own rights.
fn rendezvous(
    prefix: &str,
    envelope: &Envelope,
    headers: Option<&HeaderMap>,
) -> Option<(String, i64)> {
    let headers = headers?;
    let subject = headers.get(headers::REPLY_SUBJECT)?.as_str();
    if subjects::reply_gateway(prefix, &envelope.app_id, &reply_key(&envelope.id), subject)
        .is_none()
    {
        // Debug, not warn: whoever can publish inbound must not be able to flood the log.
        tracing::debug!(id = %envelope.id, subject, "ignoring a reply subject that is not this message's rendezvous");
        return None;
    }
    let deadline = headers
        .get(headers::REPLY_DEADLINE)?
        .as_str()
        .parse()
        .ok()?;
    Some((subject.to_owned(), deadline))
}

/// Sends the reply to the gateway's rendezvous; `Ok` when it was taken.
async fn ask_gateway(
    shared: &Shared,
    subject: &str,
    deadline: i64,
    reply: &PassiveReply,
) -> Result<(), Missed> {
    let body = serde_json::to_vec(&ReplyRequest {
        reply: Some(reply.clone()),
    })
    .expect("a reply request always serializes");
    let wait = Duration::from_millis((deadline - now_ms()).max(0) as u64) + ANSWER_SLACK;
    let answer = tokio::time::timeout(
        wait,
        shared.nats.request(subject.to_owned(), Bytes::from(body)),
    )
    .await
    .map_err(|_| Missed::Timeout)?
    .map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => Missed::NoResponders,
        _ => Missed::Timeout,
    })?;
    match serde_json::from_slice::<ReplyResponse>(&answer.payload) {
        Ok(ReplyResponse::Taken) => Ok(()),
        Ok(ReplyResponse::Late) => Err(Missed::Late),
        Ok(ReplyResponse::Rejected { error }) => Err(Missed::Rejected(error)),
        Err(e) => Err(Missed::Unreadable(e.to_string())),
    }
}

async fn set_claim(shared: &Shared, key: &str, value: &str) -> Result<(), ReplierError> {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(shared.state_ttl_secs)
        .query_async(&mut shared.redis.clone())
        .await?;
    Ok(())
}

/// Publishes the reply as a `send` command (id and `Nats-Msg-Id` `reply:<message id>`), where
/// the account may send customer-service messages and the reply has such a form.
async fn fallback(
    shared: &Shared,
    envelope: &Envelope,
    reply: &PassiveReply,
) -> Result<ReplyChannel, ReplierError> {
    if !shared.verified(&envelope.app_id) {
        tracing::debug!(app_id = %envelope.app_id, "not verified: no customer-service fallback");
        return Ok(ReplyChannel::Dropped);
    }
    let age_ms = now_ms() - envelope.received_at_ms;
    if age_ms > shared.fallback_max_age_ms {
        tracing::debug!(msg_id = %envelope.id, age_ms, "too old for a customer-service fallback");
        return Ok(ReplyChannel::Dropped);
    }
    let Some(message) = CustomMessage::from_passive(reply) else {
        return Ok(ReplyChannel::Dropped);
    };
    let command = SendCommand {
        id: fallback_id(&envelope.id),
        openid: envelope.message.from_user_name.clone(),
        message,
        typing: false,
        kf_account: None,
    };
    let subject = subjects::command(&shared.prefix, &envelope.app_id, commands::SEND);
    let mut headers = HeaderMap::new();
    headers.insert(headers::MSG_ID, command.id.as_str());
    wxoa_runtime::telemetry::inject(&mut headers);
    let payload = serde_json::to_vec(&command).expect("a command always serializes");
    shared
        .js
        .publish_with_headers(subject, headers, payload.into())
        .await
        .map_err(|e| ReplierError::Publish(e.to_string()))?
        .await
        .map_err(|e| ReplierError::Publish(e.to_string()))?;
    Ok(ReplyChannel::Custom)
}
