//! Ctrl-C and SIGTERM as the interrupt a world honours: faults rolled back, the
//! cluster torn down.

use tokio::sync::watch;

/// A receiver that turns true on SIGINT or SIGTERM (call inside a tokio runtime).
pub fn interrupt_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // Listening starts now, not when the task first runs.
    let mut shutdown = Shutdown::listen();
    tokio::spawn(async move {
        shutdown.recv().await;
        let _ = tx.send(true);
    });
    rx
}

/// SIGINT and SIGTERM listeners. Create them before the work they interrupt: a signal
/// that arrives between two listeners is otherwise lost (tokio only delivers to
/// listeners that exist when it arrives), and a Ctrl-C would be ignored.
pub struct Shutdown {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Starts listening (inside a runtime).
    pub fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self { int: signal(SignalKind::interrupt()).ok(), term: signal(SignalKind::terminate()).ok() }
    }

    /// Waits for SIGINT or SIGTERM received since [`Shutdown::listen`].
    pub async fn recv(&mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.int) => {}
            _ = one(&mut self.term) => {}
        }
    }
}
