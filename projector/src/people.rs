//! Personal data as read models show it: revealed with the person's key when
//! it still exists, phone numbers masked, and erased people as erased.

use std::collections::HashMap;

use mileage_domain::pii::{PersonKey, Revealed, Sealed, reveal};

/// The person keys of one batch, fetched in one round trip.
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
    pub fn reveal(&self, sealed: &Sealed) -> Result<Option<String>, String> {
        match reveal(sealed, self.keys.get(&sealed.key_id)) {
            Ok(Revealed::Clear(value)) => Ok(Some(value)),
            Ok(Revealed::Erased) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A phone number with all but its first three and last four digits hidden:
/// `01012345678` -> `010****5678`. Short numbers keep only the last two.
pub(crate) fn mask_phone(phone: &str) -> String {
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

    use super::{People, mask_phone};

    #[test]
    fn phones_are_masked_in_the_middle() {
        assert_eq!(mask_phone("01012345678"), "010****5678");
        assert_eq!(mask_phone("010-1234-5678"), "010****5678");
        assert_eq!(mask_phone("0212345678"), "021***5678");
        assert_eq!(mask_phone("1234567"), "*****67");
    }

    #[test]
    fn a_missing_key_reveals_nothing_and_a_wrong_one_is_an_error() {
        let key = PersonKey::new("member-1", [7; 32]);
        let sealed = key.seal("phoneNo", "01012345678", [1; 24]);
        let with_key = People::new([("member-1".to_owned(), key)].into());
        assert_eq!(with_key.reveal(&sealed), Ok(Some("01012345678".into())));
        assert_eq!(People::default().reveal(&sealed), Ok(None));
        let other =
            People::new([("member-1".to_owned(), PersonKey::new("member-1", [8; 32]))].into());
        assert!(other.reveal(&sealed).is_err());
    }
}
