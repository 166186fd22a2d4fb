//! DAGs and import errors.

use nightshift_store::{DagFilter, DagOverviewFilter, Store, StoreError};
use serde_json::json;

use crate::common::{both_backends, dag, t};

both_backends!(
    upsert_keeps_pause_and_round_trips_json,
    list_filter_and_mark_inactive,
    import_errors_are_replaced_as_a_set,
    search_takes_like_wildcards_literally,
);

async fn upsert_keeps_pause_and_round_trips_json(store: Store) {
    let t0 = t("2026-01-01T00:00:00.123456Z");
    let mut upsert = dag("nightly", t0);
    upsert.is_paused = true;
    upsert.definition = json!({
        "id": "nightly",
        "tasks": {"extract": {"type": "ecs", "for_each": ["Student", "Lesson"]}},
        "unicode": "夜間バッチ ✓",
        "numbers": [1, -2, 3.5, 1e30],
        "nested": {"null": null, "bool": true},
    });
    let created = store.upsert_dag(&upsert).await.expect("insert");
    assert_eq!(created.definition, upsert.definition);
    assert_eq!(created.tags, vec!["nightly".to_owned()]);
    assert!(created.is_paused);
    assert!(created.is_active);
    assert_eq!(created.created_at, t0);
    assert_eq!(created.last_parsed_at, t0);
    assert_eq!(created.next_dagrun_create_after, None);

    // Same content, later parse, asks to be unpaused: the stored pause flag wins and
    // updated_at does not move.
    let t1 = t("2026-01-01T00:05:00Z");
    let mut again = dag("nightly", t1);
    again.definition = upsert.definition.clone();
    again.is_paused = false;
    let updated = store.upsert_dag(&again).await.expect("update");
    assert!(updated.is_paused);
    assert_eq!(updated.created_at, t0);
    assert_eq!(updated.updated_at, t0);
    assert_eq!(updated.last_parsed_at, t1);

    // New content moves updated_at.
    let t2 = t("2026-01-01T00:10:00Z");
    let changed = nightshift_store::DagUpsert {
        source_hash: "hash-2".to_owned(),
        schedule: None,
        description: None,
        ..dag("nightly", t2)
    };
    let updated = store.upsert_dag(&changed).await.expect("update");
    assert_eq!(updated.updated_at, t2);
    assert_eq!(updated.schedule, None);
    assert_eq!(updated.description, None);
    assert_eq!(updated.source_hash, "hash-2");

    let next = t("2026-01-02T03:00:00Z");
    store
        .set_next_dagrun_create_after("nightly", Some(next))
        .await
        .expect("set next");
    let unpaused = store
        .set_paused("nightly", false, t2)
        .await
        .expect("unpause");
    assert!(!unpaused.is_paused);
    assert_eq!(unpaused.next_dagrun_create_after, Some(next));
    let fetched = store.get_dag("nightly").await.expect("get");
    assert_eq!(fetched, Some(unpaused));

    assert!(matches!(
        store.set_paused("missing", true, t2).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_next_dagrun_create_after("missing", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.get_dag("missing").await.expect("get"), None);
}

async fn list_filter_and_mark_inactive(store: Store) {
    let now = t("2026-01-01T00:00:00Z");
    for id in ["a", "b", "c"] {
        let mut upsert = dag(id, now);
        upsert.is_paused = id == "b";
        store.upsert_dag(&upsert).await.expect("upsert");
    }
    let ids = |dags: Vec<nightshift_store::DagRecord>| {
        dags.into_iter().map(|d| d.dag_id).collect::<Vec<_>>()
    };
    let all = store.list_dags(&DagFilter::default()).await.expect("list");
    assert_eq!(ids(all), ["a", "b", "c"]);
    let paused = DagFilter {
        paused: Some(true),
        ..DagFilter::default()
    };
    assert_eq!(ids(store.list_dags(&paused).await.expect("list")), ["b"]);
    let page = DagFilter {
        limit: Some(1),
        offset: 1,
        ..DagFilter::default()
    };
    assert_eq!(ids(store.list_dags(&page).await.expect("list")), ["b"]);
    assert_eq!(store.count_dags(&page).await.expect("count"), 3);

    let changed = store
        .mark_inactive_except(&["a".to_owned()], now)
        .await
        .expect("mark");
    assert_eq!(changed, 2);
    let active = DagFilter {
        active: Some(true),
        ..DagFilter::default()
    };
    assert_eq!(ids(store.list_dags(&active).await.expect("list")), ["a"]);
    // Already inactive DAGs are not counted again; an empty list deactivates all.
    assert_eq!(store.mark_inactive_except(&[], now).await.expect("mark"), 1);
    assert_eq!(store.count_dags(&active).await.expect("count"), 0);

    // A file that comes back reactivates its DAG.
    let back = store.upsert_dag(&dag("b", now)).await.expect("upsert");
    assert!(back.is_active);
    assert!(back.is_paused);
}

async fn import_errors_are_replaced_as_a_set(store: Store) {
    let now = t("2026-01-01T00:00:00Z");
    let first = vec![
        ("dags/b.toml".to_owned(), "line 3: unknown key".to_owned()),
        ("dags/a.toml".to_owned(), "cycle a -> b -> a".to_owned()),
    ];
    store
        .replace_import_errors(&first, now)
        .await
        .expect("replace");
    let listed = store.list_import_errors().await.expect("list");
    let pairs: Vec<_> = listed
        .iter()
        .map(|e| (e.file_path.as_str(), e.message.as_str(), e.updated_at))
        .collect();
    assert_eq!(
        pairs,
        [
            ("dags/a.toml", "cycle a -> b -> a", now),
            ("dags/b.toml", "line 3: unknown key", now),
        ]
    );

    // Two errors of one file.
    let second = ["bad cron", "bad timezone"].map(|m| ("dags/c.toml".to_owned(), m.to_owned()));
    store
        .replace_import_errors(&second, now)
        .await
        .expect("replace");
    let listed = store.list_import_errors().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].file_path, "dags/c.toml");
    assert_eq!(listed[0].message, "bad cron\nbad timezone");

    store.replace_import_errors(&[], now).await.expect("clear");
    assert!(store.list_import_errors().await.expect("list").is_empty());
}

