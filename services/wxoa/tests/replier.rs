//! `wxoa replier` as a process: killed in the middle of a message, its work is redelivered to
//! another replica and the user still gets exactly one reply; and the `wxoa rules` / `wxoa send`
//! verbs against a running replier.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{Value, json};
use wxoa_runtime::Config;
use wxoa_runtime::admin::Health;
use wxoa_runtime::shutdown::CancellationToken;
use wxoa_tests::{OwnRedis, PLAIN_APP, SAFE_APP, eventually, free_port, servers};
use wxoa_wire::names::{consumers, streams};

const RULES: &str = r#"
[[rules]]
id = "hello"
match = { kind = "keyword", mode = "exact", patterns = ["hello"] }
reply = { type = "text", content = "Hi {{openid}}" }
"#;

const EXE: &str = env!("CARGO_BIN_EXE_wxoa");

/// Gateway, simulator and token service in this process; the config as a file for processes.
struct Stack {
    config: Config,
    file: tempfile::NamedTempFile,
    sim_url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _rules: tempfile::NamedTempFile,
}

impl Stack {
    async fn start(redis_url: &str) -> Stack {
        let rules = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(rules.path(), RULES).unwrap();
        let mut text = wxoa_tests::test_config_text(&servers().nats_url, redis_url);
        let config = Config::from_toml(&text).unwrap();
        let shutdown = CancellationToken::new();
        let gateway = wxoa_gateway::App::build(&config, Health::default())
            .await
            .unwrap();
        let mut sim_config = config.clone();
        sim_config.sim.gateway_url = format!("http://{}", gateway.local_addr());
        let sim = wxoa_sim::Sim::build(&sim_config).await.unwrap();
        let sim_url = sim.base_url();
        // Every process of the test sees the same file: the simulator as WeChat, the rules,
        // a short ack wait so a killed replica's message comes back quickly.
        text = text.replace(
            "api_base = \"http://127.0.0.1:9\"",
            &format!("api_base = \"{sim_url}\""),
        );
        text.push_str(&format!(
            "\n[replier]\nack_wait_ms = 1500\nrules_file = \"{}\"\n",
            rules.path().display()
        ));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let config = Config::from_toml(&text).unwrap();
        let token = wxoa_token::App::build(&config, Health::default())
            .await
            .unwrap();
        tokio::spawn(gateway.run(shutdown.clone()));
        tokio::spawn(sim.run(shutdown.clone()));
        tokio::spawn(token.run(shutdown.clone()));
        let stack = Stack {
            config,
            file,
            sim_url,
            http: reqwest::Client::new(),
            shutdown,
            _rules: rules,
        };
        let filled = eventually(Duration::from_secs(10), || async {
            let stats = stack.get("/_sim/stats").await;
            let fetched =
                |app: &str| stats["calls"][app]["/cgi-bin/stable_token"].as_u64() >= Some(1);
            (fetched(PLAIN_APP) && fetched(SAFE_APP)).then_some(())
        })
        .await;
        assert!(filled.is_some(), "the token service fetched tokens");
        stack
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.sim_url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn received(&self, app: &str, openid: &str) -> Vec<Value> {
        self.get(&format!("/_sim/messages?appid={app}&openid={openid}"))
            .await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `wxoa <args>` with this stack's config file; stdout, or the failure's stderr.
    fn wxoa(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(EXE)
            .arg("--config")
            .arg(self.file.path())
            .args(args)
            .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
            .output()
            .expect("wxoa runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `wxoa replier` as a child process; returns when its /readyz answers 200.
    async fn replier_process(&self) -> Child {
        let admin = free_port();
        let child = Command::new(EXE)
            .arg("--config")
            .arg(self.file.path())
            .arg("replier")
            .env("WXOA__ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("wxoa replier starts");
        let ready = eventually(Duration::from_secs(20), || async {
            let answer = self
                .http
                .get(format!("http://127.0.0.1:{admin}/readyz"))
                .send()
                .await;
            answer.ok().filter(|a| a.status() == 200).map(|_| ())
        })
        .await;
        assert!(ready.is_some(), "wxoa replier became ready");
        child
    }

    /// A replier in this process.
    async fn replier(&self) {
        let health = Health::default();
        let app = wxoa_replier::App::build(&self.config, health.clone())
            .await
            .unwrap();
        tokio::spawn(app.run(self.shutdown.clone()));
        let ready = eventually(Duration::from_secs(10), || async {
            health.ready().await.ok()
        })
        .await;
        assert!(ready.is_some());
    }

    /// Messages the replier consumer has handed out and not had settled.
    async fn pending(&self) -> usize {
        let js = jetstream::new(async_nats::connect(&self.config.nats.url).await.unwrap());
        let stream = js
            .get_stream(streams::inbound(&self.config.nats.prefix))
            .await
            .unwrap();
        let mut consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer(consumers::REPLIER).await.unwrap();
        consumer.info().await.unwrap().num_ack_pending
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn a_replier_killed_mid_message_is_redelivered_and_replies_once() {
    let redis = OwnRedis::start();
    let stack = Stack::start(&redis.url).await;
    let mut first = stack.replier_process().await;

    // Redis stops answering: the replier takes the message and hangs claiming it.
    redis.freeze();
    let sending = {
        let (http, url) = (stack.http.clone(), stack.sim_url.clone());
        tokio::spawn(async move {
            http.post(format!("{url}/_sim/send"))
                .json(&json!({"appid": SAFE_APP, "message": {"type": "text", "from": "o_crash", "content": "hello"}}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let taken = eventually(Duration::from_secs(3), || async {
        (stack.pending().await >= 1).then_some(())
    })
    .await;
    assert!(taken.is_some(), "the first replier holds the message");

    // It dies mid-message (SIGKILL); Redis comes back; another replica takes over.
    first.kill().unwrap();
    first.wait().unwrap();
    redis.thaw();
    stack.replier().await;

    let outcome = sending.await.unwrap();
    assert_eq!(outcome["outcome"], "reply", "{outcome:#}");
    assert_eq!(outcome["reply"]["Content"], "Hi o_crash");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = stack.received(SAFE_APP, "o_crash").await;
    assert_eq!(got.len(), 1, "exactly one reply: {got:#?}");
    assert_eq!(got[0]["channel"], "passive");
}

// The verbs run as blocking child processes: the in-process replier needs its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_send_verbs_work_against_a_running_replier() {
    let redis = OwnRedis::start();
    let stack = Stack::start(&redis.url).await;
    stack.replier().await;

    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        r#"
        [[rules]]
        id = "price"
        match = { kind = "keyword", mode = "contains", patterns = ["price"] }
        reply = { type = "text", content = "See the price list" }
        "#,
    )
    .unwrap();
    let path = rules.path().to_str().unwrap();
    let put = stack
        .wxoa(&["rules", "--app", PLAIN_APP, "put", path])
        .unwrap();
    assert!(put.contains("created rule `price`"), "{put}");

    let listed: Value = serde_json::from_str(
        &stack
            .wxoa(&["rules", "--app", PLAIN_APP, "--json", "list"])
            .unwrap(),
    )
    .unwrap();
    let sources: Vec<(String, String)> = listed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"]["id"].as_str().unwrap().to_owned(),
                r["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("price".into(), "runtime".into())),
        "{listed}"
    );
    assert!(
        sources.contains(&("hello".into(), "file".into())),
        "{listed}"
    );

    let tested = stack
        .wxoa(&["rules", "--app", PLAIN_APP, "test", "--text", "what price?"])
        .unwrap();
    assert!(tested.contains("rule `price` matches"), "{tested}");
    let table = stack.wxoa(&["rules", "--app", PLAIN_APP, "list"]).unwrap();
    assert!(
        table.contains("price") && table.contains("runtime"),
        "{table}"
    );
    let exported = stack
        .wxoa(&["rules", "--app", PLAIN_APP, "export"])
        .unwrap();
    assert!(
        wxoa_rules::parse_toml(&exported).unwrap().rules[0].id == "price",
        "{exported}"
    );

    // A bad regex never gets stored: the CLI checks the file first.
    std::fs::write(
        rules.path(),
        "[[rules]]\nid = \"bad\"\nmatch = { kind = \"keyword\", mode = \"regex\", patterns = [\"(\"] }\n",
    )
    .unwrap();
    let refused = stack
        .wxoa(&["rules", "--app", PLAIN_APP, "put", path])
        .unwrap_err();
    assert!(refused.contains("regex"), "{refused}");

    let deleted = stack
        .wxoa(&["rules", "--app", PLAIN_APP, "delete", "price"])
        .unwrap();
    assert!(deleted.contains("deleted rule `price`"), "{deleted}");
    let missing = stack
        .wxoa(&["rules", "--app", PLAIN_APP, "delete", "price"])
        .unwrap_err();
    assert!(missing.contains("not_found"), "{missing}");

    // `wxoa send`: a customer-service message, and its result.
    stack
        .post(
            "/_sim/interactions",
            json!({"appid": PLAIN_APP, "openid": "o_cli", "kind": "message"}),
        )
        .await;
    let sent = stack
        .wxoa(&[
            "send",
            "--app",
            PLAIN_APP,
            "--openid",
            "o_cli",
            "--text",
            "from the CLI",
            "--id",
            "cli-1",
        ])
        .unwrap();
    let result: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(result["status"], "sent", "{result}");
    let got = stack.received(PLAIN_APP, "o_cli").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["text"]["content"], "from the CLI");
    let refused = stack
        .wxoa(&[
            "send", "--app", PLAIN_APP, "--openid", "o_nobody", "--text", "hi",
        ])
        .unwrap_err();
    assert!(refused.contains("Failed"), "{refused}");
}
