//! Tests of run planning, readiness and clearing on small DAGs.

use chrono::TimeZone;

use super::*;
use crate::dag::parse_dag;

/// A DAG of just these tasks: the lines of its `[tasks]` table.
fn dag(tasks: &str) -> Dag {
    parse_dag("test.toml", &format!("[tasks]\n{tasks}")).unwrap_or_else(|e| panic!("{e}"))
}

const CHAIN: &str = r#"
a = { type = "noop" }
b = { type = "noop", depends_on = ["a"], retries = 2 }
c = { type = "noop", depends_on = ["b"] }
"#;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap()
}

fn view(id: i64, task_id: &str, state: TaskState) -> InstanceView {
    InstanceView {
        id,
        task_id: task_id.to_owned(),
        map_index: UNMAPPED,
        state,
        try_number: 0,
        next_retry_at: None,
    }
}

/// Clearing `task` alone; add `upstream`, `downstream` or `only_failed` with `..select(task)`.
fn select(task: &str) -> ClearSelection {
    ClearSelection {
        task_ids: vec![task.into()],
        ..ClearSelection::default()
    }
}

fn events(eval: &RunEvaluation) -> Vec<(i64, TaskEvent)> {
    eval.actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { id, event, .. } => Some((*id, *event)),
            Action::Expand { .. } => None,
        })
        .collect()
}

#[test]
fn plans_one_instance_per_task_and_item() {
    let d = dag(r#"
extract = { type = "noop", for_each = ["Student", "Lesson", "Teacher"] }
split = { type = "noop" }
each = { type = "noop", depends_on = ["split"], for_each = { from = "split" } }
"#);
    let planned = plan_run(&d);
    let keys: Vec<(&str, i32)> = planned
        .iter()
        .map(|p| (p.task_id.as_str(), p.map_index))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("each", -1),
            ("extract", 0),
            ("extract", 1),
            ("extract", 2),
            ("split", -1)
        ]
    );
    assert!(planned.iter().all(|p| p.max_tries == 1 && p.kind == "noop"));
}

/// The chain's instances `a`, `b` and `c` (ids 1, 2 and 3) in these states.
fn chain(a: TaskState, b: TaskState, c: TaskState) -> [InstanceView; 3] {
    [view(1, "a", a), view(2, "b", b), view(3, "c", c)]
}

#[test]
fn chain_runs_in_order() {
    use TaskState::{Failed, Pending, Skipped, Success, UpstreamFailed};
    let d = dag(CHAIN);
    let (schedule, up_failed) = (TaskEvent::Schedule, TaskEvent::UpstreamFailed);
    // Unfinished: the one transition each asks for, and no outcome yet.
    for (instances, next) in [
        (chain(Pending, Pending, Pending), (1, schedule)),
        (chain(Success, Pending, Pending), (2, schedule)),
        (chain(Success, Failed, Pending), (3, up_failed)),
    ] {
        let eval = evaluate_run(&d, &instances, now());
        assert_eq!(events(&eval), [next], "{instances:?}");
        assert_eq!(eval.actions.len(), 1, "{instances:?}");
        assert_eq!(eval.outcome, None, "{instances:?}");
    }
    // Finished: nothing to do, and the run's outcome.
    for (instances, outcome) in [
        (chain(Success, Failed, UpstreamFailed), RunState::Failed),
        (chain(Success, Success, Skipped), RunState::Success),
    ] {
        let eval = evaluate_run(&d, &instances, now());
        assert!(eval.actions.is_empty(), "{instances:?}");
        assert_eq!(eval.outcome, Some(outcome), "{instances:?}");
    }
}

#[test]
fn retries_wait_for_their_delay() {
    let d = dag(CHAIN);
    let mut waiting = view(2, "b", TaskState::UpForRetry);
    waiting.next_retry_at = Some(now() + chrono::Duration::seconds(10));
    let instances = [view(1, "a", TaskState::Success), waiting.clone()];
    assert!(evaluate_run(&d, &instances, now()).actions.is_empty());
    waiting.next_retry_at = Some(now());
    let instances = [view(1, "a", TaskState::Success), waiting];
    assert_eq!(
        events(&evaluate_run(&d, &instances, now())),
        vec![(2, TaskEvent::Schedule)]
    );
}

#[test]
fn waiting_tries_are_woken_at_their_next_poke() {
    let d = dag(CHAIN);
    let mut waiting = view(2, "b", TaskState::UpForReschedule);
    waiting.next_retry_at = Some(now() + chrono::Duration::seconds(30));
    let instances = [view(1, "a", TaskState::Success), waiting.clone()];
    let eval = evaluate_run(&d, &instances, now());
    assert!(eval.actions.is_empty(), "{eval:?}");
    assert_eq!(eval.outcome, None, "a waiting try keeps its run unfinished");
    waiting.next_retry_at = Some(now() - chrono::Duration::seconds(1));
    let instances = [view(1, "a", TaskState::Success), waiting];
    assert_eq!(
        events(&evaluate_run(&d, &instances, now())),
        vec![(2, TaskEvent::Schedule)]
    );
}

