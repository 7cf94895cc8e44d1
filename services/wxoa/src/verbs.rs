//! Operator verbs over the services' NATS request APIs: `wxoa rules ...` and `wxoa send`.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wxoa_replier::api::{
    DeleteResponse, IdRequest, ListResponse, ListedRule, PutRequest, PutResponse, TestMessage,
    TestResponse,
};
use wxoa_rules::{Match, Rule};
use wxoa_runtime::Config;
use wxoa_wire::command::{ApiErrorBody, CustomMessage, SendCommand, SendResult, SendStatus};
use wxoa_wire::names::{apis, commands, headers, notices, subjects};

use crate::cli::{ApiArgs, BroadcastsCommand, MenuCommand, RulesCommand, UsersCommand};

/// How long a request waits for a replier.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The app a verb is about: `--app`, else the first configured.
pub(crate) fn app_of(config: &Config, app: Option<String>) -> anyhow::Result<String> {
    app.or_else(|| config.apps.first().map(|a| a.appid.clone()))
        .ok_or_else(|| anyhow!("no app: pass --app or configure [[apps]]"))
}

/// One request to `<prefix>.<app>.api.<area>.<verb>`; an error answer becomes an error.
async fn request<Q: Serialize, A: DeserializeOwned>(
    nats: &async_nats::Client,
    config: &Config,
    app: &str,
    area: &str,
    verb: &str,
    body: Q,
) -> anyhow::Result<A> {
    let subject = subjects::api(&config.nats.prefix, app, area, verb);
    let payload = serde_json::to_vec(&body)?;
    let answer = tokio::time::timeout(
        REQUEST_TIMEOUT,
        nats.request(subject.clone(), payload.into()),
    )
    .await
    .map_err(|_| anyhow!("no answer on {subject} within {REQUEST_TIMEOUT:?}"))?
    .map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => {
            anyhow!("no replier is running (nobody answers {subject})")
        }
        _ => anyhow!("request {subject}: {e}"),
    })?;
    if let Ok(ApiErrorBody { error }) = serde_json::from_slice(&answer.payload) {
        bail!("{} ({})", error.message, error.code);
    }
    serde_json::from_slice(&answer.payload)
        .with_context(|| format!("reading the answer of {subject}"))
}

