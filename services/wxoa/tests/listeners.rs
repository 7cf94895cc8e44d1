//! The public listeners' limits (`gateway.limits`, `web.limits`, `wxoa_runtime::serve`): slow
//! and half-open clients are cut off after the header, body and idle timeouts, connections over
//! the cap are closed at once and counted, and real signed callbacks keep being answered 200
//! within WeChat's 5 s the whole time, with the gateway's memory bounded.
//!
//! The load test runs `wxoa gateway`, the real binary, as a process of its own, so its RSS is
//! its own. It holds 1 500 slow connections (a third silent, a third trickling a request head,
//! a third trickling a body) at once, all against 127.0.0.1, each for at most [`HOLD`].

mod common;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wxoa_runtime::admin::Health;
use wxoa_runtime::shutdown::CancellationToken;
use wxoa_sim::callback::{self, CallbackRequest, MessageSpec, Mode};
use wxoa_tests::{
    PLAIN_APP, Platform, SAFE_APP, TOKEN, eventually, free_port, numbered_text, shared_config,
};

/// The longest a slow client keeps trying: far beyond every timeout the tests configure.
const HOLD: Duration = Duration::from_secs(25);
/// How often a client trickling a head sends its next byte.
const TRICKLE: Duration = Duration::from_millis(250);
/// How often a client trickling a body sends its next byte, each in a packet of its own: a
/// server that keeps a read buffer per packet would pin 8 KiB for each byte.
const TRICKLE_BODY: Duration = Duration::from_millis(50);

/// A gateway process on the platform's stream; killed when dropped.
struct GatewayProcess {
    child: Child,
    url: String,
    admin: u16,
}

impl GatewayProcess {
    /// Starts `wxoa gateway` with the platform's config plus `extra` (`SECTION__KEY`, value)
    /// and waits until it is ready.
    async fn start(platform: &Platform, extra: &[(&str, &str)]) -> GatewayProcess {
        let port = free_port();
        let prefix = wxoa_runtime::config::ENV_PREFIX;
        let mut env = vec![
            (format!("{prefix}NATS__STORAGE"), "memory".to_owned()),
            (
                format!("{prefix}GATEWAY__LISTEN"),
                format!("127.0.0.1:{port}"),
            ),
            (format!("{prefix}GATEWAY__REPLY_BUDGET_MS"), "0".to_owned()),
        ];
        env.extend(
            extra
                .iter()
                .map(|(key, value)| (format!("{prefix}{key}"), (*value).to_owned())),
        );
        let (child, admin) = common::service_with(platform, "gateway", &env).await;
        GatewayProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin,
        }
    }

    /// Its resident memory (`VmRSS`), in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The value of `series` on its `/metrics` (0 when absent).
    async fn metric(&self, platform: &Platform, series: &str) -> i64 {
        common::metric(platform, self.admin, series).await as i64
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `series` (`name{labels}`) in Prometheus text, 0 when absent.
fn series_value(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The open-file limit of this process (the gateway process inherits it).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// How a slow client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request line, then one byte of a header every [`TRICKLE`], never ending the head.
    Head,
    /// Sends a whole head announcing a 4 KiB body, then one body byte every [`TRICKLE_BODY`].
    Body,
}

/// What happened to one slow client.
#[derive(Debug)]
struct SlowResult {
    kind: Slow,
    /// From connecting to the server closing the connection; `None`: still open after [`HOLD`]
    /// (or never connected, with `error`).
    closed_after: Option<Duration>,
    /// The status of a response the server sent before closing.
    status: Option<u16>,
    error: Option<String>,
}

/// One slow client against `addr` (`host:port`), until the server closes the connection or
/// [`HOLD`] passes.
async fn slow_client(addr: String, kind: Slow, connected: Arc<AtomicUsize>) -> SlowResult {
    let result = |closed_after, status, error| SlowResult {
        kind,
        closed_after,
        status,
        error,
    };
    let mut stream = match TcpStream::connect(&addr).await {
        Ok(stream) => stream,
        Err(e) => return result(None, None, Some(format!("connect: {e}"))),
    };
    let opened = Instant::now();
    connected.fetch_add(1, Ordering::SeqCst);
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let target = format!(
        "/wechat/{SAFE_APP}?signature=0&timestamp=0&nonce=0&encrypt_type=aes&msg_signature=0"
    );
    let head = match kind {
        Slow::Silent => String::new(),
        Slow::Head => format!("POST {target} HTTP/1.1\r\nHost: {addr}\r\nX-Slow: "),
        Slow::Body => format!(
            "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\n\
             Content-Length: 4096\r\n\r\n<xml>"
        ),
    };
    if !head.is_empty() && stream.write_all(head.as_bytes()).await.is_err() {
        return result(Some(opened.elapsed()), None, None);
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(match kind {
        Slow::Body => TRICKLE_BODY,
        _ => TRICKLE,
    });
    tick.tick().await;
    let deadline = tokio::time::sleep(HOLD);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if kind != Slow::Silent => {
                // A failed write is the server's close too; the read sees it next.
                let _ = stream.write_all(b"a").await;
            }
            () = &mut deadline => return result(None, status_of(&received), None),
        }
    }
    result(Some(opened.elapsed()), status_of(&received), None)
}

