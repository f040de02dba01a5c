//! The dormancy policy on a moved clock: a quiet member becomes a target
//! and, after the grace, dormant with a notice; activity while
//! `PRE_DORMANT` takes them off the list; an operator's exclusion keeps
//! them off; a release works as before.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mileage_e2e::{CommandApi, Gateway, eventually, projector_settings, seed_member};
use mileage_projector::clock::Clock;
use mileage_projector::startup::Running;
use mileage_store::testing::fresh_database;
use mileage_store::{EventStore, RecordedEvent};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A projector whose policy reads `clock`, passing every second.
async fn projector(database: &str, gateway: &Gateway, clock: &Clock) -> Running {
    let mut settings = projector_settings(database, Some(gateway));
    settings.dormancy.clock = clock.clone();
    settings.dormancy.every = Duration::from_secs(1);
    settings.dormancy.rate = std::num::NonZeroU32::new(1000).unwrap();
    mileage_projector::startup::start(&settings)
        .await
        .expect("the projector starts")
}

/// Every event of the targets of `member`, in log order.
pub(crate) async fn target_events(store: &dyn EventStore, member: &str) -> Vec<RecordedEvent> {
    let mut found = Vec::new();
    let mut from = None;
    loop {
        let page = store.read_all(from, 1000).await.unwrap();
        let Some(last) = page.last() else {
            return found;
        };
        from = Some(last.position);
        found.extend(page.into_iter().filter(|e| {
            e.stream.starts_with("dormantMember-")
                && serde_json::from_slice::<serde_json::Value>(&e.data)
                    .is_ok_and(|d| d["memberId"] == member)
        }));
    }
}

fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[tokio::test]
async fn a_quiet_member_becomes_a_target_then_dormant_with_a_notice_and_can_come_back() {
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let clock = Clock::default();
    let projector = projector(&database, &gateway, &clock).await;
    let member = commands.join("010-3350-0001", "quiet").await;

    clock.advance(TimeDelta::days(334));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        target_events(&*store, &member).await.is_empty(),
        "not a day early"
    );
    clock.advance(TimeDelta::days(1) + TimeDelta::hours(1));
    let registered = eventually("the quiet member is a target", WAIT, || async {
        let events = target_events(&*store, &member).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(types(&registered), ["DormantMemberRegistered"]);
    let target = registered[0]
        .stream
        .trim_start_matches("dormantMember-")
        .to_owned();
    assert!(target.starts_with(&format!("q-{member}-")), "{target}");
    assert_eq!(
        registered[0]
            .metadata
            .actor
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("system:dormancy-scheduler")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(gateway.received().is_empty(), "no notice within the grace");

    clock.advance(TimeDelta::days(30));
    eventually("the notice is sent", WAIT, || async {
        (gateway.received().len() == 1).then_some(())
    })
    .await;
    let sent = gateway.received();
    assert_eq!(sent[0].to, "01033500001");
    let events = target_events(&*store, &member).await;
    assert_eq!(
        types(&events),
        ["DormantMemberRegistered", "DormantMemberChanged"],
        "one registration, one mark, whatever the passes since"
    );
    let shown: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/dormancy", projector.port()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(shown["policy"]["afterDays"], 335, "{shown}");
    assert_eq!(shown["policy"]["graceDays"], 30, "{shown}");
    assert_eq!(shown["policy"]["appliedHere"], true, "{shown}");
    assert!(
        shown["policy"]["clockOffsetSeconds"].as_i64().unwrap() > 365 * 86_400,
        "{shown}"
    );
    assert_eq!(shown["scheduler"]["registered"], 1, "{shown}");
    assert_eq!(shown["scheduler"]["marked"], 1, "{shown}");
    assert_eq!(shown["scheduler"]["pending"], 0, "{shown}");
    assert_eq!(
        shown["scheduler"]["scannedThrough"]["memberId"], member,
        "{shown}"
    );

    // The release works as before (on today's clock, so the member it
    // re-joins is not quiet for the policy the moment it joins).
    clock.advance(-clock.offset());
    let (status, body) = commands
        .send(
            Method::POST,
            &format!("/dormantMembers/{target}/release"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["memberStatus"], "CLEARED", "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(gateway.received().len(), 1, "no second notice");
}

#[tokio::test]
async fn activity_on_day_340_takes_a_pre_dormant_member_off_the_list() {
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    // Joined 340 days ago; the policy's clock stands at day 335.
    seed_member(
        &*store,
        &keys,
        "s1",
        "01034000001",
        Utc::now() - TimeDelta::days(340),
    )
    .await;
    let clock = Clock::offset_by(-5 * 86_400);
    let projector = projector(&database, &gateway, &clock).await;
    let target = eventually("a target on day 335", WAIT, || async {
        let events = target_events(&*store, "s1").await;
        (!events.is_empty()).then(|| events[0].stream.clone())
    })
    .await;

    // Day 340: the member earns.
    clock.advance(TimeDelta::days(5));
    let (status, body) = commands
        .send(
            Method::POST,
            "/members/s1/points/earn",
            Some(json!({ "amount": 10 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let lifted = eventually("the target is lifted", WAIT, || async {
        let events = store.read_stream(&target, 0, 10).await.ok()?;
        (events.len() == 2).then_some(events)
    })
    .await;
    assert_eq!(
        types(&lifted),
        ["DormantMemberRegistered", "DormantMemberLifted"]
    );
    let data: serde_json::Value = serde_json::from_slice(&lifted[1].data).unwrap();
    assert!(
        data["reason"].as_str().unwrap().starts_with("active again"),
        "{data}"
    );
    assert_eq!(
        lifted[1]
            .metadata
            .actor
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("system:dormancy")
    );
    let view = mileage_e2e::ReadSide::of(&database);
    eventually("the managerpage says CLEARED", WAIT, || async {
        let id = target.trim_start_matches("dormantMember-");
        (view.target_status(id).await.as_deref() == Some("CLEARED")).then_some(())
    })
    .await;

    // A month on, nothing more: no mark, no notice, no second target.
    clock.advance(TimeDelta::days(31));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        types(&target_events(&*store, "s1").await),
        ["DormantMemberRegistered", "DormantMemberLifted"]
    );
    assert!(gateway.received().is_empty());
    // A release of a lifted target is refused with its reason.
    let id = target.trim_start_matches("dormantMember-");
    let (status, body) = commands
        .send(Method::POST, &format!("/dormantMembers/{id}/release"), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("dormant_member.lifted")),
        "{body}"
    );
    projector.stop().await;
}

#[tokio::test]
async fn an_excluded_member_is_taken_off_the_list_and_left_alone() {
    let database = fresh_database().await;
    let gateway = Gateway::start(&[]).await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    seed_member(
        &*store,
        &keys,
        "s2",
        "01034000002",
        Utc::now() - TimeDelta::days(336),
    )
    .await;
    seed_member(
        &*store,
        &keys,
        "s3",
        "01034000003",
        Utc::now() - TimeDelta::days(10),
    )
    .await;
    let clock = Clock::default();
    let _projector = projector(&database, &gateway, &clock).await;
    let target = eventually("s2 is a target", WAIT, || async {
        let events = target_events(&*store, "s2").await;
        (!events.is_empty()).then(|| events[0].stream.clone())
    })
    .await;
    // s3 is excluded before the policy ever reaches them.
    for member in ["s2", "s3"] {
        let (status, body) = commands
            .send(
                Method::PUT,
                &format!("/members/{member}/dormancy-exclusion"),
                Some(json!({ "reason": "VIP contract" })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let lifted = eventually("s2's target is lifted", WAIT, || async {
        let events = store.read_stream(&target, 0, 10).await.ok()?;
        (events.len() == 2).then_some(events)
    })
    .await;
    let data: serde_json::Value = serde_json::from_slice(&lifted[1].data).unwrap();
    assert_eq!(data["reason"], "excluded from the policy: VIP contract");
    clock.advance(TimeDelta::days(400));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(target_events(&*store, "s2").await.len(), 2, "never again");
    assert!(target_events(&*store, "s3").await.is_empty(), "never");
    assert!(gateway.received().is_empty());

    // Put back under the policy after the scan passed them, s3 is looked
    // at again: quiet for 410 days, a target now.
    let (status, body) = commands
        .send(Method::DELETE, "/members/s3/dormancy-exclusion", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let events = eventually(
        "s3 is a target once back under the policy",
        WAIT,
        || async {
            let events = target_events(&*store, "s3").await;
            (!events.is_empty()).then_some(events)
        },
    )
    .await;
    assert_eq!(types(&events), ["DormantMemberRegistered"]);
}

/// `replay forecast` says, from the log, when a member becomes a target and
/// dormant, under the policy the projector is configured with; and what
/// stands in the way (an exclusion, a withdrawal).
#[tokio::test]
async fn replay_forecasts_when_a_member_becomes_a_target() {
    let database = fresh_database().await;
    let commands = CommandApi::spawn(&database).await;
    let store = mileage_e2e::event_store(&database).await;
    let keys = mileage_e2e::person_keys(&database).await;
    let joined = Utc::now() - TimeDelta::days(100);
    seed_member(&*store, &keys, "f1", "01034000011", joined).await;
    let forecast = |env: Vec<(&'static str, &'static str)>, member: &'static str| {
        let database = database.clone();
        async move {
            let (code, out, err) =
                mileage_e2e::replay(&database, &env, &["forecast", member, "--json"]).await;
            assert_eq!(code, 0, "{out}{err}");
            serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
        }
    };
    let at = |v: &serde_json::Value| v.as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let report = forecast(vec![], "f1").await;
    assert_eq!(report["state"], "scheduled", "{report}");
    assert_eq!(at(&report["targetAt"]), joined + TimeDelta::days(335));
    assert_eq!(at(&report["dormantAt"]), joined + TimeDelta::days(365));
    assert_eq!(
        report["targetId"],
        format!("q-f1-{}", joined.timestamp_micros())
    );
    let shorter = forecast(vec![("DORMANCY_AFTER_DAYS", "30")], "f1").await;
    assert_eq!(at(&shorter["targetAt"]), joined + TimeDelta::days(30));

    let (status, body) = commands
        .send(
            Method::PUT,
            "/members/f1/dormancy-exclusion",
            Some(json!({ "reason": "court order" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let excluded = forecast(vec![], "f1").await;
    assert_eq!(
        (
            excluded["state"].as_str(),
            excluded["excludedBecause"].as_str()
        ),
        (Some("excluded"), Some("court order"))
    );
    assert_eq!(forecast(vec![], "nobody").await["state"], "not joined");
    let (code, _, err) = mileage_e2e::replay(&database, &[], &["forecast", "no/such"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("member id"), "{err}");
    let (code, _, err) = mileage_e2e::replay(
        &database,
        &[("DORMANCY_AFTER_DAYS", "0")],
        &["forecast", "f1"],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("DORMANCY_AFTER_DAYS"), "{err}");
}
