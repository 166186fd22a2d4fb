//! The `ecs` task kind: RunTask on ECS (Fargate or EC2), store the task ARN at once, poll
//! DescribeTasks with backoff until STOPPED while copying the CloudWatch log lines, and
//! decide the outcome from the essential containers' exit codes ([`decide`]).
//!
//! Stopping: a timeout or cancel calls StopTask with a reason starting with
//! [`STOP_REASON_PREFIX`] and waits briefly for STOPPED.
//!
//! Re-attach (a worker died while its ECS task ran; the reaper made a new try):
//! - the instance's external id is an ARN no worker accounted for
//!   ([`ExternalJob::unaccounted`]) → DescribeTasks on it and resume watching — this also
//!   adopts a task that STOPPED while nobody watched — unless nightshift itself stopped it
//!   (its stopped reason starts with [`STOP_REASON_PREFIX`]) or ECS no longer knows it;
//! - no ARN was stored by the previous try ([`ExternalJob::unrecorded_previous_try`]) →
//!   ListTasks by that try's deterministic `startedBy` (RUNNING, then STOPPED) and resume
//!   what it finds, with the same exceptions;
//! - otherwise RunTask, with a `clientToken` deterministic per try, so a RunTask retried
//!   by the SDK after a lost answer does not start a second task.
//!
//! Credentials, region and endpoint come from the standard AWS chain; `AWS_ENDPOINT_URL`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION` and `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
//! `AWS_SESSION_TOKEN` in the worker's environment (passed explicitly) take precedence.
//! `NIGHTSHIFT_ECS_POLL_INTERVAL` and `NIGHTSHIFT_ECS_POLL_MAX` (humantime, default 1s and
//! 15s) set the DescribeTasks backoff.

pub mod decide;
pub mod logs;
pub mod stop;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    DesiredStatus, KeyValuePair, LaunchType, LogDriver, NetworkConfiguration, PropagateTags, Tag,
    Task, TaskOverride,
};
use nightshift_core::dag::{self, EcsTask};

use self::logs::{LogCopier, LogSource};
use crate::kind::aws::Polling;
use crate::kind::external::{run_watched, try_key, ExternalJob, RecordError, WatchedJob};
use crate::kind::{Interrupt, Outcome, TaskContext};

/// Every StopTask reason nightshift sends starts with this; a task stopped with it was
/// accounted for by a live worker and is never re-attached to.
pub const STOP_REASON_PREFIX: &str = "nightshift: ";
/// How long a stopped task is watched for STOPPED after StopTask.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// Consecutive DescribeTasks errors tolerated while polling (throttling, a network blip).
const MAX_POLL_ERRORS: u32 = 5;
/// Tries to store the ARN before the task is stopped again.
const RECORD_ATTEMPTS: u32 = 3;

/// The `startedBy` of one try: `ns-<hash of installation, dag, run, task, map index>-<try>`
/// ([`try_key`]), at most 36 characters (ECS's limit), the same in every worker.
pub fn started_by(ctx: &TaskContext, try_number: u32) -> String {
    let mut id = format!("ns-{:016x}-{try_number}", try_key(ctx));
    id.truncate(36);
    id
}

/// RunTask's idempotency token for one try (at most 64 characters).
pub fn client_token(ctx: &TaskContext, try_number: u32) -> String {
    format!("nightshift-{:016x}-{try_number}", try_key(ctx))
}

/// The task definition to run: `family:revision` when a revision is given.
pub fn task_definition(spec: &EcsTask) -> String {
    match spec.revision {
        Some(revision) => format!("{}:{revision}", spec.task_definition),
        None => spec.task_definition.clone(),
    }
}

/// Runs one try of an `ecs` task to its end.
pub async fn run(spec: &EcsTask, ctx: &TaskContext) -> Outcome {
    run_watched(ctx, Clients::load(&ctx.external), |clients| Job {
        ecs: clients.ecs,
        logs: clients.logs,
        spec,
        ctx,
        poll: Polling::from(&ctx.external, "ecs"),
        arn: None,
        launched: false,
        copier: None,
    })
    .await
}

