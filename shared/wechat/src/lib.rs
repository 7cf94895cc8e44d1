//! The WeChat Official Account REST API client shared by every service.
//!
//! It sorts WeChat's return codes into classes ([`errcode`]), turns every failure into one
//! [`WechatError`], calls the API with the access_token the token service keeps in Redis
//! ([`WechatClient`]: cached until a `token.refreshed` notice, invalidated over NATS and retried
//! once when WeChat rejects it) and counts calls per API and day in Redis.
//!
//! It does not refresh tokens on its own: only the token service calls the token and ticket
//! endpoints in [`token_api`]. It does not retry transient errors (-1, 45011) or wait out
//! quotas: callers decide with [`WechatError::is_transient`]. It has no typed wrappers yet
//! beyond [`WechatClient::callback_ips`]; other APIs go through [`WechatClient::get`] and
//! [`WechatClient::post`].
//!
//! # Layout
//! - [`errcode`]: [`ErrorClass`], [`classify`] and the errcode/errmsg of an answer.
//! - [`error`]: the one error type, [`WechatError`].
//! - [`token_api`]: `cgi-bin/token`, `cgi-bin/stable_token`, `ticket/getticket` (token service only).
//! - [`client`]: the API client, [`WechatClient`].
//! - [`http_client`]: the HTTP client with the configured timeout.

#![warn(missing_docs)]

pub mod client;
pub mod errcode;
pub mod error;
mod http;
pub mod sns;
pub mod token_api;
pub mod worker;

pub use client::{Upload, WechatClient};
pub use errcode::{ErrorClass, classify};
pub use error::WechatError;
pub use http::{Answer, http_client};
pub use worker::WorkerError;
