//! The source document's scenarios end to end: command API, projector and
//! query API, with a real HTTP endpoint standing in for the SMS gateway.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{REJECTED_PHONE, Stack, WAIT};

#[tokio::test]
async fn register_notify_destroy_release_and_list_them_all() {
    let stack = Stack::start().await;
    let notified = register_and_notify(&stack).await;
    let doomed = reject_and_destroy(&stack).await;
    let back = release(&stack).await;

    // The managerpage lists them all with the right statuses.
    let all = stack
        .query
        .until("/managerpages?order=asc", |page| {
            page["items"]
                .as_array()
                .is_some_and(|items| items.len() == 3)
        })
        .await;
    let statuses: Vec<(&str, &str)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap(),
                i["memberStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (notified.as_str(), "DORMANT"),
            (doomed.as_str(), "DESTRUCTION"),
            (back.as_str(), "CLEARED"),
        ]
    );
    let counts = stack.query.get("/managerpages/counts").await;
    assert_eq!(
        counts.body["byStatus"],
        json!({ "CLEARED": 1, "DESTRUCTION": 1, "DORMANT": 1, "PRE_DORMANT": 0 })
    );
    assert_eq!(
        stack.gateway.received().len(),
        3,
        "one notice per dormant target"
    );
}

/// Registers a target (the source document's request, as written), marks it
/// dormant and sees the notice sent.
async fn register_and_notify(stack: &Stack) -> String {
    let (commands, query) = (&stack.commands, &stack.query);
    let quiet = commands.join("01012341234", "quiet").await;
    let (status, registered) = commands
        .send(
            Method::POST,
            "/dormantMembers",
            Some(json!({ "memberId": quiet, "phoneNo": "01012341234", "nickname": "quiet", "memberStatus": "Pre-Dormant" })),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let notified = registered["id"].as_str().unwrap().to_owned();

    // Mark dormant and see the message sent.
    let position = commands.mark_dormant(&notified).await;
    let row = query
        .until(
            &format!("/managerpages/{notified}?position={position}"),
            |row| row["messageStatus"] == "SENT",
        )
        .await;
    assert_eq!(row["memberStatus"], "DORMANT");
    // The messages read model has its own checkpoint: it may trail the
    // managerpage by a batch.
    let message = query
        .until(&format!("/managerMessages/{notified}"), |m| {
            m["messageStatus"] == "SENT"
        })
        .await;
    assert_eq!(message["phoneNo"], "010****1234");
    notified
}

/// A number the gateway rejects leads to DESTRUCTION.
async fn reject_and_destroy(stack: &Stack) -> String {
    let (commands, query) = (&stack.commands, &stack.query);
    let (doomed, _) = commands.register_target(REJECTED_PHONE, "doomed").await;
    commands.mark_dormant(&doomed).await;
    let row = query
        .until(&format!("/managerpages/{doomed}"), |row| {
            row["memberStatus"] == "DESTRUCTION"
        })
        .await;
    assert_eq!(row["messageStatus"], "FAILED");
    assert_eq!(row["erased"], true);
    assert!(row["phoneNo"].is_null() && row["nickname"].is_null());
    doomed
}

/// Release re-joins a new member and marks the target CLEARED. The quiet
/// member's account lives in the member service, as in the source document
/// (`memberId=2`), and holds no number here. (Had it been withdrawn here,
/// the erasure would have erased the target's copy of the data with it, and
/// the release would be refused: `a_withdrawn_members_target_cannot_be_released`.)
async fn release(stack: &Stack) -> String {
    let (commands, query) = (&stack.commands, &stack.query);
    let (status, registered) = commands
        .send(
            Method::POST,
            "/dormantMembers",
            Some(json!({ "memberId": "quiet-back", "phoneNo": "01056785678", "nickname": "back" })),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let back = registered["id"].as_str().unwrap().to_owned();
    commands.mark_dormant(&back).await;
    let (status, released) = commands
        .send(
            Method::PATCH,
            &format!("/dormantMembers/{back}"),
            Some(json!({ "memberStatus": "CLEAR" })),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let rejoined = released["rejoinedMemberId"].as_str().unwrap().to_owned();
    let position = released["position"].as_str().unwrap().to_owned();
    let row = query
        .until(&format!("/managerpages/{back}?position={position}"), |_| {
            true
        })
        .await;
    assert_eq!(row["memberStatus"], "CLEARED");
    assert_eq!(row["rejoinedMemberId"], rejoined.as_str(), "{row}");
    let target = query
        .until(
            &format!("/dormantMembers/{back}?position={position}"),
            |_| true,
        )
        .await;
    assert_eq!(target["rejoinedMemberId"], rejoined.as_str(), "{target}");
    let member = query
        .until(&format!("/members/{rejoined}?position={position}"), |_| {
            true
        })
        .await;
    assert_eq!(member["memberStatus"], "READY");
    assert_eq!(member["phoneNo"], "010****5678");
    back
}

#[tokio::test]
async fn a_member_who_withdraws_leaves_nothing_in_their_targets_notice_or_row() {
    let stack = Stack::start().await;
    let (commands, query) = (&stack.commands, &stack.query);
    let member = commands.join("010-4444-1471", "leaving").await;
    let (status, registered) = commands
        .send(
            Method::POST,
            "/dormantMembers",
            Some(json!({ "memberId": member, "phoneNo": "010-4444-1471", "nickname": "leaving" })),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let target = registered["id"].as_str().unwrap().to_owned();
    commands.mark_dormant(&target).await;
    let notice = query
        .until(&format!("/managerMessages/{target}"), |m| {
            m["messageStatus"] == "SENT"
        })
        .await;
    assert_eq!(
        notice["phoneNo"], "010****1471",
        "shown while they are a member"
    );
    let (status, _) = commands
        .send(Method::DELETE, &format!("/members/{member}"), None)
        .await;
    assert_eq!(status, 200);
    for path in [
        format!("/managerMessages/{target}"),
        format!("/managerpages/{target}"),
        format!("/members/{member}"),
    ] {
        let erased = query.until(&path, |body| body["phoneNo"].is_null()).await;
        assert!(
            !erased.to_string().contains("1471") && !erased.to_string().contains("leaving"),
            "{path}: {erased}"
        );
    }
    // And none of the read models holds them in clear, masked or not.
    let found = mileage_e2e::rows_mentioning(&stack.database, READ_MODELS, &PERSON_1471).await;
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test]
async fn a_withdrawn_members_target_cannot_be_released() {
    let stack = Stack::start().await;
    let (commands, query) = (&stack.commands, &stack.query);
    let (target, _) = commands.register_target("01056785670", "gone").await;
    commands.mark_dormant(&target).await;
    let member = query
        .until(&format!("/managerpages/{target}"), |_| true)
        .await["memberId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = commands
        .send(Method::DELETE, &format!("/members/{member}"), None)
        .await;
    assert_eq!(status, 200);
    // The erasure follows the withdrawal: the target's copy goes too.
    let key = [format!("dormantMember-{target}")];
    mileage_e2e::eventually(
        "the target's key deleted",
        std::time::Duration::from_secs(60),
        || async {
            let live = mileage_e2e::live_keys(&stack.database, &key).await;
            live.is_empty().then_some(())
        },
    )
    .await;
    let (status, refused) = commands
        .send(
            Method::PATCH,
            &format!("/dormantMembers/{target}"),
            Some(json!({ "memberStatus": "CLEAR" })),
        )
        .await;
    // Erased either way: by the withdrawal, or, when its notice found the
    // key gone first, destroyed.
    assert_eq!(status, 409, "{refused}");
    assert!(
        [
            "dormant_member.personal_data_erased",
            "dormant_member.invalid_transition"
        ]
        .contains(&refused["code"].as_str().unwrap_or_default()),
        "{refused}"
    );
}

/// The read models' tables.
const READ_MODELS: &[&str] = &[
    "managerpage.targets",
    "members.members",
    "messages.messages",
    "phones.phones",
    "timeline.entries",
];

/// The person of 010-4444-1471, as they could show: their number in full
/// or masked (never its last digits alone, which a log position or an id
/// may hold), their nickname.
const PERSON_1471: [&str; 3] = ["44441471", "****1471", "leaving"];

/// The same for the released person of the next test.
const PERSON_7724: [&str; 3] = ["CLRT", "****7724", "44447724"];

/// Whether no key in the key table opens anything of `keys`.
async fn keys_gone(database: &str, keys: &[String]) -> bool {
    mileage_e2e::live_keys(database, keys).await.is_empty()
}

#[tokio::test]
async fn a_person_released_and_then_withdrawn_is_erased_everywhere() {
    let stack = Stack::start().await;
    let (commands, query) = (&stack.commands, &stack.query);
    // A target for someone who is not a member now (the release joins them).
    let (status, registered) = commands
        .send(
            Method::POST,
            "/dormantMembers",
            Some(json!({ "memberId": "quiet-ct", "phoneNo": "010-4444-7724", "nickname": "CLRT" })),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let target = registered["id"].as_str().unwrap().to_owned();
    commands.mark_dormant(&target).await;
    let (status, released) = commands
        .send(
            Method::PATCH,
            &format!("/dormantMembers/{target}"),
            Some(json!({ "memberStatus": "CLEAR" })),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    let rejoined = released["rejoinedMemberId"].as_str().unwrap().to_owned();
    let (status, body) = commands
        .send(Method::DELETE, &format!("/members/{rejoined}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The person withdrew: their copy on the target they came back from
    // goes with their own.
    let keys = [
        format!("dormantMember-{target}"),
        format!("member-{rejoined}"),
    ];
    mileage_e2e::eventually("every key of theirs deleted", WAIT, || async {
        keys_gone(&stack.database, &keys).await.then_some(())
    })
    .await;
    let row = query
        .until(&format!("/managerpages/{target}"), |row| {
            row["erased"] == true
        })
        .await;
    assert!(
        row["phoneNo"].is_null() && row["nickname"].is_null(),
        "{row}"
    );
    let found = mileage_e2e::rows_mentioning(&stack.database, READ_MODELS, &PERSON_7724).await;
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test]
async fn a_destroyed_person_is_erased_from_their_member_record_too() {
    let stack = Stack::start().await;
    let (commands, query) = (&stack.commands, &stack.query);
    let member = commands.join(REJECTED_PHONE, "unreachable").await;
    let (status, registered) = commands
        .send(
            Method::POST,
            "/dormantMembers",
            Some(
                json!({ "memberId": member, "phoneNo": REJECTED_PHONE, "nickname": "unreachable" }),
            ),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let target = registered["id"].as_str().unwrap().to_owned();
    commands.mark_dormant(&target).await;
    query
        .until(&format!("/managerpages/{target}"), |row| {
            row["memberStatus"] == "DESTRUCTION"
        })
        .await;
    let keys = [
        format!("dormantMember-{target}"),
        format!("member-{member}"),
    ];
    mileage_e2e::eventually("every key of theirs deleted", WAIT, || async {
        keys_gone(&stack.database, &keys).await.then_some(())
    })
    .await;
    let record = query
        .until(&format!("/members/{member}"), |m| m["erased"] == true)
        .await;
    assert!(record["phoneNo"].is_null(), "{record}");
    // Their number's claim went with them: should they come back, they
    // join again with it.
    let again = commands.join(REJECTED_PHONE, "back again").await;
    assert_ne!(again, member);
}

#[tokio::test]
async fn a_value_its_key_no_longer_opens_reads_as_erased_and_the_page_still_answers() {
    let stack = Stack::start().await;
    let (commands, query) = (&stack.commands, &stack.query);
    let (kept, _) = commands.register_target("010-4444-0001", "kept").await;
    let (remade, position) = commands.register_target("010-4444-0002", "remade").await;
    query
        .until(&format!("/managerpages?position={position}"), |_| true)
        .await;
    // As if the key had been deleted and then made again under its name.
    let keys = mileage_e2e::read_client(&stack.database).await;
    keys.execute(
        "UPDATE person_keys SET secret = decode(repeat('ab', 32), 'hex') WHERE key_id = $1",
        &[&format!("dormantMember-{remade}")],
    )
    .await
    .unwrap();
    let page = query.get("/managerpages").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let items = page.body["items"].as_array().unwrap();
    let row = |id: &str| items.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(row(&remade)["erased"], true, "{}", page.body);
    assert!(row(&remade)["nickname"].is_null());
    assert_eq!(row(&kept)["nickname"], "kept", "the others still show");
}

#[tokio::test]
async fn one_operator_action_can_be_followed_through_every_event_it_caused() {
    let stack = Stack::start().await;
    let (id, _) = stack
        .commands
        .register_target(REJECTED_PHONE, "traced")
        .await;
    let correlation = uuid::Uuid::new_v4();
    let response = reqwest::Client::new()
        .patch(format!("{}/dormantMembers/{id}", stack.commands.address))
        .bearer_auth(&stack.commands.token)
        .header("x-correlation-id", correlation.to_string())
        .json(&json!({ "memberStatus": "DORMANT" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stack
        .query
        .until(&format!("/managerpages/{id}"), |row| {
            row["memberStatus"] == "DESTRUCTION"
        })
        .await;
    let store = mileage_e2e::event_store(&stack.database).await;
    // The destroyed person's number is given back by the erasure, which
    // follows the destruction on its own.
    let chain = mileage_e2e::eventually("the whole chain", WAIT, || async {
        let chain: Vec<_> = store
            .read_all(None, 10_000)
            .await
            .ok()?
            .into_iter()
            .filter(|e| e.metadata.correlation_id == correlation)
            .collect();
        (chain.len() >= 4).then_some(chain)
    })
    .await;
    let types: Vec<&str> = chain.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "DormantMemberChanged",
            "MessageFailed",
            "DormantMemberDestroyed",
            "PhoneReleased"
        ]
    );
    assert_eq!(
        chain[1].metadata.causation_id, chain[0].event_id,
        "the notice was caused by the change"
    );
    assert_eq!(
        chain[2].metadata.causation_id, chain[1].event_id,
        "the destruction by the failed notice"
    );
    assert_eq!(
        chain[3].metadata.causation_id, chain[2].event_id,
        "the number given back by the destruction"
    );
}
