//! The `require` kind's pure decisions: folding a task's instances, when to re-run, and
//! the verdict on a look.

use std::time::Duration;

use chrono::TimeZone;
use nightshift_core::dag::{IfMissing, RequireTask, RerunOn};
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{DagRun, RunType};
use serde_json::json;

use super::*;

fn run(state: RunState) -> DagRun {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    DagRun {
        id: 42,
        dag_id: "extract".into(),
        run_id: "scheduled__2026-01-01T00:00:00+00:00".into(),
        run_type: RunType::Scheduled,
        logical_date: at,
        data_interval_start: at,
        data_interval_end: at,
        state,
        conf: json!({}),
        queued_at: at,
        start_date: None,
        end_date: None,
        definition_hash: "h".into(),
    }
}

fn task(task: Option<&str>, ignore_failure: bool) -> RequireTask {
    RequireTask {
        dag: "extract".into(),
        logical_date: Some("2026-01-01T00:00:00+00:00".into()),
        task: task.map(str::to_owned),
        if_missing: IfMissing::Wait,
        rerun_on: RerunOn::None,
        ignore_failure,
        poke_interval: Duration::from_secs(60),
    }
}

#[test]
fn a_tasks_instances_fold_into_one_state() {
    use TaskState as S;
    let check = |states: &[S], expected: Option<S>| {
        assert_eq!(
            Watched::of_task(states),
            expected.map(Watched::Task),
            "{states:?}"
        );
    };
    check(&[], None);
    check(&[S::Success], Some(S::Success));
    check(&[S::Success, S::Running], Some(S::Running));
    check(&[S::Failed, S::UpForRetry], Some(S::UpForRetry));
    check(&[S::Success, S::Failed, S::Skipped], Some(S::Failed));
    check(&[S::Success, S::Removed], Some(S::Removed));
    check(&[S::Skipped, S::Skipped], Some(S::Skipped));
    check(&[S::Skipped, S::Success], Some(S::Success));
}

#[test]
fn rerun_only_what_rerun_on_asks_of_a_finished_run() {
    let check = |rerun_on: RerunOn, watched: Watched, expected: bool| {
        assert_eq!(
            wants_rerun(rerun_on, watched),
            expected,
            "{rerun_on:?} {watched:?}"
        );
    };
    for watched in [
        Watched::Run(RunState::Queued),
        Watched::Run(RunState::Running),
        Watched::Task(TaskState::UpForRetry),
    ] {
        check(RerunOn::All, watched, false);
        check(RerunOn::Failed, watched, false);
    }
    check(RerunOn::None, Watched::Run(RunState::Failed), false);
    check(RerunOn::Failed, Watched::Run(RunState::Failed), true);
    check(RerunOn::Failed, Watched::Run(RunState::Success), false);
    check(RerunOn::All, Watched::Run(RunState::Success), true);
    check(
        RerunOn::Failed,
        Watched::Task(TaskState::UpstreamFailed),
        true,
    );
    check(RerunOn::All, Watched::Task(TaskState::Skipped), true);
}

#[test]
fn verdicts_name_the_run_its_id_and_state() {
    let key = "extract/scheduled__2026-01-01T00:00:00+00:00";
    let check =
        |task: RequireTask, run: DagRun, watched: Watched, expected: Result<Outcome, String>| {
            assert_eq!(verdict(&task, &run, watched), expected, "{watched:?}");
        };
    check(
        task(None, false),
        run(RunState::Running),
        Watched::Run(RunState::Running),
        Err(format!("the required run {key} (id 42) is running")),
    );
    check(
        task(None, false),
        run(RunState::Success),
        Watched::Run(RunState::Success),
        Ok(Outcome::Success {
            output: Some(json!({
                "dag_id": "extract",
                "run_id": "scheduled__2026-01-01T00:00:00+00:00",
                "logical_date": "2026-01-01T00:00:00+00:00",
                "state": "success",
            })),
        }),
    );
    check(
        task(None, false),
        run(RunState::Failed),
        Watched::Run(RunState::Failed),
        Ok(Outcome::retryable(format!(
            "the required run {key} (id 42) ended failed"
        ))),
    );
    // ignore_failure: the failure is taken as done, and the output says how it ended.
    let Ok(Outcome::Success {
        output: Some(output),
    }) = verdict(
        &task(None, true),
        &run(RunState::Failed),
        Watched::Run(RunState::Failed),
    )
    else {
        panic!("ignore_failure succeeds");
    };
    assert_eq!(output["state"], "failed");
    check(
        task(Some("copy"), false),
        run(RunState::Running),
        Watched::Task(TaskState::UpstreamFailed),
        Ok(Outcome::retryable(format!(
            "task copy of the required run {key} (id 42) ended upstream_failed (the run is running)"
        ))),
    );
    check(
        task(Some("copy"), false),
        run(RunState::Running),
        Watched::Task(TaskState::Skipped),
        Ok(Outcome::Skipped {
            reason: format!("task copy of the required run {key} (id 42) was skipped"),
            exit_code: None,
        }),
    );
    check(
        task(Some("copy"), false),
        run(RunState::Running),
        Watched::Task(TaskState::UpForReschedule),
        Err(format!(
            "task copy of the required run {key} (id 42) is up_for_reschedule"
        )),
    );
}

#[test]
fn required_runs_are_named_by_their_logical_date() {
    let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap();
    assert_eq!(required_run_id(at), "required__2026-01-02T03:00:00+00:00");
}

#[tokio::test]
async fn without_the_store_it_fails_at_once() {
    let ctx = crate::kind::tests::context(None);
    let outcome = super::run(&RequireSpec::new(task(None, false)), &ctx).await;
    assert_eq!(
        outcome,
        Outcome::fatal("the worker gave this require task no access to other DAGs' runs")
    );
}
