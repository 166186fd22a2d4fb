//! The validated DAG model: what a DAG file means once every default is resolved.
//!
//! The store saves a [`Dag`] as JSON, so the scheduler, the workers and the web UI work
//! from it without reading DAG files. Templated strings are kept as written; they are
//! rendered per try.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::error::{DagError, DagErrors, Location};
use crate::deadline::Deadline;
use crate::duration::human;
use crate::schedule::Schedule;
use crate::trigger::TriggerRule;

/// One DAG, as parsed from one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dag {
    pub id: String,
    /// The path the DAG was read from, as given to [`crate::dag::parse_dag`].
    pub file: String,
    /// The DAG's version: SHA-256 (lowercase hex) of the parsed definition, see
    /// [`Dag::version_hash`]. Comments, whitespace and the order of keys in the file make
    /// no new version; any change of meaning (an embedded SQL file's text included) does.
    pub source_hash: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    /// `None`: the DAG only runs when triggered.
    #[serde(with = "schedule_serde")]
    pub schedule: Option<Schedule>,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    #[serde(with = "human::option")]
    pub dagrun_timeout: Option<Duration>,
    /// Defaults for `params` in templates; a manual trigger's conf is merged over them.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Each param's type, description and allowed values, as declared or inferred from
    /// its default (see [`crate::params`]). Use [`Dag::param_specs`], which also covers a
    /// DAG stored before specs existed.
    #[serde(default, rename = "param_specs")]
    pub declared_params: BTreeMap<String, crate::params::ParamSpec>,
    /// The `[defaults]` table as written (already applied to every task).
    pub defaults: TaskDefaults,
    /// Called when a DAG run fails.
    pub on_failure: Option<Callback>,
    /// Called when a DAG run succeeds.
    pub on_success: Option<Callback>,
    /// `[deadline]`: when a run is late (see [`crate::deadline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// Called when a run or task misses its deadline; `on_failure` when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deadline_missed: Option<Callback>,
    /// Called when an `approval` task asks for a decision; `on_failure` when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_approval_requested: Option<Callback>,
    pub tasks: BTreeMap<String, Task>,
}

/// The `[defaults]` table: values every task gets unless it sets its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefaults {
    pub retries: u32,
    #[serde(with = "human")]
    pub retry_delay: Duration,
    pub retry_exponential_backoff: bool,
    #[serde(with = "human::option")]
    pub max_retry_delay: Option<Duration>,
    #[serde(with = "human::option")]
    pub timeout: Option<Duration>,
    pub pool: String,
    pub queue: String,
    pub priority: i32,
    pub on_failure: Option<Callback>,
    pub on_success: Option<Callback>,
    pub on_retry: Option<Callback>,
}

impl Default for TaskDefaults {
    fn default() -> Self {
        TaskDefaults {
            retries: 0,
            retry_delay: Duration::from_secs(300),
            retry_exponential_backoff: false,
            max_retry_delay: None,
            timeout: None,
            pool: DEFAULT_POOL.to_owned(),
            queue: DEFAULT_QUEUE.to_owned(),
            priority: 1,
            on_failure: None,
            on_success: None,
            on_retry: None,
        }
    }
}

/// The pool a task uses unless it names one.
pub const DEFAULT_POOL: &str = "default_pool";
/// The queue a task goes to unless it names one.
pub const DEFAULT_QUEUE: &str = "default";

/// One task, with every default resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub kind: TaskKind,
    /// Direct upstreams, in file order (an upstream named by `for_each.from` included).
    pub depends_on: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub for_each: Option<ForEach>,
    pub retries: u32,
    #[serde(with = "human")]
    pub retry_delay: Duration,
    pub retry_exponential_backoff: bool,
    #[serde(with = "human::option")]
    pub max_retry_delay: Option<Duration>,
    /// Limit for one try; `None` means no limit.
    #[serde(with = "human::option")]
    pub timeout: Option<Duration>,
    pub pool: String,
    pub pool_slots: u32,
    pub queue: String,
    pub priority: i32,
    pub on_failure: Option<Callback>,
    pub on_success: Option<Callback>,
    pub on_retry: Option<Callback>,
    pub doc: Option<String>,
    /// `deadline = { … }`: when this task is late (see [`crate::deadline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
}

/// A task's `type` and the fields that belong to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskKind {
    Command(CommandTask),
    Sql(SqlTask),
    Http(HttpTask),
    Ecs(EcsTask),
    Sensor(SensorTask),
    Noop,
    Approval(crate::approval::ApprovalTask),
    Require(super::RequireTask),
    Athena(super::AthenaTask),
    Redshift(super::RedshiftTask),
    Bigquery(super::BigqueryTask),
}

