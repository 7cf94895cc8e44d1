//! What the process tests share: `wxoa` verbs and services as child processes of a
//! [`Platform`]'s config.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wxoa_tests::{Platform, eventually, free_port};

/// The binary under test.
pub(crate) const EXE: &str = env!("CARGO_BIN_EXE_wxoa");

/// `wxoa <args>` with the platform's config; stdout, or the failure's stderr.
#[allow(dead_code)] // each test binary compiles this module; not all of them use each helper
pub(crate) fn wxoa(platform: &Platform, args: &[&str]) -> Result<String, String> {
    let out = Command::new(EXE)
        .args(args)
        .envs(platform.env())
        .env_remove("WXOA_CONFIG")
        .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
        .output()
        .expect("wxoa runs");
    wxoa_tests::stdout_or_stderr(out)
}

/// `wxoa <service>` as a child process and the port of its admin server (`/metrics`);
/// returns when its /readyz answers 200.
#[allow(dead_code)] // each test binary compiles this module; not all of them use each helper
pub(crate) async fn service(platform: &Platform, service: &str) -> (Child, u16) {
    service_with(platform, service, &[]).await
}

/// [`service`] with `env` (`WXOA__SECTION__KEY`, value) on top of the platform's config.
pub(crate) async fn service_with(
    platform: &Platform,
    service: &str,
    env: &[(String, String)],
) -> (Child, u16) {
    let admin = free_port();
    let child = Command::new(EXE)
        .arg(service)
        .envs(platform.env())
        .env_remove("WXOA_CONFIG")
        .env("WXOA__ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .env("WXOA__TELEMETRY__LOG_FILTER", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .spawn()
        .expect("wxoa starts");
    let ready = eventually(Duration::from_secs(20), || async {
        let answer = platform
            .http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await;
        answer.ok().filter(|a| a.status() == 200).map(|_| ())
    })
    .await;
    assert!(ready.is_some(), "wxoa {service} became ready");
    (child, admin)
}

/// The value of one series (`name{labels}`) on a process's `/metrics`, 0 when absent.
#[allow(dead_code)] // each test binary compiles this module; not all of them read metrics
pub(crate) async fn metric(platform: &Platform, admin: u16, series: &str) -> u64 {
    let text = platform
        .http
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}
