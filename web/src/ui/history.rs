//! The history pages and parts: a DAG's run-duration chart (`/dags/{dag}/durations`), its
//! calendar of daily outcomes (`/dags/{dag}/calendar`), a task's try-duration chart on
//! the task page, and the grid's run columns (date, duration bar, the mark of a run that
//! succeeded with a failed task). Each chart is one store query, laid out by
//! [`super::charts`] and drawn by `charts.html`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRecord, DagRun, Store, StoreError, TryPoint};
use serde::Deserialize;

use super::charts::{self, DayRuns, DurationChart, DurationPoint, Outcome};
use super::contexts::{CalendarPage, DagHeader, DurationsPage, GridColumn, Tab};
use super::templates::human_duration;
use super::{dag_path, render, run_path, task_path, urlencode, Layout, PageResult};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::lookup::dag_record;
use crate::AppState;

/// Runs (or tries) a duration chart shows unless asked otherwise, and at most.
pub const CHART_RUNS: i64 = 50;
const CHART_RUNS_MAX: u32 = 500;
/// Runs one calendar reads at most (a DAG every minute has 525,600 a year; the calendar
/// then shows the first 100,000 and says so).
const CALENDAR_RUNS_MAX: i64 = 100_000;
/// The grid's duration bars are at most this tall (px).
const GRID_BAR: i64 = 28;

/// The DAG's time zone (UTC when the stored name is unknown).
pub fn zone(record: &DagRecord) -> Tz {
    record.timezone.parse().unwrap_or(Tz::UTC)
}