async fn connect(config: &Config) -> anyhow::Result<async_nats::Client> {
    Ok(wxoa_runtime::connect::nats(&config.nats, "wxoa-cli").await?)
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `wxoa rules ...`
pub(crate) async fn rules(
    config: &Config,
    app: Option<String>,
    as_json: bool,
    command: RulesCommand,
) -> anyhow::Result<()> {
    let app = app_of(config, app)?;
    let nats = connect(config).await?;
    let call = |verb: &'static str, body: Value| {
        request::<Value, Value>(&nats, config, &app, apis::RULES, verb, body)
    };
    match command {
        RulesCommand::List => {
            let list: ListResponse = serde_json::from_value(call("list", Value::Null).await?)?;
            if as_json {
                return print_json(&list);
            }
            println!(
                "{} rules of {app} (run-time version {})",
                list.rules.len(),
                list.version
            );
            println!(
                "{:<24} {:<8} {:>4} {:<3} {:<40} REPLY",
                "ID", "SOURCE", "PRIO", "ON", "MATCH"
            );
            for ListedRule { source, rule } in &list.rules {
                println!(
                    "{:<24} {:<8} {:>4} {:<3} {:<40} {}",
                    rule.id,
                    format!("{source:?}").to_lowercase(),
                    rule.priority,
                    if rule.enabled { "yes" } else { "no" },
                    describe_match(&rule.matcher),
                    rule.reply.as_ref().map_or("(no reply)".to_owned(), |r| {
                        serde_json::to_string(r).unwrap_or_default()
                    }),
                );
            }
            Ok(())
        }
        RulesCommand::Get { id } => {
            let rule: ListedRule = serde_json::from_value(
                call("get", serde_json::to_value(IdRequest { id })?).await?,
            )?;
            print_json(&rule)
        }
        RulesCommand::Put { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let rules = wxoa_rules::parse_toml(&text)
                .with_context(|| format!("checking {}", file.display()))?;
            let rules: Vec<Rule> = rules
                .rules
                .into_iter()
                .filter(|r| r.applies_to(&app))
                .collect();
            if rules.is_empty() {
                bail!("{} holds no rule for app {app}", file.display());
            }
            for rule in rules {
                let id = rule.id.clone();
                let answer: PutResponse = serde_json::from_value(
                    call("put", serde_json::to_value(PutRequest { rule })?).await?,
                )
                .with_context(|| format!("storing rule `{id}`"))?;
                if as_json {
                    print_json(
                        &serde_json::json!({"id": id, "created": answer.created, "version": answer.version}),
                    )?;
                } else {
                    let verb = if answer.created {
                        "created"
                    } else {
                        "replaced"
                    };
                    println!("{verb} rule `{id}` (version {})", answer.version);
                }
            }
            Ok(())
        }
        RulesCommand::Delete { id } => {
            let answer: DeleteResponse = serde_json::from_value(
                call(
                    "delete",
                    serde_json::to_value(IdRequest { id: id.clone() })?,
                )
                .await?,
            )?;
            if as_json {
                return print_json(&answer);
            }
            println!("deleted rule `{id}` (version {})", answer.version);
            Ok(())
        }
        RulesCommand::Test {
            text,
            event,
            event_key,
            msg_type,
            recognition,
        } => {
            let message = TestMessage {
                text,
                event,
                event_key,
                msg_type,
                recognition,
                ..TestMessage::default()
            };
            let answer: TestResponse =
                serde_json::from_value(call("test", serde_json::to_value(message)?).await?)?;
            if as_json {
                return print_json(&answer);
            }
            match (&answer.rule, &answer.reply) {
                (None, _) => println!("no rule matches"),
                (Some(rule), None) => println!("rule `{rule}` matches: no reply"),
                (Some(rule), Some(reply)) => {
                    println!(
                        "rule `{rule}` matches; reply: {}",
                        serde_json::to_string(reply)?
                    )
                }
            }
            Ok(())
        }
        RulesCommand::Export => {
            let list: ListResponse = serde_json::from_value(call("list", Value::Null).await?)?;
            let rules: Vec<Rule> = list
                .rules
                .into_iter()
                .filter(|r| r.source == wxoa_replier::store::Source::Runtime)
                .map(|r| r.rule)
                .collect();
            if as_json {
                return print_json(&rules);
            }
            print!("{}", toml::to_string(&wxoa_rules::RulesFile { rules })?);
            Ok(())
        }
    }
}

fn describe_match(matcher: &Match) -> String {
    match matcher {
        Match::Keyword { mode, patterns, .. } => {
            format!("keyword {mode:?} {patterns:?}").to_lowercase()
        }
        Match::Event { event, key } => match key {
            Some(key) => format!("event {event} key={key}"),
            None => format!("event {event}"),
        },
        Match::Message { msg_type } => format!("message {msg_type}"),
        Match::Default => "default".to_owned(),
    }
}

