//! Opens the personal data of the rows a read returns, with the person keys
//! as they are at that moment (one round trip per read): a person whose key
//! is gone reads as erased, whatever the read model holds.

use mileage_read_model::people::{OpenError, People, Person, key_ids};
use mileage_service::ApiError;

use crate::state::QueryState;

/// The keys that open `stored` values.
pub(crate) async fn people<'a>(
    state: &QueryState,
    stored: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<People, ApiError> {
    keyed(state, &key_ids(stored)).await
}

/// The keys `ids` name (one round trip; none for no ids).
pub(crate) async fn keyed(state: &QueryState, ids: &[String]) -> Result<People, ApiError> {
    if ids.is_empty() {
        return Ok(People::default());
    }
    Ok(People::new(state.keys.get_many(ids).await?))
}

/// A stored person, shown. A value that does not open with the key now
/// under its name (a key made again after it was deleted) is shown as
/// erased, and logged: it cannot be read by anyone any more, and one such
/// row must not break a page for everyone.
pub(crate) fn person(people: &People, phone: Option<&str>, nickname: Option<&str>) -> Person {
    people.person(phone, nickname).unwrap_or_else(|error| {
        unopenable(&error);
        Person {
            erased: true,
            ..Person::default()
        }
    })
}

/// A stored value, shown (`None` when erased, or unopenable as above).
pub(crate) fn open(people: &People, stored: Option<&str>) -> Option<String> {
    people.open(stored).unwrap_or_else(|error| {
        unopenable(&error);
        None
    })
}

/// Event data as shown: each sealed value in it masked, or `erased` (an
/// unopenable one too, logged as above).
pub(crate) fn show_in(data: &mut serde_json::Value, people: &People) {
    mileage_read_model::people::show_in(data, people, &mut unopenable);
}

fn unopenable(error: &OpenError) {
    tracing::error!(%error, "a stored personal value does not open; shown as erased");
}