/// The status code of the HTTP response at the start of `bytes`.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A signed safe-mode text callback, as WeChat sends it: one try, 5 s timeout.
fn text_callback(n: usize) -> CallbackRequest {
    CallbackRequest {
        appid: SAFE_APP.into(),
        mode: Some(Mode::Safe),
        xml: None,
        message: Some(MessageSpec::Text {
            from: "o_listener".into(),
            content: format!("callback {n}"),
            msg_id: None,
        }),
        timestamp: None,
        tries: Some(1),
        timeout_ms: Some(5000),
    }
}

/// One callback answer: status (none on a timeout or connection error), milliseconds, error.
type Answer = (Option<u16>, u64, Option<String>);

/// Sends callbacks to `gateway` from `senders` tasks, each on a new connection as WeChat does,
/// until `stop`; every answer.
fn keep_sending(
    platform: &Platform,
    gateway: &str,
    senders: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    let app = platform.config.app(SAFE_APP).expect("the safe app").clone();
    let sim = platform.config.sim.clone();
    let gateway = gateway.to_owned();
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        let counter = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..senders)
            .map(|_| {
                let (http, app, sim, gateway) =
                    (http.clone(), app.clone(), sim.clone(), gateway.clone());
                let (stop, counter) = (stop.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let outcome =
                            callback::send(&http, &gateway, &app, &text_callback(n), &sim).await;
                        let attempt = outcome.attempts.first();
                        answers.push((
                            attempt.and_then(|a| a.status),
                            attempt.map_or(0, |a| a.elapsed_ms),
                            attempt
                                .and_then(|a| a.error.clone())
                                .or(outcome.problem.clone()),
                        ));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    answers
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("a sender"));
        }
        all
    })
}

