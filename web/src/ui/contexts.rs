//! The typed contexts of the HTML templates: one struct per page template, naming its
//! template ([`Page::TEMPLATE`]), with [`Layout`] for what `base.html` shows. Templates
//! render with strict undefined behaviour, so a template that names a field its struct
//! lacks fails the render test of every page (`samples`), not a page in a browser.

use chrono::{DateTime, Utc};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{ApiToken, AuditRecord, DagRecord, DagRun, ImportError, LogRow, Role};
use serde::Serialize;

use super::graph::Edge;
use crate::api::model::{PoolModel, UserModel};
use crate::auth::CurrentUser;
use crate::error::Problem;

/// A template's context; [`super::render`] renders it with its template.
pub trait Page: Serialize {
    /// The template this context is for.
    const TEMPLATE: &'static str;
}

macro_rules! page {
    ($($ty:ident => $template:literal,)+) => {
        $(impl Page for $ty {
            const TEMPLATE: &'static str = $template;
        })+
        /// Every template that renders a page (the others are included by them).
        #[cfg(test)]
        pub const PAGE_TEMPLATES: &[&str] = &[$($template),+];
    };
}

page! {
    DagsPage => "dags.html",
    GridPage => "grid.html",
    DurationsPage => "durations.html",
    CalendarPage => "calendar.html",
    GraphPage => "graph.html",
    RunPage => "run.html",
    RunLive => "run_live.html",
    TaskPage => "task.html",
    TaskLive => "task_live.html",
    LogLinesPage => "log_lines.html",
    TriggerPage => "trigger.html",
    AuditPage => "audit.html",
    AdminPage => "admin.html",
    PoolsPage => "admin_pools.html",
    UsersPage => "admin_users.html",
    LoginPage => "login.html",
    SourcePage => "source.html",
    ErrorPage => "error.html",
    ConfirmPage => "confirm.html",
    ConfirmBox => "confirm_box.html",
}

/// The signed-in person, as the top bar and the forms (CSRF token, buttons) need them.
#[derive(Debug, Clone, Serialize)]
pub struct Chrome {
    pub username: String,
    pub role: String,
    pub csrf: String,
    pub can_operate: bool,
    pub is_admin: bool,
}

impl Chrome {
    pub fn of(user: &CurrentUser) -> Chrome {
        Chrome {
            username: user.username.clone(),
            role: user.role.to_string(),
            csrf: user.csrf.clone().unwrap_or_default(),
            can_operate: user.can(Role::Operator),
            is_admin: user.can(Role::Admin),
        }
    }
}

/// What `base.html` shows; flattened into every page that extends it.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub title: String,
    /// None on the pages shown without a session: signing in, errors.
    pub chrome: Option<Chrome>,
}

impl Layout {
    /// A page for a signed-in person.
    pub fn new(title: impl Into<String>, user: &CurrentUser) -> Layout {
        Layout {
            title: title.into(),
            chrome: Some(Chrome::of(user)),
        }
    }

    /// A page without the top bar's person and links.
    pub fn anonymous(title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            chrome: None,
        }
    }
}

/// A run as a coloured square linking to it.
#[derive(Debug, Clone, Serialize)]
pub struct RunLink {
    pub run_id: String,
    pub state: RunState,
    pub href: String,
    /// The run succeeded although a task failed (marked "!").
    pub failed_task: bool,
}

/// `dags.html`: the DAG list with filters, recent runs and import errors.
#[derive(Debug, Clone, Serialize)]
pub struct DagsPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dags: Vec<DagRow>,
    pub total: i64,
    /// all, failing, active or paused.
    pub filter: String,
    pub q: String,
    /// The tag and owner filters (empty: none), each with the list without it.
    pub tag: String,
    pub owner: String,
    pub without_tag: String,
    pub without_owner: String,
    /// The list's query (filters, no offset): the pager's links add their offset.
    pub page_query: String,
    /// Offsets of the previous and next pages, when there are such pages.
    pub prev: Option<i64>,
    pub next: Option<i64>,
    pub import_errors: Vec<ImportError>,
    /// A recent run shown is unfinished: the table polls this page (`live_href`, the
    /// same filters) and swaps in its own part of it.
    pub live: bool,
    pub live_href: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DagRow {
    pub dag_id: String,
    pub href: String,
    /// The DAG's `description`, rendered from Markdown and sanitised.
    pub description_html: Option<String>,
    pub owner: Option<Chip>,
    pub tags: Vec<Chip>,
    pub schedule: Option<String>,
    pub timezone: String,
    pub is_paused: bool,
    pub next_run: Option<DateTime<Utc>>,
    pub latest_state: Option<RunState>,
    /// A queued or running run of the DAG missed a deadline.
    pub late: bool,
    /// Oldest first.
    pub runs: Vec<RunLink>,
}

