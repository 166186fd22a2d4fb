//! The DAG file as written: serde structs that reject unknown keys and keep the source
//! position of every value whose later validation may fail.
//!
//! A task table is split in two before it is deserialized: the keys every task accepts
//! ([`COMMON_FIELDS`], into [`RawCommon`]) and the rest, which go to the struct of its
//! `type`. That keeps one struct per kind with `deny_unknown_fields`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::trigger::TriggerRule;

/// The top level of a DAG file, without `tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDag {
    pub id: Option<Spanned<String>>,
    pub description: Option<String>,
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub schedule: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub start_date: Option<Spanned<toml::Value>>,
    pub end_date: Option<Spanned<toml::Value>>,
    pub catchup: Option<bool>,
    pub max_active_runs: Option<Spanned<u32>>,
    pub max_active_tasks: Option<Spanned<u32>>,
    pub dagrun_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub params: toml::Table,
    pub defaults: Option<RawDefaults>,
    pub on_failure: Option<Spanned<RawCallback>>,
    pub on_success: Option<Spanned<RawCallback>>,
    pub deadline: Option<Spanned<RawDeadline>>,
    pub on_deadline_missed: Option<Spanned<RawCallback>>,
    pub on_approval_requested: Option<Spanned<RawCallback>>,
}

/// The top-level keys, for suggestions (`tasks` is handled on its own).
pub(super) const DAG_FIELDS: &[&str] = &[
    "id",
    "description",
    "owner",
    "tags",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "dagrun_timeout",
    "params",
    "defaults",
    "on_failure",
    "on_success",
    "deadline",
    "on_deadline_missed",
    "on_approval_requested",
    "tasks",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub retries: Option<u32>,
    pub retry_delay: Option<Spanned<String>>,
    pub retry_exponential_backoff: Option<bool>,
    pub max_retry_delay: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub pool: Option<Spanned<String>>,
    pub queue: Option<Spanned<String>>,
    pub priority: Option<i32>,
    pub on_failure: Option<Spanned<RawCallback>>,
    pub on_success: Option<Spanned<RawCallback>>,
    pub on_retry: Option<Spanned<RawCallback>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallback {
    pub slack_webhook: Option<String>,
    pub url: Option<String>,
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub json: Option<Spanned<toml::Value>>,
}

/// The keys every task accepts, whatever its `type` (`type` itself is read first, to pick
/// the kind's struct, and is not part of [`RawCommon`]).
pub(super) const COMMON_FIELDS: &[&str] = &[
    "type",
    "depends_on",
    "trigger_rule",
    "for_each",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
    "pool",
    "pool_slots",
    "queue",
    "priority",
    "on_failure",
    "on_success",
    "on_retry",
    "doc",
    "deadline",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommon {
    pub depends_on: Option<Spanned<Vec<Spanned<String>>>>,
    pub trigger_rule: Option<TriggerRule>,
    pub for_each: Option<Spanned<toml::Value>>,
    pub retries: Option<u32>,
    pub retry_delay: Option<Spanned<String>>,
    pub retry_exponential_backoff: Option<bool>,
    pub max_retry_delay: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub pool: Option<Spanned<String>>,
    pub pool_slots: Option<Spanned<u32>>,
    pub queue: Option<Spanned<String>>,
    pub priority: Option<i32>,
    pub on_failure: Option<Spanned<RawCallback>>,
    pub on_success: Option<Spanned<RawCallback>>,
    pub on_retry: Option<Spanned<RawCallback>>,
    pub doc: Option<String>,
    pub deadline: Option<Spanned<RawDeadline>>,
}

/// A deadline as written: `[deadline]` or a task's `deadline = { … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadline {
    pub at: Option<Spanned<toml::Value>>,
    pub within: Option<Spanned<String>>,
    pub fail: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    pub command: Spanned<crate::dag::model::CommandLine>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub skip_on_exit_code: Option<Vec<i32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSql {
    pub connection: Spanned<String>,
    pub sql: Option<Spanned<String>>,
    pub sql_file: Option<Spanned<String>>,
    #[serde(default)]
    pub parameters: toml::Table,
    pub transaction: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub connection: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    pub body: Option<Spanned<String>>,
    pub json: Option<Spanned<toml::Value>>,
    pub expect_status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pub json_check: Option<RawJsonCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJsonCheck {
    pub path: String,
    pub equals: Spanned<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEcs {
    pub connection: Option<Spanned<String>>,
    pub cluster: String,
    pub task_definition: String,
    pub revision: Option<u32>,
    pub launch_type: Option<Spanned<String>>,
    pub capacity_provider_strategy: Option<Spanned<Vec<RawCapacityProvider>>>,
    pub platform_version: Option<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    pub assign_public_ip: Option<bool>,
    pub container: Option<String>,
    pub command: Option<Spanned<Vec<String>>>,
    pub environment: Option<Spanned<BTreeMap<String, String>>>,
    pub cpu: Option<Spanned<u32>>,
    pub memory: Option<Spanned<u32>>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub started_by: Option<String>,
    pub propagate_tags: Option<Spanned<String>>,
    pub awslogs_group: Option<String>,
    pub awslogs_stream_prefix: Option<String>,
    #[serde(default)]
    pub skip_on_exit_code: Vec<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapacityProvider {
    pub capacity_provider: String,
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub base: u32,
}

/// The keys a sensor accepts besides the common ones and those of its `mode`.
/// A sensor's `mode = "s3"` fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    pub bucket: Spanned<String>,
    pub key: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub min_size: Option<Spanned<i64>>,
    pub min_objects: Option<Spanned<i64>>,
}

pub(super) const SENSOR_FIELDS: &[&str] = &["mode", "poke_interval", "soft_fail"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSensor {
    pub mode: Spanned<String>,
    pub poke_interval: Option<Spanned<String>>,
    pub soft_fail: Option<bool>,
}

/// Which fields of each kind are templates (rendered per try); every string inside them,
/// however deeply nested, is checked at load time.
pub(super) fn templated_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "command" => &["command", "env", "cwd"],
        "sql" => &["sql", "parameters"],
        "http" => &["url", "headers", "query", "body", "json"],
        "ecs" => &["command", "environment", "tags"],
        "approval" => &["message"],
        "require" => &["logical_date"],
        "athena" => &["sql", "parameters"],
        "redshift" => &["sql", "sqls", "parameters"],
        "bigquery" => &["sql", "parameters", "destination_table"],
        "s3" => &["bucket", "key", "prefix"],
        _ => &[],
    }
}

/// The templated fields of a callback.
pub(super) const CALLBACK_TEMPLATED: &[&str] = &["slack_webhook", "url", "headers", "json"];

/// Converts a TOML value to JSON; dates and times become their TOML text.
pub(crate) fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// [`toml_to_json`] for a table.
pub(super) fn table_to_json(t: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    t.iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_values_convert_to_json() {
        let t: toml::Table = toml::from_str(
            "a = 1\nb = 1.5\nc = true\nd = 2026-01-01\ne = [\"x\", { f = 2 }]\nnan = nan",
        )
        .expect("valid toml");
        let j = serde_json::Value::Object(table_to_json(&t));
        assert_eq!(
            j,
            serde_json::json!({"a": 1, "b": 1.5, "c": true, "d": "2026-01-01", "e": ["x", {"f": 2}], "nan": null})
        );
    }
}
