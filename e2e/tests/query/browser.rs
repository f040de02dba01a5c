//! The operator console in Debian's headless Chromium, driven over
//! WebDriver (chromedriver), through the gateway (nginx) as operators reach
//! it: register a target, mark it dormant, see the notice land in its
//! timeline, release it (a double click applies once) and see it cleared
//! with the operator as actor; find the person by number; see the health
//! banner when a consumer stops; the chart; and `axe-core` (vendored, for
//! this test only) finds no serious or critical violation on any view.
//! `deploy/local/test.sh` installs Chromium when it is missing; without it
//! this test fails and says so.

use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use mileage_e2e::{eventually, token};
use mileage_service::auth::Role;
use serde_json::json;

use crate::helpers::{QueryApi, Stack, WAIT};

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    profile: std::path::PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium outlives chromedriver when a test fails before closing
        // its session: its processes are the ones with this profile.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.profile.as_os_str())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("chromedriver could not start ({e}); install Debian's chromium and chromium-driver (deploy/local/chromium.sh)")
        });
    let profile = std::env::temp_dir().join(format!("mileage-chromium-{}", uuid::Uuid::new_v4()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
    };
    let http = reqwest::Client::new();
    eventually("chromedriver answers", WAIT, || async {
        http.get(format!("{}/status", driver.url))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(drop)
    })
    .await;
    driver
}

async fn browser(driver: &Driver) -> Client {
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium");
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": binary,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                format!("--user-data-dir={}", driver.profile.display()),
            ],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ClientBuilder::rustls()
        .expect("a TLS setup for the WebDriver client")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The text of the first element matching `css`, if any.
async fn text(client: &Client, css: &str) -> Option<String> {
    let element = client.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// Clicks the first element matching `css`, finding it again until a click
/// lands (the console refreshes itself: an element found just before a
/// refresh is gone by the click).
async fn click(client: &Client, css: &str) {
    eventually(&format!("a click on {css}"), WAIT, || async {
        let element = client.find(Locator::Css(css)).await.ok()?;
        element.click().await.ok()
    })
    .await;
}

async fn type_into(client: &Client, css: &str, value: &str) {
    let element = client.find(Locator::Css(css)).await.unwrap();
    element.clear().await.unwrap();
    element.send_keys(value).await.unwrap();
}

/// axe-core, as vendored.
const AXE: &str = include_str!("vendor/axe-core/axe.min.js");

/// The serious and critical accessibility violations axe-core finds on the
/// page as it is now (`view` names it in the failure).
async fn accessible(client: &Client, view: &str) {
    let loaded = client
        .execute("return typeof window.axe === 'object';", vec![])
        .await
        .unwrap();
    if loaded != json!(true) {
        client
            .execute(
                "const s = document.createElement('script'); s.text = arguments[0]; document.head.appendChild(s); return true;",
                vec![json!(AXE)],
            )
            .await
            .unwrap();
    }
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations
                   .filter(v => v.impact === 'serious' || v.impact === 'critical')
                   .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                nodes: v.nodes.map(n => n.target.join(' ')) }))))
               .catch(e => done([{ id: 'axe-error', help: String(e) }]));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(found, json!([]), "{view}: serious or critical violations");
}

/// How many timeline entries of `event_type` the page shows.
async fn entries(client: &Client, event_type: &str) -> usize {
    client
        .find_all(Locator::Css(&format!(
            "#timeline li[data-type='{event_type}']"
        )))
        .await
        .map_or(0, |found| found.len())
}