#[test]
fn vanished_tasks_are_removed_and_returning_ones_restored() {
    let d = dag(CHAIN);
    let instances = [
        view(1, "a", TaskState::Running),
        view(9, "gone", TaskState::Pending),
        view(10, "gone_done", TaskState::Success),
        view(2, "b", TaskState::Removed),
    ];
    let eval = evaluate_run(&d, &instances, now());
    assert_eq!(
        events(&eval),
        vec![(9, TaskEvent::Remove), (2, TaskEvent::Restore)]
    );
}

#[test]
fn fan_out_from_upstream_expands_once_upstream_succeeds() {
    let d = dag(r#"
list = { type = "noop" }
each = { type = "noop", depends_on = ["list"], for_each = { from = "list" } }
join = { type = "noop", depends_on = ["each"] }
"#);
    let instances = [
        view(1, "list", TaskState::Success),
        view(2, "each", TaskState::Pending),
        view(3, "join", TaskState::Pending),
    ];
    let eval = evaluate_run(&d, &instances, now());
    assert_eq!(
        eval.actions,
        vec![Action::Expand {
            id: 2,
            task_id: "each".into(),
            upstream: "list".into()
        }]
    );
    // The join waits for every mapped instance.
    let mut mapped = vec![view(1, "list", TaskState::Success)];
    for (i, state) in [TaskState::Success, TaskState::Running]
        .into_iter()
        .enumerate()
    {
        let mut v = view(10 + i as i64, "each", state);
        v.map_index = i as i32;
        mapped.push(v);
    }
    mapped.push(view(3, "join", TaskState::Pending));
    assert!(evaluate_run(&d, &mapped, now()).actions.is_empty());
}

#[test]
fn clearing_resets_selection_closure_and_left_behind_downstreams() {
    let d = dag(CHAIN);
    let mut b = view(2, "b", TaskState::Failed);
    b.try_number = 3;
    let instances = [
        view(1, "a", TaskState::Success),
        b,
        view(3, "c", TaskState::UpstreamFailed),
    ];
    let only_b = select("b");
    let actions = plan_clear(&d, &instances, &only_b);
    let ids: Vec<(i64, u32)> = actions.iter().map(|a| (a.id, a.max_tries)).collect();
    // b gets try 4..=6 (retries = 2); c never ran and was left upstream_failed by b.
    assert_eq!(ids, vec![(2, 6), (3, 1)]);

    let with_upstream = ClearSelection {
        upstream: true,
        only_failed: true,
        ..select("b")
    };
    let ids: Vec<i64> = plan_clear(&d, &instances, &with_upstream)
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        ids,
        vec![2, 3],
        "a succeeded, so only_failed leaves it alone"
    );

    let resets = plan_reset_after_mark_success(&d, &instances, &["b".into()]);
    assert_eq!(resets.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3]);
}

