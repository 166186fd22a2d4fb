//! The `ecs` kind through the real worker runtime against `moto_server` (extended by
//! `tests/moto/moto_ext.py` with exit codes, stop codes and awslogs lines), on PostgreSQL
//! (with `DATABASE_URL`) and SQLite. Each test starts its own emulator on a free port;
//! `scripts/ensure-moto.sh` installs moto into a virtualenv when it is missing.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use chrono::Utc;
use nightshift_core::state::{TaskEvent, TaskState};
use nightshift_store::{
    Attempt, ClaimRequest, DagRun, Patch, Reap, Store, TaskInstance, Transition,
};
use nightshift_worker::kind::{ecs, ExternalJob, TaskContext};
use nightshift_worker::log::LogChannel;
use nightshift_worker::WorkerConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;

use common::{instance, start, wait_for, wait_state, worker_config};
use nightshift_testkit::moto::Moto;
use nightshift_testkit::{both_backends, claim_request, expire_and_reap, queued_run, t, QueuedRun};

both_backends!(
    runs_a_task_with_overrides_and_copies_its_logs,
    exit_codes_fail_or_skip_with_the_reason,
    timeout_stops_the_ecs_task,
    a_new_try_resumes_the_task_of_a_dead_worker,
    a_task_whose_arn_was_never_stored_is_found_by_started_by,
);

/// The emulator, with the ECS client calls these tests check it with.
struct Ecs(Moto);

async fn moto() -> Ecs {
    Ecs(Moto::start_async().await)
}

impl Ecs {
    fn ecs(&self) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.0.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    /// Every task the cluster ever started (moto lists all without a status filter).
    async fn all_tasks(&self) -> Vec<String> {
        self.ecs()
            .list_tasks()
            .cluster("nightly")
            .send()
            .await
            .expect("ListTasks")
            .task_arns()
            .to_vec()
    }

    async fn describe(&self, arn: &str) -> aws_sdk_ecs::types::Task {
        self.ecs()
            .describe_tasks()
            .cluster("nightly")
            .tasks(arn)
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .expect("DescribeTasks")
            .tasks()
            .first()
            .cloned()
            .expect("the task")
    }

    /// An `ecs` task of DAG `d` with the fixtures filled in; `extra` is appended.
    fn dag(&self, tasks: &[(&str, &str)]) -> String {
        tasks
            .iter()
            .map(|(id, extra)| {
                format!(
                    r#"
[tasks.{id}]
type = "ecs"
cluster = "nightly"
task_definition = "nightly-extract"
launch_type = "FARGATE"
subnets = ["{subnet}"]
security_groups = ["{sg}"]
container = "extract"
{extra}
"#,
                    subnet = self.0.subnet,
                    sg = self.0.security_group,
                )
            })
            .collect()
    }
}

fn config(id: &str, moto: &Ecs) -> WorkerConfig {
    WorkerConfig {
        env: moto.0.env(),
        ..worker_config(id)
    }
}

/// Stores `toml` as DAG `d` with a run whose instances are all queued.
async fn seed(store: &Store, toml: &str) -> DagRun {
    let dag = nightshift_testkit::seed_dag(store, "dags/d.toml", toml).await;
    let how = QueuedRun {
        run_id: "manual__ecs",
        logical_date: t("2026-01-01T03:00:00Z"),
        conf: json!({}),
    };
    queued_run(store, &dag, how).await
}

async fn lines(store: &Store, ti: &TaskInstance, try_number: i32, stream: &str) -> Vec<String> {
    store
        .read_logs(ti.id, try_number, 0, 10_000)
        .await
        .expect("read logs")
        .into_iter()
        .filter(|row| row.stream == stream)
        .map(|row| row.line)
        .collect()
}

async fn attempts(store: &Store, ti: &TaskInstance) -> Vec<Attempt> {
    store.list_attempts(ti.id).await.expect("attempts")
}

