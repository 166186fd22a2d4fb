//! Tests of the templates against their typed contexts: a representative context of
//! every page (each optional part both present and absent, each role) renders under
//! strict undefined behaviour, and renaming any name a template reads makes some render
//! fail, so a template naming a field its struct lacks fails here, not in a browser.

use chrono::{DateTime, Utc};
use minijinja::{Environment, Value};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{ApiToken, AuditRecord, DagRun, ImportError, LogRow, Role, RunType};
use serde_json::json;

use super::contexts::*;
use super::graph::Edge;
use super::templates::{environment_with, TEMPLATES};
use crate::api::model::{PoolModel, UserModel};
use crate::error::Problem;

/// A context rendered with its page's template.
struct Sample {
    template: &'static str,
    name: &'static str,
    context: Value,
}

fn sample<P: Page>(name: &'static str, page: &P) -> Sample {
    Sample {
        template: P::TEMPLATE,
        name,
        context: Value::from(minijinja::value::Serde(page)),
    }
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|err| panic!("{rfc3339}: {err}"))
        .with_timezone(&Utc)
}

fn layout(role: Role) -> Layout {
    Layout {
        title: "Sample".to_owned(),
        chrome: Some(Chrome {
            username: "ada".to_owned(),
            role: role.to_string(),
            csrf: "csrf-token".to_owned(),
            can_operate: matches!(role, Role::Operator | Role::Admin),
            is_admin: role == Role::Admin,
        }),
    }
}

fn header(tab: Tab, full: bool) -> DagHeader {
    DagHeader {
        dag_id: "nightly".to_owned(),
        href: "/dags/nightly".to_owned(),
        description_html: full.then(|| "<p>Loads the <em>warehouse</em></p>".to_owned()),
        owner: full.then(|| owner_chip("data-team")),
        tags: if full {
            vec![tag_chip("nightly"), tag_chip("dmp")]
        } else {
            Vec::new()
        },
        source_href: "/dags/nightly/source".to_owned(),
        schedule: full.then(|| "0 3 * * *".to_owned()),
        timezone: "Asia/Tokyo".to_owned(),
        is_paused: full,
        is_active: !full,
        file_path: "dags/nightly.toml".to_owned(),
        next_run: full.then(|| at("2026-01-02T18:00:00Z")),
        tab,
    }
}

fn run(state: RunState, full: bool) -> DagRun {
    DagRun {
        id: 1,
        dag_id: "nightly".to_owned(),
        run_id: "scheduled__2026-01-01".to_owned(),
        run_type: RunType::Scheduled,
        logical_date: at("2026-01-01T18:00:00Z"),
        data_interval_start: at("2026-01-01T18:00:00Z"),
        data_interval_end: at("2026-01-02T18:00:00Z"),
        state,
        conf: json!({ "target": "prod" }),
        queued_at: at("2026-01-02T18:00:00Z"),
        start_date: full.then(|| at("2026-01-02T18:00:01Z")),
        end_date: full.then(|| at("2026-01-02T19:02:03Z")),
        definition_hash: "abc".to_owned(),
    }
}

fn log_lines() -> Vec<LogRow> {
    ["stdout", "stderr"]
        .into_iter()
        .enumerate()
        .map(|(i, stream)| LogRow {
            id: i as i64 + 1,
            line_no: i as i64 + 1,
            ts: at("2026-01-02T18:00:02Z"),
            stream: stream.to_owned(),
            line: format!("line {i} <b>"),
        })
        .collect()
}

