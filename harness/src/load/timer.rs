//! A timer precise to tens of microseconds inside the async runtime, for the open
//! model's sends.
//!
//! tokio's timers have a 1 ms granularity and round up, so a send timed with them is up
//! to about a millisecond late, and the open model counts that lateness as latency. A
//! blocking thread sleeping with the OS timer is precise but costs a thread wake-up and
//! a cross-thread hand-off per start. On Linux this timer is a `timerfd` registered with
//! the runtime's own event loop: the loop wakes when it fires, to within the kernel's
//! timer slack (about 50 µs), with no extra thread. Elsewhere it falls back to tokio's
//! timer.

use std::time::Instant;

/// A one-shot timer re-armed for each deadline. Dropping a wait half-way is safe: the
/// next wait re-arms it, and a wake-up before the deadline only waits again.
pub(crate) struct PreciseTimer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<linux::Fd>>,
}

impl PreciseTimer {
    /// A timer on the current runtime (call it inside one); falls back to tokio's timer
    /// when the OS's cannot be had (e.g. the descriptor limit).
    pub(crate) fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            let register = |fd: linux::Fd| {
                // SAFETY: `Fd` owns its timerfd and always returns that descriptor; it
                // is closed only when the `AsyncFd` (its only owner) is dropped.
                unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok()
            };
            Self { fd: linux::Fd::new().ok().and_then(register) }
        }
        #[cfg(not(target_os = "linux"))]
        {
            Self {}
        }
    }

    /// Waits until `deadline` (returns at once when it has passed).
    pub(crate) async fn sleep_until(&mut self, deadline: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                if fd.get_ref().arm(deadline - now).is_err() {
                    break;
                }
                let Ok(mut ready) = fd.readable().await else { break };
                // The expiration is not read: arming the timer again resets its count
                // (timerfd_settime(2)), so a read would be one system call per wake-up
                // for nothing. Readiness is cleared by hand instead; a spurious one (an
                // expiry of an earlier arming) only makes the loop arm and wait again.
                ready.clear_ready();
            }
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

    /// A non-blocking monotonic timerfd.
    pub(super) struct Fd(TimerFd);

    impl Fd {
        pub(super) fn new() -> nix::Result<Self> {
            TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC).map(Self)
        }

        /// Fires once, `after` from now (at least a nanosecond: zero would disarm it).
        pub(super) fn arm(&self, after: Duration) -> nix::Result<()> {
            let after = after.max(Duration::from_nanos(1));
            self.0.set(Expiration::OneShot(TimeSpec::from_duration(after)), TimerSetTimeFlags::empty())
        }
    }

    impl AsRawFd for Fd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The median wake-up is well under tokio's millisecond (measured against a
    /// generous bound: the machine may be busy; the bench reports the real figure).
    #[tokio::test(flavor = "current_thread")]
    async fn wakes_after_the_deadline_and_well_within_a_millisecond() {
        let mut timer = PreciseTimer::new();
        let mut late = Vec::new();
        for i in 0..200u64 {
            let deadline = Instant::now() + Duration::from_micros(300 + (i % 7) * 100);
            timer.sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline, "woke before the deadline");
            late.push(now - deadline);
        }
        late.sort();
        assert!(late[100] < Duration::from_micros(500), "median lateness {:?}", late[100]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_dropped_half_way_does_not_end_the_next_one_early() {
        let mut timer = PreciseTimer::new();
        let short = Instant::now() + Duration::from_millis(1);
        let _ = tokio::time::timeout(Duration::from_micros(200), timer.sleep_until(short)).await;
        tokio::time::sleep(Duration::from_millis(3)).await; // the first arming has fired by now
        let deadline = Instant::now() + Duration::from_millis(5);
        timer.sleep_until(deadline).await;
        assert!(Instant::now() >= deadline);
    }
}