/// The context an instance's try has in this installation, for computing its
/// deterministic `startedBy`.
async fn context_of(store: &Store, run: &DagRun, task_id: &str, try_number: u32) -> TaskContext {
    let installation = store.installation_id().await.expect("installation id");
    let (log, _rx) = LogChannel::new(10);
    TaskContext {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: task_id.to_owned(),
        try_number,
        map_index: -1,
        cancel: CancellationToken::new(),
        timeout: None,
        try_timeout: None,
        wakes: 0,
        log,
        external: ExternalJob::default().with_installation(&installation),
    }
}

/// Reaps a try as the scheduler does after its lease expired, and queues the next one.
async fn reap_and_requeue(store: &Store, ti: &TaskInstance) {
    let later = Utc::now() + chrono::TimeDelta::minutes(5);
    expire_and_reap(
        store,
        &Reap {
            ti_id: ti.id,
            try_number: ti.try_number,
            new_state: TaskState::UpForRetry,
            next_retry_at: None,
            error: "the lease expired: the worker stopped heartbeating".into(),
            now: later,
        },
    )
    .await;
    for (from, event) in [
        (TaskState::UpForRetry, TaskEvent::Schedule),
        (TaskState::Scheduled, TaskEvent::Queue),
    ] {
        store
            .transition(
                &Transition::on(ti.id, from, ti.try_number, event, later)
                    .expect("legal")
                    .queued_at(Patch::Set(later)),
            )
            .await
            .expect("requeue");
    }
}

async fn runs_a_task_with_overrides_and_copies_its_logs(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &moto.dag(&[(
            "extract",
            r#"command = ["embulk", "run", "{{ ds }}.yml"]
environment = { NS_FAKE_LOG_LINES = "reading Student|wrote 3 rows|done", TARGET_DATE = "{{ ds }}" }
cpu = 256
memory = 512
tags = { pipeline = "nightly" }"#,
        )]),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    let done = wait_state(&store, &run, "extract", TaskState::Success).await;
    worker.stop().await;

    // The ARN was stored on the attempt (the instance's is cleared once the outcome is in).
    let attempt = attempts(&store, &done).await.pop().expect("attempt");
    let arn = attempt.external_id.clone().expect("the ARN on the attempt");
    assert!(arn.starts_with("arn:aws:ecs:us-east-1:"), "{arn}");
    assert_eq!(done.external_id, None);
    assert_eq!(attempt.exit_code, Some(0));
    assert_eq!(
        done.output,
        Some(json!({"task_arn": arn, "exit_codes": {"extract": 0}}))
    );
    assert_eq!(moto.all_tasks().await, std::slice::from_ref(&arn));

    // RunTask carried the rendered overrides, tags and the try's startedBy.
    let task = moto.describe(&arn).await;
    assert_eq!(
        task.started_by(),
        Some(ecs::started_by(&context_of(&store, &run, "extract", 1).await, 1).as_str())
    );
    let o = &task.overrides().expect("overrides").container_overrides()[0];
    assert_eq!(o.name(), Some("extract"));
    assert_eq!(o.command(), ["embulk", "run", "2026-01-01.yml"]);
    let env: BTreeMap<&str, &str> = o
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap_or(""), kv.value().unwrap_or("")))
        .collect();
    assert_eq!(env.get("TARGET_DATE"), Some(&"2026-01-01"));
    assert_eq!((o.cpu(), o.memory()), (Some(256), Some(512)));
    assert!(
        task.tags()
            .iter()
            .any(|t| t.key() == Some("pipeline") && t.value() == Some("nightly")),
        "{:?}",
        task.tags()
    );

    // The awslogs lines, in order, once each; and the kind's own lines.
    assert_eq!(
        lines(&store, &done, 1, "stdout").await,
        ["reading Student", "wrote 3 rows", "done"]
    );
    let system = lines(&store, &done, 1, "system").await;
    let id = arn.rsplit('/').next().unwrap_or_default();
    for expected in [
        format!("started ECS task {arn} on cluster nightly"),
        format!("copying CloudWatch logs from /ecs/nightly:ecs/extract/{id}"),
        format!("ECS task {id}: STOPPED"),
        "try 1 of 1 ended: success (exit code 0)".to_owned(),
    ] {
        assert!(
            system.iter().any(|l| l.starts_with(&expected)),
            "no {expected:?} in {system:#?}"
        );
    }
}