/// A tag or an owner, linking to the DAG list filtered by it.
#[derive(Debug, Clone, Serialize)]
pub struct Chip {
    pub label: String,
    pub href: String,
}

/// Which tab of a DAG's pages is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tab {
    Grid,
    Graph,
    Durations,
    Calendar,
    Run,
    Task,
    Source,
}

/// The header of every DAG page (`dag_header` in `macros.html`).
#[derive(Debug, Clone, Serialize)]
pub struct DagHeader {
    pub dag_id: String,
    pub href: String,
    /// The DAG's `description`, rendered from Markdown and sanitised.
    pub description_html: Option<String>,
    pub owner: Option<Chip>,
    pub tags: Vec<Chip>,
    /// The page of the DAG file as loaded now.
    pub source_href: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub is_paused: bool,
    pub is_active: bool,
    pub file_path: String,
    pub next_run: Option<DateTime<Utc>>,
    pub tab: Tab,
}

impl DagHeader {
    pub fn new(d: &DagRecord, tab: Tab, now: DateTime<Utc>) -> DagHeader {
        DagHeader {
            dag_id: d.dag_id.clone(),
            href: super::dag_path(&d.dag_id),
            description_html: d.description.as_deref().map(super::markdown::render),
            owner: d.owner.as_deref().map(owner_chip),
            tags: d.tags.iter().map(|t| tag_chip(t)).collect(),
            source_href: format!("{}/source", super::dag_path(&d.dag_id)),
            schedule: d.schedule.clone(),
            timezone: d.timezone.clone(),
            is_paused: d.is_paused,
            is_active: d.is_active,
            file_path: d.file_path.clone(),
            next_run: crate::lookup::next_run(d, now),
            tab,
        }
    }
}

/// An owner's chip, linking to the DAG list of that owner.
pub fn owner_chip(owner: &str) -> Chip {
    Chip {
        label: owner.to_owned(),
        href: format!("/dags?owner={}", super::urlencode(owner)),
    }
}

/// A tag's chip, linking to the DAG list of that tag.
pub fn tag_chip(tag: &str) -> Chip {
    Chip {
        label: tag.to_owned(),
        href: format!("/dags?tag={}", super::urlencode(tag)),
    }
}

/// `grid.html`: tasks down, runs across (oldest on the left).
#[derive(Debug, Clone, Serialize)]
pub struct GridPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    pub columns: Vec<GridColumn>,
    pub rows: Vec<GridRow>,
    pub total: i64,
    /// Offsets of the older and newer pages of runs, when there are such pages.
    pub older: Option<i64>,
    pub newer: Option<i64>,
    /// Only the runs of this day (`YYYY-MM-DD`, a calendar day's link), and the pager's
    /// query part that keeps it (`&date=…`, or empty).
    pub day: Option<String>,
    pub day_query: String,
    /// A run shown is unfinished: the grid polls this page (`live_href`, the same runs)
    /// and swaps in its own part of it.
    pub live: bool,
    pub live_href: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    pub task_id: String,
    /// One per column; none where the run has no instance of the task.
    pub cells: Vec<Option<GridCell>>,
}

/// A task's instances in one run: the worst state colours the cell.
#[derive(Debug, Clone, Serialize)]
pub struct GridCell {
    pub state: TaskState,
    pub mapped: bool,
    pub count: i64,
    /// An instance of it had more than one try.
    pub retried: bool,
    /// The mark beside the colour: ✕ failed, ↑ upstream_failed, ↻ retried.
    pub symbol: &'static str,
    pub title: String,
    pub href: String,
}