/// Opens `count` slow clients against `addr`, a third of each kind, in bursts of 100 every
/// 50 ms.
async fn open_slow_clients(
    addr: &str,
    count: usize,
    connected: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<SlowResult>> {
    let kinds = [Slow::Silent, Slow::Head, Slow::Body];
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tasks.push(tokio::spawn(slow_client(
            addr.to_owned(),
            kinds[i % 3],
            connected.clone(),
        )));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tasks
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_cuts_off_1500_slow_clients_while_signed_callbacks_are_answered() {
    // Each slow client costs a descriptor here and one in the gateway process.
    let limit = open_files_limit();
    let count = 1500.min(limit.saturating_sub(400) / 3 * 3);
    if count < 1500 {
        eprintln!("open-file limit {limit}: {count} slow clients instead of 1500");
    }
    let (header_ms, body_ms, idle_ms) = (3000u64, 4000u64, 3000u64);
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let platform = Platform::start(config, "", false).await;
    let gateway = GatewayProcess::start(
        &platform,
        &[
            (
                "GATEWAY__LIMITS__HEADER_READ_TIMEOUT_MS",
                &header_ms.to_string(),
            ),
            (
                "GATEWAY__LIMITS__BODY_READ_TIMEOUT_MS",
                &body_ms.to_string(),
            ),
            ("GATEWAY__LIMITS__IDLE_TIMEOUT_MS", &idle_ms.to_string()),
        ],
    )
    .await;
    let addr = gateway.url.trim_start_matches("http://").to_owned();

    // Warm up: the gateway has served callbacks before the slow clients come.
    let warm = Arc::new(AtomicBool::new(false));
    let warmup = keep_sending(&platform, &gateway.url, 2, warm.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    warm.store(true, Ordering::SeqCst);
    let warm_answers = warmup.await.expect("the warm-up");
    assert!(
        warm_answers.iter().all(|a| a.0 == Some(200)),
        "warm-up callbacks: {warm_answers:?}"
    );
    let rss_before = gateway.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let senders = keep_sending(&platform, &gateway.url, 4, stop.clone());
    let connected = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let slow = open_slow_clients(&addr, count, &connected).await;
    let all_connected = eventually(Duration::from_secs(20), || async {
        (connected.load(Ordering::SeqCst) >= count).then_some(())
    })
    .await
    .is_some();
    // The gateway holds them all at once (a connection whose handshake was dropped from a
    // full accept queue comes a retransmission later).
    let mut open_at_peak = 0;
    let counting = Instant::now();
    while open_at_peak < count as i64 && counting.elapsed() < Duration::from_millis(1500) {
        let open = gateway
            .metric(&platform, "wxoa_http_connections{listener=\"gateway\"}")
            .await;
        open_at_peak = open_at_peak.max(open);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sample the gateway's RSS until every slow client is done.
    let rss_held = gateway.rss_kib();
    let mut rss_peak = rss_held;
    while !slow.iter().all(|t| t.is_finished()) {
        rss_peak = rss_peak.max(gateway.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow_secs = started.elapsed().as_secs_f64();
    let mut results = Vec::with_capacity(count);
    for task in slow {
        results.push(task.await.expect("a slow client"));
    }
    // Callbacks go on a little after the slow clients are gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = senders.await.expect("the senders");
    let rss_after = gateway.rss_kib();
    let metric =
        |kind: &str| format!("wxoa_http_timeouts_total{{listener=\"gateway\",kind=\"{kind}\"}}");
    let header_timeouts = gateway.metric(&platform, &metric("header")).await;
    let body_timeouts = gateway.metric(&platform, &metric("body")).await;
    let open_after = eventually(Duration::from_secs(10), || async {
        let open = gateway
            .metric(&platform, "wxoa_http_connections{listener=\"gateway\"}")
            .await;
        (open <= 4).then_some(open)
    })
    .await;

    let max_latency = answers.iter().map(|a| a.1).max().unwrap_or(0);
    let ok = answers.iter().filter(|a| a.0 == Some(200)).count();
    eprintln!(
        "{count} slow clients over {slow_secs:.1} s (all connected: {all_connected}, open at \
         the gateway: {open_at_peak}); {ok}/{} callbacks answered 200, slowest {max_latency} ms; \
         gateway RSS {rss_before} KiB before, {rss_held} KiB with all open, {rss_peak} KiB at \
         most, {rss_after} KiB after; \
         timeouts: {header_timeouts} header, {body_timeouts} body",
        answers.len()
    );

    // Every slow client was cut off by the server, by its own timeout.
    let still_open: Vec<&SlowResult> = results
        .iter()
        .filter(|r| r.closed_after.is_none() && r.error.is_none())
        .collect();
    assert!(
        still_open.is_empty(),
        "{} of {count} slow clients were still open after {HOLD:?} (first: {:?})",
        still_open.len(),
        still_open.first()
    );
    let errors: Vec<&String> = results.iter().filter_map(|r| r.error.as_ref()).collect();
    assert!(
        all_connected && errors.is_empty(),
        "every slow client connected: {} errors, first {:?}",
        errors.len(),
        errors.first()
    );
    for r in &results {
        let after = r.closed_after.expect("closed");
        let timeout = match r.kind {
            Slow::Silent | Slow::Head => header_ms,
            Slow::Body => body_ms,
        };
        // Closed by its timeout, not at once: timers do not fire early, and the margins leave
        // room for a loaded machine (this side notes the time after its connect returned).
        assert!(
            after >= Duration::from_millis(timeout * 3 / 4) && after < Duration::from_secs(20),
            "{r:?}: closed after {after:?}, the timeout is {timeout} ms"
        );
        match r.kind {
            Slow::Body => assert_eq!(r.status, Some(408), "{r:?}"),
            _ => assert_eq!(r.status, None, "{r:?}"),
        }
    }
    assert!(
        open_at_peak >= count as i64 * 9 / 10,
        "the gateway held the slow clients: {open_at_peak} open"
    );
    assert!(
        header_timeouts >= (count * 2 / 3) as i64 && body_timeouts >= (count / 3) as i64,
        "timeouts counted: {header_timeouts} header, {body_timeouts} body"
    );
    assert!(
        open_after.is_some(),
        "the gateway's open connections went back down"
    );

    // Real callbacks kept being answered, each within WeChat's 5 s (the request's timeout).
    assert!(
        answers.len() >= 20,
        "callbacks went on during the run: {}",
        answers.len()
    );
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.0 != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} callbacks not answered 200: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(max_latency < 5000, "slowest callback {max_latency} ms");
    // Bounded memory. A server that keeps a read buffer per body packet grew by 300 MB here.
    let growth = rss_peak.saturating_sub(rss_before);
    assert!(
        growth < 128 * 1024,
        "the gateway's RSS grew by {growth} KiB ({rss_before} → {rss_peak})"
    );
}

/// An in-process service's metric.
async fn local_metric(health: &Health, series: &str) -> i64 {
    series_value(&health.render_metrics().await, series)
}

#[tokio::test(flavor = "multi_thread")]
async fn web_closes_slow_heads_and_idle_connections_and_keeps_serving() {
    let platform = Platform::start(shared_config(), "", false).await;
    let mut config = platform.config.clone();
    config.web.demo = true;
    config.web.limits.header_read_timeout_ms = 1000;
    config.web.limits.idle_timeout_ms = 4000;
    let health = Health::default();
    let app = wxoa_web::App::build(&config, health.clone())
        .await
        .expect("web service");
    let addr = app.local_addr().to_string();
    tokio::spawn(app.run(platform.shutdown.clone()));

    // 60 slow clients: silent ones and ones trickling a head.
    let connected = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let kind = if i % 2 == 0 { Slow::Silent } else { Slow::Head };
        tasks.push(tokio::spawn(slow_client(
            addr.clone(),
            kind,
            connected.clone(),
        )));
    }
    // A kept-alive client: a request, then another after longer than the header timeout
    // (idle is not header time), then silence until the idle timeout closes it.
    let mut keep = TcpStream::connect(&addr).await.expect("connects");
    let request = format!("GET /oauth/me HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut statuses = Vec::new();
    for pause in [Duration::ZERO, Duration::from_millis(2500)] {
        tokio::time::sleep(pause).await;
        keep.write_all(request.as_bytes())
            .await
            .expect("request sent");
        statuses.push(read_response_status(&mut keep).await);
    }
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    let idle_closed = tokio::time::timeout(HOLD, keep.read_to_end(&mut rest)).await;
    let idle_after = idle_since.elapsed();

    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a slow client"));
    }
    let still_open = results.iter().filter(|r| r.closed_after.is_none()).count();
    assert_eq!(
        still_open,
        0,
        "slow clients still open after {HOLD:?}: {:?}",
        results.iter().find(|r| r.closed_after.is_none())
    );
    for r in &results {
        let after = r.closed_after.expect("closed");
        assert!(
            after >= Duration::from_millis(750) && after < Duration::from_secs(15),
            "{r:?}: closed after {after:?}, the header timeout is 1 s"
        );
    }
    assert!(
        statuses.iter().all(|s| matches!(s, Some(200..=499))),
        "the kept-alive connection was served twice: {statuses:?}"
    );
    assert!(
        idle_closed.is_ok() && idle_after >= Duration::from_secs(3),
        "the idle connection closed after {idle_after:?} (idle timeout 4 s)"
    );
    let series =
        |kind: &str| format!("wxoa_http_timeouts_total{{listener=\"web\",kind=\"{kind}\"}}");
    assert!(local_metric(&health, &series("header")).await >= 60);
    assert!(local_metric(&health, &series("idle")).await >= 1);
    // And it still serves.
    let answer = platform
        .http
        .get(format!("http://{addr}/oauth/me"))
        .send()
        .await
        .expect("the web service answers");
    assert!(answer.status().as_u16() < 500, "{}", answer.status());
}

/// Reads one HTTP response (head and a `Content-Length` body) from `stream`; its status.
async fn read_response_status(stream: &mut TcpStream) -> Option<u16> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return status_of(&data);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_closed_at_once_and_counted_then_callbacks_get_through() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let platform = Platform::start(config, "", false).await;
    let mut config = platform.config.clone();
    config.gateway.limits.max_connections = 16;
    config.gateway.limits.header_read_timeout_ms = 60_000;
    let health = Health::default();
    let gateway = wxoa_gateway::App::build(&config, health.clone())
        .await
        .expect("a gateway with a small cap");
    let addr = gateway.local_addr().to_string();
    tokio::spawn(gateway.run(platform.shutdown.clone()));
    let open = "wxoa_http_connections{listener=\"gateway\"}";

    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(&addr).await.expect("connects"));
    }
    // The gateway has accepted them before any more come (checked below).
    let full = eventually(Duration::from_secs(10), || async {
        (local_metric(&health, open).await == 16).then_some(())
    })
    .await;
    // Over the cap: closed at once, long before the 60 s header timeout.
    for i in 0..8 {
        let mut extra = TcpStream::connect(&addr).await.expect("the kernel accepts");
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "connection {i} over the cap was closed at once: {closed:?}"
        );
    }
    let refused = local_metric(
        &health,
        "wxoa_http_connections_refused_total{listener=\"gateway\"}",
    )
    .await;
    assert!(full.is_some(), "16 connections were open at the gateway");
    assert_eq!(refused, 8, "refusals counted");

    // The held connections go away: a callback gets through again.
    drop(held);
    let free = eventually(Duration::from_secs(10), || async {
        (local_metric(&health, open).await == 0).then_some(())
    })
    .await;
    assert!(free.is_some(), "the slots came back");
    let app = platform.config.app(SAFE_APP).expect("the safe app").clone();
    let outcome = callback::send(
        &platform.http,
        &format!("http://{addr}"),
        &app,
        &text_callback(0),
        &platform.config.sim,
    )
    .await;
    assert_eq!(
        outcome.attempts.first().and_then(|a| a.status),
        Some(200),
        "{outcome:?}"
    );
}

