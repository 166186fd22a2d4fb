//! DAG loading: reads a folder of `*.toml` DAG files, validates each one on its own, and
//! syncs the result into the store. One bad file never stops the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::{parse_dag_with, Dag, ParseOptions, DEFAULT_MAX_TASKS};
use nightshift_store::{DagHead, DagUpsert, NewDagVersion, Store, StoreError};
use tokio_util::sync::CancellationToken;
use walkdir::WalkDir;

use crate::files::{read_regular_file, DagFolder, FileError, DEFAULT_MAX_SQL_FILE_BYTES};

/// Files larger than this are rejected without being read. DAG files are a few KiB; a
/// bigger one is a mistake (a data file named `*.toml`, a runaway generator), and parsing
/// it would stall every scheduler's DAG sync.
pub const MAX_DAG_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What one pass over a DAG folder found.
#[derive(Debug, Default)]
pub struct FolderScan {
    /// Valid DAGs, with the file each came from.
    pub dags: Vec<LoadedDag>,
    /// Per-file error text (one error a line), keyed by the file's path.
    pub errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct LoadedDag {
    pub file: String,
    pub dag: Dag,
    /// The file's text as read (kept by the store per definition, for the UI).
    pub source: String,
}

/// How a scan reads and checks DAG files.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Checks that need facts from outside the file (connections, the task limit).
    pub parse: ParseOptions,
    /// The largest file a DAG may reference (`sql_file`), in bytes.
    pub max_sql_file_bytes: u64,
    /// The DAG folder of the settings. Files a DAG references must lie inside the folder
    /// being scanned; a path given to [`scan_paths_with`] that lies inside this folder is
    /// held to this folder instead (so `dags validate dags/x.toml` reads what the
    /// scheduler reads), and one outside it to its own folder.
    pub dags_folder: Option<PathBuf>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            parse: ParseOptions::default(),
            max_sql_file_bytes: DEFAULT_MAX_SQL_FILE_BYTES,
            dags_folder: None,
        }
    }
}

/// Reads every `*.toml` file under `paths` (folders recursively; files as given).
pub fn scan_paths(paths: &[PathBuf]) -> FolderScan {
    scan_paths_with(paths, &ScanOptions::default())
}

/// [`scan_paths`] with extra checks (known connections, limits, the DAG folder).
pub fn scan_paths_with(paths: &[PathBuf], options: &ScanOptions) -> FolderScan {
    let mut scan = FolderScan::default();
    let settings_folder = options
        .dags_folder
        .as_deref()
        .and_then(|dir| DagFolder::new(dir, options.max_sql_file_bytes).ok());
    for path in paths {
        let own = if path.is_dir() {
            path.as_path()
        } else {
            // `x.toml`'s parent is the empty path: the working directory.
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| Path::new("."))
        };
        let folder = match &settings_folder {
            Some(folder) if folder.contains(path) => Ok(folder.clone()),
            _ => DagFolder::new(own, options.max_sql_file_bytes),
        };
        if path.is_dir() {
            scan_folder_into(path, &folder, &mut scan, &options.parse);
        } else {
            load_file_into(path, &folder, &mut scan, &options.parse);
        }
    }
    reject_duplicate_ids(&mut scan);
    // A file checked on its own may require a DAG of the settings' folder: those count
    // too (read only when a required DAG is not among the scanned ones).
    let mut also_known = BTreeSet::new();
    if let Some(folder) = &options.dags_folder {
        let scanned: BTreeSet<&str> = scan.dags.iter().map(|d| d.dag.id.as_str()).collect();
        let outside = scan.dags.iter().any(|d| {
            d.dag
                .required_dags()
                .iter()
                .any(|(_, dag)| !scanned.contains(dag))
        });
        if outside && !paths.iter().any(|p| p == folder) {
            let mut whole = FolderScan::default();
            let dir = DagFolder::new(folder, options.max_sql_file_bytes);
            scan_folder_into(folder, &dir, &mut whole, &options.parse);
            also_known.extend(whole.dags.into_iter().map(|d| d.dag.id));
        }
    }
    check_required_dags(&mut scan, &also_known, &BTreeMap::new());
    scan
}