/// A run's column head in the grid: its date and time in the DAG's zone, its duration
/// as a bar (`bar` px of 28, from `bar_y`) and in words.
#[derive(Debug, Clone, Serialize)]
pub struct GridColumn {
    pub run_id: String,
    pub state: RunState,
    pub href: String,
    /// `MM-DD` and `HH:MM` of the logical date.
    pub date: String,
    pub time: String,
    pub duration: Option<String>,
    pub bar: i64,
    pub bar_y: i64,
    /// The run succeeded although a task failed (marked "!").
    pub failed_task: bool,
    pub title: String,
}

/// `durations.html`: the run-duration chart of a DAG's latest runs.
#[derive(Debug, Clone, Serialize)]
pub struct DurationsPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    /// How many runs were asked for.
    pub runs: i64,
    pub chart: super::charts::DurationChart,
}

/// `calendar.html`: a year of a DAG's daily outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct CalendarPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    pub chart: super::charts::Calendar,
    /// The zone the days are in (the DAG's).
    pub timezone: String,
    /// The calendar read only this many runs (a DAG running every minute).
    pub truncated: Option<i64>,
    /// The calendar year before, the one after (not past this year), and the year up
    /// to today when a calendar year is shown.
    pub previous: String,
    pub next: Option<String>,
    pub trailing: Option<String>,
}

/// `graph.html`: the DAG as an SVG, coloured by one run.
#[derive(Debug, Clone, Serialize)]
pub struct GraphPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    /// The run that colours the nodes; none before the first run.
    pub run: Option<DagRun>,
    /// The runs to pick from.
    pub runs: Vec<RunChoice>,
    pub width: i64,
    pub height: i64,
    pub node_width: i64,
    pub node_height: i64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Edge>,
    /// The run shown is unfinished: the graph polls this page (`live_href`, that run)
    /// and swaps in its own part of it.
    pub live: bool,
    pub live_href: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunChoice {
    pub run_id: String,
    pub state: RunState,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    pub task_id: String,
    pub x: i64,
    pub y: i64,
    pub label: String,
    /// The worst state of the task's instances in the run.
    pub state: Option<TaskState>,
    pub count: usize,
    pub kind: Option<&'static str>,
    pub href: Option<String>,
}

/// `run.html`: one run, its actions and its task instances.
#[derive(Debug, Clone, Serialize)]
pub struct RunPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    pub run: DagRun,
    pub run_href: String,
    pub graph_href: String,
    /// The DAG file of the definition the run was made from (`run.definition_hash`).
    pub source_href: String,
    /// That definition is the one loaded now.
    pub definition_current: bool,
    /// The numbers of the run's version and of the one loaded now.
    pub version: super::versions::RunVersion,
    /// The DAG file's changes since the run's version (the page, not its live part;
    /// `None` when the run's version is the current one).
    pub diff: Option<super::versions::VersionDiff>,
    pub tis: Vec<RunTaskRow>,
    pub has_failed: bool,
    /// The instances that failed themselves (root causes first, not upstream_failed).
    pub failed: Vec<FailedRow>,
    /// How many failed beyond those listed.
    pub failed_more: usize,
    /// Every try of the run on a time axis (`gantt.html`); `None` before the first try.
    pub gantt: Option<super::gantt::Gantt>,
    /// The deadlines the run or its tasks missed, one line each (empty: never late).
    pub late: Vec<String>,
    /// When the page was made: a running run's and task's duration so far.
    pub now: DateTime<Utc>,
    /// Something shown is unfinished: the page polls [`RunLive`] at `live_href`.
    pub live: bool,
    pub live_href: String,
}

/// `run_live.html`: the part of the run page that changes while the run goes on (its
/// state, facts, failed tasks, actions and task table), which `run.html` includes. The
/// page polls it every 2 s while `live`; rendered without `live`, the poller is gone.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RunLive(pub RunPage);

