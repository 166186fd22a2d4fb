//! Human-readable durations ("30s", "5m", "1h30m", "1d", "500ms") as written in DAG files.
//!
//! Parsing is humantime's; [`human`] and [`human::option`] are serde helpers that write
//! durations back in the same form, so a DAG serialized to JSON stays readable.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (write e.g. \"30s\", \"5m\", \"1h30m\")")]
    Empty,
    #[error(
        "invalid duration {value:?}: {reason} (write e.g. \"30s\", \"5m\", \"1h30m\", \"1d\")"
    )]
    Invalid { value: String, reason: String },
    #[error("duration {value:?} must be greater than zero")]
    Zero { value: String },
}

/// Parses a duration such as `"30s"`, `"5m"`, `"2h"`, `"1h30m"`, `"1d"` or `"500ms"`.
///
/// Zero (`"0s"`) is accepted; negative values and numbers without a unit are not.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    if may_overflow(trimmed) {
        return Err(DurationError::Invalid {
            value: s.to_owned(),
            reason: "number is too large".to_owned(),
        });
    }
    humantime::parse_duration(trimmed).map_err(|e| DurationError::Invalid {
        value: s.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether `text` adds up to more than [`Duration::MAX`]. humantime 2.4 panics instead of
/// reporting that overflow when its running sum carries one second past `u64::MAX`
/// (`"18446744073709551615s 500ms 500ms"`, found by fuzzing), so such text never reaches
/// it. The sum is taken in nanoseconds, reading the text as humantime does (digits merge
/// across whitespace; a unit follows its number); a fraction counts as one more whole
/// unit and an unknown unit as years (humantime rejects those anyway), so the sum is never
/// below humantime's.
fn may_overflow(text: &str) -> bool {
    const SECOND: u128 = 1_000_000_000;
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digit = |i: usize| {
        chars
            .get(i)
            .filter(|c| c.is_ascii_digit())
            .and_then(|c| c.to_digit(10))
            .map(u128::from)
    };
    let mut total: u128 = 0;
    let mut i = 0;
    while i < chars.len() {
        let Some(first) = digit(i) else {
            i += 1;
            continue;
        };
        let mut n = first;
        i += 1;
        while let Some(d) = digit(i) {
            n = n.saturating_mul(10).saturating_add(d);
            i += 1;
        }
        if chars.get(i) == Some(&'.') {
            n = n.saturating_add(1);
            i += 1;
            while digit(i).is_some() {
                i += 1;
            }
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == 'µ')
        {
            i += 1;
        }
        let unit: String = chars[start..i].iter().collect();
        let nanos_per_unit = match unit.as_str() {
            "nanos" | "nsec" | "ns" => 1,
            "usec" | "us" | "µs" => 1_000,
            "millis" | "msec" | "ms" => 1_000_000,
            "seconds" | "second" | "secs" | "sec" | "s" => SECOND,
            "minutes" | "minute" | "min" | "mins" | "m" => 60 * SECOND,
            "hours" | "hour" | "hr" | "hrs" | "h" => 3_600 * SECOND,
            "days" | "day" | "d" => 86_400 * SECOND,
            "weeks" | "week" | "wk" | "wks" | "w" => 604_800 * SECOND,
            "months" | "month" | "M" => 2_630_016 * SECOND,
            _ => 31_557_600 * SECOND,
        };
        total = total.saturating_add(n.saturating_mul(nanos_per_unit));
    }
    total > Duration::MAX.as_nanos()
}

/// Like [`parse_duration`], but zero is an error: for timeouts and intervals, where zero
/// has no meaning.
pub fn parse_positive_duration(s: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(DurationError::Zero {
            value: s.to_owned(),
        });
    }
    Ok(d)
}

/// Formats a duration the way [`parse_duration`] reads it back (`"1h 30m"`, `"500ms"`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    humantime::format_duration(d).to_string()
}

/// Serde helpers: `#[serde(with = "crate::duration::human")]` on a `Duration` field.
pub mod human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Duration>` (`null` when absent).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&super::super::format_duration(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| super::super::parse_duration(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Duration, &str>) {
        let got = parse_duration(input);
        match (&got, expected) {
            (Ok(d), Ok(want)) => assert_eq!(*d, want, "{input:?}"),
            (Err(e), Err(kind)) => {
                let got_kind = match e {
                    DurationError::Empty => "empty",
                    DurationError::Invalid { .. } => "invalid",
                    DurationError::Zero { .. } => "zero",
                };
                assert_eq!(got_kind, kind, "{input:?}: {e}");
            }
            _ => panic!("{input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        let s = Duration::from_secs;
        check("30s", Ok(s(30)));
        check("5m", Ok(s(300)));
        check("2h", Ok(s(7200)));
        check("1h30m", Ok(s(5400)));
        check("1h 30m", Ok(s(5400)));
        check("1d", Ok(s(86_400)));
        check("500ms", Ok(Duration::from_millis(500)));
        check(" 10m ", Ok(s(600)));
        check("0s", Ok(s(0)));
        check("", Err("empty"));
        check("   ", Err("empty"));
        check("30", Err("invalid"));
        check("-5m", Err("invalid"));
        check("5 minutes ago", Err("invalid"));
        check("1x", Err("invalid"));
        check("five", Err("invalid"));
    }

    #[test]
    fn sums_at_the_edge_of_the_range_are_errors_not_panics() {
        // Found by the `duration` fuzz target: humantime panicked on these.
        for input in [
            "999ms0ms18446744073709551615s1ms9991ms9999ms1ms5",
            "18446744073709551615s 500ms 500ms",
            "18446744073709551614s 1000ms 1000ms",
            "584542046090y 19767615s 500ms 500ms",
        ] {
            check(input, Err("invalid"));
        }
        // The largest durations still read back, in any unit.
        check(
            "18446744073709551614s",
            Ok(Duration::from_secs(u64::MAX - 1)),
        );
        check(
            "18446744073709551614s 999ms",
            Ok(Duration::new(u64::MAX - 1, 999_000_000)),
        );
        let d = Duration::new(u64::MAX - 1, 999_999_999);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        check("1.5h 30m 1000000000ns", Ok(Duration::from_secs(7_201)));
    }

    #[test]
    fn positive_rejects_zero_only() {
        assert_eq!(
            parse_positive_duration("0m"),
            Err(DurationError::Zero {
                value: "0m".to_owned()
            })
        );
        assert_eq!(parse_positive_duration("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn format_reads_back() {
        for secs in [0, 1, 59, 60, 90, 3600, 5400, 86_400, 90_061] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{secs}s");
        }
        let d = Duration::from_millis(1500);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn serde_helpers_round_trip_through_json() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "human")]
            a: Duration,
            #[serde(with = "human::option")]
            b: Option<Duration>,
            #[serde(with = "human::option")]
            c: Option<Duration>,
        }
        let v = S {
            a: Duration::from_secs(5400),
            b: Some(Duration::from_millis(500)),
            c: None,
        };
        let json = serde_json::to_string(&v).expect("serialize");
        assert_eq!(json, r#"{"a":"1h 30m","b":"500ms","c":null}"#);
        assert_eq!(serde_json::from_str::<S>(&json).expect("deserialize"), v);
        assert!(serde_json::from_str::<S>(r#"{"a":"soon","b":null,"c":null}"#).is_err());
    }
}
