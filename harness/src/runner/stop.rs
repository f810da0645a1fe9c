//! A cancellation flag shared by a run's tasks: set once (end of the run, Ctrl-C),
//! seen by every loop, and able to cut a sleep short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Stop(Arc<(AtomicBool, Notify)>);

impl Stop {
    pub fn stop(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }

    /// Sleeps `d`; returns `true` if stopped (possibly early).
    pub async fn sleep(&self, d: Duration) -> bool {
        let notified = self.0 .1.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_stopped() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.is_stopped(),
            _ = notified => true,
        }
    }
}
