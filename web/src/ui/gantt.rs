//! The run page's Gantt chart, laid out for a server-drawn SVG: one row per task instance
//! (in the page's dependency order), on it one bar per try, each a queued segment (waiting
//! for a worker) and a running segment, coloured and patterned by how the try ended; a
//! time axis in the DAG's time zone; and the run's critical path, the chain of
//! dependencies that decided when the run ended. Pure: the template (`gantt.html`) draws
//! what [`chart`] returns; styles are classes of `static/style.css` (the CSP allows no
//! inline style).
//!
//! The critical path is walked back from the instance that ended last: each step goes to
//! the upstream instance that ended last before the current one was first queued (what
//! it was waiting for), over the instance graph (one node per instance, an edge from each
//! instance of an upstream task to each instance of its downstream task).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use nightshift_core::dag::Dag;
use nightshift_core::state::TaskState;
use nightshift_store::{Attempt, TaskInstance};
use petgraph::graphmap::DiGraphMap;
use petgraph::Direction;
use serde::Serialize;

use super::templates::human_duration;

/// Room for the task names left of the bars.
pub const LABEL_WIDTH: f64 = 170.0;
/// The time axis's length: with the labels, the chart is 780 px wide (a phone scrolls it
/// inside its box).
pub const PLOT_WIDTH: f64 = 560.0;
/// Room right of the plot for the last bar's symbol and the axis's last label.
const RIGHT_MARGIN: f64 = 50.0;
pub const ROW_HEIGHT: f64 = 24.0;
pub const BAR_HEIGHT: f64 = 14.0;
/// The axis labels above the first row.
pub const AXIS_HEIGHT: f64 = 26.0;
/// A try shorter than a pixel still shows.
const MIN_BAR: f64 = 2.0;
/// Rows drawn at most: a fan-out of thousands would be a chart nobody reads; the text
/// below the chart says how many were left out.
pub const MAX_ROWS: usize = 200;
/// A task name longer than this is cut in its label (the whole name is in its title).
const LABEL_CHARS: usize = 24;
/// At most this many axis ticks.
const MAX_TICKS: i64 = 7;
/// Axis steps, in seconds: the first that gives at most [`MAX_TICKS`] ticks is used.
const STEPS: [i64; 22] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800, 1_209_600, 2_592_000,
];

/// The chart as the template draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gantt {
    pub width: f64,
    pub height: f64,
    pub row_height: f64,
    pub bar_height: f64,
    /// x of the plot's left edge (the time of `start`) and its bottom (the axis lines' end).
    pub plot_left: f64,
    pub plot_bottom: f64,
    pub ticks: Vec<Tick>,
    pub rows: Vec<Row>,
    /// Lines joining the critical path's instances, from each one's end to the next one's
    /// first queued time.
    pub links: Vec<Link>,
    /// The critical path's instances in order.
    #[serde(skip)]
    pub critical: Vec<String>,
    /// The same, as text: `extract → transform → load`.
    pub critical_text: String,
    /// Instances not drawn (beyond [`MAX_ROWS`]).
    #[serde(skip)]
    pub rows_left_out: usize,
    /// The sentence saying so (empty when every instance is drawn).
    pub left_out: String,
    pub tries: usize,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `end - start`, as people write it.
    pub span: String,
    pub timezone: String,
}

/// A time axis mark: a vertical line and its label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    pub x: f64,
    pub label: String,
}

/// One task instance's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `task` or `task [3]`, as the page names instances.
    pub name: String,
    /// `name`, cut to fit the label column.
    pub label: String,
    pub href: String,
    pub state: TaskState,
    /// Top of the row's band, the baseline of its texts and the top of its bars.
    pub y: f64,
    /// The row band's class: tinted on the critical path, else striped.
    pub band: &'static str,
    pub text_y: f64,
    pub bar_y: f64,
    pub critical: bool,
    pub bars: Vec<Bar>,
}

