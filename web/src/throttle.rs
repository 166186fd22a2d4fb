//! Sign-in throttling: a keyed failure counter whose delays grow exponentially. Pure
//! (every call takes `now`), so the policy is tested without waiting.
//!
//! `governor` was considered: it is a fixed-rate GCRA limiter, so it has no growing delay
//! and no way to reset one key when its owner signs in, which is what a login needs.
//!
//! An attempt is counted as a failure *before* the password is checked, so that parallel
//! guesses cannot all slip through while the slow hash runs; [`Throttle::forgive`] takes
//! it back when the password was right.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How one kind of key (an account, a client address) is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed without any delay.
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones; each further failure
    /// doubles it.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// A key with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// The most keys remembered; beyond it the stalest are dropped.
    pub max_keys: usize,
}

impl ThrottlePolicy {
    /// Per account: 5 free failures, then 1 s, 2 s, 4 s … up to 15 minutes.
    pub const ACCOUNT: ThrottlePolicy = ThrottlePolicy {
        free_failures: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(24 * 3600),
        max_keys: 10_000,
    };

    /// Per client address (IPv6 by /64): 20 free failures (an office behind one NAT),
    /// then 1 s, 2 s, 4 s … up to 15 minutes.
    pub const ADDRESS: ThrottlePolicy = ThrottlePolicy {
        free_failures: 20,
        ..ThrottlePolicy::ACCOUNT
    };

    /// The wait after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(beyond) = failures.checked_sub(self.free_failures + 1) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(beyond).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }
}

/// The answer to "may this key try now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; the attempt is counted as a failure until forgiven.
    Allowed,
    /// Wait this long. `first` is true for the first refusal of this wait, so that
    /// callers can record it once rather than once per hammered request.
    Blocked { retry_after: Duration, first: bool },
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
    reported: bool,
}

/// Failure counts by key (an account name, a client address), bounded in memory.
#[derive(Debug, Default)]
pub struct Throttle {
    entries: HashMap<String, Entry>,
}

impl Throttle {
    /// Checks `key` and, when allowed, counts this attempt as a failure.
    pub fn attempt(&mut self, policy: &ThrottlePolicy, key: &str, now: Instant) -> Verdict {
        if let Some(entry) = self.entries.get_mut(key) {
            if now.saturating_duration_since(entry.last_failure) > policy.forget_after {
                self.entries.remove(key);
            } else if now < entry.blocked_until {
                let first = !entry.reported;
                entry.reported = true;
                return Verdict::Blocked {
                    retry_after: entry.blocked_until - now,
                    first,
                };
            }
        }
        if !self.entries.contains_key(key) {
            self.make_room(policy, now);
        }
        let entry = self.entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: now,
            reported: false,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        entry.blocked_until = now + policy.delay(entry.failures);
        entry.reported = false;
        Verdict::Allowed
    }

