//! Deadlines: when a run or a task is late (`at` a wall-clock time after the data
//! interval, or `within` a duration of its start), decided from explicit times only.
//!
//! `docs/dag-format.md` ("Deadlines") gives the rules with examples; the scheduler asks
//! [`Deadline::due`] each tick and records a miss once.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::dag::{Callback, Dag, Task};
use crate::duration::{format_duration, human};

/// A deadline of a whole run (`[deadline]`) or of one task (`deadline = { … }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub due: Due,
    /// Fail what is late once the deadline passes (its running tries are stopped).
    #[serde(default)]
    pub fail: bool,
}

/// When a deadline falls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Due {
    /// A time of day in the DAG's time zone: the first such time at or after the run's
    /// data interval end.
    At(NaiveTime),
    /// A duration from the run's start (run deadline) or the task's first try's start
    /// (task deadline).
    Within(#[serde(with = "human")] Duration),
}

impl Deadline {
    /// The instant the deadline falls, or `None` while it cannot be known (a `within`
    /// deadline of something that has not started yet). `start` is the run's start for a
    /// run deadline, the start of the task's first try for a task deadline.
    pub fn due(
        &self,
        timezone: Tz,
        data_interval_end: DateTime<Utc>,
        start: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        match &self.due {
            Due::At(time) => Some(next_wall_time(data_interval_end, *time, timezone)),
            Due::Within(within) => {
                let within = TimeDelta::from_std(*within).ok()?;
                start?.checked_add_signed(within)
            }
        }
    }

    /// The deadline as a person reads it: `at 09:00 (Asia/Tokyo)`, `within 2h`.
    pub fn describe(&self, timezone: Tz) -> String {
        match &self.due {
            Due::At(time) => format!("at {} ({timezone})", time.format("%H:%M:%S")),
            Due::Within(within) => format!("within {}", format_duration(*within)),
        }
        .replace(":00 (", " (")
    }
}

/// Where a missed deadline is announced: the DAG's `on_deadline_missed` when set, else
/// (for a task's deadline) the task's `on_failure` (its own or `[defaults]`'), else the
/// DAG's `on_failure`. `None`: the miss is recorded and shown, but nobody is called.
pub fn missed_callback<'a>(dag: &'a Dag, task: Option<&'a Task>) -> Option<&'a Callback> {
    dag.on_deadline_missed
        .as_ref()
        .or_else(|| task.and_then(|t| t.on_failure.as_ref()))
        .or(dag.on_failure.as_ref())
}