/// A failed instance on the run page: its error's first line and its page.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRow {
    pub task_id: String,
    pub map_index: i32,
    pub error: Option<String>,
    pub href: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunTaskRow {
    pub task_id: String,
    pub map_index: i32,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
    pub kind: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub href: String,
}

/// `task.html`: a task of a run; a mapped task without a chosen index lists its
/// instances, otherwise one instance with its attempts and log.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    pub run: DagRun,
    pub run_href: String,
    pub task_id: String,
    /// The task's `doc` (its runbook), rendered from Markdown and sanitised.
    pub doc_html: Option<String>,
    pub mapped: bool,
    pub instances: Vec<InstanceChip>,
    /// Some instance of the task failed (or is upstream_failed): a mapped task offers
    /// "Retry failed instances" only then.
    pub any_failed: bool,
    /// The instance shown; none while a mapped task's index is not chosen.
    pub ti: Option<InstanceView>,
    /// The shown instance's attempts (empty without one).
    pub attempts: Vec<AttemptRow>,
    /// The task missed its deadline: which one, and when it fell.
    pub late: Option<String>,
    /// The shown instance's page.
    pub self_href: Option<String>,
    /// The shown instance's log.
    pub log: Option<LogView>,
    /// The run or an instance shown is unfinished: the page polls [`TaskLive`].
    pub live: bool,
    pub live_href: String,
    /// When the page was made: a running instance's and try's duration so far.
    pub now: DateTime<Utc>,
    /// In [`TaskLive`]: the log box (`task_log.html`) of a try newer than the one the
    /// page shows, swapped in out of band.
    pub log_swap: bool,
    /// The task's try durations over its latest runs (none before its first try).
    pub durations: Option<super::charts::DurationChart>,
}

/// `task_live.html`: the task page's head (`task_head.html`: run state, instance chips,
/// the instance's card and actions) and its attempts (swapped out of band), polled
/// every 2 s while `live`. Built without reading the log, which has its own poller,
/// unless a newer try started than the one the page's log shows (`log_swap`).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct TaskLive(pub TaskPage);

#[derive(Debug, Clone, Serialize)]
pub struct InstanceChip {
    pub map_index: i32,
    pub state: TaskState,
    pub href: String,
    /// The instance shown.
    pub current: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub map_index: i32,
    pub state: TaskState,
    /// Waiting for its next try (`try_number + 1`): created, cleared or queued. Its
    /// start, end and host, if any, are those of the previous try.
    pub waiting: bool,
    /// Its start, end and host are those of try `try_number` (running or ended).
    pub times_apply: bool,
    pub try_number: i32,
    pub max_tries: i32,
    pub kind: String,
    pub queue: String,
    pub pool: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
    pub lease_owner: Option<String>,
    pub external_id: Option<String>,
    /// For a `require` task: the run it waits for (or waited for), linked.
    pub required_run: Option<RequiredRun>,
    /// Pretty JSON, secrets masked.
    pub rendered: Option<String>,
    pub output: Option<String>,
    pub last_error: Option<String>,
    /// Which actions its state allows.
    pub can_succeed: bool,
    pub can_fail: bool,
    pub can_clear: bool,
    /// An `approval` instance that asked: its message, and the form or the decision.
    pub approval: Option<super::approval::ApprovalView>,
}

/// The other DAG's run a `require` task waits for, from its external id
/// (`<dag_id>/<run_id>`).
#[derive(Debug, Clone, Serialize)]
pub struct RequiredRun {
    pub dag_id: String,
    pub run_id: String,
    pub href: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub try_number: i32,
    pub state: TaskState,
    pub worker: String,
    pub hostname: String,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub external_id: Option<String>,
    pub error: Option<String>,
    /// How often the try gave its worker slot back to wait and was woken again.
    pub reschedules: i32,
    pub href: String,
    /// The version of the DAG the try ran (its `definition_hash`), and that version's
    /// file; `None` for a try from before versions were recorded.
    pub version: Option<String>,
    pub version_href: Option<String>,
    /// Its log is the one shown.
    pub shown: bool,
}

