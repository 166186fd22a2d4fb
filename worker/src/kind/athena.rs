//! The `athena` task kind: StartQueryExecution with a `ClientRequestToken` derived from
//! the try and the installation, the query execution id stored at once as the try's
//! external id, GetQueryExecution with backoff until the query ends, StopQueryExecution
//! on timeout or cancel. A failure's `StateChangeReason` (and Athena's error) is the
//! try's error; the statistics (data scanned, engine time) go to the log; the first rows
//! (GetQueryResults, at most `max_rows`) are the output.
//!
//! Re-attach (a worker died while its query ran): the instance's external id is a query
//! no worker accounted for ([`ExternalJob::unaccounted`]) → GetQueryExecution and resume
//! watching it (a query that was CANCELLED is not resumed: a new one starts). When the
//! previous try stored no id ([`ExternalJob::unrecorded_previous_try`]) the query is
//! submitted with that try's token, which Athena answers with the query it already
//! started, if any. Parameters go as `ExecutionParameters` for the text's `?`
//! placeholders, never spliced into the text.

use std::time::Duration;

use aws_sdk_athena::error::DisplayErrorContext;
use aws_sdk_athena::types::{
    QueryExecution, QueryExecutionContext, QueryExecutionState, ResultConfiguration,
};
use nightshift_core::dag::{athena_literal, AthenaTask};
use serde_json::{json, Map, Value};

use crate::kind::aws::{sdk_config, Polling};
use crate::kind::external::{
    run_watched, stop_interrupted, try_key, ExternalJob, RecordError, StopError, StopOrder,
    Stopped, WatchedJob,
};
use crate::kind::{Interrupt, Outcome, TaskContext};

/// Consecutive GetQueryExecution errors tolerated while polling.
const MAX_POLL_ERRORS: u32 = 5;
/// How long a stopped query is watched for its final state.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// StartQueryExecution's idempotency token for one try: 32 to 128 characters, the same
/// in every worker, distinct per installation ([`try_key`]).
pub fn client_token(ctx: &TaskContext, try_number: u32) -> String {
    format!(
        "nightshift-athena-{:016x}-try-{try_number:010}",
        try_key(ctx)
    )
}

/// Runs one try of an `athena` task to its end.
pub async fn run(spec: &AthenaTask, ctx: &TaskContext) -> Outcome {
    run_watched(ctx, client(&ctx.external), |client| Query {
        client,
        spec,
        ctx,
        poll: Polling::from(&ctx.external, "athena"),
        id: None,
    })
    .await
}

async fn client(job: &ExternalJob) -> Result<aws_sdk_athena::Client, String> {
    Ok(aws_sdk_athena::Client::new(
        &sdk_config(job, "athena").await?,
    ))
}

/// Stops the Athena query `id` of a try that was given up (see `kind::stop`).
pub async fn stop_given_up(id: &str, job: &ExternalJob) -> Result<Stopped, StopError> {
    let client = client(job).await.map_err(StopError)?;
    let found = client
        .get_query_execution()
        .query_execution_id(id)
        .send()
        .await
        .map_err(|e| {
            StopError(format!(
                "GetQueryExecution of {id}: {}",
                DisplayErrorContext(&e)
            ))
        })?;
    let state = found.query_execution().and_then(state);
    if state.as_ref().is_some_and(is_over) {
        return Ok(Stopped::AlreadyOver(format!(
            "Athena query {id} had already ended ({})",
            state.map_or("UNKNOWN".into(), |s| s.as_str().to_owned())
        )));
    }
    client
        .stop_query_execution()
        .query_execution_id(id)
        .send()
        .await
        .map_err(|e| {
            StopError(format!(
                "StopQueryExecution of {id}: {}",
                DisplayErrorContext(&e)
            ))
        })?;
    Ok(Stopped::Stopped(format!(
        "stopped Athena query {id} (StopQueryExecution)"
    )))
}

fn state(q: &QueryExecution) -> Option<QueryExecutionState> {
    q.status().and_then(|s| s.state()).cloned()
}

fn is_over(state: &QueryExecutionState) -> bool {
    matches!(
        state,
        QueryExecutionState::Succeeded
            | QueryExecutionState::Failed
            | QueryExecutionState::Cancelled
    )
}

struct Query<'a> {
    client: aws_sdk_athena::Client,
    spec: &'a AthenaTask,
    ctx: &'a TaskContext,
    poll: Polling,
    /// The query being watched, once known.
    id: Option<String>,
}

