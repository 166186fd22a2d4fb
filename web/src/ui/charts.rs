//! The history charts' geometry: pure functions from runs and tries to what
//! `templates/charts.html` draws as SVG (and the text alternative beside it). The
//! run-duration and try-duration charts (bars on a "nice" duration scale, p50 and p95
//! lines, failures marked with a symbol and a hatch, not only a colour), the calendar of
//! a year of daily outcomes (weeks across, Monday to Sunday down, days in the DAG's time
//! zone) and the grid's per-run duration bars. Nothing here reads the store or the clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::templates::human_duration;

/// How a bar or a calendar day ended, as its CSS class (`o-…`) and its symbol say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No run (a calendar day without one).
    None,
    Success,
    /// Not finished yet (queued or running).
    Running,
    /// A try that failed and was retried.
    Retried,
    /// A run that succeeded although a task of it failed (an `all_done` cleanup).
    FailedTask,
    Failed,
}

impl Outcome {
    /// The mark drawn beside the colour, so the outcome does not rest on colour alone.
    pub fn symbol(self) -> &'static str {
        match self {
            Outcome::None | Outcome::Success => "",
            Outcome::Running => "…",
            Outcome::Retried => "↻",
            Outcome::FailedTask => "!",
            Outcome::Failed => "✕",
        }
    }

    /// In words, for titles and tables.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::None => "no run",
            Outcome::Success => "success",
            Outcome::Running => "unfinished",
            Outcome::Retried => "failed, retried",
            Outcome::FailedTask => "success with a failed task",
            Outcome::Failed => "failed",
        }
    }
}

/// One bar of a duration chart: a run or a try.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationPoint {
    /// What the bar is (a run id, or a run id and try number).
    pub label: String,
    /// The run's logical date (the x axis's dates).
    pub at: DateTime<Utc>,
    /// Seconds from start to end (to now while running); none before it started.
    pub seconds: Option<i64>,
    pub outcome: Outcome,
    pub href: String,
}

/// A duration chart, laid out (`duration_chart` in `charts.html` draws it).
#[derive(Debug, Clone, Serialize)]
pub struct DurationChart {
    /// Unique on its page: the ids of the chart's title and patterns.
    pub id: String,
    /// What the chart shows (its `<title>` and aria-label).
    pub title: String,
    /// The chart in one sentence (its text alternative, with the table).
    pub summary: String,
    pub width: i64,
    pub height: i64,
    /// The plot area's left edge, right edge, top and bottom (the x axis).
    pub left: i64,
    pub right: i64,
    pub top: i64,
    pub bottom: i64,
    pub bars: Vec<Bar>,
    pub y_ticks: Vec<Tick>,
    pub x_labels: Vec<Tick>,
    pub p50: Option<Guide>,
    pub p95: Option<Guide>,
    /// The text alternative: one row per bar, newest first.
    pub rows: Vec<ChartRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    /// The symbol's centre.
    pub cx: i64,
    pub outcome: Outcome,
    pub symbol: &'static str,
    /// "label: outcome, duration" (its `<title>`).
    pub title: String,
    pub href: String,
}

/// A label on an axis at `pos` (x for dates, y for durations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tick {
    pub pos: i64,
    pub label: String,
}

/// A horizontal line across the plot (p50, p95) with its label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Guide {
    pub y: i64,
    pub seconds: i64,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChartRow {
    pub label: String,
    pub href: String,
    pub date: String,
    pub outcome: Outcome,
    pub words: &'static str,
    pub duration: String,
}

const LEFT: i64 = 58;
const RIGHT_PAD: i64 = 92;
const TOP: i64 = 18;
const PLOT_HEIGHT: i64 = 150;
const BOTTOM_PAD: i64 = 34;
const BAR: i64 = 10;
const GAP: i64 = 4;
/// Pixels per character of an axis label (11 px system font, digits).
const CHAR: i64 = 7;

