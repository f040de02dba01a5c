//! Every read route: filters, pages, validators, roles, bad input, and
//! read-your-writes.

use std::time::{Duration, Instant};

use mileage_e2e::{eventually, token};
use mileage_service::auth::Role;

use crate::helpers::{Stack, WAIT};

#[tokio::test]
async fn the_list_filters_pages_and_counts() {
    let stack = Stack::start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (id, _) = stack
            .commands
            .register_target(&format!("0102000000{n}"), &format!("t{n}"))
            .await;
        ids.push(id);
    }
    let position = stack.commands.mark_dormant(&ids[1]).await;

    let all = stack
        .query
        .get(&format!("/managerpages?limit=2&position={position}"))
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.header("x-stale"), None, "the wait reached the position");
    let first: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[4].as_str(), ids[3].as_str()], "newest first");
    let cursor = all.body["nextCursor"].as_str().unwrap();
    let second = stack
        .query
        .get(&format!("/managerpages?limit=2&cursor={cursor}"))
        .await;
    let second_ids: Vec<&str> = second.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(second_ids, [ids[2].as_str(), ids[1].as_str()]);
    let last = stack
        .query
        .get(&format!(
            "/managerpages?limit=2&cursor={}",
            second.body["nextCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(last.body["items"].as_array().unwrap().len(), 1);
    assert!(last.body["nextCursor"].is_null());

    let ascending = stack.query.get("/managerpages?order=asc&limit=1").await;
    assert_eq!(ascending.body["items"][0]["id"], ids[0].as_str());

    stack
        .query
        .get("/managerpages?status=Dormant")
        .await
        .assert_problem(400, "validation.status");
    let dormant = stack.query.get("/managerpages?status=DORMANT").await;
    let items = dormant.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[1].as_str());
    assert_eq!(items[0]["memberStatus"], "DORMANT");
    assert_eq!(items[0]["phoneNo"], "010****0001");
    assert_eq!(items[0]["nickname"], "t1");

    let counts = stack.query.get("/managerpages/counts").await;
    assert_eq!(counts.body["byStatus"]["PRE_DORMANT"], 4, "{}", counts.body);
    assert_eq!(counts.body["byStatus"]["DORMANT"], 1);
    assert_eq!(counts.body["byStatus"]["CLEARED"], 0);
    assert_eq!(counts.body["total"], 5);
}

#[tokio::test]
async fn an_unchanged_list_answers_304_to_its_etag() {
    let stack = Stack::start().await;
    let (_, position) = stack.commands.register_target("01021110000", "etag").await;
    // Once the read side has settled (the tag also follows the erasure
    // process manager, which may still be reading the registration).
    let projector = stack.projector.as_ref().expect("the stack's projector");
    mileage_e2e::caught_up(projector, &stack.database).await;
    let path = format!("/managerpages?position={position}");
    let tag = stack
        .query
        .get(&path)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    assert!(tag.starts_with("W/\""), "{tag}");
    let token = stack.query.manager_token.clone();
    let again = stack
        .query
        .get_as(
            Some(&token),
            &format!("/managerpages?position={position}"),
            &[("if-none-match", &tag)],
        )
        .await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(tag.as_str()));

    let (_, newer) = stack.commands.register_target("01021110001", "etag2").await;
    let changed = stack
        .query
        .get_as(
            Some(&token),
            &format!("/managerpages?position={newer}"),
            &[("if-none-match", &tag)],
        )
        .await;
    assert_eq!(changed.status, 200, "a new write changes the validator");
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_answered_as_stale() {
    let stack = Stack::start_with(Duration::from_millis(300), false).await;
    let (id, position) = stack.commands.register_target("01022220000", "stale").await;
    let started = Instant::now();
    let reply = stack
        .query
        .get(&format!("/managerpages/{id}?position={position}"))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    assert!(started.elapsed() < Duration::from_secs(5), "but bounded");
    assert_eq!(reply.header("x-stale"), Some("true"));
    reply.assert_problem(404, "dormant_member.not_found");

    let list = stack
        .query
        .get_as(
            Some(&stack.query.manager_token),
            "/managerpages",
            &[("x-position", &position)],
        )
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.header("x-stale"), Some("true"), "the header works too");

    let projector = mileage_e2e::start_projector(&stack.database, None).await;
    // The projector may need longer than the 300 ms wait to start and catch
    // up on a loaded machine: ask until it has.
    let path = format!("/managerpages/{id}?position={position}");
    let fresh = mileage_e2e::eventually(
        "the projector catches up",
        Duration::from_secs(60),
        || async {
            let reply = stack.query.get(&path).await;
            (reply.status == 200).then_some(reply)
        },
    )
    .await;
    assert_eq!(fresh.header("x-stale"), None);
    assert!(fresh.header("x-projection-position").is_some());
    projector.stop().await;
}

