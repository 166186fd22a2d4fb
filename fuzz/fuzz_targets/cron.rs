//! `Schedule::parse` on arbitrary text, and the fire times of what it accepts. The first
//! line is the expression; later bytes, if any, pick the instant and the time zone.
#![no_main]

use chrono::{DateTime, TimeDelta};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;
use nightshift_core::schedule::Schedule;

const ZONES: &[Tz] = &[
    chrono_tz::UTC,
    chrono_tz::Asia::Tokyo,
    chrono_tz::America::New_York,
    chrono_tz::Europe::London,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Pacific::Apia,
    chrono_tz::Asia::Kolkata,
    chrono_tz::America::Santiago,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (expression, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(schedule) = Schedule::parse(expression) else {
        return;
    };
    let mut seed = [0u8; 8];
    for (i, b) in rest.bytes().enumerate() {
        seed[i % 8] ^= b;
    }
    let seed = u64::from_le_bytes(seed);
    // An instant between 1970 and 2200 (2026-01-01 without extra bytes).
    let secs = if rest.is_empty() {
        1_767_225_600
    } else {
        (seed % 7_258_118_400) as i64
    };
    let after =
        DateTime::from_timestamp(secs, (seed >> 40) as u32 % 1_000_000_000).expect("in range");
    let tz = ZONES[(seed >> 56) as usize % ZONES.len()];
    let next = schedule.next_after(after, tz);
    assert_eq!(schedule.next_after(after, tz), next);
    if let Some(next) = next {
        assert!(next > after, "{expression:?}: next_after({after}) = {next}");
        assert_eq!(schedule.previous_or_equal(next, tz), Some(next));
        if let Some(between) = schedule.previous_or_equal(next - TimeDelta::nanoseconds(1), tz) {
            assert!(
                between <= after,
                "{expression:?} fires at {between}, between {after} and {next}"
            );
        }
    }
});
