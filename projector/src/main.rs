//! `projector`: see the crate documentation.

use mileage_projector::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = mileage_service::telemetry::init_logging("mileage-projector");
    let settings = Settings::load()?;
    let running = mileage_projector::startup::start(&settings).await?;
    tracing::info!(port = running.port(), "projector running");
    let stopper = running.stopper();
    tokio::spawn(async move {
        mileage_service::shutdown::signal().await;
        tracing::info!("stopping after the current batches");
        let _ = stopper.send(true);
    });
    running.wait().await;
    tracing::info!("projector stopped");
    Ok(())
}