/// The task page's log box: empty (`full` false), an earlier page, or search matches.
fn log_view(full: bool, searching: bool) -> LogView {
    let page = "/dags/nightly/runs/r1/tasks/fanout?map_index=0&try=1";
    LogView {
        try_number: i32::from(full),
        lines: if full { log_lines() } else { Vec::new() },
        total: if full { 5000 } else { 0 },
        live: full && !searching,
        poll: "/dags/nightly/runs/r1/tasks/fanout/log?map_index=0&try=1&after=2".to_owned(),
        api: "/api/v1/dags/nightly/dagRuns/r1/taskInstances/fanout/logs/1?map_index=0".to_owned(),
        download:
            "/api/v1/dags/nightly/dagRuns/r1/taskInstances/fanout/logs/1/download?map_index=0"
                .to_owned(),
        earlier: (full && !searching).then(|| earlier_link(2001)),
        latest: (full && !searching).then(|| format!("{page}#log")),
        context: searching.then(|| format!("{page}&around=")),
        search: LogSearch {
            action: "/dags/nightly/runs/r1/tasks/fanout".to_owned(),
            map_index: full.then_some(0),
            term: if searching { "line <b>" } else { "" }.to_owned(),
            more: searching.then(|| format!("{page}&q=line&after=2#log")),
            clear: format!("{page}#log"),
            // Shown in the sample without lines, so the other samples show the lines.
            error: (!full).then(|| "the search term is empty".to_owned()),
        },
    }
}

fn earlier_link(before: i64) -> EarlierLink {
    EarlierLink {
        href: format!("/dags/nightly/runs/r1/tasks/extract?try=1&before={before}#log"),
        fragment: format!("/dags/nightly/runs/r1/tasks/extract/log/earlier?try=1&before={before}"),
        from: (before - 2000).max(1),
        to: before - 1,
    }
}

fn pool(name: &str) -> PoolModel {
    PoolModel {
        name: name.to_owned(),
        slots: 8,
        occupied_slots: 3,
        running_slots: 2,
        queued_slots: 1,
        open_slots: 5,
        description: "the warehouse".to_owned(),
    }
}

fn dags_pages() -> Vec<Sample> {
    let row = |full: bool| DagRow {
        dag_id: "nightly".to_owned(),
        href: "/dags/nightly".to_owned(),
        description_html: full.then(|| "<p>Loads</p>".to_owned()),
        owner: full.then(|| owner_chip("data-team")),
        tags: if full {
            vec![tag_chip("nightly")]
        } else {
            Vec::new()
        },
        schedule: full.then(|| "0 3 * * *".to_owned()),
        timezone: "Asia/Tokyo".to_owned(),
        is_paused: full,
        next_run: full.then(|| at("2026-01-02T18:00:00Z")),
        latest_state: full.then_some(RunState::Failed),
        late: full,
        runs: vec![RunLink {
            run_id: "r1".to_owned(),
            state: RunState::Success,
            href: "/dags/nightly/runs/r1".to_owned(),
            failed_task: full,
        }],
    };
    let page = |role: Role, full: bool| DagsPage {
        layout: layout(role),
        dags: if full {
            vec![row(true), row(false)]
        } else {
            Vec::new()
        },
        total: if full { 2 } else { 0 },
        filter: "all".to_owned(),
        q: "night ly".to_owned(),
        tag: if full {
            "nightly".to_owned()
        } else {
            String::new()
        },
        owner: if full {
            "data-team".to_owned()
        } else {
            String::new()
        },
        without_tag: "/dags?filter=all&q=night%20ly&owner=data-team".to_owned(),
        without_owner: "/dags?filter=all&q=night%20ly&tag=nightly".to_owned(),
        page_query: "filter=all&q=night%20ly&tag=nightly&owner=data-team".to_owned(),
        prev: full.then_some(0),
        next: full.then_some(100),
        import_errors: if full {
            vec![ImportError {
                file_path: "dags/broken.toml".to_owned(),
                message: "bad cron".to_owned(),
                updated_at: at("2026-01-02T18:00:00Z"),
            }]
        } else {
            Vec::new()
        },
        live: full,
        live_href: "/dags?filter=all&q=night%20ly&offset=0".to_owned(),
    };
    vec![
        sample("dags, operator", &page(Role::Operator, true)),
        sample("dags, empty, viewer", &page(Role::Viewer, false)),
    ]
}

