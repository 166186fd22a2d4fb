//! `/api/v2`'s resources, shaped after Airflow 3's (`DAGResponse`, `DAGRunResponse`,
//! `TaskInstanceResponse`, …) with every field its client's models require. Where
//! nightshift has no such concept, the field holds what Airflow answers for an empty one
//! (docs/airflow-compatibility.md has the table).

use chrono::{DateTime, Utc};
use nightshift_core::state::TaskState;
use nightshift_store::{DagRecord, DagRun, DagVersion, ImportError, Pool, PoolUsage, TaskInstance};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::lookup::{duration_secs, mask_secrets};

/// A UUID-shaped id made from the first 128 bits of a hex digest (Airflow 3 names DAG
/// versions and task instances by UUIDs; nightshift by hashes and row ids).
fn uuid_from_hex(hex: &str) -> String {
    let hex: String = hex
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(32)
        .collect();
    let hex = format!("{hex:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The UUID of a task instance: its row id in the last 12 hex digits.
pub fn task_instance_uuid(id: i64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", id.max(0))
}

/// The id of a file's import error: the first 48 bits of the SHA-256 of its path (a file
/// has at most one error).
pub fn import_error_id(file_path: &str) -> i64 {
    let digest = Sha256::digest(file_path.as_bytes());
    digest[..6]
        .iter()
        .fold(0i64, |acc, b| (acc << 8) | i64::from(*b))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagTagResponse {
    pub name: String,
    pub dag_id: String,
    pub dag_display_name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagResponse {
    pub dag_id: String,
    /// The DAG's id (nightshift has no separate display names).
    pub dag_display_name: String,
    pub is_paused: bool,
    /// True once the DAG's file is gone.
    pub is_stale: bool,
    pub last_parsed_time: Option<DateTime<Utc>>,
    pub last_expired: Option<DateTime<Utc>>,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub relative_fileloc: Option<String>,
    pub fileloc: String,
    /// SHA-256 of the file's path.
    pub file_token: String,
    pub description: Option<String>,
    /// The cron schedule; null for a DAG that only runs when triggered.
    pub timetable_summary: Option<String>,
    pub timetable_description: Option<String>,
    pub timetable_partitioned: bool,
    /// Whether the DAG has a schedule.
    pub timetable_periodic: bool,
    pub tags: Vec<DagTagResponse>,
    pub max_active_tasks: i64,
    pub max_active_runs: Option<i64>,
    /// Always 0 (nightshift does not pause a DAG after failures).
    pub max_consecutive_failed_dag_runs: i64,
    pub has_task_concurrency_limits: bool,
    pub has_import_errors: bool,
    /// When the scheduler may create the next scheduled run.
    pub next_dagrun_run_after: Option<DateTime<Utc>>,
    pub next_dagrun_logical_date: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    pub owners: Vec<String>,
    /// Whether the DAG has a schedule to backfill.
    pub is_backfillable: bool,
    /// IANA time zone the schedule runs in.
    pub timezone: String,
}

impl DagResponse {
    pub fn new(d: &DagRecord, has_import_errors: bool) -> Self {
        let limit = |key: &str| d.definition.get(key).and_then(Value::as_i64);
        DagResponse {
            dag_id: d.dag_id.clone(),
            dag_display_name: d.dag_id.clone(),
            is_paused: d.is_paused,
            is_stale: !d.is_active,
            last_parsed_time: Some(d.updated_at.max(d.last_parsed_at)),
            last_expired: None,
            bundle_name: None,
            bundle_version: None,
            relative_fileloc: std::path::Path::new(&d.file_path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned()),
            fileloc: d.file_path.clone(),
            file_token: crate::auth::secret_hash(&d.file_path),
            description: d.description.clone(),
            timetable_summary: d.schedule.clone(),
            timetable_description: d
                .schedule
                .as_ref()
                .map(|s| format!("cron {s} in {}", d.timezone)),
            timetable_partitioned: false,
            timetable_periodic: d.schedule.is_some(),
            tags: d
                .tags
                .iter()
                .map(|name| DagTagResponse {
                    name: name.clone(),
                    dag_id: d.dag_id.clone(),
                    dag_display_name: d.dag_id.clone(),
                })
                .collect(),
            max_active_tasks: limit("max_active_tasks").unwrap_or(16),
            max_active_runs: limit("max_active_runs"),
            max_consecutive_failed_dag_runs: 0,
            has_task_concurrency_limits: false,
            has_import_errors,
            next_dagrun_run_after: d.next_dagrun_create_after,
            next_dagrun_logical_date: None,
            next_dagrun_data_interval_start: None,
            next_dagrun_data_interval_end: None,
            owners: d.owner.iter().cloned().collect(),
            is_backfillable: d.schedule.is_some(),
            timezone: d.timezone.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagCollectionResponse {
    pub dags: Vec<DagResponse>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagPatchBody {
    pub is_paused: bool,
}

/// One version of a DAG: a distinct parsed definition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagVersionResponse {
    /// Made from the definition's hash.
    pub id: String,
    pub version_number: i64,
    pub dag_id: String,
    pub dag_display_name: String,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub bundle_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// SHA-256 of the parsed definition (nightshift's `definition_hash`).
    pub definition_hash: String,
}

impl From<&DagVersion> for DagVersionResponse {
    fn from(v: &DagVersion) -> Self {
        DagVersionResponse {
            id: uuid_from_hex(&v.source_hash),
            version_number: v.version,
            dag_id: v.dag_id.clone(),
            dag_display_name: v.dag_id.clone(),
            bundle_name: None,
            bundle_version: None,
            bundle_url: None,
            created_at: v.loaded_at,
            definition_hash: v.source_hash.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagRunResponse {
    pub dag_run_id: String,
    pub dag_id: String,
    pub dag_display_name: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    /// The run's logical date: when it may start.
    pub run_after: DateTime<Utc>,
    pub last_scheduling_decision: Option<DateTime<Utc>>,
    /// scheduled, manual or backfill.
    pub run_type: String,
    /// queued, running, success or failed.
    pub state: String,
    pub triggered_by: Option<String>,
    pub triggering_user_name: Option<String>,
    #[schema(value_type = Object)]
    pub conf: Value,
    pub note: Option<String>,
    /// The version the run was created with, when it is known.
    pub dag_versions: Vec<DagVersionResponse>,
    pub bundle_version: Option<String>,
}

impl DagRunResponse {
    pub fn new(r: &DagRun, versions: &[DagVersion]) -> Self {
        DagRunResponse {
            dag_run_id: r.run_id.clone(),
            dag_id: r.dag_id.clone(),
            dag_display_name: r.dag_id.clone(),
            logical_date: Some(r.logical_date),
            queued_at: Some(r.queued_at),
            start_date: r.start_date,
            end_date: r.end_date,
            duration: duration_secs(r.start_date, r.end_date),
            data_interval_start: Some(r.data_interval_start),
            data_interval_end: Some(r.data_interval_end),
            run_after: r.logical_date,
            last_scheduling_decision: None,
            run_type: r.run_type.to_string(),
            state: r.state.to_string(),
            triggered_by: None,
            triggering_user_name: None,
            conf: r.conf.clone(),
            note: None,
            dag_versions: versions
                .iter()
                .filter(|v| v.source_hash == r.definition_hash)
                .map(DagVersionResponse::from)
                .collect(),
            bundle_version: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DagRunCollectionResponse {
    pub dag_runs: Vec<DagRunResponse>,
    pub total_entries: i64,
}

/// A run to trigger (Airflow 3's `TriggerDAGRunPostBody`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDagRunPostBody {
    /// Default: `manual__<logical date>`.
    #[schema(pattern = r"^(?!\.\.?$)[A-Za-z0-9_.~:+-]+$")]
    pub dag_run_id: Option<String>,
    /// Default (and when null): now.
    pub logical_date: Option<DateTime<Utc>>,
    /// Must be null or the logical date: a nightshift run may start at its logical date.
    pub run_after: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub conf: Option<Value>,
    /// Kept in the trigger's audit entry.
    pub note: Option<String>,
    /// Not supported (null only): nightshift derives data intervals from the schedule.
    #[schema(value_type = Option<String>)]
    pub data_interval_start: Option<Value>,
    /// Not supported (null only).
    #[schema(value_type = Option<String>)]
    pub data_interval_end: Option<Value>,
    /// Not supported (null only): nightshift has no partitions.
    pub partition_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceResponse {
    /// Made from the instance's row id.
    pub id: String,
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i32,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    /// Airflow 3's vocabulary: null (nightshift's `pending`: no state yet), scheduled,
    /// queued, running, success, failed, up_for_retry, up_for_reschedule, awaiting_input,
    /// upstream_failed, skipped or removed.
    pub state: Option<String>,
    pub try_number: i32,
    pub max_tries: i32,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i32,
    pub queue: Option<String>,
    pub priority_weight: Option<i32>,
    /// The task's kind (command, sql, http, …).
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<DateTime<Utc>>,
    pub scheduled_when: Option<DateTime<Utc>>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    /// Always `{}`.
    pub executor_config: String,
    pub note: Option<String>,
    pub rendered_map_index: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rendered_fields: Option<Value>,
    pub dag_version: Option<DagVersionResponse>,
}

/// A task state in Airflow 3's words: `pending` is null; the others have its names.
pub fn airflow3_state(state: TaskState) -> Option<String> {
    match state {
        TaskState::Pending => None,
        other => Some(other.as_str().to_owned()),
    }
}

impl TaskInstanceResponse {
    pub fn new(ti: &TaskInstance, run: &DagRun) -> Self {
        TaskInstanceResponse {
            id: task_instance_uuid(ti.id),
            task_id: ti.task_id.clone(),
            dag_id: ti.dag_id.clone(),
            dag_run_id: run.run_id.clone(),
            map_index: ti.map_index,
            logical_date: Some(run.logical_date),
            run_after: run.logical_date,
            start_date: ti.start_date,
            end_date: ti.end_date,
            duration: duration_secs(ti.start_date, ti.end_date),
            state: airflow3_state(ti.state),
            try_number: ti.try_number,
            max_tries: ti.max_tries,
            task_display_name: ti.task_id.clone(),
            dag_display_name: ti.dag_id.clone(),
            hostname: ti.hostname.clone(),
            unixname: None,
            pool: ti.pool.clone(),
            pool_slots: ti.pool_slots,
            queue: Some(ti.queue.clone()),
            priority_weight: Some(ti.priority),
            operator: Some(ti.kind.clone()),
            operator_name: Some(ti.kind.clone()),
            queued_when: ti.queued_at,
            scheduled_when: None,
            pid: None,
            executor: None,
            executor_config: "{}".to_owned(),
            note: None,
            rendered_map_index: None,
            rendered_fields: Some(
                ti.rendered
                    .as_ref()
                    .map_or_else(|| Value::Object(Default::default()), mask_secrets),
            ),
            dag_version: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceCollectionResponse {
    pub task_instances: Vec<TaskInstanceResponse>,
    pub total_entries: i64,
}

/// Which task instances to clear (Airflow 3's `ClearTaskInstancesBody`): `dry_run` and
/// `only_failed` default to true, as in Airflow 3.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTaskInstancesBody {
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// The run to clear (required: nightshift clears one run at a time).
    pub dag_run_id: Option<String>,
    /// Task ids; `[task_id, map_index]` pairs are not supported. Default: every task.
    #[schema(value_type = Option<Vec<String>>)]
    pub task_ids: Option<Vec<Value>>,
    #[serde(default = "yes")]
    pub only_failed: bool,
    /// Refused when true.
    #[serde(default)]
    pub only_running: bool,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    /// Refused when true (one run at a time).
    #[serde(default)]
    pub include_past: bool,
    /// Refused when true (one run at a time).
    #[serde(default)]
    pub include_future: bool,
    /// `false` is refused: clearing sets the run running again.
    pub reset_dag_runs: Option<bool>,
    /// Ignored: `dag_run_id` names the run.
    #[allow(dead_code)] // accepted and ignored, as documented
    pub start_date: Option<DateTime<Utc>>,
    /// Ignored: `dag_run_id` names the run.
    #[allow(dead_code)] // accepted and ignored, as documented
    pub end_date: Option<DateTime<Utc>>,
    /// Kept in the audit entry… not supported: must be null.
    pub note: Option<String>,
    /// Refused when true.
    #[serde(default)]
    pub prevent_running_task: bool,
    /// True: the DAG's current version (the default in nightshift, as in Airflow 2);
    /// false: the version the run was created with.
    pub run_on_latest_version: Option<bool>,
}

fn yes() -> bool {
    true
}

/// Mark a task instance (Airflow 3's `PatchTaskInstanceBody`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTaskInstanceBody {
    /// success or failed.
    #[schema(pattern = "^(success|failed)$")]
    pub new_state: Option<String>,
    /// Not supported: must be null.
    pub note: Option<String>,
    /// Refused when true.
    #[serde(default)]
    pub include_upstream: bool,
    /// Refused when true (marking failed resets the downstream that ran anyway).
    #[serde(default)]
    pub include_downstream: bool,
    /// Refused when true.
    #[serde(default)]
    pub include_past: bool,
    /// Refused when true.
    #[serde(default)]
    pub include_future: bool,
}

/// One line of a try's log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StructuredLogMessage {
    pub event: String,
    pub timestamp: Option<DateTime<Utc>>,
    /// stdout, stderr or nightshift's own lines.
    pub stream: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstancesLogResponse {
    /// A first line naming the try, then one entry per log line.
    pub content: Vec<StructuredLogMessage>,
    /// Pass as `token` to read on from here.
    pub continuation_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportErrorResponse {
    /// Made from the file's path.
    pub import_error_id: i64,
    pub timestamp: DateTime<Utc>,
    pub filename: String,
    pub bundle_name: Option<String>,
    pub stack_trace: String,
}

impl From<&ImportError> for ImportErrorResponse {
    fn from(e: &ImportError) -> Self {
        ImportErrorResponse {
            import_error_id: import_error_id(&e.file_path),
            timestamp: e.updated_at,
            filename: e.file_path.clone(),
            bundle_name: None,
            stack_trace: e.message.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportErrorCollectionResponse {
    pub import_errors: Vec<ImportErrorResponse>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolResponse {
    pub name: String,
    pub slots: i32,
    pub description: Option<String>,
    /// Always false: nightshift has no deferred tasks.
    pub include_deferred: bool,
    pub occupied_slots: i64,
    pub running_slots: i64,
    pub queued_slots: i64,
    /// Always 0.
    pub scheduled_slots: i64,
    pub open_slots: i64,
    /// Always 0.
    pub deferred_slots: i64,
}

impl PoolResponse {
    pub fn new(pool: &Pool, usage: Option<&PoolUsage>) -> Self {
        let (queued, running) = usage.map_or((0, 0), |u| (u.queued_slots, u.running_slots));
        PoolResponse {
            name: pool.name.clone(),
            slots: pool.slots,
            description: Some(pool.description.clone()),
            include_deferred: false,
            occupied_slots: queued + running,
            running_slots: running,
            queued_slots: queued,
            scheduled_slots: 0,
            open_slots: i64::from(pool.slots) - queued - running,
            deferred_slots: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolCollectionResponse {
    pub pools: Vec<PoolResponse>,
    pub total_entries: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    #[schema(pattern = r"^(?!\.\.?$)[^\s\x00-\x1f\x7f-\x9f]{1,256}$")]
    pub name: String,
    #[serde(deserialize_with = "crate::extract::int32")]
    #[schema(minimum = 0)]
    pub slots: i32,
    pub description: Option<String>,
    /// `true` is refused: nightshift has no deferred tasks.
    #[serde(default)]
    pub include_deferred: bool,
    /// Not supported: must be null.
    pub team_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatchBody {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::opt_int32")]
    #[schema(minimum = 0)]
    pub slots: Option<i32>,
    pub description: Option<String>,
    pub include_deferred: Option<bool>,
    pub team_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BaseInfoResponse {
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SchedulerInfoResponse {
    pub status: Option<String>,
    pub latest_scheduler_heartbeat: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggererInfoResponse {
    pub status: Option<String>,
    pub latest_triggerer_heartbeat: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthInfoResponse {
    pub metadatabase: BaseInfoResponse,
    pub scheduler: SchedulerInfoResponse,
    /// nightshift has no triggerer: its status is null.
    pub triggerer: TriggererInfoResponse,
    pub dag_processor: Option<BaseInfoResponse>,
}

/// A user name and password for `/auth/token`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoginResponse {
    /// An opaque bearer token (not a JWT); send it as `Authorization: Bearer …`.
    pub access_token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}
