//! Personal data in the read models: stored sealed, exactly as the events
//! hold it, and opened only when read, with the person's key as it is at
//! that moment. So deleting a person's key erases them from every read
//! model at once, with no column to clear and no window in which a
//! projection could copy a value past its key's deletion; a rebuild writes
//! the same sealed values again, whatever keys remain.

use std::collections::HashMap;

use mileage_domain::pii::{PersonKey, Revealed, Sealed, reveal};

/// A sealed value as a read-model column holds it (the event's JSON).
pub fn stored(sealed: &Sealed) -> String {
    serde_json::to_string(sealed).expect("a sealed value serialises")
}

/// The keys that open `stored` values (column texts), each once: what a
/// page of rows needs from the key store, in one round trip.
pub fn key_ids<'a>(stored: impl IntoIterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut ids: Vec<String> = stored
        .into_iter()
        .flatten()
        .filter_map(|text| serde_json::from_str::<Sealed>(text).ok())
        .map(|sealed| sealed.key_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A person's data as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    /// `010****5678`; `None` once erased.
    pub phone_masked: Option<String>,
    /// `None` once erased.
    pub nickname: Option<String>,
    /// Their key is gone (they withdrew, or their data was destroyed), or
    /// nothing was ever stored.
    pub erased: bool,
}

/// Why a stored value could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The column does not hold a sealed value.
    #[error("a stored personal value is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The value does not open with its existing key: corruption, not erasure.
    #[error("a stored personal value does not open with its key: {0}")]
    Unopenable(#[from] mileage_domain::pii::PiiError),
}

/// The person keys a read (or a projector batch) found.
#[derive(Default)]
pub struct People {
    keys: HashMap<String, PersonKey>,
}

impl People {
    /// The keys found; absent ones were deleted (the person is erased).
    pub fn new(keys: HashMap<String, PersonKey>) -> Self {
        Self { keys }
    }

    /// The clear value, or `None` when its key is gone. A value that does
    /// not open with its existing key is an error, not an erasure.
    pub fn reveal(&self, sealed: &Sealed) -> Result<Option<String>, OpenError> {
        Ok(match reveal(sealed, self.keys.get(&sealed.key_id))? {
            Revealed::Clear(value) => Some(value),
            Revealed::Erased => None,
        })
    }

    /// A stored column's value, or `None` when it is empty or its key gone.
    pub fn open(&self, stored: Option<&str>) -> Result<Option<String>, OpenError> {
        match stored {
            Some(text) => self.reveal(&serde_json::from_str(text)?),
            None => Ok(None),
        }
    }

    /// The person whose phone number and nickname are stored so: both
    /// shown (the number masked), or neither, erased.
    pub fn person(&self, phone: Option<&str>, nickname: Option<&str>) -> Result<Person, OpenError> {
        let (phone, nickname) = (self.open(phone)?, self.open(nickname)?);
        Ok(match (phone, nickname) {
            (Some(phone), Some(nickname)) => Person {
                phone_masked: Some(mask_phone(&phone)),
                nickname: Some(nickname),
                erased: false,
            },
            _ => Person {
                phone_masked: None,
                nickname: None,
                erased: true,
            },
        })
    }
}

/// A sealed value inside event data (an object with exactly a sealed
/// value's four fields).
fn as_sealed(value: &serde_json::Value) -> Option<Sealed> {
    let object = value.as_object()?;
    (object.len() == 4 && object.contains_key("ciphertext") && object.contains_key("keyId"))
        .then(|| serde_json::from_value(value.clone()).ok())
        .flatten()
}

/// The keys that open the sealed values inside `data` (event data as
/// JSON), each once.
pub fn key_ids_in(data: &serde_json::Value, ids: &mut Vec<String>) {
    if let Some(sealed) = as_sealed(data) {
        if !ids.contains(&sealed.key_id) {
            ids.push(sealed.key_id);
        }
        return;
    }
    match data {
        serde_json::Value::Object(map) => map.values().for_each(|v| key_ids_in(v, ids)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| key_ids_in(v, ids)),
        _ => {}
    }
}

/// Replaces each sealed value inside `data` by what a reader may see of
/// it: a phone number masked, any other field masked but its first
/// character ([`mask_text`]), `"erased"` once its key is gone (or when it
/// does not open: reported through `unopenable`, never shown).
pub fn show_in(
    data: &mut serde_json::Value,
    people: &People,
    unopenable: &mut impl FnMut(&OpenError),
) {
    if let Some(sealed) = as_sealed(data) {
        let shown = match people.reveal(&sealed) {
            Ok(Some(clear)) if sealed.field == "phoneNo" => mask_phone(&clear),
            Ok(Some(clear)) => mask_text(&clear),
            Ok(None) => ERASED.to_owned(),
            Err(error) => {
                unopenable(&error);
                ERASED.to_owned()
            }
        };
        *data = serde_json::Value::String(shown);
        return;
    }
    match data {
        serde_json::Value::Object(map) => map
            .values_mut()
            .for_each(|v| show_in(v, people, unopenable)),
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|v| show_in(v, people, unopenable)),
        _ => {}
    }
}