fn grid_pages() -> Vec<Sample> {
    let page = |full: bool| GridPage {
        layout: layout(Role::Operator),
        dag: header(Tab::Grid, full),
        columns: if full {
            vec![
                GridColumn {
                    run_id: "r1".to_owned(),
                    state: RunState::Success,
                    href: "/dags/nightly/runs/r1".to_owned(),
                    date: "01-02".to_owned(),
                    time: "03:00".to_owned(),
                    duration: full.then(|| "1h 2m 3s".to_owned()),
                    bar: 20,
                    bar_y: 8,
                    failed_task: full,
                    title: "r1 (success), 1h 2m 3s, succeeded with a failed task".to_owned(),
                },
                GridColumn {
                    run_id: "r2".to_owned(),
                    state: RunState::Failed,
                    href: "/dags/nightly/runs/r2".to_owned(),
                    date: "01-03".to_owned(),
                    time: "03:00".to_owned(),
                    duration: None,
                    bar: 0,
                    bar_y: 28,
                    failed_task: false,
                    title: "r2 (failed)".to_owned(),
                },
            ]
        } else {
            Vec::new()
        },
        rows: vec![GridRow {
            task_id: "extract".to_owned(),
            cells: vec![
                Some(GridCell {
                    state: TaskState::Failed,
                    mapped: full,
                    count: 2,
                    retried: full,
                    symbol: "✕",
                    title: "extract @ r1: 2 failed".to_owned(),
                    href: "/dags/nightly/runs/r1/tasks/extract".to_owned(),
                }),
                None,
            ],
        }],
        total: if full { 30 } else { 1 },
        older: full.then_some(25),
        newer: full.then_some(0),
        live: full,
        live_href: "/dags/nightly?offset=0&runs=25".to_owned(),
        day: full.then(|| "2026-01-02".to_owned()),
        day_query: if full { "&date=2026-01-02" } else { "" }.to_owned(),
    };
    vec![
        sample("grid", &page(true)),
        sample("grid, no runs", &page(false)),
    ]
}

fn graph_pages() -> Vec<Sample> {
    let page = |full: bool| GraphPage {
        layout: layout(Role::Viewer),
        dag: header(Tab::Graph, full),
        run: full.then(|| run(RunState::Failed, true)),
        runs: vec![RunChoice {
            run_id: "scheduled__2026-01-01".to_owned(),
            state: RunState::Failed,
        }],
        width: 400,
        height: 100,
        node_width: 170,
        node_height: 34,
        nodes: vec![GraphNode {
            task_id: "extract".to_owned(),
            x: 10,
            y: 10,
            label: "extract".to_owned(),
            state: full.then_some(TaskState::Failed),
            count: if full { 3 } else { 0 },
            kind: Some("command"),
            href: full.then(|| "/dags/nightly/runs/r1/tasks/extract".to_owned()),
        }],
        edges: vec![Edge {
            from: "extract".to_owned(),
            to: "load".to_owned(),
            path: "M180,27 C210,27 210,27 240,27".to_owned(),
        }],
        live: full,
        live_href: "/dags/nightly/graph?run_id=r1".to_owned(),
    };
    vec![
        sample("graph", &page(true)),
        sample("graph, no run", &page(false)),
    ]
}