/// Reads every `*.toml` file under `dir`, recursively, following symlinks (loops are
/// reported as errors, not followed forever).
pub fn scan_folder(dir: &Path) -> FolderScan {
    scan_folder_with(dir, &ScanOptions::default())
}

/// [`scan_folder`] with extra checks (known connections, limits). Files the DAGs
/// reference must lie inside `dir`.
pub fn scan_folder_with(dir: &Path, options: &ScanOptions) -> FolderScan {
    let mut scan = scan_folder_unchecked(dir, options);
    check_required_dags(&mut scan, &BTreeSet::new(), &BTreeMap::new());
    scan
}

/// [`scan_folder_with`] without the check of the DAGs `require` tasks name.
fn scan_folder_unchecked(dir: &Path, options: &ScanOptions) -> FolderScan {
    let mut scan = FolderScan::default();
    let folder = DagFolder::new(dir, options.max_sql_file_bytes);
    scan_folder_into(dir, &folder, &mut scan, &options.parse);
    reject_duplicate_ids(&mut scan);
    scan
}

/// Rejects each scanned DAG whose `require` tasks name a DAG that is not known, with an
/// error naming the file, line and field. Known are: the scanned valid DAGs, `also_known`,
/// and each DAG of `stored` (by file) whose file now has errors (it keeps its last good
/// definition, so it keeps running). Checked once every file is read, so the order of
/// the files never matters; repeated until nothing changes, as a DAG rejected here is no
/// longer known to the others.
pub fn check_required_dags(
    scan: &mut FolderScan,
    also_known: &BTreeSet<String>,
    stored: &BTreeMap<String, String>,
) {
    loop {
        let mut known = also_known.clone();
        known.extend(scan.dags.iter().map(|d| d.dag.id.clone()));
        known.extend(
            stored
                .iter()
                .filter(|(file, _)| scan.errors.contains_key(*file))
                .map(|(_, dag_id)| dag_id.clone()),
        );
        let errors = &mut scan.errors;
        let before = scan.dags.len();
        scan.dags.retain(
            |loaded| match loaded.dag.check_required_dags(&loaded.source, &known) {
                Ok(()) => true,
                Err(found) => {
                    errors.insert(loaded.file.clone(), found.to_string());
                    false
                }
            },
        );
        if scan.dags.len() == before {
            return;
        }
    }
}

fn scan_folder_into(
    dir: &Path,
    folder: &std::io::Result<DagFolder>,
    scan: &mut FolderScan,
    options: &ParseOptions,
) {
    if !dir.exists() {
        scan.errors.insert(
            dir.display().to_string(),
            format!("{}: DAG folder does not exist", dir.display()),
        );
        return;
    }
    let walker = WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        // Hidden files and folders inside the DAG folder are skipped (editors' swap files,
        // `.git`); the folder itself may live anywhere.
        .filter_entry(|entry| entry.depth() == 0 || !is_hidden(entry.file_name()));
    for entry in walker {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                // Anything named `*.toml` but a folder is read, so that a FIFO, socket or
                // device by that name is reported instead of silently skipped.
                if !entry.file_type().is_dir() && path.extension().is_some_and(|ext| ext == "toml")
                {
                    load_file_into(path, folder, scan, options);
                }
            }
            Err(err) => {
                let at = err
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| dir.display().to_string());
                let message = if err.loop_ancestor().is_some() {
                    format!("{at}: symlink loop in the DAG folder; not followed")
                } else {
                    format!("{at}: cannot read: {err}")
                };
                scan.errors.insert(at, message);
            }
        }
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with('.') && n.len() > 1 && n != "..")
}

