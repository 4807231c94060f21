//! The world a service runs in: its wall clock, its randomness, how it reaches other
//! services and whether its database may use threads.
//!
//! A real process has one answer to each: the system clock, the operating system's
//! entropy, TCP through reqwest, and SQLite work on tokio's blocking pool. A simulated
//! cluster (`gauntlet-sim`) runs every service in one process on simulated time, where
//! each of these must come from the simulation instead, or the same seed would not give
//! the same run: a UUID drawn from the OS, a timestamp read from the system clock, or a
//! query finishing on another thread at a moment the simulator does not choose.
//!
//! So every place in the kit and the services that reads the wall clock or draws a
//! random value asks this module ([`now`], [`uuid_v4`], [`uuid_v7`], [`rng`]), and the
//! database and the client ask [`inline_db`] and [`transport`]. In a real process no
//! platform is ever set, and each answer is the system's. A simulator runs each node's
//! code inside [`scope`] with that node's [`Platform`], so one process can hold many
//! nodes, each with its own seeded randomness and clock; the services start their
//! background tasks with [`spawn`], which carries the spawning node's platform into the
//! new task.
//!
//! Monotonic time is not here: the kit measures it with `tokio::time::Instant`, which
//! is the system's monotonic clock in a real process and the simulated one on a paused
//! tokio runtime.
//!
//! The kit does not depend on any simulator: a production build carries only this
//! indirection (one thread-local read per call, which finds nothing).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use rand::RngCore;

/// What a simulated node supplies in place of the system.
pub trait Platform: Send + Sync + 'static {
    /// The wall clock.
    fn now(&self) -> SystemTime;
    /// Fills `dest` with random bytes from the node's seeded source.
    fn fill_bytes(&self, dest: &mut [u8]);
    /// True when database work must run on the calling task (no blocking pool, whose
    /// threads the simulator cannot schedule).
    fn inline_db(&self) -> bool {
        true
    }
    /// How the node's HTTP clients reach other nodes; `None` for real TCP.
    fn transport(&self) -> Option<Arc<dyn Transport>> {
        None
    }
    /// True when [`spawn`] must put the node's tasks on the thread's `LocalSet` (the
    /// simulator runs each node on one). A crashed node's tasks are then dropped in the
    /// order they were spawned; tokio's runtime drops its own in an order set by task
    /// ids, which every runtime of the process draws from, so the sockets a crash
    /// closes would close in a different order from one run of a seed to the next.
    fn local_tasks(&self) -> bool {
        true
    }
}

/// One HTTP exchange with a whole body each way, as the kit's client makes it. The
/// simulator implements it over its simulated network.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` (an absolute URI) and reads the whole answer.
    fn send(&self, request: http::Request<Bytes>) -> BoxFuture<'static, Result<http::Response<Bytes>, String>>;
}

thread_local! {
    /// The platform of the node whose code this thread is running now.
    static CURRENT: RefCell<Option<Arc<dyn Platform>>> = const { RefCell::new(None) };
}

/// The platform of the running node, inside a simulator's [`scope`].
pub fn current() -> Option<Arc<dyn Platform>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Runs `future` as code of the node `platform` belongs to: every poll of it sees that
/// platform (`None`: the system's).
pub fn scope<F: Future>(platform: Option<Arc<dyn Platform>>, future: F) -> Scoped<F> {
    Scoped { platform, future }
}

/// Spawns a task on the current tokio runtime that keeps the spawning node's platform.
/// Services start their background work with it instead of `tokio::spawn`.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(p) if p.local_tasks() => tokio::task::spawn_local(scope(Some(p), future)),
        Some(p) => tokio::spawn(scope(Some(p), future)),
        None => tokio::spawn(future),
    }
}

