//! Definition versions as the loader records them: a version is a distinct parsed
//! definition, so re-syncing an unchanged folder, or one whose files only had their
//! comments, whitespace or key order changed, makes none; a change of meaning makes one,
//! numbered after the last, with its text and definition kept.

use chrono::Utc;
use nightshift_scheduler::loader::{sync_folder, SyncOptions};
use nightshift_store::Store;

use crate::common::both_backends;

both_backends!(
    resyncs_of_the_same_definition_make_no_new_version,
    a_changed_definition_is_the_next_version,
);

const SYNCS: usize = 1_000;

/// The same DAG written the `i`-th way: comments, blank lines, spacing, the order of its
/// top-level keys, of its tables, of the keys inside them and of inline tables' keys all
/// vary with `i`; what it means does not.
fn variant(i: usize) -> String {
    let top = [
        "description = \"nightly versions\"",
        "schedule = \"@daily\"",
        "params = { region = \"eu\", limit = 10 }",
        "tags = [\"a\", \"b\"]",
    ];
    let params_swapped = "params = { limit = 10, region = \"eu\" }";
    let mut text = format!("# version test, edit {i}\n");
    for k in 0..top.len() {
        let line = top[(k + i) % top.len()];
        let line = if i % 2 == 1 && line.starts_with("params") {
            params_swapped
        } else {
            line
        };
        let pad = " ".repeat(i % 3);
        text.push_str(&line.replacen(" = ", &format!("{pad} = {pad}"), 1));
        text.push('\n');
        if i % 5 == k {
            text.push_str(&format!("\n# a comment {k} in edit {i}\n"));
        }
    }
    let extract = [
        "type = \"command\"",
        "command = \"echo extract\"",
        "env = { A = \"1\", B = \"2\" }",
        "retries = 2",
    ];
    let extract_env_swapped = "env = { B = \"2\", A = \"1\" }";
    let load = [
        "type = \"http\"",
        "depends_on = [\"extract\"]",
        "url = \"http://example.invalid/load\"",
        "json = { table = \"t\", meta = { x = 1, y = 2 } }",
    ];
    let load_json_swapped = "json = { meta = { y = 2, x = 1 }, table = \"t\" }";
    let table = |name: &str, keys: &[&str], swapped: (&str, &str)| {
        let mut t = format!(
            "[tasks.{name}]{}\n",
            if i.is_multiple_of(4) {
                "  # trailing"
            } else {
                ""
            }
        );
        for k in 0..keys.len() {
            let key = keys[(k + i / 2) % keys.len()];
            let key = if i.is_multiple_of(3) && key.starts_with(swapped.0) {
                swapped.1
            } else {
                key
            };
            t.push_str(key);
            t.push('\n');
        }
        t
    };
    let extract = table("extract", &extract, ("env", extract_env_swapped));
    let load = table("load", &load, ("json", load_json_swapped));
    if i.is_multiple_of(2) {
        text.push_str(&format!("\n{extract}\n{load}"));
    } else {
        text.push_str(&format!("\n{load}\n\n{extract}"));
    }
    text
}

async fn version_count(store: &Store, dag_id: &str) -> usize {
    store
        .list_dag_versions(dag_id)
        .await
        .expect("versions")
        .len()
}

async fn resyncs_of_the_same_definition_make_no_new_version(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("v.toml");
    std::fs::write(&file, variant(0)).expect("write");
    let options = SyncOptions::default();
    for _ in 0..SYNCS {
        let report = sync_folder(&store, dir.path(), &options, Utc::now())
            .await
            .expect("sync");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    assert_eq!(version_count(&store, "v").await, 1, "an unchanged folder");
    let first = store.get_dag("v").await.expect("get").expect("stored");
    // Each pass the file is rewritten another way (a new text each time, so the loader
    // cannot go by the text), and each is the same version.
    let mut texts = std::collections::BTreeSet::new();
    for i in 1..=SYNCS {
        let text = variant(i);
        std::fs::write(&file, &text).expect("rewrite");
        texts.insert(text);
        let report = sync_folder(&store, dir.path(), &options, Utc::now())
            .await
            .expect("sync");
        assert!(report.errors.is_empty(), "edit {i}: {:?}", report.errors);
    }
    assert!(texts.len() > 50, "the variants differ: {}", texts.len());
    let versions = store.list_dag_versions("v").await.expect("versions");
    assert_eq!(
        versions.len(),
        1,
        "comments, whitespace and key order: {versions:?}"
    );
    assert_eq!(versions[0].version, 1);
    let now = store.get_dag("v").await.expect("get").expect("stored");
    assert_eq!(now.source_hash, first.source_hash);
    assert_eq!(
        now.updated_at, first.updated_at,
        "the DAG was never rewritten"
    );
}

async fn a_changed_definition_is_the_next_version(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("v.toml");
    let options = SyncOptions::default();
    let sync = |text: String| {
        let (store, options, dir, file) = (
            store.clone(),
            options.clone(),
            dir.path().to_owned(),
            file.clone(),
        );
        async move {
            std::fs::write(&file, text).expect("write");
            sync_folder(&store, &dir, &options, Utc::now())
                .await
                .expect("sync");
            store
                .get_dag("v")
                .await
                .expect("get")
                .expect("stored")
                .source_hash
        }
    };
    let v1 = sync(variant(0)).await;
    let v2 = sync(variant(0).replace("echo extract", "echo extract --full")).await;
    // Back to the first meaning, written another way: the first version again, not a
    // third one.
    let back = sync(variant(7)).await;
    assert_ne!(v1, v2);
    assert_eq!(back, v1);
    let versions = store.list_dag_versions("v").await.expect("versions");
    let listed: Vec<(i64, &str)> = versions
        .iter()
        .map(|v| (v.version, v.source_hash.as_str()))
        .collect();
    assert_eq!(listed, [(2, v2.as_str()), (1, v1.as_str())], "newest first");
    // Each version keeps the text it was first loaded with and its definition.
    let kept = store
        .get_dag_source("v", &v2)
        .await
        .expect("source")
        .expect("kept");
    assert_eq!(kept.version, 2);
    assert!(kept.source.contains("echo extract --full"));
    let definition = store
        .get_dag_definition("v", &v1)
        .await
        .expect("definition")
        .expect("kept");
    assert_eq!(
        definition["tasks"]["extract"]["kind"]["command"],
        "echo extract"
    );
}