impl TaskKind {
    /// The `type` name as written in files.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Command(_) => "command",
            TaskKind::Sql(_) => "sql",
            TaskKind::Http(_) => "http",
            TaskKind::Ecs(_) => "ecs",
            TaskKind::Sensor(_) => "sensor",
            TaskKind::Noop => "noop",
            TaskKind::Approval(_) => "approval",
            TaskKind::Require(_) => "require",
            TaskKind::Athena(_) => "athena",
            TaskKind::Redshift(_) => "redshift",
            TaskKind::Bigquery(_) => "bigquery",
        }
    }

    /// The connection this task uses, if any.
    pub fn connection(&self) -> Option<&str> {
        match self {
            TaskKind::Sql(t) => Some(&t.connection),
            TaskKind::Http(t) => t.connection.as_deref(),
            TaskKind::Ecs(t) => t.connection.as_deref(),
            TaskKind::Bigquery(t) => Some(&t.connection),
            TaskKind::Sensor(s) => match &s.check {
                SensorCheck::Sql(t) => Some(&t.connection),
                SensorCheck::Http(t) => t.connection.as_deref(),
                SensorCheck::S3(_) => None,
            },
            TaskKind::Command(_)
            | TaskKind::Noop
            | TaskKind::Approval(_)
            | TaskKind::Require(_) => None,
            TaskKind::Athena(_) | TaskKind::Redshift(_) => None,
        }
    }

    /// What the task submits to an external system, in one line (`nightshift tasks
    /// render`); `None` for a kind whose rendered fields say it all.
    pub fn submission(&self) -> Option<String> {
        match self {
            TaskKind::Athena(t) => Some(t.submission()),
            TaskKind::Redshift(t) => Some(t.submission()),
            TaskKind::Bigquery(t) => Some(t.submission()),
            _ => None,
        }
    }
}

/// The names accepted in `type`.
pub const TASK_KINDS: &[&str] = &[
    "command", "sql", "http", "ecs", "sensor", "noop", "approval", "require", "athena", "redshift",
    "bigquery",
];

/// `for_each`: one task instance per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForEach {
    /// A literal list written in the file (never empty).
    Items(Vec<serde_json::Value>),
    /// The output of this upstream task, which must be a JSON list at run time.
    From(String),
}

/// A local process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandTask {
    pub command: CommandLine,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Exit codes that mark the task skipped instead of failed.
    pub skip_on_exit_code: Vec<i32>,
}

/// A command as an argv list (run directly) or a string (run by `sh -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

impl Serialize for CommandLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CommandLine::Shell(line) => s.serialize_str(line),
            CommandLine::Argv(argv) => argv.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CommandLine;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a shell command string or an array of strings (argv)")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CommandLine, E> {
                Ok(CommandLine::Shell(v.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CommandLine, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(CommandLine::Argv(argv))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Statements against a named connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlTask {
    pub connection: String,
    pub source: SqlSource,
    /// Bound parameters, referenced as `:name` in the statement text.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Run the whole script in one transaction.
    pub transaction: bool,
}

/// Where a `sql` task's text comes from: exactly one of `sql` and `sql_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlSource {
    /// The statements, inline.
    Sql(String),
    /// A file relative to the DAG file's folder. `text` is `None` until the loader, which
    /// may read files, fills it with [`Dag::embed_sql_files`]; workers use `text` only.
    SqlFile { path: String, text: Option<String> },
}

impl SqlSource {
    /// The statement text (a template), when known.
    pub fn text(&self) -> Option<&str> {
        match self {
            SqlSource::Sql(text) => Some(text),
            SqlSource::SqlFile { text, .. } => text.as_deref(),
        }
    }
}

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpTask {
    /// Supplies base URL and auth (basic or bearer) when set.
    pub connection: Option<String>,
    /// Upper case: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub body: Option<String>,
    pub json: Option<serde_json::Value>,
    /// The response status must fall in one of these ranges.
    pub expect_status: Vec<StatusRange>,
    pub json_check: Option<JsonCheck>,
}

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRange {
    pub start: u16,
    pub end: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.start..=self.end).contains(&status)
    }
}

/// A check on the JSON response: the value at `path` must equal `equals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonCheck {
    /// Dotted keys and array indexes, e.g. `data.items.0.status`.
    pub path: String,
    pub equals: serde_json::Value,
}

