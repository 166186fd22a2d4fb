//! Lookups and presentation helpers shared by the API and the UI: load a DAG (record and
//! parsed definition), a run, a task instance, with 404s that name what is missing; time
//! zones; masking secrets in rendered fields.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nightshift_core::dag::Dag;
use nightshift_core::schedule::Schedule;
use nightshift_store::{DagRecord, DagRun, Store, TaskInstance};
use serde_json::Value;

use crate::error::ApiError;

pub async fn dag_record(store: &Store, dag_id: &str) -> Result<DagRecord, ApiError> {
    store
        .get_dag(dag_id)
        .await?
        .ok_or_else(|| ApiError::not_found("DAG", format!("{dag_id:?}")))
}

/// The stored definition as core's [`Dag`].
pub fn definition(record: &DagRecord) -> Result<Dag, ApiError> {
    serde_json::from_value(record.definition.clone()).map_err(|err| {
        ApiError::internal_while(
            format_args!("parsing the stored definition of DAG {:?}", record.dag_id),
            err,
        )
    })
}

pub async fn load_dag(store: &Store, dag_id: &str) -> Result<(DagRecord, Dag), ApiError> {
    let record = dag_record(store, dag_id).await?;
    let dag = definition(&record)?;
    Ok((record, dag))
}

pub async fn load_run(store: &Store, dag_id: &str, run_id: &str) -> Result<DagRun, ApiError> {
    store
        .get_run_by_run_id(dag_id, run_id)
        .await?
        .ok_or_else(|| ApiError::not_found("DAG run", format!("{dag_id}/{run_id}")))
}

pub async fn load_task_instance(
    store: &Store,
    run: &DagRun,
    task_id: &str,
    map_index: i32,
) -> Result<TaskInstance, ApiError> {
    store
        .find_task_instance(run.id, task_id, map_index)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "task instance",
                format!(
                    "{}/{}/{task_id} (map index {map_index})",
                    run.dag_id, run.run_id
                ),
            )
        })
}

/// The DAG's time zone (UTC if the stored name is unknown).
pub fn timezone(record: &DagRecord) -> Tz {
    record.timezone.parse().unwrap_or(Tz::UTC)
}

/// When the DAG's next scheduled run is due: what the scheduler recorded, else the next
/// schedule tick after `now`; `None` for manual-only or paused DAGs.
pub fn next_run(record: &DagRecord, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if record.is_paused || !record.is_active {
        return None;
    }
    let expression = record.schedule.as_deref()?;
    record.next_dagrun_create_after.or_else(|| {
        Schedule::parse(expression)
            .ok()
            .and_then(|schedule| schedule.next_after(now, timezone(record)))
    })
}

/// Key names whose values are never shown.
const SECRET_MARKERS: [&str; 7] = [
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
];

/// `value` with every object entry whose key looks secret replaced by `***`.
pub fn mask_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let lower = key.to_lowercase();
                    let masked = if SECRET_MARKERS.iter().any(|m| lower.contains(m)) {
                        Value::String("***".to_owned())
                    } else {
                        mask_secrets(value)
                    };
                    (key.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

/// Seconds between two instants, if both are known.
pub fn duration_secs(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let (start, end) = (start?, end?);
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Value, expected: Value) {
        assert_eq!(mask_secrets(&input), expected, "masking {input}");
    }

    #[test]
    fn secrets_are_masked_at_any_depth() {
        check(json!({"url": "x"}), json!({"url": "x"}));
        check(json!({"Password": "p"}), json!({"Password": "***"}));
        check(
            json!({"headers": {"Authorization": "Bearer t", "Accept": "a"}}),
            json!({"headers": {"Authorization": "***", "Accept": "a"}}),
        );
        check(
            json!([{"aws_secret_access_key": "k"}, 1]),
            json!([{"aws_secret_access_key": "***"}, 1]),
        );
        check(json!("token"), json!("token"));
    }

    #[test]
    fn durations() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        let t1 = DateTime::parse_from_rfc3339("2026-01-01T00:01:30.5Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(duration_secs(t0, t1), Some(90.5));
        assert_eq!(duration_secs(t0, None), None);
    }
}