/// The log of one try on the task page (built by `ui::logs::log_view`).
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// The try shown; 0 before the first.
    #[serde(rename = "try")]
    pub try_number: i32,
    /// The lines shown: a page of the log (the last one unless paged back), or the
    /// lines matching the search.
    pub lines: Vec<LogRow>,
    /// Lines in the try's log.
    pub total: i64,
    /// The try is running and its last lines are shown: poll for more.
    pub live: bool,
    pub poll: String,
    /// The API's log of this try (JSON), with its query's first parameter.
    pub api: String,
    /// The whole log as a text file.
    pub download: String,
    /// The page before the first line shown, when that is not line 1.
    pub earlier: Option<EarlierLink>,
    /// Back to the end of the log, when an earlier page is shown.
    pub latest: Option<String>,
    /// With search matches: a line number links here with the number appended (the
    /// page around that line).
    pub context: Option<String>,
    pub search: LogSearch,
}

/// "earlier lines": a page link that htmx turns into the lines themselves.
#[derive(Debug, Clone, Serialize)]
pub struct EarlierLink {
    /// The task page showing that page (without JavaScript).
    pub href: String,
    /// The `log_lines.html` fragment of that page.
    pub fragment: String,
    /// The line numbers it holds.
    pub from: i64,
    pub to: i64,
}

/// The log box's search form and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct LogSearch {
    /// The task page (the form sends `map_index`, `try` and `q` to it).
    pub action: String,
    pub map_index: Option<i32>,
    /// The text searched for; empty when not searching.
    pub term: String,
    /// The next page of matches, if there may be more.
    pub more: Option<String>,
    /// The log without the search.
    pub clear: String,
    /// Why the term was refused.
    pub error: Option<String>,
}

/// `log_lines.html`: lines for the log box (new lines while the try runs, or an earlier
/// page), with the poller or the next "earlier lines" link.
#[derive(Debug, Clone, Serialize)]
pub struct LogLinesPage {
    pub lines: Vec<LogRow>,
    pub live: bool,
    pub poll: String,
    pub earlier: Option<EarlierLink>,
}

/// `trigger.html`: the trigger form of a DAG.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag_id: String,
    pub dag_href: String,
    /// The run id as entered, and what is wrong with it (invalid, or already taken).
    pub run_id: String,
    pub run_id_error: Option<String>,
    /// One typed input per param; empty for a DAG without params (the `conf` box instead).
    pub fields: Vec<ParamField>,
    /// The conf text area (a DAG without params).
    pub conf: String,
    pub conf_error: Option<String>,
    /// The form's summary error.
    pub error: Option<String>,
    /// The DAG's recent confs, each a link that prefills the form.
    pub recent: Vec<RecentConf>,
}

/// One param's input on the trigger form.
#[derive(Debug, Clone, Serialize)]
pub struct ParamField {
    pub name: String,
    /// The form field (`param.<name>`) and the element id.
    pub input_name: String,
    pub id: String,
    /// The param's type (`integer`, `date`, …).
    pub kind: String,
    /// `text`, `number`, `checkbox`, `select`, `date` or `textarea`.
    pub input: String,
    pub step: Option<String>,
    pub placeholder: Option<String>,
    /// The text shown (as entered, or the default).
    pub value: String,
    pub checked: bool,
    pub options: Vec<ParamOption>,
    pub default: String,
    pub description: Option<String>,
    pub error: Option<String>,
}

/// One choice of an `enum` param.
#[derive(Debug, Clone, Serialize)]
pub struct ParamOption {
    pub value: String,
    pub selected: bool,
}

/// A recent run's conf on the trigger form.
#[derive(Debug, Clone, Serialize)]
pub struct RecentConf {
    pub run_id: String,
    pub run_href: String,
    /// The conf as compact JSON.
    pub conf: String,
    /// The trigger form prefilled with it.
    pub href: String,
}

/// `audit.html`: the audit log, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub entries: Vec<AuditRow>,
    pub total: i64,
    /// The filters (empty: any).
    pub dag_id: String,
    pub actor: String,
    pub prev: Option<i64>,
    pub next: Option<i64>,
}

