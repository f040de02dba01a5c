//! The shape every aggregate has: a pure decision and a pure fold.

use std::fmt::Debug;

use crate::event::EventPayload;

/// An aggregate's state, with the two pure functions that define its behaviour.
///
/// `decide` must be deterministic and side-effect free so that a handler can
/// re-run it after an optimistic-concurrency conflict, and so that tests can
/// state behaviour as given-events / when-command / then-events.
pub trait Aggregate: Default + Clone + Debug + PartialEq {
    /// What a caller asks the aggregate to do.
    type Command: Debug;
    /// What happened; the only thing that is stored.
    type Event: EventPayload + Clone + Debug + PartialEq;
    /// Why a command was refused.
    type Error: crate::DomainError + Clone + PartialEq;

    /// The stream category; a stream is named `{CATEGORY}-{id}`.
    const CATEGORY: &'static str;

    /// Decides which events a command produces from the current state.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state. Total: an event that cannot apply to the
    /// state leaves it unchanged, because the log is the truth and a read of it
    /// must never panic.
    #[must_use]
    fn evolve(self, event: &Self::Event) -> Self;

    /// Folds a sequence of events from the default state.
    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// The stream name of one aggregate instance.
pub fn stream_name<A: Aggregate>(id: &impl std::fmt::Display) -> String {
    format!("{}-{id}", A::CATEGORY)
}

/// The instance id a stream name holds: what [`stream_name`] put after
/// its category (`"memberPhone-ab12"` -> `"ab12"`); empty for a name
/// without a category.
pub fn stream_id(stream: &str) -> &str {
    stream.split_once('-').map_or("", |(_, id)| id)
}

/// Every aggregate's stream category. A stream named otherwise is not
/// ours: another application's, in an event store it shares with us.
pub const CATEGORIES: [&str; 6] = [
    crate::member::Member::CATEGORY,
    crate::dormant_member::DormantMember::CATEGORY,
    crate::manager_message::ManagerMessage::CATEGORY,
    crate::phone_registry::PhoneRegistry::CATEGORY,
    crate::command_key::CommandKey::CATEGORY,
    crate::id_sequence::IdSequence::CATEGORY,
];

/// Whether `stream` (`{category}-{id}`) belongs to one of our aggregates.
pub fn is_ours(stream: &str) -> bool {
    stream
        .split_once('-')
        .is_some_and(|(category, _)| CATEGORIES.contains(&category))
}

#[cfg(test)]
mod tests {
    use super::{is_ours, stream_id, stream_name};

    #[test]
    fn a_streams_id_is_what_its_name_was_made_from() {
        let name = stream_name::<crate::member::Member>(&"12-b");
        assert_eq!(stream_id(&name), "12-b");
        assert_eq!(stream_id("nocategory"), "");
    }

    #[test]
    fn our_streams_are_those_of_our_categories() {
        for ours in [
            "member-1",
            "dormantMember-2",
            "memberPhone-ab#c",
            "idSequence-member",
        ] {
            assert!(is_ours(ours), "{ours}");
        }
        for theirs in ["orders-1", "member", "$ce-member", "members-1", ""] {
            assert!(!is_ours(theirs), "{theirs}");
        }
    }
}
