//! The WeChat Official Account wire protocol, pure and without I/O.
//!
//! It knows how WeChat signs and encrypts callbacks, how inbound XML maps to typed messages,
//! how passive replies are written, what wxoa publishes to NATS (the event envelope and its
//! headers) and every subject, stream, header and Redis key name. It does not talk to any
//! network, read the clock on its own, or know about configuration.
//!
//! # Layout
//! - [`signature`]: plain and safe-mode signatures, constant-time comparison.
//! - [`crypto`]: WXBizMsgCrypt AES-256-CBC with 32-byte PKCS#7 blocks.
//! - [`inbound`]: inbound XML → [`inbound::Inbound`], hostile XML rejected, dedupe keys.
//! - [`reply`]: passive replies, their XML and the encrypted envelope, the rendezvous JSON.
//! - [`envelope`]: the JSON event envelope and its NATS headers.
//! - [`broadcast`]: broadcast jobs (mass, template, customer-service fan-outs) and progress.
//! - [`command`]: the `send` command, its result, reply outcomes, the request-API error.
//! - [`users`]: the follower directory's records, notices and sync job.
//! - [`menu`]: custom-menu rules, checked before any call.
//! - [`names`]: subjects, streams, headers and Redis keys.
//! - [`web`]: the JS-SDK signature and the OAuth2 authorize URL.
//! - [`token`]: the token service's NATS contracts (invalidate, refreshed) and token fingerprints.

#![warn(missing_docs)]

pub mod broadcast;
pub mod command;
pub mod crypto;
pub mod envelope;
pub mod inbound;
pub mod media;
pub mod menu;
pub mod names;
pub mod reply;
pub mod signature;
pub mod token;
pub mod users;
pub mod web;
