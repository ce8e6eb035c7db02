//! Waiting in tests: check a condition until it holds, backing off between checks, and fail with
//! a message that names what was awaited and what was last seen. The one way tests wait; a sleep
//! is never the synchronisation.

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause between two checks; it doubles after each check up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// How long to keep checking, and how often.
///
/// A [`Duration`] converts into one with the default backoff (10 ms doubling to 100 ms);
/// [`Deadline::polling_every`] fixes the pause instead, for a condition that also samples
/// something at a known rate.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    within: Duration,
    every: Option<Duration>,
}

impl Deadline {
    pub fn within(within: Duration) -> Deadline {
        Deadline {
            within,
            every: None,
        }
    }

    /// Checks at this fixed interval instead of backing off.
    pub fn polling_every(self, interval: Duration) -> Deadline {
        Deadline {
            every: Some(interval),
            ..self
        }
    }
}

impl From<Duration> for Deadline {
    fn from(within: Duration) -> Deadline {
        Deadline::within(within)
    }
}

/// What one check of a condition says: done (with a value), or not yet (with what it saw).
///
/// - `bool`: `true` is done;
/// - `Option<T>`: `Some(value)` is done and [`eventually`] returns the value;
/// - `Result<T, E>`: `Ok(value)` is done; `Err(seen)` is not yet, and the last `seen` is shown
///   in the failure message (`Err(rows)` for "expected 10,000 rows, saw 9,998").
pub trait Check {
    type Value;

    /// `Ok` when done; `Err` with what was observed (if anything worth showing) otherwise.
    fn into_result(self) -> Result<Self::Value, Option<String>>;
}

impl Check for bool {
    type Value = ();

    fn into_result(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Check for Option<T> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Check for Result<T, E> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:?}")))
    }
}

/// Checks `condition` until it is done and returns its value; panics once `deadline` has passed,
/// naming `what` and the last observed value.
///
/// The first check is immediate; the last one happens at the deadline, so a condition that
/// becomes true in time is never missed. A check that never returns is not interrupted.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
///
/// let mut rows = 0;
/// let seen = testkit::eventually("three rows", Duration::from_secs(5), async || {
///     rows += 1; // a query, in a real test
///     if rows >= 3 { Ok(rows) } else { Err(rows) }
/// })
/// .await;
/// assert_eq!(seen, 3);
/// # }
/// ```
pub async fn eventually<C: Check>(
    what: &str,
    deadline: impl Into<Deadline>,
    mut condition: impl AsyncFnMut() -> C,
) -> C::Value {
    let Deadline { within, every } = deadline.into();
    let started = Instant::now();
    let give_up = started + within;
    let mut pauses = pauses(every);
    let mut checks = 0u32;
    loop {
        checks += 1;
        let seen = match condition().await.into_result() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= give_up {
            let seen = seen.map_or(String::new(), |seen| format!("; last seen: {seen}"));
            panic!(
                "gave up waiting for {what} after {:?} ({checks} checks){seen}",
                now - started
            );
        }
        let pause = pauses.next().unwrap_or(LONGEST_PAUSE);
        tokio::time::sleep(pause.min(give_up - now)).await;
    }
}

/// The pauses between checks: `every` each time, or the backoff.
fn pauses(every: Option<Duration>) -> impl Iterator<Item = Duration> {
    let backoff = std::iter::successors(Some(FIRST_PAUSE), |pause| {
        Some((*pause * 2).min(LONGEST_PAUSE))
    });
    let fixed = every.map(std::iter::repeat);
    fixed.into_iter().flatten().chain(backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = eventually("the third call", Duration::from_secs(5), async || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        })
        .await;
        assert_eq!((value, calls), (30, 3));
    }

    #[tokio::test]
    async fn a_condition_that_holds_is_checked_once() {
        let mut calls = 0;
        eventually("nothing", Duration::from_secs(5), async || {
            calls += 1;
            true
        })
        .await;
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    #[should_panic(expected = "gave up waiting for the answer after")]
    async fn a_condition_that_never_holds_fails_naming_it() {
        eventually("the answer", Duration::from_millis(50), async || false).await;
    }

    #[tokio::test]
    #[should_panic(expected = "last seen: 41")]
    async fn the_failure_shows_the_last_observed_value() {
        eventually("the answer", Duration::from_millis(50), async || {
            Err::<(), _>(41)
        })
        .await;
    }

    #[tokio::test]
    async fn the_last_check_happens_at_the_deadline() {
        let started = Instant::now();
        let within = Duration::from_millis(300);
        // Holds only from the deadline on: the check made at the deadline must see it.
        eventually("the deadline", within, async || started.elapsed() >= within).await;
    }

    #[test]
    fn the_pauses_back_off_unless_an_interval_is_fixed() {
        let ms = |pauses: Vec<Duration>| pauses.iter().map(Duration::as_millis).collect::<Vec<_>>();
        let backoff: Vec<Duration> = pauses(None).take(7).collect();
        assert_eq!(ms(backoff), [10, 20, 40, 80, 100, 100, 100]);
        let fixed: Vec<Duration> = pauses(Some(Duration::from_millis(7))).take(3).collect();
        assert_eq!(ms(fixed), [7, 7, 7]);
    }
}