/// One try: its queued segment (when known) and its running segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub try_number: i32,
    /// The try's outcome (`running` while it runs).
    pub state: TaskState,
    /// A one-character mark of `state` drawn after the bar, so outcomes read without
    /// colour: ✓ success, ✗ failed, ↻ failed and retried, – skipped, ▸ running, ⤺
    /// handed back.
    pub symbol: &'static str,
    /// x and width of the queued segment (width 0 when the try's queued time is unknown).
    pub queued_x: f64,
    pub queued_width: f64,
    pub run_x: f64,
    pub run_width: f64,
    /// Where the symbol goes.
    pub symbol_x: f64,
    pub queued_at: Option<DateTime<Utc>>,
    pub start: DateTime<Utc>,
    /// `None` while the try runs.
    pub end: Option<DateTime<Utc>>,
    /// Time queued and time running, as people write them (running up to now for a try
    /// that has not ended).
    pub waited: Option<String>,
    pub ran: String,
}

/// A segment of the critical path between two rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// What the chart needs of one instance: its identity, its page and its tries (in try
/// order).
struct Lane<'a> {
    ti: &'a TaskInstance,
    tries: Vec<&'a Attempt>,
}

impl Lane<'_> {
    /// When the instance first waited for a worker (its first try's queued time, or its
    /// start when that is unknown).
    fn ready(&self) -> Option<DateTime<Utc>> {
        self.tries
            .first()
            .map(|a| a.queued_at.map_or(a.start_date, |q| q.min(a.start_date)))
    }

    /// When its last try ended (`now` while it runs).
    fn end(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.tries.last().map(|a| try_end(a, now))
    }
}

fn try_end(a: &Attempt, now: DateTime<Utc>) -> DateTime<Utc> {
    a.end_date.unwrap_or(now).max(a.start_date)
}

fn instance_name(ti: &TaskInstance) -> String {
    if ti.map_index >= 0 {
        format!("{} [{}]", ti.task_id, ti.map_index)
    } else {
        ti.task_id.clone()
    }
}

fn symbol(state: TaskState) -> &'static str {
    match state {
        TaskState::Success => "✓",
        TaskState::Failed => "✗",
        TaskState::UpForRetry => "↻",
        TaskState::UpForReschedule => "⏸",
        TaskState::AwaitingInput => "?",
        TaskState::Skipped => "–",
        TaskState::Running => "▸",
        TaskState::Scheduled => "⤺",
        _ => "·",
    }
}