async fn exit_codes_fail_or_skip_with_the_reason(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &moto.dag(&[
            (
                "broken",
                r#"environment = { NS_FAKE_EXIT_CODE = "3", NS_FAKE_LOG_LINES = "no such table" }"#,
            ),
            (
                "nothing_to_do",
                "environment = { NS_FAKE_EXIT_CODE = \"4\" }\nskip_on_exit_code = [4]",
            ),
            (
                "never_started",
                r#"environment = { NS_FAKE_EXIT_CODE = "none" }"#,
            ),
        ]),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    let broken = wait_state(&store, &run, "broken", TaskState::Failed).await;
    let skipped = wait_state(&store, &run, "nothing_to_do", TaskState::Skipped).await;
    let never = wait_state(&store, &run, "never_started", TaskState::Failed).await;
    worker.stop().await;

    let attempt = attempts(&store, &broken).await.pop().expect("attempt");
    let id = attempt
        .external_id
        .as_deref()
        .and_then(|arn| arn.rsplit('/').next())
        .expect("an ARN")
        .to_owned();
    assert_eq!(attempt.exit_code, Some(3));
    assert_eq!(
        attempt.error.as_deref(),
        Some(
            format!(
                "ECS task {id} failed: essential container extract did not exit 0; \
                 stop code EssentialContainerExited: Essential container in task exited; \
                 containers: extract exited 3"
            )
            .as_str()
        )
    );
    assert_eq!(lines(&store, &broken, 1, "stdout").await, ["no such table"]);

    let attempt = attempts(&store, &skipped).await.pop().expect("attempt");
    assert_eq!(attempt.exit_code, Some(4));
    assert!(
        attempt
            .error
            .as_deref()
            .is_some_and(|e| e.ends_with(": extract exited 4 (listed in skip_on_exit_code)")),
        "{attempt:?}"
    );

    let attempt = attempts(&store, &never).await.pop().expect("attempt");
    assert_eq!(attempt.exit_code, None);
    assert!(
        attempt.error.as_deref().is_some_and(|e| e.ends_with(
            "containers: extract has no exit code (CannotStartContainerError: fake start failure)"
        )),
        "{attempt:?}"
    );
}

async fn timeout_stops_the_ecs_task(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &moto.dag(&[(
            "stuck",
            "environment = { NS_FAKE_HOLD = \"1\" }\ntimeout = \"2s\"",
        )]),
    )
    .await;
    let worker = start(&store, config("w1", &moto));
    let failed = wait_state(&store, &run, "stuck", TaskState::Failed).await;
    worker.stop().await;

    let attempt = attempts(&store, &failed).await.pop().expect("attempt");
    assert_eq!(attempt.error.as_deref(), Some("timed out after 2s"));
    let arn = attempt.external_id.expect("the ARN");
    let task = moto.describe(&arn).await;
    assert_eq!(task.last_status(), Some("STOPPED"));
    assert_eq!(
        task.stop_code(),
        Some(&aws_sdk_ecs::types::TaskStopCode::UserInitiated)
    );
    assert_eq!(
        task.stopped_reason(),
        Some("nightshift: timed out after 2s (try 1)")
    );
    let system = lines(&store, &failed, 1, "system").await;
    assert!(
        system
            .iter()
            .any(|l| l == &format!("timed out after 2s (try 1): stopping ECS task {arn}")),
        "{system:#?}"
    );
}

