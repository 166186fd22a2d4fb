//! The `bigquery` task kind: a query job through BigQuery's REST API (jobs.insert,
//! jobs.get, jobs.getQueryResults, jobs.cancel) in the project of a `bigquery://`
//! connection. The job id is derived from the try and the installation ([`job_id`]) and
//! stored as the try's external id *before* jobs.insert, so a worker that dies at any
//! point leaves an id the next try re-attaches to (jobs.get) instead of submitting a
//! second job; a repeated jobs.insert of that id (a lost answer) is answered 409
//! duplicate by BigQuery and the job is watched all the same. jobs.get is polled with
//! backoff until the job is DONE; a timeout or cancel calls jobs.cancel. The error result
//! and every error's message go to the log (the error result is the try's error); bytes
//! processed and billed go to the log; the first rows (at most `max_rows`) are the output.
//!
//! Auth ([`Project::auth`]): a plain-`http://` `endpoint` (an emulator) gets no token;
//! otherwise tokens come from `gcp_auth`: the connection's `credentials_file`, else the
//! worker's `GOOGLE_APPLICATION_CREDENTIALS`, else Application Default Credentials (the
//! gcloud file, the metadata server).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gcp_auth::TokenProvider;
use nightshift_core::connection::Connection;
use nightshift_core::dag::BigqueryTask;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::kind::aws::Polling;
use crate::kind::external::{try_key, ExternalJob, RecordError, StopError, Stopped};
use crate::kind::{Interrupt, Outcome, TaskContext};

/// BigQuery's API root unless the connection names an `endpoint`.
pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";
/// The OAuth scope the tokens are asked for.
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Consecutive jobs.get errors tolerated while polling.
const MAX_POLL_ERRORS: u32 = 5;
/// jobs.insert attempts when the answer is lost (a repeat is answered 409 duplicate).
const INSERT_ATTEMPTS: u32 = 3;
/// How long a cancelled job is watched for DONE.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Error reasons after which another try may succeed (BigQuery's troubleshooting table).
const RETRYABLE_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "jobBackendError",
    "jobInternalError",
    "rateLimitExceeded",
    "stopped",
    "tableUnavailable",
];

/// A rendered `bigquery` task and its connection (resolved by the worker before the try
/// runs).
#[derive(Debug, Clone, PartialEq)]
pub struct BigquerySpec {
    pub task: BigqueryTask,
    pub connection: Option<Connection>,
}

impl BigquerySpec {
    /// A spec whose connection is not resolved yet.
    pub fn new(task: BigqueryTask) -> BigquerySpec {
        BigquerySpec {
            task,
            connection: None,
        }
    }
}

/// The job id of one try: BigQuery's rules (letters, digits, `_`, `-`, at most 1024
/// characters), the same in every worker, distinct per installation ([`try_key`]).
pub fn job_id(ctx: &TaskContext, try_number: u32) -> String {
    format!("nightshift-bq-{:016x}-try-{try_number}", try_key(ctx))
}

/// The external id stored for a job: `CONNECTION:LOCATION.JOB_ID` (`CONNECTION:JOB_ID`
/// without a location), the form `bq` uses with the project, naming the connection so
/// that a worker stopping a given-up try's job finds the project and credentials.
pub fn external_id(connection: &str, location: Option<&str>, job_id: &str) -> String {
    match location {
        Some(location) => format!("{connection}:{location}.{job_id}"),
        None => format!("{connection}:{job_id}"),
    }
}

/// The parts of an [`external_id`]: connection, location, job id.
pub fn parse_external_id(id: &str) -> Option<(&str, Option<&str>, &str)> {
    let (connection, rest) = id.split_once(':')?;
    let (location, job) = match rest.split_once('.') {
        Some((location, job)) => (Some(location), job),
        None => (None, rest),
    };
    (!connection.is_empty() && !job.is_empty()).then_some((connection, location, job))
}

/// How a connection's requests are authorised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No token: a plain-http endpoint (an emulator).
    None,
    /// A service-account key file.
    KeyFile(PathBuf),
    /// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud
    /// file, the metadata server).
    Default,
}

