//! `command-api`: see the crate documentation.

use mileage_command_api::config::Settings;
use mileage_command_api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = mileage_service::telemetry::init_logging("mileage-command-api");
    let settings = Settings::load()?;
    let app = Application::build(&settings).await?;
    tracing::info!(port = app.port(), "command-api listening");
    app.run_until_stopped().await?;
    Ok(())
}
