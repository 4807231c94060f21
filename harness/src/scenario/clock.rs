//! A node's clock read back: the observed effect of a clock fault is what the node's
//! own answers say the time is, against the harness's clock, never the setting.
//!
//! An HTTP server stamps each answer with a `Date` header from its wall clock, to the
//! second. To place the node's clock within a few milliseconds it is asked again every
//! [`POLL`] until its `Date` turns to the next second: the node's clock struck that whole
//! second between the two answers. A `Date` that does not turn within a second is not
//! following a clock, and the reading says so rather than guess.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::world::reach::Http;

/// How long apart the node is asked while waiting for its `Date` to turn.
pub const POLL: Duration = Duration::from_millis(10);
/// The most answers one reading asks for: a little over a second of [`POLL`]s.
pub const MAX_ANSWERS: usize = 130;
/// How long one answer may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// A node's clock as read from its answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockReading {
    /// Seconds the node's clock is ahead of the harness's (behind when negative).
    pub offset: f64,
    /// How far off `offset` may be, seconds.
    pub within: f64,
}

/// One answer: the node's `Date` (whole seconds) and the harness's clock when it was
/// asked and when it answered.
#[derive(Debug, Clone, Copy)]
struct Answer {
    date: u64,
    sent: f64,
    answered: f64,
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

async fn ask(http: &dyn Http, url: &str, clock: fn() -> SystemTime) -> Result<Answer, String> {
    let sent = secs(clock());
    let date = http.date(url, ANSWER_TIMEOUT).await?;
    let answered = secs(clock());
    Ok(Answer { date: date.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()), sent, answered })
}

/// Reads the clock of the node answering `url` against `clock` (the harness's).
pub async fn read(http: &dyn Http, url: &str, clock: fn() -> SystemTime) -> Result<ClockReading, String> {
    let first = ask(http, url, clock).await?;
    let mut last = first;
    for _ in 1..MAX_ANSWERS {
        tokio::time::sleep(POLL).await;
        let next = ask(http, url, clock).await?;
        if next.date > last.date {
            // The node's clock struck `next.date` after it stamped `last` and before it
            // stamped `next`: at some moment within [last.sent, next.answered].
            let (from, to) = (last.sent, next.answered);
            let struck = (last.answered + next.sent) / 2.0;
            let within = (struck - from).max(to - struck);
            return Ok(ClockReading { offset: next.date as f64 - struck, within });
        }
        last = next;
    }
    // A `Date` that stands still is not the clock: hyper's, cached until its clock
    // passes the next whole second it expects, stands still after a jump back.
    Err(format!(
        "its Date header stood still for {:.1} s (at {}): a server that caches its Date (as hyper does, until its \
         clock passes the last second it stamped, which after a jump back is a while) does not show its clock",
        last.answered - first.sent,
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(first.date))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A node whose clock is 90.25 s ahead of a fake harness clock that moves 7 ms per
    /// reading.
    static NOW_MS: AtomicU64 = AtomicU64::new(1_000_000_000_300);

    fn harness_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW_MS.fetch_add(7, Ordering::SeqCst))
    }

    struct Ahead;

    impl Http for Ahead {
        fn get(&self, _: &str, _: Option<&str>, _: Duration) -> BoxFuture<'static, Result<(u16, String), String>> {
            Box::pin(async { Err("unused".into()) })
        }

        fn date(&self, _: &str, _: Duration) -> BoxFuture<'static, Result<SystemTime, String>> {
            let node = NOW_MS.load(Ordering::SeqCst) + 90_250;
            Box::pin(async move { Ok(UNIX_EPOCH + Duration::from_secs(node / 1000)) })
        }
    }

    #[tokio::test]
    async fn a_clock_ahead_is_read_within_milliseconds_once_its_date_turns() {
        let r = read(&Ahead, "http://node", harness_clock).await.unwrap();
        assert!((r.offset - 90.25).abs() < 0.02, "{r:?}");
        assert!(r.within < 0.02, "{r:?}");
    }

    struct Frozen;

    impl Http for Frozen {
        fn get(&self, _: &str, _: Option<&str>, _: Duration) -> BoxFuture<'static, Result<(u16, String), String>> {
            Box::pin(async { Err("unused".into()) })
        }

        fn date(&self, _: &str, _: Duration) -> BoxFuture<'static, Result<SystemTime, String>> {
            Box::pin(async { Ok(UNIX_EPOCH + Duration::from_secs(2_000_000_000)) })
        }
    }

    #[tokio::test]
    async fn a_date_that_stands_still_is_no_reading() {
        let e = read(&Frozen, "http://node", SystemTime::now).await.unwrap_err();
        assert!(e.contains("stood still"), "{e}");
    }
}