impl WatchedJob for Query<'_> {
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
                Ok(q) => {
                    errors = 0;
                    let now = state(&q).map_or("UNKNOWN".to_owned(), |s| s.as_str().to_owned());
                    if now != last {
                        self.ctx.system(format!("Athena query {id}: {now}"));
                        last = now;
                    }
                    if state(&q).as_ref().is_some_and(is_over) {
                        return self.finish(&id, &q).await;
                    }
                }
                Err(error) => {
                    errors += 1;
                    tracing::warn!(%error, errors, "GetQueryExecution failed");
                    if errors >= MAX_POLL_ERRORS {
                        return Outcome::retryable(format!(
                            "cannot follow Athena query {id}: GetQueryExecution failed {errors} times in a row: {error}"
                        ));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = self.poll.next(delay);
        }
    }

    /// Timeout or cancel: StopQueryExecution, wait briefly for the final state.
    async fn stop(&mut self, why: Interrupt) -> Outcome {
        let Some(id) = self.id.clone() else {
            self.ctx
                .system(format!("{why} before the Athena query was submitted"));
            return why.outcome();
        };
        let order = StopOrder {
            job: format!("Athena query {id}"),
            verb: "stopping",
            call: "StopQueryExecution",
            poll: self.poll.initial,
            wait: STOP_WAIT,
        };
        let final_state = || async {
            let q = self.describe(&id).await.ok()?;
            state(&q).filter(is_over).map(|s| s.as_str().to_owned())
        };
        stop_interrupted(self.ctx, why, order, self.stop_query(&id), final_state).await
    }
}

