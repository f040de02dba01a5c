//! Waiting on what a test can observe (a row, an event, an answer) instead
//! of sleeping for a guessed time: the wait ends as soon as the state is
//! there, and its bound is sized for a loaded machine, not for the
//! expected case.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`, or panics naming `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `look` until what it sees satisfies `done`, and returns that; or
/// returns what it saw last once `timeout` has passed, for the caller's own
/// assertion to say what is wrong with it.
pub async fn until<T, F, Fut>(timeout: Duration, look: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    until_every(POLL, timeout, look, done).await
}

/// [`until`], looking every `every`: for looks that cost something (a
/// request a rate limit or a circuit breaker counts).
pub async fn until_every<T, F, Fut>(
    every: Duration,
    timeout: Duration,
    mut look: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = look().await;
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::{eventually, until};

    #[tokio::test]
    async fn eventually_returns_the_first_value_found() {
        let tries = Cell::new(0);
        let found = eventually("the third try", Duration::from_secs(30), || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { (n >= 3).then_some(n) }
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for nothing")]
    async fn eventually_names_what_never_came() {
        eventually("nothing", Duration::ZERO, || async { None::<()> }).await;
    }

    #[tokio::test]
    async fn until_returns_the_last_look_after_its_time() {
        let tries = Cell::new(0);
        let seen = until(
            Duration::ZERO,
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move { n }
            },
            |n| *n > 100,
        )
        .await;
        assert_eq!(seen, 1, "one look, then the time was up");
    }
}