/// Reads, parses and validates one DAG file, then embeds the files it references (read
/// from inside `folder` only), recording the DAG or the file's errors in `scan`.
fn load_file_into(
    path: &Path,
    folder: &std::io::Result<DagFolder>,
    scan: &mut FolderScan,
    options: &ParseOptions,
) {
    let file = path.display().to_string();
    let source = match read_source(path) {
        Ok(source) => source,
        Err(message) => {
            scan.errors.insert(file, message);
            return;
        }
    };
    let mut dag = match parse_dag_with(&file, &source, options) {
        Ok(dag) => dag,
        Err(errors) => {
            scan.errors.insert(file, errors.to_string());
            return;
        }
    };
    let embedded = dag.embed_sql_files(&source, |relative| match folder {
        Ok(folder) => folder.read_referenced(path, relative),
        Err(err) => Err(FileError::Io(std::io::Error::new(
            err.kind(),
            format!("the DAG folder cannot be resolved: {err}"),
        ))),
    });
    match embedded {
        Ok(()) => scan.dags.push(LoadedDag { file, dag, source }),
        Err(errors) => {
            scan.errors.insert(file, errors.to_string());
        }
    }
}

/// Reads one DAG file: a regular file of at most [`MAX_DAG_FILE_BYTES`] of UTF-8. Never
/// opens anything else (opening a FIFO would block until a writer comes) and never reads
/// past the limit, even if the file grows while it is read.
fn read_source(path: &Path) -> Result<String, String> {
    let file = path.display();
    let bytes = read_regular_file(path, MAX_DAG_FILE_BYTES, "4 MiB").map_err(|err| match err {
        FileError::NotRegular { kind } => {
            format!("{file}: not a regular file ({kind}); DAG files must be regular files")
        }
        FileError::TooBig { size, .. } => format!(
            "{file}: file is {} bytes; DAG files are limited to {MAX_DAG_FILE_BYTES} bytes \
             (4 MiB)",
            size.map_or_else(
                || format!("more than {MAX_DAG_FILE_BYTES}"),
                |s| s.to_string()
            )
        ),
        other => format!("{file}: cannot read: {other}"),
    })?;
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let valid = &err.as_bytes()[..offset];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        format!(
            "{file}:{line}:{column}: not valid UTF-8 (byte 0x{:02x} at offset {offset}); DAG \
             files must be UTF-8",
            err.as_bytes()[offset]
        )
    })
}

/// Two files defining the same DAG id: both are rejected, so that neither silently wins.
fn reject_duplicate_ids(scan: &mut FolderScan) {
    let mut files_by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for loaded in &scan.dags {
        files_by_id
            .entry(loaded.dag.id.clone())
            .or_default()
            .push(loaded.file.clone());
    }
    for (id, files) in files_by_id.into_iter().filter(|(_, f)| f.len() > 1) {
        for file in &files {
            let others: Vec<&str> = files
                .iter()
                .filter(|f| *f != file)
                .map(String::as_str)
                .collect();
            scan.errors.insert(
                file.clone(),
                format!(
                    "{file}: id: DAG id {id:?} is also defined in {}",
                    others.join(", ")
                ),
            );
        }
        scan.dags.retain(|loaded| loaded.dag.id != id);
    }
}

/// What one sync of the DAG folder into the store did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub loaded: usize,
    pub deactivated: u64,
    /// Per-file errors, as in [`FolderScan::errors`].
    pub errors: BTreeMap<String, String>,
}

/// Logs each file's error once: WARN when a file's error is new or changed, INFO when a
/// file that had one loads again (or is gone). `reported` holds what was logged last.
fn report_errors(reported: &mut BTreeMap<String, String>, errors: BTreeMap<String, String>) {
    for (file, message) in &errors {
        if reported.get(file) != Some(message) {
            tracing::warn!(file = %file, error = %message, "DAG file not loaded");
        }
    }
    for file in reported.keys() {
        if !errors.contains_key(file) {
            tracing::info!(file = %file, "DAG file no longer has an error");
        }
    }
    *reported = errors;
}

