//! The passive-reply rendezvous: one core-NATS subscription per gateway instance
//! (`<prefix>.*.reply.<instance>.*`) and a table of callbacks waiting for a reply.
//!
//! A waiting callback registers its key before the message is published; a replier's request
//! takes the waiter out of the table and hands it the reply. Whoever takes the waiter first
//! (the replier, or the callback giving up at its deadline) decides, so a reply is answered
//! `taken` only when it is returned to WeChat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use wxoa_wire::reply::{PassiveReply, ReplyRequest, ReplyResponse};

/// What a waiting callback receives: a reply, or `None` for an explicit "no reply".
pub(crate) type Decision = Option<PassiveReply>;

struct Waiter {
    /// True when answering a user message (news then holds one article).
    to_user_message: bool,
    tx: oneshot::Sender<Decision>,
}

/// The table of callbacks waiting for a passive reply.
#[derive(Clone, Default)]
pub(crate) struct Rendezvous {
    waiters: Arc<Mutex<HashMap<String, Waiter>>>,
}

impl Rendezvous {
    /// Registers a waiter; `None` when one with this key is already waiting (a racing retry).
    pub(crate) fn register(
        &self,
        key: &str,
        to_user_message: bool,
    ) -> Option<oneshot::Receiver<Decision>> {
        let mut waiters = self.waiters.lock().expect("not poisoned");
        if waiters.contains_key(key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiters.insert(
            key.to_owned(),
            Waiter {
                to_user_message,
                tx,
            },
        );
        Some(rx)
    }

    /// Removes a waiter; true when it was still there (nobody answered it).
    pub(crate) fn cancel(&self, key: &str) -> bool {
        self.waiters
            .lock()
            .expect("not poisoned")
            .remove(key)
            .is_some()
    }

    /// Hands a replier's request to its waiter and says how it went.
    pub(crate) fn answer(&self, key: &str, request: ReplyRequest) -> ReplyResponse {
        let mut waiters = self.waiters.lock().expect("not poisoned");
        let Some(waiter) = waiters.get(key) else {
            return ReplyResponse::Late;
        };
        if let Some(reply) = &request.reply
            && let Err(e) = reply.validate(waiter.to_user_message)
        {
            return ReplyResponse::Rejected {
                error: e.to_string(),
            };
        }
        let waiter = waiters.remove(key).expect("present");
        drop(waiters);
        match waiter.tx.send(request.reply) {
            Ok(()) => ReplyResponse::Taken,
            Err(_) => ReplyResponse::Late,
        }
    }

    /// Serves reply requests from `subscriber` until `shutdown`.
    pub(crate) async fn serve(
        self,
        client: async_nats::Client,
        mut subscriber: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = subscriber.next() => match m { Some(m) => m, None => break },
            };
            let key = message
                .subject
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            let response = match serde_json::from_slice::<ReplyRequest>(&message.payload) {
                Ok(request) => self.answer(&key, request),
                Err(e) => ReplyResponse::Rejected {
                    error: format!("reply request JSON: {e}"),
                },
            };
            if let Some(inbox) = message.reply {
                let body = Bytes::from(serde_json::to_vec(&response).expect("serializes"));
                if let Err(e) = client.publish(inbox, body).await {
                    tracing::warn!(error = %e, "answering a reply request");
                }
            }
        }
        let _ = subscriber.unsubscribe().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> ReplyRequest {
        ReplyRequest {
            reply: Some(PassiveReply::Text {
                content: "hi".into(),
            }),
        }
    }

    #[test]
    fn first_taker_wins() {
        let r = Rendezvous::default();
        let mut rx = r.register("k", true).unwrap();
        assert!(r.register("k", true).is_none());
        assert_eq!(r.answer("k", text()), ReplyResponse::Taken);
        assert_eq!(r.answer("k", text()), ReplyResponse::Late);
        assert!(matches!(rx.try_recv(), Ok(Some(_))));
        assert!(!r.cancel("k"));
    }

    #[test]
    fn invalid_reply_keeps_the_waiter() {
        let r = Rendezvous::default();
        let _rx = r.register("k", true).unwrap();
        let news = ReplyRequest {
            reply: Some(PassiveReply::News { articles: vec![] }),
        };
        assert!(matches!(
            r.answer("k", news),
            ReplyResponse::Rejected { .. }
        ));
        assert_eq!(r.answer("k", text()), ReplyResponse::Taken);
    }

    #[test]
    fn late_after_cancel_or_dropped_receiver() {
        let r = Rendezvous::default();
        let rx = r.register("k", false).unwrap();
        assert!(r.cancel("k"));
        assert_eq!(r.answer("k", text()), ReplyResponse::Late);
        drop(rx);
        let rx = r.register("j", false).unwrap();
        drop(rx);
        assert_eq!(r.answer("j", text()), ReplyResponse::Late);
    }
}