struct Clients {
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

impl Clients {
    async fn load(job: &ExternalJob) -> Result<Clients, String> {
        let config = crate::kind::aws::sdk_config(job, "ecs").await?;
        Ok(Clients {
            ecs: aws_sdk_ecs::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
        })
    }
}

/// One try's ECS task, from launch (or re-attach) to STOPPED.
struct Job<'a> {
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    spec: &'a EcsTask,
    ctx: &'a TaskContext,
    poll: Polling,
    /// The task being watched, once known.
    arn: Option<String>,
    /// RunTask was sent (its answer may have been lost to an interrupt).
    launched: bool,
    copier: Option<LogCopier>,
}

impl WatchedJob for Job<'_> {
    /// Launches or re-attaches, then waits for STOPPED and decides.
    async fn watch(&mut self) -> Outcome {
        let task = match self.attach().await {
            Ok(Some(task)) => task,
            Ok(None) => match self.launch().await {
                Ok(task) => task,
                Err(outcome) => return outcome,
            },
            Err(outcome) => return outcome,
        };
        let Some(arn) = self.arn.clone() else {
            return Outcome::retryable("the ECS task has no ARN");
        };
        let non_essential = self.prepare_logs(&task).await;
        let mut task = task;
        let mut last = status(&task).to_owned();
        self.ctx
            .system(format!("ECS task {}: {last}", decide::task_id(&arn)));
        let mut delay = self.poll.initial;
        let mut errors = 0;
        while last != "STOPPED" {
            self.copy_logs().await;
            tokio::time::sleep(delay).await;
            delay = self.poll.next(delay);
            match self.describe(&arn).await {
                Ok(Some(t)) => {
                    errors = 0;
                    if status(&t) != last {
                        last = status(&t).to_owned();
                        self.ctx
                            .system(format!("ECS task {}: {last}", decide::task_id(&arn)));
                    }
                    task = t;
                }
                Ok(None) => {
                    return Outcome::retryable(format!(
                        "ECS task {arn} is no longer known to ECS (cluster {})",
                        self.spec.cluster
                    ))
                }
                Err(error) => {
                    errors += 1;
                    tracing::warn!(%error, errors, "DescribeTasks failed");
                    if errors >= MAX_POLL_ERRORS {
                        return Outcome::retryable(format!(
                            "cannot follow ECS task {arn}: DescribeTasks failed {errors} times in a row: {error}"
                        ));
                    }
                }
            }
        }
        // The last lines reach CloudWatch as the task stops: read once more.
        self.copy_logs().await;
        decide::decide(&task, &non_essential, &self.spec.skip_on_exit_code)
    }

    /// After a timeout or cancel: StopTask, wait briefly for STOPPED, copy the last lines.
    async fn stop(&mut self, why: Interrupt) -> Outcome {
        let arn = match (&self.arn, self.launched, &self.spec.started_by) {
            (Some(arn), _, _) => Some(arn.clone()),
            // The RunTask answer was lost to the interrupt: find the task it started.
            (None, true, None) => self
                .find_started_by(&started_by(self.ctx, self.ctx.try_number))
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        let Some(arn) = arn else {
            return why.outcome();
        };
        let reason = format!("{why} (try {})", self.ctx.try_number);
        self.ctx
            .system(format!("{reason}: stopping ECS task {arn}"));
        self.stop_task(&arn, &reason).await;
        let waited = tokio::time::timeout(STOP_WAIT, async {
            let mut delay = self.poll.initial;
            loop {
                self.copy_logs().await;
                if let Ok(Some(task)) = self.describe(&arn).await {
                    if status(&task) == "STOPPED" {
                        return;
                    }
                }
                tokio::time::sleep(delay).await;
                delay = self.poll.next(delay);
            }
        })
        .await;
        self.copy_logs().await;
        match waited {
            Ok(()) => self
                .ctx
                .system(format!("ECS task {}: STOPPED", decide::task_id(&arn))),
            Err(_) => self.ctx.system(format!(
                "ECS task {arn} did not reach STOPPED within {}",
                humantime::format_duration(STOP_WAIT)
            )),
        }
        why.outcome()
    }
}

