//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// wxoa: a backend platform for WeChat Official Accounts.
#[derive(Debug, Parser)]
#[command(name = "wxoa", version)]
pub(crate) struct Cli {
    /// TOML config file (else $WXOA_CONFIG; env WXOA__SECTION__KEY overrides either).
    #[arg(long, global = true)]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Everything in one process with the WeChat simulator and a demo app; starts local
    /// nats-server and redis-server when none answer.
    Dev,
    /// The callback gateway.
    Gateway,
    /// The token service.
    Token,
    /// The WeChat simulator, or a command to a running one.
    Sim {
        #[command(subcommand)]
        command: Option<SimCommand>,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Serve the simulator (the default).
    Serve,
    /// Make the running simulator send a callback to the gateway, as WeChat would.
    Send {
        /// The simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        sim: String,
        /// The app (default: the first configured, else the dev demo app).
        #[arg(long)]
        app: Option<String>,
        /// The sender's openid.
        #[arg(long, default_value = "o_demo_user")]
        from: String,
        /// Send a text message with this content.
        #[arg(long, conflicts_with = "event")]
        text: Option<String>,
        /// Send this event instead (subscribe, CLICK, ...).
        #[arg(long)]
        event: Option<String>,
        /// The event's EventKey.
        #[arg(long)]
        event_key: Option<String>,
        /// plain, compat or safe (default: safe when the app has an AES key).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Print the simulator's call counts.
    Stats {
        /// The simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        sim: String,
    },
}