/// `wxoa send`: publishes a send command and waits for its result notice.
pub(crate) async fn send(
    config: &Config,
    app: Option<String>,
    openid: String,
    message: CustomMessage,
    typing: bool,
    id: Option<String>,
) -> anyhow::Result<()> {
    let app = app_of(config, app)?;
    let nats = connect(config).await?;
    let command = SendCommand {
        id: id.unwrap_or_else(|| format!("cli-{}", wxoa_runtime::now_ms())),
        openid,
        message,
        typing,
        kf_account: None,
    };
    command.validate()?;
    let mut results = nats
        .subscribe(subjects::notice(
            &config.nats.prefix,
            &app,
            notices::SEND_RESULT,
        ))
        .await?;
    let js = async_nats::jetstream::new(nats.clone());
    wxoa_runtime::connect::commands_stream(&js, &config.nats).await?;
    let mut msg_headers = async_nats::HeaderMap::new();
    msg_headers.insert(headers::MSG_ID, command.id.as_str());
    js.publish_with_headers(
        subjects::command(&config.nats.prefix, &app, commands::SEND),
        msg_headers,
        serde_json::to_vec(&command)?.into(),
    )
    .await?
    .await
    .context("storing the command (is the command stream there? start a replier once)")?;
    let wait = async {
        while let Some(notice) = results.next().await {
            if let Ok(result) = serde_json::from_slice::<SendResult>(&notice.payload)
                && result.id == command.id
            {
                return Some(result);
            }
        }
        None
    };
    let result = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| {
            anyhow!(
                "no result for send `{}` within 30 s (is a replier running?)",
                command.id
            )
        })?
        .ok_or_else(|| anyhow!("the notice subscription ended"))?;
    print_json(&result)?;
    if result.status != SendStatus::Sent {
        bail!("send `{}` {:?}", command.id, result.status);
    }
    Ok(())
}

/// `wxoa users ...`: JSON answers of the users API, and a progress line for `sync`.
pub(crate) async fn users(
    config: &Config,
    app: Option<String>,
    command: UsersCommand,
) -> anyhow::Result<()> {
    use serde_json::json;
    let app = app_of(config, app)?;
    let nats = connect(config).await?;
    let call = |verb: &'static str, body: Value| {
        request::<Value, Value>(&nats, config, &app, apis::USERS, verb, body)
    };
    let answer = match command {
        UsersCommand::Get { openid } => call("get", json!({"openid": openid})).await?,
        UsersCommand::Count => call("count", json!({})).await?,
        UsersCommand::Digest => call("digest", json!({})).await?,
        UsersCommand::SyncStatus => call("sync_status", json!({})).await?,
        UsersCommand::ByTag { tagid } => {
            let mut cursor = 0u64;
            let mut openids = Vec::new();
            loop {
                let page = call(
                    "by_tag",
                    json!({"tagid": tagid, "cursor": cursor, "count": 1000}),
                )
                .await?;
                openids.extend(page["openids"].as_array().cloned().unwrap_or_default());
                cursor = page["cursor"].as_u64().unwrap_or(0);
                if cursor == 0 {
                    break;
                }
            }
            json!({"tagid": tagid, "openids": openids})
        }
        UsersCommand::Tags => call("tags_list", json!({})).await?,
        UsersCommand::TagCreate { name } => call("tag_create", json!({"name": name})).await?,
        UsersCommand::TagDelete { id } => call("tag_delete", json!({"id": id})).await?,
        UsersCommand::TagUpdate { id, name } => {
            call("tag_update", json!({"id": id, "name": name})).await?
        }
        UsersCommand::ByUnionid { unionid } => {
            call("by_unionid", json!({"unionid": unionid})).await?
        }
        UsersCommand::Blacklist { begin } => {
            call("blacklist", json!({"begin_openid": begin})).await?
        }
        UsersCommand::Tag { tagid, openids } => {
            call("tag_users", json!({"tagid": tagid, "openids": openids})).await?
        }
        UsersCommand::Untag { tagid, openids } => {
            call("untag_users", json!({"tagid": tagid, "openids": openids})).await?
        }
        UsersCommand::Remark { openid, remark } => {
            call("remark", json!({"openid": openid, "remark": remark})).await?
        }
        UsersCommand::Block { openids } => {
            call("blacklist_add", json!({"openids": openids})).await?
        }
        UsersCommand::Unblock { openids } => {
            call("blacklist_remove", json!({"openids": openids})).await?
        }
        UsersCommand::Sync { no_wait } => {
            let mut progress = call("sync", json!({})).await?;
            if !no_wait {
                progress = follow(progress, "followers", || call("sync_status", json!({}))).await?;
            }
            progress
        }
    };
    print_json(&answer)
}