/// A BigQuery project as a connection describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub connection: String,
    pub project: String,
    /// The default job location (`location=`).
    pub location: Option<String>,
    /// The API root (`endpoint=`), without a trailing slash.
    pub endpoint: String,
    credentials_file: Option<PathBuf>,
}

impl Project {
    /// Reads `bigquery://PROJECT?location=…&credentials_file=…&endpoint=…` (each option
    /// may also be a key of the connection's `extra`).
    pub fn from_connection(c: &Connection) -> Result<Project, String> {
        let project = c
            .host
            .clone()
            .ok_or_else(|| format!("connection {:?} names no project", c.name))?;
        let url =
            url::Url::parse(c.uri.expose()).map_err(|e| format!("connection {:?}: {e}", c.name))?;
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let option = |key: &str| {
            query
                .get(key)
                .cloned()
                .or_else(|| c.extra.get(key).and_then(Value::as_str).map(str::to_owned))
                .filter(|v| !v.is_empty())
        };
        let endpoint = option("endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(format!(
                "connection {:?}: endpoint must be an http(s) URL",
                c.name
            ));
        }
        Ok(Project {
            connection: c.name.clone(),
            project,
            location: option("location"),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            credentials_file: option("credentials_file").map(PathBuf::from),
        })
    }

    /// How requests are authorised; `env` is the worker's environment.
    pub fn auth(&self, job: &ExternalJob) -> Auth {
        if self.endpoint.starts_with("http://") {
            // Never a token in clear text: an http endpoint is an emulator.
            return Auth::None;
        }
        match &self.credentials_file {
            Some(file) => Auth::KeyFile(file.clone()),
            None => match job.var("GOOGLE_APPLICATION_CREDENTIALS") {
                Some(file) => Auth::KeyFile(PathBuf::from(file)),
                None => Auth::Default,
            },
        }
    }
}

/// Token providers, made once per process (each caches its tokens until they expire).
fn providers() -> &'static Mutex<HashMap<Auth, Arc<dyn TokenProvider>>> {
    static PROVIDERS: std::sync::OnceLock<Mutex<HashMap<Auth, Arc<dyn TokenProvider>>>> =
        std::sync::OnceLock::new();
    PROVIDERS.get_or_init(|| Mutex::new(HashMap::new()))
}

async fn provider(auth: &Auth) -> Result<Option<Arc<dyn TokenProvider>>, String> {
    if *auth == Auth::None {
        return Ok(None);
    }
    if let Some(p) = providers()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(auth)
    {
        return Ok(Some(p.clone()));
    }
    let made: Arc<dyn TokenProvider> = match auth {
        Auth::KeyFile(file) => Arc::new(
            gcp_auth::CustomServiceAccount::from_file(file)
                .map_err(|e| format!("cannot read the service-account key file: {e}"))?,
        ),
        _ => gcp_auth::provider()
            .await
            .map_err(|e| format!("no Google credentials (Application Default Credentials): {e}"))?,
    };
    providers()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(auth.clone(), made.clone());
    Ok(Some(made))
}

/// A failed API call: the HTTP status (none for a transport error) and what was said.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: Option<StatusCode>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {}: {}", s.as_u16(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What jobs.insert answered.
enum Inserted {
    Job(Value),
    /// 409: a job with that id exists already (ours: the id is derived from the try).
    Duplicate,
}

/// BigQuery's REST API for one project.
pub struct Api {
    http: reqwest::Client,
    pub project: Project,
    tokens: Option<Arc<dyn TokenProvider>>,
}

