//! The API's resources, named and shaped after Airflow's stable REST API (`dag_id`,
//! `dag_run_id`, `logical_date`, `total_entries`, …), with their OpenAPI schemas.

use chrono::{DateTime, Utc};
use nightshift_store::{
    Attempt, AuditRecord, DagRecord, DagRun, DagVersion, ImportError, LogRow, Pool, PoolUsage,
    TaskInstance, User,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::lookup::{duration_secs, mask_secrets};

/// Page parameters of every list: at most `limit` items (default 100, at most 1000)
/// after skipping `offset`.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    #[serde(default, deserialize_with = "int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub limit: Option<u32>,
    #[serde(default, deserialize_with = "int32")]
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
}

/// A non-negative number that fits the document's int32 (2147483647 at most).
pub(crate) fn int32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    match Option::<u32>::deserialize(d)? {
        Some(n) if i32::try_from(n).is_err() => Err(D::Error::custom(format!(
            "{n} is above the largest allowed value, 2147483647"
        ))),
        n => Ok(n),
    }
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    pub fn limit(&self) -> i64 {
        i64::from(
            self.limit
                .unwrap_or(Self::DEFAULT_LIMIT)
                .min(Self::MAX_LIMIT),
        )
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.offset.unwrap_or(0))
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tag {
    pub name: String,
}

/// A cron schedule, as Airflow's `CronExpression`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleInterval {
    #[serde(rename = "__type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagModel {
    pub dag_id: String,
    pub description: Option<String>,
    /// The DAG file.
    pub fileloc: String,
    pub is_paused: bool,
    /// False once the DAG's file is gone.
    pub is_active: bool,
    pub owners: Vec<String>,
    pub tags: Vec<Tag>,
    pub schedule_interval: Option<ScheduleInterval>,
    /// IANA time zone the schedule runs in.
    pub timezone: String,
    /// When the scheduler may create the next scheduled run.
    pub next_dagrun_create_after: Option<DateTime<Utc>>,
    pub last_parsed_time: DateTime<Utc>,
}