/// The DAG search (API `dag_id_pattern`, UI `?q=`) is a case-insensitive substring match:
/// `_`, `%` and `\` are characters like any other, not LIKE wildcards (and not dropped:
/// `hello_commands` once found nothing).
async fn search_takes_like_wildcards_literally(store: Store) {
    let now = t("2026-01-01T00:00:00Z");
    for id in [
        "hello_commands",
        "helloXcommands",
        "hellocommands",
        "load_100%",
        "load_1000",
        "back\\slash",
        "backslash",
        "Mixed_Case",
    ] {
        store.upsert_dag(&dag(id, now)).await.expect("upsert");
    }
    let search = |term: &str| {
        let store = store.clone();
        let filter = DagOverviewFilter {
            search: Some(term.to_owned()),
            limit: 100,
            ..DagOverviewFilter::default()
        };
        let term = term.to_owned();
        async move {
            let found = store.dag_overviews(&filter).await.expect("search");
            let count = store.count_dag_overviews(&filter).await.expect("count");
            let mut ids: Vec<String> = found.into_iter().map(|o| o.dag.dag_id).collect();
            ids.sort();
            assert_eq!(count, ids.len() as i64, "{term:?}");
            ids
        }
    };
    assert_eq!(search("hello_commands").await, ["hello_commands"]);
    assert_eq!(search("o_c").await, ["hello_commands"]);
    assert_eq!(search("100%").await, ["load_100%"]);
    assert_eq!(search("%").await, ["load_100%"]);
    assert_eq!(
        search("_").await,
        ["Mixed_Case", "hello_commands", "load_100%", "load_1000"]
    );
    assert_eq!(search("k\\s").await, ["back\\slash"]);
    assert_eq!(search("mixed_c").await, ["Mixed_Case"]);
    assert_eq!(search("hello").await.len(), 3);
}
