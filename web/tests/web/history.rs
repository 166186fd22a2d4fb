//! History at a glance: the grid's run columns (date, duration, the "!" of a run that
//! succeeded with a failed task, marked failed and retried cells), the DAG list's mark of
//! such a run, a DAG's run-duration chart (p50, p95, failures marked), a task's
//! try-duration chart, and the calendar of daily outcomes linking to each day's runs.

use axum::http::StatusCode;
use nightshift_core::dag::Dag;
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use nightshift_store::{Patch, RunType, Store, Transition, TryOutcome};
use nightshift_testkit::t;

use crate::common::{both_backends, fixture, started_run, unescape, Auth, Fixture};

both_backends!(
    grid_and_dag_list_show_dates_durations_and_marks,
    duration_charts_show_runs_percentiles_and_failures,
    calendar_shows_daily_outcomes_and_links_to_the_days_runs
);

/// A DAG whose `check` may fail while `cleanup` (all_done) still runs: the run succeeds.
const CLEANUP: &str = r#"
schedule = "0 3 * * *"
timezone = "Asia/Tokyo"
start_date = "2026-01-01"
[defaults]
retries = 1
[tasks]
check = { type = "noop" }
cleanup = { type = "noop", depends_on = ["check"], trigger_rule = "all_done" }
"#;

/// Runs try `try_number` of `task_id` in `run` from `start` to `end` seconds after the
/// run's start, ending in `state`.
async fn one_try(
    store: &Store,
    run: i64,
    task_id: &str,
    try_number: i32,
    state: TaskState,
    [start, end]: [i64; 2],
    base: chrono::DateTime<chrono::Utc>,
) {
    let s = |secs: i64| base + chrono::TimeDelta::seconds(secs);
    let ti = store
        .find_task_instance(run, task_id, -1)
        .await
        .expect("find")
        .unwrap_or_else(|| panic!("{task_id} exists"));
    let scheduled = store
        .transition(
            &Transition::on(
                ti.id,
                ti.state,
                try_number - 1,
                TaskEvent::Schedule,
                s(start),
            )
            .expect("legal"),
        )
        .await
        .expect("schedule");
    store
        .transition(
            &Transition::on(
                ti.id,
                scheduled.state,
                try_number - 1,
                TaskEvent::Queue,
                s(start),
            )
            .expect("legal")
            .queued_at(Patch::Set(s(start))),
        )
        .await
        .expect("queue");
    let claimed = store
        .claim(&nightshift_testkit::claim_request("worker-1", s(start)))
        .await
        .expect("claim")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("claimed {task_id}"));
    assert_eq!(claimed.instance().try_number, try_number);
    claimed
        .finish(TryOutcome {
            new_state: state,
            error: (state != TaskState::Success).then(|| "exit code 1".to_owned()),
            next_retry_at: (state == TaskState::UpForRetry).then(|| s(end + 30)),
            ..nightshift_testkit::success(s(end))
        })
        .await
        .expect("finish");
}

/// A finished run of the cleanup DAG on `day` (January 2026, 03:00 JST), lasting
/// `seconds`: `check` succeeds on try 1, or fails, or fails then succeeds on try 2.
async fn cleanup_run(store: &Store, dag: &Dag, day: u32, seconds: i64, check: &str) -> String {
    let logical = t("2025-12-31T18:00:00Z") + chrono::TimeDelta::days(i64::from(day) - 1);
    let start = logical + chrono::TimeDelta::days(1);
    let run_id = format!("scheduled__2026-01-{day:02}");
    let run = started_run(store, dag, &run_id, RunType::Scheduled, logical, start).await;
    match check {
        "success" | "run failed" => {
            one_try(store, run.id, "check", 1, TaskState::Success, [0, 5], start).await
        }
        "failed" => one_try(store, run.id, "check", 1, TaskState::Failed, [0, 5], start).await,
        _ => {
            one_try(
                store,
                run.id,
                "check",
                1,
                TaskState::UpForRetry,
                [0, 5],
                start,
            )
            .await;
            one_try(
                store,
                run.id,
                "check",
                2,
                TaskState::Success,
                [40, 50],
                start,
            )
            .await;
        }
    }
    one_try(
        store,
        run.id,
        "cleanup",
        1,
        TaskState::Success,
        [55, 56],
        start,
    )
    .await;
    let end = start + chrono::TimeDelta::seconds(seconds);
    let state = if check == "run failed" {
        RunState::Failed
    } else {
        RunState::Success
    };
    store
        .set_run_state(run.id, RunState::Running, state, end)
        .await
        .expect("run ends");
    run_id
}

/// Five runs of `cleanup` (1–5 January 2026 JST): 60 s, a failed `check` the run
/// survived (120 s), a retried `check` (180 s), a failed run (240 s), 600 s.
async fn history(f: &Fixture) {
    let dag = nightshift_testkit::seed_dag(&f.store, "dags/cleanup.toml", CLEANUP).await;
    cleanup_run(&f.store, &dag, 1, 60, "success").await;
    cleanup_run(&f.store, &dag, 2, 120, "failed").await;
    cleanup_run(&f.store, &dag, 3, 180, "retried").await;
    cleanup_run(&f.store, &dag, 4, 240, "run failed").await;
    cleanup_run(&f.store, &dag, 5, 600, "success").await;
}