#[test]
fn marking_failed_resets_the_downstream_that_ran_or_will_run() {
    let d = dag(r#"
a = { type = "noop" }
b = { type = "noop", depends_on = ["a"] }
c = { type = "noop", depends_on = ["b"] }
d = { type = "noop", depends_on = ["b"], trigger_rule = "all_done" }
e = { type = "noop", depends_on = ["b"] }
f = { type = "noop", depends_on = ["b"] }
g = { type = "noop", depends_on = ["b"] }
"#);
    let ran = |id, task: &str, state| InstanceView {
        try_number: 1,
        ..view(id, task, state)
    };
    let instances = [
        ran(1, "a", TaskState::Success),
        ran(2, "b", TaskState::Success),
        ran(3, "c", TaskState::Success),
        ran(4, "d", TaskState::Running),
        ran(5, "e", TaskState::Failed),
        view(6, "f", TaskState::Pending),
        view(7, "g", TaskState::UpstreamFailed),
    ];
    let resets = plan_reset_after_mark_failed(&d, &instances, &["b".into()]);
    // c and d ran (or run) as if b were fine; e failed by itself; f and g are already
    // where the scheduler puts them; a is upstream.
    assert_eq!(resets.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 4]);
    assert!(resets.iter().all(|a| a.try_number == 1 && a.max_tries == 2));

    // Marking b success afterwards resets what was left upstream_failed, even after a
    // try; a task that skipped itself (a try) keeps its outcome.
    let after = [
        ran(2, "b", TaskState::Failed),
        ran(3, "c", TaskState::UpstreamFailed),
        view(4, "d", TaskState::Skipped),
        ran(5, "e", TaskState::Skipped),
    ];
    let resets = plan_reset_after_mark_success(&d, &after, &["b".into()]);
    assert_eq!(resets.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn queue_selection_respects_pools_dag_limits_and_order() {
    let candidate = |id, dag: &str, pool: &str, slots| QueueCandidate {
        id,
        dag_id: dag.into(),
        pool: pool.into(),
        pool_slots: slots,
    };
    let candidates = [
        candidate(1, "d1", "big", 3),
        candidate(2, "d1", "big", 2),
        candidate(3, "d1", "default_pool", 1),
        candidate(4, "d2", "default_pool", 1),
        candidate(5, "d2", "nope", 1),
        candidate(6, "d3", "default_pool", 1),
    ];
    let capacity = Capacity {
        pool_free: [("big".to_string(), 4), ("default_pool".to_string(), 10)].into(),
        dag_free: [("d1".to_string(), 2), ("d2".to_string(), 5)].into(),
        limit: 10,
    };
    // 1 takes 3 of 4 big slots, 2 needs 2 (no), 3 fills d1's limit, 4 fits, 5's pool does
    // not exist, d3 has no free task slot.
    assert_eq!(select_for_queue(&candidates, &capacity), vec![1, 3, 4]);
    let limited = Capacity {
        limit: 1,
        ..capacity
    };
    assert_eq!(select_for_queue(&candidates, &limited), vec![1]);
}

#[test]
fn tasks_added_to_the_file_are_planned_into_a_running_run() {
    let d = dag(r#"
a = { type = "noop" }
b = { type = "noop", depends_on = ["a"] }
loads = { type = "noop", depends_on = ["a"], for_each = ["x", "y"] }
"#);
    // A run created before `b` and `loads` existed.
    let instances = [view(1, "a", TaskState::Success)];
    let mut missing: Vec<_> = plan_missing(&d, &instances)
        .into_iter()
        .map(|p| (p.task_id, p.map_index))
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        [
            ("b".to_owned(), UNMAPPED),
            ("loads".to_owned(), 0),
            ("loads".to_owned(), 1)
        ]
    );
    // Nothing is missing once every task has an instance, removed ones included.
    let all = [
        view(1, "a", TaskState::Success),
        view(2, "b", TaskState::Pending),
        InstanceView {
            map_index: 0,
            ..view(3, "loads", TaskState::Pending)
        },
        view(4, "gone", TaskState::Removed),
    ];
    assert!(plan_missing(&d, &all).is_empty());
}

/// A chain `t00000 -> t00001 -> ...` of `n` tasks, built in memory (parsing 20,000 tasks
/// is not what this tests).
fn long_chain(n: usize) -> Dag {
    let mut d = dag("t = { type = \"noop\" }");
    let template = d.tasks.remove("t").expect("task t");
    for i in 0..n {
        let mut task = template.clone();
        task.id = format!("t{i:05}");
        if i > 0 {
            task.depends_on = vec![format!("t{:05}", i - 1)];
        }
        d.tasks.insert(task.id.clone(), task);
    }
    d
}

#[test]
fn clearing_downstream_of_a_long_chain_is_linear() {
    // Clearing downstream once asked every task for its downstreams by scanning all tasks:
    // 20,000 tasks took 46 s of CPU. Run on another thread so a regression fails in time.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let n = 20_000;
        let d = long_chain(n);
        let mut instances: Vec<InstanceView> = (0..n)
            .map(|i| view(i as i64, &format!("t{i:05}"), TaskState::UpstreamFailed))
            .collect();
        instances[0].state = TaskState::Failed;
        instances[0].try_number = 1;
        let started = std::time::Instant::now();
        let down = ClearSelection {
            downstream: true,
            ..select("t00000")
        };
        let from_start = plan_clear(&d, &instances, &down);
        let up = ClearSelection {
            upstream: true,
            ..select("t10000")
        };
        let middle = plan_clear(&d, &instances, &up);
        let _ = tx.send((from_start, middle, started.elapsed()));
    });
    let (from_start, middle, took) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("clearing a 20,000-task chain finished within 20 s");
    assert_eq!(from_start.len(), 20_000, "the task and all its downstreams");
    assert_eq!(
        from_start[0].max_tries, 2,
        "t00000 ran once; a fresh budget"
    );
    assert_eq!(from_start[19_999].id, 19_999);
    // The upstreams t00000..=t10000, and the downstreams it left behind (never ran,
    // upstream_failed): the rest of the chain.
    assert_eq!(middle.len(), 20_000);
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
}

#[test]
fn closures_follow_every_path_once() {
    // a -> b -> d, a -> c -> d, e alone; selecting b and d: b's downstream d is listed
    // once, and the start d is included because b reaches it.
    let d = dag(r#"
a = { type = "noop" }
b = { type = "noop", depends_on = ["a"] }
c = { type = "noop", depends_on = ["a"] }
d = { type = "noop", depends_on = ["b", "c"] }
e = { type = "noop" }
"#);
    let instances: Vec<InstanceView> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, t)| view(i as i64, t, TaskState::Success))
        .collect();
    let ids = |selection: ClearSelection| -> Vec<i64> {
        plan_clear(&d, &instances, &selection)
            .iter()
            .map(|a| a.id)
            .collect()
    };
    let down = ClearSelection {
        downstream: true,
        ..select("a")
    };
    assert_eq!(ids(down), [0, 1, 2, 3]);
    let up = ClearSelection {
        upstream: true,
        ..select("d")
    };
    assert_eq!(ids(up), [0, 1, 2, 3]);
    let just_c = ClearSelection {
        upstream: true,
        downstream: true,
        ..select("c")
    };
    assert_eq!(ids(just_c), [0, 2, 3]);
    assert_eq!(d.leaves(), ["d", "e"]);
}
