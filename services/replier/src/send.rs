//! The customer-service sender: one `send` command → one `message/custom/send` call, once per
//! command id, announced as a [`SendResult`] notice.
//!
//! # Once per id
//! The command id is claimed in Redis (`keys::send_state`, `claimed:<unix ms>`) before the call
//! and replaced by the result after it. A redelivery finds the claim or the result:
//! - a result: announced again, nothing sent;
//! - a claim younger than the lease: another replica is sending it; nak and look again later;
//! - an older claim: a worker stopped during the call. WeChat may have delivered the message,
//!   so it is not sent again: the result is `uncertain`.
//!
//! A call that failed before WeChat could act (connect error, -1, 45011, HTTP 5xx, a token
//! WeChat refused) releases the claim and is retried with backoff up to
//! `replier.send_max_deliver` deliveries; a refusal (45015 window closed, 45047 too many,
//! 40003 bad openid, 48001 ...) fails at once; a call whose answer was lost is `uncertain`.

use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::{Value, json};
use wxoa_runtime::consumer::Delivery;
use wxoa_runtime::now_ms;
use wxoa_wire::command::{SendCommand, SendResult, SendStatus};
use wxoa_wire::names::{keys, notices, subjects};

use crate::{ReplierError, Shared};

/// WeChat's customer-service send API.
pub const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";
/// WeChat's typing indicator API.
pub const CUSTOM_TYPING: &str = "/cgi-bin/message/custom/typing";

const CLAIMED: &str = "claimed:";

/// Handles one delivery of `<prefix>.<appid>.command.send`.
pub(crate) async fn handle(shared: Arc<Shared>, delivery: Delivery) -> Result<(), ReplierError> {
    let app_id = subjects::app_id_of(&shared.prefix, &delivery.subject)
        .unwrap_or_default()
        .to_owned();
    let value: Value = serde_json::from_slice(&delivery.payload)
        .map_err(|e| ReplierError::Invalid(format!("send command JSON: {e}")))?;
    let id = value["id"].as_str().unwrap_or_default().to_owned();
    let openid = value["openid"].as_str().unwrap_or_default().to_owned();
    let ending = Ending {
        shared: &shared,
        app_id: &app_id,
        id: &id,
        openid: &openid,
        attempts: delivery.delivered,
    };
    let command = match serde_json::from_value::<SendCommand>(value)
        .map_err(|e| format!("invalid send command: {e}"))
        .and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string()))
    {
        Ok(command) => command,
        Err(reason) if id.is_empty() => return Err(ReplierError::Invalid(reason)),
        Err(reason) => return ending.finish(SendStatus::Failed, None, Some(reason)).await,
    };
    if !shared.store.serves(&app_id) {
        let reason = format!("unknown app {app_id}");
        return ending.finish(SendStatus::Failed, None, Some(reason)).await;
    }
    if !shared.verified(&app_id) {
        let reason = "the account is not verified: customer-service messages need a verified account (wechat 48001)";
        return ending
            .finish(SendStatus::Failed, Some(48001), Some(reason.to_owned()))
            .await;
    }

    let key = keys::send_state(&shared.key_prefix, &app_id, &id);
    let now = now_ms();
    let earlier = shared.claim(&key, &format!("{CLAIMED}{now}")).await?;
    if let Some(earlier) = earlier {
        return match earlier.strip_prefix(CLAIMED) {
            Some(at) if now - at.parse::<i64>().unwrap_or(0) < shared.send_lease_ms => Err(
                ReplierError::Busy(format!("send {id} is in flight on another worker")),
            ),
            Some(_) => {
                let reason = "a worker stopped during the call to WeChat; not sent again";
                ending
                    .finish(SendStatus::Uncertain, None, Some(reason.to_owned()))
                    .await
            }
            None => {
                // Already done: announce the stored result again.
                match serde_json::from_str::<SendResult>(&earlier) {
                    Ok(result) => {
                        shared.notify(&app_id, notices::SEND_RESULT, &result).await;
                        Ok(())
                    }
                    Err(e) => Err(ReplierError::Invalid(format!("stored result of {id}: {e}"))),
                }
            }
        };
    }

    shared.throttle(&app_id).await?;
    if command.typing {
        let body = json!({"touser": command.openid, "command": "Typing"});
        if let Err(e) = shared.wechat.post(&app_id, CUSTOM_TYPING, &body).await {
            tracing::debug!(error = %e, "typing indicator refused");
        }
    }
    let body = command
        .message
        .to_wechat_json(&command.openid, command.kf_account.as_deref());
    match shared.wechat.post(&app_id, CUSTOM_SEND, &body).await {
        Ok(_) => ending.finish(SendStatus::Sent, None, None).await,
        Err(e) if e.maybe_delivered() => {
            let reason = format!("{e}; WeChat may have delivered it, not sent again");
            ending
                .finish(SendStatus::Uncertain, None, Some(reason))
                .await
        }
        Err(e) if e.is_transient() && delivery.delivered < shared.send_max_deliver => {
            // Not sent: release the claim so the retry may send it.
            let _: Result<i64, _> = shared.redis.clone().del(&key).await;
            Err(ReplierError::Wechat(e))
        }
        Err(e) => {
            ending
                .finish(SendStatus::Failed, e.errcode(), Some(e.to_string()))
                .await
        }
    }
}

/// What a finished send records and announces.
struct Ending<'a> {
    shared: &'a Shared,
    app_id: &'a str,
    id: &'a str,
    openid: &'a str,
    attempts: i64,
}

impl Ending<'_> {
    /// Stores the result (replacing the claim) and announces it.
    async fn finish(
        &self,
        status: SendStatus,
        errcode: Option<i64>,
        error: Option<String>,
    ) -> Result<(), ReplierError> {
        let result = SendResult {
            id: self.id.to_owned(),
            app_id: self.app_id.to_owned(),
            openid: self.openid.to_owned(),
            status,
            errcode,
            error,
            attempts: self.attempts,
            at_ms: now_ms(),
        };
        if status != SendStatus::Sent {
            tracing::warn!(
                app_id = self.app_id,
                id = self.id,
                ?status,
                errcode,
                error = result.error.as_deref(),
                "send command not sent"
            );
        }
        if !self.id.is_empty() && self.shared.store.serves(self.app_id) {
            let json = serde_json::to_string(&result).expect("a result always serializes");
            let key = keys::send_state(&self.shared.key_prefix, self.app_id, self.id);
            let _: () = self
                .shared
                .redis
                .clone()
                .set_ex(key, json, self.shared.state_ttl_secs)
                .await?;
        }
        self.shared.count_send(status);
        self.shared
            .notify(self.app_id, notices::SEND_RESULT, &result)
            .await;
        Ok(())
    }
}

/// The stored result of send command `id`, or `None` (unknown, or still in flight).
pub(crate) async fn status(
    shared: &Shared,
    app_id: &str,
    id: &str,
) -> Result<Option<SendResult>, ReplierError> {
    let stored: Option<String> = shared
        .redis
        .clone()
        .get(keys::send_state(&shared.key_prefix, app_id, id))
        .await?;
    Ok(stored
        .filter(|s| !s.starts_with(CLAIMED))
        .and_then(|s| serde_json::from_str(&s).ok()))
}