/// Seconds from start to end, or to `now` while unfinished; none before the start.
fn seconds(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<i64> {
    let start = start?;
    Some((end.unwrap_or(now) - start).num_seconds().max(0))
}

fn run_outcome(state: RunState, failed_task: bool) -> Outcome {
    match state {
        RunState::Failed => Outcome::Failed,
        RunState::Success if failed_task => Outcome::FailedTask,
        RunState::Success => Outcome::Success,
        RunState::Queued | RunState::Running => Outcome::Running,
    }
}

fn try_outcome(state: TaskState) -> Outcome {
    match state {
        TaskState::Success | TaskState::Skipped => Outcome::Success,
        TaskState::Failed | TaskState::UpstreamFailed => Outcome::Failed,
        TaskState::UpForRetry => Outcome::Retried,
        TaskState::Pending
        | TaskState::Scheduled
        | TaskState::Queued
        | TaskState::Running
        | TaskState::UpForReschedule
        | TaskState::AwaitingInput
        | TaskState::Removed => Outcome::Running,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DurationsParams {
    /// How many of the latest runs (default 50, at most 500).
    pub runs: Option<u32>,
}

/// The run-duration chart of the latest runs of a DAG.
pub async fn durations(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(params): Query<DurationsParams>,
) -> PageResult {
    let record = dag_record(&state.store, &dag_id).await?;
    let limit = params
        .runs
        .map_or(CHART_RUNS, |n| i64::from(n.clamp(1, CHART_RUNS_MAX)));
    let now = Utc::now();
    let mut runs = state.store.run_outcomes(&dag_id, limit).await?;
    runs.reverse(); // oldest on the left
    let points: Vec<DurationPoint> = runs
        .iter()
        .map(|r| DurationPoint {
            label: r.run_id.clone(),
            at: r.logical_date,
            seconds: seconds(r.start_date, r.end_date, now),
            outcome: run_outcome(r.state, r.failed_task),
            href: run_path(&dag_id, &r.run_id),
        })
        .collect();
    let title = format!("Durations of the latest {} runs of {dag_id}", points.len());
    let chart = charts::duration_chart("run-durations", &title, &points, zone(&record));
    let page = DurationsPage {
        layout: Layout::new(format!("{dag_id} durations"), &user),
        dag: DagHeader::new(&record, Tab::Durations, now),
        runs: limit,
        chart,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct CalendarParams {
    /// A calendar year; without it, the year up to today (in the DAG's zone).
    pub year: Option<i32>,
}

/// A year of a DAG's daily outcomes.
pub async fn calendar(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(params): Query<CalendarParams>,
) -> PageResult {
    let record = dag_record(&state.store, &dag_id).await?;
    let tz = zone(&record);
    let now = Utc::now();
    let today = charts::day_of(now, tz);
    let range = match params.year {
        Some(year) => charts::calendar_year(year)
            .filter(|_| (1970..=9999).contains(&year))
            .ok_or_else(|| ApiError::BadRequest(format!("no calendar for the year {year}")))?,
        None => charts::year_to(today),
    };
    let (from, to) = range;
    let to_exclusive = to.succ_opt().unwrap_or(to);
    let runs = state
        .store
        .run_outcomes_between(
            &dag_id,
            charts::day_start(from, tz),
            charts::day_start(to_exclusive, tz),
            CALENDAR_RUNS_MAX,
        )
        .await?;
    let truncated = runs.len() as i64 == CALENDAR_RUNS_MAX;
    let mut days: BTreeMap<NaiveDate, DayRuns> = BTreeMap::new();
    for run in &runs {
        days.entry(charts::day_of(run.logical_date, tz))
            .or_default()
            .add(run_outcome(run.state, run.failed_task));
    }
    let base = dag_path(&dag_id);
    let title = match params.year {
        Some(year) => format!("Daily outcomes of {dag_id} in {year}"),
        None => format!("Daily outcomes of {dag_id}, the year to {today}"),
    };
    let chart = charts::calendar("calendar", &title, range, &days, |date| {
        format!("{base}?date={date}")
    });
    let this_year = today.year();
    let shown = params.year.unwrap_or(this_year);
    let page = CalendarPage {
        layout: Layout::new(format!("{dag_id} calendar"), &user),
        dag: DagHeader::new(&record, Tab::Calendar, now),
        chart,
        timezone: record.timezone.clone(),
        truncated: truncated.then_some(CALENDAR_RUNS_MAX),
        previous: format!("{base}/calendar?year={}", shown - 1),
        next: (params.year.is_some_and(|y| y < this_year))
            .then(|| format!("{base}/calendar?year={}", shown + 1)),
        trailing: params.year.is_some().then(|| format!("{base}/calendar")),
    };
    Ok(render(&page)?.into_response())
}

/// The try-duration chart of a task (of one map index, or all of a mapped task's) over
/// its tries in the latest runs; none before its first try.
pub async fn task_durations(
    store: &Store,
    record: &DagRecord,
    task_id: &str,
    map_index: Option<i32>,
) -> Result<Option<DurationChart>, StoreError> {
    let dag_id = &record.dag_id;
    let mut tries: Vec<TryPoint> = store
        .task_try_outcomes(dag_id, task_id, map_index, CHART_RUNS)
        .await?;
    if tries.is_empty() {
        return Ok(None);
    }
    tries.reverse();
    let now = Utc::now();
    let mapped = tries.iter().any(|t| t.map_index >= 0);
    let points: Vec<DurationPoint> = tries
        .iter()
        .map(|t| {
            let index = if mapped {
                format!(" [{}]", t.map_index)
            } else {
                String::new()
            };
            let href = format!(
                "{}?map_index={}&try={}#log",
                task_path(dag_id, &t.run_id, task_id, -1),
                t.map_index,
                t.try_number
            );
            DurationPoint {
                label: format!("{}{index} try {}", t.run_id, t.try_number),
                at: t.logical_date,
                seconds: seconds(Some(t.start_date), t.end_date, now),
                outcome: try_outcome(t.state),
                href,
            }
        })
        .collect();
    let title = format!(
        "Durations of the latest {} tries of {task_id}{}",
        points.len(),
        map_index
            .filter(|m| *m >= 0)
            .map_or(String::new(), |m| format!(" [{m}]"))
    );
    Ok(Some(charts::duration_chart(
        "try-durations",
        &title,
        &points,
        zone(record),
    )))
}

/// The grid's run columns: the run's date in the DAG's zone, its duration as a bar and
/// in words, and the mark of a run that succeeded although a task failed (`failed`: the
/// runs with a failed instance).
pub fn grid_columns(
    dag_id: &str,
    runs: &[DagRun],
    failed: &[i64],
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<GridColumn> {
    let durations: Vec<Option<i64>> = runs
        .iter()
        .map(|r| seconds(r.start_date, r.end_date, now))
        .collect();
    let bars = charts::grid_bars(&durations, GRID_BAR);
    runs.iter()
        .zip(durations)
        .zip(bars)
        .map(|((run, duration), bar)| {
            let local = run.logical_date.with_timezone(&tz);
            let failed_task = run.state == RunState::Success && failed.contains(&run.id);
            let duration = duration.map(human_duration);
            let mut title = format!("{} ({})", run.run_id, run.state);
            if let Some(d) = &duration {
                title.push_str(&format!(", {d}"));
            }
            if failed_task {
                title.push_str(", succeeded with a failed task");
            }
            GridColumn {
                run_id: run.run_id.clone(),
                state: run.state,
                href: run_path(dag_id, &run.run_id),
                date: local.format("%m-%d").to_string(),
                time: local.format("%H:%M").to_string(),
                duration,
                bar,
                bar_y: GRID_BAR - bar,
                failed_task,
                title,
            }
        })
        .collect()
}

/// The grid page of the runs whose logical date is `date` in the DAG's zone (a calendar
/// day's link): the range of logical dates to show.
pub fn day_range(date: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let next = date.succ_opt().unwrap_or(date);
    (
        charts::day_start(date, tz),
        charts::day_start(next, tz) - chrono::TimeDelta::microseconds(1),
    )
}

/// The query string that keeps a grid page's day (`&date=…`), or nothing.
pub fn date_query(date: Option<NaiveDate>) -> String {
    date.map_or(String::new(), |d| {
        format!("&date={}", urlencode(&d.to_string()))
    })
}
