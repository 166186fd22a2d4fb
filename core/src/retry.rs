//! Retry policy: how long to wait before the next try, whether another try is allowed,
//! and the retry budget a cleared task instance gets.
//!
//! Try numbers: a task instance's `try_number` is incremented when a worker claims it, so
//! the first try is 1 and after N tries `try_number == N`. `max_tries` is the highest
//! try number that may run (the total number of tries allowed): `retries + 1` at first.
//!
//! Airflow counts differently — its `max_tries` holds the number of *retries* and a try
//! may be retried while `try_number <= max_tries` — and its clearing code
//! (`max_tries = try_number + retries - 1`, read while `try_number` already meant the
//! next try) left cleared tasks one retry short (apache/airflow#18285). Here clearing
//! always yields exactly `retries + 1` fresh tries: see [`max_tries_after_clear`].

use std::time::Duration;

/// The cap on a retry delay when the task sets no `max_retry_delay` (Airflow's
/// `MAX_RETRY_DELAY`, 24 hours).
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How a task is retried after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first one; 0 means a failure is final.
    pub retries: u32,
    /// The delay before the first retry (and every retry without exponential backoff).
    pub retry_delay: Duration,
    /// Doubles the delay after each failed try and adds jitter.
    pub exponential_backoff: bool,
    /// Upper bound on any delay; [`DEFAULT_MAX_RETRY_DELAY`] when `None`.
    pub max_retry_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    /// Airflow's defaults: no retries, 5 minutes between tries, no backoff.
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            retry_delay: Duration::from_secs(300),
            exponential_backoff: false,
            max_retry_delay: None,
        }
    }
}

impl RetryPolicy {
    /// `max_tries` of a new task instance: the first try plus its retries.
    pub fn initial_max_tries(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The cap that applies to every delay.
    pub fn cap(&self) -> Duration {
        self.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY)
    }

    /// How long to wait after try `try_number` failed before the next try may start.
    ///
    /// Without backoff: `retry_delay`. With backoff, as Airflow's `next_retry_datetime`:
    /// `base = retry_delay * 2^(try_number - 1)` rounded up to whole seconds (at least 1s),
    /// then `base * (1 + jitter)`, i.e. a value in `[base, 2 * base)`. Airflow draws that
    /// jitter from a hash of the task instance; here the caller passes `jitter` in `[0, 1)`
    /// (values outside are clamped, NaN counts as 0) so this stays pure. Either way the
    /// result never exceeds [`RetryPolicy::cap`]. `try_number` 0 is treated as 1.
    pub fn next_retry_delay(&self, try_number: u32, jitter: f64) -> Duration {
        let cap = self.cap();
        if !self.exponential_backoff {
            return self.retry_delay.min(cap);
        }
        let exponent = try_number.saturating_sub(1).min(1023) as i32;
        let base = (self.retry_delay.as_secs_f64() * 2f64.powi(exponent))
            .ceil()
            .max(1.0);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0 - f64::EPSILON)
        };
        let secs = base * (1.0 + jitter);
        if secs >= cap.as_secs_f64() {
            cap
        } else {
            // Whole seconds, as Airflow; `secs` is finite, positive and below the cap here.
            Duration::from_secs(secs.floor() as u64)
        }
    }
}

/// Whether a try that just failed (try `try_number`) may be followed by another one.
pub fn can_retry(try_number: u32, max_tries: u32) -> bool {
    try_number < max_tries
}

