//! `sms-gateway`: the local SMS gateway of `deploy/local/run.sh` (see
//! [`mileage_sms_gateway`]). Listens on `SMS_GATEWAY_ADDR`
//! (default `127.0.0.1:8086`); point the projector's `NOTIFIER_URL` at
//! `http://{addr}/sms`.

use mileage_sms_gateway::{Behaviour, LocalSms};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _traces = mileage_service::telemetry::init_logging("sms-gateway");
    let addr = mileage_service::settings::socket_addr(
        "sms_gateway_addr",
        std::env::var("SMS_GATEWAY_ADDR").ok(),
        "127.0.0.1:8086",
    )?;
    let listener = mileage_service::bind(addr).await?;
    tracing::info!(%addr, "local SMS gateway listening (POST /sms, GET /sms, PUT /behaviour)");
    mileage_service::serve(
        listener,
        LocalSms::new(Behaviour::default()).router(),
        mileage_service::shutdown::signal(),
    )
    .await?;
    Ok(())
}