impl Api {
    /// A client for `project`, with its token provider.
    pub async fn new(project: Project, job: &ExternalJob) -> Result<Api, String> {
        let tokens = provider(&project.auth(job)).await?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Api {
            http,
            project,
            tokens,
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/bigquery/v2/projects/{}/{path}",
            self.project.endpoint, self.project.project
        )
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut request = self.http.request(method, self.url(path)).query(query);
        if let Some(tokens) = &self.tokens {
            let token = tokens.token(&[SCOPE]).await.map_err(|e| ApiError {
                status: None,
                message: format!("cannot get a Google access token: {e}"),
            })?;
            request = request.bearer_auth(token.as_str());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ApiError {
            status: None,
            message: e.without_url().to_string(),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| ApiError {
            status: Some(status),
            message: e.without_url().to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(300).collect());
        Err(ApiError {
            status: Some(status),
            message,
        })
    }

    fn located(location: Option<&str>) -> Vec<(&'static str, String)> {
        location
            .map(|l| vec![("location", l.to_owned())])
            .unwrap_or_default()
    }

    async fn insert(&self, body: &Value) -> Result<Inserted, ApiError> {
        match self.call(Method::POST, "jobs", &[], Some(body)).await {
            Ok(job) => Ok(Inserted::Job(job)),
            Err(e) if e.status == Some(StatusCode::CONFLICT) => Ok(Inserted::Duplicate),
            Err(e) => Err(e),
        }
    }

    /// jobs.get; `Ok(None)` when BigQuery knows no such job.
    pub async fn get(
        &self,
        job_id: &str,
        location: Option<&str>,
    ) -> Result<Option<Value>, ApiError> {
        match self
            .call(
                Method::GET,
                &format!("jobs/{job_id}"),
                &Self::located(location),
                None,
            )
            .await
        {
            Ok(job) => Ok(Some(job)),
            Err(e) if e.status == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn cancel(&self, job_id: &str, location: Option<&str>) -> Result<Value, ApiError> {
        self.call(
            Method::POST,
            &format!("jobs/{job_id}/cancel"),
            &Self::located(location),
            None,
        )
        .await
    }

    async fn results(
        &self,
        job_id: &str,
        location: Option<&str>,
        max_rows: u32,
    ) -> Result<Value, ApiError> {
        let mut query = Self::located(location);
        query.push(("maxResults", max_rows.to_string()));
        query.push(("timeoutMs", "10000".to_owned()));
        self.call(Method::GET, &format!("queries/{job_id}"), &query, None)
            .await
    }

    /// A dry run of `SELECT 1` (for `nightshift connections test`): the project answers
    /// and the credentials may create jobs.
    pub async fn ping(&self) -> Result<(), ApiError> {
        let body = json!({
            "configuration": {"query": {"query": "SELECT 1", "useLegacySql": false}, "dryRun": true},
        });
        self.call(Method::POST, "jobs", &[], Some(&body))
            .await
            .map(|_| ())
    }
}

/// `nightshift connections test` of a `bigquery://` connection: a dry run of `SELECT 1`.
pub async fn ping(
    connection: &Connection,
    env: std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let project = Project::from_connection(connection)?;
    let job = ExternalJob::detached(env);
    let api = Api::new(project, &job).await?;
    api.ping().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "a dry run of SELECT 1 in project {} was accepted",
        api.project.project
    ))
}

/// Runs one try of a `bigquery` task to its end.
pub async fn run(spec: &BigquerySpec, ctx: &TaskContext) -> Outcome {
    let Some(connection) = &spec.connection else {
        return Outcome::fatal("the bigquery task's connection was not resolved");
    };
    let project = match Project::from_connection(connection) {
        Ok(p) => p,
        Err(e) => return Outcome::fatal(e),
    };
    let location = spec
        .task
        .location
        .clone()
        .or_else(|| project.location.clone());
    let interrupted = ctx.interrupted();
    tokio::pin!(interrupted);
    let api = tokio::select! {
        biased;
        why = &mut interrupted => return why.outcome(),
        api = Api::new(project, &ctx.external) => api,
    };
    let api = match api {
        Ok(api) => api,
        Err(error) => return Outcome::retryable(error),
    };
    let mut job = Job {
        api,
        spec: &spec.task,
        ctx,
        poll: Polling::from(&ctx.external, "bigquery"),
        location,
        id: None,
    };
    let result = tokio::select! {
        biased;
        why = &mut interrupted => Err(why),
        outcome = job.watch() => Ok(outcome),
    };
    match result {
        Ok(outcome) => outcome,
        Err(why) => job.stop(why).await,
    }
}

/// Stops the BigQuery job of a try that was given up (see `kind::stop`); `id` is an
/// [`external_id`], whose connection is looked up among the worker's.
pub async fn stop_given_up(id: &str, job: &ExternalJob) -> Result<Stopped, StopError> {
    let (name, location, job_id) = parse_external_id(id)
        .ok_or_else(|| StopError(format!("{id:?} is not a BigQuery job id of nightshift's")))?;
    let connection = job
        .connection(name)
        .await
        .map_err(StopError)?
        .ok_or_else(|| {
            StopError(format!(
                "connection {name:?} (of BigQuery job {job_id}) is not defined on this worker"
            ))
        })?;
    let project = Project::from_connection(&connection).map_err(StopError)?;
    let api = Api::new(project, job).await.map_err(StopError)?;
    let found = api
        .get(job_id, location)
        .await
        .map_err(|e| StopError(format!("jobs.get of {job_id}: {e}")))?;
    match found {
        None => {
            return Ok(Stopped::AlreadyOver(format!(
                "BigQuery job {job_id} was never submitted"
            )))
        }
        Some(j) if state(&j) == "DONE" => {
            return Ok(Stopped::AlreadyOver(format!(
                "BigQuery job {job_id} had already ended (DONE)"
            )))
        }
        Some(_) => {}
    }
    api.cancel(job_id, location)
        .await
        .map_err(|e| StopError(format!("jobs.cancel of {job_id}: {e}")))?;
    Ok(Stopped::Stopped(format!(
        "stopped BigQuery job {job_id} (jobs.cancel)"
    )))
}

fn state(job: &Value) -> &str {
    job.pointer("/status/state")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN")
}

/// An int64 of BigQuery's JSON (sent as a string).
fn int64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

struct Job<'a> {
    api: Api,
    spec: &'a BigqueryTask,
    ctx: &'a TaskContext,
    poll: Polling,
    location: Option<String>,
    /// The job being watched (or about to be submitted), once its id is stored.
    id: Option<String>,
}

impl Job<'_> {
    fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    fn request(&self, job_id: &str) -> Result<Value, Outcome> {
        if self.spec.source.text().is_none() {
            return Err(Outcome::fatal(
                "the bigquery task's sql_file text was not loaded with the DAG",
            ));
        }
        let configuration = self
            .spec
            .configuration(Some(&self.api.project.project))
            .map_err(Outcome::fatal)?;
        let mut reference = Map::new();
        reference.insert("projectId".into(), json!(self.api.project.project));
        reference.insert("jobId".into(), json!(job_id));
        if let Some(location) = self.location() {
            reference.insert("location".into(), json!(location));
        }
        Ok(json!({ "jobReference": reference, "configuration": configuration }))
    }

