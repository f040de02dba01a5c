//! A given/when/then harness for aggregates: given past events, when a
//! command is decided, then these events (or this typed error) result.

use std::fmt::Debug;

use crate::aggregate::Aggregate;

/// Starts a scenario from the events already in the stream.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    Given {
        state: A::from_events(&events),
    }
}

/// A scenario with its history folded into state.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` against the history.
    pub fn when(self, command: A::Command) -> Then<A> {
        let outcome = self.state.decide(command);
        Then {
            state: self.state,
            outcome,
        }
    }
}

/// The outcome of a decision, to assert on.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    state: A,
    outcome: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Error: Debug,
{
    /// Asserts the command produced exactly these events and returns the state
    /// after applying them, for further checks.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(
                    events, expected,
                    "decided events differ from the expected ones"
                );
                events.iter().fold(self.state, A::evolve)
            }
            Err(error) => {
                panic!("expected events {expected:?}, but the command was refused: {error:?}")
            }
        }
    }

    /// Asserts the command was refused with exactly this error.
    #[track_caller]
    pub fn then_err(self, expected: A::Error) {
        match self.outcome {
            Ok(events) => {
                panic!("expected refusal {expected:?}, but the command produced {events:?}")
            }
            Err(error) => assert_eq!(error, expected, "refused with a different error"),
        }
    }
}