/// The duration written short: `45s`, `4m 10s`, `1h 30m`, `2h` (no zero parts, no
/// seconds beside hours).
pub fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m, sec) {
        (0, 0, _) => format!("{sec}s"),
        (0, _, 0) => format!("{m}m"),
        (0, _, _) => format!("{m}m {sec}s"),
        (_, 0, _) => format!("{h}h"),
        _ => format!("{h}h {m}m"),
    }
}

/// The scale's step and top for durations up to `max` seconds: the smallest step among
/// round durations that needs at most 5 steps, and the top as a whole number of steps.
pub fn nice_scale(max: i64) -> (i64, i64) {
    const STEPS: [i64; 22] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200,
        86_400, 172_800, 432_000, 864_000, 2_592_000,
    ];
    let max = max.max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|step| (max + step - 1) / step <= 5)
        .unwrap_or_else(|| (max + 4) / 5);
    let top = (max + step - 1) / step * step;
    (step, top)
}

/// The `percent` percentile by nearest rank: the smallest value with at least `percent`
/// % of the values at or below it (integer arithmetic: no rounding surprises). None for
/// no values.
pub fn percentile(values: &[i64], percent: usize) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (percent * sorted.len()).div_ceil(100);
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A date label in the DAG's zone: `MM-DD`, with the time when two points share a day.
fn date_label(at: DateTime<Utc>, tz: Tz, with_time: bool) -> String {
    let local = at.with_timezone(&tz);
    if with_time {
        local.format("%m-%d %H:%M").to_string()
    } else {
        local.format("%m-%d").to_string()
    }
}

/// Lays out `points` (oldest first) as bars on a duration scale, with p50 and p95 of the
/// finished ones (not failed-and-unfinished alike: every point with a duration that is
/// not still running), dates in `tz` under the bars.
pub fn duration_chart(id: &str, title: &str, points: &[DurationPoint], tz: Tz) -> DurationChart {
    let n = points.len() as i64;
    let right = LEFT + n * (BAR + GAP) + GAP;
    let width = (right + RIGHT_PAD).max(320);
    let bottom = TOP + PLOT_HEIGHT;
    let height = bottom + BOTTOM_PAD;
    let max = points.iter().filter_map(|p| p.seconds).max().unwrap_or(0);
    let (step, top_value) = nice_scale(max);
    let y_of = |seconds: i64| bottom - seconds.clamp(0, top_value) * PLOT_HEIGHT / top_value;
    let y_ticks = (0..=top_value / step)
        .map(|i| Tick {
            pos: y_of(i * step),
            label: short_duration(i * step),
        })
        .collect();
    let finished: Vec<i64> = points
        .iter()
        .filter(|p| p.outcome != Outcome::Running)
        .filter_map(|p| p.seconds)
        .collect();
    let guide = |q: usize, name: &str| {
        percentile(&finished, q).map(|seconds| Guide {
            y: y_of(seconds),
            seconds,
            label: format!("{name} {}", short_duration(seconds)),
        })
    };
    let (p50, mut p95) = (guide(50, "p50"), guide(95, "p95"));
    // Labels 12 px apart at least: a p95 right on p50 moves up.
    if let (Some(a), Some(b)) = (&p50, &mut p95) {
        if a.y - b.y < 12 {
            b.y = a.y - 12;
        }
    }
    let days: Vec<String> = points.iter().map(|p| date_label(p.at, tz, false)).collect();
    let same_day = days.windows(2).any(|w| w[0] == w[1]);
    let label_chars = if same_day { 11 } else { 5 };
    let every = ((label_chars * CHAR + 8) / (BAR + GAP) + 1).max(1) as usize;
    let x_of = |i: usize| LEFT + GAP + i as i64 * (BAR + GAP);
    let x_labels = points
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, p)| Tick {
            pos: x_of(i),
            label: date_label(p.at, tz, same_day),
        })
        .collect();
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let seconds = p.seconds.unwrap_or(0);
            // A bar of at least 2 px: a zero-second run is still visible.
            let y = y_of(seconds).min(bottom - 2);
            let duration = p.seconds.map_or("not started".to_owned(), human_duration);
            Bar {
                x: x_of(i),
                y,
                w: BAR,
                h: bottom - y,
                cx: x_of(i) + BAR / 2,
                outcome: p.outcome,
                symbol: p.outcome.symbol(),
                title: format!("{}: {}, {duration}", p.label, p.outcome.words()),
                href: p.href.clone(),
            }
        })
        .collect();
    let rows = points
        .iter()
        .rev()
        .map(|p| ChartRow {
            label: p.label.clone(),
            href: p.href.clone(),
            date: p.at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
            outcome: p.outcome,
            words: p.outcome.words(),
            duration: p.seconds.map_or(String::new(), human_duration),
        })
        .collect();
    DurationChart {
        id: id.to_owned(),
        title: title.to_owned(),
        summary: summary(points, &finished, tz),
        width,
        height,
        left: LEFT,
        right,
        top: TOP,
        bottom,
        bars,
        y_ticks,
        x_labels,
        p50,
        p95,
        rows,
    }
}

