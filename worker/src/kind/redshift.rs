//! The `redshift` task kind through the Redshift Data API: ExecuteStatement (one
//! statement, named parameters bound by Redshift) or BatchExecuteStatement (`sqls`, one
//! transaction) on a provisioned cluster or a Serverless workgroup; the statement id
//! stored at once as the try's external id, DescribeStatement with backoff until it
//! ends, CancelStatement on timeout or cancel. A failure's `Error` is the try's error; the
//! first rows (GetStatementResult, at most `max_rows`) are the output.
//!
//! Every request carries a `ClientToken` derived from the try and the installation, so an
//! SDK retry after a lost answer starts no second statement, and a statement name derived
//! the same way unless the task names it. Re-attach: the instance's external id is a
//! statement no worker accounted for ([`ExternalJob::unaccounted`]) → DescribeStatement and
//! resume watching it (an ABORTED one is not resumed: a new one starts).

use std::time::Duration;

use aws_sdk_redshiftdata::error::DisplayErrorContext;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::types::{Field, SqlParameter, StatusString};
use nightshift_core::dag::{redshift_value, RedshiftTarget, RedshiftTask};
use serde_json::{json, Map, Value};

use crate::kind::aws::{sdk_config, Polling};
use crate::kind::external::{
    run_watched, stop_interrupted, try_key, ExternalJob, RecordError, StopError, StopOrder,
    Stopped, WatchedJob,
};
use crate::kind::{Interrupt, Outcome, TaskContext};

/// Consecutive DescribeStatement errors tolerated while polling.
const MAX_POLL_ERRORS: u32 = 5;
/// How long a cancelled statement is watched for its final state.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The ClientToken of one try (the same in every worker, distinct per installation).
pub fn client_token(ctx: &TaskContext, try_number: u32) -> String {
    format!("nightshift-redshift-{:016x}-try-{try_number}", try_key(ctx))
}

/// The statement name of one try when the task names none.
pub fn statement_name(ctx: &TaskContext, try_number: u32) -> String {
    format!("ns-{:016x}-{try_number}", try_key(ctx))
}

/// Runs one try of a `redshift` task to its end.
pub async fn run(spec: &RedshiftTask, ctx: &TaskContext) -> Outcome {
    run_watched(ctx, client(&ctx.external), |client| Statement {
        client,
        spec,
        ctx,
        poll: Polling::from(&ctx.external, "redshift"),
        id: None,
    })
    .await
}

async fn client(job: &ExternalJob) -> Result<aws_sdk_redshiftdata::Client, String> {
    Ok(aws_sdk_redshiftdata::Client::new(
        &sdk_config(job, "redshift").await?,
    ))
}

fn is_over(status: Option<&StatusString>) -> bool {
    matches!(
        status,
        Some(StatusString::Finished | StatusString::Failed | StatusString::Aborted)
    )
}

fn status_text(d: &DescribeStatementOutput) -> String {
    d.status()
        .map_or("UNKNOWN".to_owned(), |s| s.as_str().to_owned())
}

/// Stops the Redshift statement `id` of a try that was given up (see `kind::stop`).
pub async fn stop_given_up(id: &str, job: &ExternalJob) -> Result<Stopped, StopError> {
    let client = client(job).await.map_err(StopError)?;
    let found = client
        .describe_statement()
        .id(id)
        .send()
        .await
        .map_err(|e| {
            StopError(format!(
                "DescribeStatement of {id}: {}",
                DisplayErrorContext(&e)
            ))
        })?;
    if is_over(found.status()) {
        return Ok(Stopped::AlreadyOver(format!(
            "Redshift statement {id} had already ended ({})",
            status_text(&found)
        )));
    }
    client.cancel_statement().id(id).send().await.map_err(|e| {
        StopError(format!(
            "CancelStatement of {id}: {}",
            DisplayErrorContext(&e)
        ))
    })?;
    Ok(Stopped::Stopped(format!(
        "stopped Redshift statement {id} (CancelStatement)"
    )))
}

struct Statement<'a> {
    client: aws_sdk_redshiftdata::Client,
    spec: &'a RedshiftTask,
    ctx: &'a TaskContext,
    poll: Polling,
    id: Option<String>,
}

/// The request fields ExecuteStatement and BatchExecuteStatement share.
macro_rules! target {
    ($request:expr, $spec:expr) => {{
        let r = $request
            .database(&$spec.database)
            .set_secret_arn($spec.secret_arn.clone());
        match &$spec.target {
            RedshiftTarget::Cluster {
                cluster_identifier,
                db_user,
            } => r
                .cluster_identifier(cluster_identifier)
                .set_db_user(db_user.clone()),
            RedshiftTarget::Serverless { workgroup_name } => r.workgroup_name(workgroup_name),
        }
    }};
}