fn run_pages() -> Vec<Sample> {
    let page = |role: Role, state: RunState, full: bool| RunPage {
        layout: layout(role),
        dag: header(Tab::Run, full),
        run: run(state, full),
        run_href: "/dags/nightly/runs/r1".to_owned(),
        graph_href: "/dags/nightly/graph?run_id=r1".to_owned(),
        source_href: "/dags/nightly/source?hash=ab12".to_owned(),
        definition_current: !full,
        version: super::versions::RunVersion {
            run_version: full.then_some(3),
            current_version: Some(4),
        },
        diff: full.then(|| super::versions::VersionDiff {
            more: 5,
            ..super::versions::diff(
                "[tasks.load]\ncommand = \"echo <old>\"\n",
                "[tasks.load]\ncommand = \"echo <new> & more\"\nretries = 2\n",
            )
        }),
        tis: vec![RunTaskRow {
            task_id: "fanout".to_owned(),
            map_index: if full { 0 } else { -1 },
            state: TaskState::Running,
            try_number: 1,
            max_tries: 3,
            kind: "command".to_owned(),
            start_date: full.then(|| at("2026-01-02T18:00:01Z")),
            end_date: None,
            href: "/dags/nightly/runs/r1/tasks/fanout?map_index=0".to_owned(),
        }],
        has_failed: full,
        failed: if full {
            vec![
                FailedRow {
                    task_id: "load".to_owned(),
                    map_index: -1,
                    error: Some("COPY failed: disk full".to_owned()),
                    href: "/dags/nightly/runs/r1/tasks/load".to_owned(),
                },
                FailedRow {
                    task_id: "fanout".to_owned(),
                    map_index: 2,
                    error: None,
                    href: "/dags/nightly/runs/r1/tasks/fanout?map_index=2".to_owned(),
                },
            ]
        } else {
            Vec::new()
        },
        failed_more: usize::from(full),
        gantt: full.then(super::gantt::tests::sample),
        late: if full {
            vec![
                "the run missed its deadline at 09:00 (Asia/Tokyo) (due 2026-01-02 00:00:00 UTC)"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        },
        live: !state.is_finished(),
        live_href: "/dags/nightly/runs/r1/live".to_owned(),
        now: at("2026-01-02T18:00:09Z"),
    };
    vec![
        sample(
            "run, operator",
            &page(Role::Operator, RunState::Running, true),
        ),
        sample(
            "run, operator, done",
            &page(Role::Operator, RunState::Success, false),
        ),
        sample("run, viewer", &page(Role::Viewer, RunState::Queued, false)),
        sample(
            "run live, operator",
            &RunLive(page(Role::Operator, RunState::Running, true)),
        ),
        sample(
            "run live, viewer, done",
            &RunLive(page(Role::Viewer, RunState::Failed, false)),
        ),
    ]
}

fn task_pages() -> Vec<Sample> {
    let chips = vec![InstanceChip {
        map_index: 0,
        state: TaskState::Failed,
        href: "/dags/nightly/runs/r1/tasks/fanout?map_index=0".to_owned(),
        current: true,
    }];
    let list = |role: Role| TaskPage {
        layout: layout(role),
        dag: header(Tab::Task, false),
        run: run(RunState::Failed, false),
        run_href: "/dags/nightly/runs/r1".to_owned(),
        task_id: "fanout".to_owned(),
        doc_html: Some(
            "<p>If it fails, <a href=\"https://runbook.example\">read this</a>.</p>".to_owned(),
        ),
        mapped: true,
        instances: chips.clone(),
        any_failed: true,
        ti: None,
        attempts: Vec::new(),
        late: None,
        self_href: None,
        log: None,
        live: false,
        live_href: "/dags/nightly/runs/r1/tasks/fanout/live".to_owned(),
        log_swap: false,
        now: at("2026-01-02T18:00:09Z"),
        durations: None,
    };
    let instance = |role: Role, full: bool, state: TaskState| {
        let opt = |s: &str| full.then(|| s.to_owned());
        TaskPage {
            ti: Some(InstanceView {
                map_index: if full { 0 } else { -1 },
                state,
                waiting: matches!(
                    state,
                    TaskState::Pending | TaskState::Scheduled | TaskState::Queued
                ),
                times_apply: matches!(
                    state,
                    TaskState::Running
                        | TaskState::Success
                        | TaskState::Failed
                        | TaskState::UpForRetry
                        | TaskState::UpForReschedule
                ),
                try_number: 1,
                max_tries: 2,
                kind: "command".to_owned(),
                queue: "default".to_owned(),
                pool: "default_pool".to_owned(),
                start_date: full.then(|| at("2026-01-02T18:00:01Z")),
                end_date: full.then(|| at("2026-01-02T18:00:09Z")),
                next_retry_at: full.then(|| at("2026-01-02T18:05:00Z")),
                hostname: opt("host-1"),
                lease_owner: opt("worker-1"),
                external_id: opt("arn:task/1"),
                required_run: full.then(|| RequiredRun {
                    dag_id: "extract".to_owned(),
                    run_id: "scheduled__2026-01-02T00:00:00+00:00".to_owned(),
                    href: "/dags/extract/runs/scheduled__2026-01-02T00%3A00%3A00%2B00%3A00"
                        .to_owned(),
                }),
                rendered: opt("{\"command\": \"echo\"}"),
                output: opt("{\"rows\": 3}"),
                last_error: opt("exit code 3"),
                can_succeed: full,
                can_fail: full,
                can_clear: full,
                approval: None,
            }),
            attempts: if full {
                vec![AttemptRow {
                    try_number: 1,
                    state: TaskState::Failed,
                    worker: "worker-1".to_owned(),
                    hostname: "host-1".to_owned(),
                    start_date: at("2026-01-02T18:00:01Z"),
                    end_date: Some(at("2026-01-02T18:00:09Z")),
                    exit_code: Some(3),
                    external_id: opt("arn:task/1"),
                    error: opt("exit code 3"),
                    reschedules: 2,
                    href: "/dags/nightly/runs/r1/tasks/fanout?map_index=0&try=1#log".to_owned(),
                    version: opt("ab12cd34ef56ab12cd34ef56"),
                    version_href: opt("/dags/nightly/source?hash=ab12cd34ef56ab12cd34ef56"),
                    shown: true,
                }]
            } else {
                Vec::new()
            },
            late: full.then(|| {
                "task fanout missed its deadline within 2h (due 2026-01-02 20:00:01 UTC)".to_owned()
            }),
            self_href: Some("/dags/nightly/runs/r1/tasks/fanout?map_index=0".to_owned()),
            // The viewer's sample shows a search, the operator's an earlier page.
            log: Some(log_view(full, role == Role::Viewer)),
            durations: full.then(|| super::charts::tests::sample_chart("try-durations")),
            mapped: full,
            live: !state.is_finished(),
            ..list(role)
        }
    };
    // A running instance on its running try: durations so far.
    let running = || {
        let mut page = instance(Role::Operator, true, TaskState::Running);
        if let Some(ti) = page.ti.as_mut() {
            ti.end_date = None;
        }
        for a in &mut page.attempts {
            a.state = TaskState::Running;
            a.end_date = None;
        }
        page
    };
    // An approval: awaiting a decision (the form for an operator, a note for a viewer),
    // and decided. The message is the author's template output, shown escaped.
    let approval = |role: Role, state: TaskState| {
        let mut page = instance(role, true, state);
        if let Some(ti) = page.ti.as_mut() {
            let open = state == TaskState::AwaitingInput;
            ti.kind = "approval".to_owned();
            ti.approval = Some(super::approval::ApprovalView {
                message: Some("Load <b>42</b> rows into marts?".to_owned()),
                requested_at: Some(at("2026-01-02T18:00:01Z")),
                timeout_at: Some(at("2026-01-02T20:00:01Z")),
                open,
                decision: (!open).then(|| "rejected".to_owned()),
                decided_by: (!open).then(|| "alice".to_owned()),
                decided_at: (!open).then(|| at("2026-01-02T18:30:00Z")),
                comment: (!open).then(|| "not <today>".to_owned()),
                action: "/dags/nightly/runs/r1/tasks/fanout/approval".to_owned(),
            });
        }
        page
    };
    vec![
        sample(
            "task, approval awaiting input, operator",
            &approval(Role::Operator, TaskState::AwaitingInput),
        ),
        sample(
            "task, approval awaiting input, viewer",
            &approval(Role::Viewer, TaskState::AwaitingInput),
        ),
        sample(
            "task, approval rejected, operator",
            &approval(Role::Operator, TaskState::Failed),
        ),
        sample("task, mapped list, operator", &list(Role::Operator)),
        sample("task, mapped list, viewer", &list(Role::Viewer)),
        sample(
            "task, failed instance, operator",
            &instance(Role::Operator, true, TaskState::Failed),
        ),
        sample(
            "task, pending instance, operator",
            &instance(Role::Operator, false, TaskState::Pending),
        ),
        sample(
            "task, cleared instance waiting for its next try, viewer",
            &instance(Role::Viewer, true, TaskState::Scheduled),
        ),
        sample(
            "task, skipped instance, operator",
            &TaskPage {
                doc_html: None,
                ..instance(Role::Operator, true, TaskState::Skipped)
            },
        ),
        sample(
            "task, up for retry, viewer",
            &instance(Role::Viewer, true, TaskState::UpForRetry),
        ),
        sample(
            "task, sensor waiting for its next poke without a slot, viewer",
            &instance(Role::Viewer, true, TaskState::UpForReschedule),
        ),
        sample(
            "task, failed instance, viewer",
            &instance(Role::Viewer, true, TaskState::Failed),
        ),
        sample("task, running instance, operator", &running()),
        sample(
            "task live, running instance, operator",
            &TaskLive(TaskPage {
                log: None,
                ..running()
            }),
        ),
        sample("task live, mapped list", &TaskLive(list(Role::Viewer))),
        sample(
            "task live, a newer try's log swapped in",
            &TaskLive(TaskPage {
                log_swap: true,
                ..instance(Role::Viewer, false, TaskState::Running)
            }),
        ),
    ]
}

fn other_pages() -> Vec<Sample> {
    let log = |live: bool| LogLinesPage {
        lines: log_lines(),
        live,
        poll: "/dags/nightly/runs/r1/tasks/extract/log?try=1&after=2".to_owned(),
        earlier: (!live).then(|| earlier_link(2001)),
    };
    let field =
        |name: &str, kind: &str, input: &str, value: &str, error: Option<&str>| ParamField {
            name: name.to_owned(),
            input_name: format!("param.{name}"),
            id: format!("param-{name}"),
            kind: kind.to_owned(),
            input: input.to_owned(),
            step: (input == "number").then(|| "1".to_owned()),
            placeholder: (kind == "datetime").then(|| "2026-03-01T02:00:00Z".to_owned()),
            value: value.to_owned(),
            checked: value == "true",
            options: if input == "select" {
                ["dev", "prod"]
                    .map(|v| ParamOption {
                        value: v.to_owned(),
                        selected: v == value,
                    })
                    .to_vec()
            } else {
                Vec::new()
            },
            default: value.to_owned(),
            description: (kind == "integer").then(|| "Rows to load".to_owned()),
            error: error.map(|e| format!("{name}: {e}")),
        };
    let trigger = |error: Option<&str>, params: bool| TriggerPage {
        layout: layout(Role::Operator),
        dag_id: "nightly".to_owned(),
        dag_href: "/dags/nightly".to_owned(),
        run_id: "by_hand".to_owned(),
        run_id_error: error.map(|_| "a run with this id already exists".to_owned()),
        fields: if params {
            vec![
                field("limit", "integer", "number", "five", error),
                field("full", "boolean", "checkbox", "true", error),
                field("env", "string", "select", "prod", error),
                field("flags", "json", "textarea", "{}", error),
                field("at", "datetime", "text", "2026-03-01T02:00:00Z", error),
                field("day", "date", "date", "2026-03-01", None),
            ]
        } else {
            Vec::new()
        },
        conf: "{\"target\": \"prod\"}".to_owned(),
        conf_error: error.map(str::to_owned),
        error: error.map(str::to_owned),
        recent: vec![RecentConf {
            run_id: "manual_1".to_owned(),
            run_href: "/dags/nightly/runs/manual_1".to_owned(),
            conf: "{\"limit\":5}".to_owned(),
            href: "/dags/nightly/trigger?conf=%7B%22limit%22%3A5%7D".to_owned(),
        }],
    };
    let audit = |full: bool| AuditPage {
        layout: layout(Role::Viewer),
        entries: vec![AuditRow {
            entry: AuditRecord {
                id: 1,
                ts: at("2026-01-02T18:00:00Z"),
                actor: "ada".to_owned(),
                action: "dag.pause".to_owned(),
                dag_id: full.then(|| "nightly".to_owned()),
                run_id: full.then(|| "r1".to_owned()),
                task_id: full.then(|| "extract".to_owned()),
                ip: full.then(|| "10.0.0.1".to_owned()),
                details: json!({ "paused": true }),
            },
            actor_href: "/audit?actor=ada".to_owned(),
            dag_href: full.then(|| "/dags/nightly".to_owned()),
            run_href: full.then(|| "/dags/nightly/runs/r1".to_owned()),
            task_href: full.then(|| "/dags/nightly/runs/r1/tasks/extract".to_owned()),
            subject_href: full.then(|| "/admin/pools".to_owned()),
        }],
        total: 1,
        dag_id: "nightly".to_owned(),
        actor: String::new(),
        prev: full.then_some(0),
        next: full.then_some(200),
    };
    let empty_audit = AuditPage {
        entries: Vec::new(),
        ..audit(false)
    };
    let admin = |role: Role, full: bool| AdminPage {
        layout: layout(role),
        pools: vec![pool("default_pool")],
        tokens: if full {
            vec![ApiToken {
                id: 7,
                user_id: 1,
                name: "ci".to_owned(),
                created_at: at("2026-01-02T18:00:00Z"),
                expires_at: None,
                last_used_at: Some(at("2026-01-03T18:00:00Z")),
            }]
        } else {
            Vec::new()
        },
        new_token: full.then(|| "secret-token".to_owned()),
    };
    let pools = |error: Option<&str>| PoolsPage {
        layout: layout(Role::Admin),
        pools: vec![
            PoolRow {
                pool: pool("default_pool"),
                href: "/admin/pools/default_pool".to_owned(),
                default: true,
            },
            PoolRow {
                pool: pool("warehouse"),
                href: "/admin/pools/warehouse".to_owned(),
                default: false,
            },
        ],
        error: error.map(str::to_owned),
    };
    let user = |name: &str, disabled: bool, is_me: bool| UserRow {
        user: UserModel {
            username: name.to_owned(),
            role: "operator".to_owned(),
            disabled,
            created_on: at("2026-01-02T18:00:00Z"),
        },
        href: format!("/admin/users/{name}"),
        is_me,
    };
    let users = |full: bool| UsersPage {
        layout: layout(Role::Admin),
        users: vec![
            user("ada", false, true),
            user("otto", false, false),
            user("vera", true, false),
        ],
        roles: vec![Role::Viewer, Role::Operator, Role::Admin],
        min_password: 8,
        error: full.then(|| "a password needs at least 8 characters".to_owned()),
        password: full.then(|| ShownPassword {
            username: "otto".to_owned(),
            password: "generated".to_owned(),
        }),
    };
    let login = |error: Option<&str>| LoginPage {
        layout: Layout::anonymous("Sign in"),
        next: "/dags".to_owned(),
        csrf: "login-csrf".to_owned(),
        error: error.map(str::to_owned),
    };
    let error = ErrorPage {
        layout: Layout::anonymous("404 Not Found"),
        problem: Problem {
            kind: "urn:nightshift:problem:not-found".to_owned(),
            title: "Not Found".to_owned(),
            status: 404,
            detail: "DAG missing not found".to_owned(),
        },
    };
    vec![
        sample("log lines, live", &log(true)),
        sample("log lines, done", &log(false)),
        sample("trigger", &trigger(None, false)),
        sample(
            "trigger, bad conf",
            &trigger(Some("conf is not valid JSON"), false),
        ),
        sample("trigger, params", &trigger(None, true)),
        sample(
            "trigger, params, errors",
            &trigger(Some("expected an integer"), true),
        ),
        sample("audit", &audit(true)),
        sample("audit, sparse", &audit(false)),
        sample("audit, empty", &empty_audit),
        sample("admin, admin", &admin(Role::Admin, true)),
        sample("admin, viewer", &admin(Role::Viewer, false)),
        sample("pools", &pools(None)),
        sample("pools, error", &pools(Some("slots must be a whole number"))),
        sample("users", &users(false)),
        sample("users, notices", &users(true)),
        sample("login", &login(None)),
        sample("login, error", &login(Some("Wrong user name or password."))),
        sample("error", &error),
    ]
}

/// An action's confirmation: with changes (and more than are listed), a refusal and a
/// live part to refresh; and with nothing to change.
fn confirmation(full: bool) -> Confirmation {
    let change = ChangeRow {
        task_id: "load".to_owned(),
        map_index: if full { 2 } else { -1 },
        try_number: 1,
        from: TaskState::Failed,
        to: TaskState::Pending,
        href: "/dags/nightly/runs/r1/tasks/load".to_owned(),
    };
    Confirmation {
        title: "Retry load".to_owned(),
        intro: "Clearing puts these back to pending.".to_owned(),
        action: "/dags/nightly/runs/r1/clear".to_owned(),
        fields: vec![HiddenField {
            name: "task_id".to_owned(),
            value: "load".to_owned(),
        }],
        options: vec![CheckOption {
            name: "keep_version".to_owned(),
            label: "Keep the run's version".to_owned(),
            checked: full,
        }],
        expect: "7:failed:1>pending".to_owned(),
        csrf: "csrf-token".to_owned(),
        changes: if full { vec![change] } else { Vec::new() },
        more: usize::from(full) * 3,
        total: usize::from(full) * 4,
        error: full.then(|| "the task instances changed".to_owned()),
        back: "/dags/nightly/runs/r1/tasks/load".to_owned(),
        region: Some(if full { "task-live" } else { "run-live" }.to_owned()),
        button: "Confirm: clear".to_owned(),
        danger: full,
        overlay: full,
    }
}

fn confirm_pages() -> Vec<Sample> {
    let mut pages = Vec::new();
    for full in [true, false] {
        pages.push(sample(
            "confirm page",
            &ConfirmPage {
                layout: layout(Role::Operator),
                confirm: confirmation(full),
            },
        ));
        pages.push(sample(
            "confirm box",
            &ConfirmBox {
                confirm: confirmation(full),
            },
        ));
    }
    pages
}

fn source_pages() -> Vec<Sample> {
    let page = |kept: bool, current: bool| SourcePage {
        layout: layout(Role::Viewer),
        dag: header(Tab::Source, kept),
        hash: "ab12cd34ef56ab12cd34ef56".to_owned(),
        current,
        file_path: kept.then(|| "dags/nightly.toml".to_owned()),
        loaded_at: kept.then(|| at("2026-01-02T18:00:00Z")),
        lines: if kept {
            vec![
                "<span class=\"hl-comment\"># nightly</span>".to_owned(),
                String::new(),
            ]
        } else {
            Vec::new()
        },
        current_href: (!current).then(|| "/dags/nightly/source".to_owned()),
    };
    vec![
        sample("source, kept, current", &page(true, true)),
        sample("source, an older version not kept", &page(false, false)),
    ]
}

fn history_pages() -> Vec<Sample> {
    let durations = |full: bool| DurationsPage {
        layout: layout(Role::Viewer),
        dag: header(Tab::Durations, full),
        runs: 50,
        chart: if full {
            super::charts::tests::sample_chart("run-durations")
        } else {
            super::charts::duration_chart("run-durations", "none", &[], chrono_tz::Tz::UTC)
        },
    };
    let calendar = |full: bool| CalendarPage {
        layout: layout(Role::Viewer),
        dag: header(Tab::Calendar, full),
        chart: super::charts::tests::sample_calendar(),
        timezone: "Asia/Tokyo".to_owned(),
        truncated: full.then_some(100_000),
        previous: "/dags/nightly/calendar?year=2025".to_owned(),
        next: full.then(|| "/dags/nightly/calendar?year=2026".to_owned()),
        trailing: full.then(|| "/dags/nightly/calendar".to_owned()),
    };
    vec![
        sample("durations", &durations(true)),
        sample("durations, no runs", &durations(false)),
        sample("calendar, a year", &calendar(true)),
        sample("calendar, the year to today", &calendar(false)),
    ]
}

fn samples() -> Vec<Sample> {
    [
        history_pages(),
        dags_pages(),
        grid_pages(),
        graph_pages(),
        run_pages(),
        task_pages(),
        other_pages(),
        confirm_pages(),
        source_pages(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

mod checks;