/// "50 from 2026-01-01 to 2026-02-19: p50 4m 10s, p95 6m 2s; 2 failed, 1 succeeded with a
/// failed task."
fn summary(points: &[DurationPoint], finished: &[i64], tz: Tz) -> String {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "Nothing has run yet.".to_owned();
    };
    let day = |at: DateTime<Utc>| at.with_timezone(&tz).format("%Y-%m-%d").to_string();
    let mut text = format!(
        "{} from {} to {}",
        points.len(),
        day(first.at),
        day(last.at)
    );
    if let (Some(p50), Some(p95)) = (percentile(finished, 50), percentile(finished, 95)) {
        text.push_str(&format!(
            ": p50 {}, p95 {}",
            human_duration(p50),
            human_duration(p95)
        ));
    }
    let count = |o: Outcome| points.iter().filter(|p| p.outcome == o).count();
    let mut marks = Vec::new();
    for (outcome, words) in [
        (Outcome::Failed, "failed"),
        (Outcome::Retried, "failed and retried"),
        (Outcome::FailedTask, "succeeded with a failed task"),
        (Outcome::Running, "unfinished"),
    ] {
        let n = count(outcome);
        if n > 0 {
            marks.push(format!("{n} {words}"));
        }
    }
    if marks.is_empty() {
        text.push_str("; none failed.");
    } else {
        text.push_str(&format!("; {}.", marks.join(", ")));
    }
    text
}

/// The heights (0 to `max_height` px) of the grid's duration bars: each run's duration
/// relative to the longest shown; a run with a duration gets at least 1 px.
pub fn grid_bars(durations: &[Option<i64>], max_height: i64) -> Vec<i64> {
    let longest = durations
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    durations
        .iter()
        .map(|d| d.map_or(0, |s| (s.max(0) * max_height / longest).max(1)))
        .collect()
}

/// A day's runs, counted by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayRuns {
    pub success: u32,
    pub failed_task: u32,
    pub failed: u32,
    pub unfinished: u32,
}