/// The chart of a run whose instances are `instances` (in the order the rows go) and whose
/// tries are `attempts` (any order); `href` gives an instance's page. `None` when no
/// instance has started a try yet.
pub fn chart(
    dag: &Dag,
    instances: &[TaskInstance],
    attempts: &[Attempt],
    timezone: &str,
    now: DateTime<Utc>,
    href: impl Fn(&TaskInstance) -> String,
) -> Option<Gantt> {
    let mut by_instance: HashMap<i64, Vec<&Attempt>> = HashMap::new();
    for a in attempts {
        by_instance.entry(a.task_instance).or_default().push(a);
    }
    let lanes: Vec<Lane> = instances
        .iter()
        .map(|ti| {
            let mut tries = by_instance.remove(&ti.id).unwrap_or_default();
            tries.sort_by_key(|a| a.try_number);
            Lane { ti, tries }
        })
        .collect();
    let drawn = &lanes[..lanes.len().min(MAX_ROWS)];
    let all_tries = || drawn.iter().flat_map(|l| l.tries.iter().copied());
    let start = all_tries()
        .map(|a| a.queued_at.unwrap_or(a.start_date).min(a.start_date))
        .min()?;
    let end = all_tries().map(|a| try_end(a, now)).max()?.max(start);
    let zone: Tz = timezone.parse().unwrap_or(Tz::UTC);
    let scale = Scale::new(start, end);
    let critical = critical_path(dag, &lanes, now);
    let critical_set: HashSet<usize> = critical.iter().copied().collect();

    let rows: Vec<Row> = drawn
        .iter()
        .enumerate()
        .map(|(i, lane)| {
            let y = AXIS_HEIGHT + i as f64 * ROW_HEIGHT;
            let name = instance_name(lane.ti);
            Row {
                label: cut(&name, LABEL_CHARS),
                name,
                href: href(lane.ti),
                state: lane.ti.state,
                y,
                band: if critical_set.contains(&i) {
                    "crit-band"
                } else if i % 2 == 1 {
                    "band"
                } else {
                    "band-odd"
                },
                text_y: y + ROW_HEIGHT / 2.0 + 4.0,
                bar_y: y + (ROW_HEIGHT - BAR_HEIGHT) / 2.0,
                critical: critical_set.contains(&i),
                bars: lane.tries.iter().map(|a| bar(a, &scale, now)).collect(),
            }
        })
        .collect();
    let row_mid = |i: usize| AXIS_HEIGHT + i as f64 * ROW_HEIGHT + ROW_HEIGHT / 2.0;
    let links = critical
        .windows(2)
        .filter(|pair| pair[0] < MAX_ROWS && pair[1] < MAX_ROWS)
        .filter_map(|pair| {
            let (from, to) = (&lanes[pair[0]], &lanes[pair[1]]);
            Some(Link {
                x1: scale.x(from.end(now)?),
                y1: row_mid(pair[0]),
                x2: scale.x(to.ready()?),
                y2: row_mid(pair[1]),
            })
        })
        .collect();
    let plot_bottom = AXIS_HEIGHT + rows.len() as f64 * ROW_HEIGHT;
    Some(Gantt {
        width: LABEL_WIDTH + PLOT_WIDTH + RIGHT_MARGIN,
        height: plot_bottom + 4.0,
        row_height: ROW_HEIGHT,
        bar_height: BAR_HEIGHT,
        plot_left: LABEL_WIDTH,
        plot_bottom,
        ticks: ticks(start, end, zone),
        tries: rows.iter().map(|r| r.bars.len()).sum(),
        rows,
        links,
        critical_text: critical
            .iter()
            .map(|&i| instance_name(lanes[i].ti))
            .collect::<Vec<_>>()
            .join(" → "),
        critical: critical
            .iter()
            .map(|&i| instance_name(lanes[i].ti))
            .collect(),
        rows_left_out: lanes.len() - drawn.len(),
        left_out: match lanes.len() - drawn.len() {
            0 => String::new(),
            n => format!("{n} more task instances are not drawn."),
        },
        start,
        end,
        span: human_duration((end - start).num_seconds()),
        timezone: zone.name().to_owned(),
    })
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

/// Instants to x.
struct Scale {
    start: DateTime<Utc>,
    /// Milliseconds the plot spans (at least 1).
    span_ms: f64,
}

impl Scale {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Scale {
        Scale {
            start,
            span_ms: ((end - start).num_milliseconds().max(1)) as f64,
        }
    }

    fn x(&self, at: DateTime<Utc>) -> f64 {
        let ms = (at - self.start).num_milliseconds() as f64;
        round(LABEL_WIDTH + PLOT_WIDTH * (ms / self.span_ms).clamp(0.0, 1.0))
    }
}

/// To a tenth of a pixel: short attributes, no float noise.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn bar(a: &Attempt, scale: &Scale, now: DateTime<Utc>) -> Bar {
    let end = try_end(a, now);
    let run_x = scale.x(a.start_date);
    let run_width = round((scale.x(end) - run_x).max(MIN_BAR));
    let (queued_x, queued_width) = match a.queued_at {
        Some(q) if q < a.start_date => {
            let x = scale.x(q);
            (x, round(run_x - x))
        }
        _ => (run_x, 0.0),
    };
    Bar {
        try_number: a.try_number,
        state: a.state,
        symbol: symbol(a.state),
        queued_x,
        queued_width,
        run_x,
        run_width,
        symbol_x: round(run_x + run_width + 3.0),
        queued_at: a.queued_at,
        start: a.start_date,
        end: a.end_date,
        waited: a
            .queued_at
            .filter(|q| *q <= a.start_date)
            .map(|q| human_duration((a.start_date - q).num_seconds())),
        ran: human_duration((end - a.start_date).num_seconds()),
    }
}