/// What a personal value whose key is gone shows as.
pub const ERASED: &str = "erased";

/// A text with all but its first character hidden: `Kim` -> `K**`.
pub fn mask_text(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        std::iter::once(first).chain(chars.map(|_| '*')).collect()
    })
}

/// A phone number with all but its first three and last four digits hidden:
/// `01012345678` -> `010****5678`. Short numbers keep only the last two.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let (head, tail) = if digits.len() >= 10 { (3, 4) } else { (0, 2) };
    let hidden = digits.len().saturating_sub(head + tail);
    digits[..head.min(digits.len())]
        .iter()
        .copied()
        .chain(std::iter::repeat_n('*', hidden))
        .chain(digits[digits.len().saturating_sub(tail)..].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use mileage_domain::pii::PersonKey;

    use super::{People, Person, key_ids, mask_phone, stored};

    #[test]
    fn phones_are_masked_in_the_middle() {
        assert_eq!(mask_phone("01012345678"), "010****5678");
        assert_eq!(mask_phone("010-1234-5678"), "010****5678");
        assert_eq!(mask_phone("0212345678"), "021***5678");
        assert_eq!(mask_phone("1234567"), "*****67");
    }

    #[test]
    fn sealed_values_inside_event_data_show_masked_or_erased() {
        let kim = PersonKey::new("member-1", [7; 32]);
        let gone = PersonKey::new("member-2", [8; 32]);
        let mut data = serde_json::json!({
            "memberId": "1",
            "phoneNo": kim.seal("phoneNo", "01012345678", [1; 24]),
            "nickname": kim.seal("nickname", "김철수", [2; 24]),
            "earlier": [{ "phoneNo": gone.seal("phoneNo", "01099998888", [3; 24]) }],
            "reason": "refused",
        });
        let mut ids = Vec::new();
        super::key_ids_in(&data, &mut ids);
        ids.sort();
        assert_eq!(ids, ["member-1", "member-2"]);
        let people = People::new([("member-1".to_owned(), kim)].into());
        let mut failures = 0;
        super::show_in(&mut data, &people, &mut |_| failures += 1);
        assert_eq!(
            data,
            serde_json::json!({
                "memberId": "1",
                "phoneNo": "010****5678",
                "nickname": "김**",
                "earlier": [{ "phoneNo": "erased" }],
                "reason": "refused",
            })
        );
        assert_eq!(failures, 0);
        assert_eq!(super::mask_text(""), "");
    }

    #[test]
    fn a_missing_key_reveals_nothing_and_a_wrong_one_is_an_error() {
        let key = PersonKey::new("member-1", [7; 32]);
        let sealed = key.seal("phoneNo", "01012345678", [1; 24]);
        let with_key = People::new([("member-1".to_owned(), key)].into());
        assert_eq!(
            with_key.reveal(&sealed).unwrap(),
            Some("01012345678".into())
        );
        assert_eq!(People::default().reveal(&sealed).unwrap(), None);
        let other =
            People::new([("member-1".to_owned(), PersonKey::new("member-1", [8; 32]))].into());
        assert!(other.reveal(&sealed).is_err());
    }

    #[test]
    fn a_stored_person_shows_while_their_key_lives_and_is_erased_after() {
        let key = PersonKey::new("member-1", [7; 32]);
        let phone = stored(&key.seal("phoneNo", "01012345678", [1; 24]));
        let nickname = stored(&key.seal("nickname", "Kim", [2; 24]));
        assert_eq!(
            key_ids([Some(phone.as_str()), Some(nickname.as_str()), None]),
            ["member-1"]
        );
        let living = People::new([("member-1".to_owned(), key)].into());
        assert_eq!(
            living.person(Some(&phone), Some(&nickname)).unwrap(),
            Person {
                phone_masked: Some("010****5678".into()),
                nickname: Some("Kim".into()),
                erased: false,
            }
        );
        let erased = People::default()
            .person(Some(&phone), Some(&nickname))
            .unwrap();
        assert!(erased.erased && erased.phone_masked.is_none() && erased.nickname.is_none());
        assert!(People::default().open(Some("not json")).is_err());
    }
}
