//! What every wxoa service shares at run time.
//!
//! It loads the typed configuration once, sets up logging, connects to NATS and Redis,
//! provisions the JetStream streams, runs the admin server (`/livez`, `/readyz`, `/metrics`)
//! and turns SIGINT/SIGTERM into one shutdown token. It holds no business logic.
//!
//! # Layout
//! - [`config`]: layered configuration (defaults → TOML → `WXOA__*` environment).
//! - [`telemetry`]: log setup.
//! - [`shutdown`]: the shutdown signal.
//! - [`connect`]: NATS and Redis connections, stream provisioning.
//! - [`admin`]: the admin server, readiness and metrics.
//! - [`consumer`]: the shared JetStream consumer loop (provision, pull, handle, ack/nak/term).
//! - [`responder`]: the shared core-NATS request responder loop.
//! - [`lease`]: a renewed Redis lease for long jobs, taken over when its holder dies.
//! - [`rate`]: a per-second rate limit shared by every replica (Redis).
//! - [`serve`]: the public HTTP listeners, with timeouts and a connection cap.
//! - [`local`]: command lines of local servers for `wxoa dev` and the tests.

#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod connect;
pub mod consumer;
pub mod lease;
pub mod local;
pub mod rate;
pub mod responder;
pub mod serve;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
