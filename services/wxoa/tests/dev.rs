//! `wxoa dev` as the README runs it: with nothing answering at the configured URLs it starts
//! its own nats-server and redis-server, runs every service with the simulator, takes a
//! callback sent by `wxoa sim send` (answered by the demo rules), and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

fn dead_port() -> u16 {
    // Bound and released: nothing listens there afterwards.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn dev_runs_everything_and_takes_a_callback() {
    let exe = env!("CARGO_BIN_EXE_wxoa");
    let mut child = Command::new(exe)
        .arg("dev")
        .env(
            "WXOA__NATS__URL",
            format!("nats://127.0.0.1:{}", dead_port()),
        )
        .env(
            "WXOA__REDIS__URL",
            format!("redis://127.0.0.1:{}", dead_port()),
        )
        .env("WXOA__GATEWAY__LISTEN", "127.0.0.1:0")
        .env("WXOA__GATEWAY__REPLY_BUDGET_MS", "3000")
        .env("WXOA__SIM__LISTEN", "127.0.0.1:0")
        .env("WXOA__WEB__LISTEN", "127.0.0.1:0")
        .env("WXOA__API__LISTEN", "127.0.0.1:0")
        .env("WXOA__ADMIN__LISTEN", "127.0.0.1:0")
        .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
        .env_remove("WXOA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wxoa dev starts");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);

    let mut banner = String::new();
    let mut sim_url = None;
    let mut operator = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(rest) = line.trim().strip_prefix("simulator") {
            sim_url = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some((_, exports)) = line.split_once("(export ") {
            operator = exports
                .trim_end_matches(')')
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        }
        if line.contains("Stop with Ctrl-C") {
            break;
        }
    }
    let sim_url = sim_url.unwrap_or_else(|| panic!("banner names the simulator:\n{banner}"));
    assert!(
        banner.contains("started nats-server") && banner.contains("started redis-server"),
        "{banner}"
    );
    assert!(
        banner.contains("/openapi.json") && banner.contains("WXOA_API_TOKEN=dev-"),
        "the banner names the operator API and its token:\n{banner}"
    );
    assert!(
        banner.contains("wxoa sim send"),
        "the banner says how to send a test message:\n{banner}"
    );

    for (app, mode) in [("wxdemosafe000001", "safe"), ("wxdemoplain00001", "plain")] {
        let out = Command::new(exe)
            .args([
                "sim", "send", "--sim", &sim_url, "--app", app, "--mode", mode, "--text", "hello",
            ])
            .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
            .output()
            .expect("wxoa sim send runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).expect("outcome JSON");
        // The demo rules answer "hello" passively, through the replier and the rendezvous.
        assert_eq!(outcome["outcome"], "reply", "{outcome:#}");
        assert!(
            outcome["reply"]["Content"]
                .as_str()
                .is_some_and(|c| c.contains("You said “hello”")),
            "{outcome:#}"
        );
    }

    // A menu applied from a file reaches the simulator, and a click on it reaches the rules.
    let menu = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/menu.demo.toml");
    let run = |args: &[&str]| {
        let out = Command::new(exe)
            .args(args)
            .args(["--app", "wxdemoplain00001"])
            .envs(operator.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
            .output()
            .expect("wxoa runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    run(&["menu", "apply", menu, "--json"]);
    let got = run(&["menu", "get", "--json"]);
    assert_eq!(got["menu"]["button"][0]["key"], "V1001_NEWS", "{got:#}");
    let clicked = run(&[
        "sim",
        "send",
        "--sim",
        &sim_url,
        "--event",
        "CLICK",
        "--event-key",
        "V1001_NEWS",
    ]);
    assert_eq!(clicked["outcome"], "reply", "{clicked:#}");
    assert_eq!(clicked["reply"]["MsgType"], "news", "{clicked:#}");

    // The token service fetched tokens from the simulator for both demo apps.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(exe)
            .args(["sim", "stats", "--sim", &sim_url])
            .output()
            .unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let fetched = |app: &str| {
            stats["calls"][app]["/cgi-bin/stable_token"]
                .as_u64()
                .unwrap_or(0)
                >= 1
        };
        if fetched("wxdemosafe000001") && fetched("wxdemoplain00001") {
            break;
        }
        assert!(Instant::now() < deadline, "no token fetch seen: {stats:#}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut running = running;
    let child = &mut running.0;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "wxoa dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status:?}");
}
