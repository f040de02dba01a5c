//! One command's distributed trace, recorded with OpenTelemetry's in-memory
//! span exporter (the same layer that exports over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set): the trace id of the request's span
//! is on the events it appended, on the projector's batches that handled
//! them, on the process manager's follow-up and on the notice's
//! `traceparent` to the SMS gateway. No span attribute holds personal data.
//! (Its own test binary: it installs the process's global subscriber.)

use std::time::Duration;

use mileage_domain::envelope::TraceContext;
use mileage_e2e::{CommandApi, Gateway, eventually, start_projector};
use mileage_store::testing::fresh_database;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;

const WAIT: Duration = Duration::from_secs(30);
const PHONE: &str = "01000003333";

fn hex(span: &SpanData) -> (String, String) {
    (
        format!("{:032x}", span.span_context.trace_id()),
        format!("{:016x}", span.span_context.span_id()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commands_trace_runs_through_its_events_the_projector_and_the_notice() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(mileage_service::traces::layer(&provider, "e2e"));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let commands = CommandApi::spawn(&database).await;
    let projector = start_projector(&database, Some(&gateway)).await;
    let (id, _) = commands.register_target(PHONE, "traced").await;
    let answer = reqwest::Client::new()
        .patch(format!("{}/dormantMembers/{id}", commands.address))
        .bearer_auth(&commands.token)
        .json(&serde_json::json!({ "memberStatus": "DORMANT" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answered: TraceContext = answer.headers()["traceparent"]
        .to_str()
        .unwrap()
        .parse()
        .expect("a traceparent");
    let trace_id = answered.trace_id_hex();
    let notice = eventually("the notice reaches the SMS gateway", WAIT, || async {
        gateway.received().into_iter().find(|r| r.to == PHONE)
    })
    .await;
    let sent: TraceContext = notice.traceparent.expect("traceparent").parse().unwrap();
    let store = mileage_e2e::event_store(&database).await;
    let changed = eventually(
        "the command's event and the notice's record",
        WAIT,
        || async {
            let target = store
                .read_stream(&format!("dormantMember-{id}"), 0, 10)
                .await
                .ok()?;
            let message = store
                .read_stream(&format!("managerMessage-{id}"), 0, 10)
                .await
                .ok()?;
            let changed = target
                .into_iter()
                .find(|e| e.event_type == "DormantMemberChanged")?;
            (!message.is_empty()).then_some((changed, message))
        },
    )
    .await;
    projector.stop().await;
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    // The request's span is the one the response names, and the event the
    // command appended records it.
    let request = spans
        .iter()
        .find(|s| s.name == "request" && hex(s).1 == format!("{:016x}", answered.span_id))
        .expect("the request's span is recorded");
    assert_eq!(hex(request).0, trace_id);
    let (changed, message) = changed;
    assert_eq!(
        changed.metadata.trace,
        Some(answered),
        "the event records the request's span"
    );

    // The projector's batches that handled it, the follow-up and the notice.
    let in_trace: Vec<&SpanData> = spans.iter().filter(|s| hex(s).0 == trace_id).collect();
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
    assert!(names.contains(&"batch"), "{names:?}");
    assert!(names.contains(&"notice"), "{names:?}");
    assert!(names.contains(&"follow_up"), "{names:?}");
    let notice_span = in_trace.iter().find(|s| s.name == "notice").unwrap();
    assert_eq!(sent.trace_id_hex(), trace_id, "the gateway joins the trace");
    assert_eq!(format!("{:016x}", sent.span_id), hex(notice_span).1);
    assert!(
        message
            .iter()
            .all(|e| e.metadata.trace.map(|t| t.trace_id_hex()) == Some(trace_id.clone())),
        "the notice's record is in the trace too"
    );

    // Nothing personal in any span.
    for span in &spans {
        for attribute in &span.attributes {
            assert!(
                !attribute.value.to_string().contains(PHONE),
                "{}: {attribute:?}",
                span.name
            );
        }
    }
}
