//! Logging and metrics set-up shared by every service. Logs go to stderr
//! (text, or JSON lines for shippers); metrics go to one Prometheus recorder
//! per process (installed on first use, rendered at `/metrics`), with every
//! request counted by matched route, method and status.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 0.5 ms to 5 s.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Logs to stderr, filtered by `RUST_LOG` (default `info`, without the
/// database driver's notices, and without the EventStoreDB client's own
/// lines: every error it meets reaches our code, which logs it once with
/// what it was doing): one JSON object per line when `LOG_FORMAT=json` (for
/// log shippers), text otherwise. Each request's lines carry its trace id.
/// When `OTEL_EXPORTER_OTLP_ENDPOINT` is set, `service`'s spans are also
/// exported over OTLP ([`crate::traces`]); keep the answer alive until
/// exit, dropping it flushes them.
#[must_use = "dropping it stops the span export"]
pub fn init_logging(service: &'static str) -> crate::traces::Exporter {
    init_logging_to(service, None)
}

/// [`init_logging`], exporting spans to the OTLP/HTTP traces URL
/// `traces_url` (e.g. `http://collector:4318/v1/traces`) when given, else
/// where `OTEL_EXPORTER_OTLP_ENDPOINT` says (if set).
#[must_use = "dropping it stops the span export"]
pub fn init_logging_to(
    service: &'static str,
    traces_url: Option<String>,
) -> crate::traces::Exporter {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn,kurrentdb=off")
    });
    let (exporter, spans) = crate::traces::otlp(service, traces_url);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let text = (!json).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(spans)
        .init();
    exporter
}

/// The process's metrics, installed as the global recorder on first call.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only its own");
        }
        handle
    })
}

/// Gauges whose series come and go with what they measure (one per live
/// consumer, say), as Prometheus text to append to the process's: `set`
/// runs against a recorder of its own, made for this rendering, so a series
/// it did not set this time is not in the text. (The process's recorder
/// keeps every series it ever saw, at its last value.)
pub fn render_current(set: impl FnOnce()) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, set);
    recorder.handle().render()
}

/// Puts the request series at zero that the first scrape itself counts
/// (`GET /metrics`, 200) and every rate limit's refusals, so the request
/// rules and dashboards have a series from the first scrape. For the
/// services that [`track`] requests; adds nothing to a count already there.
pub fn requests_at_zero() {
    metrics::counter!("http_requests_total", "route" => "/metrics", "method" => "GET", "status" => "200")
        .increment(0);
    let _ = metrics::histogram!("http_request_duration_seconds", "route" => "/metrics", "method" => "GET");
    crate::limits::refusals_at_zero();
}

/// Counts every request by matched route, method and status, and times it.
/// Labels come from bounded sets only, whatever clients send: the route is
/// the matched template (`/members/{id}`, or `unmatched`), the method one
/// of the standard ones or `other`, the status a number.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let in_flight = InFlight::enter(&route, method);
    let response = next.run(request).await;
    drop(in_flight);
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// One request counted in `http_requests_in_flight` until it is answered
/// or dropped (a client that hangs up mid-request counts out too): what an
/// operator watches while a service drains, and a sign of requests piling
/// up behind a slow dependency.
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(route: &str, method: &'static str) -> Self {
        let gauge = metrics::gauge!("http_requests_in_flight", "route" => route.to_owned(), "method" => method);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A method as a metric label: the standard ones by name, any other
/// (clients may send made-up methods) as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    #[test]
    fn made_up_methods_fold_into_one_label() {
        assert_eq!(super::method_label(&Method::POST), "POST");
        for made_up in ["BREW", "PROPFIND", "X1", "CONNECT", "TRACE"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(super::method_label(&method), "other", "{made_up}");
        }
    }

    #[test]
    fn current_gauges_show_only_what_was_set_this_time() {
        let first = super::render_current(|| {
            metrics::gauge!("probe_lag", "consumer" => "a").set(1.0);
            metrics::gauge!("probe_lag", "consumer" => "b").set(2.0);
        });
        assert!(first.contains(r#"probe_lag{consumer="b"} 2"#), "{first:?}");
        let second = super::render_current(|| {
            metrics::gauge!("probe_lag", "consumer" => "a").set(3.0);
        });
        assert!(
            second.contains(r#"probe_lag{consumer="a"} 3"#),
            "{second:?}"
        );
        assert!(!second.contains(r#"consumer="b""#), "b is gone: {second:?}");
        assert!(
            !super::prometheus().render().contains("probe_lag"),
            "not in the process's recorder"
        );
    }

    #[test]
    fn a_request_counts_in_flight_until_answered_or_dropped() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let (first, second) = metrics::with_local_recorder(&recorder, || {
            (
                super::InFlight::enter("/members", "POST"),
                super::InFlight::enter("/members", "POST"),
            )
        });
        let line = r#"http_requests_in_flight{route="/members",method="POST"}"#;
        assert!(
            handle.render().contains(&format!("{line} 2")),
            "{}",
            handle.render()
        );
        drop(first);
        assert!(handle.render().contains(&format!("{line} 1")));
        drop(second);
        assert!(handle.render().contains(&format!("{line} 0")));
    }

    #[test]
    fn recorded_metrics_are_rendered() {
        let handle = super::prometheus();
        metrics::counter!("probe_total", "kind" => "unit").increment(2);
        let text = handle.render();
        assert!(text.contains(r#"probe_total{kind="unit"} 2"#), "{text:?}");
    }
}