/// An audit entry with links to what it touched.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    #[serde(flatten)]
    pub entry: AuditRecord,
    /// The entries of the same actor.
    pub actor_href: String,
    pub dag_href: Option<String>,
    pub run_href: Option<String>,
    pub task_href: Option<String>,
    /// For a pool, user or token action: the page that lists it.
    pub subject_href: Option<String>,
}

/// `admin.html`: pools at a glance and the person's own API tokens.
#[derive(Debug, Clone, Serialize)]
pub struct AdminPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub pools: Vec<PoolModel>,
    pub tokens: Vec<ApiToken>,
    /// A token just created, shown once.
    pub new_token: Option<String>,
}

/// `admin_pools.html`: the admins' pool page.
#[derive(Debug, Clone, Serialize)]
pub struct PoolsPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub pools: Vec<PoolRow>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolRow {
    pub pool: PoolModel,
    pub href: String,
    /// The default pool, which cannot be deleted.
    pub default: bool,
}

/// `admin_users.html`: the admins' user page.
#[derive(Debug, Clone, Serialize)]
pub struct UsersPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub users: Vec<UserRow>,
    pub roles: Vec<Role>,
    pub min_password: usize,
    pub error: Option<String>,
    /// A generated password, shown once.
    pub password: Option<ShownPassword>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub user: UserModel,
    pub href: String,
    /// The admin looking at the page.
    pub is_me: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShownPassword {
    pub username: String,
    pub password: String,
}

/// `login.html`: the sign-in form.
#[derive(Debug, Clone, Serialize)]
pub struct LoginPage {
    #[serde(flatten)]
    pub layout: Layout,
    /// Where to go after signing in.
    pub next: String,
    pub csrf: String,
    pub error: Option<String>,
}

/// `error.html`: an error as a page.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub problem: Problem,
}

/// `confirm.html`: an action's confirmation as a page of its own (without htmx).
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmPage {
    #[serde(flatten)]
    pub layout: Layout,
    pub confirm: Confirmation,
}

/// `confirm_box.html`: the confirmation alone, which htmx swaps into the page the action
/// started from (`#confirm`).
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmBox {
    pub confirm: Confirmation,
}

/// What an action will change, listed from its plan, and the form that does it.
#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub title: String,
    /// What the action does, in words.
    pub intro: String,
    /// Where the confirming form posts.
    pub action: String,
    pub fields: Vec<HiddenField>,
    /// Choices that change how, not what, the action changes (a clear's "keep the run's
    /// version"): checkboxes on the confirming form.
    pub options: Vec<CheckOption>,
    /// The plan's fingerprint (`actions::fingerprint`): the action refuses another plan.
    pub expect: String,
    pub csrf: String,
    /// The first changes, one row each.
    pub changes: Vec<ChangeRow>,
    /// How many more changes there are than rows.
    pub more: usize,
    pub total: usize,
    /// Why the last attempt was refused.
    pub error: Option<String>,
    /// The page the action started from.
    pub back: String,
    /// The id of that page's live part, refreshed in place after confirming (htmx).
    pub region: Option<String>,
    pub button: String,
    pub danger: bool,
    /// Shown as a box over the page (swapped in by htmx) rather than as a page.
    pub overlay: bool,
}

/// A checkbox on a confirmation's form.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOption {
    pub name: String,
    pub label: String,
    pub checked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HiddenField {
    pub name: String,
    pub value: String,
}

/// One task instance an action changes.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRow {
    pub task_id: String,
    pub map_index: i32,
    pub try_number: i32,
    pub from: TaskState,
    pub to: TaskState,
    pub href: String,
}
/// `source.html`: a DAG file as loaded for one version of its definition, highlighted.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePage {
    #[serde(flatten)]
    pub layout: Layout,
    pub dag: DagHeader,
    /// The definition hash shown (the DAG's now, or a run's).
    pub hash: String,
    /// It is the definition loaded now.
    pub current: bool,
    /// The file's path then, and when that version was first loaded; none when its text
    /// was not kept (loaded by a version of nightshift that kept no sources).
    pub file_path: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// The file's lines as HTML: escaped, tokens in `hl-…` classes.
    pub lines: Vec<String>,
    /// The version loaded now, when another is shown.
    pub current_href: Option<String>,
}
