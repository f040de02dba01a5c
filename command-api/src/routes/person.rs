//! The personal data a request carries (a phone number, a nickname), as
//! the API documents it: one schema each, named in every request that takes
//! them, so the documented rule is written once. With them the one other
//! free text a request carries, an operator's reason.

use serde::Deserialize;
use utoipa::ToSchema;

/// A phone number as sent: 7 to 15 digits; `-`, spaces and a leading `+`
/// are ignored.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    example = "01085580000",
    pattern = r"^ *\+?[ -]*(?:[0-9][ -]*){7,15}$"
)]
pub(super) struct PhoneInput(pub(super) String);

/// A nickname as sent: 1 to 50 characters, no control characters (spaces
/// around are dropped).
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    example = "SEQ1",
    pattern = r"^ *[^\x00-\x1F\x7F-\x9F ](?:[^\x00-\x1F\x7F-\x9F]{0,48}[^\x00-\x1F\x7F-\x9F ])? *$"
)]
pub(super) struct NicknameInput(pub(super) String);

/// An operator's reason as sent: 1 to 200 characters, no control
/// characters (spaces around are dropped).
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(
    value_type = String,
    example = "VIP contract until 2027",
    pattern = r"^ *[^\x00-\x1F\x7F-\x9F ](?:[^\x00-\x1F\x7F-\x9F]{0,198}[^\x00-\x1F\x7F-\x9F ])? *$"
)]
pub(super) struct ReasonInput(pub(super) String);

#[cfg(test)]
mod tests {
    use mileage_domain::values::{Nickname, PhoneNumber, Reason};
    use utoipa::PartialSchema;

    /// The documented pattern of `T`.
    fn pattern<T: PartialSchema>() -> regex::Regex {
        let schema = serde_json::to_value(T::schema()).unwrap();
        regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).unwrap()
    }

    /// Strings over `alphabet`, every length up to 24, from a fixed seed:
    /// what a client could send, edge cases included, the same every run.
    fn sent(alphabet: &[char]) -> impl Iterator<Item = String> + '_ {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..20_000).map(move |_| {
            let len = usize::try_from(next() % 25).unwrap();
            (0..len)
                .map(|_| alphabet[usize::try_from(next()).unwrap() % alphabet.len()])
                .collect()
        })
    }

    #[test]
    fn the_documented_phone_pattern_accepts_exactly_what_the_domain_does() {
        let documented = pattern::<super::PhoneInput>();
        assert_eq!(
            documented.as_str(),
            mileage_service::docs::PHONE_PATTERN,
            "the query API's search documents the same rule"
        );
        let mut alphabet: Vec<char> = ('0'..='9').collect();
        alphabet.extend([' ', ' ', '-', '+', 'a', '\u{3000}', '.']);
        let mut accepted = 0;
        for phone in sent(&alphabet).chain(["01085580000".into(), "1234567".into()]) {
            let parsed = PhoneNumber::parse(&phone).is_ok();
            assert_eq!(documented.is_match(&phone), parsed, "{phone:?}");
            accepted += usize::from(parsed);
        }
        assert!(
            accepted > 100,
            "the search reached numbers that pass: {accepted}"
        );
    }

    #[test]
    fn the_documented_nickname_pattern_accepts_exactly_what_the_domain_does() {
        let documented = pattern::<super::NicknameInput>();
        let alphabet = [' ', 'a', '가', '\u{1}', '\u{7f}', '\u{85}', '\t', '-'];
        let long = "가".repeat(Nickname::MAX_CHARS);
        let mut accepted = 0;
        for nickname in sent(&alphabet).chain([long.clone(), format!("{long}a"), " a ".into()]) {
            let parsed = Nickname::parse(&nickname).is_ok();
            assert_eq!(documented.is_match(&nickname), parsed, "{nickname:?}");
            accepted += usize::from(parsed);
        }
        assert!(
            accepted > 100,
            "the search reached nicknames that pass: {accepted}"
        );
    }

    #[test]
    fn the_documented_reason_pattern_accepts_exactly_what_the_domain_does() {
        let documented = pattern::<super::ReasonInput>();
        let alphabet = [' ', 'a', '가', '\u{1}', '\u{7f}', '\u{85}', '\t', '-'];
        let long = "가".repeat(Reason::MAX_CHARS);
        let mut accepted = 0;
        for reason in sent(&alphabet).chain([long.clone(), format!("{long}a"), " a ".into()]) {
            let parsed = Reason::parse(&reason).is_ok();
            assert_eq!(documented.is_match(&reason), parsed, "{reason:?}");
            accepted += usize::from(parsed);
        }
        assert!(
            accepted > 100,
            "the search reached reasons that pass: {accepted}"
        );
    }
}
