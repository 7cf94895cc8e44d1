//! The deploy files and the binary can't drift apart: every service of `deploy/compose.yaml`
//! and every Deployment of `deploy/k8s/base` runs here as `wxoa` with the exact arguments,
//! environment and config file the file gives it, against real NATS and Redis, and must become
//! ready on the admin port its probes use. Then SIGTERM: not ready at once, a clean exit within
//! the shutdown grace.
//!
//! Rewritten, and only these: the NATS and Redis host names (to this test's servers), `0.0.0.0`
//! ports (to free loopback ports), the config file's path inside the image (to the file in the
//! repository, whose baked-in rules path is mapped back to `deploy/rules.demo.toml`), and the
//! subject and key prefixes (test isolation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_yaml::Value;
use wxoa_tests::{eventually, free_port, servers, unique_id};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// One service as a deploy file runs it.
#[derive(Debug)]
struct Planned {
    name: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// The admin port the probes (or health check) use.
    probe_port: u16,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML sequence of scalars as strings.
fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .expect("a sequence")
        .iter()
        .map(string)
        .collect()
}

/// `${VAR:-default}` → `default` (Compose's interpolation with nothing set).
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn compose_plan() -> Vec<Planned> {
    let mut doc: Value = serde_yaml::from_str(&interpolate(&read("deploy/compose.yaml"))).unwrap();
    doc.apply_merge().unwrap();
    let probe = string(&doc["x-wxoa-healthcheck"]["test"][3]);
    let probe_port: u16 = probe
        .split("/dev/tcp/127.0.0.1/")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the health check's port");
    let services = doc["services"].as_mapping().unwrap();
    services
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.contains("wxoa")))
        .filter(|(name, _)| name.as_str() != Some("sim"))
        .map(|(name, s)| {
            let mut svc = s.clone();
            svc.apply_merge().unwrap();
            let env = svc["environment"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| (string(k), string(v)))
                .collect();
            Planned {
                name: format!("compose {}", string(name)),
                args: strings(&svc["command"]),
                env,
                probe_port,
            }
        })
        .collect()
}

fn k8s_plan() -> Vec<Planned> {
    let config: BTreeMap<String, String> = read("deploy/k8s/base/config.env")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let kustomization: Value =
        serde_yaml::from_str(&read("deploy/k8s/base/kustomization.yaml")).unwrap();
    let mut planned = Vec::new();
    for file in kustomization["resources"].as_sequence().unwrap() {
        let text = read(&format!("deploy/k8s/base/{}", string(file)));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(doc).unwrap();
            if doc["kind"].as_str() != Some("Deployment") {
                continue;
            }
            let container = &doc["spec"]["template"]["spec"]["containers"][0];
            let mut env = BTreeMap::new();
            for from in container["envFrom"].as_sequence().into_iter().flatten() {
                if from["configMapRef"]["name"].as_str() == Some("wxoa") {
                    env.extend(config.clone());
                }
            }
            for var in container["env"].as_sequence().into_iter().flatten() {
                let value = match &var["value"] {
                    Value::Null => format!("pod-{}", unique_id()), // fieldRef: the pod's name
                    v => string(v),
                };
                env.insert(string(&var["name"]), value);
            }
            let ports = container["ports"].as_sequence().unwrap();
            let probe = string(&container["readinessProbe"]["httpGet"]["port"]);
            assert_eq!(
                string(&container["readinessProbe"]["httpGet"]["path"]),
                "/readyz"
            );
            let probe_port = ports
                .iter()
                .find(|p| string(&p["name"]) == probe || string(&p["containerPort"]) == probe)
                .map(|p| string(&p["containerPort"]).parse().unwrap())
                .expect("the probe's port is declared");
            planned.push(Planned {
                name: format!("k8s {}", string(&doc["metadata"]["name"])),
                args: strings(&container["args"]),
                env,
                probe_port,
            });
        }
    }
    planned
}

use serde::Deserialize;

/// The config file a deploy file mounts, as a local file: its image paths mapped to the repo.
fn local_config(image_path: &str, dir: &Path) -> PathBuf {
    let source = match image_path {
        "/run/secrets/wxoa-config" => "deploy/wxoa.toml",
        "/etc/wxoa/secret/wxoa.toml" => "deploy/k8s/overlays/dev/wxoa.sandbox.toml",
        other => panic!("unknown config path {other}"),
    };
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains("COPY deploy/rules.demo.toml /etc/wxoa/rules.demo.toml"),
        "the image carries the rules the config names"
    );
    let rules = Path::new(ROOT).join("deploy/rules.demo.toml");
    let text = read(source).replace("/etc/wxoa/rules.demo.toml", rules.to_str().unwrap());
    let path = dir.join(format!("{}.toml", unique_id()));
    std::fs::write(&path, text).unwrap();
    path
}

