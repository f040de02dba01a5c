//! The `Notifier` port and its adapters: an HTTP webhook (what SMS gateways
//! are) and a development adapter that only logs.

use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Serialize;
use uuid::Uuid;

use crate::config::NotifierSettings;
use crate::people::mask_phone;

/// A notice to deliver.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outgoing {
    /// Stable per notice: the gateway's idempotency key, so a re-delivery
    /// after a crash never reaches the person twice.
    pub message_id: Uuid,
    /// The phone number, digits only.
    pub to: String,
    /// The text.
    pub text: String,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The gateway accepted it.
    Delivered {
        /// Attempts it took.
        attempts: u32,
    },
    /// The gateway refused it for good (e.g. an unknown number).
    Rejected {
        /// Attempts made.
        attempts: u32,
        /// The gateway's reason.
        reason: String,
    },
    /// The gateway could not be reached or kept failing; try later.
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
}

/// Sends notices.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `notice`, retrying what is worth retrying.
    async fn send(&self, notice: &Outgoing) -> Delivery;
}

/// The adapter the settings ask for.
pub(crate) fn from_settings(settings: &NotifierSettings) -> anyhow::Result<Box<dyn Notifier>> {
    Ok(match &settings.url {
        Some(url) => Box::new(Webhook::new(url, settings)?),
        None => Box::new(LogNotifier),
    })
}

/// Development: logs the notice (masked) and reports it delivered.
pub(crate) struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn send(&self, notice: &Outgoing) -> Delivery {
        tracing::info!(message_id = %notice.message_id, to = %mask_phone(&notice.to), text = %notice.text, "notice (development adapter, not sent)");
        Delivery::Delivered { attempts: 1 }
    }
}

/// `POST {url}` with `{messageId, to, text}` and `Idempotency-Key:
/// {messageId}`. 2xx delivered; other 4xx rejected; 408, 429, 5xx, timeouts
/// and connection failures retried with exponential backoff.
pub(crate) struct Webhook {
    client: reqwest::Client,
    url: String,
    max_attempts: u32,
    backoff: Duration,
}

impl Webhook {
    /// A webhook client with a per-attempt timeout.
    pub(crate) fn new(url: &str, settings: &NotifierSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(settings.timeout)
                .build()?,
            url: url.to_owned(),
            max_attempts: settings.max_attempts,
            backoff: settings.backoff,
        })
    }

    async fn attempt(&self, notice: &Outgoing) -> Result<(), (bool, String)> {
        let response = self
            .client
            .post(&self.url)
            .header("idempotency-key", notice.message_id.to_string())
            .json(notice)
            .send()
            .await
            .map_err(|e| (true, format!("gateway unreachable: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let retry = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        Err((retry, format!("gateway answered {status}: {body}")))
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn send(&self, notice: &Outgoing) -> Delivery {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.backoff)
            .with_max_delay(self.backoff * 16)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(notice).await {
                Ok(()) => return Delivery::Delivered { attempts },
                Err((false, reason)) => return Delivery::Rejected { attempts, reason },
                Err((true, reason)) if attempts >= self.max_attempts => {
                    return Delivery::Unavailable { attempts, reason };
                }
                Err((true, reason)) => {
                    metrics::counter!("notifier_retries_total").increment(1);
                    tracing::debug!(message_id = %notice.message_id, attempts, %reason, "notice not delivered yet; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(self.backoff)).await;
                }
            }
        }
    }
}
