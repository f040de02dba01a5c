//! The `Notifier` port and its adapters: an HTTP webhook (what SMS gateways
//! are) and a development adapter that only logs.

use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Serialize;
use uuid::Uuid;

use crate::config::NotifierSettings;
use mileage_read_model::people::mask_phone;

/// A notice to deliver.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outgoing {
    /// Stable per notice: the gateway's idempotency key, so a re-delivery
    /// after a crash never reaches the person twice.
    pub message_id: Uuid,
    /// The phone number, digits only.
    pub to: String,
    pub text: String,
    /// The span sending the notice, sent as the `traceparent` header (not in
    /// the body), so the gateway's handling joins the trace.
    #[serde(skip)]
    pub trace: Option<mileage_domain::envelope::TraceContext>,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The gateway accepted it.
    Delivered {
        /// Attempts it took.
        attempts: u32,
    },
    /// The gateway said the recipient cannot receive it (a number that
    /// takes no SMS): the notice failed for good.
    Rejected {
        /// Attempts made.
        attempts: u32,
        /// What the gateway answered, as a code and a status: never its
        /// body, which may repeat the number.
        reason: String,
    },
    /// The gateway refused the request itself (credentials, endpoint,
    /// protocol): no notice can go out until an operator fixes the
    /// configuration, and nothing may be concluded about the recipient.
    Misconfigured {
        /// What the gateway answered, as a status: never its body.
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
/// {messageId}`. 2xx delivered; 422 (the gateway's "recipient cannot
/// receive") rejected; 408, 429, 5xx, timeouts and connection failures
/// retried with exponential backoff; any other answer (401, 403, 404, 405,
/// 413, 415, ...) is a configuration or protocol error. The gateway's body
/// is never read: it may repeat the phone number.
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

    async fn attempt(&self, notice: &Outgoing) -> Attempt {
        let mut request = self
            .client
            .post(&self.url)
            .header("idempotency-key", notice.message_id.to_string());
        if let Some(trace) = notice.trace {
            request = request.header(mileage_service::correlation::TRACEPARENT, trace.to_string());
        }
        let response = match request.json(notice).send().await {
            Ok(response) => response,
            // Without the URL, which may carry a credential.
            Err(e) if e.is_timeout() => return Attempt::Retry("gateway.timeout".into()),
            Err(e) => {
                return Attempt::Retry(format!("gateway.unreachable: {}", e.without_url()));
            }
        };
        classify(response.status())
    }
}

/// One attempt's outcome.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    Retry(String),
    Rejected(String),
    Misconfigured(String),
}

/// What an answer's status means; the body is not looked at.
fn classify(status: reqwest::StatusCode) -> Attempt {
    use reqwest::StatusCode;
    let code = status.as_u16();
    if status.is_success() {
        Attempt::Delivered
    } else if status == StatusCode::UNPROCESSABLE_ENTITY {
        Attempt::Rejected(format!("gateway.recipient_unreachable (HTTP {code})"))
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Attempt::Retry(format!("gateway.unavailable (HTTP {code})"))
    } else {
        Attempt::Misconfigured(format!("gateway.refused_request (HTTP {code})"))
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
                Attempt::Delivered => return Delivery::Delivered { attempts },
                Attempt::Rejected(reason) => return Delivery::Rejected { attempts, reason },
                Attempt::Misconfigured(reason) => return Delivery::Misconfigured { reason },
                Attempt::Retry(reason) if attempts >= self.max_attempts => {
                    return Delivery::Unavailable { attempts, reason };
                }
                Attempt::Retry(reason) => {
                    metrics::counter!("notifier_retries_total").increment(1);
                    tracing::debug!(message_id = %notice.message_id, attempts, %reason, "notice not delivered yet; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(self.backoff)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::{Attempt, classify};

    #[test]
    fn only_an_explicit_recipient_refusal_fails_a_notice() {
        assert_eq!(classify(StatusCode::ACCEPTED), Attempt::Delivered);
        assert!(matches!(
            classify(StatusCode::UNPROCESSABLE_ENTITY),
            Attempt::Rejected(_)
        ));
        for retried in [500, 502, 503, 504, 408, 429] {
            let status = StatusCode::from_u16(retried).unwrap();
            assert!(matches!(classify(status), Attempt::Retry(_)), "{retried}");
        }
        for refused in [400, 401, 403, 404, 405, 409, 410, 413, 415] {
            let status = StatusCode::from_u16(refused).unwrap();
            assert!(
                matches!(classify(status), Attempt::Misconfigured(_)),
                "{refused}"
            );
        }
    }
}