/// The critical path as lane indexes, first to last: from the lane that ended last, back
/// through the upstream lane that ended last before it was first queued. Lanes without a
/// try take no part.
fn critical_path(dag: &Dag, lanes: &[Lane], now: DateTime<Utc>) -> Vec<usize> {
    let mut by_task: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, lane) in lanes.iter().enumerate() {
        if !lane.tries.is_empty() {
            by_task.entry(lane.ti.task_id.as_str()).or_default().push(i);
        }
    }
    let mut graph: DiGraphMap<usize, ()> = DiGraphMap::new();
    for (task, downs) in &by_task {
        for &down in downs {
            graph.add_node(down);
            for upstream in dag.upstreams(task) {
                for &up in by_task.get(upstream.as_str()).into_iter().flatten() {
                    graph.add_edge(up, down, ());
                }
            }
        }
    }
    // The last to end; of equals, the one queued last (it waited for the others).
    let Some(mut current) = graph
        .nodes()
        .max_by_key(|&i| (lanes[i].end(now), lanes[i].ready(), std::cmp::Reverse(i)))
    else {
        return Vec::new();
    };
    let mut path = vec![current];
    while let Some(ready) = lanes[current].ready() {
        let previous = graph
            .neighbors_directed(current, Direction::Incoming)
            .filter(|&up| lanes[up].end(now).is_some_and(|end| end <= ready))
            .max_by_key(|&up| (lanes[up].end(now), std::cmp::Reverse(up)));
        match previous {
            // A DAG has no cycle, but a cleared upstream re-run after its downstream
            // could still bring one back here: never visit a lane twice.
            Some(up) if !path.contains(&up) => {
                path.push(up);
                current = up;
            }
            _ => break,
        }
    }
    path.reverse();
    path
}

