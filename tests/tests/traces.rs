//! One callback is one trace: the gateway's span, the replier's consumer span (its parent from
//! the `traceparent` header the gateway stored with the message), the send command's consumer
//! span (its parent from the header the replier put on the command) and the WeChat API call,
//! all under one trace id. Spans are collected by an in-memory exporter.

use std::time::Duration;

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use wxoa_runtime::config::TelemetryConfig;
use wxoa_tests::{Platform, SAFE_APP, eventually, shared_config};

const RULES: &str = wxoa_tests::HELLO_RULE;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn one_callback_is_one_trace_from_gateway_to_the_wechat_call() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logs = TelemetryConfig {
        log_filter: "warn".into(),
        ..TelemetryConfig::default()
    };
    let _telemetry = wxoa_runtime::telemetry::install(&logs, Some(provider.clone()));

    // The budget passes before any replier runs: the reply goes out as a customer-service
    // message, two NATS hops after the callback.
    let mut config = shared_config();
    config.gateway.reply_budget_ms = 300;
    let stack = Platform::start(config, RULES, true).await;
    let message = json!({"appid": SAFE_APP, "mode": "safe",
        "message": {"type": "text", "from": "o_traced", "content": "hello"}});
    let outcome = stack.send(message).await;
    assert_eq!(outcome["outcome"], "success", "{outcome:#}");
    let _replier = stack.replier().await;
    let sent = eventually(Duration::from_secs(15), || async {
        let got = stack.received(SAFE_APP, "o_traced").await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert!(sent.is_some(), "the fallback was sent");

    let spans = eventually(Duration::from_secs(10), || async {
        provider.force_flush().ok()?;
        let spans = exporter.get_finished_spans().ok()?;
        let trace = spans
            .iter()
            .find(|s| {
                s.name == "gateway.callback" && attribute(s, "app_id").as_deref() == Some(SAFE_APP)
            })?
            .span_context
            .trace_id();
        let in_trace: Vec<SpanData> = spans
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        in_trace
            .iter()
            .any(|s| attribute(s, "api").as_deref() == Some("/cgi-bin/message/custom/send"))
            .then_some((trace, in_trace))
    })
    .await;
    let (trace, spans) = spans.expect("the WeChat call is in the callback's trace");
    assert_ne!(trace, TraceId::INVALID);
    let names: Vec<String> = spans
        .iter()
        .map(|s| {
            let subject = attribute(s, "messaging.destination.name").unwrap_or_default();
            format!("{} {subject}", s.name)
        })
        .collect();
    let consumed = |kind: &str| {
        names
            .iter()
            .any(|n| n.starts_with("consumer.handle") && n.contains(kind))
    };
    assert!(
        consumed(".message.text"),
        "the replier took the callback: {names:#?}"
    );
    assert!(
        consumed(".command.send"),
        "the sender took the command: {names:#?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("wechat.call")),
        "{names:#?}"
    );
    // Every span but the gateway's has its parent in the same trace.
    for span in &spans {
        if span.name != "gateway.callback" {
            assert_ne!(
                span.parent_span_id,
                opentelemetry::trace::SpanId::INVALID,
                "{} has a parent",
                span.name
            );
        }
    }
}
