//! The run page's Gantt chart: every try of every task instance on its row, in try order,
//! with its outcome, and the critical path marked, for a diamond DAG one of whose
//! branches failed once and succeeded on its retry.

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{ClaimRequest, Patch, RunType, Store, Transition, TryOutcome};
use nightshift_testkit::t;

use crate::common::{both_backends, fixture, get, started_run, Auth};

both_backends!(the_gantt_shows_every_try_in_order_and_the_critical_path);

/// A drawn row: its task, whether it is on the critical path, and its tries (number, state).
type DrawnLane<'a> = (&'a str, bool, Vec<(i32, &'a str)>);

const DIAMOND: &str = r#"
schedule = "@daily"
start_date = "2026-01-01"
[tasks]
extract = { type = "noop" }
transform_a = { type = "noop", depends_on = ["extract"] }
transform_b = { type = "noop", depends_on = ["extract"], retries = 1 }
load = { type = "noop", depends_on = ["transform_a", "transform_b"] }
"#;

/// Seconds after 03:00:00 on 2026-01-02.
fn s(seconds: i64) -> DateTime<Utc> {
    t("2026-01-02T03:00:00Z") + TimeDelta::seconds(seconds)
}

/// Try `try_number` of `task_id`: scheduled and queued at `times[0]`, claimed at
/// `times[1]`, ended in `end` at `times[2]`.
async fn one_try(
    store: &Store,
    run: i64,
    task_id: &str,
    try_number: i32,
    end: TaskState,
    times: [i64; 3],
) {
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
                s(times[0]),
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
                s(times[0]),
            )
            .expect("legal")
            .queued_at(Patch::Set(s(times[0]))),
        )
        .await
        .expect("queue");
    let claimed = store
        .claim(&ClaimRequest {
            hostname: "host-1".to_owned(),
            ..nightshift_testkit::claim_request("worker-1", s(times[1]))
        })
        .await
        .expect("claim")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("claimed {task_id}"));
    assert_eq!(claimed.instance().try_number, try_number);
    claimed
        .finish(TryOutcome {
            new_state: end,
            error: (end != TaskState::Success).then(|| "exit code 1".to_owned()),
            next_retry_at: (end == TaskState::UpForRetry).then(|| s(times[2] + 30)),
            ..nightshift_testkit::success(s(times[2]))
        })
        .await
        .expect("finish");
}

/// The tries the chart draws, lane by lane: (task, critical, [(try, state, x, width)]).
type Lanes = Vec<(String, bool, Vec<(i32, String, f64, f64)>)>;

/// The value of `name="…"` in `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[start..].split('"').next()
}

fn number(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {tag}"))
}

fn lanes(svg: &str) -> Lanes {
    svg.split("<g class=\"lane\"")
        .skip(1)
        .map(|lane| {
            let head = lane.split('>').next().unwrap_or_default();
            let task = attr(head, "data-task").unwrap_or_default().to_owned();
            let critical = attr(head, "data-critical") == Some("true");
            let tries = lane
                .split("<g class=\"try ")
                .skip(1)
                .map(|bar| {
                    let head = bar.split('>').next().unwrap_or_default();
                    let run = bar
                        .split("<rect class=\"run\"")
                        .nth(1)
                        .and_then(|r| r.split('>').next())
                        .unwrap_or_else(|| panic!("no running segment in {bar}"));
                    (
                        number(head, "data-try") as i32,
                        attr(head, "data-state").unwrap_or_default().to_owned(),
                        number(run, "x"),
                        number(run, "width"),
                    )
                })
                .collect();
            (task, critical, tries)
        })
        .collect()
}