/// An ECS RunTask (Fargate or EC2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcsTask {
    /// Supplies region, endpoint or credentials when set; else the standard AWS chain.
    pub connection: Option<String>,
    pub cluster: String,
    /// A family name or a full ARN.
    pub task_definition: String,
    pub revision: Option<u32>,
    /// At most one of `launch_type` and `capacity_provider_strategy`; neither means the
    /// cluster's default capacity provider strategy.
    pub launch_type: Option<LaunchType>,
    pub capacity_provider_strategy: Vec<CapacityProviderItem>,
    pub platform_version: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    /// The container the overrides (`command`, `environment`, `cpu`, `memory`) apply to.
    pub container: Option<String>,
    pub command: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub tags: BTreeMap<String, String>,
    pub started_by: Option<String>,
    pub propagate_tags: Option<PropagateTags>,
    pub awslogs_group: Option<String>,
    pub awslogs_stream_prefix: Option<String>,
    pub skip_on_exit_code: Vec<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LaunchType {
    Fargate,
    Ec2,
    External,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityProviderItem {
    pub capacity_provider: String,
    pub weight: u32,
    pub base: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PropagateTags {
    TaskDefinition,
    Service,
    None,
}

/// Pokes a SQL query or an HTTP endpoint until it is true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorTask {
    #[serde(with = "human")]
    pub poke_interval: Duration,
    /// On timeout, mark the task skipped instead of failed.
    pub soft_fail: bool,
    pub check: SensorCheck,
}

/// What a sensor pokes (`mode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SensorCheck {
    /// True when the query returns a row whose first column is truthy.
    Sql(SqlTask),
    /// True when the status (and the JSON check, if any) match.
    Http(HttpTask),
    /// True once the object (`key`) or enough objects under `prefix` exist in S3.
    S3(S3Check),
}

/// A sensor's `mode = "s3"`: an object, or objects under a prefix, in an S3 bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S3Check {
    /// Templated.
    pub bucket: String,
    /// Exactly one of `key` and `prefix` (templated).
    pub target: S3Target,
    /// An object counts only when it has at least this many bytes.
    #[serde(default)]
    pub min_size: u64,
    /// With `prefix`: true once at least this many objects (of `min_size`) exist.
    #[serde(default = "one")]
    pub min_objects: u64,
}

fn one() -> u64 {
    1
}

/// What an S3 sensor waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S3Target {
    /// One object.
    Key(String),
    /// Objects whose keys start with this.
    Prefix(String),
}

/// A notification: a Slack incoming webhook or any HTTP call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Callback {
    Slack {
        webhook: String,
    },
    Http {
        url: String,
        method: String,
        headers: BTreeMap<String, String>,
        json: Option<serde_json::Value>,
    },
}

impl Dag {
    /// Every param with its spec (declared, or inferred from its default).
    pub fn param_specs(&self) -> BTreeMap<String, crate::params::ParamSpec> {
        crate::params::specs_of(&self.params, &self.declared_params)
    }

