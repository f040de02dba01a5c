//! The source document's requests, as written there, and the lifecycle rules.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_source_documents_scenario_register_dormant_release() {
    let app = spawn_app().await;
    // http POST :8082/dormantMembers phoneNo=01085581234 nickname=DOR1 memberStatus=Pre-Dormant memberId=2
    let registered = app
        .post(
            "/dormantMembers",
            json!({ "phoneNo": "01085581234", "nickname": "DOR1", "memberStatus": "Pre-Dormant", "memberId": "2" }),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert_eq!(registered.body["id"], "1");
    assert_eq!(registered.body["memberId"], "2");
    assert_eq!(registered.body["memberStatus"], "PRE_DORMANT");

    // http PATCH :8082/dormantMembers/1 memberStatus=DORMANT
    let dormant = app
        .patch("/dormantMembers/1", json!({ "memberStatus": "DORMANT" }))
        .await;
    assert_eq!(
        (dormant.status, dormant.body["memberStatus"].clone()),
        (200, json!("DORMANT"))
    );

    // Marking it dormant again changes nothing: 200 with the state, and no
    // position to wait for.
    let again = app
        .patch("/dormantMembers/1", json!({ "memberStatus": "DORMANT" }))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["memberStatus"], "DORMANT");
    assert_eq!(again.body["position"], json!(null));
    assert!(again.headers.get("x-position").is_none(), "no X-Position");

    // http PATCH :8082/dormantMembers/1 memberStatus=CLEAR
    let cleared = app
        .patch("/dormantMembers/1", json!({ "memberStatus": "CLEAR" }))
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(cleared.body["memberStatus"], "CLEARED");
    let rejoined = cleared.body["rejoinedMemberId"]
        .as_str()
        .expect("a new member id");

    // The re-joined member exists and holds the number.
    let earn = app
        .post(
            &format!("/members/{rejoined}/points/earn"),
            json!({ "amount": 5 }),
        )
        .await;
    assert_eq!(earn.status, 200, "{}", earn.body);
    app.post(
        "/members",
        json!({ "phoneNo": "01085581234", "nickname": "X" }),
    )
    .await
    .assert_problem(409, "member.phone_taken");

    // Releasing again changes nothing, and answers as the release did:
    // the same member, and where the clear is (a retry running beside the
    // first attempt cannot tell itself from a second release; both answer
    // the first's outcome).
    let again = app
        .patch("/dormantMembers/1", json!({ "memberStatus": "CLEAR" }))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["rejoinedMemberId"], rejoined);
    assert_eq!(again.body["position"], cleared.body["position"]);
    assert!(!again.body["position"].is_null(), "{}", again.body);
}

