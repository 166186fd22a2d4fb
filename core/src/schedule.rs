//! Schedules: 5-field cron expressions and presets, evaluated on the wall clock of a DAG's
//! IANA time zone under Vixie cron's daylight-saving policy, and Airflow-style data intervals.
//!
//! The syntax is normalised here and handed to `croner` as a plain numeric pattern; croner
//! only searches the next matching wall-clock minute (in a zone without daylight saving).
//! Mapping that wall-clock minute to an instant, including gaps and repeated hours, is done
//! here. The policy is written down in `docs/schedules.md`:
//!
//! - a fire time inside a spring-forward gap runs once, at the first instant after the gap;
//! - in a fall-back overlap a fixed-time schedule fires once (the first occurrence);
//! - a schedule whose minute or hour field starts with `*` (Vixie's "wildcard job", e.g.
//!   `*/15 * * * *`, `@hourly`) follows real elapsed time: it fires in both copies of a
//!   repeated hour, and gap times simply do not exist for it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed schedule expression (5-field cron or a preset such as `@daily`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    /// The normalised, purely numeric pattern croner evaluates on the wall clock.
    cron: Cron,
    /// Vixie cron's "wildcard job": the minute or hour field starts with `*`.
    recurs_within_hour: bool,
}

/// Why a schedule expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {expression:?}: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

/// One scheduled run's data interval, `[start, end)`, as in Airflow. The run for an interval
/// is due once the interval has ended; its logical date is `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DataInterval {
    /// Airflow's logical date (formerly "execution date"): the start of the interval.
    pub fn logical_date(&self) -> DateTime<Utc> {
        self.start
    }
}

/// Everything about a DAG that decides which data intervals it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DagTimetable {
    pub schedule: Schedule,
    pub timezone: Tz,
    /// The first interval starts at the first fire time at or after this instant. `None`:
    /// there is no history to catch up, only the latest interval runs.
    pub start_date: Option<DateTime<Utc>>,
    /// No interval starting after this instant is run.
    pub end_date: Option<DateTime<Utc>>,
    /// `true`: run every missed interval in order; `false`: skip to the latest due one.
    pub catchup: bool,
}

/// The largest change of UTC offset we look across when a clock goes back or forward.
/// (Real zones change by at most two hours; a day-skipping zone such as Pacific/Apia in 2011
/// is still handled as one long gap.)
const MAX_SHIFT: TimeDelta = TimeDelta::hours(3);