    /// Checks a trigger's conf against this DAG's params ([`crate::params::check_conf`]).
    pub fn check_conf(
        &self,
        conf: &serde_json::Value,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Vec<crate::params::ConfError>> {
        crate::params::check_conf(&self.param_specs(), conf)
    }

    /// The `sql_file` paths, as written (relative to the DAG file's folder), with the id of
    /// the task naming each.
    pub fn sql_files(&self) -> Vec<(&str, &str)> {
        self.tasks
            .values()
            .filter_map(|t| match sql_source(&t.kind) {
                Some(SqlSource::SqlFile { path, .. }) => Some((t.id.as_str(), path.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The version of this definition: SHA-256 of its canonical JSON (every object's keys
    /// sorted, without `file` and `source_hash`), so only what the DAG means counts: not
    /// comments, whitespace, the order of keys or tables in the file, nor where the file
    /// lies. The JSON is canonicalised here rather than trusting a map type, so a
    /// `serde_json` built with `preserve_order` (as other crates may ask for) hashes the same.
    pub fn version_hash(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut value {
            map.remove("file");
            map.remove("source_hash");
        }
        let mut canonical = String::new();
        write_canonical(&value, &mut canonical);
        super::validate::sha256_hex(&canonical)
    }

    /// Reads every `sql_file` with `read` (given the path as written; the caller resolves
    /// it against the DAG file's folder and decides which files may be read) and stores
    /// its text in the model, so workers need no files. The text must parse as a template.
    /// `source` is the DAG file's text, to name the line of each failing `sql_file`. All
    /// problems are returned together.
    pub fn embed_sql_files<E: std::fmt::Display>(
        &mut self,
        source: &str,
        mut read: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<(), DagErrors> {
        let mut errors = Vec::new();
        for task in self.tasks.values_mut() {
            let Some(SqlSource::SqlFile { path, text }) = sql_source_mut(&mut task.kind) else {
                continue;
            };
            let at = || {
                let position = super::validate::paths::field_position(
                    source,
                    &["tasks", &task.id, "sql_file"],
                );
                Location {
                    file: self.file.clone(),
                    line: position.map(|(line, _)| line),
                    column: position.map(|(_, column)| column),
                    field: format!("tasks.{}.sql_file", task.id),
                }
            };
            match read(path) {
                Ok(contents) => match crate::template::check(&contents) {
                    Ok(()) => *text = Some(contents),
                    Err(e) => errors.push(DagError::BadTemplate {
                        at: at(),
                        message: format!("in {path}: {e}"),
                    }),
                },
                Err(e) => errors.push(DagError::InvalidValue {
                    at: at(),
                    message: format!("cannot read sql_file {path:?}: {e}"),
                }),
            }
        }
        if errors.is_empty() {
            // The SQL files' text is part of the definition, so of its version.
            self.source_hash = self.version_hash();
            Ok(())
        } else {
            Err(DagErrors {
                file: self.file.clone(),
                errors,
            })
        }
    }

    /// The direct upstreams of `task_id` (empty for an unknown task).
    pub fn upstreams(&self, task_id: &str) -> &[String] {
        self.tasks
            .get(task_id)
            .map_or(&[][..], |t| t.depends_on.as_slice())
    }

    /// The tasks that list `task_id` in their `depends_on`, sorted by id.
    pub fn downstreams(&self, task_id: &str) -> Vec<&str> {
        self.tasks
            .values()
            .filter(|t| t.depends_on.iter().any(|u| u == task_id))
            .map(|t| t.id.as_str())
            .collect()
    }

    /// Tasks without upstreams, sorted by id.
    pub fn roots(&self) -> Vec<&str> {
        self.tasks
            .values()
            .filter(|t| t.depends_on.is_empty())
            .map(|t| t.id.as_str())
            .collect()
    }

    /// Tasks without downstreams, sorted by id.
    pub fn leaves(&self) -> Vec<&str> {
        let upstreams: std::collections::HashSet<&str> = self
            .tasks
            .values()
            .flat_map(|t| t.depends_on.iter().map(String::as_str))
            .collect();
        self.tasks
            .keys()
            .map(String::as_str)
            .filter(|id| !upstreams.contains(id))
            .collect()
    }

    /// Every task once, each after all of its upstreams; ties broken by id. A validated
    /// DAG has no cycle, so every task is listed.
    pub fn topological_order(&self) -> Vec<&str> {
        let mut waiting: BTreeMap<&str, usize> = self
            .tasks
            .values()
            .map(|t| (t.id.as_str(), t.depends_on.len()))
            .collect();
        let mut ready: std::collections::BTreeSet<&str> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut downstreams: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in self.tasks.values() {
            for up in &t.depends_on {
                downstreams
                    .entry(up.as_str())
                    .or_default()
                    .push(t.id.as_str());
            }
        }
        let mut order = Vec::with_capacity(self.tasks.len());
        while let Some(id) = ready.pop_first() {
            order.push(id);
            for down in downstreams.get(id).into_iter().flatten() {
                if let Some(n) = waiting.get_mut(down) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(*down);
                    }
                }
            }
        }
        order
    }
}

fn sql_source(kind: &TaskKind) -> Option<&SqlSource> {
    match kind {
        TaskKind::Sql(t) => Some(&t.source),
        TaskKind::Sensor(SensorTask {
            check: SensorCheck::Sql(t),
            ..
        }) => Some(&t.source),
        TaskKind::Athena(t) => Some(&t.source),
        TaskKind::Redshift(t) => t.source.as_ref(),
        TaskKind::Bigquery(t) => Some(&t.source),
        _ => None,
    }
}

fn sql_source_mut(kind: &mut TaskKind) -> Option<&mut SqlSource> {
    match kind {
        TaskKind::Sql(t) => Some(&mut t.source),
        TaskKind::Sensor(SensorTask {
            check: SensorCheck::Sql(t),
            ..
        }) => Some(&mut t.source),
        TaskKind::Athena(t) => Some(&mut t.source),
        TaskKind::Redshift(t) => t.source.as_mut(),
        TaskKind::Bigquery(t) => Some(&mut t.source),
        _ => None,
    }
}

/// Serializes `Option<Schedule>` as its expression string.
mod schedule_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::schedule::Schedule;

    pub fn serialize<S: Serializer>(v: &Option<Schedule>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(schedule) => s.serialize_some(schedule.expression()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Schedule>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|e| Schedule::parse(&e).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Writes `value` as JSON with every object's keys in sorted order.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