#[tokio::test]
async fn member_ids_may_be_numbers_and_explicit_routes_work() {
    let app = spawn_app().await;
    let registered = app
        .post(
            "/dormantMembers",
            json!({ "phoneNo": "1234567", "nickname": "DOR-Saga", "memberId": 1 }),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let dormant = app.post("/dormantMembers/1/dormant", json!({})).await;
    assert_eq!(dormant.body["memberStatus"], "DORMANT", "{}", dormant.body);
    let released = app.post("/dormantMembers/1/release", json!({})).await;
    assert_eq!(
        released.body["memberStatus"], "CLEARED",
        "{}",
        released.body
    );
}

#[tokio::test]
async fn a_pre_dormant_target_cannot_be_released_and_nobody_joins() {
    let app = spawn_app().await;
    app.post(
        "/dormantMembers",
        json!({ "phoneNo": "01052995000", "nickname": "DOR1", "memberId": "2" }),
    )
    .await;
    app.patch("/dormantMembers/1", json!({ "memberStatus": "CLEAR" }))
        .await
        .assert_problem(409, "dormant_member.invalid_transition");
    // The number is still free: the failed release joined nobody.
    app.join("01052995000", "free").await;
}

#[tokio::test]
async fn unknown_statuses_and_targets_are_refused() {
    let app = spawn_app().await;
    app.post(
        "/dormantMembers",
        json!({ "phoneNo": "01052995000", "nickname": "D", "memberId": "2" }),
    )
    .await;
    let reply = app
        .patch("/dormantMembers/1", json!({ "memberStatus": "ASLEEP" }))
        .await;
    reply.assert_problem(400, "validation.member_status");
    assert_eq!(reply.body["field"], "memberStatus");
    app.patch("/dormantMembers/99", json!({ "memberStatus": "DORMANT" }))
        .await
        .assert_problem(404, "dormant_member.not_found");
    app.post("/dormantMembers", json!({ "phoneNo": "01052995000", "nickname": "D", "memberId": "2", "memberStatus": "DORMANT" }))
        .await
        .assert_problem(400, "validation.member_status");
}

#[tokio::test]
async fn the_source_documents_double_and_trailing_slashes_reach_their_routes() {
    let app = spawn_app().await;
    // http POST :8082//dormantMembers ... and PATCH :8082//dormantMembers/1
    let registered = app
        .post(
            "//dormantMembers/",
            json!({ "phoneNo": "01085581239", "nickname": "DOR9", "memberStatus": "Pre-Dormant", "memberId": "2" }),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let dormant = app
        .patch(
            &format!("//dormantMembers/{id}"),
            json!({ "memberStatus": "DORMANT" }),
        )
        .await;
    assert_eq!(dormant.status, 200, "{}", dormant.body);
    assert_eq!(dormant.body["memberStatus"], "DORMANT");
    let joined = app
        .post(
            "/members/",
            json!({ "phoneNo": "01085581240", "nickname": "SL" }),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
}

#[tokio::test]
async fn a_target_for_a_member_who_withdrew_is_refused() {
    let app = spawn_app().await;
    let joined = app
        .post(
            "/members",
            json!({ "phoneNo": "010-5555-0001", "nickname": "gone" }),
        )
        .await;
    let member = joined.body["id"].as_str().unwrap().to_owned();
    let withdrawn = app.delete(&format!("/members/{member}")).await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    app.post(
        "/dormantMembers",
        json!({ "memberId": member, "phoneNo": "010-5555-0001", "nickname": "gone" }),
    )
    .await
    .assert_problem(409, "dormant_member.member_withdrawn");
}

/// A dormant member who still holds their number gets it back in their
/// release: the old membership hands it to the new one. Nobody else's
/// number moves: a target for another member, or one not dormant, frees
/// nothing.
#[tokio::test]
async fn a_release_hands_the_dormant_members_number_to_the_new_member() {
    let app = spawn_app().await;
    let old = app.join("01052990001", "QUIET").await;
    let other = app.join("01052990002", "OTHER").await;
    let register = |member: &str, phone: &str| json!({ "phoneNo": phone, "nickname": "QUIET", "memberId": member });
    // A target naming a number someone else holds releases into nothing.
    let wrong = app
        .post("/dormantMembers", register(&old, "01052990002"))
        .await;
    let wrong_id = wrong.body["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/dormantMembers/{wrong_id}"),
        json!({ "memberStatus": "DORMANT" }),
    )
    .await;
    app.post(&format!("/dormantMembers/{wrong_id}/release"), json!({}))
        .await
        .assert_problem(409, "member.phone_taken");

    let target = app
        .post("/dormantMembers", register(&old, "01052990001"))
        .await;
    let id = target.body["id"].as_str().unwrap().to_owned();
    // Not dormant yet: the number stays where it is.
    app.post(&format!("/dormantMembers/{id}/release"), json!({}))
        .await
        .assert_problem(409, "dormant_member.invalid_transition");
    app.patch(
        &format!("/dormantMembers/{id}"),
        json!({ "memberStatus": "DORMANT" }),
    )
    .await;
    let released = app
        .post(&format!("/dormantMembers/{id}/release"), json!({}))
        .await;
    assert_eq!(released.status, 200, "{}", released.body);
    let rejoined = released.body["rejoinedMemberId"].as_str().unwrap();
    assert_ne!(rejoined, old);
    assert_ne!(rejoined, other);
    // Handed over in the re-join's own append: the number was never free
    // (nobody could take it between, and a release stopped half-way moved
    // nothing).
    let log = mileage_store::EventStore::read_all(&app.store().await, None, 10_000)
        .await
        .expect("read the log");
    let joined = log
        .iter()
        .find(|e| e.event_type == "MemberJoined" && e.stream == format!("member-{rejoined}"))
        .expect("the re-join");
    let with_it: Vec<&str> = log
        .iter()
        .filter(|e| e.position.commit == joined.position.commit)
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        with_it,
        ["PhoneReleased", "PhoneClaimed", "MemberJoined"],
        "one append hands the number over and joins"
    );
    // The new member holds it now.
    app.post(
        "/members",
        json!({ "phoneNo": "01052990001", "nickname": "X" }),
    )
    .await
    .assert_problem(409, "member.phone_taken");
    assert_eq!(
        app.delete(&format!("/members/{rejoined}")).await.status,
        200
    );
    app.join("01052990001", "free again").await;
}
