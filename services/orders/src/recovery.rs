//! The recovery worker: at start-up it resumes every order left in flight (after a crash
//! or a restart), then it sweeps periodically for orders nobody is driving (a drive that
//! suspended on a failing upstream, or an executor that died).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::events::Timestamp;
use crate::saga::{Saga, Start};

/// How the worker sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// The pause between sweeps (`SHOP_ORDERS_SWEEP_INTERVAL`, default 5s). An order is
    /// swept when unchanged for this long, except at start-up, when every open order is.
    pub interval: Duration,
    /// Orders picked up per sweep; the rest wait for the next.
    pub batch: u32,
    /// Drives the worker runs at once.
    pub concurrency: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(5), batch: 500, concurrency: 32 }
    }
}

/// Starts the worker; it runs as long as the service holds `saga` (and the runtime runs).
pub fn spawn(saga: &Saga, config: RecoveryConfig) -> JoinHandle<()> {
    let service = saga.downgrade();
    shop_kit::platform::spawn(async move {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        // At start-up nothing of ours is in flight, so every open order is resumed.
        let mut cutoff = Timestamp::now();
        loop {
            let Some(saga) = service.upgrade() else {
                tracing::debug!("the service is gone; recovery worker stops");
                return;
            };
            sweep(&saga, &permits, cutoff, config.batch).await;
            drop(saga);
            tokio::time::sleep(config.interval).await;
            cutoff =
                Timestamp::from_millis(Timestamp::now().millis().saturating_sub(config.interval.as_millis() as u64));
        }
    })
}

/// Starts a drive for each open order last changed at or before `cutoff` that no drive
/// of this process holds; returns how many were started.
pub async fn sweep(saga: &Saga, permits: &Arc<Semaphore>, cutoff: Timestamp, batch: u32) -> usize {
    let ids = match saga.store().open_orders(cutoff, batch).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "recovery sweep could not list open orders");
            return 0;
        }
    };
    let mut started = 0;
    for id in ids {
        // Claim before waiting for a permit, so the next sweep does not queue it twice.
        let Some(claim) = saga.claim(&id) else { continue };
        let (saga, permits) = (saga.clone(), permits.clone());
        started += 1;
        shop_kit::platform::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            tracing::info!(order_id = %id, "resuming order");
            if let Err(e) = saga.drive_claimed(claim, Start::Resumed).await {
                tracing::error!(order_id = %id, error = %e, "resuming the order failed");
            }
        });
    }
    if started > 0 {
        tracing::info!(orders = started, "recovery sweep resumed orders");
    }
    started
}