/// The port of a service at `http://127.0.0.1:{port}`.
fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one operator's session, step by step"
)]
async fn an_operator_works_a_target_through_the_console_from_registration_to_release() {
    let stack = Stack::start().await;
    // The console as operators reach it: the query API's page behind the
    // gateway, sending commands to the same origin.
    let console = QueryApi::spawn(&stack.database, std::time::Duration::from_secs(5), "").await;
    let http = reqwest::Client::new();
    let (_gateway, gateway, _dir) = mileage_e2e::start_gateway_for(
        &http,
        &[port_of(&stack.commands.address)],
        &[port_of(&console.address)],
        600,
    )
    .await;
    let driver = driver().await;
    let client = browser(&driver).await;
    client.set_window_size(1400, 1000).await.unwrap();
    client.goto(&format!("{gateway}/admin")).await.unwrap();
    type_into(&client, "#token", &token("kim", Role::Manager)).await;
    click(&client, "#save-token").await;
    accessible(&client, "the empty console").await;

    for (css, value) in [
        ("#register-member", "quiet-1"),
        ("#register-phone", "010-7777-0000"),
        ("#register-nickname", "browser"),
    ] {
        type_into(&client, css, value).await;
    }
    click(&client, "#register").await;
    let id = eventually("the registered target is listed", WAIT, || async {
        let status = text(&client, "#rows tr td.status").await?;
        (status == "PRE_DORMANT").then_some(())?;
        let row = client.find(Locator::Css("#rows tr")).await.ok()?;
        row.attr("data-id").await.ok()?
    })
    .await;
    assert_eq!(
        text(&client, "#rows tr td:nth-child(3)").await.as_deref(),
        Some("010****0000"),
        "the phone number is masked"
    );
    accessible(&client, "the list").await;

    click(&client, &format!("#rows tr[data-id='{id}'] button.open")).await;
    eventually("the target's timeline", WAIT, || async {
        let actor = text(
            &client,
            "#timeline li[data-type='DormantMemberRegistered'] .actor",
        )
        .await?;
        (actor == "manager:kim").then_some(())
    })
    .await;
    click(&client, "#action-dormant").await;
    accessible(&client, "the confirmation").await;
    click(&client, "#confirm-yes").await;
    eventually("the notice lands in the timeline", WAIT, || async {
        let actor = text(&client, "#timeline li[data-type='MessageSent'] .actor").await?;
        let status = text(&client, "#detail-status").await?;
        (actor == "system:notices" && status == "DORMANT").then_some(())
    })
    .await;
    assert_eq!(entries(&client, "DormantMemberChanged").await, 1);
    accessible(&client, "a target's detail").await;

    // A double click on the confirmation: one release.
    click(&client, "#action-release").await;
    eventually("the confirmation opens", WAIT, || async {
        let open = client
            .execute("return document.getElementById('confirm').open;", vec![])
            .await
            .ok()?;
        (open == json!(true)).then_some(())
    })
    .await;
    client
        .execute(
            "const yes = document.getElementById('confirm-yes'); yes.click(); yes.click();",
            vec![],
        )
        .await
        .unwrap();
    eventually("the target is cleared by the operator", WAIT, || async {
        let actor = text(
            &client,
            "#timeline li[data-type='DormantMemberCleared'] .actor",
        )
        .await?;
        let status = text(&client, "#detail-status").await?;
        (actor == "manager:kim" && status == "CLEARED").then_some(())
    })
    .await;
    assert_eq!(
        entries(&client, "DormantMemberCleared").await,
        1,
        "released once"
    );
    let notice = text(&client, "#notice").await.unwrap_or_default();
    assert!(notice.contains("released"), "{notice}");
    let found = stack
        .query
        .until(&format!("/managerpages/{id}"), |t| {
            t["rejoinedMemberId"].is_string()
        })
        .await;
    let rejoined = found["rejoinedMemberId"].as_str().unwrap().to_owned();
    let shop = token("shop", Role::Partner);
    let earned = http
        .post(format!(
            "{}/members/{rejoined}/points/earn",
            stack.commands.address
        ))
        .bearer_auth(&shop)
        .json(&json!({ "amount": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(earned.status(), 200);

    // The person, by number; and nobody by another.
    let select = client.find(Locator::Css("#search-kind")).await.unwrap();
    select.select_by_value("phoneNo").await.unwrap();
    type_into(&client, "#search-text", "01077770000").await;
    click(&client, "#search").await;
    let found = eventually("the person found by number", WAIT, || async {
        text(&client, "#search-results .found-member").await
    })
    .await;
    assert_eq!(found, format!("Member {rejoined}"));
    click(&client, "#search-results .found-member").await;
    eventually("the member's points", WAIT, || async {
        let balance = text(&client, "#member-balance").await?;
        let earned = text(
            &client,
            "#points tr[data-type='PointsEarned'] td:nth-child(3)",
        )
        .await?;
        (balance == "7" && earned == "7").then_some(())
    })
    .await;
    // Taken out of the dormancy policy with a reason, behind the
    // confirmation, and put back.
    assert_eq!(
        text(&client, "#member-policy").await.as_deref(),
        Some("applies")
    );
    type_into(&client, "#exclusion-reason", "VIP contract").await;
    click(&client, "#exclude").await;
    click(&client, "#confirm-yes").await;
    eventually("the exclusion shown", WAIT, || async {
        (text(&client, "#member-policy").await? == "excluded: VIP contract").then_some(())
    })
    .await;
    let member = stack
        .query
        .until(&format!("/members/{rejoined}"), |m| {
            !m["dormancyExclusion"].is_null()
        })
        .await;
    assert_eq!(member["dormancyExclusion"], "VIP contract", "{member}");
    click(&client, "#include").await;
    click(&client, "#confirm-yes").await;
    eventually("back under the policy", WAIT, || async {
        (text(&client, "#member-policy").await? == "applies").then_some(())
    })
    .await;
    assert!(
        text(&client, "#chart-desc").await.is_some()
            || client.find(Locator::Css("#chart svg")).await.is_ok(),
        "the chart is drawn"
    );
    click(&client, "#refresh").await;
    eventually("the chart draws from the counts", WAIT, || async {
        let lines = client
            .find_all(Locator::Css("#chart polyline"))
            .await
            .ok()?;
        let described = client
            .execute(
                "return document.getElementById('chart-desc').textContent;",
                vec![],
            )
            .await
            .ok()?;
        (lines.len() == 4 && described.as_str()?.contains("CLEARED 1")).then_some(())
    })
    .await;
    accessible(&client, "a member and the chart").await;
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        client.set_window_size(1400, 1500).await.unwrap();
        client
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        let png = client.screenshot().await.unwrap();
        client.set_window_size(1400, 1000).await.unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console.png");
        std::fs::write(path, png).unwrap();
    }
    type_into(&client, "#search-text", "01077779999").await;
    click(&client, "#search").await;
    eventually("nobody by another number", WAIT, || async {
        text(&client, "#search-results .nobody").await
    })
    .await;

    // Data is shown as text, never as HTML.
    let (status, body) = stack
        .commands
        .send(
            reqwest::Method::POST,
            "/dormantMembers",
            Some(json!({
                "memberId": "quiet-2",
                "phoneNo": "01077771111",
                "nickname": "<b id=\"injected\">x</b>",
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    click(&client, "#refresh").await;
    let shown = eventually("the odd nickname listed", WAIT, || async {
        let cells = client.find_all(Locator::Css("#rows td")).await.ok()?;
        for cell in cells {
            let text = cell.text().await.ok()?;
            if text.contains("<b id=") {
                return Some(text);
            }
        }
        None
    })
    .await;
    assert_eq!(shown, "<b id=\"injected\">x</b>");
    let injected = client
        .execute(
            "return document.getElementById('injected') === null;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(true), "no element made from data");

    // A release the rules refuse says why: the member withdrew, and
    // their data went with them.
    let (gone, _) = stack
        .commands
        .register_target("01077772222", "withdrawn")
        .await;
    let refused_member = stack
        .query
        .until(&format!("/managerpages/{gone}"), |t| {
            t["memberId"].is_string()
        })
        .await["memberId"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.commands.mark_dormant(&gone).await;
    stack
        .query
        .until(&format!("/managerpages/{gone}"), |t| {
            t["messageStatus"] == "SENT"
        })
        .await;
    let (status, body) = stack
        .commands
        .send(
            reqwest::Method::DELETE,
            &format!("/members/{refused_member}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let select = client.find(Locator::Css("#search-kind")).await.unwrap();
    select.select_by_value("targetId").await.unwrap();
    type_into(&client, "#search-text", &gone).await;
    click(&client, "#search").await;
    click(&client, "#search-results .found-target").await;
    eventually("the withdrawn member's target is DORMANT", WAIT, || async {
        let status = text(&client, "#detail-status").await?;
        (status == "DORMANT").then_some(())
    })
    .await;
    click(&client, "#action-release").await;
    click(&client, "#confirm-yes").await;
    let said = eventually("the refusal is said", WAIT, || async {
        let notice = text(&client, "#notice").await?;
        notice.contains("refused").then_some(notice)
    })
    .await;
    assert!(
        said.contains("personal data was erased")
            && said.contains("dormant_member.personal_data_erased"),
        "{said}"
    );

    // A stopped consumer: the banner says the lists may be stale.
    let read = mileage_e2e::read_client(&stack.database).await;
    let at = mileage_read_model::bookkeeping::position_of(&read, "notices")
        .await
        .unwrap()
        .expect("notices has a checkpoint");
    mileage_read_model::bookkeeping::mark_stopped(
        &read,
        "notices",
        Some(at),
        at,
        "DormantMemberChanged",
        "the notifier answered what it cannot read",
    )
    .await
    .unwrap();
    let banner = eventually("the health banner", WAIT, || async {
        let banner = client.find(Locator::Css("#health")).await.ok()?;
        banner.is_displayed().await.ok()?.then_some(())?;
        banner.text().await.ok()
    })
    .await;
    assert!(
        banner.contains("notices stopped") && banner.contains("cannot read"),
        "{banner}"
    );
    accessible(&client, "the health banner").await;
    assert_eq!(
        stack.gateway.received().len(),
        2,
        "one notice per target marked dormant, the released one's once"
    );
    client.close().await.unwrap();
}