pin_project_lite::pin_project! {
    /// A future that runs inside a node's platform; see [`scope`].
    pub struct Scoped<F> {
        platform: Option<Arc<dyn Platform>>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let previous = CURRENT.with(|c| c.replace(this.platform.clone()));
        // Restored even if the inner poll panics.
        struct Restore(Option<Arc<dyn Platform>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        this.future.poll(cx)
    }
}

/// The wall clock.
pub fn now() -> SystemTime {
    match current() {
        Some(p) => p.now(),
        None => SystemTime::now(),
    }
}

/// Milliseconds since the Unix epoch on [`now`].
pub fn unix_millis() -> u128 {
    since_epoch().as_millis()
}

/// Time since the Unix epoch on [`now`] (zero for a clock set before 1970).
pub fn since_epoch() -> Duration {
    now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A time-ordered (version 7) UUID. In a real process it is the `uuid` crate's, which
/// stays ordered within a millisecond; in a simulation it is built from the simulated
/// clock and the node's randomness.
pub fn uuid_v7() -> uuid::Uuid {
    if current().is_none() {
        return uuid::Uuid::now_v7();
    }
    let mut random = [0u8; 10];
    rng().fill_bytes(&mut random);
    uuid::Builder::from_unix_timestamp_millis(unix_millis() as u64, &random).into_uuid()
}

/// True when database work must run inline (see [`Platform::inline_db`]).
pub fn inline_db() -> bool {
    current().is_some_and(|p| p.inline_db())
}

/// The simulator's HTTP transport, if one is installed for the running node.
pub fn transport() -> Option<Arc<dyn Transport>> {
    current().and_then(|p| p.transport())
}

/// A source of randomness: the node's seeded one in a simulation, the thread's
/// cryptographically seeded generator otherwise. Draw from it and drop it; do not keep
/// it across an await (it is cheap to ask for again).
pub fn rng() -> Entropy {
    match current() {
        Some(p) => Entropy::Platform(p),
        None => Entropy::Thread(rand::rng()),
    }
}

/// A random value of a type the standard distribution covers.
pub fn random<T>() -> T
where
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    rand::Rng::random(&mut rng())
}

/// See [`rng`].
pub enum Entropy {
    Platform(Arc<dyn Platform>),
    Thread(rand::rngs::ThreadRng),
}

impl RngCore for Entropy {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match self {
            Self::Platform(p) => p.fill_bytes(dest),
            Self::Thread(t) => t.fill_bytes(dest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_scope_the_system_answers() {
        assert!(current().is_none());
        let before = SystemTime::now();
        assert!(now() >= before);
        assert_ne!(uuid_v4(), uuid_v4());
        assert_eq!(uuid_v4().get_version_num(), 4);
        assert_eq!(uuid_v7().get_version_num(), 7);
        assert!(!inline_db());
        assert!(transport().is_none());
        let a: u64 = random();
        let b: u64 = random();
        assert_ne!(a, b);
    }

    struct Fixed(std::sync::Mutex<u8>);

    impl Platform for Fixed {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(1_000)
        }
        fn fill_bytes(&self, dest: &mut [u8]) {
            let mut next = self.0.lock().unwrap();
            for b in dest {
                *b = *next;
                *next = next.wrapping_add(1);
            }
        }
    }

    #[tokio::test]
    async fn inside_a_scope_and_in_what_it_spawns_the_node_answers() {
        let node: Arc<dyn Platform> = Arc::new(Fixed(std::sync::Mutex::new(0)));
        // A simulator runs its nodes on a LocalSet, where their tasks go.
        let seen = tokio::task::LocalSet::new()
            .run_until(scope(Some(node), async {
                let here = (since_epoch(), uuid_v4(), inline_db());
                let spawned = spawn(async { (since_epoch(), random::<u8>()) }).await.unwrap();
                (here, spawned)
            }))
            .await;
        let ((t, id, inline), (t2, byte)) = seen;
        assert_eq!(t, Duration::from_secs(1_000));
        assert_eq!(t2, Duration::from_secs(1_000));
        // The bytes 0..16 (with the version and variant bits set), then 16.
        assert_eq!(id.as_bytes()[0], 0);
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(byte, 16);
        assert!(inline);
        // And outside it again, the system.
        assert!(current().is_none());
    }
}
