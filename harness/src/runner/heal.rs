//! The heal that ends a run, retried: every node's network, clock and process faults
//! are undone, and while any node fails (unreachable because it is rebooting, sshd
//! restarting, a command that hangs until its deadline) the whole idempotent heal is
//! tried again with backoff until a budget runs out. What still failed is returned as
//! `node: reason` lines for results.json and the reports; it never aborts the run's
//! analysis.

use super::nemesis;
use crate::control::Backoff;
use crate::systems::{NodeHandle, System};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long the heal after the faults phase keeps retrying a node it cannot heal.
pub const FINAL_HEAL_BUDGET: Duration = Duration::from_secs(60);

/// How long the heal on the way out (every exit path, after the run body) retries.
pub const EXIT_HEAL_BUDGET: Duration = Duration::from_secs(30);

/// The outcome of [`retry_within`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// Attempts made (at least 1).
    pub attempts: u32,
    /// The last attempt's failures; empty when it succeeded.
    pub errors: Vec<String>,
}

/// Runs `attempt` (which returns the failures of one try) until it returns none or
/// `policy`'s budget is spent, waiting with backoff in between; each retry is logged.
/// Ends at most one attempt's length after the budget.
pub async fn retry_within<F, Fut>(what: &str, policy: Backoff, mut attempt: F) -> Retried
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let errors = attempt().await;
        if errors.is_empty() {
            if attempts > 1 {
                tracing::info!(
                    "{what}: succeeded at attempt {attempts} after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
            return Retried { attempts, errors };
        }
        match policy.next_wait_random(attempts, started.elapsed()) {
            Some(wait) => {
                tracing::warn!(
                    "{what}: attempt {attempts} failed ({}); retrying in {:.2}s",
                    errors.join("; "),
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            None => {
                tracing::error!(
                    "{what}: still failing after {attempts} attempts in {:.1}s: {}",
                    started.elapsed().as_secs_f64(),
                    errors.join("; ")
                );
                return Retried { attempts, errors };
            }
        }
    }
}

/// The retry policy of a heal with `budget`: first wait up to 500 ms, at most 5 s.
pub fn heal_policy(budget: Duration) -> Backoff {
    Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(5),
        budget,
    }
}

/// Heals every network, clock and process fault on every node, retrying within
/// `budget` while any node fails; returns the failures of the last attempt, each
/// saying how long the heal was retried.
pub async fn heal_with_retries<S: System>(
    system: &Arc<S>,
    nodes: &[NodeHandle],
    budget: Duration,
) -> Vec<String> {
    let started = Instant::now();
    let r = retry_within("heal", heal_policy(budget), || async {
        let mut errors = nemesis::heal_all(nodes).await;
        errors.extend(nemesis::heal_processes(system, nodes).await);
        errors
    })
    .await;
    let after = started.elapsed().as_secs_f64();
    r.errors
        .into_iter()
        .map(|e| {
            format!(
                "{e} (not healed after {} attempts in {after:.1}s)",
                r.attempts
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(budget_ms: u64) -> Backoff {
        Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(80),
            budget: Duration::from_millis(budget_ms),
        }
    }

    #[tokio::test]
    async fn a_node_that_comes_back_is_healed_by_a_retry() {
        let calls = AtomicU32::new(0);
        let r = retry_within("test heal", quick(5_000), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => vec!["n3: cannot connect: Connection refused".to_string()],
                _ => Vec::new(),
            }
        })
        .await;
        assert_eq!(
            r,
            Retried {
                attempts: 3,
                errors: vec![]
            }
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_node_that_stays_down_is_reported_after_the_budget() {
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let r = retry_within("test heal", quick(400), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            vec![format!("n2: connection lost (try {n})")]
        })
        .await;
        let took = started.elapsed();
        // Retried, within the budget (plus scheduling slack), and the last failure kept.
        assert!(r.attempts >= 2, "{r:?}");
        assert_eq!(r.attempts, calls.load(Ordering::SeqCst));
        assert_eq!(
            r.errors,
            vec![format!("n2: connection lost (try {})", r.attempts - 1)]
        );
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn success_at_once_makes_one_attempt_and_no_wait() {
        let started = std::time::Instant::now();
        let r = retry_within("test heal", quick(10_000), || async { Vec::new() }).await;
        assert_eq!(r.attempts, 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
