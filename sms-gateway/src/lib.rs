//! A local SMS gateway for development: the other side of the notifier's
//! webhook (`POST /sms` with `{messageId, to, text}`), started by
//! `deploy/local/run.sh` as the `sms-gateway` binary. Production sends to a
//! real gateway through the same webhook.
//!
//! Like a real gateway it refuses, with 422, a number that cannot receive a
//! text message: anything but a mobile number (`010`, `011` or `016` to
//! `019`, then 7 or 8 digits), such as the source document's `1234567`, so
//! its saga (notice failed, personal data destroyed) runs locally. Its 422
//! body repeats the number, as real gateways' do: the notifier must never
//! keep it. A repeated `Idempotency-Key` gets the first answer. For tests
//! it can be told to misbehave (`PUT /behaviour`: slow, answering every
//! request with one status, 503 or 401 say, failing the next few, refusing
//! more numbers); "down" is the process stopped. `GET /sms` lists what it
//! received, numbers masked. The end-to-end tests run the same gateway
//! in-process and read every delivery ([`LocalSms::deliveries`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use mileage_read_model::people::mask_phone;

/// How many received messages are kept for `GET /sms` (the oldest go).
const KEPT: usize = 1000;

/// How the gateway answers, set with `PUT /behaviour`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// Milliseconds to wait before answering (a slow gateway).
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer every message with this status instead of handling it (503: a
    /// failing gateway; 401: expired credentials; 422: refusing everyone).
    #[serde(default)]
    pub status: Option<u16>,
    /// Answer the next this many messages 503 (not kept as their answers: a
    /// retry with the same key is handled).
    #[serde(default)]
    pub fail_next: u32,
    /// Numbers refused (422) besides those that are not mobile numbers,
    /// written as the notifier sends them.
    #[serde(default)]
    pub refused: Vec<String>,
}

/// A message as `GET /sms` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    /// The notifier's message id.
    pub message_id: Option<String>,
    /// The recipient, masked (`010****5678`).
    pub to: String,
    pub text: String,
    /// What the gateway answered.
    pub status: u16,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// A message as it arrived, for tests in the same process: every one
/// handled (a repeated key too), numbers in clear as a gateway gets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The recipient.
    pub to: String,
    pub text: String,
    /// The `traceparent` header, when sent.
    pub traceparent: Option<String>,
    /// What the gateway answered.
    pub status: u16,
}

/// What [`LocalSms::tally`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Requests taken (202 or 422).
    pub requests: usize,
    /// Distinct messages among them, by `Idempotency-Key` (a key repeated
    /// after the gateway forgot it, past 10,000 keys, counts again).
    pub messages: usize,
}

#[derive(Default)]
struct Inner {
    behaviour: Behaviour,
    answered: HashMap<String, u16>,
    requests: usize,
    messages: usize,
    received: VecDeque<Received>,
    deliveries: VecDeque<Delivery>,
}

/// The gateway's state, shared by its handlers.
#[derive(Clone, Default)]
pub struct LocalSms(Arc<Mutex<Inner>>);

impl LocalSms {
    /// A gateway that behaves as `behaviour` says from the start.
    pub fn new(behaviour: Behaviour) -> Self {
        let sms = Self::default();
        sms.lock().behaviour = behaviour;
        sms
    }

    /// Its routes: `POST /sms`, `GET /sms`, `GET` and `PUT /behaviour`,
    /// `GET /health`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/sms", post(receive).get(list))
            .route("/behaviour", get(behaviour).put(set_behaviour))
            .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
            .with_state(self)
    }

    /// Changes how it answers from now on.
    pub fn behave(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.lock().behaviour);
    }

    /// How many requests it took, and how many distinct messages among
    /// them (by `Idempotency-Key`): every one counted, not only the last
    /// ones listed.
    pub fn tally(&self) -> Tally {
        let inner = self.lock();
        Tally {
            requests: inner.requests,
            messages: inner.messages,
        }
    }

    /// Every message handled, oldest first (the last `10 * 1000`).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a text message can reach `number`: a Korean mobile number
/// (`+82` or the leading `0`), separators aside.
pub fn can_receive(number: &str) -> bool {
    let number = number.trim();
    let (international, rest) = match number.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == ' ')
    {
        return false;
    }
    let mut digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if international {
        let Some(national) = digits.strip_prefix("82") else {
            return false;
        };
        digits = format!("0{national}");
    }
    let mobile_prefix = ["010", "011", "016", "017", "018", "019"]
        .iter()
        .any(|prefix| digits.starts_with(prefix));
    mobile_prefix && (10..=11).contains(&digits.len())
}

/// The webhook's body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sms {
    message_id: Option<String>,
    to: String,
    text: String,
}

async fn receive(
    State(sms): State<LocalSms>,
    headers: HeaderMap,
    body: Result<Json<Sms>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let behaviour = {
        let mut inner = sms.lock();
        let behaviour = inner.behaviour.clone();
        inner.behaviour.fail_next = inner.behaviour.fail_next.saturating_sub(1);
        behaviour
    };
    if behaviour.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
    }
    if let Some(status) = behaviour.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        return (status, Json(json!({ "error": "told to answer so" }))).into_response();
    }
    if behaviour.fail_next > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "told to fail" })),
        )
            .into_response();
    }
    let Ok(Json(message)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "expected {messageId, to, text}" })),
        )
            .into_response();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let to = message.to.clone();
    let status = sms.lock().deliver(
        message,
        header("idempotency-key"),
        header("traceparent"),
        &behaviour.refused,
    );
    if status == 422 {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": format!("{to} cannot receive SMS") })),
        )
            .into_response()
    } else {
        (StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response()
    }
}

