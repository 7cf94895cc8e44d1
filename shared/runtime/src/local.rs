//! Command lines of a local `nats-server` and `redis-server`, shared by `wxoa dev` and the test
//! harness: loopback only, a free port, a private data directory.

use std::path::Path;

/// `nats-server` with JetStream on `127.0.0.1:<port>`, storing in `dir`.
pub fn nats_server_args(port: u16, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    [
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-js",
        "-sd",
        &dir,
    ]
    .map(String::from)
    .to_vec()
}

/// `redis-server` on `127.0.0.1:<port>` that keeps nothing on disk (working dir `dir`).
pub fn redis_server_args(port: u16, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir,
    ]
    .map(String::from)
    .to_vec()
}

/// The Debian package hint for a missing server binary.
pub fn install_hint(program: &str) -> String {
    format!("{program} is not installed: apt-get install {program} (Debian/Ubuntu)")
}