impl WatchedJob for Statement<'_> {
    async fn watch(&mut self) -> Outcome {
        let id = match self.attach().await {
            Ok(Some(id)) => id,
            Ok(None) => match self.submit().await {
                Ok(id) => id,
                Err(outcome) => return outcome,
            },
            Err(outcome) => return outcome,
        };
        let mut delay = self.poll.initial;
        let mut errors = 0;
        let mut last = String::new();
        loop {
            match self.describe(&id).await {
                Ok(d) => {
                    errors = 0;
                    let now = status_text(&d);
                    if now != last {
                        self.ctx.system(format!("Redshift statement {id}: {now}"));
                        last = now;
                    }
                    if is_over(d.status()) {
                        return self.finish(&id, &d).await;
                    }
                }
                Err(error) => {
                    errors += 1;
                    tracing::warn!(%error, errors, "DescribeStatement failed");
                    if errors >= MAX_POLL_ERRORS {
                        return Outcome::retryable(format!(
                            "cannot follow Redshift statement {id}: DescribeStatement failed {errors} times in a row: {error}"
                        ));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = self.poll.next(delay);
        }
    }

    async fn stop(&mut self, why: Interrupt) -> Outcome {
        let Some(id) = self.id.clone() else {
            self.ctx
                .system(format!("{why} before the Redshift statement was submitted"));
            return why.outcome();
        };
        let order = StopOrder {
            job: format!("Redshift statement {id}"),
            verb: "cancelling",
            call: "CancelStatement",
            poll: self.poll.initial,
            wait: STOP_WAIT,
        };
        let final_state = || async {
            let d = self.describe(&id).await.ok()?;
            is_over(d.status()).then(|| status_text(&d))
        };
        stop_interrupted(self.ctx, why, order, self.cancel(&id), final_state).await
    }
}

impl Statement<'_> {
    async fn describe(&self, id: &str) -> Result<DescribeStatementOutput, String> {
        self.client
            .describe_statement()
            .id(id)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())
    }

    async fn attach(&mut self) -> Result<Option<String>, Outcome> {
        let Some(id) = self.ctx.external.unaccounted.clone() else {
            return Ok(None);
        };
        let d = match self.describe(&id).await {
            Ok(d) => d,
            Err(error) => {
                self.ctx.system(format!(
                    "Redshift statement {id} (stored by an earlier try) cannot be found ({error}); submitting a new one"
                ));
                return Ok(None);
            }
        };
        if d.status() == Some(&StatusString::Aborted) {
            self.ctx.system(format!(
                "Redshift statement {id} (stored by an earlier try) was aborted; submitting a new one"
            ));
            return Ok(None);
        }
        self.ctx.system(format!(
            "re-attaching to Redshift statement {id} (stored by an earlier try, status {}) instead of submitting a second one",
            status_text(&d)
        ));
        self.id = Some(id.clone());
        match self.ctx.external.record(&id).await {
            Ok(()) => {}
            Err(RecordError::LeaseLost(why)) => {
                return Err(Outcome::retryable(format!(
                    "the try is no longer ours: {why}"
                )))
            }
            Err(error) => tracing::warn!(%error, "cannot record the re-attached statement id"),
        }
        Ok(Some(id))
    }

    /// ExecuteStatement or BatchExecuteStatement; stores the id before anything else.
    async fn submit(&mut self) -> Result<String, Outcome> {
        let spec = self.spec;
        let ctx = self.ctx;
        let token = client_token(ctx, ctx.try_number);
        let name = spec
            .statement_name
            .clone()
            .unwrap_or_else(|| statement_name(ctx, ctx.try_number));
        let sent = match &spec.source {
            Some(source) => {
                let Some(sql) = source.text() else {
                    return Err(Outcome::fatal(
                        "the redshift task's sql_file text was not loaded with the DAG",
                    ));
                };
                let mut parameters = Vec::new();
                for (key, value) in &spec.parameters {
                    let p = SqlParameter::builder()
                        .name(key)
                        .value(redshift_value(value))
                        .build()
                        .map_err(|e| Outcome::fatal(format!("parameter {key}: {e}")))?;
                    parameters.push(p);
                }
                let request = target!(self.client.execute_statement(), spec)
                    .sql(sql)
                    .statement_name(&name)
                    .client_token(&token)
                    .set_parameters((!parameters.is_empty()).then_some(parameters));
                request
                    .send()
                    .await
                    .map(|o| o.id().map(str::to_owned))
                    .map_err(|e| format!("ExecuteStatement failed: {}", DisplayErrorContext(&e)))
            }
            None => target!(self.client.batch_execute_statement(), spec)
                .set_sqls(Some(spec.sqls.clone()))
                .statement_name(&name)
                .client_token(&token)
                .send()
                .await
                .map(|o| o.id().map(str::to_owned))
                .map_err(|e| format!("BatchExecuteStatement failed: {}", DisplayErrorContext(&e))),
        };
        let Some(id) = sent.map_err(Outcome::retryable)? else {
            return Err(Outcome::retryable("the Data API answered no statement id"));
        };
        self.id = Some(id.clone());
        if let Err(error) = ctx.external.record(&id).await {
            let why = format!("cannot store the Redshift statement id {id}: {error}");
            self.cancel(&id).await;
            return Err(Outcome::retryable(format!(
                "{why}; the statement was cancelled so that no untracked statement runs"
            )));
        }
        ctx.system(format!(
            "started Redshift statement {id} ({}, statement name {name}, {} parameter(s))",
            if spec.sqls.is_empty() {
                "ExecuteStatement".to_owned()
            } else {
                format!("BatchExecuteStatement of {} statements", spec.sqls.len())
            },
            spec.parameters.len()
        ));
        Ok(id)
    }

    async fn finish(&self, id: &str, d: &DescribeStatementOutput) -> Outcome {
        match d.status() {
            Some(StatusString::Finished) => {
                self.ctx.system(format!(
                    "Redshift statement {id}: {} row(s), {} ms",
                    d.result_rows(),
                    d.duration() / 1_000_000
                ));
                // A batch's rows are its last sub-statement's.
                let result_id = d
                    .sub_statements()
                    .last()
                    .map(|s| (s.id().to_owned(), s.has_result_set().unwrap_or(false)))
                    .unwrap_or_else(|| (id.to_owned(), d.has_result_set().unwrap_or(false)));
                let mut output = Map::new();
                output.insert("statement_id".into(), json!(id));
                output.insert("result_rows".into(), json!(d.result_rows()));
                if result_id.1 && self.spec.max_rows > 0 {
                    match self.rows(&result_id.0).await {
                        Ok((columns, rows, truncated)) => {
                            output.insert("columns".into(), json!(columns));
                            output.insert("rows".into(), Value::Array(rows));
                            output.insert("truncated".into(), json!(truncated));
                        }
                        Err(error) => {
                            return Outcome::retryable(format!(
                                "Redshift statement {id} finished but its result cannot be read: {error}"
                            ))
                        }
                    }
                }
                Outcome::Success {
                    output: Some(Value::Object(output)),
                }
            }
            Some(StatusString::Failed) => {
                let text = format!(
                    "Redshift statement {id} failed: {}",
                    d.error().unwrap_or("no error given")
                );
                self.ctx.system(text.clone());
                Outcome::retryable(text)
            }
            _ => Outcome::retryable(format!(
                "Redshift statement {id} was aborted outside nightshift"
            )),
        }
    }

    async fn rows(&self, id: &str) -> Result<(Vec<String>, Vec<Value>, bool), String> {
        let max = self.spec.max_rows as usize;
        let out = self
            .client
            .get_statement_result()
            .id(id)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        let columns: Vec<String> = out
            .column_metadata()
            .iter()
            .enumerate()
            .map(|(i, c)| c.name().map_or_else(|| format!("_{i}"), str::to_owned))
            .collect();
        let records = out.records();
        let truncated = records.len() > max || out.next_token().is_some();
        let rows = records
            .iter()
            .take(max)
            .map(|record| {
                let mut object = Map::new();
                for (i, field) in record.iter().enumerate() {
                    let name = columns.get(i).cloned().unwrap_or_else(|| format!("_{i}"));
                    object.insert(name, field_value(field));
                }
                Value::Object(object)
            })
            .collect();
        Ok((columns, rows, truncated))
    }

    async fn cancel(&self, id: &str) {
        if let Err(e) = self.client.cancel_statement().id(id).send().await {
            self.ctx.system(format!(
                "CancelStatement of {id} failed: {}",
                DisplayErrorContext(&e)
            ));
        }
    }
}

