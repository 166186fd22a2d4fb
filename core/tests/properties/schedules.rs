//! `Schedule::parse` on arbitrary text and on generated cron expressions: it never
//! panics, and a schedule it accepts behaves like a schedule in every time zone.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use nightshift_core::schedule::Schedule;
use proptest::prelude::*;

use super::cases;

/// Zones with odd offsets and transitions: half hours, 30-minute DST, a skipped day,
/// southern-hemisphere DST, and zones without DST.
const ZONES: &[&str] = &[
    "UTC",
    "Asia/Tokyo",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kolkata",
    "America/Santiago",
    "Pacific/Chatham",
    "Africa/Casablanca",
];

/// One list item of a cron field: valid forms, out-of-range numbers, names, and junk.
fn item() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (0u32..70).prop_map(|n| n.to_string()),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..70, 0u32..70).prop_map(|(a, s)| format!("{a}/{s}")),
        (0u32..70).prop_map(|s| format!("*/{s}")),
        (0u32..70, 0u32..70, 0u32..70).prop_map(|(a, b, s)| format!("{a}-{b}/{s}")),
        (0u32..9, 0u32..7).prop_map(|(d, n)| format!("{d}#{n}")),
        prop::sample::select(vec![
            "L",
            "?",
            "JAN",
            "dec",
            "Mon",
            "SUN",
            "sat",
            "FRI-MON",
            "nov-feb",
            "L-1",
            "W",
            "#",
            "/",
            "-",
            "--1",
            "1-",
            "-1",
            "*/",
            "99999999999",
            "4294967296",
            "1/4294967295",
            "LW",
            "5L",
            "1#1#1",
            "",
        ])
        .prop_map(str::to_owned),
        "[0-9A-Za-z*/#,L?-]{1,6}",
    ]
}

fn field() -> impl Strategy<Value = String> {
    prop::collection::vec(item(), 1..4).prop_map(|items| items.join(","))
}

/// A cron-like expression: usually five fields, sometimes four or six, or a preset.
fn expression() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(field(), 5).prop_map(|f| f.join(" ")),
        1 => prop::collection::vec(field(), 4..7).prop_map(|f| f.join(" ")),
        1 => prop::sample::select(vec![
            "@hourly", "@DAILY", "@midnight", "@weekly", "@monthly", "@yearly", "@annually",
            "@reboot", "@", " @daily ",
        ])
        .prop_map(str::to_owned),
    ]
}

/// An instant between 1970 and 2200, at any nanosecond.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..7_258_118_400, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"))
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(ZONES).prop_map(|name| name.parse().expect("a known zone"))
}

fn check_schedule(expression: &str, after: DateTime<Utc>, tz: Tz) -> Result<(), TestCaseError> {
    let Ok(schedule) = Schedule::parse(expression) else {
        let e = Schedule::parse(expression).expect_err("rejected twice");
        prop_assert_eq!(&e.expression, expression);
        prop_assert!(!e.reason.is_empty());
        prop_assert!(!e.reason.contains('\n'), "one line: {:?}", e.reason);
        return Ok(());
    };
    prop_assert_eq!(schedule.expression(), expression);
    prop_assert_eq!(schedule.to_string(), expression);
    let reread = Schedule::parse(&schedule.to_string()).ok();
    prop_assert_eq!(
        reread.as_ref(),
        Some(&schedule),
        "the expression reads back as the same schedule"
    );
    let next = schedule.next_after(after, tz);
    prop_assert_eq!(
        schedule.next_after(after, tz),
        next,
        "next_after is deterministic"
    );
    let Some(next) = next else {
        return Ok(());
    };
    prop_assert!(
        next > after,
        "next_after({}) = {} is not later",
        after,
        next
    );
    // The fire time is itself a fire time, and there is none in between.
    prop_assert_eq!(
        schedule.previous_or_equal(next, tz),
        Some(next),
        "previous_or_equal of a fire time {} in {}",
        next,
        tz
    );
    let just_before = next - TimeDelta::nanoseconds(1);
    if let Some(previous) = schedule.previous_or_equal(just_before, tz) {
        prop_assert!(
            previous <= after,
            "{} fires at {} between {} and next_after = {}",
            expression,
            previous,
            after,
            next
        );
    }
    if let Some(after_next) = schedule.next_after(next, tz) {
        prop_assert!(after_next > next);
    }
    prop_assert_eq!(schedule.next_at_or_after(next, tz), Some(next));
    Ok(())
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(schedule) = Schedule::parse(&text) {
            let t = DateTime::from_timestamp(1_767_225_600, 0).expect("2026");
            check_schedule(&text, t, chrono_tz::UTC)?;
            let _ = schedule.intervals_between(chrono_tz::UTC, t, t + TimeDelta::days(2));
        }
    }

    #[test]
    fn generated_expressions_behave(expression in expression(), after in instant(), tz in zone()) {
        check_schedule(&expression, after, tz)?;
    }

    #[test]
    fn valid_expressions_behave(
        minute in prop::sample::select(vec!["0", "*/15", "30", "0,30", "59", "*", "5-10"]),
        hour in prop::sample::select(vec!["*", "0", "2", "3", "*/6", "1-3", "23"]),
        dom in prop::sample::select(vec!["*", "1", "15", "31", "L", "29", "1,L"]),
        month in prop::sample::select(vec!["*", "2", "1,7", "FEB", "*/3"]),
        dow in prop::sample::select(vec!["*", "0", "1-5", "SUN", "1#5", "5#1", "6"]),
        after in instant(),
        tz in zone(),
    ) {
        let expression = format!("{minute} {hour} {dom} {month} {dow}");
        check_schedule(&expression, after, tz)?;
    }
}
