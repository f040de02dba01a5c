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
    let ids = key_ids(stored);
    if ids.is_empty() {
        return Ok(People::default());
    }
    Ok(People::new(state.keys.get_many(&ids).await?))
}

/// A stored person, shown; a value that does not open with its existing
/// key is corruption, answered 500 (an erased person is not an error).
pub(crate) fn person(
    people: &People,
    phone: Option<&str>,
    nickname: Option<&str>,
) -> Result<Person, ApiError> {
    people.person(phone, nickname).map_err(unopenable)
}

/// A stored value, shown (`None` when erased).
pub(crate) fn open(people: &People, stored: Option<&str>) -> Result<Option<String>, ApiError> {
    people.open(stored).map_err(unopenable)
}

fn unopenable(error: OpenError) -> ApiError {
    ApiError::Internal(error.into())
}
