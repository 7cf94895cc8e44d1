//! The ceiling over the gateway: a minimal HTTP/1.1 server that reads each request's body and
//! answers `success`, nothing else. Same stack under it as the gateway (hyper 1 with
//! hyper-util's `auto` connection builder, a multi-thread Tokio runtime with one worker per
//! core, mimalloc, TCP options left as the gateway leaves them), no axum, no verification,
//! no NATS.
//!
//! Usage: `wxoa-bench-baseline LISTEN` (e.g. `127.0.0.1:8080`)

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as the gateway does (it verifies and parses it); a broken one still gets
    // the same answer.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(b"success")));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: wxoa-bench-baseline LISTEN"))?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
        });
    }
}
