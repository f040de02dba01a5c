//! Distributed traces. Every request continues its caller's W3C trace (or
//! starts one), and every event records the trace context it was appended
//! in ([`TraceContext`]), so one operator action can be followed from the
//! request through the log to the notice. When `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, the request and handling spans are also recorded and exported
//! over OTLP (HTTP); otherwise no span is recorded and nothing is exported,
//! and the trace context is passed on with fresh span ids.
//!
//! Spans carry ids, names, event types and counts, never personal data.

use mileage_domain::envelope::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

/// The exporter's variable, as OpenTelemetry names it.
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Keeps the span exporter running; dropping it flushes what is buffered.
pub struct Exporter(Option<SdkTracerProvider>);

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The OTLP exporter to `traces_url`, or where [`ENDPOINT`] says when it is
/// set, and the layer that records `service`'s spans into it; `None`
/// otherwise, or when it cannot be built (said on stderr: logging is not up
/// yet).
pub(crate) fn otlp<S>(
    service: &'static str,
    traces_url: Option<String>,
) -> (
    Exporter,
    Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
)
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if traces_url.is_none() && std::env::var_os(ENDPOINT).is_none_or(|v| v.is_empty()) {
        return (Exporter(None), None);
    }
    let builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    let builder = match traces_url {
        Some(url) => {
            use opentelemetry_otlp::WithExportConfig as _;
            builder.with_endpoint(url)
        }
        None => builder,
    };
    let exporter = match builder.build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("{ENDPOINT}: cannot export traces ({e}); going on without");
            return (Exporter(None), None);
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let layer = layer(&provider, service);
    (Exporter(Some(provider)), Some(layer))
}

/// The layer that records spans into `provider` (tests give an in-memory
/// one).
pub fn layer<S>(
    provider: &SdkTracerProvider,
    service: &'static str,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service))
}

/// Puts `span` in the trace of `parent` (the caller's, or the event being
/// handled; a new trace when `None`) and answers `span`'s trace context:
/// its recorded span's when spans are recorded, otherwise `parent`
/// continued by a fresh span id.
pub fn enter(span: &tracing::Span, parent: Option<TraceContext>) -> TraceContext {
    if let Some(parent) = parent {
        let remote = opentelemetry::Context::new().with_remote_span_context(to_otel(parent));
        let _ = span.set_parent(remote);
    }
    let recorded = span.context().span().span_context().clone();
    if recorded.is_valid() {
        return from_otel(&recorded);
    }
    match parent {
        Some(parent) => parent.child(random_span_id()),
        None => TraceContext {
            trace_id: Uuid::new_v4().as_u128(),
            span_id: random_span_id(),
            sampled: true,
        },
    }
}

/// Links `span` to another trace it also handles (a batch of events from
/// several requests), when spans are recorded.
pub fn link(span: &tracing::Span, other: TraceContext) {
    span.add_link(to_otel(other));
}

/// A random, non-zero span id.
pub fn random_span_id() -> u64 {
    let bits = Uuid::new_v4().as_u128();
    u64::try_from(bits & u128::from(u64::MAX))
        .unwrap_or(1)
        .max(1)
}

fn to_otel(trace: TraceContext) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace.trace_id),
        SpanId::from(trace.span_id),
        if trace.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    )
}

fn from_otel(context: &SpanContext) -> TraceContext {
    TraceContext {
        trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(context.span_id().to_bytes()),
        sampled: context.is_sampled(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_recorded_spans_the_callers_trace_goes_on_with_a_fresh_span() {
        let parent: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        let span = tracing::info_span!("test");
        let ours = enter(&span, Some(parent));
        assert_eq!(ours.trace_id, parent.trace_id);
        assert_ne!(ours.span_id, parent.span_id);
        let root = enter(&tracing::info_span!("root"), None);
        assert_ne!(root.trace_id, 0);
        assert_eq!(from_otel(&to_otel(parent)), parent);
    }
}
