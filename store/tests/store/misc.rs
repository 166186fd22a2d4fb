//! Logs, pools, audit log, users, component heartbeats, migrations.

use nightshift_core::state::TaskState;
use nightshift_store::{
    AuditEntry, AuditFilter, ComponentHeartbeat, ComponentKind, LogLine, NewTaskInstance, NewUser,
    Pool, Role, Store, StoreError, DEFAULT_POOL,
};
use serde_json::json;

use crate::common::{both_backends, new_ti, seed_run, t};

both_backends!(
    logs_append_page_and_tail,
    pools_crud_and_used_slots,
    audit_log_filters_newest_first,
    users_crud,
    component_heartbeats,
    migrate_twice_is_a_no_op,
    wake_ups_reach_other_processes_and_coalesce,
);

/// Another process's view: a store on its own pool, LISTENing.
async fn wake_ups_reach_other_processes_and_coalesce(store: Store) {
    use nightshift_store::Wake;
    use std::time::Duration;
    // In process, at once (both backends).
    store.wake(Wake::Workers).await;
    tokio::time::timeout(Duration::from_secs(1), store.wakeups().woken(Wake::Workers))
        .await
        .expect("woken in process");
    let Some(pool) = store.pg_pool() else {
        return;
    };
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .expect("listener");
    listener
        .listen(nightshift_store::WAKE_CHANNEL)
        .await
        .expect("listen");
    // The first wake-up is sent before `wake` returns: a CLI command may exit next.
    let other = Store::from_pg_pool(pool.clone());
    other.wake(Wake::Scheduler).await;
    drop(other);
    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification in time")
        .expect("a notification");
    assert_eq!(first.payload(), "scheduler");
    // A burst of wake-ups is folded into a few NOTIFYs, the last after the last call.
    for _ in 0..200 {
        store.wake(Wake::Scheduler).await;
    }
    let mut received = 0;
    while let Ok(Ok(notification)) =
        tokio::time::timeout(Duration::from_millis(300), listener.recv()).await
    {
        assert_eq!(notification.payload(), "scheduler");
        received += 1;
    }
    assert!(
        (2..=50).contains(&received),
        "200 wake-ups sent {received} NOTIFYs"
    );
}

async fn logs_append_page_and_tail(store: Store) {
    let run = seed_run(&store, "d", &[new_ti("a", TaskState::Pending)]).await;
    let ti = store.list_task_instances(run.id).await.expect("list")[0].id;
    let base = t("2026-01-02T03:00:00Z");
    let lines: Vec<LogLine> = (0..1200)
        .map(|i| LogLine {
            ts: base + chrono::Duration::milliseconds(i),
            stream: if i % 2 == 0 { "stdout" } else { "stderr" }.to_owned(),
            line: format!("line {i} ✓ 'quoted' \"double\""),
        })
        .collect();
    store.append_logs(ti, 1, &lines).await.expect("append");
    store.append_logs(ti, 1, &[]).await.expect("append nothing");
    store
        .append_logs(ti, 2, &lines[..3])
        .await
        .expect("append try 2");
    assert_eq!(store.count_log_lines(ti, 1).await.expect("count"), 1200);
    assert_eq!(store.count_log_lines(ti, 2).await.expect("count"), 3);
    assert_eq!(store.count_log_lines(ti, 3).await.expect("count"), 0);

    // Follow the log page by page, as the UI does.
    let mut after = 0;
    let mut read = Vec::new();
    loop {
        let page = store.read_logs(ti, 1, after, 500).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.line_no;
        read.extend(page);
    }
    assert_eq!(read.len(), 1200);
    for (row, line) in read.iter().zip(&lines) {
        assert_eq!(
            (row.ts, &row.stream, &row.line),
            (line.ts, &line.stream, &line.line)
        );
    }
    let tail = store.tail_logs(ti, 1, 2).await.expect("tail");
    let tail_lines: Vec<_> = tail.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(
        tail_lines,
        [lines[1198].line.as_str(), lines[1199].line.as_str()]
    );
    assert_eq!(tail[1].id, read[1199].id);
}

