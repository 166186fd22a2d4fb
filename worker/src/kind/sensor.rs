//! The `sensor` kind: pokes a SQL query, an HTTP endpoint or S3 ([`s3`]) every
//! `poke_interval` until it is true or the try's timeout passes (`soft_fail`: then skipped instead of failed).
//!
//! Each claim pokes once. A poke that finds the condition not yet true ends the claim
//! with [`Outcome::Reschedule`]: the try gives its worker slot back
//! (`up_for_reschedule`) and the scheduler wakes it at the next poke time (Airflow's
//! reschedule mode), so waiting sensors never keep other tasks from running. The
//! timeout counts from the try's first poke; the wake after it has passed pokes a last
//! time. A poke that errors (the table does not exist yet, the endpoint refuses
//! connections) counts as "not yet"; its error is logged and named if the sensor times
//! out.

use nightshift_core::connection::Connection;
use nightshift_core::dag::{SensorCheck, SensorTask};
use serde_json::{json, Value};

use super::{http, sql, Interrupt, Outcome, TaskContext};

pub mod s3;

/// A rendered `sensor` task and the connection of its check (resolved by the worker).
#[derive(Debug, Clone, PartialEq)]
pub struct SensorSpec {
    pub task: SensorTask,
    pub connection: Option<Connection>,
}

impl SensorSpec {
    pub fn new(task: SensorTask) -> SensorSpec {
        SensorSpec {
            task,
            connection: None,
        }
    }
}

