//! Retention (`Store::clean`): what goes and what stays, the dry run's counts against the
//! real run's, no orphan row left in any table (read from the database's catalog, so a
//! table added later without a cleanup fails here), keep-last, one DAG only, log and
//! audit retention, SQLite giving space back, and the maintenance lease.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::dag::Callback;
use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{
    AuditEntry, CallbackClaim, CallbackEvent, CallbackKind, CleanReport, CleanRequest, DagRun,
    LogLine, MaintenanceLease, NewCallback, NewDagVersion, NewDeadlineMiss, NewRun, RunType, Store,
    CLEANED_TABLES,
};
use nightshift_testkit::{claim_request, success};
use serde_json::json;

use crate::common::{both_backends, dag, new_ti, t};

both_backends!(
    clean_deletes_old_finished_runs_whole_and_the_dry_run_counts_the_same,
    keep_last_and_one_dag,
    log_retention_keeps_the_runs,
    audit_retention,
    a_run_with_a_callback_to_send_stays,
    sqlite_gives_space_back,
    maintenance_lease_is_held_by_one_scheduler,
);

/// Far enough after the seeded history that it is all older than 90 days.
fn now() -> DateTime<Utc> {
    t("2026-09-01T00:00:00Z")
}

fn ninety_days_ago() -> DateTime<Utc> {
    now() - TimeDelta::days(90)
}

/// One seeded run of the history.
struct Seed<'a> {
    dag_id: &'a str,
    day: u32,
    run_type: RunType,
    hash: &'a str,
    /// `None`: left running.
    end: Option<RunState>,
    tasks: usize,
    lines: usize,
}

impl Seed<'_> {
    fn new(dag_id: &str, day: u32) -> Seed<'_> {
        Seed {
            dag_id,
            day,
            run_type: RunType::Scheduled,
            hash: "hash-1",
            end: Some(RunState::Success),
            tasks: 3,
            lines: 4,
        }
    }
}

/// A run in January 2026 (day `day`) whose tasks each ran one try with `lines` log lines,
/// ended (or left running) the next day, as the scheduler and workers leave one.
async fn seed(store: &Store, s: Seed<'_>) -> DagRun {
    let logical_date = t("2026-01-01T03:00:00Z") + TimeDelta::days(i64::from(s.day) - 1);
    let ended = logical_date + TimeDelta::days(1);
    let prefix = match s.run_type {
        RunType::Scheduled => "scheduled",
        RunType::Manual => "manual",
        RunType::Backfill => "backfill",
    };
    let run = NewRun {
        dag_id: s.dag_id.to_owned(),
        run_id: format!("{prefix}__{}", logical_date.to_rfc3339()),
        run_type: s.run_type,
        logical_date,
        data_interval_start: logical_date,
        data_interval_end: ended,
        state: RunState::Queued,
        conf: json!({}),
        queued_at: ended,
        definition_hash: s.hash.to_owned(),
    };
    let tasks: Vec<_> = (0..s.tasks)
        .map(|n| new_ti(&format!("t{n}"), TaskState::Queued))
        .collect();
    let (run, _) = store
        .create_run_with_tasks(&run, &tasks)
        .await
        .expect("create run")
        .expect("a new run");
    store
        .set_run_state(run.id, RunState::Queued, RunState::Running, ended)
        .await
        .expect("run starts");
    let claimed = store
        .claim(&nightshift_store::ClaimRequest {
            limit: 1_000,
            ..claim_request("w1", ended)
        })
        .await
        .expect("claim");
    assert_eq!(
        claimed.len(),
        s.tasks,
        "only this run's instances were queued"
    );
    for running in claimed {
        let ti = running.instance().id;
        let lines: Vec<LogLine> = (0..s.lines)
            .map(|n| LogLine {
                ts: ended,
                stream: "stdout".to_owned(),
                line: format!("{n:04} {}", "x".repeat(1_000)),
            })
            .collect();
        store.append_logs(ti, 1, &lines).await.expect("logs");
        if s.end.is_some() {
            running.finish(success(ended)).await.expect("finish");
        }
    }
    match s.end {
        Some(end) => store
            .set_run_state(run.id, RunState::Running, end, ended)
            .await
            .expect("run ends"),
        None => run,
    }
}

