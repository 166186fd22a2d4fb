//! The DAG folder loader against bad input: every bad file gets one clear error that names
//! it and says what is wrong, stored like any import error; nothing panics or hangs, and
//! the good DAGs beside them load. The files are made at test time (a 50 MB file, a
//! FIFO and symlink loops do not belong in git).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use nightshift_scheduler::loader::{
    scan_folder, scan_paths, sync_folder, FolderScan, SyncOptions, MAX_DAG_FILE_BYTES,
};
use nightshift_store::{DagFilter, Store};

use crate::common::both_backends;

both_backends!(
    bad_files_are_stored_as_import_errors_and_good_dags_load,
    a_rescan_rewrites_only_changed_dags,
    the_file_text_is_kept_per_definition,
);

const GOOD: &str = "[tasks.a]\ntype = \"noop\"\n";
const DEPTH: usize = 100_000;

/// A DAG folder with good DAGs and every kind of bad file, and what each error must say.
struct BadFolder {
    dir: tempfile::TempDir,
    /// Keep alive: the target of the `outside` symlink.
    _outside: tempfile::TempDir,
    /// (file name relative to the folder, text the error must contain).
    expected: Vec<(String, String)>,
    good: Vec<&'static str>,
}

impl BadFolder {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Writes a file of a test folder, creating its parent folders.
pub(crate) fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

pub(crate) fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("{} -> {}: {e}", link.display(), target.display()));
}

fn bad_folder() -> BadFolder {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let mut expected = Vec::new();
    let mut expect = |name: &str, text: &str| expected.push((name.to_owned(), text.to_owned()));

    write(&root.join("good.toml"), GOOD.as_bytes());
    write(&root.join("nested/also_good.toml"), GOOD.as_bytes());

    // 50 MB: rejected from its size, without being read.
    let mut huge = std::fs::File::create(root.join("huge.toml")).expect("create");
    let line = format!("# {}\n", "x".repeat(1021));
    for _ in 0..50 * 1024 {
        huge.write_all(line.as_bytes()).expect("write");
    }
    expect(
        "huge.toml",
        &format!("file is 52428800 bytes; DAG files are limited to {MAX_DAG_FILE_BYTES} bytes"),
    );
    // One byte over the limit; exactly at the limit is fine (below).
    let mut over = GOOD.to_owned();
    over.push_str(&"#".repeat(MAX_DAG_FILE_BYTES as usize + 1 - over.len()));
    write(&root.join("over_limit.toml"), over.as_bytes());
    expect(
        "over_limit.toml",
        "DAG files are limited to 4194304 bytes (4 MiB)",
    );
    let mut at_limit = "[tasks.a]\ntype = \"noop\"\n#".to_owned();
    at_limit.push_str(&"#".repeat(MAX_DAG_FILE_BYTES as usize - at_limit.len()));
    write(&root.join("at_limit.toml"), at_limit.as_bytes());

    // Nesting far past any parser's stack.
    let arrays = format!("a = {}{}\n{GOOD}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    write(&root.join("deep_arrays.toml"), arrays.as_bytes());
    expect(
        "deep_arrays.toml",
        "arrays or inline tables nested too deeply",
    );
    let tables = format!(
        "a = {}1{}\n{GOOD}",
        "{b = ".repeat(DEPTH),
        "}".repeat(DEPTH)
    );
    write(&root.join("deep_tables.toml"), tables.as_bytes());
    expect(
        "deep_tables.toml",
        "arrays or inline tables nested too deeply",
    );
    let keys = format!("[params.{}]\n{GOOD}", vec!["k"; DEPTH].join("."));
    write(&root.join("deep_keys.toml"), keys.as_bytes());
    expect("deep_keys.toml", "keys nested too deeply");
    let unclosed = format!("a = {}\n{GOOD}", "[".repeat(DEPTH));
    write(&root.join("unclosed.toml"), unclosed.as_bytes());
    expect("unclosed.toml", "arrays or inline tables nested too deeply");

    // Not UTF-8: a Latin-1 "é" on line 2.
    write(
        &root.join("latin1.toml"),
        b"[tasks.a]\ntype = \"noop\" # caf\xe9\n",
    );
    expect(
        "latin1.toml",
        "latin1.toml:2:20: not valid UTF-8 (byte 0xe9 at offset 29); DAG files must be UTF-8",
    );
    write(&root.join("empty.toml"), b"");
    expect("empty.toml", "missing required field \"tasks\"");

    // A symlink loop inside the folder, and a dangling symlink.
    std::fs::create_dir(root.join("loop")).expect("mkdir");
    symlink(root, &root.join("loop/back_to_root"));
    expect(
        "loop/back_to_root",
        "symlink loop in the DAG folder; not followed",
    );
    symlink(
        Path::new("/nonexistent/dag.toml"),
        &root.join("dangling.toml"),
    );
    expect("dangling.toml", "cannot read");
    // A symlink to a folder outside is followed (deployments that sync a git checkout
    // beside the folder rely on it); its DAGs load like the others.
    write(&outside.path().join("outside_dag.toml"), GOOD.as_bytes());
    symlink(outside.path(), &root.join("outside"));

    // A FIFO would block a reader until a writer comes: it must not be opened.
    let fifo = root.join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    expect(
        "fifo.toml",
        "not a regular file (a FIFO); DAG files must be regular files",
    );
    // `/dev/null` by a DAG's name.
    symlink(Path::new("/dev/null"), &root.join("device.toml"));
    expect("device.toml", "not a regular file (a device)");

    // A folder named like a DAG file is a folder: searched, not read.
    write(&root.join("folder.toml/inner.toml"), GOOD.as_bytes());

    // Unreadable: permissions do not stop root (the tests run as root in CI), so this is
    // checked only when they apply.
    let unreadable = root.join("unreadable.toml");
    write(&unreadable, GOOD.as_bytes());
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .expect("chmod");
    let mut good = vec![
        "good",
        "also_good",
        "at_limit",
        "outside_dag",
        "inner",
        "unreadable",
    ];
    if std::fs::read(&unreadable).is_err() {
        expected.push((
            "unreadable.toml".to_owned(),
            "cannot read: Permission denied".to_owned(),
        ));
        good.retain(|id| *id != "unreadable");
    }

    BadFolder {
        dir,
        _outside: outside,
        expected,
        good,
    }
}

/// Scans on another thread, so that a hang (on a FIFO, say) fails the test instead of
/// stalling it.
pub(crate) fn scan_with_deadline(dir: &Path) -> FolderScan {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(scan_folder(&dir));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the scan finished within 60 s (did it block on a FIFO?)")
}

/// The scan's errors as (file, message) pairs, after checking that the DAGs it loaded are
/// exactly `good` (ids, in any order).
pub(crate) fn errors_loading_only(scan: &FolderScan, good: &[&str]) -> Vec<(String, String)> {
    let mut ids: Vec<&str> = scan.dags.iter().map(|d| d.dag.id.as_str()).collect();
    ids.sort_unstable();
    let mut good = good.to_vec();
    good.sort_unstable();
    assert_eq!(ids, good, "the DAGs that loaded");
    scan.errors.clone().into_iter().collect()
}

/// The stored import errors as (file, message) pairs.
pub(crate) async fn import_errors(store: &Store) -> Vec<(String, String)> {
    let errors = store.list_import_errors().await.expect("import errors");
    errors
        .into_iter()
        .map(|e| (e.file_path, e.message))
        .collect()
}

/// The load error about `file` (the bad file `name` of a test folder), which must say
/// `text`.
pub(crate) fn error_about<'a>(
    errors: &'a [(String, String)],
    name: &str,
    file: &str,
    text: &str,
) -> &'a str {
    let Some((_, message)) = errors.iter().find(|(f, _)| f == file) else {
        panic!("no error for {name}; errors: {errors:#?}");
    };
    assert!(
        message.contains(text),
        "{name}: expected {text:?} in {message}"
    );
    message
}