impl From<&DagRecord> for DagModel {
    fn from(d: &DagRecord) -> Self {
        DagModel {
            dag_id: d.dag_id.clone(),
            description: d.description.clone(),
            fileloc: d.file_path.clone(),
            is_paused: d.is_paused,
            is_active: d.is_active,
            owners: d.owner.iter().cloned().collect(),
            tags: d
                .tags
                .iter()
                .map(|name| Tag { name: name.clone() })
                .collect(),
            schedule_interval: d.schedule.as_ref().map(|value| ScheduleInterval {
                kind: "CronExpression".to_owned(),
                value: value.clone(),
            }),
            timezone: d.timezone.clone(),
            next_dagrun_create_after: d.next_dagrun_create_after,
            last_parsed_time: d.updated_at.max(d.last_parsed_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagCollection {
    pub dags: Vec<DagModel>,
    pub total_entries: i64,
}

/// One version of a DAG: a distinct parsed definition, numbered from 1 in the order it
/// was first loaded. Comments, whitespace and the order of keys make no new version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagVersionModel {
    pub dag_id: String,
    /// 1 for the DAG's first definition, counting up.
    pub version_number: i64,
    /// SHA-256 of the parsed definition: what runs record as their `definition_hash`.
    pub definition_hash: String,
    /// The DAG file it was loaded from.
    pub fileloc: String,
    /// When this version was first loaded.
    pub created_at: DateTime<Utc>,
    /// This is the version loaded now.
    pub is_current: bool,
}

impl DagVersionModel {
    pub fn new(v: &DagVersion, current_hash: &str) -> Self {
        DagVersionModel {
            dag_id: v.dag_id.clone(),
            version_number: v.version,
            definition_hash: v.source_hash.clone(),
            fileloc: v.file_path.clone(),
            created_at: v.loaded_at,
            is_current: v.source_hash == current_hash,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagVersionCollection {
    /// Newest first.
    pub dag_versions: Vec<DagVersionModel>,
    pub total_entries: i64,
}

/// A DAG with its parsed definition and its file's current load error, if any.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagDetail {
    #[serde(flatten)]
    pub dag: DagModel,
    /// The validated definition (tasks, dependencies, defaults, params).
    #[schema(value_type = Object)]
    pub definition: Value,
    /// The DAG keeps its last good definition while its file fails to load.
    pub import_errors: Vec<ImportErrorModel>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagPatch {
    pub is_paused: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagRunModel {
    pub dag_run_id: String,
    pub dag_id: String,
    pub logical_date: DateTime<Utc>,
    /// Airflow 2's name for `logical_date`.
    pub execution_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// queued, running, success or failed.
    pub state: String,
    /// scheduled, manual or backfill.
    pub run_type: String,
    pub external_trigger: bool,
    #[schema(value_type = Object)]
    pub conf: Value,
    /// The version of the DAG the run was created with (see `/dags/{dag_id}/versions`).
    pub definition_hash: String,
}

impl From<&DagRun> for DagRunModel {
    fn from(r: &DagRun) -> Self {
        DagRunModel {
            dag_run_id: r.run_id.clone(),
            dag_id: r.dag_id.clone(),
            logical_date: r.logical_date,
            execution_date: r.logical_date,
            data_interval_start: r.data_interval_start,
            data_interval_end: r.data_interval_end,
            queued_at: r.queued_at,
            start_date: r.start_date,
            end_date: r.end_date,
            state: r.state.to_string(),
            run_type: r.run_type.to_string(),
            external_trigger: r.run_type != nightshift_store::RunType::Scheduled,
            conf: r.conf.clone(),
            definition_hash: r.definition_hash.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagRunCollection {
    pub dag_runs: Vec<DagRunModel>,
    pub total_entries: i64,
}

/// A run to trigger. Everything is optional.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDagRun {
    /// Default: `manual__<logical date>`. Letters, digits and `_.~:+-`, as in Airflow, but
    /// not `.` or `..`; at most 250 characters unless the `max_run_id_length` setting
    /// says otherwise.
    #[schema(pattern = r"^(?!\.\.?$)[A-Za-z0-9_.~:+-]+$")]
    pub dag_run_id: Option<String>,
    /// Default: now.
    pub logical_date: Option<DateTime<Utc>>,
    /// A JSON object, merged over the DAG's params in templates.
    #[schema(value_type = Option<Object>)]
    pub conf: Option<Value>,
}

/// The state to put a run in: `failed` cancels it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDagRunState {
    #[schema(pattern = "^failed$")]
    pub state: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceModel {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i32,
    pub logical_date: DateTime<Utc>,
    pub execution_date: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    /// pending, scheduled, queued, running, success, failed, up_for_retry,
    /// up_for_reschedule (a waiting try, e.g. a sensor, that holds no worker slot until
    /// `next_retry_at`), awaiting_input (an `approval` waiting for an operator's decision
    /// without a worker slot; its timeout falls at `next_retry_at`), upstream_failed,
    /// skipped or removed.
    pub state: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub hostname: Option<String>,
    pub pool: String,
    pub pool_slots: i32,
    pub queue: String,
    pub priority_weight: i32,
    /// The task's kind (command, sql, http, ecs, sensor, require, approval, noop).
    pub operator: String,
    pub queued_when: Option<DateTime<Utc>>,
    /// When the instance may be scheduled again: the next try of an `up_for_retry`
    /// instance, the next poke of an `up_for_reschedule` one; for an `awaiting_input` one,
    /// when its timeout decides.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// An external job's id, e.g. an ECS task ARN; for a `require` task while it looks,
    /// the required run as `<dag_id>/<run_id>`.
    pub external_id: Option<String>,
    /// The try's rendered fields, secrets masked.
    #[schema(value_type = Option<Object>)]
    pub rendered_fields: Option<Value>,
}

impl TaskInstanceModel {
    pub fn new(ti: &TaskInstance, run: &DagRun) -> Self {
        TaskInstanceModel {
            task_id: ti.task_id.clone(),
            dag_id: ti.dag_id.clone(),
            dag_run_id: run.run_id.clone(),
            map_index: ti.map_index,
            logical_date: run.logical_date,
            execution_date: run.logical_date,
            start_date: ti.start_date,
            end_date: ti.end_date,
            duration: duration_secs(ti.start_date, ti.end_date),
            state: ti.state.to_string(),
            try_number: ti.try_number,
            max_tries: ti.max_tries,
            hostname: ti.hostname.clone(),
            pool: ti.pool.clone(),
            pool_slots: ti.pool_slots,
            queue: ti.queue.clone(),
            priority_weight: ti.priority,
            operator: ti.kind.clone(),
            queued_when: ti.queued_at,
            next_retry_at: ti.next_retry_at,
            external_id: ti.external_id.clone(),
            rendered_fields: ti.rendered.as_ref().map(mask_secrets),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceCollection {
    pub task_instances: Vec<TaskInstanceModel>,
    pub total_entries: i64,
}

/// One try of a task instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceTry {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i32,
    pub try_number: i32,
    /// `running`, `up_for_reschedule` while the try waits without a worker slot (it has
    /// no `end_date` yet: it goes on at its next poke), then the state it ended in.
    pub state: String,
    /// How often the try gave its worker slot back to wait and was woken again: a
    /// sensor's pokes are one try, not one try each.
    pub reschedules: i32,
    /// When the try was queued for a worker (unknown for a try recorded before migration
    /// 0011 that was not its instance's latest).
    pub queued_when: Option<DateTime<Utc>>,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub hostname: String,
    /// The worker that ran the try.
    pub worker: String,
    pub exit_code: Option<i32>,
    /// The try's external job (an ECS task ARN); for a `require` task, the required run
    /// as `<dag_id>/<run_id>` (`/api/v1/dags/{dag_id}/dagRuns/{run_id}`).
    pub external_id: Option<String>,
    pub error: Option<String>,
    /// The version of the DAG the try ran (see `/dags/{dag_id}/versions`); unknown for a
    /// try recorded before versions were.
    pub definition_hash: Option<String>,
}

impl TaskInstanceTry {
    pub fn new(a: &Attempt, ti: &TaskInstance, run: &DagRun) -> Self {
        TaskInstanceTry {
            task_id: ti.task_id.clone(),
            dag_id: ti.dag_id.clone(),
            dag_run_id: run.run_id.clone(),
            map_index: ti.map_index,
            try_number: a.try_number,
            state: a.state.to_string(),
            queued_when: a.queued_at,
            start_date: a.start_date,
            end_date: a.end_date,
            duration: duration_secs(Some(a.start_date), a.end_date),
            hostname: a.hostname.clone(),
            worker: a.worker.clone(),
            exit_code: a.exit_code,
            external_id: a.external_id.clone(),
            error: a.error.clone(),
            reschedules: a.reschedules,
            definition_hash: a.definition_hash.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceTryCollection {
    pub task_instances: Vec<TaskInstanceTry>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogLineModel {
    /// Increases in the order lines were stored, across all logs.
    pub id: i64,
    /// 1, 2, 3, ... within the try, in the order the worker received the lines (across
    /// stdout, stderr and nightshift's own lines).
    pub line_no: i64,
    pub ts: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

impl From<LogRow> for LogLineModel {
    fn from(row: LogRow) -> Self {
        LogLineModel {
            id: row.id,
            line_no: row.line_no,
            ts: row.ts,
            stream: row.stream,
            line: row.line,
        }
    }
}

/// A piece of one try's log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogChunk {
    /// The lines joined with newlines.
    pub content: String,
    pub lines: Vec<LogLineModel>,
    /// Pass as `offset` to get the lines after these (to follow a running try).
    pub continuation_token: String,
    /// False while the try may still write lines.
    pub finished: bool,
}

/// The lines of one try that contain a term, with their line numbers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogMatches {
    pub term: String,
    pub lines: Vec<LogLineModel>,
    /// Pass as `offset` for the next matches; absent when there are no more.
    pub continuation_token: Option<String>,
}

/// Which task instances to clear in one run (Airflow's `ClearTaskInstances`, for one run).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTaskInstances {
    /// Only list what would be cleared (default true, as in Airflow).
    #[serde(default = "yes")]
    pub dry_run: bool,
    pub dag_run_id: String,
    /// Default: every task of the DAG.
    pub task_ids: Option<Vec<String>>,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    #[serde(default)]
    pub only_failed: bool,
    /// Run the version of the DAG the run was created with (`definition_hash` of the
    /// run) instead of the DAG's current version (the default, as in Airflow 2).
    #[serde(default)]
    pub keep_version: bool,
}

fn yes() -> bool {
    true
}

/// Mark the instances of one task in one run.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskInstancesState {
    /// Only list what would change (default true, as in Airflow).
    #[serde(default = "yes")]
    pub dry_run: bool,
    pub dag_run_id: String,
    pub task_id: String,
    /// Default: every map index of the task.
    #[serde(default, deserialize_with = "crate::extract::opt_int32")]
    pub map_index: Option<i32>,
    /// success or failed.
    #[schema(pattern = "^(success|failed)$")]
    pub new_state: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceReference {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i32,
    pub state: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceReferenceCollection {
    pub task_instances: Vec<TaskInstanceReference>,
}

impl TaskInstanceReferenceCollection {
    pub fn new(instances: &[TaskInstance], run_id: &str) -> Self {
        TaskInstanceReferenceCollection {
            task_instances: instances
                .iter()
                .map(|ti| TaskInstanceReference {
                    task_id: ti.task_id.clone(),
                    dag_id: ti.dag_id.clone(),
                    dag_run_id: run_id.to_owned(),
                    map_index: ti.map_index,
                    state: ti.state.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolModel {
    pub name: String,
    pub slots: i32,
    pub occupied_slots: i64,
    pub running_slots: i64,
    pub queued_slots: i64,
    pub open_slots: i64,
    pub description: String,
}

impl PoolModel {
    pub fn new(pool: &Pool, usage: Option<&PoolUsage>) -> Self {
        let (queued, running) = usage.map_or((0, 0), |u| (u.queued_slots, u.running_slots));
        PoolModel {
            name: pool.name.clone(),
            slots: pool.slots,
            occupied_slots: queued + running,
            running_slots: running,
            queued_slots: queued,
            open_slots: i64::from(pool.slots) - queued - running,
            description: pool.description.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolCollection {
    pub pools: Vec<PoolModel>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    /// 1 to 256 characters, no spaces or control characters, and not `.` or `..`.
    #[schema(pattern = r"^(?!\.\.?$)[^\s\x00-\x1f\x7f-\x9f]{1,256}$")]
    pub name: String,
    /// How many task slots run at once in this pool.
    #[serde(deserialize_with = "crate::extract::int32")]
    #[schema(minimum = 0)]
    pub slots: i32,
    #[serde(default)]
    pub description: String,
}

/// What to change in a pool; omitted (or null) fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    #[serde(default, deserialize_with = "crate::extract::opt_int32")]
    #[schema(minimum = 0)]
    pub slots: Option<i32>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportErrorModel {
    pub filename: String,
    pub stack_trace: String,
    pub timestamp: DateTime<Utc>,
}

impl From<&ImportError> for ImportErrorModel {
    fn from(e: &ImportError) -> Self {
        ImportErrorModel {
            filename: e.file_path.clone(),
            stack_trace: e.message.clone(),
            timestamp: e.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportErrorCollection {
    pub import_errors: Vec<ImportErrorModel>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventLog {
    pub event_log_id: i64,
    pub when: DateTime<Utc>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    /// What was done, e.g. `task.clear`.
    pub event: String,
    /// Who did it.
    pub owner: String,
    pub ip: Option<String>,
    #[schema(value_type = Object)]
    pub extra: Value,
}

impl From<&AuditRecord> for EventLog {
    fn from(a: &AuditRecord) -> Self {
        EventLog {
            event_log_id: a.id,
            when: a.ts,
            dag_id: a.dag_id.clone(),
            run_id: a.run_id.clone(),
            task_id: a.task_id.clone(),
            event: a.action.clone(),
            owner: a.actor.clone(),
            ip: a.ip.clone(),
            extra: a.details.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventLogCollection {
    pub event_logs: Vec<EventLog>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserModel {
    pub username: String,
    /// viewer, operator or admin.
    pub role: String,
    pub disabled: bool,
    pub created_on: DateTime<Utc>,
}

impl From<&User> for UserModel {
    fn from(u: &User) -> Self {
        UserModel {
            username: u.username.clone(),
            role: u.role.to_string(),
            disabled: u.disabled,
            created_on: u.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserCollection {
    pub users: Vec<UserModel>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    /// 1 to 64 ASCII letters, digits, `.`, `_`, `@` or `-`.
    #[schema(pattern = r"^(?!\.\.?$)[A-Za-z0-9._@-]{1,64}$")]
    pub username: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    pub password: String,
    /// viewer, operator or admin.
    #[schema(pattern = "^(viewer|operator|admin)$")]
    pub role: String,
}

/// What to change in a user; omitted (or null) fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(pattern = "^(viewer|operator|admin)$")]
    pub role: Option<String>,
    pub disabled: Option<bool>,
    #[schema(min_length = 8)]
    pub password: Option<String>,
    /// A new password, another role or disabling ends the user's sessions and API
    /// tokens; `true` keeps the tokens.
    #[serde(default)]
    pub keep_tokens: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: String,
    pub git_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetadatabaseStatus {
    /// healthy or unhealthy.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchedulerStatus {
    /// healthy (heartbeat within the last minute) or unhealthy.
    pub status: String,
    pub latest_scheduler_heartbeat: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthInfo {
    pub metadatabase: MetadatabaseStatus,
    pub scheduler: SchedulerStatus,
}