#[tokio::test]
async fn roles_are_the_command_apis() {
    let stack = Stack::start().await;
    let member = stack.commands.join("01023330000", "own").await;
    let other = stack.commands.join("01023330001", "other").await;
    let (target, position) = stack
        .commands
        .register_target("01023330002", "target")
        .await;
    let query = &stack.query;

    query
        .get_as(None, "/managerpages", &[])
        .await
        .assert_problem(401, "auth.missing_token");
    query
        .get_as(Some("not-a-token"), "/managerpages", &[])
        .await
        .assert_problem(401, "auth.invalid_token");
    let as_member = token(&member, Role::Member);
    query
        .get_as(Some(&as_member), "/managerpages", &[])
        .await
        .assert_problem(403, "auth.forbidden");
    query
        .get_as(Some(&as_member), &format!("/managerMessages/{target}"), &[])
        .await
        .assert_problem(403, "auth.forbidden");

    let own = query
        .until(&format!("/members/{member}?position={position}"), |_| true)
        .await;
    assert_eq!(own["balance"], 0);
    let mine = query
        .get_as(Some(&as_member), &format!("/members/{member}"), &[])
        .await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["memberStatus"], "READY");
    assert_eq!(mine.body["phoneNo"], "010****0000");
    query
        .get_as(Some(&as_member), &format!("/members/{other}"), &[])
        .await
        .assert_problem(403, "auth.forbidden");

    let registered_for = query
        .until(&format!("/managerpages/{target}"), |_| true)
        .await["memberId"]
        .as_str()
        .unwrap()
        .to_owned();
    let target_member = token(&registered_for, Role::Member);
    let status = query
        .get_as(
            Some(&target_member),
            &format!("/dormantMembers/{target}"),
            &[],
        )
        .await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.body["memberStatus"], "PRE_DORMANT");
    query
        .get_as(Some(&as_member), &format!("/dormantMembers/{target}"), &[])
        .await
        .assert_problem(403, "auth.forbidden");
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_parameter() {
    let stack = Stack::start().await;
    let query = &stack.query;
    for (path, code, field) in [
        ("/managerpages?status=SLEEPY", "validation.status", "status"),
        ("/managerpages?limit=0", "validation.limit", "limit"),
        ("/managerpages?limit=201", "validation.limit", "limit"),
        ("/managerpages?order=sideways", "validation.order", "order"),
        ("/managerpages?cursor=%%%", "validation.cursor", "cursor"),
        (
            "/managerpages?cursor=bm90LWEtY3Vyc29y",
            "validation.cursor",
            "cursor",
        ),
        (
            "/managerpages?position=yesterday",
            "validation.position",
            "position",
        ),
        ("/members/not%20an%20id", "validation.id", "memberId"),
    ] {
        let reply = query.get(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_eq!(reply.body["code"], code, "{path}: {}", reply.body);
        assert_eq!(reply.body["field"], field, "{path}: {}", reply.body);
    }
    query
        .get("/managerpages?colour=red")
        .await
        .assert_problem(400, "request.malformed_query");
    query
        .get("/managerpages/404")
        .await
        .assert_problem(404, "dormant_member.not_found");
    query
        .get("/members/404")
        .await
        .assert_problem(404, "member.not_found");
    query
        .get("/managerMessages/404")
        .await
        .assert_problem(404, "manager_message.not_found");
}

#[tokio::test]
async fn metrics_show_each_projections_lag() {
    let stack = Stack::start().await;
    let (id, position) = stack.commands.register_target("01024440000", "lag").await;
    stack
        .query
        .until(&format!("/managerpages/{id}?position={position}"), |_| true)
        .await;
    let text = mileage_e2e::metrics(&stack.query.client, &stack.query.address).await;
    assert!(
        text.contains(r#"projection_lag_events{projection="managerpage"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"projection_lag_seconds{projection="members"}"#),
        "{text}"
    );
    assert!(text.contains("http_requests_total"), "{text}");
    let _ = WAIT;
}

#[tokio::test]
async fn lag_gauges_are_for_live_consumers_only_and_go_with_their_rows() {
    let stack = Stack::start().await;
    let projector = format!(
        "http://127.0.0.1:{}",
        stack.projector.as_ref().expect("a projector").port()
    );
    let http = &stack.query.client;
    let database = mileage_e2e::read_client(&stack.database).await;
    // A scratch copy as `replay verify` leaves it while it runs, and a
    // consumer far behind that is then retired (its row deleted).
    database
        .batch_execute(
            "INSERT INTO projector.consumers (name, state) VALUES
                 ('managerpage__verify', 'running'), ('retired', 'running')",
        )
        .await
        .unwrap();
    stack.commands.register_target("01024440001", "lag").await;
    let projector_series = r#"projector_lag_events{consumer="retired"}"#;
    let query_series = r#"projection_lag_events{projection="retired"}"#;
    let (from_projector, from_query) = eventually("the retired consumer's lag", WAIT, || async {
        let p = mileage_e2e::metrics(http, &projector).await;
        let q = mileage_e2e::metrics(http, &stack.query.address).await;
        (p.contains(projector_series) && q.contains(query_series)).then_some((p, q))
    })
    .await;
    for text in [&from_projector, &from_query] {
        assert!(
            !text.contains("__verify"),
            "no gauge of a scratch copy: {text}"
        );
        assert!(
            text.contains(r#"consumer="managerpage"}"#)
                || text.contains(r#"projection="managerpage"}"#),
            "the live projection is measured: {text}"
        );
    }
    database
        .batch_execute(
            "DELETE FROM projector.consumers WHERE name IN ('retired', 'managerpage__verify')",
        )
        .await
        .unwrap();
    eventually("the retired consumer's gauges gone", WAIT, || async {
        let p = mileage_e2e::metrics(http, &projector).await;
        let q = mileage_e2e::metrics(http, &stack.query.address).await;
        (!p.contains(r#"consumer="retired""#) && !q.contains(r#"projection="retired""#))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn paths_are_read_as_the_source_document_writes_them() {
    let stack = Stack::start().await;
    let (id, _) = stack
        .commands
        .register_target("01020000077", "slashes")
        .await;
    let position = stack.commands.mark_dormant(&id).await;
    // `GET .../managerpages/` in the source document.
    for path in [
        format!("/managerpages/?position={position}"),
        format!("//managerpages?position={position}"),
    ] {
        let reply = stack.query.get(&path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.body["items"][0]["id"], id.as_str(), "{path}");
    }
}

#[tokio::test]
async fn more_reads_at_once_than_connections_all_answer() {
    let stack = Stack::start().await;
    let (_, position) = stack.commands.register_target("01021119999", "crowd").await;
    stack
        .query
        .until(&format!("/managerpages?position={position}"), |_| true)
        .await;
    // Four times the pool's connections: each read holds one while it
    // fetches the keys that open its rows.
    let reads = (0..32).map(|_| stack.query.get("/managerpages"));
    let answers = tokio::time::timeout(WAIT, futures::future::join_all(reads))
        .await
        .expect("every read answers; none waits on another for a connection");
    assert!(answers.iter().all(|a| a.status == 200));
}

#[tokio::test]
async fn the_read_sides_health_shows_each_consumer_its_lag_and_a_stop_with_its_reason() {
    let stack = Stack::start().await;
    stack
        .commands
        .register_target("01023330000", "health")
        .await;
    let projector = stack.projector.as_ref().expect("the stack's projector");
    mileage_e2e::caught_up(projector, &stack.database).await;
    let health = stack.query.get("/projections").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let items = health.body["items"].as_array().unwrap();
    assert_eq!(items.len(), projector.consumers(), "{}", health.body);
    for item in items {
        assert_eq!(item["state"], "running", "{item}");
        assert_eq!(item["lagEvents"], 0, "{item}");
        assert!(item["stopped"].is_null(), "{item}");
    }
    let member = token("someone", Role::Member);
    let refused = stack.query.get_as(Some(&member), "/projections", &[]).await;
    refused.assert_problem(403, "auth.forbidden");

    // A stop, recorded where and as the projector records one.
    let read = mileage_e2e::read_client(&stack.database).await;
    let at = mileage_read_model::bookkeeping::position_of(&read, "notices")
        .await
        .unwrap()
        .expect("notices has a checkpoint");
    let reason = "the notifier answered what it cannot read";
    let recorded = mileage_read_model::bookkeeping::mark_stopped(
        &read,
        "notices",
        Some(at),
        at,
        "DormantMemberChanged",
        reason,
    )
    .await
    .unwrap();
    assert!(recorded);
    let health = stack.query.get("/projections").await;
    let notices = health.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "notices")
        .expect("notices listed")
        .clone();
    assert_eq!(notices["state"], "stopped", "{notices}");
    assert_eq!(notices["stopped"]["eventType"], "DormantMemberChanged");
    assert_eq!(notices["stopped"]["reason"], reason);
    assert_eq!(notices["stopped"]["position"], at.to_string());
}
