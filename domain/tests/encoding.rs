//! Events survive the trip to stored JSON and back; bad stored data is a
//! named error, and data whose key was deleted still decodes.

use chrono::{TimeZone, Utc};
use mileage_domain::event::{DecodeError, EventPayload};
use mileage_domain::ids::MemberId;
use mileage_domain::member::{MemberEvent, MemberJoined, PointsEarned};
use mileage_domain::pii::{NONCE_LEN, PersonKey, Revealed, reveal};
use mileage_domain::values::Points;

fn joined() -> MemberEvent {
    let key = PersonKey::new("member-9", [9; 32]);
    MemberJoined {
        member_id: MemberId::parse("9").unwrap(),
        phone_no: key.seal("phoneNo", "01085581234", [1; NONCE_LEN]),
        nickname: key.seal("nickname", "SEQ1", [2; NONCE_LEN]),
        joined_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        rejoining: None,
    }
    .into()
}

#[test]
fn an_event_round_trips_through_json() {
    let event = joined();
    let data = event.to_json();
    let back = MemberEvent::decode(event.event_type(), event.schema_version(), &data).unwrap();
    assert_eq!(back, event);
}

#[test]
fn stored_json_never_holds_personal_data_in_clear() {
    let text = String::from_utf8(joined().to_json()).unwrap();
    assert!(
        !text.contains("01085581234") && !text.contains("SEQ1"),
        "{text}"
    );
    assert!(text.contains("\"memberId\":\"9\""), "{text}");
}

#[test]
fn with_the_key_deleted_the_event_decodes_and_shows_erased() {
    let event = joined();
    let MemberEvent::MemberJoined(decoded) =
        MemberEvent::decode("MemberJoined", 1, &event.to_json()).unwrap()
    else {
        panic!("should decode as MemberJoined");
    };
    assert_eq!(reveal(&decoded.phone_no, None), Ok(Revealed::Erased));
    let key = PersonKey::new("member-9", [9; 32]);
    assert_eq!(
        reveal(&decoded.phone_no, Some(&key)),
        Ok(Revealed::Clear("01085581234".into()))
    );
}

#[test]
fn an_unknown_type_is_a_named_error() {
    assert_eq!(
        MemberEvent::decode("MemberTeleported", 1, b"{}"),
        Err(DecodeError::UnknownEventType {
            event_type: "MemberTeleported".into()
        })
    );
}

#[test]
fn an_unknown_version_is_a_named_error() {
    assert_eq!(
        MemberEvent::decode("PointsEarned", 7, b"{}"),
        Err(DecodeError::UnsupportedVersion {
            event_type: "PointsEarned".into(),
            version: 7
        })
    );
}

#[test]
fn corrupt_data_is_a_named_error() {
    let Err(DecodeError::Malformed {
        event_type,
        version,
        reason,
    }) = MemberEvent::decode("PointsEarned", 1, b"{\"memberId\":\"1\",\"amount\":-4")
    else {
        panic!("corrupt data should be Malformed");
    };
    assert_eq!((event_type.as_str(), version), ("PointsEarned", 1));
    assert!(!reason.is_empty());
}

#[test]
fn amounts_are_integers_in_json() {
    let event: MemberEvent = PointsEarned {
        member_id: MemberId::parse("1").unwrap(),
        amount: Points(5),
        balance: Points(15),
        at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        expires_at: Utc.with_ymd_and_hms(2027, 1, 2, 3, 4, 5).unwrap(),
    }
    .into();
    let value: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
    assert_eq!(value["amount"], 5);
    assert_eq!(value["balance"], 15);
}

#[test]
fn a_version_1_points_earned_is_upcast_with_the_policys_expiry() {
    let v1 = br#"{"memberId":"7","amount":10,"balance":30,"at":"2025-03-01T09:00:00Z"}"#;
    let event = MemberEvent::decode("PointsEarned", 1, v1).expect("v1 still decodes");
    let MemberEvent::PointsEarned(earned) = event else {
        panic!("a PointsEarned")
    };
    assert_eq!(earned.balance, Points(30));
    assert_eq!(
        earned.expires_at,
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
        "one year after it was earned"
    );
    assert_eq!(
        MemberEvent::PointsEarned(earned).schema_version(),
        2,
        "written back, it is the current version"
    );
    let unknown = MemberEvent::decode("PointsEarned", 3, v1).unwrap_err();
    assert!(
        unknown.to_string().contains("no schema version 3"),
        "{unknown}"
    );
    let missing = MemberEvent::decode("PointsEarned", 2, v1).unwrap_err();
    assert!(missing.to_string().contains("expiresAt"), "{missing}");
}
