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
use wxoa_wire::names::subjects;
use wxoa_wire::reply::{PassiveReply, ReplyRequest, ReplyResponse};

/// What a waiting callback receives: a reply, or `None` for an explicit "no reply".
pub(crate) type Decision = Option<PassiveReply>;

struct Waiter {
    /// The app whose message waits: only a request on that app's reply subject takes it.
    app_id: String,
    /// True when answering a user message (news then holds one article).
    to_user_message: bool,
    tx: oneshot::Sender<Decision>,
}

/// A callback's registration in the table; dropping it removes the waiter.
pub(crate) struct Pending {
    key: String,
    table: Rendezvous,
    rx: oneshot::Receiver<Decision>,
}

impl Pending {
    /// Waits up to `budget` for a replier. Whoever takes the waiter first wins: when the
    /// budget runs out just as a replier took it, the replier's answer is returned.
    pub(crate) async fn wait(mut self, budget: std::time::Duration) -> Decision {
        match tokio::time::timeout(budget, &mut self.rx).await {
            Ok(decision) => decision.ok().flatten(),
            Err(_) => self.abandon().await,
        }
    }

    /// Stops waiting. If a replier already took the waiter (and was told `taken`), its
    /// answer is returned, so a reply is never both `taken` and dropped.
    pub(crate) async fn abandon(mut self) -> Decision {
        if self.table.cancel(&self.key) {
            return None;
        }
        (&mut self.rx).await.ok().flatten()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.table.cancel(&self.key);
    }
}

/// The table of callbacks waiting for a passive reply.
#[derive(Clone, Default)]
pub(crate) struct Rendezvous {
    waiters: Arc<Mutex<HashMap<String, Waiter>>>,
}

impl Rendezvous {
    /// Registers a waiter; `None` when one with this key is already waiting (a racing retry).
    /// The returned guard removes the waiter when dropped, whatever ends the callback.
    pub(crate) fn register(
        &self,
        app_id: &str,
        key: &str,
        to_user_message: bool,
    ) -> Option<Pending> {
        let mut waiters = self.waiters.lock().expect("not poisoned");
        if waiters.contains_key(key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiters.insert(
            key.to_owned(),
            Waiter {
                app_id: app_id.to_owned(),
                to_user_message,
                tx,
            },
        );
        Some(Pending {
            key: key.to_owned(),
            table: self.clone(),
            rx,
        })
    }

    /// Removes a waiter; true when it was still there (nobody answered it).
    pub(crate) fn cancel(&self, key: &str) -> bool {
        self.waiters
            .lock()
            .expect("not poisoned")
            .remove(key)
            .is_some()
    }

    /// Hands a replier's request, made on app `app_id`'s reply subject, to its waiter and says
    /// how it went. A request on another app's subject finds no waiter (`late`): NATS
    /// permissions are per subject, so a client allowed to answer app A's messages cannot take
    /// app B's.
    pub(crate) fn answer(&self, app_id: &str, key: &str, request: ReplyRequest) -> ReplyResponse {
        let mut waiters = self.waiters.lock().expect("not poisoned");
        let Some(waiter) = waiters.get(key).filter(|w| w.app_id == app_id) else {
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
        prefix: String,
        client: async_nats::Client,
        mut subscriber: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = subscriber.next() => match m { Some(m) => m, None => break },
            };
            let key = message.subject.rsplit('.').next().unwrap_or_default();
            let app_id = subjects::app_id_of(&prefix, &message.subject).unwrap_or_default();
            let response = match serde_json::from_slice::<ReplyRequest>(&message.payload) {
                Ok(request) => self.answer(app_id, key, request),
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
        let mut pending = r.register("wxa", "k", true).unwrap();
        assert!(r.register("wxa", "k", true).is_none());
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Taken);
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Late);
        assert!(matches!(pending.rx.try_recv(), Ok(Some(_))));
        assert!(!r.cancel("k"));
    }

    #[tokio::test]
    async fn a_dropped_callback_leaves_no_waiter() {
        let r = Rendezvous::default();
        let pending = r.register("wxa", "k", true).unwrap();
        drop(pending);
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Late);
        assert!(
            r.register("wxa", "k", true).is_some(),
            "a retry can wait again"
        );
    }

    #[tokio::test]
    async fn abandoning_after_a_take_returns_the_reply() {
        let r = Rendezvous::default();
        let pending = r.register("wxa", "k", true).unwrap();
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Taken);
        assert!(pending.abandon().await.is_some());
        let pending = r.register("wxa", "j", true).unwrap();
        assert!(pending.abandon().await.is_none());
    }

    #[test]
    fn a_request_on_another_apps_subject_takes_no_waiter() {
        let r = Rendezvous::default();
        let mut pending = r.register("wxb", "k", true).unwrap();
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Late);
        assert_eq!(r.answer("", "k", text()), ReplyResponse::Late);
        assert!(pending.rx.try_recv().is_err(), "app B's waiter still waits");
        assert_eq!(r.answer("wxb", "k", text()), ReplyResponse::Taken);
    }

    #[test]
    fn invalid_reply_keeps_the_waiter() {
        let r = Rendezvous::default();
        let _pending = r.register("wxa", "k", true).unwrap();
        let news = ReplyRequest {
            reply: Some(PassiveReply::News { articles: vec![] }),
        };
        assert!(matches!(
            r.answer("wxa", "k", news),
            ReplyResponse::Rejected { .. }
        ));
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Taken);
    }

    #[test]
    fn late_after_cancel_or_dropped_receiver() {
        let r = Rendezvous::default();
        let pending = r.register("wxa", "k", false).unwrap();
        assert!(r.cancel("k"));
        assert_eq!(r.answer("wxa", "k", text()), ReplyResponse::Late);
        drop(pending);
    }
}
