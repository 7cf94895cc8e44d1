//! `wxoa`: runs any wxoa service by subcommand, or all of them with `wxoa dev`.

mod cli;
mod dev;
mod operator;
mod run;
mod verbs;

use clap::Parser;

/// mimalloc: the gateway's hot path allocates many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let config = match wxoa_runtime::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wxoa: invalid configuration: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let telemetry = wxoa_runtime::telemetry::init(&config.telemetry, cli.command.name());
    let code = match run::command(cli.command, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxoa: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