impl DayRuns {
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Failed | Outcome::Retried => self.failed += 1,
            Outcome::FailedTask => self.failed_task += 1,
            Outcome::Running => self.unfinished += 1,
            Outcome::Success => self.success += 1,
            Outcome::None => {}
        }
    }

    pub fn total(&self) -> u32 {
        self.success + self.failed_task + self.failed + self.unfinished
    }

    /// The day's worst outcome.
    pub fn worst(&self) -> Outcome {
        if self.failed > 0 {
            Outcome::Failed
        } else if self.failed_task > 0 {
            Outcome::FailedTask
        } else if self.unfinished > 0 {
            Outcome::Running
        } else if self.success > 0 {
            Outcome::Success
        } else {
            Outcome::None
        }
    }

    fn words(&self) -> String {
        let mut parts = vec![format!(
            "{} run{}",
            self.total(),
            if self.total() == 1 { "" } else { "s" }
        )];
        for (n, what) in [
            (self.failed, "failed"),
            (self.failed_task, "with a failed task"),
            (self.unfinished, "unfinished"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}

/// The day a run belongs to: its logical date's date in the DAG's zone.
pub fn day_of(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The instant a day starts in `tz` (after a gap at midnight, the first instant that day).
pub fn day_start(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut naive = date.and_time(chrono::NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&naive).earliest() {
            return at.with_timezone(&Utc);
        }
        naive += TimeDelta::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

/// The year that ends on `last` (inclusive): from the day after the same date a year
/// earlier (365 days, 366 across a 29 February).
pub fn year_to(last: NaiveDate) -> (NaiveDate, NaiveDate) {
    let year_before = last
        .checked_sub_months(Months::new(12))
        .unwrap_or(NaiveDate::MIN);
    (year_before.succ_opt().unwrap_or(year_before), last)
}

/// A calendar year, 1 January to 31 December.
pub fn calendar_year(year: i32) -> Option<(NaiveDate, NaiveDate)> {
    Some((
        NaiveDate::from_ymd_opt(year, 1, 1)?,
        NaiveDate::from_ymd_opt(year, 12, 31)?,
    ))
}

/// A calendar, laid out (`calendar` in `charts.html` draws it).
#[derive(Debug, Clone, Serialize)]
pub struct Calendar {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub width: i64,
    pub height: i64,
    pub cell: i64,
    pub days: Vec<DayCell>,
    /// Month names over the week where each month starts.
    pub months: Vec<Tick>,
    /// Mon, Wed, Fri at the left of their rows.
    pub weekdays: Vec<Tick>,
    /// The text alternative: one row per month.
    pub month_rows: Vec<MonthRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayCell {
    pub x: i64,
    pub y: i64,
    pub date: String,
    pub outcome: Outcome,
    pub symbol: &'static str,
    /// "2026-01-02: 3 runs, 1 failed".
    pub title: String,
    /// That day's runs; none for a day without runs.
    pub href: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MonthRow {
    /// `2026-01`.
    pub month: String,
    pub days_with_runs: u32,
    pub success_days: u32,
    pub failed_task_days: u32,
    pub failed_days: u32,
    pub runs: u32,
}

const CELL: i64 = 11;
const PITCH: i64 = 13;
const CAL_LEFT: i64 = 32;
const CAL_TOP: i64 = 18;

/// Lays out the days `from..=to`: one column per week (Monday on top), a cell per day
/// coloured (and patterned) by its worst outcome, each day with runs linking to
/// `href(date)`.
pub fn calendar(
    id: &str,
    title: &str,
    (from, to): (NaiveDate, NaiveDate),
    days: &BTreeMap<NaiveDate, DayRuns>,
    href: impl Fn(NaiveDate) -> String,
) -> Calendar {
    let monday = from - TimeDelta::days(i64::from(from.weekday().num_days_from_monday()));
    let column = |d: NaiveDate| (d - monday).num_days() / 7;
    let mut cells = Vec::new();
    let mut months: Vec<Tick> = Vec::new();
    let mut month_rows: Vec<MonthRow> = Vec::new();
    let mut totals = DayRuns::default();
    let mut day_counts = [0u32; 3]; // days with runs, days with a failure, failed-task days
    for date in from.iter_days().take_while(|d| *d <= to) {
        let x = CAL_LEFT + column(date) * PITCH;
        let y = CAL_TOP + i64::from(date.weekday().num_days_from_monday()) * PITCH;
        let runs = days.get(&date).copied().unwrap_or_default();
        let outcome = runs.worst();
        let name = date.format("%Y-%m-%d").to_string();
        if date.day() == 1 || date == from {
            let label = date.format("%b").to_string();
            // A month that starts in the last column of the one before gets no label
            // over the other's.
            if months.last().is_none_or(|m| x - m.pos >= 3 * PITCH) {
                months.push(Tick { pos: x, label });
            }
            month_rows.push(MonthRow {
                month: date.format("%Y-%m").to_string(),
                ..MonthRow::default()
            });
        }
        if let Some(row) = month_rows.last_mut() {
            if runs.total() > 0 {
                row.days_with_runs += 1;
                row.runs += runs.total();
                match outcome {
                    Outcome::Failed => row.failed_days += 1,
                    Outcome::FailedTask => row.failed_task_days += 1,
                    Outcome::Success => row.success_days += 1,
                    _ => {}
                }
            }
        }
        if runs.total() > 0 {
            day_counts[0] += 1;
            match outcome {
                Outcome::Failed => day_counts[1] += 1,
                Outcome::FailedTask => day_counts[2] += 1,
                _ => {}
            }
        }
        totals.success += runs.success;
        totals.failed += runs.failed;
        totals.failed_task += runs.failed_task;
        totals.unfinished += runs.unfinished;
        cells.push(DayCell {
            x,
            y,
            title: if runs.total() > 0 {
                format!("{name}: {}", runs.words())
            } else {
                format!("{name}: no runs")
            },
            date: name,
            outcome,
            symbol: outcome.symbol(),
            href: (runs.total() > 0).then(|| href(date)),
        });
    }
    let weeks = column(to) + 1;
    let weekdays = [(0, "Mon"), (2, "Wed"), (4, "Fri")]
        .into_iter()
        .map(|(row, label)| Tick {
            pos: CAL_TOP + row * PITCH + CELL - 2,
            label: label.to_owned(),
        })
        .collect();
    let span = (to - from).num_days() + 1;
    let summary = format!(
        "{span} days from {from} to {to}: {} with runs ({} runs), {} with a failed run, \
         {} with a run that succeeded with a failed task.",
        day_counts[0],
        totals.total(),
        day_counts[1],
        day_counts[2],
    );
    Calendar {
        id: id.to_owned(),
        title: title.to_owned(),
        summary,
        width: CAL_LEFT + weeks * PITCH + 4,
        height: CAL_TOP + 7 * PITCH + 4,
        cell: CELL,
        days: cells,
        months,
        weekdays,
        month_rows,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A run-duration chart with every kind of bar, p50 and p95 (for the template samples).
    pub fn sample_chart(id: &str) -> DurationChart {
        let points = [
            Outcome::Success,
            Outcome::Failed,
            Outcome::FailedTask,
            Outcome::Retried,
            Outcome::Running,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, outcome)| point(i as u32 + 1, Some(60 * (i as i64 + 1)), outcome))
        .collect::<Vec<_>>();
        duration_chart(id, "Run durations <of> nightly", &points, Tz::UTC)
    }

    /// A calendar year with a failed day, a failed-task day and a quiet one.
    pub fn sample_calendar() -> Calendar {
        let mut days = BTreeMap::new();
        days.insert(date("2026-01-02"), runs(&[Outcome::Failed]));
        days.insert(date("2026-01-03"), runs(&[Outcome::FailedTask]));
        days.insert(
            date("2026-01-04"),
            runs(&[Outcome::Success, Outcome::Running]),
        );
        let range = calendar_year(2026).unwrap_or_else(|| panic!("2026"));
        calendar("calendar", "2026 <of> nightly", range, &days, |d| {
            format!("/dags/nightly?date={d}")
        })
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|err| panic!("{rfc3339}: {err}"))
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn durations_are_written_short() {
        for (secs, expected) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (250, "4m 10s"),
            (3600, "1h"),
            (5400, "1h 30m"),
            (5430, "1h 30m"),
            (-3, "0s"),
        ] {
            assert_eq!(short_duration(secs), expected, "{secs}");
        }
    }

    #[test]
    fn scales_take_round_steps_and_at_most_five_of_them() {
        for (max, expected) in [
            (0, (1, 1)),
            (4, (1, 4)),
            (7, (2, 8)),
            (50, (10, 50)),
            (61, (15, 75)),
            (250, (60, 300)),
            (301, (120, 360)),
            (3599, (900, 3600)),
            (3601, (900, 4500)),
            (5 * 3600 + 1, (7200, 21_600)),
        ] {
            assert_eq!(nice_scale(max), expected, "max {max}");
            let (step, top) = nice_scale(max);
            assert!(top >= max && top / step <= 5, "{max}: {step} {top}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[4, 1, 3, 2], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 50), Some(3));
        let hundred: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 95), Some(95));
        let twenty: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&twenty, 95), Some(19));
        // One slow run in twenty moves p95, not p50.
        let mut slow = vec![60; 19];
        slow.push(3600);
        assert_eq!(percentile(&slow, 50), Some(60));
        assert_eq!(percentile(&slow, 95), Some(60));
        slow.push(3600);
        assert_eq!(percentile(&slow, 95), Some(3600));
    }

    fn point(day: u32, seconds: Option<i64>, outcome: Outcome) -> DurationPoint {
        DurationPoint {
            label: format!("run_{day}"),
            at: at(&format!("2026-01-{day:02}T18:00:00Z")),
            seconds,
            outcome,
            href: format!("/dags/d/runs/run_{day}"),
        }
    }

    #[test]
    fn a_duration_chart_scales_bars_and_marks_failures() {
        let points = vec![
            point(1, Some(60), Outcome::Success),
            point(2, Some(120), Outcome::Failed),
            point(3, Some(300), Outcome::FailedTask),
            point(4, Some(30), Outcome::Running),
            point(5, None, Outcome::Running),
        ];
        let tz: Tz = "Asia/Tokyo".parse().expect("zone");
        let chart = duration_chart("runs", "Run durations", &points, tz);
        // 300 s on a 60 s step: the top is 300 s at the plot's top.
        assert_eq!(
            chart.y_ticks.first(),
            Some(&Tick {
                pos: chart.bottom,
                label: "0s".to_owned()
            })
        );
        assert_eq!(
            chart.y_ticks.last(),
            Some(&Tick {
                pos: chart.top,
                label: "5m".to_owned()
            })
        );
        let heights: Vec<i64> = chart.bars.iter().map(|b| b.h).collect();
        assert_eq!(heights, [30, 60, 150, 15, 2]);
        let symbols: Vec<&str> = chart.bars.iter().map(|b| b.symbol).collect();
        assert_eq!(symbols, ["", "✕", "!", "…", "…"]);
        assert_eq!(chart.bars[1].title, "run_2: failed, 2m 0s");
        // p50 and p95 of the finished runs (60, 120, 300), not of the running ones.
        let p50 = chart.p50.clone().expect("p50");
        assert_eq!((p50.seconds, p50.label.as_str()), (120, "p50 2m"));
        let p95 = chart.p95.clone().expect("p95");
        assert_eq!((p95.seconds, p95.y), (300, chart.top));
        // Dates in the DAG's zone: 18:00 UTC is the next day in Tokyo.
        assert_eq!(chart.x_labels[0].label, "01-02");
        assert_eq!(chart.rows[0].date, "2026-01-06 03:00");
        assert_eq!(chart.rows[0].label, "run_5");
        assert_eq!(
            chart.summary,
            "5 from 2026-01-02 to 2026-01-06: p50 2m 0s, p95 5m 0s; 1 failed, \
             1 succeeded with a failed task, 2 unfinished."
        );
        // Every bar inside the chart.
        assert!(chart.bars.iter().all(|b| b.x + b.w <= chart.width));
    }

    #[test]
    fn close_p50_and_p95_labels_do_not_overlap() {
        let points: Vec<DurationPoint> = (1..=20)
            .map(|d| point(d, Some(100 + i64::from(d)), Outcome::Success))
            .collect();
        let chart = duration_chart("runs", "Run durations", &points, Tz::UTC);
        let (p50, p95) = (chart.p50.expect("p50"), chart.p95.expect("p95"));
        assert!(p50.y - p95.y >= 12, "{p50:?} {p95:?}");
        // Many runs a day: labels with the time, far enough apart not to overlap.
        let hourly: Vec<DurationPoint> = (0..24)
            .map(|h| DurationPoint {
                at: at("2026-01-01T00:00:00Z") + TimeDelta::hours(h),
                ..point(1, Some(60), Outcome::Success)
            })
            .collect();
        let chart = duration_chart("runs", "Run durations", &hourly, Tz::UTC);
        assert_eq!(chart.x_labels[0].label, "01-01 00:00");
        let gaps: Vec<i64> = chart
            .x_labels
            .windows(2)
            .map(|w| w[1].pos - w[0].pos)
            .collect();
        assert!(gaps.iter().all(|g| *g >= 11 * CHAR), "{gaps:?}");
    }

    #[test]
    fn an_empty_chart_says_so() {
        let chart = duration_chart("runs", "Run durations", &[], Tz::UTC);
        assert!(chart.bars.is_empty() && chart.p50.is_none());
        assert_eq!(chart.summary, "Nothing has run yet.");
        assert!(chart.width >= 320);
    }

    #[test]
    fn grid_bars_are_relative_to_the_longest_run() {
        assert_eq!(
            grid_bars(&[Some(100), None, Some(50), Some(0), Some(1)], 28),
            [28, 0, 14, 1, 1]
        );
        assert_eq!(grid_bars(&[None, None], 28), [0, 0]);
    }

    #[test]
    fn days_are_in_the_dags_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().expect("zone");
        assert_eq!(
            day_of(at("2026-01-01T18:00:00Z"), tokyo),
            date("2026-01-02")
        );
        assert_eq!(
            day_of(at("2026-01-01T18:00:00Z"), Tz::UTC),
            date("2026-01-01")
        );
        let new_york: Tz = "America/New_York".parse().expect("zone");
        assert_eq!(
            day_of(at("2026-03-08T04:59:00Z"), new_york),
            date("2026-03-07")
        );
        assert_eq!(
            day_start(date("2026-01-02"), tokyo),
            at("2026-01-01T15:00:00Z")
        );
        // Summer time: New York's day starts at 04:00 UTC.
        assert_eq!(
            day_start(date("2026-07-01"), new_york),
            at("2026-07-01T04:00:00Z")
        );
        // A zone that skipped midnight (Santiago's DST change): the first instant that day.
        let santiago: Tz = "America/Santiago".parse().expect("zone");
        assert_eq!(
            day_start(date("2026-09-06"), santiago),
            at("2026-09-06T04:00:00Z")
        );
    }

    #[test]
    fn a_year_has_365_or_366_days() {
        assert_eq!(
            year_to(date("2026-12-03")),
            (date("2025-12-04"), date("2026-12-03"))
        );
        // Across 29 February 2028: 366 days.
        let (from, to) = year_to(date("2028-12-31"));
        assert_eq!((to - from).num_days() + 1, 366);
        // From 29 February: a year earlier has no 29th, the year starts on 1 March.
        assert_eq!(
            year_to(date("2028-02-29")),
            (date("2027-03-01"), date("2028-02-29"))
        );
        assert_eq!(
            calendar_year(2024),
            Some((date("2024-01-01"), date("2024-12-31")))
        );
    }

    fn runs(outcomes: &[Outcome]) -> DayRuns {
        let mut day = DayRuns::default();
        for o in outcomes {
            day.add(*o);
        }
        day
    }

    #[test]
    fn a_day_shows_its_worst_outcome() {
        use Outcome::*;
        assert_eq!(runs(&[]).worst(), None);
        assert_eq!(runs(&[Success, Success]).worst(), Success);
        assert_eq!(runs(&[Success, Running]).worst(), Running);
        assert_eq!(runs(&[Running, FailedTask, Success]).worst(), FailedTask);
        assert_eq!(runs(&[FailedTask, Failed, Success]).worst(), Failed);
        assert_eq!(
            runs(&[FailedTask, Failed, Success]).words(),
            "3 runs, 1 failed, 1 with a failed task"
        );
    }

    #[test]
    fn a_leap_year_calendar_lays_out_weeks_from_monday() {
        let (from, to) = calendar_year(2024).expect("year");
        let mut days = BTreeMap::new();
        days.insert(
            date("2024-02-29"),
            runs(&[Outcome::Failed, Outcome::Success]),
        );
        days.insert(date("2024-03-01"), runs(&[Outcome::FailedTask]));
        days.insert(date("2024-12-31"), runs(&[Outcome::Success]));
        let cal = calendar("cal", "2024", (from, to), &days, |d| {
            format!("/dags/d?date={d}")
        });
        assert_eq!(cal.days.len(), 366);
        // 1 January 2024 is a Monday: the first column's top cell.
        let first = &cal.days[0];
        assert_eq!((first.x, first.y), (CAL_LEFT, CAL_TOP));
        // 31 December 2024 is a Tuesday in week 53 (column 52).
        let last = cal.days.last().expect("a day");
        assert_eq!((last.x, last.y), (CAL_LEFT + 52 * PITCH, CAL_TOP + PITCH));
        assert_eq!(cal.width, CAL_LEFT + 53 * PITCH + 4);
        let leap = cal
            .days
            .iter()
            .find(|d| d.date == "2024-02-29")
            .expect("29 February");
        assert_eq!(leap.outcome, Outcome::Failed);
        assert_eq!(leap.symbol, "✕");
        assert_eq!(leap.title, "2024-02-29: 2 runs, 1 failed");
        assert_eq!(leap.href.as_deref(), Some("/dags/d?date=2024-02-29"));
        // A Thursday: row 3.
        assert_eq!(leap.y, CAL_TOP + 3 * PITCH);
        let quiet = &cal.days[1];
        assert_eq!((quiet.outcome, quiet.href.as_ref()), (Outcome::None, None));
        // Twelve months labelled, January over the first column.
        let labels: Vec<&str> = cal.months.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels.len(), 12);
        assert_eq!(
            cal.months[0],
            Tick {
                pos: CAL_LEFT,
                label: "Jan".to_owned()
            }
        );
        assert_eq!(cal.month_rows.len(), 12);
        let february = &cal.month_rows[1];
        assert_eq!(
            (february.month.as_str(), february.failed_days),
            ("2024-02", 1)
        );
        assert_eq!(cal.month_rows[2].failed_task_days, 1);
        assert_eq!(
            cal.summary,
            "366 days from 2024-01-01 to 2024-12-31: 3 with runs (4 runs), 1 with a failed \
             run, 1 with a run that succeeded with a failed task."
        );
    }

    #[test]
    fn a_trailing_year_starts_mid_week() {
        // 2025-12-04 is a Thursday: the first column has Monday to Wednesday empty.
        let range = year_to(date("2026-12-03"));
        let cal = calendar("cal", "year", range, &BTreeMap::new(), |d| d.to_string());
        assert_eq!(cal.days.len(), 365);
        assert_eq!(
            (cal.days[0].x, cal.days[0].y),
            (CAL_LEFT, CAL_TOP + 3 * PITCH)
        );
        // 2026-12-03, a Thursday, 52 weeks on.
        let last = cal.days.last().expect("a day");
        assert_eq!(
            (last.x, last.y),
            (CAL_LEFT + 52 * PITCH, CAL_TOP + 3 * PITCH)
        );
        // December 2025 (from the 4th) and January 2026 both labelled, not overlapping.
        assert_eq!(cal.months[0].label, "Dec");
        assert!(cal
            .months
            .windows(2)
            .all(|w| w[1].pos - w[0].pos >= 3 * PITCH));
        assert_eq!(cal.month_rows.len(), 13);
    }
}