fn check_errors(folder: &BadFolder, errors: &[(String, String)]) {
    for (name, text) in &folder.expected {
        let file = folder.path(name).display().to_string();
        let message = error_about(errors, name, &file, text);
        assert!(
            message.starts_with(&file),
            "{name}: names the file: {message}"
        );
        assert!(
            message.len() < 20_000,
            "{name}: a short message, not {} bytes",
            message.len()
        );
    }
    assert_eq!(
        errors.len(),
        folder.expected.len(),
        "one error per bad file, none for good ones: {errors:#?}"
    );
}

#[test]
fn every_bad_file_gets_one_clear_error_and_the_rest_load() {
    let folder = bad_folder();
    let scan = scan_with_deadline(folder.dir.path());
    check_errors(&folder, &errors_loading_only(&scan, &folder.good));
}

#[test]
fn bad_files_named_directly_are_reported_too() {
    // `nightshift dags validate <file>...` reads the files it is given.
    let folder = bad_folder();
    let names = ["fifo.toml", "huge.toml", "latin1.toml", "good.toml"];
    let paths: Vec<PathBuf> = names.iter().map(|n| folder.path(n)).collect();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(scan_paths(&paths));
    });
    let scan = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the scan finished within 60 s");
    assert_eq!(scan.dags.len(), 1);
    assert_eq!(scan.errors.len(), 3, "{:#?}", scan.errors);
}

async fn bad_files_are_stored_as_import_errors_and_good_dags_load(store: Store) {
    let folder = bad_folder();
    let dir = folder.dir.path().to_owned();
    let report = sync_folder(&store, &dir, &SyncOptions::default(), Utc::now())
        .await
        .expect("sync");
    assert_eq!(report.loaded, folder.good.len());
    let stored = import_errors(&store).await;
    check_errors(&folder, &stored);
    let dags = store.list_dags(&DagFilter::default()).await.expect("dags");
    let mut ids: Vec<&str> = dags.iter().map(|d| d.dag_id.as_str()).collect();
    ids.sort_unstable();
    let mut good = folder.good.clone();
    good.sort_unstable();
    assert_eq!(ids, good);
}