/// Axis ticks between `start` and `end` at a round step in `zone`'s wall clock: seconds
/// shown when the step is under a minute, the date when the chart spans midnight.
fn ticks(start: DateTime<Utc>, end: DateTime<Utc>, zone: Tz) -> Vec<Tick> {
    let span = (end - start).num_seconds().max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|step| span / step < MAX_TICKS)
        .unwrap_or(span / (MAX_TICKS - 1) + 1);
    let local_date = |at: DateTime<Utc>| at.with_timezone(&zone).date_naive();
    let format = if step < 60 {
        "%H:%M:%S"
    } else if step >= 86400 {
        "%m-%d"
    } else if local_date(start) == local_date(end) {
        "%H:%M"
    } else {
        "%m-%d %H:%M"
    };
    let scale = Scale::new(start, end);
    // Round in local wall-clock seconds, so ticks fall on :00 in zones with odd offsets.
    let offset = i64::from(
        zone.offset_from_utc_datetime(&start.naive_utc())
            .fix()
            .local_minus_utc(),
    );
    let local_start = start.timestamp() + offset;
    let first = local_start.div_euclid(step) * step
        + if local_start.rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let mut ticks = Vec::new();
    let mut local = first;
    while local - offset <= end.timestamp() {
        let Some(at) = DateTime::from_timestamp(local - offset, 0) else {
            break;
        };
        ticks.push(Tick {
            x: scale.x(at),
            label: at.with_timezone(&zone).format(format).to_string(),
        });
        local += step;
    }
    if ticks.is_empty() {
        ticks.push(Tick {
            x: scale.x(start),
            label: start.with_timezone(&zone).format("%H:%M:%S").to_string(),
        });
    }
    ticks
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chrono::TimeDelta;
    use nightshift_core::dag::parse_dag;

    fn secs(s: i64) -> TimeDelta {
        TimeDelta::seconds(s)
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
    }

    const T0: &str = "2026-01-02T03:00:00Z";

    /// extract → (transform_a, transform_b) → load, the diamond of the web test.
    fn diamond() -> Dag {
        parse_dag(
            "dags/diamond.toml",
            r#"
            [tasks.extract]
            type = "noop"
            [tasks.transform_a]
            type = "noop"
            depends_on = ["extract"]
            [tasks.transform_b]
            type = "noop"
            depends_on = ["extract"]
            [tasks.load]
            type = "noop"
            depends_on = ["transform_a", "transform_b"]
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn instance(id: i64, task_id: &str, map_index: i32, state: TaskState) -> TaskInstance {
        TaskInstance {
            id,
            run: 1,
            dag_id: "diamond".to_owned(),
            task_id: task_id.to_owned(),
            map_index,
            state,
            try_number: 1,
            max_tries: 2,
            kind: "noop".to_owned(),
            queue: "default".to_owned(),
            pool: "default_pool".to_owned(),
            pool_slots: 1,
            priority: 0,
            next_retry_at: None,
            queued_at: None,
            start_date: None,
            end_date: None,
            lease_owner: None,
            lease_expires_at: None,
            external_id: None,
            output: None,
            rendered: None,
            hostname: None,
            updated_at: at(T0),
        }
    }

    /// A try queued at `queued` s, started at `start` s and ended at `end` s after T0.
    fn attempt(ti: i64, try_number: i32, state: TaskState, times: [i64; 3]) -> Attempt {
        let t0 = at(T0);
        Attempt {
            id: ti * 10 + i64::from(try_number),
            task_instance: ti,
            try_number,
            worker: "w".to_owned(),
            hostname: "h".to_owned(),
            state,
            queued_at: Some(t0 + secs(times[0])),
            start_date: t0 + secs(times[1]),
            end_date: (times[2] >= 0).then(|| t0 + secs(times[2])),
            exit_code: None,
            external_id: None,
            error: None,
            reschedules: 0,
            definition_hash: None,
        }
    }

    /// The diamond with transform_b failing once and succeeding on its second try, which
    /// ends after transform_a: the critical path runs through transform_b's retry.
    fn diamond_run() -> (Vec<TaskInstance>, Vec<Attempt>) {
        let instances = vec![
            instance(1, "extract", -1, TaskState::Success),
            instance(2, "transform_a", -1, TaskState::Success),
            instance(3, "transform_b", -1, TaskState::Success),
            instance(4, "load", -1, TaskState::Success),
        ];
        let attempts = vec![
            attempt(4, 1, TaskState::Success, [101, 102, 110]),
            attempt(3, 2, TaskState::Success, [70, 72, 100]),
            attempt(1, 1, TaskState::Success, [0, 2, 10]),
            attempt(2, 1, TaskState::Success, [11, 12, 40]),
            attempt(3, 1, TaskState::UpForRetry, [11, 13, 20]),
        ];
        (instances, attempts)
    }

    /// A chart with every kind of bar and row, for the template's render tests: a
    /// retried task on the critical path, a running try, a mapped instance, an instance
    /// without a try.
    pub(in crate::ui) fn sample() -> Gantt {
        let (mut instances, mut attempts) = diamond_run();
        instances.push(instance(5, "transform_b", 1, TaskState::Running));
        attempts.push(attempt(5, 1, TaskState::Running, [100, 104, -1]));
        instances.push(instance(6, "report", -1, TaskState::UpstreamFailed));
        chart(
            &diamond(),
            &instances,
            &attempts,
            "Asia/Tokyo",
            at(T0) + secs(120),
            |ti| format!("/dags/diamond/runs/r1/tasks/{}", ti.task_id),
        )
        .expect("a chart")
    }

    fn diamond_chart() -> Gantt {
        let (instances, attempts) = diamond_run();
        chart(
            &diamond(),
            &instances,
            &attempts,
            "UTC",
            at(T0) + secs(500),
            |ti| format!("/t/{}", ti.task_id),
        )
        .expect("a chart")
    }

    /// A try's bar as the test reads it: try number, state, symbol.
    type Bar<'a> = (i32, TaskState, &'a str);

    #[test]
    fn rows_keep_the_page_order_and_tries_their_own() {
        let g = diamond_chart();
        let rows: Vec<(&str, Vec<Bar<'_>>)> = g
            .rows
            .iter()
            .map(|r| {
                let bars: Vec<Bar<'_>> = r
                    .bars
                    .iter()
                    .map(|b| (b.try_number, b.state, b.symbol))
                    .collect();
                (r.name.as_str(), bars)
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("extract", vec![(1, TaskState::Success, "✓")]),
                ("transform_a", vec![(1, TaskState::Success, "✓")]),
                (
                    "transform_b",
                    vec![
                        (1, TaskState::UpForRetry, "↻"),
                        (2, TaskState::Success, "✓")
                    ]
                ),
                ("load", vec![(1, TaskState::Success, "✓")]),
            ]
        );
        assert_eq!(g.tries, 5);
        assert_eq!(g.rows[2].href, "/t/transform_b");
        let ys: Vec<f64> = g.rows.iter().map(|r| r.y).collect();
        assert_eq!(ys, [26.0, 50.0, 74.0, 98.0]);
    }

    #[test]
    fn the_scale_maps_the_run_onto_the_plot() {
        // 110 s over 560 px from x = 170.
        let g = diamond_chart();
        assert_eq!((g.start, g.end), (at(T0), at(T0) + secs(110)));
        assert_eq!(g.span, "1m 50s");
        let retried = &g.rows[2].bars;
        // Try 1: queued 11 s, running 13–20 s.
        let px = |s: f64| round(170.0 + 560.0 * s / 110.0);
        assert_eq!(retried[0].queued_x, px(11.0));
        assert_eq!(retried[0].run_x, px(13.0));
        assert_eq!(retried[0].queued_width, round(px(13.0) - px(11.0)));
        assert_eq!(retried[0].run_width, round(px(20.0) - px(13.0)));
        assert_eq!(retried[0].waited.as_deref(), Some("2s"));
        assert_eq!(retried[0].ran, "7s");
        // Try 2 starts right of try 1's end on the same row.
        assert!(retried[1].queued_x > retried[0].run_x + retried[0].run_width);
        assert_eq!(g.plot_bottom, 26.0 + 4.0 * 24.0);
        assert_eq!(g.width, 170.0 + 560.0 + 50.0);
    }

    #[test]
    fn a_running_try_runs_until_now_and_a_short_one_still_shows() {
        let instances = vec![instance(1, "extract", -1, TaskState::Running)];
        let attempts = vec![
            attempt(1, 1, TaskState::Running, [0, 0, -1]),
            attempt(1, 2, TaskState::Success, [0, 0, 0]),
        ];
        let now = at(T0) + secs(60);
        let g = chart(&diamond(), &instances, &attempts, "UTC", now, |_| {
            String::new()
        })
        .expect("chart");
        let bars = &g.rows[0].bars;
        assert_eq!(g.end, now);
        assert_eq!(bars[0].run_width, 560.0);
        assert_eq!(bars[0].end, None);
        assert_eq!(bars[0].ran, "1m 0s");
        assert_eq!(bars[0].symbol, "▸");
        assert_eq!(bars[1].run_width, MIN_BAR);
        assert_eq!(bars[1].queued_width, 0.0);
    }

    #[test]
    fn no_try_no_chart() {
        let instances = vec![instance(1, "extract", -1, TaskState::Scheduled)];
        assert_eq!(
            chart(&diamond(), &instances, &[], "UTC", at(T0), |_| String::new(
            )),
            None
        );
    }

    #[test]
    fn the_critical_path_follows_the_upstream_that_ended_last() {
        let g = diamond_chart();
        assert_eq!(g.critical, ["extract", "transform_b", "load"]);
        let critical: Vec<bool> = g.rows.iter().map(|r| r.critical).collect();
        assert_eq!(critical, [true, false, true, true]);
        // extract's end (10 s) → transform_b's first queued time (11 s), then its end
        // (100 s) → load's queued time (101 s).
        let px = |s: f64| round(170.0 + 560.0 * s / 110.0);
        let links: Vec<(f64, f64, f64, f64)> =
            g.links.iter().map(|l| (l.x1, l.y1, l.x2, l.y2)).collect();
        assert_eq!(
            links,
            [
                (px(10.0), 38.0, px(11.0), 86.0),
                (px(100.0), 86.0, px(101.0), 110.0)
            ]
        );
    }

    #[test]
    fn the_critical_path_switches_branch_with_the_later_end() {
        // Without the retry, transform_a (ends 40 s) is what load waited for.
        let (instances, mut attempts) = diamond_run();
        attempts.retain(|a| !(a.task_instance == 3 && a.try_number == 2));
        let g = chart(&diamond(), &instances, &attempts, "UTC", at(T0), |_| {
            String::new()
        })
        .expect("chart");
        assert_eq!(g.critical, ["extract", "transform_a", "load"]);
    }

    #[test]
    fn an_upstream_that_ended_after_its_downstream_was_queued_is_not_on_the_path() {
        // load was first queued at 101 s; transform_b [1], run from 200 s to 300 s (added
        // after the fact), did not hold it up, though load's cleared second try ends last.
        let (mut instances, mut attempts) = diamond_run();
        instances.push(instance(5, "transform_b", 1, TaskState::Success));
        attempts.push(attempt(5, 1, TaskState::Success, [200, 201, 300]));
        attempts.push(attempt(4, 2, TaskState::Success, [350, 351, 400]));
        let g = chart(
            &diamond(),
            &instances,
            &attempts,
            "UTC",
            at(T0) + secs(400),
            |_| String::new(),
        )
        .expect("chart");
        assert_eq!(g.critical, ["extract", "transform_b", "load"]);
    }

    #[test]
    fn rows_beyond_the_cap_are_counted_not_drawn() {
        let instances: Vec<TaskInstance> = (0..MAX_ROWS as i64 + 5)
            .map(|i| instance(i, "extract", i as i32, TaskState::Success))
            .collect();
        let attempts: Vec<Attempt> = instances
            .iter()
            .map(|ti| attempt(ti.id, 1, TaskState::Success, [0, 1, 2]))
            .collect();
        let g = chart(&diamond(), &instances, &attempts, "UTC", at(T0), |_| {
            String::new()
        })
        .expect("chart");
        assert_eq!(g.rows.len(), MAX_ROWS);
        assert_eq!(g.rows_left_out, 5);
        assert_eq!(g.left_out, "5 more task instances are not drawn.");
        assert_eq!(g.rows[3].name, "extract [3]");
    }

    #[test]
    fn long_names_are_cut_in_the_label_only() {
        assert_eq!(cut("short", 24), "short");
        let long = "a_task_with_a_very_long_name_indeed";
        let label = cut(long, 24);
        assert_eq!(label.chars().count(), 24);
        assert!(label.ends_with('…'));
    }

    fn check_ticks(start: &str, seconds: i64, zone: &str, expected: &[&str]) {
        let zone: Tz = zone.parse().expect("zone");
        let labels: Vec<String> = ticks(at(start), at(start) + secs(seconds), zone)
            .into_iter()
            .map(|t| t.label)
            .collect();
        assert_eq!(labels, expected, "{seconds} s from {start} in {zone}");
    }

    #[test]
    fn ticks_fall_on_round_times_of_the_zone() {
        check_ticks(
            "2026-01-02T03:00:07Z",
            40,
            "UTC",
            &["03:00:10", "03:00:20", "03:00:30", "03:00:40"],
        );
        check_ticks(
            "2026-01-02T03:00:00Z",
            110,
            "UTC",
            &["03:00:00", "03:00:30", "03:01:00", "03:01:30"],
        );
        check_ticks(
            "2026-01-02T02:58:00Z",
            3600,
            "Asia/Tokyo",
            &["12:00", "12:10", "12:20", "12:30", "12:40", "12:50"],
        );
        // A zone 5:45 ahead of UTC: ticks on its own round hours.
        check_ticks(
            "2026-01-02T00:00:00Z",
            4 * 3600,
            "Asia/Kathmandu",
            &["06:00", "07:00", "08:00", "09:00"],
        );
        // Past midnight: dates with the times; days only when the step is a day or more.
        check_ticks(
            "2026-01-01T23:00:00Z",
            2 * 3600,
            "UTC",
            &[
                "01-01 23:00",
                "01-01 23:30",
                "01-02 00:00",
                "01-02 00:30",
                "01-02 01:00",
            ],
        );
        check_ticks(
            "2026-01-01T00:00:00Z",
            10 * 86400,
            "UTC",
            &["01-01", "01-03", "01-05", "01-07", "01-09", "01-11"],
        );
        // A zero-length run still gets its one label.
        check_ticks("2026-01-02T03:00:07Z", 0, "UTC", &["03:00:07"]);
    }

    #[test]
    fn ticks_stay_inside_the_plot() {
        let t = ticks(at(T0), at(T0) + secs(3_000), Tz::UTC);
        assert!(t.len() as i64 <= MAX_TICKS);
        assert!(t
            .iter()
            .all(|t| (LABEL_WIDTH..=LABEL_WIDTH + PLOT_WIDTH).contains(&t.x)));
    }
}
