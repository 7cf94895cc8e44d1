//! The end-to-end test harness: real NATS, real Redis, the simulator as WeChat.
//!
//! Server URLs come from `WXOA_TEST_NATS_URL` / `WXOA_TEST_REDIS_URL`; when unset, the harness
//! starts its own `nats-server -js` and `redis-server` on free ports (once per test binary, and
//! stopped when it exits). Every test gets its own subject prefix, stream names and Redis key
//! prefix from [`test_config`], so tests run in parallel on shared servers. Fault tests start an
//! [`OwnNats`] they can stop and restart. A missing server binary fails with the install hint.

#![warn(missing_docs)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use wxoa_runtime::Config;

mod platform;
pub use platform::Platform;

/// The callback token of the plaintext test app.
pub const PLAIN_APP: &str = "wxplain000000001";
/// The safe-mode test app.
pub const SAFE_APP: &str = "wxsafe0000000002";
/// A rules file with one rule: `hello` (exact) answers `Hi <openid>`.
pub const HELLO_RULE: &str = r#"
[[rules]]
id = "hello"
match = { kind = "keyword", mode = "exact", patterns = ["hello"] }
reply = { type = "text", content = "Hi {{openid}}" }
"#;
/// The callback token both test apps use.
pub const TOKEN: &str = "harness-token";
/// The EncodingAESKey of the safe-mode app.
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// URLs of the servers a test binary uses.
#[derive(Debug, Clone)]
pub struct Servers {
    /// NATS URL.
    pub nats_url: String,
    /// Redis URL.
    pub redis_url: String,
}

/// The shared servers of this test binary, started on first use.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        #[allow(clippy::disallowed_methods)] // test-only variables, prefixed WXOA_TEST_
        let (nats, redis) = (
            std::env::var("WXOA_TEST_NATS_URL").ok(),
            std::env::var("WXOA_TEST_REDIS_URL").ok(),
        );
        let nats_url = nats.unwrap_or_else(|| {
            let server = OwnNats::start();
            let url = server.url.clone();
            std::mem::forget(server); // lives as long as the test binary; its watchdog stops it
            url
        });
        let redis_url = redis.unwrap_or_else(start_redis);
        Servers {
            nats_url,
            redis_url,
        }
    })
}

/// A free TCP port on 127.0.0.1, never the same twice in one test binary.
///
/// Drawn from 20000–32767, below Linux's ephemeral range (32768–60999): the outgoing
/// connections of the processes a test starts take ports from that range, and `bind(0)` draws
/// from it too, so a port handed out that way could be taken before its server binds it.
pub fn free_port() -> u16 {
    reserve(20_000..32_768, &[0])
}

/// A free port for a Redis Cluster node, whose cluster bus listens 10000 above it: both free,
/// both below the ephemeral range, neither handed out again.
fn free_cluster_port() -> u16 {
    reserve(10_000..20_000, &[0, 10_000])
}

/// A port from `range` whose `port + offset` are all free and not handed out before.
fn reserve(range: std::ops::Range<u16>, offsets: &[u16]) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = rand::random_range(range.clone());
        let ports: Vec<u16> = offsets.iter().map(|o| port + o).collect();
        let free = ports
            .iter()
            .all(|p| !given.contains(p) && TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if free {
            given.extend(ports);
            return port;
        }
    }
}

