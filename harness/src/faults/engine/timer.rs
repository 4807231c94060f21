//! Deadlines kept to well under a millisecond.
//!
//! Tokio's timer wheel has a 1 ms tick and rounds every sleep up to it, which made a
//! 1 ms latency toxic add over 2 ms. A link waits with tokio until shortly before its
//! deadline, then hands the rest (at most [`HANDOVER`]) to one timer thread that sleeps
//! on the OS's high-resolution timer (a futex timeout, precise to tens of µs on Linux)
//! and wakes the task [`SPIN`] early; the task yields until the deadline. So a wait
//! costs at most [`SPIN`] of yielding (other tasks run meanwhile), and the timer thread
//! only ever holds the deadlines of the next few milliseconds.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long before a deadline tokio's timer hands over to the precise one: more than
/// tokio's 1 ms tick, so tokio's wake is never past the deadline.
const HANDOVER: Duration = Duration::from_millis(2);

/// How long before a deadline the precise timer wakes the task, which then yields
/// until the deadline: waking an idle thread (a halted virtual CPU) can take a few
/// hundred µs, while a task that is already running is on time.
const SPIN: Duration = Duration::from_micros(300);

/// Waits until `at`, to within the precision of the OS's timers.
pub(crate) async fn sleep_until(at: Instant) {
    if let Some(coarse) = at.checked_sub(HANDOVER) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse.into()).await;
        }
    }
    if let Some(early) = at.checked_sub(SPIN) {
        PreciseSleep { at: early, key: None }.await;
    }
    // At most SPIN long: time only moves forward.
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// A deadline's place in the timer: its instant and a tie-breaker.
type Key = (Instant, u64);

#[derive(Default)]
struct Deadlines {
    next_id: u64,
    wakers: BTreeMap<Key, Waker>,
}

/// The timer thread's state: deadlines in order, and a signal for a new earliest one.
struct Timer {
    deadlines: Mutex<Deadlines>,
    changed: Condvar,
}

impl Timer {
    fn get() -> &'static Timer {
        static TIMER: OnceLock<&'static Timer> = OnceLock::new();
        TIMER.get_or_init(|| {
            let timer: &'static Timer =
                Box::leak(Box::new(Timer { deadlines: Mutex::new(Deadlines::default()), changed: Condvar::new() }));
            // Without the thread every precise sleep would wait for ever; fail loudly.
            std::thread::Builder::new()
                .name("gauntlet-timer".into())
                .spawn(move || timer.run())
                .expect("the proxy's timer thread starts");
            timer
        })
    }

    fn lock(&self) -> MutexGuard<'_, Deadlines> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.deadlines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut deadlines = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = deadlines.wakers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(deadlines);
                due.drain(..).for_each(Waker::wake);
                deadlines = self.lock();
                continue;
            }
            deadlines = match deadlines.wakers.keys().next().map(|(at, _)| at.saturating_duration_since(now)) {
                Some(wait) => self.changed.wait_timeout(deadlines, wait).map_or_else(|e| e.into_inner().0, |r| r.0),
                None => self.changed.wait(deadlines).unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

/// The last stretch of a sleep, on the timer thread.
struct PreciseSleep {
    at: Instant,
    key: Option<Key>,
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.forget();
            return Poll::Ready(());
        }
        let timer = Timer::get();
        let mut deadlines = timer.lock();
        let key = match self.key {
            Some(key) => key,
            None => {
                deadlines.next_id += 1;
                (self.at, deadlines.next_id)
            }
        };
        deadlines.wakers.insert(key, cx.waker().clone());
        let earliest = deadlines.wakers.keys().next() == Some(&key);
        drop(deadlines);
        self.key = Some(key);
        if earliest {
            timer.changed.notify_one();
        }
        Poll::Pending
    }
}

impl PreciseSleep {
    fn forget(&mut self) {
        if let Some(key) = self.key.take() {
            Timer::get().lock().wakers.remove(&key);
        }
    }
}

impl Drop for PreciseSleep {
    fn drop(&mut self) {
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_at_the_next_tick() {
        let mut late = Vec::new();
        for i in 0..20u64 {
            let at = Instant::now() + Duration::from_micros(300 + 150 * i);
            sleep_until(at).await;
            late.push(Instant::now() - at);
        }
        late.sort();
        assert!(late[10] < Duration::from_micros(400), "median lateness {:?}", late[10]);
    }

    #[test]
    fn a_dropped_sleep_leaves_no_deadline_behind() {
        let at = Instant::now() + Duration::from_secs(1);
        let registered = || Timer::get().lock().wakers.keys().filter(|(t, _)| *t == at).count();
        let mut sleep = Box::pin(PreciseSleep { at, key: None });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(registered(), 1);
        drop(sleep);
        assert_eq!(registered(), 0);
    }
}