fn callback(run: &DagRun) -> NewCallback {
    NewCallback {
        kind: CallbackKind::DagRun,
        event: CallbackEvent::Failure,
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: None,
        map_index: -1,
        try_number: 0,
        callback: Callback::Slack {
            webhook: "https://hooks.example/x".to_owned(),
        },
        payload: json!({"state": "failed", "error": null}),
        now: run.end_date.unwrap_or(run.queued_at),
    }
}

/// A callback of `run`, already sent.
async fn sent_callback(store: &Store, run: &DagRun) {
    let id = store
        .enqueue_callback(&callback(run))
        .await
        .expect("enqueue");
    let at = run.end_date.unwrap_or(run.queued_at);
    let claimed = store
        .claim_callbacks(&CallbackClaim {
            scheduler_id: "s1".to_owned(),
            limit: 100,
            lease: Duration::from_secs(60),
            now: at,
        })
        .await
        .expect("claim callbacks");
    assert!(claimed.iter().any(|c| c.id == id));
    for c in claimed {
        store.callback_sent(c.id, at).await.expect("sent");
    }
}

async fn deadline_missed(store: &Store, run: &DagRun) {
    let miss = NewDeadlineMiss {
        run: run.id,
        dag_id: run.dag_id.clone(),
        task_id: Some("t0".to_owned()),
        deadline: "within 1h".to_owned(),
        due_at: run.queued_at,
        failed: false,
        now: run.queued_at,
        callback: None,
    };
    store
        .record_deadline_miss(&miss)
        .await
        .expect("record")
        .expect("recorded once");
}

async fn source(store: &Store, dag_id: &str, hash: &str) {
    store
        .record_dag_version(&NewDagVersion {
            dag_id: dag_id.to_owned(),
            source_hash: hash.to_owned(),
            file_path: format!("dags/{dag_id}.toml"),
            source: format!("# {hash}\n"),
            definition: json!({}),
            loaded_at: t("2026-01-01T00:00:00Z"),
        })
        .await
        .expect("source");
}

/// The clean of everything older than 90 days, all DAGs, nothing kept beyond the rules.
fn ninety_days(dry_run: bool) -> CleanRequest {
    CleanRequest {
        runs_before: Some(ninety_days_ago()),
        dry_run,
        ..CleanRequest::default()
    }
}

/// The same clean, first as a dry run, then for real; the two reports must agree.
async fn clean_twice(store: &Store, req: CleanRequest) -> CleanReport {
    let dry = store
        .clean(&CleanRequest {
            dry_run: true,
            ..req.clone()
        })
        .await
        .expect("dry run");
    let real = store
        .clean(&CleanRequest {
            dry_run: false,
            ..req
        })
        .await
        .expect("clean");
    assert!(dry.dry_run && !real.dry_run);
    assert_eq!(
        dry.deleted, real.deleted,
        "the dry run counts what the clean deletes"
    );
    real
}

// ---- the database's catalog, as the orphan check reads it ----

/// Tables of nightshift's schema that hold no run history, and why they stay.
const NOT_HISTORY: &[(&str, &str)] = &[
    ("dags", "the DAGs themselves"),
    ("import_errors", "the loader's current errors"),
    ("pools", "configuration"),
    ("users", "accounts"),
    ("web_sessions", "sign-in, expire on their own"),
    ("api_tokens", "accounts"),
    ("components", "process heartbeats"),
    ("web_keys", "server secrets"),
    ("maintenance", "the background jobs' leases"),
    ("installation", "this installation's id"),
    (
        "external_stops",
        "jobs to stop; deleted with their task instance (ON DELETE CASCADE)",
    ),
    ("_sqlx_migrations", "the schema's version"),
    ("sqlite_sequence", "SQLite's AUTOINCREMENT counters"),
];