/// A finished process's stdout when it succeeded, else its stderr (what a CLI test asserts on).
pub fn stdout_or_stderr(out: std::process::Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A short random id for prefixes and names.
pub fn unique_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Runs `program args` under a watchdog shell that kills it when this test binary exits.
fn spawn_watched(program: &str, args: &[String]) -> Child {
    if Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("{}", wxoa_runtime::local::install_hint(program));
    }
    let script = format!(
        "{program} {} & child=$!; trap 'kill $child 2>/dev/null' EXIT TERM; \
         while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done",
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
        std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"))
}

/// Kills a server started by [`spawn_watched`] (SIGKILL to the watchdog's child: a crash).
fn kill_watched(child: &mut Child) {
    let _ = Command::new("pkill")
        .arg("-KILL")
        .arg("-P")
        .arg(child.id().to_string())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_for_port(port: u16, what: &str) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not start listening on port {port}");
}

fn start_redis() -> String {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let args = wxoa_runtime::local::redis_server_args(port, dir.path());
    std::mem::forget(dir); // lives as long as the test binary
    let child = spawn_watched("redis-server", &args);
    std::mem::forget(child);
    wait_for_port(port, "redis-server");
    format!("redis://127.0.0.1:{port}")
}

/// A nats-server with JetStream owned by one test, which may stop and restart it (same port,
/// same store directory, so file-stored streams survive).
pub struct OwnNats {
    /// Its URL.
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    /// Starts a server on a free port with a fresh store directory.
    pub fn start() -> OwnNats {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = OwnNats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// Stops the server (a crash: SIGKILL to the watchdog's child).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_watched(&mut child);
        }
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the server again on the same port and store directory.
    pub fn restart(&mut self) {
        self.stop();
        let args = wxoa_runtime::local::nats_server_args(self.port, self.dir.path());
        self.child = Some(spawn_watched("nats-server", &args));
        wait_for_port(self.port, "nats-server");
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A redis-server owned by one test, which may freeze it (SIGSTOP: connections stay open, no
/// answers) and thaw it.
pub struct OwnRedis {
    /// Its URL.
    pub url: String,
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Starts a server on a free port.
    pub fn start() -> OwnRedis {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let args = wxoa_runtime::local::redis_server_args(port, dir.path());
        let child = spawn_watched("redis-server", &args);
        wait_for_port(port, "redis-server");
        OwnRedis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            child,
            dir,
        }
    }

    /// Crashes the server (SIGKILL) and starts it again on the same port, empty: it keeps
    /// nothing on disk, as the default deployment of a cache.
    pub fn restart(&mut self) {
        kill_watched(&mut self.child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let args = wxoa_runtime::local::redis_server_args(self.port, self.dir.path());
        self.child = spawn_watched("redis-server", &args);
        wait_for_port(self.port, "redis-server");
    }

    fn signal(&self, signal: &str) -> bool {
        Command::new("pkill")
            .arg(signal)
            .arg("-P")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Freezes the server: it accepts nothing and answers nothing until [`OwnRedis::thaw`].
    pub fn freeze(&self) {
        assert!(self.signal("-STOP"), "pkill -STOP found the redis-server");
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) {
        assert!(self.signal("-CONT"), "pkill -CONT found the redis-server");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        kill_watched(&mut self.child);
    }
}

/// A Redis Cluster of three masters on free ports, owned by one test and stopped with it.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl RedisCluster {
    /// Starts three `redis-server --cluster-enabled yes` nodes and joins them with
    /// `redis-cli --cluster create`; returns when the cluster reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            children: Vec::new(),
            _dirs: Vec::new(),
        };
        for _ in 0..3 {
            let port = free_cluster_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let mut args = wxoa_runtime::local::redis_server_args(port, dir.path());
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ]
                .map(String::from),
            );
            cluster.children.push(spawn_watched("redis-server", &args));
            wait_for_port(port, "redis-server (cluster node)");
            cluster.ports.push(port);
            cluster._dirs.push(dir);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-cli: {e}; {}",
                    wxoa_runtime::local::install_hint("redis-tools")
                )
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..200 {
            let info = Command::new("redis-cli")
                .args(["-p", &cluster.ports[0].to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli cluster info");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the Redis Cluster did not reach cluster_state:ok");
    }

    /// The seed-node list for `redis.url` with `redis.cluster = true`.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            kill_watched(child);
        }
    }
}

/// A config for one test: its own prefixes (subjects, streams, Redis keys), memory streams,
/// every listener on a free port, and two apps (plaintext and safe mode).
pub fn test_config(nats_url: &str, redis_url: &str) -> Config {
    Config::from_toml(&test_config_text(nats_url, redis_url)).expect("test config is valid")
}

