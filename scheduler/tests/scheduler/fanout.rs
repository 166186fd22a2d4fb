//! `for_each` fan-out: over a literal list, over an upstream's JSON output (a list, an
//! empty list, not a list), and the join downstream of the mapped task.

use std::collections::BTreeMap;

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, Store, TaskInstance};
use serde_json::{json, Value};

use crate::common::{
    add_dag, both_backends, config, drive, scheduler, succeed, t, trigger, Outcome,
};

both_backends!(
    literal_list_fans_out_and_joins,
    upstream_output_fans_out_and_joins,
    empty_upstream_list_skips_the_mapped_task,
    non_list_output_fails_the_mapped_task,
    max_map_length_bounds_the_fan_out,
);

const FROM_UPSTREAM: &str = "id = \"dyn\"\n[tasks.list]\ntype = \"noop\"\n\
    [tasks.each]\ntype = \"noop\"\nfor_each = { from = \"list\" }\n\
    [tasks.join]\ntype = \"noop\"\ndepends_on = [\"each\"]\n";

async fn literal_list_fans_out_and_joins(store: Store) {
    let dag = add_dag(
        &store,
        "lit",
        "id = \"lit\"\n[tasks.each]\ntype = \"noop\"\nfor_each = [\"a\", \"b\", \"c\"]\n\
         [tasks.join]\ntype = \"noop\"\ndepends_on = [\"each\"]\n",
        false,
    )
    .await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let (state, states) = drive(
        &store,
        &scheduler(&store, "s1"),
        &run,
        t("2026-01-01T00:00:01Z"),
        &succeed,
    )
    .await;
    assert_eq!(state, RunState::Success);
    let keys: Vec<&str> = states.keys().map(String::as_str).collect();
    assert_eq!(keys, ["each[0]", "each[1]", "each[2]", "join"]);
    assert!(states.values().all(|s| *s == TaskState::Success));
}

fn list_outputs(output: Value) -> impl Fn(&TaskInstance) -> Outcome {
    move |ti| {
        if ti.task_id == "list" {
            Outcome::Succeed(Some(output.clone()))
        } else {
            Outcome::Succeed(None)
        }
    }
}

async fn upstream_output_fans_out_and_joins(store: Store) {
    let dag = add_dag(&store, "dyn", FROM_UPSTREAM, false).await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(&store, "s1");
    let decide = list_outputs(json!(["x", "y"]));
    // The join waits for every mapped instance: finish only each[0] first.
    let mut now = t("2026-01-01T00:00:01Z");
    s.tick(now).await.expect("tick");
    crate::common::work(&store, "w1", now, &decide).await;
    s.tick(now).await.expect("tick");
    let states = crate::common::states(&store, &run).await;
    assert_eq!(states["each[0]"], TaskState::Queued);
    assert_eq!(states["each[1]"], TaskState::Queued);
    assert!(!states.contains_key("each"), "{states:?}");
    let only_first = |ti: &TaskInstance| {
        if ti.map_index == 0 {
            Outcome::Succeed(None)
        } else {
            Outcome::Fail
        }
    };
    now += chrono::TimeDelta::seconds(1);
    // each[1] fails for good (no retries), so the join must be upstream_failed.
    crate::common::work(&store, "w1", now, &only_first).await;
    let (state, states) = drive(&store, &s, &run, now, &decide).await;
    assert_eq!(state, RunState::Failed);
    assert_eq!(states["each[0]"], TaskState::Success);
    assert_eq!(states["each[1]"], TaskState::Failed);
    assert_eq!(states["join"], TaskState::UpstreamFailed);

    // A second run where every item succeeds joins successfully.
    let run = trigger(&store, &dag, t("2026-01-02T00:00:00Z")).await;
    let (state, states) = drive(&store, &s, &run, t("2026-01-02T00:00:01Z"), &decide).await;
    assert_eq!(state, RunState::Success);
    let keys: Vec<&str> = states.keys().map(String::as_str).collect();
    assert_eq!(keys, ["each[0]", "each[1]", "join", "list"]);
}

/// Runs the `dyn` DAG once to its end, its `list` succeeding with `output`: the run, its
/// final state and its instances' states.
async fn drive_dyn(
    store: &Store,
    output: Value,
) -> (DagRun, RunState, BTreeMap<String, TaskState>) {
    let dag = add_dag(store, "dyn", FROM_UPSTREAM, false).await;
    let run = trigger(store, &dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(store, "s1");
    let decide = list_outputs(output);
    let (state, states) = drive(store, &s, &run, t("2026-01-01T00:00:01Z"), &decide).await;
    (run, state, states)
}

/// The log of the run's `each` placeholder, where a fan-out's error goes.
async fn each_log(store: &Store, run: &DagRun) -> Vec<String> {
    let each = store
        .find_task_instance(run.id, "each", -1)
        .await
        .expect("find")
        .expect("placeholder");
    let log = store.tail_logs(each.id, 0, 10).await.expect("log");
    log.into_iter().map(|l| l.line).collect()
}

async fn empty_upstream_list_skips_the_mapped_task(store: Store) {
    let (_, state, states) = drive_dyn(&store, json!([])).await;
    assert_eq!(states["each"], TaskState::Skipped);
    assert_eq!(states["join"], TaskState::Skipped);
    assert_eq!(state, RunState::Success);
}

async fn non_list_output_fails_the_mapped_task(store: Store) {
    let (run, state, states) = drive_dyn(&store, json!({"not": "a list"})).await;
    assert_eq!(states["each"], TaskState::Failed);
    assert_eq!(states["join"], TaskState::UpstreamFailed);
    assert_eq!(state, RunState::Failed);
    let log = each_log(&store, &run).await;
    assert!(
        log.iter()
            .any(|l| l.contains("must be a JSON list, but it is an object")),
        "{log:?}"
    );
}

async fn max_map_length_bounds_the_fan_out(store: Store) {
    let dag = add_dag(&store, "dyn", FROM_UPSTREAM, false).await;
    let s = nightshift_scheduler::Scheduler::new(
        store.clone(),
        nightshift_scheduler::SchedulerConfig {
            max_map_length: 3,
            ..config("s1")
        },
    );
    let decide = list_outputs(json!([1, 2, 3]));
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let (state, states) = drive(&store, &s, &run, t("2026-01-01T00:00:01Z"), &decide).await;
    assert_eq!(state, RunState::Success, "{states:?}");
    assert_eq!(states["each[2]"], TaskState::Success);

    let decide = list_outputs(json!([1, 2, 3, 4]));
    let run = trigger(&store, &dag, t("2026-01-02T00:00:00Z")).await;
    let (state, states) = drive(&store, &s, &run, t("2026-01-02T00:00:01Z"), &decide).await;
    assert_eq!(state, RunState::Failed);
    assert_eq!(states["each"], TaskState::Failed);
    let log = each_log(&store, &run).await;
    assert!(
        log.iter()
            .any(|l| l
                .contains("produced 4 items; at most 3 are allowed (the max_map_length setting)")),
        "{log:?}"
    );
}