/// A plaintext callback written by hand to `addr` (`host:port`): its head, then its body in
/// `piece`-byte packets (as chunks with `chunked`), a few milliseconds apart; the answer's
/// status and body.
async fn trickled_callback(addr: &str, xml: &str, piece: usize, chunked: bool) -> (u16, String) {
    let timestamp = (wxoa_runtime::now_ms() / 1000).to_string();
    let nonce = format!("{}", rand::random::<u32>());
    let signature = wxoa_wire::signature::server_signature(TOKEN, &timestamp, &nonce);
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", xml.len())
    };
    let head = format!(
        "POST /wechat/{PLAIN_APP}?signature={signature}&timestamp={timestamp}&nonce={nonce} \
         HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\n{framing}\r\n\r\n"
    );
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream.write_all(head.as_bytes()).await.expect("head sent");
    for part in xml.as_bytes().chunks(piece) {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let packet = if chunked {
            let mut p = format!("{:x}\r\n", part.len()).into_bytes();
            p.extend_from_slice(part);
            p.extend_from_slice(b"\r\n");
            p
        } else {
            part.to_vec()
        };
        stream.write_all(&packet).await.expect("body sent");
    }
    if chunked {
        stream
            .write_all(b"0\r\n\r\n")
            .await
            .expect("last chunk sent");
    }
    let status = read_response_status(&mut stream).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read_to_end(&mut rest)).await;
    (
        status.unwrap_or(0),
        String::from_utf8_lossy(&rest).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_in_small_packets_within_the_timeout_is_stored_whole() {
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 0;
    let platform = Platform::start(config, "", false).await;
    let addr = platform
        .config
        .sim
        .gateway_url
        .trim_start_matches("http://")
        .to_owned();
    let js = async_nats::jetstream::new(platform.nats().await);
    let cases = [(1, false), (7, false), (1000, false), (1, true), (13, true)];
    for (i, (piece, chunked)) in cases.into_iter().enumerate() {
        let id = 7_000_000 + i as u64;
        let xml = numbered_text("o_trickle", id);
        let before = platform.stream_len().await;
        let (status, _) = trickled_callback(&addr, &xml, piece, chunked).await;
        assert_eq!(status, 200, "{piece}-byte pieces (chunked: {chunked})");
        assert_eq!(platform.stream_len().await, before + 1);
        let mut stream = js
            .get_stream(wxoa_wire::names::streams::inbound(platform.prefix()))
            .await
            .expect("inbound stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let message = stream.get_raw_message(last).await.expect("the message");
        let envelope: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("an envelope");
        let text = envelope.to_string();
        assert!(
            text.contains(&format!("\"m{id}\"")) && text.contains("o_trickle"),
            "stored whole: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting_lets_the_callback_in_flight_finish_and_closes_idle_connections() {
    let platform = Platform::start(shared_config(), "", false).await;
    let mut config = platform.config.clone();
    // No replier: a callback waits out the reply budget, then gets `success`.
    config.gateway.reply_budget_ms = 2000;
    config.gateway.limits.header_read_timeout_ms = 60_000;
    let gateway = wxoa_gateway::App::build(&config, Health::default())
        .await
        .expect("a gateway");
    let addr = gateway.local_addr().to_string();
    let stop = CancellationToken::new();
    let run = tokio::spawn(gateway.run(stop.clone()));

    let silent = TcpStream::connect(&addr).await.expect("connects");
    let app = platform.config.app(SAFE_APP).expect("the safe app").clone();
    let (http, sim, url) = (
        platform.http.clone(),
        platform.config.sim.clone(),
        format!("http://{addr}"),
    );
    let in_flight =
        tokio::spawn(
            async move { callback::send(&http, &url, &app, &text_callback(0), &sim).await },
        );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();

    // The silent connection is closed at once, not at its 60 s header timeout.
    let mut silent = silent;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was closed at shutdown: {closed:?}"
    );
    // No more connections are accepted.
    let refused = eventually(Duration::from_secs(10), || async {
        TcpStream::connect(&addr).await.is_err().then_some(())
    })
    .await;
    assert!(refused.is_some(), "the listener is closed");
    // The callback in flight is answered, and the gateway's run returns.
    let outcome = in_flight.await.expect("the callback");
    assert_eq!(
        outcome.attempts.first().and_then(|a| a.status),
        Some(200),
        "{outcome:?}"
    );
    let finished = tokio::time::timeout(Duration::from_secs(20), run).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the gateway stopped cleanly: {finished:?}"
    );
}