const PRESETS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    /// Parses a 5-field cron expression (`minute hour day-of-month month day-of-week`) or a
    /// preset (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`,
    /// `@annually`). The error's reason names the field at fault.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let error = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let trimmed = expression.trim();
        let text = if trimmed.starts_with('@') {
            PRESETS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
                .map(|(_, pattern)| *pattern)
                .ok_or_else(|| {
                    error(format!(
                        "unknown preset {trimmed:?} (expected one of @hourly, @daily, \
                         @midnight, @weekly, @monthly, @yearly, @annually)"
                    ))
                })?
        } else {
            trimmed
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = parts[..] else {
            return Err(error(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        };
        let parse = |field: Field, text: &str| {
            parse_field(field, text)
                .map_err(|reason| error(format!("{} field: {reason}", field.name())))
        };
        let minutes = parse(Field::Minute, minute)?;
        let hours = parse(Field::Hour, hour)?;
        let days = parse(Field::DayOfMonth, dom)?;
        let months = parse(Field::Month, month)?;
        let weekdays = parse(Field::DayOfWeek, dow)?;

        if !weekdays.nth.is_empty() {
            if weekdays.values != 0 {
                return Err(error(
                    "day-of-week field: an nth weekday (`#`) cannot be mixed with plain weekdays"
                        .to_owned(),
                ));
            }
            if dom != "*" {
                return Err(error(
                    "day-of-week field: an nth weekday (`#`) needs `*` in the day-of-month field"
                        .to_owned(),
                ));
            }
        }

        // croniter's rule (Airflow's engine), which is Vixie's "either matches" rule: when
        // both day fields are restricted a day matches if either does. A field counts as
        // unrestricted when it is `*`, or when it covers its whole range and the other day
        // field contains a `*`.
        let dom_covers_all = days.values == mask(1, 31) && !days.last_day;
        let dow_covers_all = weekdays.values == mask(0, 6);
        let dom_star = dom == "*" || (dom_covers_all && dow.contains('*'));
        let dow_star = dow == "*" || (dow_covers_all && dom.contains('*'));

        if dow_star && !dom_star && !days.last_day && !any_day_exists(days.values, months.values) {
            return Err(error(format!(
                "day-of-month field: day {} never occurs in the months of the month field",
                list(days.values)
            )));
        }

        let dom_pattern = if dom_star {
            "*".to_owned()
        } else {
            let mut items: Vec<String> = values(days.values).map(|d| d.to_string()).collect();
            if days.last_day {
                items.push("L".to_owned());
            }
            items.join(",")
        };
        let dow_pattern = if dow_star {
            "*".to_owned()
        } else if !weekdays.nth.is_empty() {
            let items: Vec<String> = weekdays
                .nth
                .iter()
                .map(|(d, n)| format!("{d}#{n}"))
                .collect();
            items.join(",")
        } else {
            list(weekdays.values)
        };
        let pattern = format!(
            "{} {} {dom_pattern} {} {dow_pattern}",
            list(minutes.values),
            list(hours.values),
            list(months.values)
        );
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&pattern)
            .map_err(|e| {
                error(format!(
                    "normalised pattern {pattern:?} was not accepted: {e}"
                ))
            })?;
        Ok(Schedule {
            expression: expression.to_owned(),
            cron,
            recurs_within_hour: minute.starts_with('*') || hour.starts_with('*'),
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether the schedule follows real elapsed time across clock changes (Vixie's
    /// "wildcard job": the minute or hour field starts with `*`).
    pub fn recurs_within_hour(&self) -> bool {
        self.recurs_within_hour
    }

    /// The first fire time strictly after `after`, evaluated in `tz`. `None` if the
    /// schedule never fires again (before the year 5000).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let offset_now = offset(tz, after);
        // If the clock goes back soon, wall-clock times before `after`'s wall clock are
        // still ahead of us: start the wall-clock search that much earlier.
        let offset_soon = offset(tz, after.checked_add_signed(MAX_SHIFT)?);
        let lookback = (offset_now - offset_soon).max(TimeDelta::zero());
        let wall_after = after.naive_utc().with_nanosecond(0)? + offset_now;
        let mut cursor = wall_after.checked_sub_signed(lookback)?;
        let mut best: Option<DateTime<Utc>> = None;
        // Wall-clock candidates at or past this bound cannot map before `best`.
        let mut bound: Option<NaiveDateTime> = None;
        while let Ok(wall) = self.cron.find_next_occurrence(&cursor, false) {
            if bound.is_some_and(|b| wall >= b) {
                break;
            }
            for fire in self.fire_instants(wall, tz).into_iter().flatten() {
                if fire > after && best.is_none_or(|b| fire < b) {
                    best = Some(fire);
                    bound = stop_bound(fire, tz);
                }
            }
            if bound.is_some_and(|b| wall >= b) {
                break;
            }
            cursor = wall;
        }
        best
    }

    /// The first fire time at or after `at`.
    pub fn next_at_or_after(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.next_after(at.checked_sub_signed(TimeDelta::nanoseconds(1))?, tz)
    }

    /// The latest fire time at or before `at`, evaluated in `tz`.
    pub fn previous_or_equal(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // A fire time at or before `at` has a wall clock at most `lookahead` past `at`'s
        // (more only if the clock went back in the last few hours).
        let offset_now = offset(tz, at);
        let lookahead =
            (offset(tz, at.checked_sub_signed(MAX_SHIFT)?) - offset_now).max(TimeDelta::zero());
        let mut candidate = self
            .cron
            .find_previous_occurrence(&(at.naive_utc() + offset_now + lookahead), true)
            .ok()?;
        loop {
            // Walk forward through real fire times from just before this wall-clock match.
            let approx = candidate.and_utc();
            let widest = [approx - MAX_SHIFT, approx, approx + MAX_SHIFT]
                .into_iter()
                .map(|t| offset(tz, t))
                .max()
                .unwrap_or_else(TimeDelta::zero);
            let mut cursor = approx
                .checked_sub_signed(widest)?
                .checked_sub_signed(TimeDelta::seconds(1))?;
            let mut found = None;
            while let Some(fire) = self.next_after(cursor, tz).filter(|f| *f <= at) {
                found = Some(fire);
                cursor = fire;
            }
            if found.is_some() {
                return found;
            }
            candidate = self.cron.find_previous_occurrence(&candidate, false).ok()?;
        }
    }

    /// The data intervals whose start lies in `[from, to]`, in order (for backfills).
    pub fn intervals_between(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DataInterval> {
        let mut intervals = Vec::new();
        let mut start = self.next_at_or_after(from, tz);
        while let Some(s) = start.filter(|s| *s <= to) {
            let Some(end) = self.next_after(s, tz) else {
                break;
            };
            intervals.push(DataInterval { start: s, end });
            start = Some(end);
        }
        intervals
    }

    /// The instants a wall-clock match stands for under the daylight-saving policy: one
    /// normally, two for a wildcard job in a repeated hour, none for a wildcard job in a gap.
    fn fire_instants(&self, wall: NaiveDateTime, tz: Tz) -> [Option<DateTime<Utc>>; 2] {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => [Some(t.to_utc()), None],
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = if a <= b { (a, b) } else { (b, a) };
                if self.recurs_within_hour {
                    [Some(first.to_utc()), Some(second.to_utc())]
                } else {
                    [Some(first.to_utc()), None]
                }
            }
            LocalResult::None if self.recurs_within_hour => [None, None],
            LocalResult::None => [first_instant_after_gap(wall, tz), None],
        }
    }
}

impl DagTimetable {
    /// The next data interval whose run is due at `now` (its end has passed), given the last
    /// interval already scheduled. `None` when nothing is due yet, or ever again.
    ///
    /// With `catchup` (and a `start_date` or a `last` to count from) that is the interval
    /// after `last`, or the first one at or after `start_date`; without, it is the latest
    /// interval that has ended, unless `last` already reaches it.
    pub fn next_data_interval(
        &self,
        last: Option<DataInterval>,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let (schedule, tz) = (&self.schedule, self.timezone);
        let earliest = match self.start_date {
            Some(start_date) => Some(schedule.next_at_or_after(start_date, tz)?),
            None => None,
        };
        let after_last = match last {
            Some(last) => Some(schedule.next_at_or_after(last.end, tz)?),
            None => None,
        };
        let mut start = if self.catchup && (after_last.is_some() || earliest.is_some()) {
            after_last.or(earliest)?
        } else {
            let latest_end = schedule.previous_or_equal(now, tz)?;
            schedule.previous_or_equal(
                latest_end.checked_sub_signed(TimeDelta::nanoseconds(1))?,
                tz,
            )?
        };
        for floor in [after_last, earliest].into_iter().flatten() {
            start = start.max(floor);
        }
        if self.end_date.is_some_and(|end_date| start > end_date) {
            return None;
        }
        let end = schedule.next_after(start, tz)?;
        (end <= now).then_some(DataInterval { start, end })
    }

    /// The data intervals whose start lies in `[from, to]` (see [`Schedule::intervals_between`]).
    pub fn intervals_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DataInterval> {
        self.schedule.intervals_between(self.timezone, from, to)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expression)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expression = String::deserialize(deserializer)?;
        Schedule::parse(&expression).map_err(serde::de::Error::custom)
    }
}

/// The UTC offset of `tz` at instant `t`.
fn offset(tz: Tz, t: DateTime<Utc>) -> TimeDelta {
    TimeDelta::seconds(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
            .into(),
    )
}

/// Wall-clock times at or past this cannot stand for an instant before `fire`: `fire`'s
/// wall clock, widened by the offset in force shortly before it (after a clock went back).
fn stop_bound(fire: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let widest = offset(tz, fire).max(offset(tz, fire.checked_sub_signed(MAX_SHIFT)?));
    fire.naive_utc().checked_add_signed(widest)
}

/// The first real instant after the gap that the wall-clock time `wall` falls in.
fn first_instant_after_gap(wall: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    // Gaps end on a whole minute in every zone since the 1970s; older local-mean-time
    // offsets have seconds, so refine to the second once a valid minute is found.
    let valid = |t: NaiveDateTime| tz.from_local_datetime(&t).earliest();
    for minutes in 1..=2 * 24 * 60 {
        let minute = wall.checked_add_signed(TimeDelta::minutes(minutes))?;
        if let Some(mut first) = valid(minute) {
            for seconds in 1..60 {
                match valid(minute - TimeDelta::seconds(seconds)) {
                    Some(earlier) => first = earlier,
                    None => break,
                }
            }
            return Some(first.to_utc());
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// The smallest and largest value that may be written (7 is Sunday, like 0).
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// The end of `*`, of `a/b` and of a wrap-around range's first part.
    fn cycle_max(self) -> u32 {
        match self {
            Field::DayOfWeek => 6,
            other => other.bounds().1,
        }
    }

    /// Names accepted for values, and the value of the first name.
    fn names(self) -> (&'static [&'static str], u32) {
        match self {
            Field::Month => (
                &[
                    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                    "DEC",
                ],
                1,
            ),
            Field::DayOfWeek => (&["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 0),
            _ => (&[], 0),
        }
    }
}

/// One field's values: a bit per value (day-of-week 7 folded into 0), plus `L` and `#`.
#[derive(Debug, Default)]
struct FieldSpec {
    values: u64,
    last_day: bool,
    nth: Vec<(u32, u32)>,
}

fn parse_field(field: Field, text: &str) -> Result<FieldSpec, String> {
    let mut spec = FieldSpec::default();
    for item in text.split(',') {
        parse_item(field, item, &mut spec)?;
    }
    Ok(spec)
}

fn parse_item(field: Field, item: &str, spec: &mut FieldSpec) -> Result<(), String> {
    if item.is_empty() {
        return Err("empty item in a list".to_owned());
    }
    let upper = item.to_ascii_uppercase();
    if upper == "L" {
        if field != Field::DayOfMonth {
            return Err(
                "`L` (last day of the month) is only allowed in the day-of-month field".to_owned(),
            );
        }
        spec.last_day = true;
        return Ok(());
    }
    if upper.contains('?') {
        return Err("`?` is not supported; write `*`".to_owned());
    }
    if let Some((day, nth)) = upper.split_once('#') {
        if field != Field::DayOfWeek {
            return Err(format!(
                "{item:?}: `#` (nth weekday) is only allowed in the day-of-week field"
            ));
        }
        let day = parse_value(field, day)? % 7;
        let nth = nth
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| format!("{item:?}: the n in `day#n` must be 1 to 5"))?;
        spec.nth.push((day, nth));
        return Ok(());
    }
    let (base, step) = match upper.split_once('/') {
        Some((base, step)) => {
            let step = step
                .parse::<u32>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("{item:?}: the step must be a whole number above 0"))?;
            (base, Some(step))
        }
        None => (upper.as_str(), None),
    };
    let (min, _) = field.bounds();
    let (mut low, high) = if base == "*" {
        (min, field.cycle_max())
    } else if let Some((a, b)) = base.split_once('-') {
        if a.is_empty() || b.is_empty() {
            return Err(format!(
                "{item:?} is not a valid range (negative numbers are not allowed)"
            ));
        }
        (parse_value(field, a)?, parse_value(field, b)?)
    } else {
        let value = parse_value(field, base)?;
        // `a/b` means `a-max/b`.
        (
            value,
            if step.is_some() {
                field.cycle_max().max(value)
            } else {
                value
            },
        )
    };
    // Sunday as 7 at the start of a range (`7-2`, `7/2`) is Sunday as 0.
    if field == Field::DayOfWeek && low == 7 && high != 7 {
        low = 0;
    }
    let step = step.unwrap_or(1);
    let mut insert = |v: u32| spec.values |= 1 << if field == Field::DayOfWeek { v % 7 } else { v };
    if low <= high {
        (low..=high).step_by(step as usize).for_each(&mut insert);
    } else if step > 1 {
        return Err(format!(
            "{item:?}: a wrap-around range cannot take a step (write it as a list)"
        ));
    } else {
        (low..=field.cycle_max())
            .chain(min..=high)
            .for_each(&mut insert);
    }
    Ok(())
}

fn parse_value(field: Field, text: &str) -> Result<u32, String> {
    let (min, max) = field.bounds();
    let value = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>()
            .map_err(|_| format!("{text} is out of range {min}-{max}"))?
    } else {
        let (names, first) = field.names();
        let position = names
            .iter()
            .position(|n| *n == text)
            .ok_or_else(|| match field {
                Field::Month => format!("{text:?} is not a number or a month name (JAN-DEC)"),
                Field::DayOfWeek => format!("{text:?} is not a number or a weekday name (SUN-SAT)"),
                _ => format!("{text:?} is not a number"),
            })?;
        first + position as u32
    };
    if value < min || value > max {
        return Err(format!("{value} is out of range {min}-{max}"));
    }
    Ok(value)
}

fn mask(low: u32, high: u32) -> u64 {
    (low..=high).fold(0, |m, v| m | 1 << v)
}

fn values(bits: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |v| bits & (1 << v) != 0)
}