impl Query<'_> {
    async fn describe(&self, id: &str) -> Result<QueryExecution, String> {
        let out = self
            .client
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        out.query_execution()
            .cloned()
            .ok_or_else(|| format!("GetQueryExecution of {id} answered no query"))
    }

    /// The query of an earlier try that nobody accounted for; `Ok(None)`: submit.
    async fn attach(&mut self) -> Result<Option<String>, Outcome> {
        let Some(id) = self.ctx.external.unaccounted.clone() else {
            return Ok(None);
        };
        let q = match self.describe(&id).await {
            Ok(q) => q,
            Err(error) => {
                self.ctx.system(format!(
                    "Athena query {id} (stored by an earlier try) cannot be found ({error}); submitting a new one"
                ));
                return Ok(None);
            }
        };
        if state(&q) == Some(QueryExecutionState::Cancelled) {
            self.ctx.system(format!(
                "Athena query {id} (stored by an earlier try) was cancelled; submitting a new one"
            ));
            return Ok(None);
        }
        self.ctx.system(format!(
            "re-attaching to Athena query {id} (stored by an earlier try, state {}) instead of submitting a second one",
            state(&q).map_or("UNKNOWN".into(), |s| s.as_str().to_owned())
        ));
        self.id = Some(id.clone());
        match self.ctx.external.record(&id).await {
            Ok(()) => {}
            Err(RecordError::LeaseLost(why)) => {
                return Err(Outcome::retryable(format!(
                    "the try is no longer ours: {why}"
                )))
            }
            Err(error) => tracing::warn!(%error, "cannot record the re-attached query id"),
        }
        Ok(Some(id))
    }

    /// StartQueryExecution; stores the id before anything else.
    async fn submit(&mut self) -> Result<String, Outcome> {
        let spec = self.spec;
        let ctx = self.ctx;
        let Some(sql) = spec.source.text() else {
            return Err(Outcome::fatal(
                "the athena task's sql_file text was not loaded with the DAG",
            ));
        };
        // A previous try that died before storing its id may have started the query:
        // its token makes Athena answer with that query instead of a second one.
        let token_try = ctx
            .external
            .unrecorded_previous_try
            .unwrap_or(ctx.try_number);
        let mut request = self
            .client
            .start_query_execution()
            .query_string(sql)
            .client_request_token(client_token(ctx, token_try))
            .set_work_group(spec.workgroup.clone());
        if spec.database.is_some() || spec.catalog.is_some() {
            request = request.query_execution_context(
                QueryExecutionContext::builder()
                    .set_database(spec.database.clone())
                    .set_catalog(spec.catalog.clone())
                    .build(),
            );
        }
        if let Some(out) = &spec.output_location {
            request = request
                .result_configuration(ResultConfiguration::builder().output_location(out).build());
        }
        if !spec.parameters.is_empty() {
            request = request.set_execution_parameters(Some(
                spec.parameters.iter().map(athena_literal).collect(),
            ));
        }
        let out = request.send().await.map_err(|e| {
            Outcome::retryable(format!(
                "StartQueryExecution failed: {}",
                DisplayErrorContext(&e)
            ))
        })?;
        let Some(id) = out.query_execution_id().map(str::to_owned) else {
            return Err(Outcome::retryable(
                "StartQueryExecution answered no query execution id",
            ));
        };
        self.id = Some(id.clone());
        if let Err(error) = ctx.external.record(&id).await {
            let why = format!("cannot store the Athena query id {id}: {error}");
            self.stop_query(&id).await;
            return Err(Outcome::retryable(format!(
                "{why}; the query was stopped so that no untracked query runs"
            )));
        }
        ctx.system(format!(
            "started Athena query {id} (workgroup {}, {} parameter(s), token try {token_try})",
            spec.workgroup.as_deref().unwrap_or("primary"),
            spec.parameters.len()
        ));
        Ok(id)
    }

    /// The outcome of a query that ended.
    async fn finish(&self, id: &str, q: &QueryExecution) -> Outcome {
        if let Some(stats) = q.statistics() {
            self.ctx.system(format!(
                "Athena query {id}: data scanned {} bytes, engine time {} ms, total time {} ms",
                stats.data_scanned_in_bytes().unwrap_or(0),
                stats.engine_execution_time_in_millis().unwrap_or(0),
                stats.total_execution_time_in_millis().unwrap_or(0)
            ));
        }
        let status = q.status();
        match state(q) {
            Some(QueryExecutionState::Succeeded) => match self.rows(id).await {
                Ok((columns, rows, truncated)) => {
                    let mut output = Map::new();
                    output.insert("query_execution_id".into(), json!(id));
                    output.insert("columns".into(), json!(columns));
                    output.insert("rows".into(), Value::Array(rows));
                    output.insert("truncated".into(), json!(truncated));
                    if let Some(stats) = q.statistics() {
                        output.insert(
                            "data_scanned_bytes".into(),
                            json!(stats.data_scanned_in_bytes().unwrap_or(0)),
                        );
                    }
                    Outcome::Success {
                        output: Some(Value::Object(output)),
                    }
                }
                Err(error) => Outcome::retryable(format!(
                    "Athena query {id} succeeded but its results cannot be read: {error}"
                )),
            },
            Some(QueryExecutionState::Failed) => {
                let reason = status
                    .and_then(|s| s.state_change_reason())
                    .unwrap_or("no reason given");
                let error = status.and_then(|s| s.athena_error());
                let retryable = error.is_none_or(|e| e.retryable());
                let mut text = format!("Athena query {id} failed: {reason}");
                if let Some(e) = error {
                    if let Some(message) = e.error_message().filter(|m| *m != reason) {
                        text.push_str(&format!(" ({message})"));
                    }
                    text.push_str(&format!(
                        " [error category {}, type {}{}]",
                        e.error_category().unwrap_or(0),
                        e.error_type().unwrap_or(0),
                        if retryable { ", retryable" } else { "" }
                    ));
                }
                self.ctx.system(text.clone());
                Outcome::Failed {
                    error: text,
                    retryable,
                    exit_code: None,
                }
            }
            _ => Outcome::retryable(format!(
                "Athena query {id} was cancelled outside nightshift{}",
                status
                    .and_then(|s| s.state_change_reason())
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        }
    }

    /// The first `max_rows` rows as objects by column name, the column names, and
    /// whether more rows exist. Athena's first row of a SELECT repeats the column names.
    async fn rows(&self, id: &str) -> Result<(Vec<String>, Vec<Value>, bool), String> {
        let max = self.spec.max_rows as usize;
        if max == 0 {
            return Ok((Vec::new(), Vec::new(), false));
        }
        let out = self
            .client
            .get_query_results()
            .query_execution_id(id)
            // One more: the header row.
            .max_results(i32::try_from(max + 1).unwrap_or(1000).min(1000))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        let Some(set) = out.result_set() else {
            return Ok((Vec::new(), Vec::new(), false));
        };
        let columns: Vec<String> = set
            .result_set_metadata()
            .map(|m| {
                m.column_info()
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut rows: Vec<Vec<Option<String>>> = set
            .rows()
            .iter()
            .map(|r| {
                r.data()
                    .iter()
                    .map(|d| d.var_char_value().map(str::to_owned))
                    .collect()
            })
            .collect();
        let header: Vec<Option<String>> = columns.iter().cloned().map(Some).collect();
        if !columns.is_empty() && rows.first() == Some(&header) {
            rows.remove(0);
        }
        let truncated = rows.len() > max || out.next_token().is_some();
        rows.truncate(max);
        let rows = rows
            .into_iter()
            .map(|row| {
                let mut object = Map::new();
                for (i, value) in row.into_iter().enumerate() {
                    let name = columns.get(i).cloned().unwrap_or_else(|| format!("_{i}"));
                    object.insert(name, value.map_or(Value::Null, Value::String));
                }
                Value::Object(object)
            })
            .collect();
        Ok((columns, rows, truncated))
    }

    async fn stop_query(&self, id: &str) {
        let sent = self
            .client
            .stop_query_execution()
            .query_execution_id(id)
            .send()
            .await;
        if let Err(e) = sent {
            self.ctx.system(format!(
                "StopQueryExecution of {id} failed: {}",
                DisplayErrorContext(&e)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::tests::context;

    #[test]
    fn client_tokens_are_deterministic_within_athenas_bounds() {
        let ctx = context(None);
        let a = client_token(&ctx, 1);
        assert_eq!(a, client_token(&ctx, 1));
        assert_ne!(a, client_token(&ctx, 2));
        assert!((32..=128).contains(&a.len()), "{a}");
        assert!(client_token(&ctx, u32::MAX).len() <= 128);
        let mut other = context(None);
        other.external = other.external.with_installation("another-installation");
        assert_ne!(
            a,
            client_token(&other, 1),
            "another installation never shares a token"
        );
    }
}
