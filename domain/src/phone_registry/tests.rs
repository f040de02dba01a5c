use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::event::EventPayload as _;
use crate::ids::MemberId;
use crate::testing::given;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// A holder as claims name them: the id sealed under one claim key.
fn m(id: &str) -> Holder {
    let key = crate::pii::PersonKey::new("memberPhone-ab#1", [9; crate::pii::KEY_LEN]);
    Holder::Sealed(key.seal_comparable("memberId", id))
}

fn claimed(id: &str) -> PhoneRegistryEvent {
    PhoneClaimed {
        holder: m(id),
        at: at(),
    }
    .into()
}

fn released(id: &str) -> PhoneRegistryEvent {
    PhoneReleased {
        holder: m(id),
        at: at(),
    }
    .into()
}

fn claim(id: &str) -> PhoneRegistryCommand {
    PhoneRegistryCommand::Claim {
        holder: m(id),
        at: at(),
    }
}

fn release(id: &str) -> PhoneRegistryCommand {
    PhoneRegistryCommand::Release {
        holder: m(id),
        at: at(),
    }
}

fn hand_over(from: &str, to: &str) -> PhoneRegistryCommand {
    PhoneRegistryCommand::HandOver {
        from: m(from),
        to: m(to),
        at: at(),
    }
}

#[test]
fn a_number_is_handed_over_released_and_claimed_at_once() {
    given::<PhoneRegistry>([claimed("1")])
        .when(hand_over("1", "2"))
        .then([released("1"), claimed("2")]);
}

#[test]
fn a_hand_over_done_already_changes_nothing() {
    given::<PhoneRegistry>([claimed("1"), released("1"), claimed("2")])
        .when(hand_over("1", "2"))
        .then([]);
}

#[test]
fn a_free_number_handed_over_is_claimed() {
    given::<PhoneRegistry>([claimed("1"), released("1")])
        .when(hand_over("1", "2"))
        .then([claimed("2")]);
}

#[test]
fn nobody_hands_over_a_number_someone_else_holds() {
    given::<PhoneRegistry>([claimed("3")])
        .when(hand_over("1", "2"))
        .then_err(PhoneRegistryError::Taken);
}

#[test]
fn a_free_number_is_claimed() {
    given::<PhoneRegistry>([])
        .when(claim("1"))
        .then([claimed("1")]);
}

#[test]
fn a_held_number_cannot_be_claimed_by_another_member() {
    given::<PhoneRegistry>([claimed("1")])
        .when(claim("2"))
        .then_err(PhoneRegistryError::Taken);
}

#[test]
fn a_retried_claim_by_the_holder_changes_nothing() {
    given::<PhoneRegistry>([claimed("1")])
        .when(claim("1"))
        .then([]);
}

#[test]
fn a_released_number_can_be_claimed_again() {
    given::<PhoneRegistry>([claimed("1"), released("1")])
        .when(claim("2"))
        .then([claimed("2")]);
}

#[test]
fn only_the_holder_releases_a_number() {
    given::<PhoneRegistry>([claimed("1")])
        .when(release("2"))
        .then_err(PhoneRegistryError::NotHolder);
    given::<PhoneRegistry>([claimed("1")])
        .when(release("1"))
        .then([released("1")]);
    given::<PhoneRegistry>([]).when(release("1")).then([]);
}

#[test]
fn a_version_1_claim_names_its_holder_and_is_released_by_that_name() {
    let v1 = br#"{"memberId":"7","at":"2026-11-23T09:00:00Z"}"#;
    let event = PhoneRegistryEvent::decode("PhoneClaimed", 1, v1).unwrap();
    let named = Holder::Named(MemberId::parse("7").unwrap());
    assert_eq!(
        event,
        PhoneClaimed {
            holder: named.clone(),
            at: at()
        }
        .into()
    );
    given::<PhoneRegistry>([event])
        .when(PhoneRegistryCommand::Release {
            holder: named.clone(),
            at: at(),
        })
        .then([PhoneReleased {
            holder: named,
            at: at(),
        }
        .into()]);
}

#[test]
fn a_claim_stores_its_holder_sealed() {
    let json = String::from_utf8(
        PhoneRegistryEvent::from(PhoneClaimed {
            holder: m("7"),
            at: at(),
        })
        .to_json(),
    )
    .unwrap();
    assert!(
        json.contains(r#""holder":{"keyId":"memberPhone-ab#1""#),
        "{json}"
    );
    assert!(!json.contains(r#""7""#), "{json}");
}
