use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::ids::MemberId;
use crate::testing::given;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn m(id: &str) -> MemberId {
    MemberId::parse(id).unwrap()
}

fn claimed(id: &str) -> PhoneRegistryEvent {
    PhoneClaimed {
        member_id: m(id),
        at: at(),
    }
    .into()
}

fn released(id: &str) -> PhoneRegistryEvent {
    PhoneReleased {
        member_id: m(id),
        at: at(),
    }
    .into()
}

fn claim(id: &str) -> PhoneRegistryCommand {
    PhoneRegistryCommand::Claim {
        member_id: m(id),
        at: at(),
    }
}

fn release(id: &str) -> PhoneRegistryCommand {
    PhoneRegistryCommand::Release {
        member_id: m(id),
        at: at(),
    }
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