/// Scans `dir` (embedding each DAG's SQL files), and writes the result to the store: every
/// valid DAG is upserted (new DAGs start paused unless `unpause_new`), DAGs whose files
/// vanished are marked inactive, and the import errors are replaced as a set.
///
/// A DAG whose file now has errors keeps its last good definition (and keeps running);
/// the error is shown beside it until the file is fixed.
pub async fn sync_folder(
    store: &Store,
    dir: &Path,
    options: &SyncOptions,
    now: DateTime<Utc>,
) -> Result<SyncReport, StoreError> {
    let scan_options = ScanOptions {
        parse: ParseOptions {
            connections: options.connections.clone(),
            max_tasks: options.max_tasks_per_dag,
            // Checked once the whole folder is read (`check_required_dags`).
            dags: None,
        },
        max_sql_file_bytes: options.max_sql_file_bytes,
        dags_folder: None,
    };
    // Read first: a stored DAG whose file now has errors still runs, so a `require` of it
    // is fine.
    let stored = store.list_dag_heads().await?;
    let stored_files: BTreeMap<String, String> = stored
        .iter()
        .filter(|d| d.is_active)
        .map(|d| (d.file_path.clone(), d.dag_id.clone()))
        .collect();
    // Reading and parsing files, and serializing and hashing the definitions, is blocking
    // work (and a whole folder of it): it runs on a blocking thread so that the web server
    // and the scheduler sharing this runtime keep answering while a large or hostile
    // folder loads.
    let (scan_dir, sync_options) = (dir.to_owned(), options.clone());
    let scanned = tokio::task::spawn_blocking(move || {
        let mut scan = scan_folder_unchecked(&scan_dir, &scan_options);
        check_required_dags(&mut scan, &BTreeSet::new(), &stored_files);
        let upserts: Vec<DagUpsert> = scan
            .dags
            .iter()
            .map(|loaded| dag_upsert(&loaded.file, &loaded.dag, &sync_options, now))
            .collect();
        (scan, upserts)
    })
    .await;
    let (scan, upserts) = match scanned {
        Ok(scanned) => scanned,
        // A panic while scanning stays a panic, as it was on the caller's thread.
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    let mut keep: Vec<String> = upserts.iter().map(|u| u.dag_id.clone()).collect();
    keep.extend(
        stored
            .iter()
            .filter(|d| scan.errors.contains_key(&d.file_path))
            .map(|d| d.dag_id.clone()),
    );
    // An unchanged DAG (same definition hash and file, still active) is only touched;
    // rewriting every definition on each rescan costs seconds with a thousand files.
    let current: HashMap<&str, &DagHead> = stored.iter().map(|d| (d.dag_id.as_str(), d)).collect();
    let (unchanged, changed): (Vec<&DagUpsert>, Vec<&DagUpsert>) = upserts.iter().partition(|u| {
        current.get(u.dag_id.as_str()).is_some_and(|d| {
            d.is_active && d.source_hash == u.source_hash && d.file_path == u.file_path
        })
    });
    let unchanged: Vec<String> = unchanged.into_iter().map(|u| u.dag_id.clone()).collect();
    store.touch_dags(&unchanged, now).await?;
    for upsert in changed {
        store.upsert_dag(upsert).await?;
    }
    // Each new version of a definition (its file's text and parsed definition, so a try
    // can run it later and the UI show it): after the DAG is stored, for each new version
    // and each stored one kept without them (texts since 0013, definitions since 0017).
    for (upsert, loaded) in upserts.iter().zip(&scan.dags) {
        let kept = current
            .get(upsert.dag_id.as_str())
            .is_some_and(|d| d.has_source && d.source_hash == upsert.source_hash);
        if !kept {
            store
                .record_dag_version(&NewDagVersion {
                    dag_id: upsert.dag_id.clone(),
                    source_hash: upsert.source_hash.clone(),
                    file_path: upsert.file_path.clone(),
                    source: loaded.source.clone(),
                    definition: upsert.definition.clone(),
                    loaded_at: now,
                })
                .await?;
        }
    }
    // A folder that is missing (unmounted, mistyped) deactivates nothing.
    let deactivated = if dir.is_dir() {
        store.mark_inactive_except(&keep, now).await?
    } else {
        0
    };
    let errors: Vec<(String, String)> = scan
        .errors
        .iter()
        .map(|(file, message)| (file.clone(), message.clone()))
        .collect();
    store.replace_import_errors(&errors, now).await?;
    Ok(SyncReport {
        loaded: upserts.len(),
        deactivated,
        errors: scan.errors,
    })
}

/// How [`sync_folder`] checks DAG files and treats DAGs it sees for the first time.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// New DAGs start unpaused (Airflow's `dags_are_paused_at_creation = False`).
    pub unpause_new: bool,
    /// When set, a task naming a connection outside this set is a load error.
    pub connections: Option<BTreeSet<String>>,
    /// The most task instances a run of one DAG starts with (`max_tasks_per_dag`).
    pub max_tasks_per_dag: usize,
    /// The largest `sql_file`, in bytes (`max_sql_file_bytes`).
    pub max_sql_file_bytes: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            unpause_new: false,
            connections: None,
            max_tasks_per_dag: DEFAULT_MAX_TASKS,
            max_sql_file_bytes: DEFAULT_MAX_SQL_FILE_BYTES,
        }
    }
}

