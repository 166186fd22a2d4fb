//! The pages: DAG list, grid, graph, run, task instance (with its live log), audit log,
//! administration. Each gathers what it shows from the store and renders one template.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::Utc;
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use nightshift_store::{
    AuditFilter, AuditRecord, DagOverviewFilter, GridCell, RunQuery, TaskInstance,
};
use serde::Deserialize;

use super::contexts::{
    AdminPage, AttemptRow, AuditPage, AuditRow, DagHeader, DagRow, DagsPage, FailedRow, GraphNode,
    GraphPage, GridPage, GridRow, InstanceChip, InstanceView, LogLinesPage, RunChoice, RunLink,
    RunLive, RunPage, RunTaskRow, Tab, TaskLive, TaskPage,
};
use super::{contexts, gantt, graph, history, logs};
use super::{dag_path, render, run_path, task_path, urlencode, Layout, PageError, PageResult};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::lookup::{dag_record, definition, load_run, mask_secrets, next_run};
use crate::AppState;

const DAGS_PER_PAGE: i64 = 50;
const RECENT_RUNS: i64 = 12;
const GRID_RUNS: i64 = 25;
const LOG_PAGE: i64 = 1000;
const AUDIT_PER_PAGE: i64 = 100;
/// Failed instances a run page names with their errors (a fan-out can fail thousands).
const FAILED_LISTED: usize = 20;

