//! The files a DAG references (`sql_file`): read only from inside the DAG folder, only
//! regular files, only up to the size limit, and never blocking. Each bad reference is a
//! load error naming the file, the line and the field, and nothing read from outside the
//! folder reaches the store (where viewers would see it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use nightshift_scheduler::files::DEFAULT_MAX_SQL_FILE_BYTES;
use nightshift_scheduler::loader::{
    scan_folder_with, scan_paths_with, sync_folder, ScanOptions, SyncOptions,
};
use nightshift_store::{DagFilter, Store};

use crate::common::both_backends;
use crate::loader::{
    error_about, errors_loading_only, import_errors, scan_with_deadline, symlink, write,
};

both_backends!(references_outside_the_folder_never_reach_the_store);

/// A secret outside the DAG folder that no DAG may read.
const SECRET: &str = "s3cr3t-outside-the-dag-folder";

fn sql_dag(sql_file: &str) -> String {
    format!("[tasks.t]\ntype = \"sql\"\nconnection = \"wh\"\nsql_file = {sql_file:?}\n")
}

/// `../` enough times to reach `/` from any temp folder.
fn to_root() -> String {
    "../".repeat(32)
}

/// A DAG folder with one DAG per kind of bad `sql_file`, and good ones beside them.
struct Folder {
    dir: tempfile::TempDir,
    _outside: tempfile::TempDir,
    /// (DAG file name, text its error must contain).
    bad: Vec<(&'static str, &'static str)>,
    good: Vec<&'static str>,
}

fn folder() -> Folder {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let secret = outside.path().join("secret.sql");
    write(&secret, SECRET);
    let mut bad = Vec::new();

    write(&root.join("environ.toml"), sql_dag("/proc/self/environ"));
    bad.push(("environ.toml", "absolute paths are not allowed"));
    let passwd = format!("{}etc/passwd", to_root());
    write(&root.join("passwd.toml"), sql_dag(&passwd));
    bad.push(("passwd.toml", "leads outside the DAG folder"));
    let up = format!(
        "../{}/secret.sql",
        outside
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
    );
    write(&root.join("up.toml"), sql_dag(&up));
    bad.push(("up.toml", "leads outside the DAG folder"));
    symlink(&secret, &root.join("link.sql"));
    write(&root.join("link.toml"), sql_dag("link.sql"));
    bad.push(("link.toml", "leads outside the DAG folder"));
    symlink(Path::new("/dev/zero"), &root.join("zero.sql"));
    write(&root.join("zero.toml"), sql_dag("zero.sql"));
    bad.push(("zero.toml", "leads outside the DAG folder"));
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("fifo.sql"))
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    write(&root.join("fifo.toml"), sql_dag("fifo.sql"));
    bad.push(("fifo.toml", "not a regular file (a FIFO)"));
    // 100 MiB, sparse: rejected from its size without being read.
    let huge = std::fs::File::create(root.join("huge.sql")).expect("create");
    huge.set_len(100 * 1024 * 1024).expect("set_len");
    write(&root.join("huge.toml"), sql_dag("huge.sql"));
    bad.push((
        "huge.toml",
        "file is 104857600 bytes; the limit is 1048576 bytes (the max_sql_file_bytes setting)",
    ));
    write(&root.join("folder.toml"), sql_dag("sql"));
    bad.push(("folder.toml", "not a regular file (a folder)"));
    write(&root.join("missing.toml"), sql_dag("sql/nope.sql"));
    bad.push(("missing.toml", "does not exist"));
    std::fs::write(root.join("latin1.sql"), b"SELECT 'caf\xe9'").expect("write");
    write(&root.join("latin1.toml"), sql_dag("latin1.sql"));
    bad.push(("latin1.toml", "not valid UTF-8 (byte 0xe9 at offset 11)"));

    // Good: a file beside the DAG, `..` that stays inside, a symlink that stays inside, and
    // a file exactly at the limit.
    write(&root.join("sql/a.sql"), "SELECT 1");
    write(&root.join("plain.toml"), sql_dag("sql/a.sql"));
    write(&root.join("nested/up.toml"), sql_dag("../sql/a.sql"));
    symlink(&root.join("sql/a.sql"), &root.join("inside.sql"));
    write(&root.join("inside.toml"), sql_dag("inside.sql"));
    let at_limit = "-".repeat(DEFAULT_MAX_SQL_FILE_BYTES as usize);
    write(&root.join("sql/at_limit.sql"), &at_limit);
    write(&root.join("at_limit.toml"), sql_dag("sql/at_limit.sql"));
    let good = vec!["plain", "up", "inside", "at_limit"];
    Folder {
        dir,
        _outside: outside,
        bad,
        good,
    }
}

