use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::Aggregate;
use crate::testing::given;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, 0).unwrap()
}

fn assigned(id: &str) -> CommandKeyEvent {
    KeyAssigned {
        id: id.into(),
        at: at(),
    }
    .into()
}

fn assign(id: &str) -> CommandKeyCommand {
    CommandKeyCommand {
        id: id.into(),
        at: at(),
    }
}

#[test]
fn an_unused_key_records_the_id_its_command_creates() {
    given::<CommandKey>([])
        .when(assign("7"))
        .then([assigned("7")]);
}

#[test]
fn a_key_that_created_something_refuses_to_create_again() {
    given::<CommandKey>([assigned("7")])
        .when(assign("8"))
        .then_err(CommandKeyError::Reused);
    given::<CommandKey>([assigned("7")])
        .when(assign("7"))
        .then_err(CommandKeyError::Reused);
}

#[test]
fn the_first_assignment_stands() {
    let state = CommandKey::from_events(&[assigned("7"), assigned("8")]);
    assert_eq!(state, CommandKey::Assigned { id: "7".into() });
}