    /// The attempt let through failed: its wait runs from now (the answer), not from when
    /// the attempt began.
    pub fn failed(&mut self, policy: &ThrottlePolicy, key: &str, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.last_failure = now;
            entry.blocked_until = now + policy.delay(entry.failures);
        }
    }

    /// Takes back the failure counted by the last [`Throttle::attempt`] (the password was
    /// right), without forgetting the earlier ones.
    pub fn forgive(&mut self, policy: &ThrottlePolicy, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
            if entry.failures == 0 {
                self.entries.remove(key);
            } else {
                entry.blocked_until = entry.last_failure + policy.delay(entry.failures);
            }
        }
    }

    /// Forgets `key` entirely (its owner signed in).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// How many keys are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops forgotten keys and, when still full, the stalest eighth, so that a flood of
    /// new keys costs one sort per `max_keys / 8` keys.
    fn make_room(&mut self, policy: &ThrottlePolicy, now: Instant) {
        if self.entries.len() < policy.max_keys {
            return;
        }
        self.entries.retain(|_, entry| {
            now.saturating_duration_since(entry.last_failure) <= policy.forget_after
        });
        if self.entries.len() < policy.max_keys {
            return;
        }
        let mut by_age: Vec<(Instant, String)> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.last_failure, key.clone()))
            .collect();
        by_age.sort_unstable();
        let target = policy.max_keys - policy.max_keys.div_ceil(8);
        let excess = self.entries.len().saturating_sub(target);
        for (_, key) in by_age.into_iter().take(excess) {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        free_failures: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        forget_after: Duration::from_secs(3600),
        max_keys: 16,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn delays_double_after_the_free_failures_up_to_the_cap() {
        let check = |failures: u32, expected: u64| {
            assert_eq!(
                POLICY.delay(failures),
                secs(expected),
                "{failures} failures"
            );
        };
        check(0, 0);
        check(3, 0);
        check(4, 1);
        check(5, 2);
        check(6, 4);
        check(10, 60);
        check(u32::MAX, 60);
        assert_eq!(ThrottlePolicy::ACCOUNT.delay(6), secs(1));
        assert_eq!(ThrottlePolicy::ACCOUNT.delay(40), secs(15 * 60));
    }

    #[test]
    fn a_blocked_key_waits_and_is_reported_once_per_wait() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(throttle.attempt(&POLICY, "ada", t0), Verdict::Allowed);
        }
        // The fourth failure earned a one-second wait.
        assert_eq!(
            throttle.attempt(&POLICY, "ada", t0),
            Verdict::Blocked {
                retry_after: secs(1),
                first: true
            }
        );
        assert_eq!(
            throttle.attempt(&POLICY, "ada", t0 + Duration::from_millis(500)),
            Verdict::Blocked {
                retry_after: Duration::from_millis(500),
                first: false
            }
        );
        // Other keys are not affected.
        assert_eq!(throttle.attempt(&POLICY, "otto", t0), Verdict::Allowed);
        // After the wait, one more try, which doubles the wait.
        let t1 = t0 + secs(1);
        assert_eq!(throttle.attempt(&POLICY, "ada", t1), Verdict::Allowed);
        assert_eq!(
            throttle.attempt(&POLICY, "ada", t1),
            Verdict::Blocked {
                retry_after: secs(2),
                first: true
            }
        );
    }

    #[test]
    fn success_forgives_the_attempt_and_reset_forgets_the_key() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            throttle.attempt(&POLICY, "ada", t0);
        }
        // A right password: that attempt is forgiven, the three before it are not.
        assert_eq!(throttle.attempt(&POLICY, "ada", t0), Verdict::Allowed);
        throttle.forgive(&POLICY, "ada");
        assert_eq!(throttle.attempt(&POLICY, "ada", t0), Verdict::Allowed);
        assert!(matches!(
            throttle.attempt(&POLICY, "ada", t0),
            Verdict::Blocked { .. }
        ));
        throttle.reset("ada");
        assert_eq!(throttle.len(), 0);
        for _ in 0..4 {
            assert_eq!(throttle.attempt(&POLICY, "ada", t0), Verdict::Allowed);
        }
    }

    #[test]
    fn the_wait_runs_from_the_failure() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            throttle.attempt(&POLICY, "ada", t0);
        }
        // The slow password check of the fourth attempt ended half a second later.
        throttle.failed(&POLICY, "ada", t0 + Duration::from_millis(500));
        assert_eq!(
            throttle.attempt(&POLICY, "ada", t0 + secs(1)),
            Verdict::Blocked {
                retry_after: Duration::from_millis(500),
                first: true
            }
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            throttle.attempt(&POLICY, "ada", t0);
        }
        let later = t0 + POLICY.forget_after + secs(1);
        assert_eq!(throttle.attempt(&POLICY, "ada", later), Verdict::Allowed);
        assert_eq!(throttle.attempt(&POLICY, "ada", later), Verdict::Allowed);
    }

    #[test]
    fn memory_stays_bounded_and_the_stalest_keys_go_first() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            throttle.attempt(&POLICY, "target", t0 + secs(100));
        }
        for i in 0..1000u64 {
            throttle.attempt(&POLICY, &format!("spray-{i}"), t0 + secs(i));
            assert!(throttle.len() <= POLICY.max_keys, "{} keys", throttle.len());
        }
        // The newest keys are still counted: three more failures of `spray-999` make
        // four, and the next attempt waits (a forgotten key would be allowed).
        let now = t0 + secs(999);
        for _ in 0..3 {
            assert_eq!(
                throttle.attempt(&POLICY, "spray-999", now),
                Verdict::Allowed
            );
        }
        assert!(matches!(
            throttle.attempt(&POLICY, "spray-999", now),
            Verdict::Blocked { .. }
        ));
    }
}