fn check(folder: &Folder, errors: &[(String, String)]) {
    for (name, text) in &folder.bad {
        let file = folder.dir.path().join(name).display().to_string();
        let message = error_about(errors, name, &file, text);
        // file:line:column: field: message
        let place = format!("{file}:4:12: tasks.t.sql_file: cannot read sql_file ");
        assert!(message.starts_with(&place), "{name}: {message}");
        assert!(
            !message.contains(SECRET),
            "{name}: leaks the secret: {message}"
        );
    }
    assert_eq!(errors.len(), folder.bad.len(), "{errors:#?}");
}

#[test]
fn every_bad_sql_file_is_a_load_error_naming_file_line_and_field() {
    let folder = folder();
    let scan = scan_with_deadline(folder.dir.path());
    check(&folder, &errors_loading_only(&scan, &folder.good));
    let at_limit = scan
        .dags
        .iter()
        .find(|d| d.dag.id == "at_limit")
        .expect("at_limit");
    let json = serde_json::to_string(&at_limit.dag).expect("json");
    assert!(json.contains(&"-".repeat(1000)), "the text is embedded");
}

#[test]
fn the_size_limit_is_a_setting() {
    let folder = folder();
    let options = ScanOptions {
        max_sql_file_bytes: 4,
        ..ScanOptions::default()
    };
    let scan = scan_folder_with(folder.dir.path(), &options);
    let plain = folder.dir.path().join("plain.toml").display().to_string();
    assert!(
        scan.errors[&plain].contains("file is 8 bytes; the limit is 4 bytes"),
        "{}",
        scan.errors[&plain]
    );
}

#[test]
fn validate_holds_files_to_the_dag_folder_they_are_in() {
    // `dags validate dags/nested/up.toml` with the settings' DAG folder: `../sql/a.sql`
    // stays inside it. Without the DAG folder, the file's own folder is the limit.
    let folder = folder();
    let file: PathBuf = folder.dir.path().join("nested/up.toml");
    let with_folder = ScanOptions {
        dags_folder: Some(folder.dir.path().to_owned()),
        ..ScanOptions::default()
    };
    let scan = scan_paths_with(std::slice::from_ref(&file), &with_folder);
    assert_eq!(scan.dags.len(), 1, "{:#?}", scan.errors);
    let scan = scan_paths_with(std::slice::from_ref(&file), &ScanOptions::default());
    let message = &scan.errors[&file.display().to_string()];
    assert!(
        message.contains("leads outside the DAG folder"),
        "{message}"
    );
    // A missing file is an error, not "ok".
    let missing = folder.dir.path().join("missing.toml");
    let scan = scan_paths_with(std::slice::from_ref(&missing), &with_folder);
    assert!(scan.dags.is_empty());
    assert!(scan.errors[&missing.display().to_string()].contains("does not exist"));
}

async fn references_outside_the_folder_never_reach_the_store(store: Store) {
    let folder = folder();
    let options = SyncOptions::default();
    let sync = sync_folder(&store, folder.dir.path(), &options, Utc::now());
    let report = tokio::time::timeout(Duration::from_secs(60), sync)
        .await
        .expect("the sync finished within 60 s")
        .expect("sync");
    assert_eq!(report.loaded, folder.good.len());
    let stored = import_errors(&store).await;
    check(&folder, &stored);
    for dag in store.list_dags(&DagFilter::default()).await.expect("dags") {
        let definition = dag.definition.to_string();
        assert!(!definition.contains(SECRET), "{}", dag.dag_id);
        assert!(!definition.contains("root:"), "{}: /etc/passwd", dag.dag_id);
    }
}