fn list(bits: u64) -> String {
    values(bits)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether some chosen day of the month exists in some chosen month (29 February counts).
fn any_day_exists(days: u64, months: u64) -> bool {
    const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    values(months).any(|m| values(days).any(|d| d <= LONGEST[(m - 1) as usize]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .to_utc()
    }

    fn zone(name: &str) -> Tz {
        name.parse().unwrap_or_else(|e| panic!("{name:?}: {e}"))
    }

    fn schedule(expression: &str) -> Schedule {
        Schedule::parse(expression).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next `expected.len()` fire times after `from`, as RFC 3339 in the zone.
    fn check_fires(expression: &str, tz: &str, from: &str, expected: &[&str]) {
        let (schedule, tz) = (schedule(expression), zone(tz));
        let mut after = at(from);
        let mut actual = Vec::new();
        for _ in expected {
            let Some(next) = schedule.next_after(after, tz) else {
                break;
            };
            actual.push(next.with_timezone(&tz).to_rfc3339());
            after = next;
        }
        assert_eq!(actual, expected, "{expression:?} in {tz} after {from}");
    }

    #[test]
    fn spellings_that_mean_the_same_schedule() {
        let check =
            |a: &str, b: &str| assert_eq!(schedule(a).cron, schedule(b).cron, "{a:?} vs {b:?}");
        check("@midnight", "0 0 * * *");
        check("@DAILY", "0 0 * * *");
        check("@hourly", "0 * * * *");
        check("@weekly", "0 0 * * 0");
        check("@monthly", "0 0 1 * *");
        check("@yearly", "0 0 1 1 *");
        check("@annually", "0 0 1 1 *");
        check("0 0 * * 7", "0 0 * * 0");
        check("0 0 * * sun", "0 0 * * 0");
        check("0 0 * * 5-7", "0 0 * * 0,5,6");
        check("0 0 * * 7-2", "0 0 * * 0,1,2");
        check("0 0 * * 0-7", "0 0 * * *");
        check("0 0 * * 6-1", "0 0 * * 0,1,6");
        check("0 0 * * Fri-Mon", "0 0 * * 5,6,0,1");
        check("0 0 * jan,Jul *", "0 0 * 1,7 *");
        check("0 0 1 NOV-FEB *", "0 0 1 11,12,1,2 *");
        check("0 22-2 * * *", "0 22,23,0,1,2 * * *");
        check("50-10 * * * *", "50-59,0-10 * * * *");
        check("0 0 25-5 * *", "0 0 25-31,1-5 * *");
        check("10/20 * * * *", "10,30,50 * * * *");
        check("59/15 * * * *", "59 * * * *");
        check("0 1/3 * * *", "0 1,4,7,10,13,16,19,22 * * *");
        check("  0   3 * * *  ", "0 3 * * *");
        check("5-5 * * * *", "5 * * * *");
    }

    #[test]
    fn bad_expressions_name_the_field() {
        let check = |expression: &str, reason: &str| match Schedule::parse(expression) {
            Ok(_) => panic!("{expression:?} was accepted"),
            Err(e) => {
                assert_eq!(e.reason, reason, "{expression:?}");
                assert_eq!(e.expression, expression);
            }
        };
        check("61 * * * *", "minute field: 61 is out of range 0-59");
        check("* 24 * * *", "hour field: 24 is out of range 0-23");
        check("* * 0 * *", "day-of-month field: 0 is out of range 1-31");
        check("* * 32 * *", "day-of-month field: 32 is out of range 1-31");
        check("* * * 13 *", "month field: 13 is out of range 1-12");
        check("* * * 0 *", "month field: 0 is out of range 1-12");
        check("* * * * 8", "day-of-week field: 8 is out of range 0-7");
        check(
            "99999999999 * * * *",
            "minute field: 99999999999 is out of range 0-59",
        );
        let fields = "expected 5 fields (minute hour day-of-month month day-of-week), found";
        check("0 0 0 * * *", &format!("{fields} 6"));
        check("0 0 * * * 2026", &format!("{fields} 6"));
        check("0 0 * *", &format!("{fields} 4"));
        check("", &format!("{fields} 0"));
        check(
            "@reboot",
            "unknown preset \"@reboot\" (expected one of @hourly, @daily, @midnight, @weekly, \
             @monthly, @yearly, @annually)",
        );
        check(
            "*/0 * * * *",
            "minute field: \"*/0\": the step must be a whole number above 0",
        );
        check(
            "*/x * * * *",
            "minute field: \"*/x\": the step must be a whole number above 0",
        );
        check("1,,2 * * * *", "minute field: empty item in a list");
        check(
            "-5 * * * *",
            "minute field: \"-5\" is not a valid range (negative numbers are not allowed)",
        );
        check(
            "0 0 * FOO *",
            "month field: \"FOO\" is not a number or a month name (JAN-DEC)",
        );
        check(
            "0 0 * MON *",
            "month field: \"MON\" is not a number or a month name (JAN-DEC)",
        );
        check(
            "0 0 * * JAN",
            "day-of-week field: \"JAN\" is not a number or a weekday name (SUN-SAT)",
        );
        check("0 MON * * *", "hour field: \"MON\" is not a number");
        check("0 0 15W * *", "day-of-month field: \"15W\" is not a number");
        check(
            "0 0 ? * *",
            "day-of-month field: `?` is not supported; write `*`",
        );
        check("0 0 * * L", "day-of-week field: `L` (last day of the month) is only allowed in the day-of-month field");
        check(
            "0 0 * * MON#6",
            "day-of-week field: \"MON#6\": the n in `day#n` must be 1 to 5",
        );
        check("0 0 1#1 * *", "day-of-month field: \"1#1\": `#` (nth weekday) is only allowed in the day-of-week field");
        check(
            "0 0 1 * MON#1",
            "day-of-week field: an nth weekday (`#`) needs `*` in the day-of-month field",
        );
        check(
            "0 0 * * 1,MON#1",
            "day-of-week field: an nth weekday (`#`) cannot be mixed with plain weekdays",
        );
        check(
            "0 22-2/2 * * *",
            "hour field: \"22-2/2\": a wrap-around range cannot take a step (write it as a list)",
        );
        check(
            "0 0 30 2 *",
            "day-of-month field: day 30 never occurs in the months of the month field",
        );
        check(
            "0 0 31 4,6,9,11 *",
            "day-of-month field: day 31 never occurs in the months of the month field",
        );
    }

    #[test]
    fn impossible_day_of_month_is_fine_when_weekdays_also_decide() {
        // Either field matches: Mondays in February.
        check_fires(
            "0 0 31 2 1",
            "UTC",
            "2026-01-01T00:00:00Z",
            &["2026-02-02T00:00:00+00:00"],
        );
        check_fires(
            "0 0 29 2 *",
            "UTC",
            "2025-03-01T00:00:00Z",
            &["2028-02-29T00:00:00+00:00"],
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 1st or any Monday (1 Sep 2025 is both).
        let first_or_monday = [
            "2025-09-01T00:00:00+00:00",
            "2025-09-08T00:00:00+00:00",
            "2025-09-15T00:00:00+00:00",
            "2025-09-22T00:00:00+00:00",
            "2025-09-29T00:00:00+00:00",
            "2025-10-01T00:00:00+00:00",
            "2025-10-06T00:00:00+00:00",
        ];
        check_fires("0 0 1 * 1", "UTC", "2025-08-28T00:00:00Z", &first_or_monday);
        check_fires(
            "0 0 1 * MON",
            "UTC",
            "2025-08-28T00:00:00Z",
            &first_or_monday,
        );
        // A `*` day field leaves the other alone in charge.
        check_fires(
            "0 0 * * 1",
            "UTC",
            "2025-08-28T00:00:00Z",
            &["2025-09-01T00:00:00+00:00", "2025-09-08T00:00:00+00:00"],
        );
        check_fires(
            "0 0 1 * *",
            "UTC",
            "2025-08-28T00:00:00Z",
            &["2025-09-01T00:00:00+00:00", "2025-10-01T00:00:00+00:00"],
        );
        // `*/10` counts as restricted (croniter, Airflow): the 1st, 11th, 21st, 31st or Sunday.
        check_fires(
            "0 0 */10 * 0",
            "UTC",
            "2025-08-28T00:00:00Z",
            &[
                "2025-08-31T00:00:00+00:00",
                "2025-09-01T00:00:00+00:00",
                "2025-09-07T00:00:00+00:00",
                "2025-09-11T00:00:00+00:00",
            ],
        );
    }

    #[test]
    fn weekday_zero_and_seven_are_both_sunday() {
        let sundays = ["2025-08-31T09:00:00+00:00", "2025-09-07T09:00:00+00:00"];
        for expression in [
            "0 9 * * 0",
            "0 9 * * 7",
            "0 9 * * SUN",
            "0 9 * * sun",
            "0 9 * * 0,7",
            "0 9 * * 7-7",
        ] {
            check_fires(expression, "UTC", "2025-08-28T00:00:00Z", &sundays);
        }
        let weekend = [
            "2025-08-30T09:00:00+00:00",
            "2025-08-31T09:00:00+00:00",
            "2025-09-06T09:00:00+00:00",
        ];
        for expression in [
            "0 9 * * 6,7",
            "0 9 * * 6-7",
            "0 9 * * SAT-SUN",
            "0 9 * * 6-0",
        ] {
            check_fires(expression, "UTC", "2025-08-28T00:00:00Z", &weekend);
        }
    }

    #[test]
    fn last_day_of_month_and_nth_weekday() {
        check_fires(
            "0 0 L * *",
            "UTC",
            "2028-01-31T12:00:00Z",
            &[
                "2028-02-29T00:00:00+00:00",
                "2028-03-31T00:00:00+00:00",
                "2028-04-30T00:00:00+00:00",
            ],
        );
        // First Monday of the month.
        check_fires(
            "0 9 * * MON#1",
            "UTC",
            "2025-08-28T00:00:00Z",
            &["2025-09-01T09:00:00+00:00", "2025-10-06T09:00:00+00:00"],
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2025-03-09 (a Sunday): 02:00 EST becomes 03:00 EDT.
        let tz = "America/New_York";
        // Fixed times in the gap run once, at the first instant after it.
        check_fires(
            "30 2 * * *",
            tz,
            "2025-03-08T12:00:00-05:00",
            &["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        );
        check_fires(
            "0,30 2 * * *",
            tz,
            "2025-03-09T00:00:00-05:00",
            &["2025-03-09T03:00:00-04:00", "2025-03-10T02:00:00-04:00"],
        );
        check_fires(
            "0 2,3 * * *",
            tz,
            "2025-03-09T00:00:00-05:00",
            &["2025-03-09T03:00:00-04:00", "2025-03-10T02:00:00-04:00"],
        );
        check_fires(
            "59 2 * * *",
            tz,
            "2025-03-09T01:59:00-05:00",
            &["2025-03-09T03:00:00-04:00"],
        );
        // Weekday 7 and the day-of-month/day-of-week rule at the transition.
        check_fires(
            "30 2 * * 7",
            tz,
            "2025-03-08T12:00:00-05:00",
            &["2025-03-09T03:00:00-04:00", "2025-03-16T02:30:00-04:00"],
        );
        check_fires(
            "30 2 9 * 3",
            tz,
            "2025-03-08T12:00:00-05:00",
            &["2025-03-09T03:00:00-04:00", "2025-03-12T02:30:00-04:00"],
        );
        // Wildcard jobs follow real time: gap times do not exist.
        check_fires(
            "*/15 * * * *",
            tz,
            "2025-03-09T01:30:00-05:00",
            &[
                "2025-03-09T01:45:00-05:00",
                "2025-03-09T03:00:00-04:00",
                "2025-03-09T03:15:00-04:00",
            ],
        );
        check_fires(
            "30 * * * *",
            tz,
            "2025-03-09T01:00:00-05:00",
            &["2025-03-09T01:30:00-05:00", "2025-03-09T03:30:00-04:00"],
        );
        check_fires(
            "@hourly",
            tz,
            "2025-03-09T00:30:00-05:00",
            &[
                "2025-03-09T01:00:00-05:00",
                "2025-03-09T03:00:00-04:00",
                "2025-03-09T04:00:00-04:00",
            ],
        );
        check_fires(
            "*/30 2 * * *",
            tz,
            "2025-03-08T12:00:00-05:00",
            &["2025-03-10T02:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        );
        // From inside the (non-existent) hour: the instant 07:00Z is 03:00 EDT.
        check_fires(
            "0 3 * * *",
            tz,
            "2025-03-09T01:59:59-05:00",
            &["2025-03-09T03:00:00-04:00", "2025-03-10T03:00:00-04:00"],
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2025-11-02 (a Sunday): 02:00 EDT becomes 01:00 EST; 01:00-01:59 happens twice.
        let tz = "America/New_York";
        // Fixed times fire once, in the first pass.
        check_fires(
            "30 1 * * *",
            tz,
            "2025-11-01T12:00:00-04:00",
            &["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        );
        check_fires(
            "30 1 * * *",
            tz,
            "2025-11-02T01:40:00-04:00",
            &["2025-11-03T01:30:00-05:00"],
        );
        check_fires(
            "30 1 * * *",
            tz,
            "2025-11-02T01:10:00-05:00",
            &["2025-11-03T01:30:00-05:00"],
        );
        check_fires(
            "0 0-23 * * *",
            tz,
            "2025-11-02T00:30:00-04:00",
            &["2025-11-02T01:00:00-04:00", "2025-11-02T02:00:00-05:00"],
        );
        check_fires(
            "30 1 2 * 0",
            tz,
            "2025-11-01T12:00:00-04:00",
            &["2025-11-02T01:30:00-04:00", "2025-11-09T01:30:00-05:00"],
        );
        check_fires(
            "30 1 * * 7",
            tz,
            "2025-11-01T12:00:00-04:00",
            &["2025-11-02T01:30:00-04:00", "2025-11-09T01:30:00-05:00"],
        );
        // Wildcard jobs fire in both hours.
        let twice = [
            "2025-11-02T01:00:00-04:00",
            "2025-11-02T01:20:00-04:00",
            "2025-11-02T01:40:00-04:00",
            "2025-11-02T01:00:00-05:00",
            "2025-11-02T01:20:00-05:00",
            "2025-11-02T01:40:00-05:00",
            "2025-11-02T02:00:00-05:00",
        ];
        check_fires("*/20 * * * *", tz, "2025-11-02T00:50:00-04:00", &twice);
        check_fires("*/20 * * * *", tz, "2025-11-02T01:50:00-04:00", &twice[3..]);
        check_fires("*/20 * * * *", tz, "2025-11-02T01:10:00-05:00", &twice[4..]);
        check_fires(
            "@hourly",
            tz,
            "2025-11-02T00:30:00-04:00",
            &[
                "2025-11-02T01:00:00-04:00",
                "2025-11-02T01:00:00-05:00",
                "2025-11-02T02:00:00-05:00",
            ],
        );
        check_fires(
            "15 * * * *",
            tz,
            "2025-11-02T01:20:00-04:00",
            &["2025-11-02T01:15:00-05:00", "2025-11-02T02:15:00-05:00"],
        );
    }

    #[test]
    fn london_transitions() {
        let tz = "Europe/London";
        // 2025-03-30: 01:00 GMT becomes 02:00 BST.
        check_fires(
            "30 1 * * *",
            tz,
            "2025-03-29T12:00:00Z",
            &["2025-03-30T02:00:00+01:00", "2025-03-31T01:30:00+01:00"],
        );
        check_fires(
            "*/30 * * * *",
            tz,
            "2025-03-30T00:15:00Z",
            &[
                "2025-03-30T00:30:00+00:00",
                "2025-03-30T02:00:00+01:00",
                "2025-03-30T02:30:00+01:00",
            ],
        );
        // 2025-10-26 (a Sunday): 02:00 BST becomes 01:00 GMT.
        check_fires(
            "30 1 * * *",
            tz,
            "2025-10-25T12:00:00+01:00",
            &["2025-10-26T01:30:00+01:00", "2025-10-27T01:30:00+00:00"],
        );
        check_fires(
            "30 1 26 * 7",
            tz,
            "2025-10-25T12:00:00+01:00",
            &["2025-10-26T01:30:00+01:00", "2025-11-02T01:30:00+00:00"],
        );
        check_fires(
            "*/30 * * * *",
            tz,
            "2025-10-26T00:45:00+01:00",
            &[
                "2025-10-26T01:00:00+01:00",
                "2025-10-26T01:30:00+01:00",
                "2025-10-26T01:00:00+00:00",
                "2025-10-26T01:30:00+00:00",
                "2025-10-26T02:00:00+00:00",
            ],
        );
        check_fires(
            "0 0 * * *",
            tz,
            "2025-10-25T12:00:00+01:00",
            &["2025-10-26T00:00:00+01:00", "2025-10-27T00:00:00+00:00"],
        );
    }

    #[test]
    fn lord_howe_half_hour_transitions() {
        let tz = "Australia/Lord_Howe";
        // 2025-10-05 (a Sunday): 02:00 +10:30 becomes 02:30 +11:00, a 30-minute gap.
        check_fires(
            "15 2 * * *",
            tz,
            "2025-10-04T12:00:00+10:30",
            &["2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"],
        );
        check_fires(
            "15 2 * * 7",
            tz,
            "2025-10-04T12:00:00+10:30",
            &["2025-10-05T02:30:00+11:00", "2025-10-12T02:15:00+11:00"],
        );
        check_fires(
            "15 2 5 * 3",
            tz,
            "2025-10-04T12:00:00+10:30",
            &["2025-10-05T02:30:00+11:00", "2025-10-08T02:15:00+11:00"],
        );
        check_fires(
            "*/15 * * * *",
            tz,
            "2025-10-05T01:40:00+10:30",
            &[
                "2025-10-05T01:45:00+10:30",
                "2025-10-05T02:30:00+11:00",
                "2025-10-05T02:45:00+11:00",
            ],
        );
        check_fires(
            "@hourly",
            tz,
            "2025-10-05T01:10:00+10:30",
            &["2025-10-05T03:00:00+11:00", "2025-10-05T04:00:00+11:00"],
        );
        // 2025-04-06 (a Sunday): 02:00 +11:00 becomes 01:30 +10:30; 01:30-01:59 happens twice.
        check_fires(
            "45 1 * * *",
            tz,
            "2025-04-05T12:00:00+11:00",
            &["2025-04-06T01:45:00+11:00", "2025-04-07T01:45:00+10:30"],
        );
        check_fires(
            "45 1 * * 0",
            tz,
            "2025-04-05T12:00:00+11:00",
            &["2025-04-06T01:45:00+11:00", "2025-04-13T01:45:00+10:30"],
        );
        check_fires(
            "*/15 * * * *",
            tz,
            "2025-04-06T01:20:00+11:00",
            &[
                "2025-04-06T01:30:00+11:00",
                "2025-04-06T01:45:00+11:00",
                "2025-04-06T01:30:00+10:30",
                "2025-04-06T01:45:00+10:30",
                "2025-04-06T02:00:00+10:30",
            ],
        );
        check_fires(
            "@hourly",
            tz,
            "2025-04-06T00:30:00+11:00",
            &["2025-04-06T01:00:00+11:00", "2025-04-06T02:00:00+10:30"],
        );
    }

    #[test]
    fn previous_or_equal_is_the_last_fire_at_or_before() {
        // Compare against a forward walk, every 7 minutes across the transitions.
        let cases = [
            ("America/New_York", "2025-03-08T22:00:00-05:00"),
            ("America/New_York", "2025-11-01T22:00:00-04:00"),
            ("Europe/London", "2025-10-25T22:00:00+01:00"),
            ("Australia/Lord_Howe", "2025-04-05T22:00:00+11:00"),
            ("Australia/Lord_Howe", "2025-10-04T22:00:00+10:30"),
        ];
        let expressions = [
            "*/15 * * * *",
            "@hourly",
            "30 1 * * *",
            "15 2 * * *",
            "0,30 2 * * *",
            "0 0-23 * * *",
            "@daily",
        ];
        for (tz, from) in cases {
            let tz = zone(tz);
            for expression in expressions {
                let schedule = schedule(expression);
                let start = at(from) - TimeDelta::days(2);
                let mut fires = Vec::new();
                let mut after = start;
                while let Some(next) = schedule
                    .next_after(after, tz)
                    .filter(|n| *n < at(from) + TimeDelta::days(1))
                {
                    fires.push(next);
                    after = next;
                }
                let mut t = at(from);
                while t < at(from) + TimeDelta::hours(8) {
                    let expected = fires.iter().rev().find(|f| **f <= t).copied();
                    assert_eq!(
                        schedule.previous_or_equal(t, tz),
                        expected,
                        "{expression:?} in {tz} at {t}"
                    );
                    if let Some(f) = expected {
                        assert_eq!(
                            schedule.previous_or_equal(f, tz),
                            Some(f),
                            "{expression:?} exactly at {f}"
                        );
                    }
                    t += TimeDelta::minutes(7);
                }
            }
        }
    }

    fn tokyo_daily(
        start_date: Option<&str>,
        end_date: Option<&str>,
        catchup: bool,
    ) -> DagTimetable {
        DagTimetable {
            schedule: schedule("0 3 * * *"),
            timezone: zone("Asia/Tokyo"),
            start_date: start_date.map(at),
            end_date: end_date.map(at),
            catchup,
        }
    }

    fn interval(start: &str, end: &str) -> DataInterval {
        DataInterval {
            start: at(start),
            end: at(end),
        }
    }

    #[test]
    fn data_intervals() {
        let check = |timetable: &DagTimetable,
                     last: Option<(&str, &str)>,
                     now: &str,
                     expected: Option<(&str, &str)>| {
            let last = last.map(|(s, e)| interval(s, e));
            let expected = expected.map(|(s, e)| interval(s, e));
            assert_eq!(
                timetable.next_data_interval(last, at(now)),
                expected,
                "last {last:?}, now {now}"
            );
        };
        let (d1, d2, d3, d4, d5) = (
            "2026-01-01T03:00:00+09:00",
            "2026-01-02T03:00:00+09:00",
            "2026-01-03T03:00:00+09:00",
            "2026-01-04T03:00:00+09:00",
            "2026-01-05T03:00:00+09:00",
        );
        let catchup = tokyo_daily(Some("2026-01-01T00:00:00+09:00"), None, true);
        check(&catchup, None, "2026-01-01T12:00:00+09:00", None);
        check(&catchup, None, d2, Some((d1, d2)));
        check(&catchup, None, "2026-01-05T12:00:00+09:00", Some((d1, d2)));
        check(
            &catchup,
            Some((d1, d2)),
            "2026-01-05T12:00:00+09:00",
            Some((d2, d3)),
        );
        check(&catchup, Some((d4, d5)), "2026-01-05T12:00:00+09:00", None);
        // A start date between fire times: the first interval starts at the next one.
        let unaligned = tokyo_daily(Some("2026-01-01T10:00:00+09:00"), None, true);
        check(
            &unaligned,
            None,
            "2026-01-05T12:00:00+09:00",
            Some((d2, d3)),
        );
        // Without catchup only the latest interval that has ended runs.
        let latest = tokyo_daily(Some("2026-01-01T00:00:00+09:00"), None, false);
        check(&latest, None, "2026-01-05T12:00:00+09:00", Some((d4, d5)));
        check(
            &latest,
            Some((d1, d2)),
            "2026-01-05T12:00:00+09:00",
            Some((d4, d5)),
        );
        check(&latest, Some((d4, d5)), "2026-01-05T12:00:00+09:00", None);
        check(&latest, None, "2026-01-01T12:00:00+09:00", None);
        check(&latest, None, d2, Some((d1, d2)));
        // No start date: nothing to catch up, even with catchup on.
        let no_start = tokyo_daily(None, None, true);
        check(&no_start, None, "2026-01-05T12:00:00+09:00", Some((d4, d5)));
        check(
            &no_start,
            Some((d1, d2)),
            "2026-01-05T12:00:00+09:00",
            Some((d2, d3)),
        );
        // No interval starts after the end date; one starting exactly on it still runs.
        let ended = tokyo_daily(Some("2026-01-01T00:00:00+09:00"), Some(d2), true);
        check(
            &ended,
            Some((d1, d2)),
            "2026-01-05T12:00:00+09:00",
            Some((d2, d3)),
        );
        check(&ended, Some((d2, d3)), "2026-01-05T12:00:00+09:00", None);
        let ended_latest = tokyo_daily(Some("2026-01-01T00:00:00+09:00"), Some(d2), false);
        check(&ended_latest, None, "2026-01-05T12:00:00+09:00", None);
    }

    #[test]
    fn data_intervals_across_a_gap() {
        let timetable = DagTimetable {
            schedule: schedule("30 2 * * *"),
            timezone: zone("America/New_York"),
            start_date: Some(at("2025-03-08T00:00:00-05:00")),
            end_date: None,
            catchup: true,
        };
        let now = at("2025-03-11T00:00:00-04:00");
        let first = timetable.next_data_interval(None, now);
        assert_eq!(
            first,
            Some(interval(
                "2025-03-08T02:30:00-05:00",
                "2025-03-09T03:00:00-04:00"
            ))
        );
        let second = timetable.next_data_interval(first, now);
        assert_eq!(
            second,
            Some(interval(
                "2025-03-09T03:00:00-04:00",
                "2025-03-10T02:30:00-04:00"
            ))
        );
    }

    #[test]
    fn intervals_between_for_backfills() {
        let timetable = tokyo_daily(None, None, false);
        let check = |from: &str, to: &str, starts: &[&str]| {
            let actual: Vec<DateTime<Utc>> = timetable
                .intervals_between(at(from), at(to))
                .iter()
                .map(|i| i.start)
                .collect();
            let expected: Vec<DateTime<Utc>> = starts.iter().map(|s| at(s)).collect();
            assert_eq!(actual, expected, "[{from}, {to}]");
        };
        check(
            "2026-01-01T03:00:00+09:00",
            "2026-01-03T03:00:00+09:00",
            &[
                "2026-01-01T03:00:00+09:00",
                "2026-01-02T03:00:00+09:00",
                "2026-01-03T03:00:00+09:00",
            ],
        );
        check(
            "2026-01-01T03:00:01+09:00",
            "2026-01-02T12:00:00+09:00",
            &["2026-01-02T03:00:00+09:00"],
        );
        check(
            "2026-01-01T04:00:00+09:00",
            "2026-01-02T02:00:00+09:00",
            &[],
        );
        let intervals = timetable.intervals_between(
            at("2026-01-01T00:00:00+09:00"),
            at("2026-01-02T00:00:00+09:00"),
        );
        assert_eq!(
            intervals,
            [interval(
                "2026-01-01T03:00:00+09:00",
                "2026-01-02T03:00:00+09:00"
            )]
        );
        assert_eq!(intervals[0].logical_date(), at("2026-01-01T03:00:00+09:00"));
    }

    #[test]
    fn serde_uses_the_expression() {
        let daily = schedule("@daily");
        assert_eq!(
            serde_json::to_string(&daily).ok().as_deref(),
            Some("\"@daily\"")
        );
        assert_eq!(
            serde_json::from_str::<Schedule>("\"@daily\"").ok(),
            Some(daily)
        );
        let error = serde_json::from_str::<Schedule>("\"61 * * * *\"")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("invalid schedule \"61 * * * *\": minute field: 61 is out of range 0-59")
        );
        let span = interval("2026-01-01T03:00:00+09:00", "2026-01-02T03:00:00+09:00");
        let json = serde_json::to_string(&span).unwrap_or_default();
        assert_eq!(serde_json::from_str::<DataInterval>(&json).ok(), Some(span));
        assert_eq!(
            "0 3 * * *"
                .parse::<Schedule>()
                .map(|s| s.to_string())
                .ok()
                .as_deref(),
            Some("0 3 * * *")
        );
    }

    #[test]
    fn never_again_is_none() {
        let leap = schedule("0 0 29 2 *");
        assert_eq!(leap.next_after(at("4996-03-01T00:00:00Z"), Tz::UTC), None);
    }

    #[test]
    fn which_schedules_recur_within_the_hour() {
        let check = |expression: &str, expected: bool| {
            assert_eq!(
                schedule(expression).recurs_within_hour(),
                expected,
                "{expression:?}"
            );
        };
        check("*/15 * * * *", true);
        check("*/5 3 * * *", true);
        check("30 * * * *", true);
        check("@hourly", true);
        check("0 0-23 * * *", false);
        check("0,30 2 * * *", false);
        check("@daily", false);
        check("0 0 29 2 *", false);
    }
}
