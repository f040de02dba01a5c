use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::testing::given;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn block(first: u64, last: u64) -> IdSequenceEvent {
    IdBlockReserved {
        first,
        last,
        at: at(),
    }
    .into()
}

#[test]
fn the_first_block_starts_at_one() {
    let state = given::<IdSequence>([])
        .when(IdSequenceCommand { size: 10, at: at() })
        .then([block(1, 10)]);
    assert_eq!(state.next, 11);
}

#[test]
fn the_next_block_follows_the_last() {
    given::<IdSequence>([block(1, 10), block(11, 30)])
        .when(IdSequenceCommand { size: 1, at: at() })
        .then([block(31, 31)]);
}

#[test]
fn an_empty_block_is_refused() {
    given::<IdSequence>([])
        .when(IdSequenceCommand { size: 0, at: at() })
        .then_err(IdSequenceError::EmptyBlock);
}

#[test]
fn the_sequence_never_wraps() {
    given::<IdSequence>([block(1, u64::MAX - 1)])
        .when(IdSequenceCommand { size: 2, at: at() })
        .then_err(IdSequenceError::Exhausted);
}