/// How alarming a state is: the colour of a collapsed (mapped) cell is its worst state.
fn severity(state: TaskState) -> u8 {
    match state {
        TaskState::Failed => 9,
        TaskState::UpstreamFailed => 8,
        TaskState::UpForRetry => 7,
        TaskState::Running => 6,
        TaskState::UpForReschedule => 6,
        TaskState::AwaitingInput => 6,
        TaskState::Queued => 5,
        TaskState::Scheduled => 4,
        TaskState::Pending => 3,
        TaskState::Skipped => 2,
        TaskState::Success => 1,
        TaskState::Removed => 0,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DagListParams {
    /// all (default), failing, paused, active
    pub filter: Option<String>,
    pub q: Option<String>,
    /// Only DAGs with this tag / of this owner (the chips link here).
    pub tag: Option<String>,
    pub owner: Option<String>,
    pub offset: Option<u32>,
}

/// The DAG list's query string for these filters (empty ones left out).
fn dag_list_query(filter: &str, q: &str, tag: &str, owner: &str) -> String {
    [("filter", filter), ("q", q), ("tag", tag), ("owner", owner)]
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", urlencode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn dag_list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(params): Query<DagListParams>,
) -> PageResult {
    let filter_name = params.filter.clone().unwrap_or_else(|| "all".to_owned());
    let offset = i64::from(params.offset.unwrap_or(0));
    let tag = params.tag.clone().filter(|t| !t.is_empty());
    let owner = params.owner.clone().filter(|o| !o.is_empty());
    let filter = DagOverviewFilter {
        failing_only: filter_name == "failing",
        paused: match filter_name.as_str() {
            "paused" => Some(true),
            "active" => Some(false),
            _ => None,
        },
        active: Some(true),
        search: params.q.clone().filter(|q| !q.trim().is_empty()),
        tag: tag.clone(),
        owner: owner.clone(),
        limit: DAGS_PER_PAGE,
        offset,
    };
    let rows = state.store.dag_overviews(&filter).await?;
    let total = state.store.count_dag_overviews(&filter).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.dag.dag_id.clone()).collect();
    let mut recent: HashMap<String, Vec<RunLink>> = HashMap::new();
    let recent_runs = state.store.recent_runs(&ids, RECENT_RUNS).await?;
    let succeeded: Vec<i64> = recent_runs
        .iter()
        .filter(|r| r.state == RunState::Success)
        .map(|r| r.id)
        .collect();
    let with_failed_task = state.store.runs_with_failed_tasks(&succeeded).await?;
    for run in recent_runs {
        recent.entry(run.dag_id.clone()).or_default().push(RunLink {
            href: run_path(&run.dag_id, &run.run_id),
            failed_task: with_failed_task.contains(&run.id),
            run_id: run.run_id,
            state: run.state,
        });
    }
    let late_dags: std::collections::HashSet<String> =
        state.store.late_dags().await?.into_iter().collect();
    let now = Utc::now();
    let dags: Vec<DagRow> = rows
        .iter()
        .map(|row| {
            let d = &row.dag;
            let mut runs = recent.remove(&d.dag_id).unwrap_or_default();
            runs.reverse();
            DagRow {
                dag_id: d.dag_id.clone(),
                href: dag_path(&d.dag_id),
                description_html: d.description.as_deref().map(super::markdown::render),
                owner: d.owner.as_deref().map(contexts::owner_chip),
                tags: d.tags.iter().map(|t| contexts::tag_chip(t)).collect(),
                schedule: d.schedule.clone(),
                timezone: d.timezone.clone(),
                is_paused: d.is_paused,
                next_run: next_run(d, now),
                latest_state: row.latest_state,
                late: late_dags.contains(&d.dag_id),
                runs,
            }
        })
        .collect();
    let live = dags
        .iter()
        .any(|d| d.runs.iter().any(|r| !r.state.is_finished()));
    let (q, tag, owner) = (
        params.q.unwrap_or_default(),
        tag.unwrap_or_default(),
        owner.unwrap_or_default(),
    );
    let page_query = dag_list_query(&filter_name, &q, &tag, &owner);
    let live_href = format!("/dags?{page_query}&offset={offset}");
    let page = DagsPage {
        layout: Layout::new("DAGs", &user),
        live,
        live_href,
        dags,
        total,
        without_tag: format!("/dags?{}", dag_list_query(&filter_name, &q, "", &owner)),
        without_owner: format!("/dags?{}", dag_list_query(&filter_name, &q, &tag, "")),
        page_query,
        filter: filter_name,
        q,
        tag,
        owner,
        prev: (offset > 0).then(|| (offset - DAGS_PER_PAGE).max(0)),
        next: (offset + DAGS_PER_PAGE < total).then_some(offset + DAGS_PER_PAGE),
        import_errors: state.store.list_import_errors().await?,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct GridParams {
    pub offset: Option<u32>,
    pub runs: Option<u32>,
    /// Only the runs whose logical date is this day in the DAG's zone (`YYYY-MM-DD`).
    pub date: Option<chrono::NaiveDate>,
}

/// The mark beside a grid cell's colour.
fn cell_symbol(state: TaskState, retried: bool) -> &'static str {
    match state {
        TaskState::Failed => "✕",
        TaskState::UpstreamFailed => "↑",
        TaskState::UpForRetry => "↻",
        TaskState::UpForReschedule => "⏸",
        TaskState::AwaitingInput => "?",
        _ if retried => "↻",
        _ => "",
    }
}

pub async fn grid(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(params): Query<GridParams>,
) -> PageResult {
    let record = dag_record(&state.store, &dag_id).await?;
    let dag = definition(&record)?;
    let limit = params
        .runs
        .map_or(GRID_RUNS, |n| i64::from(n.clamp(1, 100)));
    let offset = i64::from(params.offset.unwrap_or(0));
    let tz = history::zone(&record);
    let day = params.date.map(|d| history::day_range(d, tz));
    let query = RunQuery {
        dag_id: Some(dag_id.clone()),
        logical_date_gte: day.map(|(from, _)| from),
        logical_date_lte: day.map(|(_, to)| to),
        limit,
        offset,
        ..RunQuery::default()
    };
    let mut runs = state.store.query_runs(&query).await?;
    let total = state.store.count_query_runs(&query).await?;
    runs.reverse(); // oldest on the left
    let run_ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let cells = state.store.grid_cells(&run_ids).await?;
    let mut by_key: HashMap<(i64, &str), Vec<&GridCell>> = HashMap::new();
    for cell in &cells {
        by_key
            .entry((cell.run, cell.task_id.as_str()))
            .or_default()
            .push(cell);
    }
    let mut task_ids: Vec<String> = dag
        .topological_order()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for cell in &cells {
        if !task_ids.contains(&cell.task_id) {
            task_ids.push(cell.task_id.clone());
        }
    }
    let rows: Vec<GridRow> = task_ids
        .iter()
        .map(|task_id| {
            let cells = runs
                .iter()
                .map(|run| {
                    let group = by_key.get(&(run.id, task_id.as_str()))?;
                    let worst = group.iter().max_by_key(|c| severity(c.state))?.state;
                    let count: i64 = group.iter().map(|c| c.count).sum();
                    let mapped = group.iter().any(|c| c.min_map_index >= 0);
                    let retried = group.iter().any(|c| c.max_try > 1);
                    let mut title = group
                        .iter()
                        .map(|c| format!("{} {}", c.count, c.state))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if retried {
                        let tries = group.iter().map(|c| c.max_try).max().unwrap_or(1);
                        title.push_str(&format!(", retried ({tries} tries)"));
                    }
                    let map_index = if mapped { -2 } else { -1 };
                    Some(contexts::GridCell {
                        state: worst,
                        mapped,
                        count,
                        retried,
                        symbol: cell_symbol(worst, retried),
                        title: format!("{task_id} @ {}: {title}", run.run_id),
                        href: task_path(&dag_id, &run.run_id, task_id, map_index),
                    })
                })
                .collect();
            GridRow {
                task_id: task_id.clone(),
                cells,
            }
        })
        .collect();
    let failed: Vec<i64> = cells
        .iter()
        .filter(|c| c.state == TaskState::Failed)
        .map(|c| c.run)
        .collect();
    let columns = history::grid_columns(&dag_id, &runs, &failed, tz, Utc::now());
    let live = columns.iter().any(|c| !c.state.is_finished());
    let day_query = history::date_query(params.date);
    let live_href = format!(
        "{}?offset={offset}&runs={limit}{day_query}",
        dag_path(&dag_id)
    );
    let page = GridPage {
        layout: Layout::new(dag_id.clone(), &user),
        live,
        live_href,
        dag: DagHeader::new(&record, Tab::Grid, Utc::now()),
        columns,
        rows,
        total,
        older: (offset + limit < total).then_some(offset + limit),
        newer: (offset > 0).then(|| (offset - limit).max(0)),
        day: params.date.map(|d| d.to_string()),
        day_query,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct GraphParams {
    pub run_id: Option<String>,
}

/// Per task: the worst state among its instances and how many there are.
fn task_summary(instances: &[TaskInstance]) -> BTreeMap<String, (TaskState, usize)> {
    let mut out: BTreeMap<String, (TaskState, usize)> = BTreeMap::new();
    for ti in instances {
        let entry = out.entry(ti.task_id.clone()).or_insert((ti.state, 0));
        if severity(ti.state) > severity(entry.0) {
            entry.0 = ti.state;
        }
        entry.1 += 1;
    }
    out
}

/// A task id cut to fit a graph node.
fn label(task_id: &str) -> String {
    const MAX: usize = 22;
    if task_id.chars().count() <= MAX {
        task_id.to_owned()
    } else {
        let cut: String = task_id.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

pub async fn graph(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(params): Query<GraphParams>,
) -> PageResult {
    let record = dag_record(&state.store, &dag_id).await?;
    let dag = definition(&record)?;
    let run = match &params.run_id {
        Some(run_id) => Some(load_run(&state.store, &dag_id, run_id).await?),
        None => state.store.latest_run(&dag_id).await?,
    };
    let summary = match &run {
        Some(run) => task_summary(&state.store.list_task_instances(run.id).await?),
        None => BTreeMap::new(),
    };
    let layout = graph::layout(&dag);
    let nodes: Vec<GraphNode> = layout
        .nodes
        .iter()
        .map(|n| {
            let (task_state, count) = summary
                .get(&n.task_id)
                .map_or((None, 0), |(s, c)| (Some(*s), *c));
            let kind = dag.tasks.get(&n.task_id).map(|t| t.kind.name());
            let href = run.as_ref().map(|r| {
                task_path(
                    &dag_id,
                    &r.run_id,
                    &n.task_id,
                    if count > 1 { -2 } else { -1 },
                )
            });
            GraphNode {
                task_id: n.task_id.clone(),
                x: n.x,
                y: n.y,
                label: label(&n.task_id),
                state: task_state,
                count,
                kind,
                href,
            }
        })
        .collect();
    let recent = state
        .store
        .query_runs(&RunQuery {
            dag_id: Some(dag_id.clone()),
            limit: 25,
            ..RunQuery::default()
        })
        .await?;
    let live = run.as_ref().is_some_and(|r| !r.state.is_finished());
    let live_href = format!(
        "{}/graph?run_id={}",
        dag_path(&dag_id),
        urlencode(run.as_ref().map_or("", |r| r.run_id.as_str()))
    );
    let page = GraphPage {
        layout: Layout::new(format!("{dag_id} graph"), &user),
        live,
        live_href,
        dag: DagHeader::new(&record, Tab::Graph, Utc::now()),
        run,
        runs: recent
            .into_iter()
            .map(|r| RunChoice {
                run_id: r.run_id,
                state: r.state,
            })
            .collect(),
        width: layout.width,
        height: layout.height,
        node_width: graph::NODE_WIDTH,
        node_height: graph::NODE_HEIGHT,
        nodes,
        edges: layout.edges,
    };
    Ok(render(&page)?.into_response())
}

pub async fn run(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> PageResult {
    let mut page = run_context(&state, &user, &dag_id, &run_id).await?;
    let record = dag_record(&state.store, &dag_id).await?;
    page.diff = super::versions::run_diff(&state.store, &record, &page.run).await?;
    Ok(render(&page)?.into_response())
}

/// The changing part of the run page, polled by it while something shown is unfinished.
pub async fn run_live(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> PageResult {
    let page = run_context(&state, &user, &dag_id, &run_id).await?;
    Ok(render(&RunLive(page))?.into_response())
}

/// What the run page and its live part show, from the store.
async fn run_context(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
) -> Result<RunPage, PageError> {
    let (dag_id, run_id) = (dag_id.to_owned(), run_id.to_owned());
    let record = dag_record(&state.store, &dag_id).await?;
    let dag = definition(&record)?;
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let mut instances = state.store.list_task_instances(run.id).await?;
    // Dependency order (topological, ties by id), then map index; tasks no longer in
    // the definition last.
    let order: HashMap<&str, usize> = dag
        .topological_order()
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    instances.sort_by(|a, b| {
        let rank = |ti: &TaskInstance| order.get(ti.task_id.as_str()).copied();
        (rank(a).unwrap_or(usize::MAX), &a.task_id, a.map_index).cmp(&(
            rank(b).unwrap_or(usize::MAX),
            &b.task_id,
            b.map_index,
        ))
    });
    // Every try of the run in one read: the failed tasks' errors and the Gantt chart.
    let attempts = state.store.list_run_attempts(run.id).await?;
    let failed_all: Vec<&TaskInstance> = instances
        .iter()
        .filter(|ti| ti.state == TaskState::Failed)
        .collect();
    let mut failed = Vec::new();
    for ti in failed_all.iter().take(FAILED_LISTED) {
        let error = attempts
            .iter()
            .rev()
            .filter(|a| a.task_instance == ti.id)
            .find_map(|a| a.error.as_deref())
            .and_then(|e| e.lines().map(str::trim).find(|l| !l.is_empty()))
            .map(str::to_owned);
        failed.push(FailedRow {
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            error,
            href: task_path(&dag_id, &run_id, &ti.task_id, ti.map_index),
        });
    }
    let tis: Vec<RunTaskRow> = instances
        .iter()
        .map(|ti| RunTaskRow {
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            state: ti.state,
            try_number: ti.try_number,
            max_tries: ti.max_tries,
            kind: ti.kind.clone(),
            start_date: ti.start_date,
            end_date: ti.end_date,
            href: task_path(&dag_id, &run_id, &ti.task_id, ti.map_index),
        })
        .collect();
    let has_failed = instances
        .iter()
        .any(|ti| matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed));
    let live = !run.state.is_finished() || instances.iter().any(|ti| !ti.state.is_finished());
    let now = Utc::now();
    let gantt = gantt::chart(&dag, &instances, &attempts, &record.timezone, now, |ti| {
        task_path(&dag_id, &run_id, &ti.task_id, ti.map_index)
    });
    let run_href = run_path(&dag_id, &run_id);
    let source_href = format!(
        "{}/source?hash={}",
        dag_path(&dag_id),
        urlencode(&run.definition_hash)
    );
    let definition_current = run.definition_hash == record.source_hash;
    let version = super::versions::run_version(&state.store, &record, &run).await?;
    let late = state
        .store
        .deadline_misses(run.id)
        .await?
        .iter()
        .map(late_line)
        .collect();
    Ok(RunPage {
        layout: Layout::new(format!("{dag_id} · {run_id}"), user),
        dag: DagHeader::new(&record, Tab::Run, Utc::now()),
        run,
        live,
        live_href: format!("{run_href}/live"),
        now,
        run_href,
        graph_href: format!("{}/graph?run_id={}", dag_path(&dag_id), urlencode(&run_id)),
        source_href,
        definition_current,
        version,
        diff: None,
        tis,
        has_failed,
        failed_more: failed_all.len().saturating_sub(failed.len()),
        failed,
        late,
        gantt,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct TaskParams {
    /// Omitted for a mapped task: the page lists its instances.
    pub map_index: Option<i32>,
    #[serde(rename = "try")]
    pub try_number: Option<i32>,
    /// The log box (`ui::logs::LogQuery`): a page before a line, around a line, or a search.
    pub before: Option<i64>,
    pub around: Option<i64>,
    pub q: Option<String>,
    pub after: Option<i64>,
    /// From the live part's poll: the try whose log the page shows. When the instance
    /// is on a newer try (a retry started), the live part brings that try's log box.
    pub shown: Option<i32>,
}

pub async fn task(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(params): Query<TaskParams>,
) -> PageResult {
    let page = task_context(&state, &user, [&dag_id, &run_id, &task_id], &params, true).await?;
    Ok(render(&page)?.into_response())
}

/// The changing part of the task page (without its log, which polls on its own).
pub async fn task_live(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(params): Query<TaskParams>,
) -> PageResult {
    let page = task_context(&state, &user, [&dag_id, &run_id, &task_id], &params, false).await?;
    Ok(render(&TaskLive(page))?.into_response())
}

/// What the task page shows, from the store; its log only `with_log`.
async fn task_context(
    state: &AppState,
    user: &CurrentUser,
    [dag_id, run_id, task_id]: [&str; 3],
    params: &TaskParams,
    with_log: bool,
) -> Result<TaskPage, PageError> {
    let (dag_id, run_id, task_id) = (dag_id.to_owned(), run_id.to_owned(), task_id.to_owned());
    let record = dag_record(&state.store, &dag_id).await?;
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let siblings: Vec<TaskInstance> = state
        .store
        .list_task_instances(run.id)
        .await?
        .into_iter()
        .filter(|ti| ti.task_id == task_id)
        .collect();
    if siblings.is_empty() {
        return Err(ApiError::not_found("task", format!("{dag_id}/{run_id}/{task_id}")).into());
    }
    let wanted = params.map_index.filter(|m| *m >= -1);
    let ti = match wanted {
        Some(m) => siblings.iter().find(|ti| ti.map_index == m),
        None if siblings.len() == 1 => siblings.first(),
        None => None,
    };
    let instances: Vec<InstanceChip> = siblings
        .iter()
        .map(|s| InstanceChip {
            map_index: s.map_index,
            state: s.state,
            href: task_path(&dag_id, &run_id, &task_id, s.map_index),
            current: ti.is_some_and(|t| t.id == s.id),
        })
        .collect();
    let live = !run.state.is_finished() || siblings.iter().any(|s| !s.state.is_finished());
    let mut query = Vec::new();
    if let Some(m) = wanted {
        query.push(format!("map_index={m}"));
    }
    if let Some(t) = params.try_number {
        query.push(format!("try={t}"));
    }
    let live_base = format!("{}/live", task_path(&dag_id, &run_id, &task_id, -1));
    let live_href = |query: &[String]| {
        if query.is_empty() {
            live_base.clone()
        } else {
            format!("{live_base}?{}", query.join("&"))
        }
    };
    let late = state
        .store
        .deadline_misses(run.id)
        .await?
        .iter()
        .find(|m| m.task_id.as_deref() == Some(task_id.as_str()))
        .map(late_line);
    let mut page = TaskPage {
        layout: Layout::new(format!("{task_id} · {dag_id}"), user),
        dag: DagHeader::new(&record, Tab::Task, Utc::now()),
        run_href: run_path(&dag_id, &run_id),
        run,
        task_id: task_id.clone(),
        doc_html: task_doc(&record, &task_id).map(super::markdown::render),
        mapped: siblings.len() > 1 || siblings.iter().any(|s| s.map_index >= 0),
        any_failed: siblings
            .iter()
            .any(|s| matches!(s.state, TaskState::Failed | TaskState::UpstreamFailed)),
        instances,
        ti: None,
        attempts: Vec::new(),
        late,
        self_href: None,
        log: None,
        live,
        live_href: live_href(&query),
        log_swap: false,
        now: Utc::now(),
        durations: None,
    };
    let Some(ti) = ti else {
        if wanted.is_some() {
            return Err(ApiError::not_found(
                "task instance",
                format!("{dag_id}/{run_id}/{task_id} map index {wanted:?}"),
            )
            .into());
        }
        return Ok(page);
    };
    let attempts = state.store.list_attempts(ti.id).await?;
    let shown_try = params
        .try_number
        .unwrap_or(ti.try_number)
        .clamp(0, ti.try_number.max(0));
    let log_of = logs::LogOf {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        ti,
        try_number: shown_try,
    };
    let log_query = logs::LogQuery {
        before: params.before,
        around: params.around,
        q: params.q.clone(),
        after: params.after,
    };
    // The page's log box follows the instance to its newest try.
    let moved_on = params.try_number.is_none() && params.shown.is_some_and(|s| s != shown_try);
    if params.try_number.is_none() {
        query.push(format!("shown={shown_try}"));
        page.live_href = live_href(&query);
    }
    page.log_swap = !with_log && moved_on;
    let log = if with_log || moved_on {
        Some(logs::log_view(state, &log_of, &log_query).await?)
    } else {
        None
    };
    let base = task_path(&dag_id, &run_id, &task_id, -1);
    let attempt_rows: Vec<AttemptRow> = attempts
        .iter()
        .map(|a| AttemptRow {
            try_number: a.try_number,
            state: a.state,
            worker: a.worker.clone(),
            hostname: a.hostname.clone(),
            start_date: a.start_date,
            end_date: a.end_date,
            exit_code: a.exit_code,
            external_id: a.external_id.clone(),
            error: a.error.clone(),
            reschedules: a.reschedules,
            href: format!("{base}?map_index={}&try={}#log", ti.map_index, a.try_number),
            version: a.definition_hash.clone(),
            version_href: a
                .definition_hash
                .as_ref()
                .map(|h| format!("{}/source?hash={}", dag_path(&dag_id), urlencode(h))),
            shown: a.try_number == shown_try,
        })
        .collect();
    let last_error = attempts.iter().rev().find_map(|a| a.error.clone());
    let rendered = ti
        .rendered
        .as_ref()
        .map(mask_secrets)
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    let masked_output = ti.output.as_ref().map(mask_secrets);
    let output = masked_output
        .as_ref()
        .and_then(|v| serde_json::to_string_pretty(v).ok());
    let approval = super::approval::view(ti, masked_output.as_ref(), &base);
    // A waiting try woken for its next poke (scheduled or queued, its attempt still
    // open) goes on as the same try rather than a next one.
    let resuming = attempts
        .last()
        .is_some_and(|a| a.try_number == ti.try_number && a.end_date.is_none());
    page.ti = Some(InstanceView {
        map_index: ti.map_index,
        state: ti.state,
        waiting: !resuming
            && matches!(
                ti.state,
                TaskState::Pending | TaskState::Scheduled | TaskState::Queued
            ),
        times_apply: ti.try_number > 0
            && (resuming
                || matches!(
                    ti.state,
                    TaskState::Running
                        | TaskState::Success
                        | TaskState::Failed
                        | TaskState::UpForRetry
                        | TaskState::UpForReschedule
                        | TaskState::AwaitingInput
                )),
        try_number: ti.try_number,
        max_tries: ti.max_tries,
        kind: ti.kind.clone(),
        queue: ti.queue.clone(),
        pool: ti.pool.clone(),
        start_date: ti.start_date,
        end_date: ti.end_date,
        next_retry_at: ti.next_retry_at,
        hostname: ti.hostname.clone(),
        lease_owner: ti.lease_owner.clone(),
        external_id: ti.external_id.clone(),
        required_run: required_run(ti, &attempts),
        rendered,
        output,
        last_error,
        can_succeed: ti.state.on(TaskEvent::MarkSuccess).is_ok(),
        can_fail: ti.state.on(TaskEvent::MarkFailed).is_ok(),
        can_clear: ti.state.on(TaskEvent::Clear).is_ok(),
        approval,
    });
    page.attempts = attempt_rows;
    page.self_href = Some(task_path(&dag_id, &run_id, &task_id, ti.map_index));
    page.log = log;
    if with_log {
        let map_index = page.mapped.then_some(ti.map_index);
        page.durations =
            history::task_durations(&state.store, &record, &task_id, map_index).await?;
    }
    Ok(page)
}

/// The run a `require` instance waits for: its external id, `<dag_id>/<run_id>` (DAG ids
/// never contain `/`), kept on the instance while a look is under way and on each
/// attempt row after; the newest one counts.
fn required_run(
    ti: &nightshift_store::TaskInstance,
    attempts: &[nightshift_store::Attempt],
) -> Option<contexts::RequiredRun> {
    if ti.kind != "require" {
        return None;
    }
    let key = ti
        .external_id
        .clone()
        .or_else(|| attempts.iter().rev().find_map(|a| a.external_id.clone()))?;
    let (dag_id, run_id) = key.split_once('/')?;
    Some(contexts::RequiredRun {
        dag_id: dag_id.to_owned(),
        run_id: run_id.to_owned(),
        href: run_path(dag_id, run_id),
    })
}

/// A task's `doc` as the stored definition has it (read from the JSON, without parsing
/// the whole definition on every poll of the task page).
fn task_doc<'a>(record: &'a nightshift_store::DagRecord, task_id: &str) -> Option<&'a str> {
    record
        .definition
        .get("tasks")?
        .get(task_id)?
        .get("doc")?
        .as_str()
        .filter(|doc| !doc.trim().is_empty())
}

#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    pub map_index: Option<i32>,
    #[serde(rename = "try")]
    pub try_number: i32,
    pub after: i64,
}

/// The lines after `after` and, while the try runs, the poller that asks for more.
pub async fn log_lines(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(params): Query<LogParams>,
) -> PageResult {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let map_index = params.map_index.unwrap_or(-1);
    let ti = crate::lookup::load_task_instance(&state.store, &run, &task_id, map_index).await?;
    let lines = state
        .store
        .read_logs(ti.id, params.try_number, params.after, LOG_PAGE)
        .await?;
    let after = lines.last().map_or(params.after, |l| l.line_no);
    let more = lines.len() as i64 == LOG_PAGE;
    let live = more || (params.try_number == ti.try_number && ti.state.try_under_way());
    let base = task_path(&dag_id, &run_id, &task_id, -1);
    let page = LogLinesPage {
        lines,
        live,
        poll: format!(
            "{base}/log?map_index={map_index}&try={}&after={after}",
            params.try_number
        ),
        earlier: None,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    pub dag_id: Option<String>,
    pub actor: Option<String>,
    pub offset: Option<u32>,
}

pub async fn audit(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(params): Query<AuditParams>,
) -> PageResult {
    let offset = i64::from(params.offset.unwrap_or(0));
    let filter = AuditFilter {
        dag_id: params.dag_id.clone().filter(|s| !s.is_empty()),
        actor: params.actor.clone().filter(|s| !s.is_empty()),
        action: None,
        limit: Some(AUDIT_PER_PAGE),
        offset,
    };
    let entries = state
        .store
        .list_audit(&filter)
        .await?
        .into_iter()
        .map(audit_row)
        .collect();
    let total = state.store.count_audit(&filter).await?;
    let page = AuditPage {
        layout: Layout::new("Audit log", &user),
        entries,
        total,
        dag_id: params.dag_id.unwrap_or_default(),
        actor: params.actor.unwrap_or_default(),
        prev: (offset > 0).then(|| (offset - AUDIT_PER_PAGE).max(0)),
        next: (offset + AUDIT_PER_PAGE < total).then_some(offset + AUDIT_PER_PAGE),
    };
    Ok(render(&page)?.into_response())
}

/// Links from an audit entry to what it touched: its DAG, run and task (a task in a
/// run to that instance's page), or the admin page of a pool, user or token.
fn audit_row(entry: AuditRecord) -> AuditRow {
    let dag_href = entry.dag_id.as_deref().map(dag_path);
    let run_href = match (&entry.dag_id, &entry.run_id) {
        (Some(dag_id), Some(run_id)) => Some(run_path(dag_id, run_id)),
        _ => None,
    };
    let task_href = match (&entry.dag_id, &entry.run_id, &entry.task_id) {
        (Some(dag_id), Some(run_id), Some(task_id)) => {
            let map_index = entry
                .details
                .get("map_index")
                .and_then(serde_json::Value::as_i64)
                .and_then(|m| i32::try_from(m).ok())
                .unwrap_or(-1);
            Some(task_path(dag_id, run_id, task_id, map_index))
        }
        _ => None,
    };
    let subject_href = match entry.action.split_once('.').map(|(kind, _)| kind) {
        Some("pool") => Some("/admin/pools".to_owned()),
        Some("user") => Some("/admin/users".to_owned()),
        Some("token") => Some("/admin".to_owned()),
        _ => None,
    };
    AuditRow {
        actor_href: format!("/audit?actor={}", urlencode(&entry.actor)),
        dag_href,
        run_href,
        task_href,
        subject_href,
        entry,
    }
}

pub async fn admin(State(state): State<AppState>, user: CurrentUser) -> PageResult {
    admin_page(&state, &user, None).await
}

/// The administration page; `new_token` is an API token just created, shown once.
pub async fn admin_page(
    state: &AppState,
    user: &CurrentUser,
    new_token: Option<String>,
) -> PageResult {
    let pools = state.store.list_pools().await?;
    let usage = state.store.pool_usage().await?;
    let pools = pools
        .iter()
        .map(|p| crate::api::model::PoolModel::new(p, usage.iter().find(|u| u.pool == p.name)))
        .collect();
    let page = AdminPage {
        layout: Layout::new("Administration", user),
        pools,
        tokens: state.store.list_api_tokens(user.id).await?,
        new_token,
    };
    Ok(render(&page)?.into_response())
}

/// A missed deadline as the run and task pages' "late" badge explains it.
fn late_line(miss: &nightshift_store::DeadlineMiss) -> String {
    let whose = match &miss.task_id {
        Some(task_id) => format!("task {task_id}"),
        None => "the run".to_owned(),
    };
    let failed = if miss.failed { "; failed for it" } else { "" };
    format!(
        "{whose} missed its deadline {} (due {}){failed}",
        miss.deadline,
        miss.due_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}