async fn page(f: &Fixture, path: &str) -> String {
    let reply = f.get(path, Auth::Session(&f.viewer_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    unescape(&reply.text())
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in:\n{text}"));
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

async fn grid_and_dag_list_show_dates_durations_and_marks(store: Store) {
    let f = fixture(store).await;
    history(&f).await;
    let grid = page(&f, "/dags/cleanup").await;
    // Each column: the run's date and time in Tokyo and its duration, in text.
    for (run, date, duration) in [
        ("scheduled__2026-01-01", "01-01 03:00", "1m 0s"),
        ("scheduled__2026-01-02", "01-02 03:00", "2m 0s"),
        ("scheduled__2026-01-05", "01-05 03:00", "10m 0s"),
    ] {
        let head = between(
            &grid,
            &format!("href=\"/dags/cleanup/runs/{run}\""),
            "</th>",
        );
        assert!(head.contains(date), "{run}: {head}");
        assert!(head.contains(duration), "{run}: {head}");
    }
    // The longest run has the full bar, the 1 min run a tenth of it.
    let bar = |run: &str| {
        let head = between(
            &grid,
            &format!("href=\"/dags/cleanup/runs/{run}\""),
            "</th>",
        );
        let rect = between(head, "<rect", "/>");
        rect.split(" height=\"")
            .nth(1)
            .and_then(|h| h.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(bar("scheduled__2026-01-05"), "28");
    assert_eq!(bar("scheduled__2026-01-01"), "2");
    // The run that succeeded with a failed task is marked "!" and says so; the others not.
    let marked = between(
        &grid,
        "href=\"/dags/cleanup/runs/scheduled__2026-01-02\"",
        "</th>",
    );
    assert!(
        marked.contains("succeeded with a failed task") && marked.contains(">!</span>"),
        "{marked}"
    );
    let plain = between(
        &grid,
        "href=\"/dags/cleanup/runs/scheduled__2026-01-01\"",
        "</th>",
    );
    assert!(!plain.contains("failed task"), "{plain}");
    // Failed and retried cells carry a symbol and say so, not only a colour.
    let check_row = between(&grid, "<th class=\"task\">check</th>", "</tr>");
    let cells: Vec<&str> = check_row.split("<td>").skip(1).collect();
    assert_eq!(cells.len(), 5, "{check_row}");
    assert!(
        cells[1].contains("s-failed") && cells[1].contains("✕</a>"),
        "{}",
        cells[1]
    );
    assert!(
        cells[2].contains("s-success retried")
            && cells[2].contains("↻</a>")
            && cells[2].contains("retried (2 tries)"),
        "{}",
        cells[2]
    );
    assert!(
        !cells[0].contains("retried") && cells[0].contains("\"></a>"),
        "{}",
        cells[0]
    );

    // The DAG list marks the run that succeeded with a failed task.
    let list = page(&f, "/dags").await;
    let row = between(&list, "<strong>cleanup</strong>", "</tr>");
    let marks: Vec<&str> = row
        .split("class=\"sq ")
        .skip(1)
        .map(|sq| sq.split('"').next().unwrap_or_default())
        .collect();
    assert_eq!(
        marks,
        [
            "s-success",
            "s-success failed-task",
            "s-success",
            "s-failed",
            "s-success"
        ],
        "{row}"
    );
    assert!(
        row.contains("scheduled__2026-01-02: success, with a failed task"),
        "{row}"
    );
}

async fn duration_charts_show_runs_percentiles_and_failures(store: Store) {
    let f = fixture(store).await;
    history(&f).await;
    let chart = page(&f, "/dags/cleanup/durations").await;
    // A bar per run, oldest first, with its outcome and duration in its title.
    let titles: Vec<&str> = chart
        .split("<g class=\"bar ")
        .skip(1)
        .map(|bar| between(bar, "<title>", "</title>").trim_start_matches("<title>"))
        .collect();
    assert_eq!(
        titles,
        [
            "scheduled__2026-01-01: success, 1m 0s",
            "scheduled__2026-01-02: success with a failed task, 2m 0s",
            "scheduled__2026-01-03: success, 3m 0s",
            "scheduled__2026-01-04: failed, 4m 0s",
            "scheduled__2026-01-05: success, 10m 0s",
        ]
    );
    // Failures marked by a symbol over the bar.
    assert!(chart.contains("class=\"symbol\""));
    let failed = between(&chart, "<g class=\"bar o-failed\">", "</g>");
    assert!(failed.contains(">✕</text>"), "{failed}");
    let warned = between(&chart, "<g class=\"bar o-failed_task\">", "</g>");
    assert!(warned.contains(">!</text>"), "{warned}");
    // p50 and p95 by nearest rank over 60, 120, 180, 240, 600 s: 180 s and 600 s.
    assert!(chart.contains(">p50 3m</text>"), "{chart}");
    assert!(chart.contains(">p95 10m</text>"), "{chart}");
    // Axes in text: durations on the left (up to 10 min), dates in Tokyo below.
    assert!(chart.contains(">10m</text>") && chart.contains(">0s</text>"));
    assert!(chart.contains(">01-01</text>"), "{chart}");
    // The text alternative: a summary and a table.
    assert!(
        chart.contains(
            "5 from 2026-01-01 to 2026-01-05: p50 3m 0s, p95 10m 0s; 1 failed, \
             1 succeeded with a failed task."
        ),
        "{chart}"
    );
    assert!(chart.contains("<td>2026-01-04 03:00</td><td>failed</td><td>4m 0s</td>"));
    // Fewer runs on request: the latest two.
    let two = page(&f, "/dags/cleanup/durations?runs=2").await;
    assert_eq!(two.matches("<g class=\"bar ").count(), 2);
    assert!(two.contains("scheduled__2026-01-05") && !two.contains("scheduled__2026-01-03:"));

    // The task page: the task's tries in its latest runs, the failed and retried ones marked.
    let task = page(&f, "/dags/cleanup/runs/scheduled__2026-01-05/tasks/check").await;
    let tries: Vec<&str> = task
        .split("<g class=\"bar ")
        .skip(1)
        .map(|bar| between(bar, "<title>", "</title>").trim_start_matches("<title>"))
        .collect();
    assert_eq!(
        tries,
        [
            "scheduled__2026-01-01 try 1: success, 5s",
            "scheduled__2026-01-02 try 1: failed, 5s",
            "scheduled__2026-01-03 try 1: failed, retried, 5s",
            "scheduled__2026-01-03 try 2: success, 10s",
            "scheduled__2026-01-04 try 1: success, 5s",
            "scheduled__2026-01-05 try 1: success, 5s",
        ]
    );
    assert!(task.contains("Durations of the latest 6 tries of check"));
    assert!(task.contains(">↻</text>"));
    // Its bars link to each try's log.
    assert!(task.contains(
        "href=\"/dags/cleanup/runs/scheduled__2026-01-03/tasks/check?map_index=-1&try=1#log\""
    ));
}

async fn calendar_shows_daily_outcomes_and_links_to_the_days_runs(store: Store) {
    let f = fixture(store).await;
    history(&f).await;
    let cal = page(&f, "/dags/cleanup/calendar?year=2026").await;
    // 365 days of 2026, each with its outcome; a day with runs links to them.
    assert_eq!(cal.matches("<g class=\"day ").count(), 365);
    let day = |date: &str| between(&cal, &format!("<title>{date}:"), "</g>").to_owned();
    assert!(
        day("2026-01-01").contains("1 run<"),
        "{}",
        day("2026-01-01")
    );
    let outcome = |date: &str| {
        let at = cal
            .find(&format!("<title>{date}:"))
            .unwrap_or_else(|| panic!("no {date}"));
        let head = &cal[..at];
        let g = head.rfind("<g class=\"day ").unwrap_or(0);
        head[g..].split('"').nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(outcome("2026-01-01"), "day o-success");
    assert_eq!(outcome("2026-01-02"), "day o-failed_task");
    assert_eq!(outcome("2026-01-04"), "day o-failed");
    assert_eq!(outcome("2026-01-06"), "day o-none");
    // Failed days are hatched as well as red.
    assert!(day("2026-01-04").contains("fill=\"url(#calendar-hatch)\""));
    assert!(cal.contains("<a href=\"/dags/cleanup?date=2026-01-04\">"));
    assert!(!cal.contains("?date=2026-01-06"));
    // Month labels and the text alternative.
    assert!(cal.contains(">Jan</text>") && cal.contains(">Dec</text>"));
    assert!(cal.contains(
        "365 days from 2026-01-01 to 2026-12-31: 5 with runs (5 runs), 1 with a failed run, \
         1 with a run that succeeded with a failed task."
    ));
    assert!(cal.contains("<td>2026-01</td><td>5</td><td>5</td><td>3</td><td>1</td><td>1</td>"));
    // The day's link: the grid of that day's runs only (in the DAG's zone).
    let grid = page(&f, "/dags/cleanup?date=2026-01-04").await;
    assert!(grid.contains("runs/scheduled__2026-01-04\""), "{grid}");
    assert_eq!(grid.matches("class=\"run-head\"").count(), 1, "{grid}");
    assert!(grid.contains("runs of 2026-01-04"));
    // The year to today is the default, and a year out of range is refused.
    let trailing = page(&f, "/dags/cleanup/calendar").await;
    assert!(trailing.contains("the year to "));
    let reply = f
        .get(
            "/dags/cleanup/calendar?year=99999",
            Auth::Session(&f.viewer_session, false),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}