/// Draws a progress bar on stderr while `progress` says `running`, re-reading it with `poll`.
/// One line of a progress bar: `[###   ] done/total what, rate/s, ETA`.
pub(crate) fn progress_bar(done: u64, total: u64, what: &str, rate: f64) -> String {
    let width = 30u64;
    let filled = (done * width).checked_div(total).unwrap_or(0).min(width) as usize;
    let eta = if rate > 0.0 && total >= done {
        format!("{:.0}s", (total - done) as f64 / rate)
    } else {
        "?".to_owned()
    };
    format!(
        "[{}{}] {done}/{total} {what}, {rate:.0}/s, ETA {eta}   ",
        "#".repeat(filled),
        " ".repeat(width as usize - filled),
    )
}

async fn follow<F, Fut>(mut progress: Value, what: &str, poll: F) -> anyhow::Result<Value>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    while progress["state"] == "running" {
        let (done, total) = (
            progress["done"].as_u64().unwrap_or(0),
            progress["total"].as_u64().unwrap_or(0),
        );
        let rate = progress["rate_per_sec"].as_f64().unwrap_or(0.0);
        eprint!("\r{}", progress_bar(done, total, what, rate));
        tokio::time::sleep(Duration::from_millis(500)).await;
        progress = poll().await?;
    }
    eprintln!();
    Ok(progress)
}

/// `wxoa broadcasts ...`: JSON answers of the broadcast API, and a progress bar for `start`.
pub(crate) async fn broadcasts(
    config: &Config,
    app: Option<String>,
    command: BroadcastsCommand,
) -> anyhow::Result<()> {
    use serde_json::json;
    let app = app_of(config, app)?;
    let nats = connect(config).await?;
    let call = |verb: String, body: Value| {
        let (nats, app) = (&nats, &app);
        async move { request::<Value, Value>(nats, config, app, apis::BROADCAST, &verb, body).await }
    };
    let id_call = |verb: &str, id: String| call(verb.to_owned(), json!({"id": id}));
    let answer = match command {
        BroadcastsCommand::Start { file, no_wait } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let job: wxoa_wire::broadcast::BroadcastCommand = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a broadcast command", file.display()))?;
            job.validate()
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let progress = call("start".into(), serde_json::to_value(&job)?).await?;
            if no_wait {
                progress
            } else {
                follow(progress, "recipients", || id_call("status", job.id.clone())).await?
            }
        }
        BroadcastsCommand::Status { id } => id_call("status", id).await?,
        BroadcastsCommand::List => call("list".into(), json!({})).await?,
        BroadcastsCommand::Pause { id } => id_call("pause", id).await?,
        BroadcastsCommand::Resume { id } => id_call("resume", id).await?,
        BroadcastsCommand::Cancel { id } => id_call("cancel", id).await?,
        BroadcastsCommand::Call { verb, body } => {
            let body: Value = serde_json::from_str(&body).context("the body is not JSON")?;
            call(verb, body).await?
        }
    };
    print_json(&answer)
}

/// `wxoa menu apply|get|delete`.
pub(crate) async fn menu(
    config: &Config,
    api: ApiArgs,
    command: MenuCommand,
) -> anyhow::Result<()> {
    let answer = match command {
        MenuCommand::Get => {
            crate::operator::operator(config, &api, reqwest::Method::GET, "menu", None).await?
        }
        MenuCommand::Current => {
            crate::operator::operator(config, &api, reqwest::Method::GET, "menu/current", None)
                .await?
        }
        MenuCommand::Delete => {
            crate::operator::operator(config, &api, reqwest::Method::DELETE, "menu", None).await?
        }
        MenuCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let menu: Value = if file.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text)?
            } else {
                serde_json::to_value(toml::from_str::<toml::Value>(&text)?)?
            };
            wxoa_wire::menu::validate(&menu).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            crate::operator::operator(config, &api, reqwest::Method::PUT, "menu", Some(menu))
                .await?
        }
    };
    crate::operator::show(&api, &answer, &crate::operator::FIELDS)
}