/// A Data API field as JSON.
fn field_value(field: &Field) -> Value {
    match field {
        Field::StringValue(s) => json!(s),
        Field::LongValue(n) => json!(n),
        Field::DoubleValue(f) => json!(f),
        Field::BooleanValue(b) => json!(b),
        Field::IsNull(_) => Value::Null,
        Field::BlobValue(blob) => json!(format!("<{} bytes>", blob.as_ref().len())),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::tests::context;

    #[test]
    fn names_and_tokens_are_deterministic_per_try_and_installation() {
        let ctx = context(None);
        assert_eq!(client_token(&ctx, 1), client_token(&ctx, 1));
        assert_ne!(client_token(&ctx, 1), client_token(&ctx, 2));
        assert!(client_token(&ctx, u32::MAX).len() <= 64);
        assert!(statement_name(&ctx, u32::MAX).len() <= 500);
        let mut other = context(None);
        other.external = other.external.with_installation("elsewhere");
        assert_ne!(statement_name(&ctx, 1), statement_name(&other, 1));
    }

    #[test]
    fn fields_become_json() {
        assert_eq!(field_value(&Field::LongValue(3)), json!(3));
        assert_eq!(field_value(&Field::StringValue("x".into())), json!("x"));
        assert_eq!(field_value(&Field::IsNull(true)), Value::Null);
        assert_eq!(field_value(&Field::BooleanValue(true)), json!(true));
    }
}