struct Running {
    name: String,
    child: Child,
    admin: u16,
    /// Where the process's output goes: told when it doesn't become ready or exit cleanly.
    log: PathBuf,
}

impl Running {
    /// Whether it still runs, and the end of what it printed.
    fn story(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            _ => "still running".to_owned(),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{} (admin port {}), {state}; its output ends:\n{}",
            self.name,
            self.admin,
            tail.join("\n")
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(plan: &Planned, dir: &Path, id: &str) -> Running {
    let servers = servers();
    let mut admin = 0;
    let log = dir.join(format!("{}-{}.log", plan.name, unique_id()));
    let output = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxoa"));
    command
        .args(&plan.args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(output.try_clone().unwrap())
        .stderr(output);
    for (key, value) in &plan.env {
        let value = if key == "WXOA_CONFIG" {
            local_config(value, dir).display().to_string()
        } else if let Some(port) = value.strip_prefix("0.0.0.0:") {
            let local = free_port();
            if key == "WXOA__ADMIN__LISTEN" {
                assert_eq!(
                    port,
                    plan.probe_port.to_string(),
                    "{}: probes ask the admin port",
                    plan.name
                );
                admin = local;
            }
            format!("127.0.0.1:{local}")
        } else if value == "nats://nats:4222" {
            servers.nats_url.clone()
        } else if value == "redis://redis:6379" {
            servers.redis_url.clone()
        } else {
            value.clone()
        };
        command.env(key, value);
    }
    assert_ne!(admin, 0, "{}: WXOA__ADMIN__LISTEN is set", plan.name);
    command
        .env("WXOA__NATS__PREFIX", format!("d{id}"))
        .env("WXOA__NATS__STORAGE", "memory")
        .env("WXOA__REDIS__KEY_PREFIX", format!("d{id}"));
    Running {
        name: plan.name.clone(),
        child: command.spawn().expect("wxoa starts"),
        admin,
        log,
    }
}

async fn readyz(http: &reqwest::Client, port: u16) -> Option<u16> {
    let answer = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()?;
    Some(answer.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deployed_service_starts_as_the_files_say_and_stops_gracefully() {
    let compose = compose_plan();
    let k8s = k8s_plan();
    let names = |p: &[Planned]| p.iter().map(|s| s.args[0].clone()).collect::<Vec<_>>();
    for service in [
        "gateway",
        "token",
        "replier",
        "usersync",
        "broadcast",
        "web",
        "admin",
    ] {
        assert!(
            names(&compose).iter().any(|n| n == service),
            "compose runs {service}"
        );
        assert!(
            names(&k8s).iter().any(|n| n == service),
            "k8s runs {service}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for plan in [compose, k8s] {
        // One deployment: one prefix for all its services.
        let id = unique_id();
        let mut running: Vec<Running> = plan.iter().map(|p| start(p, dir.path(), &id)).collect();
        for service in &mut running {
            let ready = eventually(Duration::from_secs(30), || async {
                (readyz(&http, service.admin).await == Some(200)).then_some(())
            })
            .await;
            assert!(ready.is_some(), "became ready: {}", service.story());
            let answer = http
                .get(format!("http://127.0.0.1:{}/metrics", service.admin))
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let metrics = answer.text().await.unwrap();
            assert_eq!(status, 200, "{}: /metrics", service.name);
            if service.name.contains("replier") {
                assert!(
                    metrics.contains("wxoa_consumer_pending{consumer=\"wxoa-replier\"}"),
                    "{}: consumer lag on /metrics (port {}):\n{metrics}",
                    service.name,
                    service.admin
                );
            }
        }
        // SIGTERM: not ready as soon as the signal is handled (within 3 s on a loaded machine),
        // never ready again, then a clean exit within the grace.
        for service in &running {
            let _ = Command::new("kill")
                .args(["-TERM", &service.child.id().to_string()])
                .status();
        }
        for service in &mut running {
            let started = Instant::now();
            let mut stopping = false;
            let status = loop {
                if let Some(status) = service.child.try_wait().unwrap() {
                    break status;
                }
                match readyz(&http, service.admin).await {
                    Some(200) => assert!(
                        !stopping && started.elapsed() < Duration::from_secs(3),
                        "{} is not ready once stopping",
                        service.name
                    ),
                    _ => stopping = true,
                }
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "{} stopped within the grace",
                    service.name
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(status.success(), "exited cleanly: {}", service.story());
        }
    }
}
