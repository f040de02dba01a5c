//! `command-api`: see the crate documentation.

use mileage_command_api::config::Settings;
use mileage_command_api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = Settings::from_env()?;
    let app = Application::build(&settings).await?;
    tracing::info!(port = app.port(), "command-api listening");
    app.run_until_stopped().await?;
    Ok(())
}
