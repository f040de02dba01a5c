//! The admin page in Debian's headless Chromium, driven over WebDriver
//! (chromedriver): register a target, mark it dormant, see the notice go out.
//! `deploy/local/test.sh` installs Chromium when it is missing; without it
//! this test fails and says so.

use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use mileage_e2e::eventually;
use serde_json::json;

use crate::helpers::{Stack, WAIT};

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

#[tokio::test]
async fn an_operator_registers_a_target_marks_it_dormant_and_sees_the_notice_sent() {
    let stack = Stack::start().await;
    let member = stack.commands.join("01077770000", "browser").await;
    let driver = driver().await;
    let client = browser(&driver).await;

    client
        .goto(&format!("{}/admin", stack.query.address))
        .await
        .unwrap();
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(&stack.query.manager_token)
        .await
        .unwrap();
    client
        .find(Locator::Css("#save-token"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    for (css, value) in [
        ("#register-member", member.as_str()),
        ("#register-phone", "010-7777-0000"),
        ("#register-nickname", "browser"),
    ] {
        client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    client
        .find(Locator::Css("#register"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

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

    // The list refreshes itself: a button found just before a refresh is
    // gone by the click (a stale element), so find it again until a click
    // lands. Marking dormant twice would change nothing.
    eventually("the mark-dormant button is clicked", WAIT, || async {
        let selector = format!("#rows tr[data-id='{id}'] button.mark-dormant");
        let button = client.find(Locator::Css(&selector)).await.ok()?;
        button.click().await.ok()
    })
    .await;

    eventually(
        "the target turns DORMANT with its notice SENT",
        WAIT,
        || async {
            let status = text(&client, &format!("#rows tr[data-id='{id}'] td.status")).await?;
            let message = text(
                &client,
                &format!("#rows tr[data-id='{id}'] td.message-status"),
            )
            .await?;
            (status == "DORMANT" && message == "SENT").then_some(())
        },
    )
    .await;
    let count = text(&client, "#counts span[data-status='DORMANT']").await;
    assert_eq!(count.as_deref(), Some("DORMANT: 1"));
    let notice = text(&client, "#notice").await.unwrap_or_default();
    assert!(notice.contains("marked dormant"), "{notice}");
    assert_eq!(stack.gateway.received().len(), 1, "one notice went out");
    client.close().await.unwrap();
}