async fn a_rescan_rewrites_only_changed_dags(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("same.toml"), GOOD).expect("write");
    std::fs::write(dir.path().join("edited.toml"), GOOD).expect("write");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let t1 = t0 + chrono::TimeDelta::seconds(30);
    sync_folder(&store, dir.path(), &SyncOptions::default(), t0)
        .await
        .expect("first sync");
    std::fs::write(
        dir.path().join("edited.toml"),
        "[tasks.a]\ntype = \"noop\"\n[tasks.b]\ntype = \"noop\"\n",
    )
    .expect("edit");
    let report = sync_folder(&store, dir.path(), &SyncOptions::default(), t1)
        .await
        .expect("rescan");
    assert_eq!(report.loaded, 2);
    let dags = store.list_dags(&DagFilter::default()).await.expect("list");
    let get = |id: &str| dags.iter().find(|d| d.dag_id == id).expect(id);
    // Both were parsed again; only the edited one was rewritten.
    assert_eq!(get("same").last_parsed_at, t1);
    assert_eq!(get("same").updated_at, t0);
    assert_eq!(get("edited").last_parsed_at, t1);
    assert_eq!(get("edited").updated_at, t1);
    assert_eq!(
        get("edited").definition["tasks"]
            .as_object()
            .map(|t| t.len()),
        Some(2)
    );
}

async fn the_file_text_is_kept_per_definition(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kept.toml");
    let first = "# first\n[tasks.a]\ntype = \"noop\"\n";
    std::fs::write(&file, first).expect("write");
    // Whole seconds: PostgreSQL keeps microseconds, `Utc::now()` has nanoseconds.
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    sync_folder(&store, dir.path(), &SyncOptions::default(), t0)
        .await
        .expect("first sync");
    let hash = |store: Store| async move {
        store
            .get_dag("kept")
            .await
            .expect("get")
            .expect("stored")
            .source_hash
    };
    let first_hash = hash(store.clone()).await;
    let kept = store
        .get_dag_source("kept", &first_hash)
        .await
        .expect("source")
        .expect("kept");
    assert_eq!(kept.source, first);
    assert_eq!(kept.file_path, file.display().to_string());
    // Edited (its meaning, not only a comment): the new text is kept under the new
    // hash, and the old one stays.
    let second = "# second\n[tasks.a]\ntype = \"noop\"\nretries = 1\n";
    std::fs::write(&file, second).expect("edit");
    sync_folder(&store, dir.path(), &SyncOptions::default(), t0)
        .await
        .expect("second sync");
    let second_hash = hash(store.clone()).await;
    assert_ne!(second_hash, first_hash);
    let source = |h: String| {
        let store = store.clone();
        async move {
            store
                .get_dag_source("kept", &h)
                .await
                .expect("source")
                .map(|s| s.source)
        }
    };
    assert_eq!(source(second_hash.clone()).await.as_deref(), Some(second));
    assert_eq!(source(first_hash).await.as_deref(), Some(first));
    // A DAG stored without its text (loaded before texts were kept) gets it on the next
    // pass, although its definition did not change.
    let heads = store.list_dag_heads().await.expect("heads");
    assert!(heads.iter().all(|h| h.has_source), "{heads:?}");
    let other = dir.path().join("old.toml");
    std::fs::write(&other, GOOD).expect("write");
    let scan = scan_folder(dir.path());
    let loaded = scan
        .dags
        .iter()
        .find(|d| d.dag.id == "old")
        .expect("old scanned");
    let definition = serde_json::to_value(&loaded.dag).expect("definition");
    // The loader's hash of a definition, so that the next sync finds it unchanged.
    let source_hash = loaded.dag.source_hash.clone();
    store
        .upsert_dag(&nightshift_store::DagUpsert {
            dag_id: "old".to_owned(),
            file_path: loaded.file.clone(),
            definition,
            source_hash,
            schedule: None,
            timezone: "UTC".to_owned(),
            description: None,
            owner: None,
            tags: Vec::new(),
            is_paused: true,
            now: t0,
        })
        .await
        .expect("stored without its text");
    let heads = store.list_dag_heads().await.expect("heads");
    assert!(
        !heads
            .iter()
            .find(|h| h.dag_id == "old")
            .expect("old")
            .has_source
    );
    sync_folder(
        &store,
        dir.path(),
        &SyncOptions::default(),
        t0 + chrono::TimeDelta::seconds(30),
    )
    .await
    .expect("third sync");
    let heads = store.list_dag_heads().await.expect("heads");
    let old = heads.iter().find(|h| h.dag_id == "old").expect("old");
    assert!(old.has_source, "{old:?}");
    // Found unchanged: only its text was added, the DAG itself not rewritten.
    let record = store.get_dag("old").await.expect("get").expect("old");
    assert_eq!(record.updated_at, t0);
    let kept = store
        .get_dag_source("old", &old.source_hash)
        .await
        .expect("source")
        .expect("kept");
    assert_eq!(kept.source, GOOD);
}
