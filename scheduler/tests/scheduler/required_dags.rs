//! The DAGs `require` tasks name, checked by the loader once the whole folder is read: an
//! unknown one is a load error naming file, line and field; the order files are read in
//! never matters; a required DAG whose file is removed makes the requirer a load error
//! while its last good definition stays loaded; `dags validate FILE` knows the folder's DAGs.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use nightshift_scheduler::loader::{scan_paths_with, sync_folder, ScanOptions, SyncOptions};
use nightshift_store::Store;

use crate::common::both_backends;

both_backends!(an_unknown_required_dag_is_a_load_error);

const EXTRACT: &str = "[tasks.load]\ntype = \"command\"\ncommand = \"true\"\n";

fn requires(dag: &str) -> String {
    format!("[tasks.wait]\ntype = \"require\"\ndag = \"{dag}\"\n")
}

async fn sync_now(store: &Store, dir: &Path) -> BTreeMap<String, String> {
    sync_folder(store, dir, &SyncOptions::default(), Utc::now())
        .await
        .expect("sync the DAG folder")
        .errors
}

async fn an_unknown_required_dag_is_a_load_error(store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [
        // Read before the DAG it requires: the check waits for the whole folder.
        ("a_marts.toml", requires("z_extract")),
        ("typo.toml", requires("z_extrct")),
        ("z_extract.toml", EXTRACT.to_owned()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write DAG file");
    }
    let errors = sync_now(&store, dir.path()).await;
    let typo = dir.path().join("typo.toml").display().to_string();
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        vec![&typo],
        "{errors:#?}"
    );
    assert_eq!(
        errors[&typo],
        format!(
            "{typo}:3:7: tasks.wait.dag: unknown DAG \"z_extrct\" (did you mean \"z_extract\"?)"
        )
    );
    assert!(store.get_dag("a_marts").await.expect("read").is_some());
    assert!(store.get_dag("typo").await.expect("read").is_none());

    // `dags validate FILE` checks one file against the DAG folder's DAGs.
    let options = ScanOptions {
        dags_folder: Some(dir.path().to_owned()),
        ..ScanOptions::default()
    };
    let one = scan_paths_with(&[dir.path().join("a_marts.toml")], &options);
    assert!(one.errors.is_empty(), "{:#?}", one.errors);
    assert_eq!(one.dags.len(), 1);

    // The required DAG's file is removed: the requirer becomes a load error and keeps
    // its last good definition (still active); the removed DAG is inactive.
    std::fs::remove_file(dir.path().join("z_extract.toml")).expect("remove");
    let errors = sync_now(&store, dir.path()).await;
    let marts = dir.path().join("a_marts.toml").display().to_string();
    assert_eq!(
        errors.get(&marts).map(String::as_str),
        Some(format!("{marts}:3:7: tasks.wait.dag: unknown DAG \"z_extract\"").as_str()),
        "{errors:#?}"
    );
    let kept = store.get_dag("a_marts").await.expect("read").expect("kept");
    assert!(kept.is_active, "its last good definition keeps running");
    let gone = store
        .get_dag("z_extract")
        .await
        .expect("read")
        .expect("kept");
    assert!(!gone.is_active);
}
