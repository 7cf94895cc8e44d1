//! Runs the chosen subcommand.

use std::time::Duration;

use anyhow::Context;
use wxoa_runtime::Config;
use wxoa_runtime::admin::{self, Health};
use wxoa_runtime::shutdown::CancellationToken;

use crate::cli::{Command, SimCommand};
use wxoa_wire::command::CustomMessage;

/// Runs one service: the admin server, `App::build`, `App::run` until a shutdown signal and
/// the grace period.
macro_rules! service {
    ($app:path, $config:expr) => {{
        let (health, shutdown) = start_admin(&$config).await?;
        // Not ready until the service has built (and taken its own startup latch).
        let building = health.latch();
        let app = <$app>::build(&$config, health).await?;
        building.release();
        with_grace(&$config, &shutdown, app.run(shutdown.clone()))
            .await
            .transpose()?;
        Ok(())
    }};
}

pub(crate) async fn command(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Dev => crate::dev::run(config).await,
        Command::Gateway => service!(wxoa_gateway::App, config),
        Command::Token => service!(wxoa_token::App, config),
        Command::Replier => service!(wxoa_replier::App, config),
        Command::Usersync => service!(wxoa_usersync::App, config),
        Command::Users { app, command } => crate::verbs::users(&config, app, command).await,
        Command::Web => service!(wxoa_web::App, config),
        Command::Admin => service!(wxoa_admin::App, config),
        Command::Menu { api, command } => crate::verbs::menu(&config, api, command).await,
        Command::Qrcode { api, command } => crate::operator::qrcode(&config, &api, command).await,
        Command::Quota {
            api,
            cgi_path,
            clear,
        } => {
            let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
            let mut answer = serde_json::json!({});
            if clear {
                answer["cleared"] =
                    crate::operator::operator(&config, &api, post.clone(), "quota/clear", None)
                        .await?;
            }
            answer["today"] = crate::operator::operator(&config, &api, get, "quota", None).await?;
            if let Some(path) = cgi_path {
                let body = serde_json::json!({ "cgi_path": path });
                let quota =
                    crate::operator::operator(&config, &api, post, "quota/get", Some(body)).await?;
                answer["quota"] = quota["quota"].clone();
            }
            crate::operator::show(&api, &answer, &crate::operator::FIELDS)
        }
        Command::Material { api, command } => {
            crate::operator::material(&config, &api, command).await
        }
        Command::Drafts { api, command } => crate::operator::drafts(&config, &api, command).await,
        Command::Published { api, command } => {
            crate::operator::published(&config, &api, command).await
        }
        Command::Comments {
            api,
            msg_data_id,
            index,
            command,
        } => {
            let msg_data_id = msg_data_id.context("pass --msg-data-id")?;
            crate::operator::comments(&config, &api, (msg_data_id, index), command).await
        }
        Command::TokenStatus { api } => {
            let get = reqwest::Method::GET;
            let answer = crate::operator::operator(&config, &api, get, "token", None).await?;
            crate::operator::show(&api, &answer, &crate::operator::FIELDS)
        }
        Command::Broadcast => service!(wxoa_broadcast::App, config),
        Command::Broadcasts { app, command } => {
            crate::verbs::broadcasts(&config, app, command).await
        }
        Command::Rules { app, json, command } => {
            crate::verbs::rules(&config, app, json, command).await
        }
        Command::Send {
            app,
            openid,
            text,
            message,
            typing,
            id,
        } => {
            let message = match (text, message) {
                (_, Some(json)) => serde_json::from_str::<CustomMessage>(&json)
                    .context("--message is not a customer-service message")?,
                (Some(content), None) => CustomMessage::Text { content },
                (None, None) => anyhow::bail!("pass --text or --message"),
            };
            crate::verbs::send(&config, app, openid, message, typing, id).await
        }
        Command::Sim {
            command: None | Some(SimCommand::Serve),
        } => {
            let shutdown = wxoa_runtime::shutdown::token_on_signal();
            let sim = wxoa_sim::Sim::build(&config).await?;
            tracing::info!(url = %sim.base_url(), "simulator listening");
            sim.run(shutdown).await?;
            Ok(())
        }
        Command::Sim {
            command:
                Some(SimCommand::Send {
                    sim,
                    app,
                    from,
                    text,
                    event,
                    event_key,
                    mode,
                }),
        } => {
            let app = app
                .or_else(|| config.apps.first().map(|a| a.appid.clone()))
                .unwrap_or_else(|| crate::dev::DEMO_SAFE_APP.to_owned());
            let message = match event {
                Some(event) => {
                    serde_json::json!({"type": "event", "from": from, "event": event, "event_key": event_key})
                }
                None => {
                    serde_json::json!({"type": "text", "from": from, "content": text.unwrap_or_else(|| "hello".into())})
                }
            };
            let body = serde_json::json!({"appid": app, "mode": mode, "message": message});
            let outcome: serde_json::Value = reqwest::Client::new()
                .post(format!("{sim}/_sim/send"))
                .json(&body)
                .send()
                .await
                .with_context(|| format!("reaching the simulator at {sim}"))?
                .error_for_status()?
                .json()
                .await?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
        Command::Sim {
            command: Some(SimCommand::Stats { sim }),
        } => {
            let stats: serde_json::Value = reqwest::get(format!("{sim}/_sim/stats"))
                .await
                .with_context(|| format!("reaching the simulator at {sim}"))?
                .json()
                .await?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(())
        }
        Command::Config => {
            println!("{config:#?}");
            Ok(())
        }
    }
}

/// Starts the admin server (when configured) and the shutdown token.
pub(crate) async fn start_admin(config: &Config) -> anyhow::Result<(Health, CancellationToken)> {
    let health = Health::default();
    let shutdown = wxoa_runtime::shutdown::token_on_signal();
    if let Some(listen) = config.admin.listen {
        let addr = admin::serve(listen, health.clone(), shutdown.clone())
            .await
            .with_context(|| format!("binding the admin server on {listen}"))?;
        tracing::info!(%addr, "admin server listening");
    }
    Ok((health, shutdown))
}

/// Waits for `task` at most the grace period after shutdown was signalled.
pub(crate) async fn with_grace<T>(
    config: &Config,
    shutdown: &CancellationToken,
    task: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(task);
    tokio::select! {
        out = &mut task => return Some(out),
        _ = shutdown.cancelled() => {}
    }
    let grace = Duration::from_secs(config.admin.shutdown_grace_secs);
    match tokio::time::timeout(grace, task).await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "in-flight work did not finish within the grace period"
            );
            None
        }
    }
}