/// The TOML text of a fresh [`test_config`] (for a service started as a process with
/// `--config`).
pub fn test_config_text(nats_url: &str, redis_url: &str) -> String {
    let id = unique_id();
    format!(
        r#"
        [nats]
        url = "{nats_url}"
        prefix = "t{id}"
        storage = "memory"
        [redis]
        url = "{redis_url}"
        key_prefix = "t{id}"
        [wechat]
        api_base = "http://127.0.0.1:9"
        timeout_ms = 3000
        [gateway]
        listen = "127.0.0.1:0"
        reply_budget_ms = 3000
        [sim]
        listen = "127.0.0.1:0"
        callback_timeout_ms = 5000
        [admin]
        listen = "127.0.0.1:0"
        [token]
        check_interval_ms = 200
        [[apps]]
        appid = "{PLAIN_APP}"
        secret = "plain-secret"
        token = "{TOKEN}"
        original_id = "gh_plain"
        verified = true
        [[apps]]
        appid = "{SAFE_APP}"
        secret = "safe-secret"
        token = "{TOKEN}"
        encoding_aes_key = "{AES_KEY}"
        original_id = "gh_safe"
        verified = true
        "#
    )
}

/// [`test_config`] for a test that stops its own NATS (`nats_url`, an [`OwnNats`]): file
/// storage (the stream survives the restart), no reply budget, a 500 ms publish timeout and
/// 2 s callback timeouts, so an outage shows as failed tries rather than long waits.
pub fn fault_config(nats_url: &str) -> Config {
    let mut config = test_config(nats_url, &servers().redis_url);
    config.nats.storage = wxoa_runtime::config::Storage::File;
    config.gateway.reply_budget_ms = 0;
    config.gateway.publish_timeout_ms = 500;
    config.sim.callback_timeout_ms = 2000;
    config
}

/// A plaintext text message to the plain test app from `openid`, with `MsgId` `id` and
/// content `m<id>`.
pub fn numbered_text(openid: &str, id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_plain]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[m{id}]]></Content>\
         <MsgId>{id}</MsgId></xml>"
    )
}

/// [`test_config`] on the shared servers.
pub fn shared_config() -> Config {
    let s = servers();
    test_config(&s.nats_url, &s.redis_url)
}

/// The path of a shared fixture (`../shared/fixtures/inbound/<name>` beside the checkout).
pub fn fixture(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "shared",
        "fixtures",
        "inbound",
        name,
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address a service bound, as a base URL.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// What a test replier saw for one message: its headers and the gateway's answer.
pub type ReplierEvent = (async_nats::HeaderMap, wxoa_wire::reply::ReplyResponse);

/// A replier as any consumer would be: a durable pull consumer on the inbound stream of
/// `config` that answers every message carrying `Wx-Reply-Subject` with `make_reply(envelope)`
/// and reports each answer. The stream must exist (a gateway created it).
pub async fn spawn_replier(
    config: &Config,
    make_reply: impl Fn(&serde_json::Value) -> Option<wxoa_wire::reply::PassiveReply> + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<ReplierEvent> {
    use async_nats::jetstream;
    use futures::StreamExt;
    use wxoa_wire::names::{headers, streams};
    use wxoa_wire::reply::ReplyRequest;

    let nats = async_nats::connect(&config.nats.url).await.expect("nats");
    let js = jetstream::new(nats.clone());
    let stream = js
        .get_stream(streams::inbound(&config.nats.prefix))
        .await
        .expect("inbound stream");
    let consumer = stream
        .get_or_create_consumer(
            "test-replier",
            jetstream::consumer::pull::Config {
                durable_name: Some("test-replier".into()),
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = consumer.messages().await.expect("pull");
        while let Some(Ok(msg)) = messages.next().await {
            let h = msg.headers.clone().unwrap_or_default();
            if let Some(subject) = h.get(headers::REPLY_SUBJECT).map(|v| v.to_string()) {
                let envelope: serde_json::Value =
                    serde_json::from_slice(&msg.payload).expect("envelope JSON");
                let request = ReplyRequest {
                    reply: make_reply(&envelope),
                };
                let body = serde_json::to_vec(&request).expect("serializes");
                let answer = nats
                    .request(subject, body.into())
                    .await
                    .expect("gateway answers");
                let _ = tx.send((
                    h,
                    serde_json::from_slice(&answer.payload).expect("response JSON"),
                ));
            }
            msg.ack().await.expect("ack");
        }
    });
    rx
}

/// The next answer a [`spawn_replier`] reported, within 10 s.
pub async fn next_answer(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<ReplierEvent>,
) -> ReplierEvent {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the replier answered within 10 s")
        .expect("the replier is running")
}
