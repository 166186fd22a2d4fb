//! The log box of the task page: a try's log opened at its end, paged back to line 1 a
//! page at a time, searched in the database (matches with their line numbers, each
//! linking to the page around it), downloaded whole (the API's download); and the
//! fragment htmx fetches for "earlier lines".

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use nightshift_store::TaskInstance;
use serde::Deserialize;

use super::contexts::{EarlierLink, LogLinesPage, LogSearch, LogView};
use super::{render, task_path, urlencode, PageResult};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::lookup::load_run;
use crate::AppState;

/// Lines per page of the viewer (the end of the log, each earlier page, search matches).
pub const LOG_PAGE_LINES: i64 = 2000;

/// What the task page's address asks of its log box (besides the try).
#[derive(Debug, Default, Clone)]
pub struct LogQuery {
    /// Show the page that ends just before this line (paging back).
    pub before: Option<i64>,
    /// Show the page around this line (a search match in its context).
    pub around: Option<i64>,
    /// Show the lines that contain this text instead.
    pub q: Option<String>,
    /// With `q`: the matches after this line (the next page of matches).
    pub after: Option<i64>,
}

/// Names of one task instance's try, for the links of its log box.
pub struct LogOf<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub ti: &'a TaskInstance,
    pub try_number: i32,
}

impl LogOf<'_> {
    /// The task page showing this try, with `extra` query parameters.
    fn page(&self, extra: &str) -> String {
        let base = task_path(self.dag_id, self.run_id, self.task_id, -1);
        format!(
            "{base}?map_index={}&try={}{extra}",
            self.ti.map_index, self.try_number
        )
    }

    /// The API's log of this try (`/logs/{try}`), without a query.
    fn api(&self) -> String {
        format!(
            "/api/v1/dags/{}/dagRuns/{}/taskInstances/{}/logs/{}",
            urlencode(self.dag_id),
            urlencode(self.run_id),
            urlencode(self.task_id),
            self.try_number
        )
    }

    fn earlier(&self, first_shown: i64) -> Option<EarlierLink> {
        (first_shown > 1).then(|| EarlierLink {
            href: format!("{}#log", self.page(&format!("&before={first_shown}"))),
            fragment: format!(
                "{}/log/earlier?map_index={}&try={}&before={first_shown}",
                task_path(self.dag_id, self.run_id, self.task_id, -1),
                self.ti.map_index,
                self.try_number
            ),
            from: (first_shown - LOG_PAGE_LINES).max(1),
            to: first_shown - 1,
        })
    }
}

/// The log box of the task page for try `of.try_number` (0: not started).
pub async fn log_view(
    state: &AppState,
    of: &LogOf<'_>,
    query: &LogQuery,
) -> Result<LogView, ApiError> {
    let (ti, try_number) = (of.ti, of.try_number);
    let map = if ti.map_index >= 0 {
        format!("?map_index={}", ti.map_index)
    } else {
        String::new()
    };
    let mut view = LogView {
        try_number,
        lines: Vec::new(),
        total: 0,
        live: false,
        poll: String::new(),
        api: format!("{}?map_index={}", of.api(), ti.map_index),
        download: format!("{}/download{map}", of.api()),
        earlier: None,
        latest: None,
        context: None,
        search: LogSearch {
            action: task_path(of.dag_id, of.run_id, of.task_id, -1),
            map_index: (ti.map_index >= 0).then_some(ti.map_index),
            term: String::new(),
            more: None,
            clear: format!("{}#log", of.page("")),
            error: None,
        },
    };
    if try_number < 1 {
        return Ok(view);
    }
    view.total = state.store.count_log_lines(ti.id, try_number).await?;
    let term = query.q.as_deref().map(str::trim).unwrap_or_default();
    if !term.is_empty() {
        view.search.term = term.to_owned();
        match crate::logs::search_term(term) {
            Ok(term) => {
                let after = query.after.unwrap_or(0);
                view.lines = state
                    .store
                    .search_logs(ti.id, try_number, term, after, LOG_PAGE_LINES)
                    .await?;
                view.context = Some(of.page("&around="));
                view.search.more = (view.lines.len() as i64 == LOG_PAGE_LINES)
                    .then(|| view.lines.last().map(|l| l.line_no))
                    .flatten()
                    .map(|last| {
                        format!(
                            "{}#log",
                            of.page(&format!("&q={}&after={last}", urlencode(term)))
                        )
                    });
            }
            Err(e) => view.search.error = Some(e.to_string()),
        }
        return Ok(view);
    }
    let before = query
        .before
        .or(query.around.map(|n| n.saturating_add(LOG_PAGE_LINES / 2)));
    view.lines = state
        .store
        .read_logs_before(
            ti.id,
            try_number,
            before.unwrap_or(i64::MAX),
            LOG_PAGE_LINES,
        )
        .await?;
    view.earlier = view.lines.first().and_then(|l| of.earlier(l.line_no));
    let at_end = view.lines.last().is_none_or(|l| l.line_no >= view.total);
    if at_end {
        view.live = try_number == ti.try_number && ti.state.try_under_way();
        let after = view.lines.last().map_or(0, |l| l.line_no);
        view.poll = format!(
            "{}/log?map_index={}&try={try_number}&after={after}",
            task_path(of.dag_id, of.run_id, of.task_id, -1),
            ti.map_index
        );
    } else {
        view.latest = Some(format!("{}#log", of.page("")));
    }
    Ok(view)
}

#[derive(Debug, Default, Deserialize)]
pub struct EarlierParams {
    pub map_index: Option<i32>,
    #[serde(rename = "try")]
    pub try_number: i32,
    pub before: i64,
}

/// The page of lines before line `before`, and the link to the page before it: what
/// "earlier lines" swaps itself for.
pub async fn earlier(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(params): Query<EarlierParams>,
) -> PageResult {
    let run = load_run(&state.store, &dag_id, &run_id).await?;
    let map_index = params.map_index.unwrap_or(-1);
    let ti = crate::lookup::load_task_instance(&state.store, &run, &task_id, map_index).await?;
    let lines = state
        .store
        .read_logs_before(ti.id, params.try_number, params.before, LOG_PAGE_LINES)
        .await?;
    let of = LogOf {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        ti: &ti,
        try_number: params.try_number,
    };
    let page = LogLinesPage {
        earlier: lines.first().and_then(|l| of.earlier(l.line_no)),
        lines,
        live: false,
        poll: String::new(),
    };
    Ok(render(&page)?.into_response())
}