/// The first instant at or after `after` whose wall-clock time in `timezone` is `time`.
/// A time that a daylight-saving change skips on some day falls at the first instant
/// after the gap that day; a time that occurs twice is its first occurrence.
pub fn next_wall_time(after: DateTime<Utc>, time: NaiveTime, timezone: Tz) -> DateTime<Utc> {
    let mut day = after.with_timezone(&timezone).date_naive();
    // Two days always suffice; four leave room for a time zone that skipped a whole day.
    for _ in 0..4 {
        if let Some(at) = on_day(day, time, timezone).filter(|at| *at >= after) {
            return at;
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    after
}

/// `time` on `day` in `timezone` (see [`next_wall_time`] for gaps and folds).
fn on_day(day: NaiveDate, time: NaiveTime, timezone: Tz) -> Option<DateTime<Utc>> {
    let mut local = day.and_time(time);
    // A daylight-saving gap is at most a few hours; step through it a minute at a time.
    for _ in 0..=24 * 60 {
        if let Some(at) = timezone.from_local_datetime(&local).earliest() {
            return Some(at.with_timezone(&Utc));
        }
        local += TimeDelta::minutes(1);
    }
    None
}

/// Parses a deadline's `at`: `HH:MM` or `HH:MM:SS`, 24-hour clock.
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, String> {
    let text = text.trim();
    ["%H:%M", "%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(text, f).ok())
        .ok_or_else(|| {
            format!("{text:?} is not a time of day: write HH:MM or HH:MM:SS (24-hour clock)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn at(text: &str) -> Deadline {
        Deadline {
            due: Due::At(parse_time_of_day(text).expect("time")),
            fail: false,
        }
    }

    #[test]
    fn at_is_the_first_such_time_at_or_after_the_interval_end() {
        let tokyo = chrono_tz::Asia::Tokyo;
        let cases = [
            // Daily at 03:00 Tokyo: the run of Jan 1 ends its interval Jan 2 03:00 JST and is
            // due Jan 2 09:00 JST (00:00 UTC).
            (
                "09:00",
                tokyo,
                "2026-01-01T18:00:00Z",
                "2026-01-02T00:00:00Z",
            ),
            // An interval ending exactly at the time is due at that instant.
            (
                "09:00",
                tokyo,
                "2026-01-02T00:00:00Z",
                "2026-01-02T00:00:00Z",
            ),
            // Hourly: the interval ending 10:00 JST is due the next day at 09:00.
            (
                "09:00",
                tokyo,
                "2026-01-02T01:00:00Z",
                "2026-01-03T00:00:00Z",
            ),
            // A manual run triggered at 23:30 UTC (its interval ends at its logical date).
            (
                "06:30",
                chrono_tz::UTC,
                "2026-01-01T23:30:00Z",
                "2026-01-02T06:30:00Z",
            ),
            (
                "00:00",
                chrono_tz::UTC,
                "2026-01-01T23:30:00Z",
                "2026-01-02T00:00:00Z",
            ),
            // 02:30 does not exist in New York on 2026-03-08: the first instant after the gap.
            (
                "02:30",
                chrono_tz::America::New_York,
                "2026-03-08T05:00:00Z",
                "2026-03-08T07:00:00Z",
            ),
            // 01:30 happens twice on 2026-11-01 in New York: the first one (EDT).
            (
                "01:30",
                chrono_tz::America::New_York,
                "2026-11-01T04:00:00Z",
                "2026-11-01T05:30:00Z",
            ),
        ];
        for (time, tz, end, expected) in cases {
            assert_eq!(
                at(time).due(tz, t(end), None),
                Some(t(expected)),
                "{time} {tz} after {end}"
            );
        }
    }

    #[test]
    fn within_counts_from_the_start_once_there_is_one() {
        let d = Deadline {
            due: Due::Within(Duration::from_secs(2 * 3600)),
            fail: true,
        };
        let end = t("2026-01-01T00:00:00Z");
        assert_eq!(d.due(chrono_tz::UTC, end, None), None);
        assert_eq!(
            d.due(chrono_tz::UTC, end, Some(t("2026-01-01T03:10:00Z"))),
            Some(t("2026-01-01T05:10:00Z"))
        );
        assert_eq!(d.describe(chrono_tz::UTC), "within 2h");
        assert_eq!(
            at("09:00").describe(chrono_tz::Asia::Tokyo),
            "at 09:00 (Asia/Tokyo)"
        );
        assert_eq!(at("09:00:30").describe(chrono_tz::UTC), "at 09:00:30 (UTC)");
    }

    #[test]
    fn times_of_day() {
        for (text, ok) in [
            ("09:00", true),
            ("9:00", true),
            ("23:59:59", true),
            ("24:00", false),
            ("09:60", false),
            ("9am", false),
            ("", false),
        ] {
            assert_eq!(parse_time_of_day(text).is_ok(), ok, "{text:?}");
        }
    }

    #[test]
    fn a_deadline_round_trips_through_json() {
        let d = Deadline {
            due: Due::Within(Duration::from_secs(90 * 60)),
            fail: true,
        };
        let json = serde_json::to_value(&d).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"due": {"within": "1h 30m"}, "fail": true})
        );
        assert_eq!(serde_json::from_value::<Deadline>(json).ok(), Some(d));
        let a = at("09:00");
        let json = serde_json::to_value(&a).expect("serialize");
        assert_eq!(serde_json::from_value::<Deadline>(json).ok(), Some(a));
    }
}