async fn scalar(store: &Store, sql: &str) -> i64 {
    if let Some(pool) = store.pg_pool() {
        return sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let pool = store.sqlite_pool().expect("one of the two backends");
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn strings(store: &Store, sql: &str) -> Vec<String> {
    if let Some(pool) = store.pg_pool() {
        return sqlx::query_scalar(sql)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let pool = store.sqlite_pool().expect("one of the two backends");
    sqlx::query_scalar(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every table of the database, from its catalog.
async fn tables(store: &Store) -> Vec<String> {
    let sql = if store.pg_pool().is_some() {
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
         ORDER BY table_name"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    };
    strings(store, sql).await
}

async fn columns(store: &Store, table: &str) -> Vec<String> {
    let sql = if store.pg_pool().is_some() {
        format!(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        )
    } else {
        format!("SELECT name FROM pragma_table_info('{table}')")
    };
    strings(store, &sql).await
}

async fn row_counts(store: &Store) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for table in tables(store).await {
        let n = scalar(store, &format!("SELECT COUNT(*) FROM {table}")).await;
        counts.insert(table, n);
    }
    counts
}

/// Checks that every table is either cleaned or known to hold no history, and that no
/// row anywhere refers to a run, task instance or run id that is gone, nor a DAG file
/// version nothing refers to.
async fn assert_no_orphans(store: &Store) {
    for table in tables(store).await {
        let cleaned = CLEANED_TABLES.contains(&table.as_str());
        let known = NOT_HISTORY.iter().any(|(name, _)| *name == table);
        assert!(
            cleaned || known,
            "table {table} is new: make `Store::clean` delete its rows with their run \
             (and add it to CLEANED_TABLES), or list it in NOT_HISTORY with the reason"
        );
        let cols = columns(store, &table).await;
        let has = |c: &str| cols.iter().any(|col| col == c);
        let mut checks = Vec::new();
        if has("run") {
            checks.push(format!(
                "SELECT COUNT(*) FROM {table} WHERE run NOT IN (SELECT id FROM dag_runs)"
            ));
        }
        if has("task_instance") {
            checks.push(format!(
                "SELECT COUNT(*) FROM {table}
                 WHERE task_instance NOT IN (SELECT id FROM task_instances)"
            ));
        }
        // The audit log keeps what people did, whatever became of the run.
        if has("dag_id") && has("run_id") && table != "audit_log" && table != "dag_runs" {
            checks.push(format!(
                "SELECT COUNT(*) FROM {table} x WHERE NOT EXISTS
                 (SELECT 1 FROM dag_runs r WHERE r.dag_id = x.dag_id AND r.run_id = x.run_id)"
            ));
        }
        if table == "dag_sources" {
            checks.push(
                "SELECT COUNT(*) FROM dag_sources s
                 WHERE NOT EXISTS (SELECT 1 FROM dags d WHERE d.dag_id = s.dag_id
                                   AND d.source_hash = s.source_hash)
                   AND NOT EXISTS (SELECT 1 FROM dag_runs r WHERE r.dag_id = s.dag_id
                                   AND r.definition_hash = s.source_hash)"
                    .to_owned(),
            );
        }
        for sql in checks {
            assert_eq!(scalar(store, &sql).await, 0, "orphans in {table}: {sql}");
        }
    }
}

async fn run_ids(store: &Store, dag_id: &str) -> Vec<String> {
    let mut ids = strings(
        store,
        &format!("SELECT run_id FROM dag_runs WHERE dag_id = '{dag_id}' ORDER BY logical_date"),
    )
    .await;
    ids.sort();
    ids
}

// ---- the tests ----

async fn clean_deletes_old_finished_runs_whole_and_the_dry_run_counts_the_same(store: Store) {
    store
        .upsert_dag(&dag("nightly", t("2026-01-01T00:00:00Z")))
        .await
        .expect("dag");
    source(&store, "nightly", "hash-0").await;
    source(&store, "nightly", "hash-1").await;
    source(&store, "nightly", "hash-2").await; // loaded once, never run, not current
                                               // Old finished runs: the first made from an older version of the file.
    let first = seed(
        &store,
        Seed {
            hash: "hash-0",
            ..Seed::new("nightly", 1)
        },
    )
    .await;
    sent_callback(&store, &first).await;
    deadline_missed(&store, &first).await;
    let failed = seed(
        &store,
        Seed {
            end: Some(RunState::Failed),
            ..Seed::new("nightly", 2)
        },
    )
    .await;
    sent_callback(&store, &failed).await;
    seed(&store, Seed::new("nightly", 3)).await;
    // A manual run, old and finished; one still running from as long ago.
    seed(
        &store,
        Seed {
            run_type: RunType::Manual,
            ..Seed::new("nightly", 4)
        },
    )
    .await;
    let running = seed(
        &store,
        Seed {
            run_type: RunType::Manual,
            end: None,
            ..Seed::new("nightly", 5)
        },
    )
    .await;
    deadline_missed(&store, &running).await;
    // The newest scheduled run: old, finished, and what catch-up continues from.
    let newest = seed(&store, Seed::new("nightly", 6)).await;
    store
        .append_audit(&AuditEntry {
            ts: t("2026-01-02T00:00:00Z"),
            actor: "cli".to_owned(),
            action: "task.clear".to_owned(),
            dag_id: Some("nightly".to_owned()),
            run_id: Some(first.run_id.clone()),
            task_id: None,
            ip: None,
            details: json!({}),
        })
        .await
        .expect("audit");

    let before = row_counts(&store).await;
    let report = clean_twice(&store, ninety_days(false)).await;
    let after = row_counts(&store).await;

    // Runs 1 to 4 went: 12 instances, 12 tries, 48 log lines, 2 callbacks, 1 miss, and
    // the two versions no run or current DAG uses.
    let expected: BTreeMap<String, u64> = [
        ("dag_runs", 4),
        ("task_instances", 12),
        ("attempts", 12),
        ("task_logs", 48),
        ("callback_requests", 2),
        ("deadline_misses", 1),
        ("dag_sources", 2),
        ("audit_log", 0),
    ]
    .into_iter()
    .map(|(table, n)| (table.to_owned(), n))
    .collect();
    assert_eq!(report.deleted, expected);
    for (table, n) in &before {
        let gone = u64::try_from(n - after[table]).expect("nothing was added");
        assert_eq!(
            gone,
            report.rows(table),
            "rows gone from {table} = reported"
        );
    }
    assert_no_orphans(&store).await;
    // The running run and the newest scheduled run stay with everything of theirs.
    assert_eq!(
        run_ids(&store, "nightly").await,
        vec![running.run_id.clone(), newest.run_id.clone()]
    );
    for run in [&running, &newest] {
        let tis = store.list_task_instances(run.id).await.expect("tis");
        assert_eq!(tis.len(), 3);
        for ti in tis {
            assert_eq!(store.list_attempts(ti.id).await.expect("tries").len(), 1);
            assert_eq!(store.count_log_lines(ti.id, 1).await.expect("lines"), 4);
        }
    }
    assert_eq!(
        store
            .deadline_misses(running.id)
            .await
            .expect("misses")
            .len(),
        1
    );
    assert!(store
        .get_dag_source("nightly", "hash-1")
        .await
        .expect("source")
        .is_some());
    // The audit log keeps its entry (its retention is separate, and off).
    assert_eq!(after["audit_log"], 1);
    // A second clean finds nothing left to do.
    let again = clean_twice(&store, ninety_days(false)).await;
    assert!(again.deleted.values().all(|n| *n == 0), "{again:?}");
}

async fn keep_last_and_one_dag(store: Store) {
    for dag_id in ["a", "b"] {
        store
            .upsert_dag(&dag(dag_id, t("2026-01-01T00:00:00Z")))
            .await
            .expect("dag");
    }
    for day in 1..=6 {
        seed(&store, Seed::new("a", day)).await;
    }
    // b's newest run is a manual one: its newest scheduled run (day 2) stays for catch-up.
    for day in 1..=2 {
        seed(&store, Seed::new("b", day)).await;
    }
    seed(
        &store,
        Seed {
            run_type: RunType::Manual,
            ..Seed::new("b", 3)
        },
    )
    .await;
    let b_before = run_ids(&store, "b").await;

    let report = clean_twice(
        &store,
        CleanRequest {
            dag_id: Some("a".to_owned()),
            keep_last: 4,
            ..ninety_days(false)
        },
    )
    .await;
    assert_eq!(report.rows("dag_runs"), 2);
    assert_eq!(run_ids(&store, "a").await.len(), 4, "a keeps its newest 4");
    assert!(!run_ids(&store, "a")
        .await
        .contains(&"scheduled__2026-01-02T03:00:00+00:00".to_owned()));
    assert_eq!(run_ids(&store, "b").await, b_before, "b untouched");

    // keep_last larger than the history: nothing of a goes.
    let report = clean_twice(
        &store,
        CleanRequest {
            dag_id: Some("a".to_owned()),
            keep_last: 10,
            ..ninety_days(false)
        },
    )
    .await;
    assert_eq!(report.rows("dag_runs"), 0);

    // Everything old, every DAG: each keeps only its newest scheduled run.
    let report = clean_twice(&store, ninety_days(false)).await;
    assert_eq!(report.rows("dag_runs"), 3 + 2);
    assert_eq!(
        run_ids(&store, "a").await,
        vec!["scheduled__2026-01-06T03:00:00+00:00".to_owned()]
    );
    assert_eq!(
        run_ids(&store, "b").await,
        vec!["scheduled__2026-01-02T03:00:00+00:00".to_owned()]
    );
    assert_no_orphans(&store).await;

    // Nothing is older than the cut-off: nothing goes.
    seed(&store, Seed::new("a", 7)).await;
    let report = clean_twice(
        &store,
        CleanRequest {
            runs_before: Some(t("2026-01-01T00:00:00Z")),
            ..CleanRequest::default()
        },
    )
    .await;
    assert!(report.deleted.values().all(|n| *n == 0), "{report:?}");
}

async fn log_retention_keeps_the_runs(store: Store) {
    store
        .upsert_dag(&dag("nightly", t("2026-01-01T00:00:00Z")))
        .await
        .expect("dag");
    let old = seed(&store, Seed::new("nightly", 1)).await;
    let running = seed(
        &store,
        Seed {
            run_type: RunType::Manual,
            end: None,
            ..Seed::new("nightly", 2)
        },
    )
    .await;
    let recent = seed(&store, Seed::new("nightly", 20)).await;
    let report = clean_twice(
        &store,
        CleanRequest {
            logs_before: Some(t("2026-01-10T00:00:00Z")),
            ..CleanRequest::default()
        },
    )
    .await;
    assert_eq!(report.rows("task_logs"), 12);
    assert_eq!(report.rows("dag_runs"), 0);
    assert_eq!(report.rows("task_instances"), 0);
    let lines = |run: i64| {
        let store = store.clone();
        async move {
            let mut n = 0;
            for ti in store.list_task_instances(run).await.expect("tis") {
                assert_eq!(store.list_attempts(ti.id).await.expect("tries").len(), 1);
                n += store.count_log_lines(ti.id, 1).await.expect("lines");
            }
            n
        }
    };
    assert_eq!(
        lines(old.id).await,
        0,
        "the old run keeps its tries, not its log"
    );
    assert_eq!(
        lines(running.id).await,
        12,
        "an unfinished run keeps its log"
    );
    assert_eq!(lines(recent.id).await, 12, "a recent run keeps its log");
    assert_no_orphans(&store).await;
    // Runs and logs at once: the runs pass takes days 1 and 3 whole (day 20 is the newest
    // scheduled run); the log pass takes day 20's lines and does not count day 3's twice.
    seed(&store, Seed::new("nightly", 3)).await;
    let report = clean_twice(
        &store,
        CleanRequest {
            runs_before: Some(t("2026-01-10T00:00:00Z")),
            logs_before: Some(t("2026-01-30T00:00:00Z")),
            ..CleanRequest::default()
        },
    )
    .await;
    assert_eq!(report.rows("dag_runs"), 2);
    assert_eq!(report.rows("task_logs"), 12 + 12);
    assert_eq!(lines(recent.id).await, 0);
    assert_eq!(lines(running.id).await, 12);
    assert_no_orphans(&store).await;
}

async fn audit_retention(store: Store) {
    for (day, dag_id) in [(1, "a"), (2, "b"), (30, "a")] {
        store
            .append_audit(&AuditEntry {
                ts: t("2026-01-01T00:00:00Z") + TimeDelta::days(day),
                actor: "cli".to_owned(),
                action: "dag.pause".to_owned(),
                dag_id: Some(dag_id.to_owned()),
                run_id: None,
                task_id: None,
                ip: None,
                details: json!({}),
            })
            .await
            .expect("audit");
    }
    let before = Some(t("2026-01-10T00:00:00Z"));
    let report = clean_twice(
        &store,
        CleanRequest {
            audit_before: before,
            dag_id: Some("a".to_owned()),
            ..CleanRequest::default()
        },
    )
    .await;
    assert_eq!(report.rows("audit_log"), 1);
    let report = clean_twice(
        &store,
        CleanRequest {
            audit_before: before,
            ..CleanRequest::default()
        },
    )
    .await;
    assert_eq!(report.rows("audit_log"), 1);
    assert_eq!(scalar(&store, "SELECT COUNT(*) FROM audit_log").await, 1);
}

async fn a_run_with_a_callback_to_send_stays(store: Store) {
    store
        .upsert_dag(&dag("nightly", t("2026-01-01T00:00:00Z")))
        .await
        .expect("dag");
    let pending = seed(
        &store,
        Seed {
            end: Some(RunState::Failed),
            ..Seed::new("nightly", 1)
        },
    )
    .await;
    store
        .enqueue_callback(&callback(&pending))
        .await
        .expect("enqueue");
    seed(&store, Seed::new("nightly", 2)).await;
    seed(&store, Seed::new("nightly", 3)).await;
    let report = clean_twice(&store, ninety_days(false)).await;
    assert_eq!(
        report.rows("dag_runs"),
        1,
        "only day 2: day 3 is the newest"
    );
    assert!(store.get_run(pending.id).await.expect("get").is_some());
    assert_eq!(report.rows("callback_requests"), 0);
    assert_no_orphans(&store).await;
}

async fn sqlite_gives_space_back(store: Store) {
    store
        .upsert_dag(&dag("nightly", t("2026-01-01T00:00:00Z")))
        .await
        .expect("dag");
    for day in 1..=3 {
        seed(
            &store,
            Seed {
                tasks: 10,
                lines: 100,
                ..Seed::new("nightly", day)
            },
        )
        .await;
    }
    let report = clean_twice(&store, ninety_days(false)).await;
    assert_eq!(report.rows("task_logs"), 2 * 10 * 100);
    match store.sqlite_auto_vacuum().await.expect("mode") {
        None => assert_eq!(report.pages_freed, 0, "PostgreSQL: autovacuum's job"),
        Some(mode) => {
            assert_eq!(mode, nightshift_store::SQLITE_INCREMENTAL, "new files");
            // 2,000 lines of 1 KB: at least 400 pages of 4 KiB.
            assert!(report.pages_freed >= 400, "{report:?}");
            let free = scalar(&store, "SELECT freelist_count FROM pragma_freelist_count").await;
            assert_eq!(free, 0);
        }
    }
    store.vacuum().await.expect("vacuum");
}

async fn maintenance_lease_is_held_by_one_scheduler(store: Store) {
    let lease = |owner: &str| MaintenanceLease {
        job: "retention".to_owned(),
        owner: owner.to_owned(),
        lease: Duration::from_secs(60),
    };
    let hour = Duration::from_secs(3_600);
    let (s1, s2) = (lease("s1"), lease("s2"));
    let (a, b) = tokio::join!(
        store.take_maintenance(&s1, hour),
        store.take_maintenance(&s2, hour)
    );
    let (a, b) = (a.expect("take"), b.expect("take"));
    assert!(a ^ b, "exactly one takes it: {a} {b}");
    let (holder, other) = if a { (&s1, &s2) } else { (&s2, &s1) };
    store.renew_maintenance(holder).await.expect("renew");
    assert!(store
        .renew_maintenance(other)
        .await
        .expect_err("not held")
        .is_stale());
    store.finish_maintenance(holder).await.expect("finish");
    // Finished a moment ago: not due again for an hour, for anyone.
    assert!(!store.take_maintenance(other, hour).await.expect("take"));
    assert!(!store.take_maintenance(holder, hour).await.expect("take"));
    // Due at once with no interval.
    assert!(store
        .take_maintenance(other, Duration::ZERO)
        .await
        .expect("take"));
}
