//! Shared fixtures: the macro that runs one test body on both backends, DAG setup, and a
//! simulated worker (store.claim + store.finish_attempt) driving the real loop.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{parse_dag, Dag};
use nightshift_core::plan::plan_run;
use nightshift_core::retry::can_retry;
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::{
    new_task_instances, ClaimRequest, DagRun, NewRun, RunType, Store, TaskInstance, TryOutcome,
};
use serde_json::{json, Value};

pub(crate) use nightshift_testkit::both_backends;
pub use nightshift_testkit::t;
use nightshift_testkit::{store_dag, StoreDag};

pub fn secs(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(n)
}

/// Parses `toml` as DAG `id` and stores it (unpaused unless `paused`).
pub async fn add_dag(store: &Store, id: &str, toml: &str, paused: bool) -> Dag {
    let dag = parse_dag(&format!("dags/{id}.toml"), toml).expect("valid DAG");
    let how = StoreDag {
        paused,
        now: Some(t("2025-12-31T00:00:00Z")),
    };
    store_dag(store, &dag, how).await;
    dag
}

pub fn scheduler(store: &Store, id: &str) -> Scheduler {
    Scheduler::new(store.clone(), config(id))
}

pub fn config(id: &str) -> SchedulerConfig {
    SchedulerConfig {
        id: id.to_owned(),
        ..SchedulerConfig::new("http://ns.test")
    }
}

/// A queued manual run of `dag` at `logical_date`, as `dags trigger` creates it.
/// Triggers a run of `dag` for 2026-01-01 and has scheduler `s1` tick once a second
/// later: the run, the scheduler and the time of that tick.
pub async fn started(store: &Store, dag: &Dag) -> (DagRun, Scheduler, DateTime<Utc>) {
    let run = trigger(store, dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(store, "s1");
    let start = t("2026-01-01T00:00:01Z");
    s.tick(start).await.expect("tick");
    (run, s, start)
}

pub async fn trigger(store: &Store, dag: &Dag, logical_date: DateTime<Utc>) -> DagRun {
    let run = NewRun {
        dag_id: dag.id.clone(),
        run_id: format!("manual__{}", logical_date.to_rfc3339()),
        run_type: RunType::Manual,
        logical_date,
        data_interval_start: logical_date,
        data_interval_end: logical_date,
        state: RunState::Queued,
        conf: json!({}),
        queued_at: logical_date,
        definition_hash: dag.source_hash.clone(),
    };
    let tasks = new_task_instances(&plan_run(dag));
    let created = store.create_run_with_tasks(&run, &tasks).await;
    created.expect("create run").expect("new run").0
}

/// How the simulated worker ends a try.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeed(Option<Value>),
    Fail,
    Skip,
}

/// Claims every queued instance (as `worker`) and ends each try as `decide` says
/// (success by default); a failure retries when tries are left, after `retry_delay`.
pub async fn work(
    store: &Store,
    worker: &str,
    now: DateTime<Utc>,
    decide: &dyn Fn(&TaskInstance) -> Outcome,
) -> Vec<TaskInstance> {
    let claimed = store
        .claim(&ClaimRequest {
            limit: 1000,
            ..nightshift_testkit::claim_request(worker, now)
        })
        .await
        .expect("claim");
    let mut done = Vec::new();
    for task in claimed {
        let ti = task.instance();
        let (new_state, output, next_retry_at, error) = match decide(ti) {
            Outcome::Succeed(output) => (TaskState::Success, output, None, None),
            Outcome::Skip => (TaskState::Skipped, None, None, None),
            Outcome::Fail => {
                let retry = can_retry(ti.try_number as u32, ti.max_tries as u32);
                let state = TaskState::Running
                    .on(TaskEvent::Fail { retry })
                    .expect("legal");
                (
                    state,
                    None,
                    retry.then(|| now + secs(60)),
                    Some("exit code 1".to_owned()),
                )
            }
        };
        let finished = task
            .finish(TryOutcome {
                new_state,
                error,
                exit_code: None,
                output,
                next_retry_at,
                now,
                callback: None,
                progress: Default::default(),
            })
            .await
            .expect("finish");
        done.push(finished);
    }
    done
}

/// Ticks and works (one second apart) until `run` ends; returns the final states by
/// `task_id` (mapped instances as `task_id[i]`).
pub async fn drive(
    store: &Store,
    scheduler: &Scheduler,
    run: &DagRun,
    mut now: DateTime<Utc>,
    decide: &dyn Fn(&TaskInstance) -> Outcome,
) -> (RunState, BTreeMap<String, TaskState>) {
    for _ in 0..60 {
        scheduler.tick(now).await.expect("tick");
        let current = nightshift_testkit::dag_run(store, run.id).await;
        if current.state.is_finished() {
            return (current.state, states(store, run).await);
        }
        now += secs(1);
        work(store, "w1", now, decide).await;
        now += secs(1);
    }
    panic!("run did not finish: {:?}", states(store, run).await);
}

pub async fn states(store: &Store, run: &DagRun) -> BTreeMap<String, TaskState> {
    store
        .list_task_instances(run.id)
        .await
        .expect("list")
        .into_iter()
        .map(|ti| {
            let key = if ti.map_index < 0 {
                ti.task_id
            } else {
                format!("{}[{}]", ti.task_id, ti.map_index)
            };
            (key, ti.state)
        })
        .collect()
}

pub fn succeed(_: &TaskInstance) -> Outcome {
    Outcome::Succeed(None)
}