impl Job<'_> {
    /// Finds the task of an earlier try that nobody accounted for; `Ok(None)` when there
    /// is none to resume (launch a new one).
    async fn attach(&mut self) -> Result<Option<Task>, Outcome> {
        let external = &self.ctx.external;
        let (arn, from) = if let Some(arn) = &external.unaccounted {
            (arn.clone(), "stored by an earlier try")
        } else if let (Some(previous), None) =
            (external.unrecorded_previous_try, &self.spec.started_by)
        {
            let started_by = started_by(self.ctx, previous);
            match self.find_started_by(&started_by).await {
                Ok(Some(arn)) => (arn, "found by the previous try's startedBy"),
                Ok(None) => return Ok(None),
                Err(error) => {
                    return Err(Outcome::retryable(format!(
                        "cannot look for an ECS task of try {previous} (startedBy {started_by}) \
                         before launching: {error}"
                    )))
                }
            }
        } else {
            return Ok(None);
        };
        let task = match self.describe(&arn).await {
            Ok(Some(task)) => task,
            Ok(None) => {
                self.ctx.system(format!(
                    "ECS task {arn} ({from}) is no longer known to ECS; starting a new one"
                ));
                return Ok(None);
            }
            Err(error) => {
                return Err(Outcome::retryable(format!(
                    "cannot describe ECS task {arn} ({from}) before deciding to launch: {error}"
                )))
            }
        };
        if stopped_by_nightshift(&task) {
            self.ctx.system(format!(
                "ECS task {arn} ({from}) was stopped by nightshift ({}); starting a new one",
                task.stopped_reason().unwrap_or_default()
            ));
            return Ok(None);
        }
        self.ctx.system(format!(
            "re-attaching to ECS task {arn} ({from}, last status {}) instead of starting a second one",
            status(&task)
        ));
        self.arn = Some(arn.clone());
        match self.ctx.external.record(&arn).await {
            Ok(()) => {}
            Err(RecordError::LeaseLost(why)) => {
                return Err(Outcome::retryable(format!(
                    "the try is no longer ours: {why}"
                )))
            }
            // The instance still holds the ARN; only this attempt's row misses it.
            Err(error) => tracing::warn!(%error, "cannot record the re-attached ARN"),
        }
        Ok(Some(task))
    }

    /// RunTask; stores the ARN before anything else.
    async fn launch(&mut self) -> Result<Task, Outcome> {
        let spec = self.spec;
        let ctx = self.ctx;
        let started_by = spec
            .started_by
            .clone()
            .unwrap_or_else(|| started_by(ctx, ctx.try_number));
        let definition = task_definition(spec);
        let request = run_task_request(
            &self.ecs,
            spec,
            &started_by,
            &client_token(ctx, ctx.try_number),
        )
        .map_err(|e| Outcome::fatal(format!("invalid ecs task: {e}")))?;
        self.launched = true;
        let out = request.send().await.map_err(|e| {
            Outcome::retryable(format!(
                "RunTask of {definition} on cluster {} failed: {}",
                spec.cluster,
                DisplayErrorContext(&e)
            ))
        })?;
        let Some(task) = out
            .tasks()
            .first()
            .filter(|t| t.task_arn().is_some())
            .cloned()
        else {
            let failures: Vec<String> = out
                .failures()
                .iter()
                .map(|f| {
                    let mut text = f.reason().unwrap_or("unknown reason").to_owned();
                    if let Some(detail) = f.detail() {
                        text.push_str(&format!(" ({detail})"));
                    }
                    if let Some(arn) = f.arn() {
                        text.push_str(&format!(" [{arn}]"));
                    }
                    text
                })
                .collect();
            return Err(Outcome::retryable(format!(
                "RunTask of {definition} on cluster {} started no task: {}",
                spec.cluster,
                if failures.is_empty() {
                    "no failure reported".to_owned()
                } else {
                    failures.join("; ")
                }
            )));
        };
        let arn = task.task_arn().unwrap_or_default().to_owned();
        self.arn = Some(arn.clone());
        if let Err(error) = self.record(&arn).await {
            let why = format!("cannot store the ECS task ARN {arn}: {error}");
            self.stop_task(&arn, &why).await;
            return Err(Outcome::retryable(format!(
                "{why}; the task was stopped so that no untracked task runs"
            )));
        }
        ctx.system(format!(
            "started ECS task {arn} on cluster {} (task definition {definition}, startedBy {started_by})",
            spec.cluster
        ));
        Ok(task)
    }

    async fn record(&self, arn: &str) -> Result<(), RecordError> {
        let mut attempt = 1;
        loop {
            match self.ctx.external.record(arn).await {
                Ok(()) => return Ok(()),
                Err(error @ RecordError::LeaseLost(_)) => return Err(error),
                Err(error) if attempt >= RECORD_ATTEMPTS => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, attempt, "cannot store the ECS task ARN; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Reads the task definition: which containers are not essential, and where their
    /// awslogs lines go (the DAG's `awslogs_group`/`awslogs_stream_prefix` win).
    async fn prepare_logs(&mut self, task: &Task) -> BTreeSet<String> {
        let mut non_essential = BTreeSet::new();
        let mut sources = Vec::new();
        let task_id = decide::task_id(task.task_arn().unwrap_or_default()).to_owned();
        let mut names: Vec<String> = task
            .containers()
            .iter()
            .filter_map(|c| c.name().map(str::to_owned))
            .collect();
        let mut from_definition = Vec::new();
        if let Some(definition) = task.task_definition_arn() {
            match self
                .ecs
                .describe_task_definition()
                .task_definition(definition)
                .send()
                .await
            {
                Ok(out) => {
                    for c in out
                        .task_definition()
                        .map(|d| d.container_definitions())
                        .unwrap_or_default()
                    {
                        let Some(name) = c.name() else { continue };
                        if c.essential() == Some(false) {
                            non_essential.insert(name.to_owned());
                        }
                        let options = c
                            .log_configuration()
                            .filter(|l| *l.log_driver() == LogDriver::Awslogs)
                            .and_then(|l| l.options());
                        let option = |key: &str| options.and_then(|o| o.get(key)).cloned();
                        from_definition.push((
                            name.to_owned(),
                            option("awslogs-group"),
                            option("awslogs-stream-prefix"),
                        ));
                        if !names.iter().any(|n| n == name) {
                            names.push(name.to_owned());
                        }
                    }
                }
                Err(e) => self.ctx.system(format!(
                    "cannot read task definition {definition} (all containers count as essential): {}",
                    DisplayErrorContext(&e)
                )),
            }
        }
        for name in &names {
            let (group, prefix) = from_definition
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, g, p)| (g.clone(), p.clone()))
                .unwrap_or_default();
            let group = self.spec.awslogs_group.clone().or(group);
            let prefix = self.spec.awslogs_stream_prefix.clone().or(prefix);
            if let (Some(group), Some(prefix)) = (group, prefix) {
                sources.push(LogSource::awslogs(name, &group, &prefix, &task_id));
            }
        }
        if !sources.is_empty() {
            let streams: Vec<String> = sources
                .iter()
                .map(|s| format!("{}:{}", s.group, s.stream))
                .collect();
            self.ctx.system(format!(
                "copying CloudWatch logs from {}",
                streams.join(", ")
            ));
            self.copier = Some(LogCopier::new(self.logs.clone(), sources));
        }
        non_essential
    }

    async fn copy_logs(&mut self) {
        if let Some(copier) = &mut self.copier {
            copier.copy(self.ctx).await;
        }
    }

    /// The task as DescribeTasks sees it; `Ok(None)` when ECS reports it MISSING.
    async fn describe(&self, arn: &str) -> Result<Option<Task>, LookupError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.spec.cluster)
            .tasks(arn)
            .send()
            .await
            .map_err(|e| LookupError::Api {
                operation: "DescribeTasks",
                message: DisplayErrorContext(&e).to_string(),
            })?;
        if let Some(task) = out.tasks().iter().find(|t| t.task_arn() == Some(arn)) {
            return Ok(Some(task.clone()));
        }
        if let Some(task) = out.tasks().first() {
            // An ARN in the short format answers with the long one.
            return Ok(Some(task.clone()));
        }
        match out.failures().first() {
            Some(f) if f.reason() == Some("MISSING") => Ok(None),
            Some(f) => Err(LookupError::Failure {
                reason: f.reason().unwrap_or("unknown").to_owned(),
                detail: f.detail().unwrap_or_default().to_owned(),
            }),
            None => Ok(None),
        }
    }

    /// The newest task with this `startedBy`, running or stopped.
    async fn find_started_by(&self, started_by: &str) -> Result<Option<String>, LookupError> {
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.spec.cluster)
                .started_by(started_by)
                .desired_status(desired)
                .send()
                .await
                .map_err(|e| LookupError::Api {
                    operation: "ListTasks",
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            if let Some(arn) = out.task_arns().first() {
                return Ok(Some(arn.clone()));
            }
        }
        Ok(None)
    }

    async fn stop_task(&self, arn: &str, reason: &str) {
        // ECS keeps at most 255 characters of the reason.
        let mut reason = format!("{STOP_REASON_PREFIX}{reason}");
        stop::truncate_chars(&mut reason, 255);
        let sent = self
            .ecs
            .stop_task()
            .cluster(&self.spec.cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await;
        if let Err(e) = sent {
            self.ctx.system(format!(
                "StopTask of {arn} failed: {}",
                DisplayErrorContext(&e)
            ));
        }
    }
}