/// `max_tries` after a person clears an instance whose last claimed try is `current_try`
/// (0 if it never ran): the next `retries + 1` tries, numbered `current_try + 1` to
/// `current_try + retries + 1`, may all run, whatever budget was left before.
pub fn max_tries_after_clear(current_try: u32, retries: u32) -> u32 {
    current_try.saturating_add(retries).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn policy(
        retry_delay: Duration,
        exponential_backoff: bool,
        max: Option<Duration>,
    ) -> RetryPolicy {
        RetryPolicy {
            retries: 3,
            retry_delay,
            exponential_backoff,
            max_retry_delay: max,
        }
    }

    fn check(policy: RetryPolicy, try_number: u32, jitter: f64, expected: Duration) {
        assert_eq!(
            policy.next_retry_delay(try_number, jitter),
            expected,
            "{policy:?} try {try_number} jitter {jitter}"
        );
    }

    #[test]
    fn delays() {
        let secs = Duration::from_secs;
        let cases = [
            // Constant delay: try number and jitter do not matter.
            (policy(5 * MIN, false, None), 1, 0.9, 5 * MIN),
            (policy(5 * MIN, false, None), 7, 0.0, 5 * MIN),
            (policy(5 * MIN, false, Some(MIN)), 1, 0.0, MIN),
            (
                policy(secs(48 * 3600), false, None),
                1,
                0.0,
                DEFAULT_MAX_RETRY_DELAY,
            ),
            // Backoff: base doubles per try, jitter stretches it up to (not including) 2x.
            (policy(MIN, true, None), 1, 0.0, MIN),
            (policy(MIN, true, None), 2, 0.0, 2 * MIN),
            (policy(MIN, true, None), 3, 0.0, 4 * MIN),
            (policy(MIN, true, None), 3, 0.5, 6 * MIN),
            (policy(MIN, true, None), 1, 0.999, secs(119)),
            (policy(MIN, true, None), 0, 0.0, MIN),
            // Jitter outside [0, 1) is clamped.
            (policy(MIN, true, None), 1, -3.0, MIN),
            (policy(MIN, true, None), 1, 7.0, secs(119)),
            (policy(MIN, true, None), 1, f64::NAN, MIN),
            // Sub-second and zero delays back off from at least one second.
            (policy(Duration::ZERO, true, None), 1, 0.0, secs(1)),
            (
                policy(Duration::from_millis(300), true, None),
                2,
                0.0,
                secs(1),
            ),
            (
                policy(Duration::from_millis(700), true, None),
                2,
                0.0,
                secs(2),
            ),
            // Caps: max_retry_delay, else 24 hours; huge try numbers do not overflow.
            (policy(MIN, true, Some(10 * MIN)), 5, 0.0, 10 * MIN),
            (policy(MIN, true, Some(10 * MIN)), 4, 0.5, 10 * MIN),
            (policy(MIN, true, Some(10 * MIN)), 4, 0.2, secs(576)),
            (policy(MIN, true, None), 20, 0.0, DEFAULT_MAX_RETRY_DELAY),
            (
                policy(MIN, true, None),
                u32::MAX,
                0.5,
                DEFAULT_MAX_RETRY_DELAY,
            ),
            (
                policy(MIN, true, Some(secs(48 * 3600))),
                40,
                0.0,
                secs(48 * 3600),
            ),
        ];
        for (policy, try_number, jitter, expected) in cases {
            check(policy, try_number, jitter, expected);
        }
    }

    #[test]
    fn retry_allowed_while_tries_remain() {
        // (try_number that just failed, max_tries, another try allowed)
        let cases = [
            (1, 1, false), // retries = 0
            (1, 3, true),  // retries = 2: tries 1, 2, 3
            (2, 3, true),
            (3, 3, false),
            (4, 3, false),
            (0, 1, true),
        ];
        for (try_number, max_tries, expected) in cases {
            assert_eq!(
                can_retry(try_number, max_tries),
                expected,
                "try {try_number} of {max_tries}"
            );
        }
    }

    #[test]
    fn clearing_gives_a_full_fresh_budget() {
        // (last claimed try, retries, max_tries after clearing)
        let cases = [
            (3, 2, 6), // exhausted 3 of 3; tries 4, 5, 6 may run
            (1, 2, 4), // cleared after the first try
            (0, 2, 3), // cleared before it ever ran: same as a new instance
            (5, 0, 6), // no retries: exactly one more try
            (u32::MAX, 3, u32::MAX),
        ];
        for (current_try, retries, expected) in cases {
            assert_eq!(
                max_tries_after_clear(current_try, retries),
                expected,
                "clear at try {current_try} with {retries} retries"
            );
        }
    }

    /// apache/airflow#18285's scenario: retries = 2, fails twice then succeeds; cleared,
    /// it must again survive two failures.
    #[test]
    fn cleared_task_survives_as_many_failures_as_a_new_one() {
        let policy = RetryPolicy {
            retries: 2,
            ..RetryPolicy::default()
        };
        let tries_until_final_failure = |first_try: u32, max_tries: u32| {
            let mut try_number = first_try;
            let mut tries = 1;
            while can_retry(try_number, max_tries) {
                try_number += 1;
                tries += 1;
            }
            tries
        };
        let fresh = policy.initial_max_tries();
        assert_eq!(tries_until_final_failure(1, fresh), 3);
        let cleared = max_tries_after_clear(3, policy.retries);
        assert_eq!(tries_until_final_failure(4, cleared), 3);
    }
}
