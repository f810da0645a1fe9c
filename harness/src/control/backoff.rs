//! [`Backoff`]: bounded exponential backoff with jitter, for re-establishing a lost SSH
//! connection and for retrying a heal. The wait before retry `n` (0-based) is drawn
//! from `[c/2, c]` where `c = min(max, initial · 2ⁿ)` ("equal jitter": never zero, so
//! a refusing node is not hammered, and spread so that several sessions do not retry
//! in lockstep); no wait starts once `budget` has passed since the first attempt, and
//! no wait reaches past it.

use std::time::Duration;

use rand::Rng;

/// How long to wait between attempts, and for how long to keep trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first wait.
    pub initial: Duration,
    /// Largest ceiling any wait can have.
    pub max: Duration,
    /// Total time from the first attempt after which no further attempt is started.
    pub budget: Duration,
}

impl Backoff {
    /// The reconnect policy of a session: first wait up to 250 ms, doubling, each at
    /// most 5 s (or a third of the budget if that is smaller), within `budget`.
    pub fn reconnect(budget: Duration) -> Backoff {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5)
                .min(budget / 3)
                .max(Duration::from_millis(250)),
            budget,
        }
    }

    /// The ceiling of wait `n` (0-based): `min(max, initial · 2ⁿ)`, without overflow.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Wait `n` for a jitter draw `unit` in `[0, 1]` (clamped): `c/2 + unit · c/2`.
    pub fn delay(&self, n: u32, unit: f64) -> Duration {
        let c = self.ceiling(n);
        let half = c / 2;
        half + (c - half).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The wait before the next attempt, after `n` failed attempts (`n ≥ 1`) begun
    /// `elapsed` ago, for a jitter draw `unit`; `None` once the budget is spent. The
    /// wait is cut so the next attempt starts by the end of the budget.
    pub fn next_wait(&self, n: u32, elapsed: Duration, unit: f64) -> Option<Duration> {
        let left = self.budget.checked_sub(elapsed).filter(|l| !l.is_zero())?;
        Some(self.delay(n.saturating_sub(1), unit).min(left))
    }

    /// [`Backoff::next_wait`] with a fresh random jitter draw.
    pub fn next_wait_random(&self, n: u32, elapsed: Duration) -> Option<Duration> {
        self.next_wait(n, elapsed, rand::thread_rng().gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> Backoff {
        Backoff {
            initial: 100 * MS,
            max: 2000 * MS,
            budget: Duration::from_secs(10),
        }
    }

    #[test]
    fn ceilings_double_then_stop_at_the_cap() {
        let p = policy();
        let c: Vec<u128> = (0..8).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(c, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        // Huge attempt numbers neither overflow nor pass the cap.
        assert_eq!(p.ceiling(40), 2000 * MS);
        assert_eq!(p.ceiling(u32::MAX), 2000 * MS);
    }

    #[test]
    fn jittered_waits_stay_between_half_and_the_ceiling() {
        let p = policy();
        for n in 0..12 {
            let c = p.ceiling(n);
            assert_eq!(p.delay(n, 0.0), c / 2, "n={n}");
            assert_eq!(p.delay(n, 1.0), c, "n={n}");
            // Out-of-range draws are clamped, not extrapolated.
            assert_eq!(p.delay(n, -3.0), c / 2);
            assert_eq!(p.delay(n, 7.0), c);
            for _ in 0..50 {
                let w = p.next_wait_random(n + 1, Duration::ZERO).unwrap();
                assert!(
                    w >= c / 2 && w <= c,
                    "n={n}: {w:?} outside [{:?}, {c:?}]",
                    c / 2
                );
            }
        }
        // Mid draw, early attempt: 100 ms ceiling, 50 + 0.5·50 = 75 ms.
        assert_eq!(p.delay(0, 0.5), 75 * MS);
    }

    #[test]
    fn the_budget_bounds_the_whole_schedule() {
        let p = policy();
        assert_eq!(p.next_wait(1, Duration::ZERO, 1.0), Some(100 * MS));
        // The wait is cut at the end of the budget, and none starts after it.
        assert_eq!(p.next_wait(6, 9900 * MS, 1.0), Some(100 * MS));
        assert_eq!(p.next_wait(6, Duration::from_secs(10), 0.0), None);
        assert_eq!(p.next_wait(1, Duration::from_secs(11), 0.0), None);
        // Summing the longest waits never passes the budget, and attempts stop.
        let mut elapsed = Duration::ZERO;
        let mut attempts = 1;
        while let Some(w) = p.next_wait(attempts, elapsed, 1.0) {
            elapsed += w;
            attempts += 1;
            assert!(attempts < 100, "the schedule does not end");
        }
        assert_eq!(elapsed, p.budget);
        // 100+200+400+800+1600 = 3100 ms, then 2000 ms waits: 3 more reach 9100,
        // the last one is cut to 900 ms.
        assert_eq!(attempts, 10);
    }

    #[test]
    fn the_reconnect_policy_follows_its_budget() {
        let p = Backoff::reconnect(Duration::from_secs(30));
        assert_eq!(p.initial, 250 * MS);
        assert_eq!(p.max, Duration::from_secs(5));
        assert_eq!(p.budget, Duration::from_secs(30));
        let short = Backoff::reconnect(Duration::from_secs(3));
        assert_eq!(short.max, Duration::from_secs(1));
        let tiny = Backoff::reconnect(Duration::from_millis(100));
        assert_eq!(tiny.max, 250 * MS);
    }
}