    async fn watch(&mut self) -> Outcome {
        if self.spec.dry_run {
            return self.dry_run().await;
        }
        let id = match self.attach().await {
            Ok(Some(id)) => id,
            Ok(None) => {
                let id = job_id(self.ctx, self.ctx.try_number);
                match self.submit(&id).await {
                    Ok(()) => id,
                    Err(outcome) => return outcome,
                }
            }
            Err(outcome) => return outcome,
        };
        let mut delay = self.poll.initial;
        let mut errors = 0;
        let mut last = String::new();
        loop {
            match self.api.get(&id, self.location()).await {
                Ok(Some(job)) => {
                    errors = 0;
                    let now = state(&job).to_owned();
                    if now != last {
                        self.ctx.system(format!("BigQuery job {id}: {now}"));
                        last = now;
                    }
                    if state(&job) == "DONE" {
                        return self.finish(&id, &job).await;
                    }
                }
                Ok(None) => {
                    return Outcome::retryable(format!(
                        "BigQuery job {id} is no longer known to BigQuery"
                    ))
                }
                Err(error) => {
                    errors += 1;
                    tracing::warn!(%error, errors, "BigQuery jobs.get failed");
                    if errors >= MAX_POLL_ERRORS {
                        return Outcome::retryable(format!(
                            "cannot follow BigQuery job {id}: jobs.get failed {errors} times in a row: {error}"
                        ));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = self.poll.next(delay);
        }
    }

    /// The job of an earlier try that nobody accounted for; `Ok(None)`: submit a new one.
    async fn attach(&mut self) -> Result<Option<String>, Outcome> {
        let Some(stored) = self.ctx.external.unaccounted.clone() else {
            return Ok(None);
        };
        let Some((_, location, id)) = parse_external_id(&stored) else {
            self.ctx.system(format!(
                "the stored external id {stored:?} is no BigQuery job of nightshift's; submitting a new one"
            ));
            return Ok(None);
        };
        let id = id.to_owned();
        if let Some(location) = location {
            self.location = Some(location.to_owned());
        }
        let job = self.api.get(&id, self.location()).await.map_err(|e| {
            Outcome::retryable(format!(
                "cannot look up BigQuery job {id} (stored by an earlier try): {e}"
            ))
        })?;
        let Some(job) = job else {
            // The earlier try stored the id and died before jobs.insert: submit it now,
            // under that id, so that its worker (if it still lives) cannot add a second.
            self.ctx.system(format!(
                "BigQuery job {id} (stored by an earlier try) was never submitted; submitting it now"
            ));
            self.submit(&id).await?;
            return Ok(Some(id));
        };
        let stopped = job
            .pointer("/status/errorResult/reason")
            .and_then(Value::as_str)
            == Some("stopped");
        if stopped {
            self.ctx.system(format!(
                "BigQuery job {id} (stored by an earlier try) was cancelled; submitting a new one"
            ));
            return Ok(None);
        }
        self.ctx.system(format!(
            "re-attaching to BigQuery job {id} (stored by an earlier try, state {}) instead of submitting a second one",
            state(&job)
        ));
        self.record(&id).await?;
        self.id = Some(id.clone());
        Ok(Some(id))
    }

    async fn record(&self, id: &str) -> Result<(), Outcome> {
        let stored = external_id(&self.api.project.connection, self.location(), id);
        match self.ctx.external.record(&stored).await {
            Ok(()) => Ok(()),
            Err(RecordError::LeaseLost(why)) => Err(Outcome::retryable(format!(
                "the try is no longer ours: {why}"
            ))),
            Err(error) => Err(Outcome::retryable(format!(
                "cannot store the BigQuery job id {id} before submitting it: {error}"
            ))),
        }
    }

    /// Stores the id, then jobs.insert (again after a lost answer: a repeat is 409).
    async fn submit(&mut self, id: &str) -> Result<(), Outcome> {
        let body = self.request(id)?;
        self.record(id).await?;
        self.id = Some(id.to_owned());
        let mut attempt = 1;
        loop {
            match self.api.insert(&body).await {
                Ok(Inserted::Job(_)) => break,
                Ok(Inserted::Duplicate) => {
                    self.ctx.system(format!(
                        "BigQuery job {id} exists already (a repeated jobs.insert): watching it"
                    ));
                    break;
                }
                Err(e)
                    if attempt < INSERT_ATTEMPTS
                        && e.status.is_none_or(|s| s.is_server_error()) =>
                {
                    tracing::warn!(error = %e, attempt, "BigQuery jobs.insert failed; trying again");
                    tokio::time::sleep(self.poll.initial).await;
                    attempt += 1;
                }
                Err(e) => {
                    let retryable = e
                        .status
                        .is_none_or(|s| s.is_server_error() || s.as_u16() == 429);
                    let text = format!("BigQuery jobs.insert of {id} failed: {e}");
                    self.ctx.system(text.clone());
                    return Err(Outcome::Failed {
                        error: text,
                        retryable,
                        exit_code: None,
                    });
                }
            }
        }
        self.ctx.system(format!(
            "started BigQuery job {id} (project {}, location {}, {} parameter(s))",
            self.api.project.project,
            self.location().unwrap_or("default"),
            self.spec.parameters.len()
        ));
        Ok(())
    }

    /// `dry_run`: jobs.insert with `dryRun`, nothing runs (and no job id is kept).
    async fn dry_run(&mut self) -> Outcome {
        let id = job_id(self.ctx, self.ctx.try_number);
        let body = match self.request(&id) {
            Ok(body) => body,
            Err(outcome) => return outcome,
        };
        match self.api.insert(&body).await {
            Ok(Inserted::Job(job)) => {
                if let Some(outcome) = self.failed(&id, &job) {
                    return outcome;
                }
                let bytes = int64(job.pointer("/statistics/query/totalBytesProcessed"))
                    .or_else(|| int64(job.pointer("/statistics/totalBytesProcessed")))
                    .unwrap_or(0);
                let columns: Vec<Value> = job
                    .pointer("/statistics/query/schema/fields")
                    .and_then(Value::as_array)
                    .map(|fields| fields.iter().map(|f| f["name"].clone()).collect())
                    .unwrap_or_default();
                self.ctx.system(format!(
                    "BigQuery dry run: the query is valid and would process {bytes} bytes"
                ));
                Outcome::Success {
                    output: Some(json!({
                        "dry_run": true,
                        "total_bytes_processed": bytes,
                        "columns": columns,
                    })),
                }
            }
            Ok(Inserted::Duplicate) => Outcome::retryable(format!(
                "BigQuery answered a dry run as a duplicate of job {id}"
            )),
            Err(e) => {
                let text = format!("BigQuery dry run failed: {e}");
                self.ctx.system(text.clone());
                Outcome::Failed {
                    error: text,
                    retryable: e.status.is_none_or(|s| s.is_server_error()),
                    exit_code: None,
                }
            }
        }
    }

    /// The failure of a job that ended with an error result; every error in the log.
    fn failed(&self, id: &str, job: &Value) -> Option<Outcome> {
        let result = job.pointer("/status/errorResult")?;
        let reason = result["reason"].as_str().unwrap_or("unknown");
        let message = result["message"].as_str().unwrap_or("no message");
        if let Some(errors) = job.pointer("/status/errors").and_then(Value::as_array) {
            for e in errors {
                self.ctx.system(format!(
                    "BigQuery error [{}]{}: {}",
                    e["reason"].as_str().unwrap_or("unknown"),
                    e["location"]
                        .as_str()
                        .map(|l| format!(" at {l}"))
                        .unwrap_or_default(),
                    e["message"].as_str().unwrap_or("no message")
                ));
            }
        }
        let retryable = RETRYABLE_REASONS.contains(&reason);
        let text = if reason == "stopped" {
            format!("BigQuery job {id} was cancelled outside nightshift: {message}")
        } else {
            format!("BigQuery job {id} failed: {message} [{reason}]")
        };
        self.ctx.system(text.clone());
        Some(Outcome::Failed {
            error: text,
            retryable,
            exit_code: None,
        })
    }

    /// The outcome of a job that is DONE.
    async fn finish(&self, id: &str, job: &Value) -> Outcome {
        let stats = job.pointer("/statistics/query");
        let processed = int64(stats.and_then(|s| s.get("totalBytesProcessed")));
        let billed = int64(stats.and_then(|s| s.get("totalBytesBilled")));
        let cache_hit = stats
            .and_then(|s| s.get("cacheHit"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let show = |v: Option<i64>| v.map_or("unknown".to_owned(), |n| n.to_string());
        self.ctx.system(format!(
            "BigQuery job {id}: {} bytes processed, {} bytes billed{}",
            show(processed),
            show(billed),
            if cache_hit { " (cache hit)" } else { "" }
        ));
        if let Some(outcome) = self.failed(id, job) {
            return outcome;
        }
        let mut output = Map::new();
        output.insert("job_id".into(), json!(id));
        output.insert(
            "location".into(),
            job.pointer("/jobReference/location")
                .cloned()
                .unwrap_or(Value::Null),
        );
        output.insert("total_bytes_processed".into(), json!(processed));
        output.insert("total_bytes_billed".into(), json!(billed));
        output.insert("cache_hit".into(), json!(cache_hit));
        if let Some(kind) = stats.and_then(|s| s.get("statementType")) {
            output.insert("statement_type".into(), kind.clone());
        }
        if let Some(n) = int64(stats.and_then(|s| s.get("numDmlAffectedRows"))) {
            output.insert("num_dml_affected_rows".into(), json!(n));
        }
        if let Some(table) = &self.spec.destination_table {
            output.insert("destination_table".into(), json!(table));
        }
        if self.spec.max_rows > 0 {
            match self
                .api
                .results(id, self.location(), self.spec.max_rows)
                .await
            {
                Ok(results) => {
                    let (columns, rows, truncated) = rows(&results, self.spec.max_rows as usize);
                    output.insert("columns".into(), json!(columns));
                    output.insert("rows".into(), Value::Array(rows));
                    output.insert("truncated".into(), json!(truncated));
                }
                Err(e) => {
                    return Outcome::retryable(format!(
                        "BigQuery job {id} succeeded but its results cannot be read: {e}"
                    ))
                }
            }
        }
        Outcome::Success {
            output: Some(Value::Object(output)),
        }
    }

    /// Timeout or cancel: jobs.cancel, then wait briefly for DONE.
    async fn stop(&self, why: Interrupt) -> Outcome {
        let Some(id) = self.id.clone() else {
            self.ctx
                .system(format!("{why} before the BigQuery job was submitted"));
            return why.outcome();
        };
        self.ctx.system(format!(
            "{why} (try {}): cancelling BigQuery job {id}",
            self.ctx.try_number
        ));
        if let Err(e) = self.api.cancel(&id, self.location()).await {
            self.ctx
                .system(format!("jobs.cancel of BigQuery job {id} failed: {e}"));
            return why.outcome();
        }
        let waited = tokio::time::timeout(STOP_WAIT, async {
            loop {
                if let Ok(Some(job)) = self.api.get(&id, self.location()).await {
                    if state(&job) == "DONE" {
                        return;
                    }
                }
                tokio::time::sleep(self.poll.initial).await;
            }
        })
        .await;
        match waited {
            Ok(()) => self
                .ctx
                .system(format!("BigQuery job {id}: DONE (cancelled)")),
            Err(_) => self.ctx.system(format!(
                "BigQuery job {id} was not DONE within {}s of jobs.cancel",
                STOP_WAIT.as_secs()
            )),
        }
        why.outcome()
    }
}

/// The column names, the first `max` rows as objects by column name (typed as the schema
/// says), and whether more rows exist, from a jobs.getQueryResults answer.
fn rows(results: &Value, max: usize) -> (Vec<String>, Vec<Value>, bool) {
    let fields: Vec<Value> = results
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let columns: Vec<String> = fields
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    let raw = results
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = int64(results.get("totalRows")).unwrap_or(0);
    let truncated = raw.len() > max
        || usize::try_from(total).unwrap_or(usize::MAX) > max
        || results.get("pageToken").is_some_and(|t| !t.is_null());
    let rows = raw
        .iter()
        .take(max)
        .map(|row| record(&fields, &row["f"]))
        .collect();
    (columns, rows, truncated)
}

/// A row (`{"f": [{"v": …}, …]}`'s `f`) as an object by field name.
fn record(fields: &[Value], cells: &Value) -> Value {
    let cells = cells.as_array().cloned().unwrap_or_default();
    let mut object = Map::new();
    for (i, field) in fields.iter().enumerate() {
        let name = field["name"]
            .as_str()
            .map_or_else(|| format!("_{i}"), str::to_owned);
        let value = cells.get(i).map_or(Value::Null, |c| cell(field, &c["v"]));
        object.insert(name, value);
    }
    Value::Object(object)
}

/// One value, typed by its schema field: integers, floats and booleans as JSON numbers and
/// booleans, records as objects, repeated fields as lists, everything else as text.
fn cell(field: &Value, v: &Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    if field["mode"].as_str() == Some("REPEATED") {
        let mut single = field.clone();
        single["mode"] = json!("NULLABLE");
        return Value::Array(
            v.as_array()
                .map(|items| items.iter().map(|item| cell(&single, &item["v"])).collect())
                .unwrap_or_default(),
        );
    }
    let text = v.as_str();
    match field["type"].as_str().unwrap_or_default() {
        "RECORD" | "STRUCT" => {
            let sub: Vec<Value> = field["fields"].as_array().cloned().unwrap_or_default();
            record(&sub, &v["f"])
        }
        "INTEGER" | "INT64" => text
            .and_then(|t| t.parse::<i64>().ok())
            .map_or_else(|| v.clone(), |n| json!(n)),
        "FLOAT" | "FLOAT64" => text
            .and_then(|t| t.parse::<f64>().ok())
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        "BOOLEAN" | "BOOL" => match text {
            Some("true") => json!(true),
            Some("false") => json!(false),
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::tests::context;

    #[test]
    fn job_ids_follow_bigquerys_rules_and_differ_per_installation() {
        let ctx = context(None);
        let a = job_id(&ctx, 1);
        assert_eq!(a, job_id(&ctx, 1));
        assert_ne!(a, job_id(&ctx, 2));
        let long = job_id(&ctx, u32::MAX);
        assert!(long.len() <= 1024);
        assert!(long
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        let mut other = context(None);
        other.external = other.external.with_installation("another-installation");
        assert_ne!(a, job_id(&other, 1));
    }

    #[test]
    fn external_ids_name_connection_location_and_job() {
        fn check(connection: &str, location: Option<&str>, job: &str) {
            let id = external_id(connection, location, job);
            assert_eq!(
                parse_external_id(&id),
                Some((connection, location, job)),
                "{id}"
            );
        }
        check("bq", Some("asia-northeast1"), "nightshift-bq-00ff-try-1");
        check("bq", None, "nightshift-bq-00ff-try-1");
        assert_eq!(parse_external_id("no-colon"), None);
        assert_eq!(parse_external_id(":x"), None);
    }

    #[test]
    fn rows_are_typed_by_the_schema() {
        let results = json!({
            "schema": {"fields": [
                {"name": "n", "type": "INTEGER", "mode": "NULLABLE"},
                {"name": "f", "type": "FLOAT", "mode": "NULLABLE"},
                {"name": "b", "type": "BOOLEAN", "mode": "NULLABLE"},
                {"name": "s", "type": "STRING", "mode": "NULLABLE"},
                {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                {"name": "r", "type": "RECORD", "mode": "NULLABLE", "fields": [{"name": "x", "type": "INTEGER"}]},
            ]},
            "rows": [
                {"f": [{"v": "1"}, {"v": "1.5"}, {"v": "true"}, {"v": "a"}, {"v": [{"v": "t1"}]}, {"v": {"f": [{"v": "7"}]}}]},
                {"f": [{"v": null}, {"v": null}, {"v": null}, {"v": null}, {"v": []}, {"v": null}]},
            ],
            "totalRows": "3",
        });
        let (columns, rows, truncated) = rows(&results, 2);
        assert_eq!(columns, ["n", "f", "b", "s", "tags", "r"]);
        assert_eq!(
            rows,
            [
                json!({"n": 1, "f": 1.5, "b": true, "s": "a", "tags": ["t1"], "r": {"x": 7}}),
                json!({"n": null, "f": null, "b": null, "s": null, "tags": [], "r": null}),
            ]
        );
        assert!(truncated, "3 rows, 2 kept");
        let (_, one, truncated) = super::rows(&results, 1);
        assert_eq!(one.len(), 1);
        assert!(truncated);
    }
}
