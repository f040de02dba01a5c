use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{DormantMemberId, MemberId};
use crate::pii::{NONCE_LEN, PersonKey};
use crate::testing::given;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn notice(attempts: u32) -> Notice {
    Notice {
        target_id: DormantMemberId::parse("2").unwrap(),
        member_id: MemberId::parse("2").unwrap(),
        phone_no: PersonKey::new("dormantMember-2", [1; 32]).seal(
            "phoneNo",
            "01052995000",
            [0; NONCE_LEN],
        ),
        content: "DORMANT Message Send~!".into(),
        attempts,
        at: at(),
    }
}

fn sent() -> ManagerMessageEvent {
    let n = notice(1);
    MessageSent {
        target_id: n.target_id,
        member_id: n.member_id,
        phone_no: n.phone_no,
        content: n.content,
        attempts: 1,
        at: at(),
    }
    .into()
}

fn failed() -> ManagerMessageEvent {
    let n = notice(3);
    MessageFailed {
        target_id: n.target_id,
        member_id: n.member_id,
        phone_no: n.phone_no,
        content: n.content,
        attempts: 3,
        reason: "number rejected".into(),
        at: at(),
    }
    .into()
}

fn record_failed() -> ManagerMessageCommand {
    ManagerMessageCommand::RecordFailed {
        notice: notice(3),
        reason: "number rejected".into(),
    }
}

#[test]
fn a_delivered_notice_is_recorded_as_sent() {
    let state = given::<ManagerMessage>([])
        .when(ManagerMessageCommand::RecordSent(notice(1)))
        .then([sent()]);
    assert_eq!(
        state,
        ManagerMessage::Recorded(MessageOutcome {
            status: MessageStatus::Sent,
            attempts: 1
        })
    );
}

#[test]
fn an_undeliverable_notice_is_recorded_as_failed_with_the_reason() {
    given::<ManagerMessage>([])
        .when(record_failed())
        .then([failed()]);
}

#[test]
fn the_same_outcome_twice_is_recorded_once() {
    given::<ManagerMessage>([sent()])
        .when(ManagerMessageCommand::RecordSent(notice(1)))
        .then([]);
    given::<ManagerMessage>([failed()])
        .when(record_failed())
        .then([]);
}

#[test]
fn an_outcome_never_changes() {
    given::<ManagerMessage>([sent()])
        .when(record_failed())
        .then_err(ManagerMessageError::OutcomeAlreadyRecorded {
            recorded: MessageStatus::Sent,
        });
    given::<ManagerMessage>([failed()])
        .when(ManagerMessageCommand::RecordSent(notice(1)))
        .then_err(ManagerMessageError::OutcomeAlreadyRecorded {
            recorded: MessageStatus::Failed,
        });
}

#[test]
fn a_notice_needs_content_and_an_attempt() {
    let mut empty = notice(1);
    empty.content = "  ".into();
    given::<ManagerMessage>([])
        .when(ManagerMessageCommand::RecordSent(empty))
        .then_err(ManagerMessageError::EmptyContent);
    given::<ManagerMessage>([])
        .when(ManagerMessageCommand::RecordSent(notice(0)))
        .then_err(ManagerMessageError::NoAttempt);
}

#[test]
fn error_codes_are_stable_and_classed() {
    let e = ManagerMessageError::OutcomeAlreadyRecorded {
        recorded: MessageStatus::Sent,
    };
    assert_eq!(
        (e.code(), e.kind()),
        (
            "manager_message.outcome_already_recorded",
            ErrorKind::Conflict
        )
    );
    assert_eq!(ManagerMessageError::EmptyContent.kind(), ErrorKind::Invalid);
}