async fn a_new_try_resumes_the_task_of_a_dead_worker(store: Store) {
    let moto = moto().await;
    let run = seed(
        &store,
        &moto.dag(&[(
            "extract",
            "environment = { NS_FAKE_LOG_LINES = \"one|two|three|four|five\" }\nretries = 2",
        )]),
    )
    .await;
    // Worker 1 starts the ECS task and dies as soon as the ARN is stored: its tokio task is
    // dropped mid-await — no StopTask, no hand-back, no outcome, no more heartbeats.
    let doomed = start(&store, config("w1", &moto));
    let first = wait_for(&store, &run, "extract", -1, "given an ARN", |ti| {
        ti.external_id.is_some()
    })
    .await;
    doomed.kill().await;
    let arn = first.external_id.clone().expect("ARN");
    assert_eq!(first.try_number, 1);

    // The scheduler reaps the expired lease and the retry is queued.
    reap_and_requeue(&store, &first).await;

    // Worker 2 picks try 2 up and resumes the same ECS task.
    let worker = start(&store, config("w2", &moto));
    let done = wait_state(&store, &run, "extract", TaskState::Success).await;
    worker.stop().await;
    assert_eq!(done.try_number, 2);
    assert_eq!(
        moto.all_tasks().await,
        std::slice::from_ref(&arn),
        "no second RunTask"
    );
    let tries = attempts(&store, &done).await;
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0].external_id.as_deref(), Some(arn.as_str()));
    assert_eq!(tries[1].external_id.as_deref(), Some(arn.as_str()));
    assert_eq!(
        (tries[1].state, tries[1].exit_code),
        (TaskState::Success, Some(0))
    );
    let system = lines(&store, &done, 2, "system").await;
    assert!(
        system.iter().any(|l| l.starts_with(&format!(
            "re-attaching to ECS task {arn} (stored by an earlier try"
        ))),
        "{system:#?}"
    );
    assert!(
        !system.iter().any(|l| l.starts_with("started ECS task")),
        "{system:#?}"
    );
    // Try 2 copied the lines from the start of the stream (try 1 died before storing any).
    let stdout = lines(&store, &done, 2, "stdout").await;
    assert_eq!(stdout, ["one", "two", "three", "four", "five"]);
}

async fn a_task_whose_arn_was_never_stored_is_found_by_started_by(store: Store) {
    let moto = moto().await;
    let run = seed(&store, &moto.dag(&[("extract", "retries = 2")])).await;
    // Try 1 is claimed by a worker that starts its ECS task and dies before storing the
    // ARN: the test plays that worker with the try's deterministic startedBy.
    let claimed = store
        .claim(&ClaimRequest {
            lease: Duration::from_secs(1),
            ..claim_request("doomed", Utc::now())
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let started_by = ecs::started_by(&context_of(&store, &run, "extract", 1).await, 1);
    let orphan = moto
        .ecs()
        .run_task()
        .cluster("nightly")
        .task_definition("nightly-extract")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .started_by(&started_by)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets(&moto.0.subnet)
                        .security_groups(&moto.0.security_group)
                        .build()
                        .expect("vpc"),
                )
                .build(),
        )
        .send()
        .await
        .expect("RunTask");
    let arn = orphan.tasks()[0].task_arn().expect("ARN").to_owned();
    let first = instance(&store, &run, "extract", -1).await;
    assert_eq!(first.external_id, None);
    reap_and_requeue(&store, &first).await;

    let worker = start(&store, config("w2", &moto));
    let done = wait_state(&store, &run, "extract", TaskState::Success).await;
    worker.stop().await;
    assert_eq!(
        moto.all_tasks().await,
        std::slice::from_ref(&arn),
        "no second RunTask"
    );
    let tries = attempts(&store, &done).await;
    assert_eq!(tries[1].external_id.as_deref(), Some(arn.as_str()));
    let system = lines(&store, &done, 2, "system").await;
    assert!(
        system.iter().any(|l| l.starts_with(&format!(
            "re-attaching to ECS task {arn} (found by the previous try's startedBy"
        ))),
        "{system:#?}"
    );
}