impl Inner {
    /// Takes `message` (sent under `key`): the status of its first delivery
    /// for a repeated key, else 202, or 422 for a number that cannot
    /// receive (or is `refused`). Every delivery is recorded; a message is
    /// listed once per key.
    fn deliver(
        &mut self,
        message: Sms,
        key: Option<String>,
        traceparent: Option<String>,
        refused: &[String],
    ) -> u16 {
        self.requests += 1;
        let repeated = key.as_ref().and_then(|k| self.answered.get(k).copied());
        let reachable = can_receive(&message.to) && !refused.contains(&message.to);
        let status = repeated.unwrap_or(if reachable { 202 } else { 422 });
        if self.deliveries.len() == 10 * KEPT {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(Delivery {
            idempotency_key: key.clone().unwrap_or_default(),
            to: message.to.clone(),
            text: message.text.clone(),
            traceparent,
            status,
        });
        if repeated.is_some() {
            return status;
        }
        self.messages += 1;
        if let Some(key) = key {
            self.answered.insert(key, status);
        }
        if self.received.len() == KEPT {
            self.received.pop_front();
        }
        self.received.push_back(Received {
            message_id: message.message_id,
            to: mask_phone(&message.to),
            text: message.text,
            status,
            received_at: Utc::now(),
        });
        if self.answered.len() > 10 * KEPT {
            self.answered.clear();
        }
        status
    }
}

async fn list(State(sms): State<LocalSms>) -> Json<Vec<Received>> {
    Json(sms.lock().received.iter().rev().cloned().collect())
}

async fn behaviour(State(sms): State<LocalSms>) -> Json<Behaviour> {
    Json(sms.lock().behaviour.clone())
}

async fn set_behaviour(
    State(sms): State<LocalSms>,
    body: Result<Json<Behaviour>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(behaviour))
            if behaviour
                .status
                .is_none_or(|s| StatusCode::from_u16(s).is_ok() && s >= 200) =>
        {
            sms.lock().behaviour = behaviour.clone();
            Json(behaviour).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "expected {delayMs?, status?, failNext?, refused?} with an HTTP status"
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::{Behaviour, LocalSms, can_receive};

    #[test]
    fn only_mobile_numbers_can_receive() {
        for good in [
            "01085581234",
            "010-8558-1234",
            "0111234567",
            "019 123 4567",
            "+821085581234",
        ] {
            assert!(can_receive(good), "{good}");
        }
        for bad in [
            "1234567",
            "0212345678",
            "010123",
            "010123456789",
            "+11085581234",
            "",
        ] {
            assert!(!can_receive(bad), "{bad}");
        }
    }

    async fn send(app: &axum::Router, key: &str, to: &str) -> u16 {
        let body = serde_json::json!({ "messageId": key, "to": to, "text": "hello" });
        app.clone()
            .oneshot(
                Request::post("/sms")
                    .header("content-type", "application/json")
                    .header("idempotency-key", key)
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn a_landline_is_refused_a_repeat_gets_the_first_answer_and_the_list_is_masked() {
        let sms = LocalSms::default();
        let app = sms.clone().router();
        assert_eq!(send(&app, "a", "01085581234").await, 202);
        assert_eq!(send(&app, "b", "1234567").await, 422);
        assert_eq!(send(&app, "b", "1234567").await, 422);
        let received = sms.lock().received.clone();
        assert_eq!(received.len(), 2, "the repeat is not a new message");
        assert_eq!(received[0].to, "010****1234");
        assert!(received.iter().all(|r| !r.to.contains("8558")));
    }

    #[tokio::test]
    async fn told_to_fail_it_answers_that_status_to_everyone() {
        let app = LocalSms::new(Behaviour {
            status: Some(503),
            ..Behaviour::default()
        })
        .router();
        assert_eq!(send(&app, "a", "01085581234").await, 503);
    }

    #[tokio::test]
    async fn the_next_failures_are_not_kept_and_refused_numbers_get_422() {
        let sms = LocalSms::new(Behaviour {
            fail_next: 2,
            refused: vec!["01085580002".into()],
            ..Behaviour::default()
        });
        let app = sms.clone().router();
        assert_eq!(send(&app, "a", "01085581234").await, 503);
        assert_eq!(send(&app, "a", "01085581234").await, 503);
        assert_eq!(send(&app, "a", "01085581234").await, 202, "handled now");
        assert_eq!(send(&app, "b", "01085580002").await, 422);
        assert_eq!(
            send(&app, "b", "01085580002").await,
            422,
            "the first answer"
        );
        let deliveries = sms.deliveries();
        let seen: Vec<(&str, &str, u16)> = deliveries
            .iter()
            .map(|d| (d.idempotency_key.as_str(), d.to.as_str(), d.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", "01085581234", 202),
                ("b", "01085580002", 422),
                ("b", "01085580002", 422)
            ],
            "every message handled, a repeat too; the 503s are not"
        );
        assert_eq!(
            sms.lock().received.len(),
            2,
            "the list counts messages once"
        );
    }
}
