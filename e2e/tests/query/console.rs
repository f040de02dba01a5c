//! The reads the operator console is made of: timelines, search, counts
//! over time.

use mileage_e2e::token;
use mileage_service::auth::Role;
use serde_json::{Value, json};

use crate::helpers::Stack;

/// `field` of every item of a timeline answer.
fn each(body: &Value, field: &str) -> Vec<Value> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item[field].clone())
        .collect()
}

#[tokio::test]
async fn a_targets_timeline_shows_who_did_what_with_the_person_masked() {
    let stack = Stack::start().await;
    let (id, _) = stack
        .commands
        .register_target("01023451111", "Timeline")
        .await;
    let kim = token("kim", Role::Manager);
    let marked = reqwest::Client::new()
        .post(format!(
            "{}/dormantMembers/{id}/dormant",
            stack.commands.address
        ))
        .bearer_auth(&kim)
        .send()
        .await
        .unwrap();
    assert_eq!(marked.status(), 200);
    let path = format!("/managerpages/{id}/timeline");
    let body = stack
        .query
        .until(&path, |body| {
            body["items"].as_array().is_some_and(|i| i.len() == 3)
        })
        .await;
    assert_eq!(
        each(&body, "type"),
        [
            "DormantMemberRegistered",
            "DormantMemberChanged",
            "MessageSent"
        ]
    );
    assert_eq!(
        each(&body, "actor"),
        ["manager:ops", "manager:kim", "system:notices"],
        "registered by one operator, marked by another, the notice by the process manager"
    );
    let correlations = each(&body, "correlationId");
    assert_eq!(
        correlations[1], correlations[2],
        "the notice is the marking's"
    );
    assert_ne!(correlations[0], correlations[1]);
    assert_eq!(body["items"][0]["data"]["phoneNo"], "010****1111");
    assert_eq!(body["items"][0]["data"]["nickname"], "T*******");
    assert_eq!(body["items"][2]["stream"], format!("managerMessage-{id}"));
    assert!(body["nextCursor"].is_null());
    let text = body.to_string();
    assert!(
        !text.contains("01023451111") && !text.contains("Timeline"),
        "{text}"
    );

    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = stack.query.get(&format!("{path}?limit=1{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        paged.extend(each(&page.body, "eventId"));
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(paged, each(&body, "eventId"), "pages of one hold the same");

    let member = token("1", Role::Member);
    let refused = stack.query.get_as(Some(&member), &path, &[]).await;
    refused.assert_problem(403, "auth.forbidden");
    stack
        .query
        .get("/managerpages/999999/timeline")
        .await
        .assert_problem(404, "dormant_member.not_found");
    stack
        .query
        .get("/managerpages/x!/timeline")
        .await
        .assert_problem(400, "validation.id");
    let limit = stack.query.get(&format!("{path}?limit=0")).await;
    limit.assert_problem(400, "validation.limit");
}

#[tokio::test]
async fn a_members_timeline_is_their_points_history_until_they_are_erased() {
    let stack = Stack::start().await;
    let id = stack.commands.join("01023452222", "Points").await;
    let shop = token("shop", Role::Partner);
    let own = token(&id, Role::Member);
    let http = reqwest::Client::new();
    let command = |path: &str, as_token: &str, amount: u32| {
        http.post(format!("{}/members/{id}/{path}", stack.commands.address))
            .bearer_auth(as_token)
            .json(&json!({ "amount": amount }))
            .send()
    };
    assert_eq!(
        command("points/earn", &shop, 5).await.unwrap().status(),
        200
    );
    assert_eq!(command("points/use", &own, 2).await.unwrap().status(), 200);
    let path = format!("/members/{id}/timeline");
    let body = stack
        .query
        .until(&path, |body| {
            body["items"].as_array().is_some_and(|i| i.len() == 3)
        })
        .await;
    assert_eq!(
        each(&body, "type"),
        ["MemberJoined", "PointsEarned", "PointsUsed"]
    );
    assert_eq!(
        each(&body, "actor"),
        [
            json!("public"),
            json!("partner:shop"),
            json!(format!("member:{id}"))
        ]
    );
    let balances: Vec<Value> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"]["balance"].clone())
        .collect();
    assert_eq!(balances, [Value::Null, json!(5), json!(3)]);
    let at = |v: &Value| {
        v.as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .map(|t| t.timestamp_micros())
    };
    // The members read model is its own projection: it may take the use a
    // moment after the timeline did.
    let used_at = at(&body["items"][2]["data"]["at"]);
    let member = stack
        .query
        .until(&format!("/members/{id}"), |m| {
            at(&m["lastActiveAt"]) >= used_at
        })
        .await;
    assert_eq!(
        at(&member["lastActiveAt"]),
        used_at,
        "the last use is their last activity, at its own time"
    );
    let mine = stack.query.get_as(Some(&own), &path, &[]).await;
    assert_eq!(mine.status, 200, "the member reads their own");
    let other = token("424242", Role::Member);
    let refused = stack.query.get_as(Some(&other), &path, &[]).await;
    refused.assert_problem(403, "auth.forbidden");

    let withdrawn = http
        .delete(format!("{}/members/{id}", stack.commands.address))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    let erased = stack
        .query
        .until(&path, |body| {
            body["items"][0]["data"]["phoneNo"] == "erased"
                && body["items"].as_array().is_some_and(|i| i.len() >= 4)
        })
        .await;
    assert_eq!(erased["items"][0]["data"]["nickname"], "erased");
    assert_eq!(
        erased["items"][1]["data"]["balance"], 5,
        "the history stays"
    );
}

/// `POST /search` with `body` as `as_token`.
async fn search(stack: &Stack, as_token: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/search", stack.query.address))
        .bearer_auth(as_token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_number_finds_its_member_and_their_targets_until_they_are_erased() {
    let stack = Stack::start().await;
    let (target, _) = stack
        .commands
        .register_target("010-2345-3333", "Search")
        .await;
    let ops = &stack.query.manager_token;
    let by_number = json!({ "phoneNo": "01023453333" });
    let found = mileage_e2e::eventually("the number's holder", crate::helpers::WAIT, || async {
        let (status, body) = search(&stack, ops, &by_number).await;
        (status == 200 && body["targets"].as_array().is_some_and(|t| t.len() == 1)).then_some(body)
    })
    .await;
    let member = found["members"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(found["members"][0]["phoneNo"], "010****3333");
    assert_eq!(found["targets"][0]["id"], target.as_str());
    assert_eq!(found["targets"][0]["memberId"], member.as_str());
    assert!(!found.to_string().contains("01023453333"));

    let (_, by_member) = search(&stack, ops, &json!({ "memberId": member })).await;
    assert_eq!(by_member["targets"][0]["id"], target.as_str());
    let (_, by_target) = search(&stack, ops, &json!({ "targetId": target })).await;
    assert_eq!(by_target["members"][0]["id"], member.as_str());

    let (status, nobody) = search(&stack, ops, &json!({ "phoneNo": "01023459999" })).await;
    assert_eq!(status, 200);
    assert_eq!(nobody, json!({ "members": [], "targets": [] }));
    let (status, unknown) = search(&stack, ops, &json!({ "memberId": "999999" })).await;
    assert_eq!((status, unknown["members"].clone()), (200, json!([])));

    let (status, bad) = search(&stack, ops, &json!({ "phoneNo": "12ab" })).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["code"], "validation.phone_number", "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("digits"),
        "the rule: {bad}"
    );
    for both in [
        json!({}),
        json!({ "phoneNo": "01023453333", "memberId": member }),
    ] {
        let (status, body) = search(&stack, ops, &both).await;
        assert_eq!(status, 400, "exactly one of the three: {body}");
    }
    let (status, body) = search(&stack, ops, &json!({ "name": "Search" })).await;
    assert_eq!(status, 400, "{body}");
    let member_token = token(&member, Role::Member);
    let (status, _) = search(&stack, &member_token, &by_number).await;
    assert_eq!(status, 403, "a member sees nothing of the console's reads");

    let withdrawn = reqwest::Client::new()
        .delete(format!("{}/members/{member}", stack.commands.address))
        .bearer_auth(&member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    mileage_e2e::eventually(
        "the number leads to no one",
        crate::helpers::WAIT,
        || async {
            let (_, body) = search(&stack, ops, &by_number).await;
            (body["members"] == json!([])).then_some(())
        },
    )
    .await;
}

/// `group[key]` summed over the buckets.
fn sum(items: &[Value], group: &str, key: &str) -> i64 {
    items.iter().map(|i| i[group][key].as_i64().unwrap()).sum()
}

#[tokio::test]
async fn counts_over_time_end_at_the_counts_now_with_each_hours_moves_and_notices() {
    let stack = Stack::start().await;
    let (kept, _) = stack.commands.register_target("01023454444", "Kept").await;
    let (doomed, _) = stack
        .commands
        .register_target(crate::helpers::REJECTED_PHONE, "Doomed")
        .await;
    stack.commands.register_target("01023455555", "Quiet").await;
    stack.commands.mark_dormant(&kept).await;
    stack.commands.mark_dormant(&doomed).await;
    let now = stack
        .query
        .until("/managerpages/counts", |body| {
            body["byStatus"]["DESTRUCTION"] == 1 && body["byStatus"]["DORMANT"] == 1
        })
        .await;
    let history = stack
        .query
        .until("/managerpages/counts/history?bucket=hour", |body| {
            body["items"]
                .as_array()
                .is_some_and(|items| sum(items, "notices", "FAILED") == 1)
        })
        .await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 48, "two days of hours by default");
    assert_eq!(history["bucket"], "hour");
    let last = items.last().unwrap();
    assert_eq!(
        last["targets"], now["byStatus"],
        "the last hour ends at the counts now"
    );
    // Summed: the test may well run across the turn of an hour.
    assert_eq!(sum(items, "notices", "SENT"), 1);
    assert_eq!(sum(items, "entered", "PRE_DORMANT"), 3);
    assert_eq!(
        sum(items, "entered", "DORMANT"),
        2,
        "both were dormant before one was destroyed"
    );
    assert_eq!(sum(items, "entered", "DESTRUCTION"), 1);
    assert_eq!(
        items[0]["targets"]["PRE_DORMANT"], 0,
        "nothing two days ago"
    );

    let days = stack
        .query
        .get("/managerpages/counts/history?position=0-0")
        .await;
    assert_eq!(days.status, 200, "{}", days.body);
    assert_eq!(days.body["bucket"], "day");
    assert_eq!(days.body["items"].as_array().unwrap().len(), 30);
    let later = stack
        .query
        .get("/managerpages/counts/history?bucket=hour&from=2099-01-01T00:00:00Z&to=2099-01-01T02:00:00Z")
        .await;
    assert_eq!(later.status, 200, "{}", later.body);
    let later_items = later.body["items"].as_array().unwrap();
    assert_eq!(later_items.len(), 2);
    assert_eq!(
        later_items[0]["targets"], now["byStatus"],
        "a range after the last move starts from the counts before it"
    );
    assert_eq!(later_items[0]["entered"]["PRE_DORMANT"], 0);

    let backwards = stack
        .query
        .get("/managerpages/counts/history?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await;
    assert_eq!(backwards.body["items"], json!([]), "{}", backwards.body);
    let long = stack
        .query
        .get("/managerpages/counts/history?bucket=hour&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await;
    assert_eq!(
        long.body["items"].as_array().unwrap().len(),
        1000,
        "cut to its end"
    );
    assert_eq!(long.body["from"], "2025-11-20T08:00:00Z");
    for bad in ["bucket=week", "from=yesterday", "limit=3"] {
        let reply = stack
            .query
            .get(&format!("/managerpages/counts/history?{bad}"))
            .await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    let member = token("1", Role::Member);
    let refused = stack
        .query
        .get_as(Some(&member), "/managerpages/counts/history", &[])
        .await;
    refused.assert_problem(403, "auth.forbidden");
}
