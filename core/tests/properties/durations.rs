//! The duration parser never panics, and what `format_duration` writes it reads back.

use std::time::Duration;

use nightshift_core::duration::{
    format_duration, parse_duration, parse_positive_duration, DurationError,
};
use proptest::prelude::*;

use super::cases;

/// Number-and-unit sequences, including numbers far past any range and unknown units.
fn durationish() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec![
        "ns", "us", "µs", "ms", "s", "sec", "m", "min", "h", "hr", "d", "day", "w", "M", "month",
        "y", "year", "years", "x", "", " ",
    ]);
    let number = prop_oneof![
        "[0-9]{1,3}",
        "[0-9]{15,30}",
        Just("18446744073709551615".to_owned()),
        Just("-1".to_owned()),
        Just("1.5".to_owned()),
    ];
    prop::collection::vec((number, " ?", unit), 0..5).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(n, space, u)| format!("{n}{space}{u}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let parsed = parse_duration(text);
    let positive = parse_positive_duration(text);
    match &parsed {
        Ok(d) if d.is_zero() => prop_assert!(
            matches!(positive, Err(DurationError::Zero { .. })),
            "zero must be rejected as positive"
        ),
        Ok(d) => {
            prop_assert_eq!(&positive, &Ok(*d));
            let written = format_duration(*d);
            prop_assert_eq!(
                parse_duration(&written),
                Ok(*d),
                "{:?} is written as {:?}, which does not read back",
                text,
                written
            );
        }
        Err(e) => {
            prop_assert_eq!(&positive, &Err(e.clone()));
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn number_and_unit_sequences_never_panic(text in durationish()) {
        check(&text)?;
    }

    #[test]
    fn sums_near_the_top_of_the_range_never_panic(
        base in (u64::MAX - 3)..=u64::MAX,
        seconds in 0u64..3,
        (unit, per_second) in prop::sample::select(vec![("ns", 1_000_000_000u64), ("us", 1_000_000), ("ms", 1_000)]),
        split in 0.0f64..=1.0,
        extra in prop::collection::vec(0u64..=1_000_000_000, 0..3),
    ) {
        // Whole seconds, then one second split in two sub-second terms (a carry), then
        // anything: the sums land on, just below and just past `Duration::MAX`.
        let first = (per_second as f64 * split) as u64;
        let mut text = format!("{base}s {seconds}s {first}{unit} {}{unit}", per_second - first);
        for n in &extra {
            text.push_str(&format!(" {n}ns"));
        }
        check(&text)?;
    }

    #[test]
    fn format_then_parse_is_the_identity(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let written = format_duration(d);
        prop_assert_eq!(parse_duration(&written), Ok(d), "{:?} written as {:?}", d, written);
    }

    #[test]
    fn format_then_parse_is_the_identity_for_everyday_durations(secs in 0u64..10 * 365 * 86_400, millis in 0u32..1000) {
        let d = Duration::new(secs, millis * 1_000_000);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}