fn status(task: &Task) -> &str {
    task.last_status().unwrap_or("UNKNOWN")
}

fn stopped_by_nightshift(task: &Task) -> bool {
    status(task) == "STOPPED"
        && task
            .stopped_reason()
            .is_some_and(|r| r.starts_with(STOP_REASON_PREFIX))
}

/// Why asking ECS about a task failed (the message is what the try's log shows).
#[derive(Debug, thiserror::Error)]
enum LookupError {
    /// The call failed (network, credentials, throttling): the SDK's error with its causes.
    #[error("{message}")]
    Api {
        operation: &'static str,
        message: String,
    },
    /// DescribeTasks answered with a failure other than MISSING.
    #[error("DescribeTasks failure: {reason} {detail}")]
    Failure { reason: String, detail: String },
}

/// Why an `ecs` task's spec cannot become a RunTask request; fatal, since every try
/// builds the same request.
#[derive(Debug, thiserror::Error)]
enum SpecError {
    #[error("capacity provider weight: {source}")]
    Weight {
        capacity_provider: String,
        source: std::num::TryFromIntError,
    },
    #[error("capacity provider base: {source}")]
    Base {
        capacity_provider: String,
        source: std::num::TryFromIntError,
    },
    /// The container's `cpu` or `memory` is over what ECS takes (an i32).
    #[error("{field}: {source}")]
    OutOfRange {
        field: &'static str,
        source: std::num::TryFromIntError,
    },
    /// The SDK's builder refused a part of the request.
    #[error("{0}")]
    Build(#[from] aws_sdk_ecs::error::BuildError),
}

/// The RunTask request of `spec`, not yet sent.
fn run_task_request(
    ecs: &aws_sdk_ecs::Client,
    spec: &EcsTask,
    started_by: &str,
    client_token: &str,
) -> Result<aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder, SpecError> {
    let mut request = ecs
        .run_task()
        .cluster(&spec.cluster)
        .task_definition(task_definition(spec))
        .count(1)
        .started_by(started_by)
        .client_token(client_token)
        .set_platform_version(spec.platform_version.clone());
    if let Some(launch_type) = spec.launch_type {
        request = request.launch_type(match launch_type {
            dag::LaunchType::Fargate => LaunchType::Fargate,
            dag::LaunchType::Ec2 => LaunchType::Ec2,
            dag::LaunchType::External => LaunchType::External,
        });
    }
    for item in &spec.capacity_provider_strategy {
        let weight = i32::try_from(item.weight).map_err(|source| SpecError::Weight {
            capacity_provider: item.capacity_provider.clone(),
            source,
        })?;
        let base = i32::try_from(item.base).map_err(|source| SpecError::Base {
            capacity_provider: item.capacity_provider.clone(),
            source,
        })?;
        let item = CapacityProviderStrategyItem::builder()
            .capacity_provider(&item.capacity_provider)
            .weight(weight)
            .base(base)
            .build()?;
        request = request.capacity_provider_strategy(item);
    }
    if !spec.subnets.is_empty() {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(spec.subnets.clone()))
            .set_security_groups(
                (!spec.security_groups.is_empty()).then(|| spec.security_groups.clone()),
            )
            .assign_public_ip(if spec.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()?;
        request = request.network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        );
    }
    if let Some(container) = &spec.container {
        let mut o = ContainerOverride::builder()
            .name(container)
            .set_command(spec.command.clone());
        for (name, value) in &spec.environment {
            o = o.environment(KeyValuePair::builder().name(name).value(value).build());
        }
        if let Some(cpu) = spec.cpu {
            o = o.cpu(i32::try_from(cpu).map_err(|source| SpecError::OutOfRange {
                field: "cpu",
                source,
            })?);
        }
        if let Some(memory) = spec.memory {
            o = o.memory(
                i32::try_from(memory).map_err(|source| SpecError::OutOfRange {
                    field: "memory",
                    source,
                })?,
            );
        }
        request = request.overrides(
            TaskOverride::builder()
                .container_overrides(o.build())
                .build(),
        );
    }
    for (key, value) in &spec.tags {
        request = request.tags(Tag::builder().key(key).value(value).build());
    }
    if let Some(propagate) = spec.propagate_tags {
        request = request.propagate_tags(match propagate {
            dag::PropagateTags::TaskDefinition => PropagateTags::TaskDefinition,
            dag::PropagateTags::Service => PropagateTags::Service,
            dag::PropagateTags::None => PropagateTags::None,
        });
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_config::{BehaviorVersion, Region};

    use super::*;
    use crate::kind::tests::context;

    #[test]
    fn try_identities_are_deterministic_and_short() {
        let mut ctx = context(None);
        let a = started_by(&ctx, 1);
        assert_eq!(a, started_by(&ctx, 1));
        assert_ne!(a, started_by(&ctx, 2));
        assert!(a.starts_with("ns-") && a.ends_with("-1"), "{a}");
        assert!(started_by(&ctx, u32::MAX).len() <= 36);
        assert!(client_token(&ctx, u32::MAX).len() <= 64);
        ctx.map_index = 3;
        assert_ne!(
            a,
            started_by(&ctx, 1),
            "another map index is another instance"
        );
        // Pinned (FNV-1a of "d\0r\0t\0-1\0"): a change would break re-attaching to tasks
        // started by an older worker.
        let ctx = context(None);
        assert_eq!(started_by(&ctx, 2), "ns-32e4500310bbddbf-2");
    }

    #[test]
    fn task_definitions_take_the_revision() {
        fn check(name: &str, revision: Option<u32>, expected: &str) {
            let spec = spec(|s| {
                s.task_definition = name.to_owned();
                s.revision = revision;
            });
            assert_eq!(task_definition(&spec), expected);
        }
        check("dmp-extract", None, "dmp-extract");
        check("dmp-extract", Some(7), "dmp-extract:7");
    }

    #[test]
    fn polling_backs_off_within_bounds() {
        fn check(env: &[(&str, &str)], expected: (u64, u64), steps: &[u64]) {
            let env: BTreeMap<String, String> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let job = ExternalJob::detached(env);
            let poll = Polling::from(&job, "ecs");
            assert_eq!(
                (poll.initial.as_millis() as u64, poll.max.as_millis() as u64),
                expected
            );
            let mut delay = poll.initial;
            let mut seen = Vec::new();
            for _ in 0..steps.len() {
                seen.push(delay.as_millis() as u64);
                delay = poll.next(delay);
            }
            assert_eq!(seen, steps);
        }
        check(&[], (1000, 15000), &[1000, 2000, 4000, 8000, 15000, 15000]);
        check(
            &[
                ("NIGHTSHIFT_ECS_POLL_INTERVAL", "100ms"),
                ("NIGHTSHIFT_ECS_POLL_MAX", "250ms"),
            ],
            (100, 250),
            &[100, 200, 250],
        );
        // Nonsense falls back to the defaults; a max below the start is raised to it.
        check(
            &[
                ("NIGHTSHIFT_ECS_POLL_INTERVAL", "soon"),
                ("NIGHTSHIFT_ECS_POLL_MAX", "0s"),
            ],
            (1000, 15000),
            &[1000],
        );
        check(
            &[("NIGHTSHIFT_ECS_POLL_INTERVAL", "20s")],
            (20000, 20000),
            &[20000, 20000],
        );
    }

    fn spec(change: impl FnOnce(&mut EcsTask)) -> EcsTask {
        let mut spec = EcsTask {
            connection: None,
            cluster: "dmp".into(),
            task_definition: "dmp-extract".into(),
            revision: None,
            launch_type: None,
            capacity_provider_strategy: Vec::new(),
            platform_version: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            assign_public_ip: false,
            container: None,
            command: None,
            environment: BTreeMap::new(),
            cpu: None,
            memory: None,
            tags: BTreeMap::new(),
            started_by: None,
            propagate_tags: None,
            awslogs_group: None,
            awslogs_stream_prefix: None,
            skip_on_exit_code: Vec::new(),
        };
        change(&mut spec);
        spec
    }

    #[test]
    fn run_task_requests_carry_the_spec() {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        let ecs = aws_sdk_ecs::Client::from_conf(config);
        let spec = spec(|s| {
            s.revision = Some(7);
            s.launch_type = Some(dag::LaunchType::Fargate);
            s.platform_version = Some("LATEST".into());
            s.subnets = vec!["subnet-1".into()];
            s.security_groups = vec!["sg-1".into()];
            s.assign_public_ip = true;
            s.container = Some("extract".into());
            s.command = Some(vec!["embulk".into(), "run".into()]);
            s.environment = [("CLASSNAME".to_owned(), "Student".to_owned())].into();
            s.cpu = Some(1024);
            s.memory = Some(2048);
            s.tags = [("pipeline".to_owned(), "dmp".to_owned())].into();
            s.propagate_tags = Some(dag::PropagateTags::TaskDefinition);
        });
        let request = run_task_request(&ecs, &spec, "ns-x-1", "nightshift-x-1").expect("request");
        let input = request.as_input();
        assert_eq!(input.get_cluster().as_deref(), Some("dmp"));
        assert_eq!(
            input.get_task_definition().as_deref(),
            Some("dmp-extract:7")
        );
        assert_eq!(input.get_started_by().as_deref(), Some("ns-x-1"));
        assert_eq!(input.get_client_token().as_deref(), Some("nightshift-x-1"));
        assert_eq!(input.get_launch_type(), &Some(LaunchType::Fargate));
        assert_eq!(input.get_platform_version().as_deref(), Some("LATEST"));
        assert_eq!(
            input.get_propagate_tags(),
            &Some(PropagateTags::TaskDefinition)
        );
        let vpc = input
            .get_network_configuration()
            .as_ref()
            .and_then(|n| n.awsvpc_configuration())
            .expect("awsvpc");
        assert_eq!(vpc.subnets(), ["subnet-1"]);
        assert_eq!(vpc.security_groups(), ["sg-1"]);
        assert_eq!(vpc.assign_public_ip(), Some(&AssignPublicIp::Enabled));
        let o = &input
            .get_overrides()
            .as_ref()
            .expect("overrides")
            .container_overrides()[0];
        assert_eq!(o.name(), Some("extract"));
        assert_eq!(o.command(), ["embulk", "run"]);
        assert_eq!(o.environment()[0].name(), Some("CLASSNAME"));
        assert_eq!(o.environment()[0].value(), Some("Student"));
        assert_eq!((o.cpu(), o.memory()), (Some(1024), Some(2048)));
        let tags = input.get_tags().as_ref().expect("tags");
        assert_eq!(
            (tags[0].key(), tags[0].value()),
            (Some("pipeline"), Some("dmp"))
        );

        // A capacity provider strategy instead of a launch type; no overrides without a container.
        let spec = spec_with_strategy();
        let request = run_task_request(&ecs, &spec, "s", "t").expect("request");
        let input = request.as_input();
        assert_eq!(input.get_launch_type(), &None);
        assert_eq!(input.get_overrides(), &None);
        assert_eq!(input.get_network_configuration(), &None);
        let strategy = input
            .get_capacity_provider_strategy()
            .as_ref()
            .expect("strategy");
        assert_eq!(strategy.len(), 2);
        assert_eq!(strategy[0].capacity_provider(), "FARGATE_SPOT");
        assert_eq!((strategy[1].weight(), strategy[1].base()), (1, 1));
    }

    #[test]
    fn a_spec_ecs_cannot_take_names_the_field() {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        let ecs = aws_sdk_ecs::Client::from_conf(config);
        let mut spec = spec_with_strategy();
        spec.capacity_provider_strategy[1].base = u32::MAX;
        let err = run_task_request(&ecs, &spec, "s", "t").expect_err("base over i32");
        assert!(
            matches!(&err, SpecError::Base { capacity_provider, .. } if capacity_provider == "FARGATE"),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("capacity provider base: "),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());

        let mut spec = spec_with_strategy();
        spec.cpu = Some(u32::MAX);
        spec.container = Some("extract".into());
        let err = run_task_request(&ecs, &spec, "s", "t").expect_err("cpu over i32");
        assert!(
            matches!(err, SpecError::OutOfRange { field: "cpu", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_describe_failure_keeps_its_reason_and_detail() {
        let err = LookupError::Failure {
            reason: "ACCESS_DENIED".into(),
            detail: "not your cluster".into(),
        };
        assert_eq!(
            err.to_string(),
            "DescribeTasks failure: ACCESS_DENIED not your cluster"
        );
    }

    fn spec_with_strategy() -> EcsTask {
        spec(|s| {
            s.capacity_provider_strategy = vec![
                dag::CapacityProviderItem {
                    capacity_provider: "FARGATE_SPOT".into(),
                    weight: 3,
                    base: 0,
                },
                dag::CapacityProviderItem {
                    capacity_provider: "FARGATE".into(),
                    weight: 1,
                    base: 1,
                },
            ];
        })
    }
}