async fn pools_crud_and_used_slots(store: Store) {
    let default = store
        .get_pool(DEFAULT_POOL)
        .await
        .expect("get")
        .expect("seeded");
    assert_eq!(default.slots, 128);
    let etl = Pool {
        name: "etl".to_owned(),
        slots: 4,
        description: "warehouse loads".to_owned(),
    };
    assert_eq!(store.upsert_pool(&etl).await.expect("create"), etl);
    let resized = Pool {
        slots: 2,
        ..etl.clone()
    };
    assert_eq!(store.upsert_pool(&resized).await.expect("update"), resized);
    let pools = store.list_pools().await.expect("list");
    let names: Vec<_> = pools.into_iter().map(|p| p.name).collect();
    assert_eq!(names, [DEFAULT_POOL, "etl"]);
    assert!(matches!(
        store
            .upsert_pool(&Pool {
                slots: -1,
                ..etl.clone()
            })
            .await,
        Err(StoreError::Conflict { .. })
    ));

    let in_pool = |id: &str, slots| NewTaskInstance {
        pool: "etl".to_owned(),
        pool_slots: slots,
        ..new_ti(id, TaskState::Scheduled)
    };
    let run = seed_run(
        &store,
        "d",
        &[in_pool("a", 2), in_pool("b", 3), in_pool("c", 5)],
    )
    .await;
    assert_eq!(store.used_slots("etl").await.expect("used"), 0);
    for ti in store.list_task_instances(run.id).await.expect("list") {
        if ti.task_id != "c" {
            nightshift_testkit::force_state(&store, ti.id, TaskState::Queued).await;
        }
    }
    assert_eq!(store.used_slots("etl").await.expect("used"), 5);
    assert_eq!(store.used_slots(DEFAULT_POOL).await.expect("used"), 0);

    store.delete_pool("etl").await.expect("delete");
    assert_eq!(store.get_pool("etl").await.expect("get"), None);
    assert!(matches!(
        store.delete_pool("etl").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_pool(DEFAULT_POOL).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.get_pool(DEFAULT_POOL).await.expect("get").is_some());
}

async fn audit_log_filters_newest_first(store: Store) {
    let entry = |minute: u32, actor: &str, action: &str, dag: Option<&str>| AuditEntry {
        ts: t(&format!("2026-01-02T03:{minute:02}:00Z")),
        actor: actor.to_owned(),
        action: action.to_owned(),
        dag_id: dag.map(str::to_owned),
        run_id: dag.map(|_| "manual__1".to_owned()),
        task_id: None,
        ip: Some("192.0.2.7".to_owned()),
        details: json!({"downstream": true}),
    };
    let first = store
        .append_audit(&entry(1, "alice", "task.clear", Some("d")))
        .await
        .expect("append");
    let second = store
        .append_audit(&entry(2, "bob", "dag.pause", Some("e")))
        .await
        .expect("append");
    let third = store
        .append_audit(&entry(3, "alice", "pool.set", None))
        .await
        .expect("append");
    let ids = |records: Vec<nightshift_store::AuditRecord>| {
        records.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let all = store
        .list_audit(&AuditFilter::default())
        .await
        .expect("list");
    assert_eq!(all[2].details, json!({"downstream": true}));
    assert_eq!(all[2].ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(all[2].run_id.as_deref(), Some("manual__1"));
    assert_eq!(ids(all), [third, second, first]);
    let alice = AuditFilter {
        actor: Some("alice".to_owned()),
        ..AuditFilter::default()
    };
    assert_eq!(
        ids(store.list_audit(&alice).await.expect("list")),
        [third, first]
    );
    let on_e = AuditFilter {
        dag_id: Some("e".to_owned()),
        ..AuditFilter::default()
    };
    assert_eq!(ids(store.list_audit(&on_e).await.expect("list")), [second]);
    let page = AuditFilter {
        action: Some("task.clear".to_owned()),
        limit: Some(1),
        offset: 0,
        ..AuditFilter::default()
    };
    assert_eq!(ids(store.list_audit(&page).await.expect("list")), [first]);
}

async fn users_crud(store: Store) {
    let now = t("2026-01-02T03:00:00Z");
    let new = NewUser {
        username: "oncall".to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role: Role::Operator,
        now,
    };
    let created = store.create_user(&new).await.expect("create");
    assert_eq!(created.role, Role::Operator);
    assert!(!created.disabled);
    assert_eq!(created.created_at, now);
    assert!(matches!(
        store.create_user(&new).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_user_by_name("oncall").await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(
        store.get_user(created.id).await.expect("get"),
        Some(created)
    );
    assert_eq!(store.get_user_by_name("nobody").await.expect("get"), None);

    let admin = store
        .set_user_role("oncall", Role::Admin)
        .await
        .expect("role");
    assert_eq!(admin.role, Role::Admin);
    let disabled = store
        .set_user_disabled("oncall", true)
        .await
        .expect("disable");
    assert!(disabled.disabled);
    let rehashed = store
        .set_user_password_hash("oncall", "$argon2id$new")
        .await
        .expect("password");
    assert_eq!(rehashed.password_hash, "$argon2id$new");
    assert!(matches!(
        store.set_user_role("nobody", Role::Viewer).await,
        Err(StoreError::NotFound { .. })
    ));

    store
        .create_user(&NewUser {
            username: "auditor".to_owned(),
            role: Role::Viewer,
            ..new
        })
        .await
        .expect("create");
    let users = store.list_users().await.expect("list");
    let names: Vec<_> = users.into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["auditor", "oncall"]);
    assert_eq!(store.count_users().await.expect("count"), 2);
}

async fn component_heartbeats(store: Store) {
    let start = t("2026-01-02T03:00:00Z");
    let beat = |id: &str, kind, now| ComponentHeartbeat {
        id: id.to_owned(),
        kind,
        hostname: "host-1".to_owned(),
        pid: 4242,
        now,
    };
    store
        .heartbeat_component(&beat("scheduler-1", ComponentKind::Scheduler, start))
        .await
        .expect("beat");
    let later = start + chrono::Duration::seconds(5);
    let again = store
        .heartbeat_component(&beat("scheduler-1", ComponentKind::Scheduler, later))
        .await
        .expect("beat");
    assert_eq!(again.started_at, start);
    assert_eq!(again.heartbeat_at, later);
    store
        .heartbeat_component(&beat("worker-1", ComponentKind::Worker, start))
        .await
        .expect("beat");
    let listed: Vec<_> = store
        .list_components()
        .await
        .expect("list")
        .into_iter()
        .map(|c| (c.id, c.kind, c.pid))
        .collect();
    assert_eq!(
        listed,
        [
            ("scheduler-1".to_owned(), ComponentKind::Scheduler, 4242),
            ("worker-1".to_owned(), ComponentKind::Worker, 4242),
        ]
    );
}

async fn migrate_twice_is_a_no_op(store: Store) {
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
    assert!(["postgres", "sqlite"].contains(&store.backend_name()));
    assert_eq!(store.list_pools().await.expect("pools").len(), 1);
}

/// A process opening a SQLite file that another one holds locked past the busy timeout
/// (a migration or a large DAG sync on a loaded machine) waits for it instead of failing.
#[tokio::test]
async fn opening_a_busy_sqlite_file_waits_for_the_lock() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("busy.db");
    let mut holder = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("open");
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut holder)
        .await
        .expect("create");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("lock");
    let release = tokio::spawn(async move {
        // Longer than the 5 s busy timeout of one attempt.
        tokio::time::sleep(std::time::Duration::from_secs(7)).await;
        sqlx::query("COMMIT")
            .execute(&mut holder)
            .await
            .expect("unlock");
        holder.close().await.expect("close");
    });
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.expect("waits for the lock");
    store.migrate().await.expect("migrate");
    release.await.expect("release");
}
