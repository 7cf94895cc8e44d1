//! Logs and traces.
//!
//! - Logs: an `EnvFilter` (`RUST_LOG`, else the configured default), JSON or text on stderr.
//! - Traces: when `telemetry.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is set, spans are
//!   exported by OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`, batched on a thread of their
//!   own; the service name is `telemetry.service_name` (or `OTEL_SERVICE_NAME`), else
//!   `wxoa-<service>`. Spans at `info` and above of the wxoa crates are traced, whatever the
//!   log filter.
//! - Across NATS: [`inject`] writes the current span's W3C `traceparent` into a message's
//!   headers, and [`set_parent`] makes a span the child of the `traceparent` a message carries,
//!   so one callback is one trace from the gateway through every worker to the WeChat API call.

use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (call once, at exit).
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.force_flush() {
                eprintln!("wxoa: flushing traces: {e}");
            }
            let _ = provider.shutdown();
        }
    }
}

/// Installs logs, and traces when an OTLP endpoint is configured, for `service` (`gateway`,
/// ...). A second call is a no-op (tests start many services in one process).
pub fn init(config: &TelemetryConfig, service: &str) -> Telemetry {
    let provider = config.otlp_endpoint.as_deref().and_then(|endpoint| {
        let name = config
            .service_name
            .clone()
            .unwrap_or_else(|| format!("wxoa-{service}"));
        otlp_provider(endpoint, name)
            .map_err(|e| eprintln!("wxoa: traces are off: {e}"))
            .ok()
    });
    install(config, provider)
}

/// Installs logs and, with `provider`, traces exported by it (tests pass an in-memory
/// exporter's provider).
pub fn install(config: &TelemetryConfig, provider: Option<SdkTracerProvider>) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("wxoa"))
            .with_filter(EnvFilter::new("warn,wxoa=info,wxoa_=info"))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

/// An OTLP/HTTP exporter to `<endpoint>/v1/traces`. Built on a thread of its own: its blocking
/// HTTP client must not be created inside the async runtime.
fn otlp_provider(endpoint: &str, name: String) -> Result<SdkTracerProvider, String> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    std::thread::spawn(move || {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
            .map_err(|e| e.to_string())?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(name)
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build())
    })
    .join()
    .map_err(|_| "building the OTLP exporter panicked".to_owned())?
}

struct Headers<'a>(&'a mut async_nats::HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct ReadHeaders<'a>(&'a async_nats::HeaderMap);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Says yes once a minute: for warnings that an attacker could otherwise make repeat per
/// request (the count goes to a metric; the log gets one line a minute).
pub struct OncePerMinute(std::sync::atomic::AtomicU64);

impl OncePerMinute {
    /// Not said yet.
    pub const fn new() -> OncePerMinute {
        OncePerMinute(std::sync::atomic::AtomicU64::new(u64::MAX))
    }

    /// `true` for the first call in the minute of `now_ms`.
    pub fn first(&self, now_ms: i64) -> bool {
        let minute = now_ms.div_euclid(60_000) as u64;
        self.0.swap(minute, std::sync::atomic::Ordering::Relaxed) != minute
    }
}

impl Default for OncePerMinute {
    fn default() -> Self {
        OncePerMinute::new()
    }
}

/// The current span's W3C `traceparent`, when traces are on.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            ids.trace_id(),
            ids.span_id(),
            ids.trace_flags().to_u8()
        )
    })
}

/// Writes the current span's `traceparent` into `headers` (nothing when traces are off).
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut Headers(headers));
}

/// Makes `span` the child of the `traceparent` in `headers`, if any.
pub fn set_parent(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    let Some(headers) = headers else { return };
    let context = TraceContextPropagator::new().extract(&ReadHeaders(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}
