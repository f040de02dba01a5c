//! `spawn_app()`: the service on port 0 over a fresh database, in one line.

use mileage_command_api::config::Settings;
use mileage_command_api::startup::Application;

/// A running service and how to reach it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let settings = Settings {
        addr: "127.0.0.1:0".parse().expect("a valid address"),
        database_url: mileage_store::testing::fresh_database().await,
    };
    let app = Application::build(&settings)
        .await
        .expect("the service should start");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
    }
}
