//! `wxoa dev`: every service and the simulator in one process, with demo apps, for a laptop
//! and the README quickstart. Starts `nats-server -js` and `redis-server` as child processes
//! (temp dirs, free ports) when none answer at the configured URLs, and stops them on exit.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use wxoa_runtime::Config;

use crate::run::{start_admin, with_grace};

/// The demo app in plaintext mode.
pub(crate) const DEMO_PLAIN_APP: &str = "wxdemoplain00001";
/// The demo app in safe mode.
pub(crate) const DEMO_SAFE_APP: &str = "wxdemosafe000001";

const DEMO_APPS: &str = r#"
[[apps]]
appid = "wxdemosafe000001"
secret = "demo-secret-safe"
token = "demo-token"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
original_id = "gh_demosafe"
verified = true
[[apps]]
appid = "wxdemoplain00001"
secret = "demo-secret-plain"
token = "demo-token"
original_id = "gh_demoplain"
verified = true
"#;

/// The demo auto-reply rules, used when `replier.rules_file` is not set.
const DEMO_RULES: &str = include_str!("../../../deploy/rules.demo.toml");

/// Local servers started for this run; killed when dropped.
struct LocalServers {
    _children: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

pub(crate) async fn run(mut config: Config) -> anyhow::Result<()> {
    if config.apps.is_empty() {
        config.apps = Config::from_toml(DEMO_APPS)
            .expect("demo apps are valid")
            .apps;
    }
    let _servers = ensure_servers(&mut config).await?;
    let _rules = match config.replier.rules_file {
        Some(_) => None,
        None => {
            let file = tempfile::NamedTempFile::new()?;
            std::fs::write(file.path(), DEMO_RULES)?;
            config.replier.rules_file = Some(file.path().to_owned());
            Some(file)
        }
    };
    let (health, shutdown) = start_admin(&config).await?;

    let gateway = wxoa_gateway::App::build(&config, health.clone()).await?;
    config.sim.gateway_url = format!("http://127.0.0.1:{}", gateway.local_addr().port());
    let sim = wxoa_sim::Sim::build(&config).await?;
    config.wechat.api_base = sim.base_url();
    config.wechat.open_base = sim.base_url();
    config.web.demo = true;
    let token = wxoa_token::App::build(&config, health.clone()).await?;
    let replier = wxoa_replier::App::build(&config, health.clone()).await?;
    let usersync = wxoa_usersync::App::build(&config, health.clone()).await?;
    let broadcast = wxoa_broadcast::App::build(&config, health.clone()).await?;
    let web = wxoa_web::App::build(&config, health.clone()).await?;
    if config.api.tokens.is_empty() {
        // A token for this run only, printed in the banner.
        config.api.tokens = vec![format!("dev-{:016x}", rand::random::<u64>()).into()];
    }
    let admin = wxoa_admin::App::build(&config, health.clone()).await?;
    let admin_addr = admin.local_addr();
    let web_addr = web.local_addr();

    print_banner(
        &config,
        gateway.local_addr(),
        &sim.base_url(),
        web_addr,
        admin_addr,
    );
    let all = async {
        tokio::try_join!(
            async {
                gateway
                    .run(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from)
            },
            async {
                token
                    .run(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from)
            },
            async {
                replier
                    .run(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from)
            },
            async {
                usersync
                    .run(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from)
            },
            async {
                broadcast
                    .run(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from)
            },
            async { web.run(shutdown.clone()).await.map_err(anyhow::Error::from) },
            async {
                admin
                    .run(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::from)
            },
            async { sim.run(shutdown.clone()).await.map_err(anyhow::Error::from) },
        )
    };
    with_grace(&config, &shutdown, all).await.transpose()?;
    Ok(())
}

fn print_banner(
    config: &Config,
    gateway: std::net::SocketAddr,
    sim: &str,
    web: std::net::SocketAddr,
    operator: std::net::SocketAddr,
) {
    let admin = config
        .admin
        .listen
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    println!(
        "\nwxoa dev is running\n\
         \n  gateway    http://127.0.0.1:{port}/wechat/<appid>   (callback URL)\
         \n  simulator  {sim}   (WeChat API + /_sim/ control API)\
         \n  web        http://{web}/demo   (OAuth2 login + JS-SDK demo page)\
         \n  operator   http://{operator}/openapi.json   (export WXOA_API_URL=http://{operator} WXOA_API_TOKEN={token})\
         \n  admin      {admin}   (/livez /readyz /metrics)\
         \n  nats       {nats}   (subjects {prefix}.<appid>.>, stream {stream})\
         \n  apps       {apps}\
         \n\nSend a test message as WeChat would:\
         \n  wxoa sim send --app {DEMO_SAFE_APP} --text hello\
         \n  wxoa sim send --app {DEMO_PLAIN_APP} --event subscribe\
         \n  curl -s {sim}/_sim/send -d '{{\"appid\":\"{DEMO_PLAIN_APP}\",\"message\":{{\"type\":\"text\",\"from\":\"o1\",\"content\":\"hi\"}}}}' -H 'content-type: application/json'\
         \nThe replier answers from the demo rules (deploy/rules.demo.toml); change them live:\
         \n  export WXOA__NATS__URL={nats}\
         \n  wxoa rules --app {DEMO_PLAIN_APP} list      wxoa rules --app {DEMO_PLAIN_APP} test --text hello\
         \n  wxoa rules --app {DEMO_PLAIN_APP} put my-rules.toml   (docs/rules.md)\
         \nMenus: wxoa menu --app {DEMO_PLAIN_APP} apply deploy/menu.demo.toml, then click it:\
         \n  wxoa sim send --app {DEMO_PLAIN_APP} --event CLICK --event-key V1001_NEWS\
         \nBroadcasts: wxoa broadcasts --app {DEMO_PLAIN_APP} start job.json   (docs/broadcasts.md)\
         \nFollowers: wxoa users --app {DEMO_PLAIN_APP} sync    (the simulator: POST {sim}/_sim/users/generate)\
         \nA reply not given within the budget ({budget} ms) goes out as a customer-service message.\
         \nWatch the stream:  nats --server {nats} sub '{prefix}.>'   (if the nats CLI is installed)\
         \nStop with Ctrl-C.\n",
        port = gateway.port(),
        budget = config.gateway.reply_budget_ms,
        token = config
            .api
            .tokens
            .first()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned())
            .unwrap_or_default(),
        nats = wxoa_runtime::config::redact_url(&config.nats.url),
        prefix = config.nats.prefix,
        stream = wxoa_wire::names::streams::inbound(&config.nats.prefix),
        apps = config
            .apps
            .iter()
            .map(|a| a.appid.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
}

/// Starts nats-server and redis-server when nothing answers at the configured URLs.
async fn ensure_servers(config: &mut Config) -> anyhow::Result<LocalServers> {
    let mut servers = LocalServers {
        _children: Vec::new(),
        _dirs: Vec::new(),
    };
    if !answers(&config.nats.url).await {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let child = spawn(
            "nats-server",
            &wxoa_runtime::local::nats_server_args(port, dir.path()),
        )?;
        config.nats.url = format!("nats://127.0.0.1:{port}");
        wait_until_answers(&config.nats.url, "nats-server").await?;
        println!("started nats-server -js on {}", config.nats.url);
        servers._children.push(child);
        servers._dirs.push(dir);
    }
    let redis_url = secrecy::ExposeSecret::expose_secret(&config.redis.url).to_owned();
    if !answers(&redis_url).await {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let child = spawn(
            "redis-server",
            &wxoa_runtime::local::redis_server_args(port, dir.path()),
        )?;
        let url = format!("redis://127.0.0.1:{port}");
        wait_until_answers(&url, "redis-server").await?;
        println!("started redis-server on {url}");
        config.redis.url = url.into();
        servers._children.push(child);
        servers._dirs.push(dir);
    }
    Ok(servers)
}

fn spawn(program: &str, args: &[String]) -> anyhow::Result<Child> {
    match Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "nothing answers at the configured URL and {}",
                wxoa_runtime::local::install_hint(program)
            )
        }
        Err(e) => Err(e).with_context(|| format!("starting {program}")),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `host:port` of a `scheme://[user:pass@]host:port[/...]` URL.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit('@').next()?;
    Some(host_port.to_owned())
}

async fn answers(url: &str) -> bool {
    let Some(addr) = host_port(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

async fn wait_until_answers(url: &str, what: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if answers(url).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{what} did not start answering at {}",
        wxoa_runtime::config::redact_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            host_port("nats://127.0.0.1:4222").as_deref(),
            Some("127.0.0.1:4222")
        );
        assert_eq!(host_port("redis://:pw@h:6379/0").as_deref(), Some("h:6379"));
    }

    #[test]
    fn demo_apps_parse() {
        let apps = Config::from_toml(DEMO_APPS).unwrap().apps;
        assert!(
            apps.iter()
                .any(|a| a.appid == DEMO_SAFE_APP && a.aes_key.is_some())
        );
        assert!(
            apps.iter()
                .any(|a| a.appid == DEMO_PLAIN_APP && a.aes_key.is_none())
        );
    }
}