fn dag_upsert(file: &str, dag: &Dag, options: &SyncOptions, now: DateTime<Utc>) -> DagUpsert {
    let definition = serde_json::to_value(dag).unwrap_or(serde_json::Value::Null);
    // The version is core's hash of the parsed definition (`Dag::version_hash`, embedded
    // SQL files included), so comments, whitespace and key order make no new version.
    let source_hash = dag.source_hash.clone();
    DagUpsert {
        dag_id: dag.id.clone(),
        file_path: file.to_owned(),
        definition,
        source_hash,
        schedule: dag.schedule.as_ref().map(|s| s.expression().to_owned()),
        timezone: dag.timezone.name().to_owned(),
        description: dag.description.clone(),
        owner: dag.owner.clone(),
        tags: dag.tags.clone(),
        is_paused: !options.unpause_new,
        now,
    }
}

/// Keeps the store in step with the DAG folder until `cancel` fires: syncs at once, then
/// again shortly after any file under `dir` changes (watched with `notify`), and every
/// `rescan` as a safety net (network file systems do not always report changes).
pub async fn watch_folder(
    store: Store,
    dir: PathBuf,
    options: SyncOptions,
    rescan: Duration,
    cancel: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the files (our own sync) raises access events: only changes count.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })
    .and_then(|mut watcher| {
        use notify::Watcher as _;
        watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
        Ok(watcher)
    });
    let _watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the DAG folder; rescanning every {rescan:?} instead");
            None
        }
    };
    // The errors last reported, by file: a broken file is reported when its error
    // changes, not on every pass.
    let mut reported = BTreeMap::new();
    loop {
        match sync_folder(&store, &dir, &options, Utc::now()).await {
            Ok(report) => {
                tracing::debug!(
                    loaded = report.loaded,
                    errors = report.errors.len(),
                    deactivated = report.deactivated,
                    "DAG folder synced"
                );
                report_errors(&mut reported, report.errors);
                store.wake(nightshift_store::Wake::Scheduler).await;
            }
            Err(err) => tracing::warn!(error = %err, "syncing the DAG folder failed; will retry"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(rescan) => {}
            Some(()) = rx.recv() => {
                // Editors write in bursts: wait for the folder to settle, then sync once.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while rx.try_recv().is_ok() {}
            }
        }
    }
}