/// Whether a SQL value counts as true: non-null, non-zero, non-empty, and not a string
/// such as `"false"`, `"f"`, `"no"`, `"off"` or `"0"`.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            !matches!(s.as_str(), "" | "0" | "f" | "false" | "n" | "no" | "off")
        }
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Why a poke found the condition not yet true (logged, and named if the sensor times
/// out); an error counts as "not yet" too.
#[derive(Debug, thiserror::Error)]
enum NotYet {
    #[error("the query returned {0}")]
    Falsy(Value),
    #[error("the query returned no row")]
    NoRow,
    #[error(transparent)]
    Sql(#[from] sql::RunError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// The response's status or `json_check` did not match (the text says how).
    #[error("{0}")]
    Mismatch(String),
    /// The object(s) are not there yet, or S3 did not answer (the text says which).
    #[error("{0}")]
    S3(String),
}

/// One poke: `Ok` when the condition holds (with what it found, for the output: the
/// matched keys of an `s3` check), else why not yet. `env` is the worker's (AWS settings).
async fn poke(
    check: &SensorCheck,
    connection: Option<&Connection>,
    secrets: &[&str],
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Value>, NotYet> {
    match check {
        SensorCheck::Sql(task) => match sql::first_value(task, connection).await? {
            Some(v) if truthy(&v) => Ok(None),
            Some(v) => Err(NotYet::Falsy(v)),
            None => Err(NotYet::NoRow),
        },
        SensorCheck::Http(task) => {
            let response = http::send(task, connection, secrets).await?;
            match response.check(task) {
                None => Ok(None),
                Some(mismatch) => Err(NotYet::Mismatch(mismatch)),
            }
        }
        SensorCheck::S3(check) => match s3::poke(check, env).await {
            Ok(keys) => Ok(Some(json!(keys))),
            Err(why) => Err(NotYet::S3(why)),
        },
    }
}

/// Runs one claim of a sensor's try: one poke, then success, a reschedule to the next
/// poke, or the end of its timeout.
pub async fn run(spec: &SensorSpec, ctx: &TaskContext) -> Outcome {
    let interval = spec.task.poke_interval;
    let poke_no = u64::from(ctx.wakes) + 1;
    let all_secrets = ctx.log.secrets();
    let secrets = crate::connections::refs(&all_secrets);
    // Woken at (or after) the end of its timeout: one last poke, bounded only by a cancel.
    let last_chance = ctx.timeout.is_some_and(|left| left.is_zero());
    let checked = poke(
        &spec.task.check,
        spec.connection.as_ref(),
        &secrets,
        &ctx.external.env,
    );
    let result = if last_chance {
        tokio::select! {
            r = checked => r,
            () = ctx.cancel.cancelled() => return Interrupt::Cancelled.outcome(),
        }
    } else {
        tokio::select! {
            r = checked => r,
            why = ctx.interrupted() => return stopped(spec, ctx, why, poke_no, None),
        }
    };
    let reason = match result {
        Ok(found) => {
            ctx.system(format!("poke {poke_no}: condition met"));
            // An s3 sensor's output is the list of matched keys (for a `for_each`).
            if let Some(Value::Array(keys)) = &found {
                ctx.system(format!("{} matching object(s)", keys.len()));
            }
            return Outcome::Success {
                output: Some(found.unwrap_or_else(|| json!({ "pokes": poke_no }))),
            };
        }
        Err(reason) => reason.to_string(),
    };
    // The next poke, or the end of the timeout if that comes first (then the last poke).
    let wake_in = match ctx.timeout {
        Some(_) if last_chance => {
            ctx.system(format!("poke {poke_no}: not yet ({reason})"));
            let why = Interrupt::TimedOut(ctx.timeout.unwrap_or_default());
            return stopped(spec, ctx, why, poke_no, Some(reason));
        }
        Some(left) => interval.min(left),
        None => interval,
    };
    ctx.system(format!(
        "poke {poke_no}: not yet ({reason}); next poke in {}, without a worker slot",
        humantime::format_duration(wake_in)
    ));
    Outcome::Reschedule { wake_in, reason }
}

/// The outcome of a sensor stopped by a cancel or its timeout after `pokes` pokes.
fn stopped(
    spec: &SensorSpec,
    ctx: &TaskContext,
    why: Interrupt,
    pokes: u64,
    last: Option<String>,
) -> Outcome {
    let Interrupt::TimedOut(left) = why else {
        return why.outcome();
    };
    // The whole timeout, counted from the try's first poke.
    let timed_out = Interrupt::TimedOut(ctx.try_timeout.unwrap_or(left));
    if spec.task.soft_fail {
        let reason = format!("sensor {timed_out} after {pokes} pokes (soft_fail): skipped");
        ctx.system(reason.clone());
        return Outcome::Skipped {
            reason,
            exit_code: None,
        };
    }
    // As in Airflow, a sensor that timed out is not retried: the next try would wait
    // the same way.
    let mut message = format!("sensor {timed_out} after {pokes} pokes");
    if let Some(last) = last {
        message.push_str(&format!("; last poke: {last}"));
    }
    Outcome::fatal(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poke_says_why_not_yet() {
        let db = Connection::parse("warehouse", "sqlite::memory:", None).ok();
        let check = |sql: &str| {
            SensorCheck::Sql(nightshift_core::dag::SqlTask {
                connection: "warehouse".into(),
                source: nightshift_core::dag::SqlSource::Sql(sql.into()),
                parameters: Default::default(),
                transaction: false,
            })
        };
        let poked = poke(&check("SELECT 1"), db.as_ref(), &[], &Default::default()).await;
        assert!(poked.is_ok(), "{poked:?}");
        let err = poke(&check("SELECT 0"), db.as_ref(), &[], &Default::default())
            .await
            .expect_err("falsy");
        assert!(
            matches!(&err, NotYet::Falsy(v) if *v == json!(0)),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "the query returned 0");
        let err = poke(
            &check("SELECT 1 WHERE 0"),
            db.as_ref(),
            &[],
            &Default::default(),
        )
        .await
        .expect_err("no row");
        assert!(matches!(err, NotYet::NoRow), "{err:?}");
        let err = poke(
            &check("SELECT * FROM later"),
            db.as_ref(),
            &[],
            &Default::default(),
        )
        .await
        .expect_err("no table yet");
        assert!(
            matches!(
                &err,
                NotYet::Sql(sql::RunError::Statement { number: 1, .. })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn truthiness() {
        let check = |v: Value, expected: bool| assert_eq!(truthy(&v), expected, "{v}");
        check(json!(null), false);
        check(json!(true), true);
        check(json!(false), false);
        check(json!(0), false);
        check(json!(0.0), false);
        check(json!(3), true);
        check(json!("t"), true);
        check(json!("yes"), true);
        check(json!("False"), false);
        check(json!("0"), false);
        check(json!(""), false);
        check(json!([]), false);
        check(json!({"a": 1}), true);
    }
}