async fn the_gantt_shows_every_try_in_order_and_the_critical_path(store: Store) {
    let f = fixture(store).await;
    let dag = nightshift_testkit::seed_dag(&f.store, "dags/diamond.toml", DIAMOND).await;
    let run = started_run(&f.store, &dag, "manual_1", RunType::Manual, s(0), s(0)).await;
    let (r, ok) = (run.id, TaskState::Success);
    one_try(&f.store, r, "extract", 1, ok, [0, 1, 10]).await;
    one_try(&f.store, r, "transform_a", 1, ok, [11, 12, 40]).await;
    one_try(
        &f.store,
        r,
        "transform_b",
        1,
        TaskState::UpForRetry,
        [11, 13, 20],
    )
    .await;
    // The retry ends after transform_a: load waited for it.
    one_try(&f.store, r, "transform_b", 2, ok, [70, 72, 100]).await;
    one_try(&f.store, r, "load", 1, ok, [101, 102, 110]).await;

    let reply = get(
        &f.app,
        "/dags/diamond/runs/manual_1",
        Auth::Session(&f.viewer_session, false),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = reply.text().replace("&#x2f;", "/");
    let svg = html
        .split_once("<svg class=\"gantt\"")
        .and_then(|(_, rest)| rest.split_once("</svg>"))
        .map(|(svg, _)| svg)
        .unwrap_or_else(|| panic!("no Gantt chart on the run page:\n{html}"));
    assert!(svg.contains("<title id=\"gantt-title\">Gantt chart: 5 tries of 4 task instances over 1m 50s</title>"), "{svg}");

    let lanes = lanes(svg);
    let drawn: Vec<DrawnLane<'_>> = lanes
        .iter()
        .map(|(task, critical, tries)| {
            let tries = tries
                .iter()
                .map(|(n, state, _, _)| (*n, state.as_str()))
                .collect();
            (task.as_str(), *critical, tries)
        })
        .collect();
    assert_eq!(
        drawn,
        [
            ("extract", true, vec![(1, "success")]),
            ("transform_a", false, vec![(1, "success")]),
            (
                "transform_b",
                true,
                vec![(1, "up_for_retry"), (2, "success")]
            ),
            ("load", true, vec![(1, "success")]),
        ],
        "rows in dependency order, tries in order, the critical path through the retry"
    );
    // On a time axis: the retry right of the first try on the same row, and each lane of
    // the critical path starting after its upstream ended.
    let bars = |task: &str| {
        lanes
            .iter()
            .find(|(t, _, _)| t == task)
            .map(|(_, _, tries)| tries.clone())
            .unwrap_or_else(|| panic!("no lane {task}"))
    };
    let b = bars("transform_b");
    assert!(b[1].2 > b[0].2 + b[0].3, "try 2 after try 1: {b:?}");
    let end = |bar: &(i32, String, f64, f64)| bar.2 + bar.3;
    assert!(
        bars("load")[0].2 > end(&b[1]),
        "load after transform_b's retry"
    );
    assert!(end(&bars("transform_a")[0]) < end(&b[1]));
    // The failed try is told by a symbol and a hatch, not only by colour.
    let b_lane = svg
        .split("data-task=\"transform_b\"")
        .nth(1)
        .and_then(|lane| lane.split("<g class=\"lane\"").next())
        .expect("transform_b's lane");
    assert!(b_lane.contains("class=\"hatch\""), "{b_lane}");
    assert!(
        b_lane.contains(">↻</text>") && b_lane.contains(">✓</text>"),
        "{b_lane}"
    );

    // The text alternative names the path and lists the five tries in the same order.
    assert!(
        html.contains("Critical path ◆: extract → transform_b → load."),
        "{html}"
    );
    let table = html
        .split_once("<summary>The tries as a table</summary>")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once("</table>"))
        .map(|(table, _)| table)
        .expect("the tries' table");
    let rows: Vec<&str> = table.split("<tr><td>").skip(1).collect();
    let named: Vec<(bool, bool)> = rows
        .iter()
        .map(|row| (row.contains("up_for_retry"), row.contains("◆ yes")))
        .collect();
    assert_eq!(
        named,
        [
            (false, true),
            (false, false),
            (true, true),
            (false, true),
            (false, true)
        ],
        "{table}"
    );
    assert!(!html.contains(" style="), "no inline style (CSP)");
}
