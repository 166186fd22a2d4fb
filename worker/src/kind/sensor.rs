//! The `sensor` kind: pokes a SQL query or an HTTP endpoint every `poke_interval` until
//! it is true or the try's timeout passes (`soft_fail`: then skipped instead of failed).
//!
//! The wait is a tokio sleep: it holds no OS thread, but the try keeps its worker slot
//! for the whole wait (a "reschedule" mode that frees the slot between pokes, as in
//! Airflow, is not built yet). A poke that errors (the table does not exist yet, the
//! endpoint refuses connections) counts as "not yet"; its error is logged and named if
//! the sensor times out.

use std::pin::pin;

use nightshift_core::connection::Connection;
use nightshift_core::dag::{SensorCheck, SensorTask};
use serde_json::{json, Value};

use super::{http, sql, Interrupt, Outcome, TaskContext};

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

/// One poke: `Ok(())` when the condition holds, else why not yet.
async fn poke(
    check: &SensorCheck,
    connection: Option<&Connection>,
    secrets: &[&str],
) -> Result<(), String> {
    match check {
        SensorCheck::Sql(task) => match sql::first_value(task, connection)
            .await
            .map_err(|err| err.to_string())?
        {
            Some(v) if truthy(&v) => Ok(()),
            Some(v) => Err(format!("the query returned {v}")),
            None => Err("the query returned no row".into()),
        },
        SensorCheck::Http(task) => {
            let response = http::send(task, connection, secrets)
                .await
                .map_err(|err| err.to_string())?;
            match response.check(task) {
                None => Ok(()),
                Some(mismatch) => Err(mismatch),
            }
        }
    }
}

/// Runs one try of a sensor.
pub async fn run(spec: &SensorSpec, ctx: &TaskContext) -> Outcome {
    let mut interrupted = pin!(ctx.interrupted());
    let interval = spec.task.poke_interval;
    let mut last = String::new();
    let mut pokes = 0u64;
    let secrets = ctx.log.secrets();
    let why = loop {
        pokes += 1;
        let result = tokio::select! {
            r = poke(&spec.task.check, spec.connection.as_ref(), &secrets) => r,
            why = &mut interrupted => break why,
        };
        match result {
            Ok(()) => {
                ctx.system(format!("poke {pokes}: condition met"));
                return Outcome::Success {
                    output: Some(json!({ "pokes": pokes })),
                };
            }
            Err(reason) => {
                ctx.system(format!(
                    "poke {pokes}: not yet ({reason}); next poke in {}",
                    humantime::format_duration(interval)
                ));
                last = reason;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            why = &mut interrupted => break why,
        }
    };
    match why {
        Interrupt::TimedOut(_) if spec.task.soft_fail => {
            let reason = format!("sensor {why} after {pokes} pokes (soft_fail): skipped");
            ctx.system(reason.clone());
            Outcome::Skipped {
                reason,
                exit_code: None,
            }
        }
        // As in Airflow, a sensor that timed out is not retried: the next try would
        // wait the same way.
        Interrupt::TimedOut(_) => {
            let mut message = format!("sensor {why} after {pokes} pokes");
            if !last.is_empty() {
                message.push_str(&format!("; last poke: {last}"));
            }
            Outcome::fatal(message)
        }
        Interrupt::Cancelled => why.outcome(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
