//! From TOML text to a validated [`Dag`]: parse, deserialize section by section, check
//! every value and the graph, and collect every error with its position.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::{suggest, DagError, DagErrors, LineIndex, Location, MAX_ERRORS};
use super::model::*;
use super::raw::*;
use super::ParseOptions;
use crate::duration::{parse_duration, parse_positive_duration};
use crate::schedule::Schedule;

/// Airflow's default sensor timeout, used when neither the task nor `[defaults]` set one.
const SENSOR_DEFAULT_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
const SENSOR_DEFAULT_POKE_INTERVAL: Duration = Duration::from_secs(60);
const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const CALLBACK_KEYS: [&str; 3] = ["on_failure", "on_success", "on_retry"];
const MAX_ID_LEN: usize = 250;

pub(super) fn parse(file: &str, source: &str, options: &ParseOptions) -> Result<Dag, DagErrors> {
    let (root, parse_errors) = DeTable::parse_recoverable(source);
    let root_span = root.span();
    let mut root = root.into_inner();
    let mut cx = Ctx {
        file,
        source,
        lines: LineIndex::new(source),
        index: PathIndex::build(&root),
        errors: Vec::new(),
        duplicate_tasks: Vec::new(),
    };
    if !parse_errors.is_empty() {
        for e in &parse_errors {
            cx.parse_error(e);
        }
        return Err(cx.finish());
    }
    check_templates(&mut cx, &root);

    let tasks_value = root.remove("tasks");
    let raw_dag: Option<RawDag> = cx.de(Spanned::new(root_span, DeValue::Table(root)), DAG_FIELDS);
    let dag_level = raw_dag.map(|raw| resolve_dag_level(&mut cx, file, raw));
    let defaults = dag_level
        .as_ref()
        .map_or_else(TaskDefaults::default, |d| d.defaults.clone());

    let mut tasks = BTreeMap::new();
    let mut deps: BTreeMap<String, Vec<Spanned<String>>> = BTreeMap::new();
    match tasks_value {
        None => cx.push(DagError::MissingField {
            at: cx.at_field(None, ""),
            name: "tasks".into(),
            hint: Some("add at least one [tasks.<id>] table".into()),
        }),
        Some(v) => {
            let span = v.span();
            match v.into_inner() {
                DeValue::Table(table) if table.is_empty() => cx.push(DagError::MissingField {
                    at: cx.at_field(Some(span), "tasks"),
                    name: "tasks".into(),
                    hint: Some("add at least one [tasks.<id>] table".into()),
                }),
                // Checked before the tasks are resolved: a file of a million tasks costs
                // little to reject and much to validate.
                DeValue::Table(table) if table.len() > options.max_tasks => {
                    let at = cx.at_field(Some(span), "tasks");
                    cx.push(too_many_tasks(at, table.len(), "tasks", options.max_tasks));
                }
                DeValue::Table(table) => {
                    let ids: BTreeSet<String> =
                        table.keys().map(|k| k.get_ref().to_string()).collect();
                    for (key, value) in table {
                        let id = key.get_ref().to_string();
                        if let Some((task, upstreams)) =
                            resolve_task(&mut cx, &id, key.span(), value, &defaults, &ids, options)
                        {
                            deps.insert(id.clone(), upstreams);
                            tasks.insert(id, task);
                        }
                    }
                    check_graph(&mut cx, &ids, &deps);
                    let instances: usize = tasks.values().map(instances_at_start).sum();
                    if instances > options.max_tasks {
                        let at = cx.at_field(Some(span), "tasks");
                        cx.push(too_many_tasks(
                            at,
                            instances,
                            "task instances (each item of a literal for_each list counts)",
                            options.max_tasks,
                        ));
                    }
                }
                other => cx.push(DagError::InvalidValue {
                    at: cx.at_field(Some(span), "tasks"),
                    message: format!("expected a table of tasks, found {}", other.type_str()),
                }),
            }
        }
    }

    if !cx.errors.is_empty() {
        return Err(cx.finish());
    }
    let Some(d) = dag_level else {
        return Err(cx.finish());
    };
    Ok(Dag {
        id: d.id,
        file: file.to_owned(),
        source_hash: sha256_hex(source),
        description: d.description,
        owner: d.owner,
        tags: d.tags,
        schedule: d.schedule,
        timezone: d.timezone,
        start_date: d.start_date,
        end_date: d.end_date,
        catchup: d.catchup,
        max_active_runs: d.max_active_runs,
        max_active_tasks: d.max_active_tasks,
        dagrun_timeout: d.dagrun_timeout,
        params: d.params,
        defaults: d.defaults,
        on_failure: d.on_failure,
        on_success: d.on_success,
        tasks,
    })
}

/// How many instances a run starts with for `task`: one, or one per literal item.
fn instances_at_start(task: &Task) -> usize {
    match &task.for_each {
        Some(ForEach::Items(items)) => items.len().max(1),
        _ => 1,
    }
}

fn too_many_tasks(at: Location, count: usize, what: &str, max: usize) -> DagError {
    DagError::InvalidValue {
        at,
        message: format!(
            "the DAG has {count} {what}; at most {max} are allowed (the max_tasks_per_dag \
             setting)"
        ),
    }
}

fn sha256_hex(source: &str) -> String {
    Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The error collector: knows the file, converts spans to lines and field paths.
struct Ctx<'s> {
    file: &'s str,
    source: &'s str,
    lines: LineIndex<'s>,
    index: PathIndex,
    errors: Vec<DagError>,
    /// `["tasks", id]` of each task reported as defined twice.
    duplicate_tasks: Vec<Vec<String>>,
}

impl Ctx<'_> {
    fn finish(mut self) -> DagErrors {
        self.errors.sort_by_key(|e| {
            (
                e.location().line.unwrap_or(0),
                e.location().column.unwrap_or(0),
            )
        });
        if self.errors.len() > MAX_ERRORS {
            let omitted = self.errors.len() - (MAX_ERRORS - 1);
            self.errors.truncate(MAX_ERRORS - 1);
            let at = self.at_field(None, "");
            self.errors.push(DagError::TooManyErrors { at, omitted });
        }
        DagErrors {
            file: self.file.to_owned(),
            errors: self.errors,
        }
    }

    fn push(&mut self, e: DagError) {
        self.errors.push(e);
    }

    /// A location at `span`, naming the field found there.
    fn at(&self, span: Range<usize>) -> Location {
        let field = self
            .index
            .lookup(span.start)
            .map(|e| e.path())
            .unwrap_or_default();
        self.at_field(Some(span), &field)
    }

    /// A location at `span` (if any), naming `field`.
    fn at_field(&self, span: Option<Range<usize>>, field: &str) -> Location {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.lines.line_col(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Location {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
        }
    }

    fn invalid(&mut self, span: Range<usize>, message: impl Into<String>) {
        let at = self.at(span);
        self.push(DagError::InvalidValue {
            at,
            message: message.into(),
        });
    }

    /// Deserializes one section; on failure records the error and returns `None`.
    /// `known` lists every key valid at that level, for "did you mean".
    fn de<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        known: &[&str],
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.serde_error(&e, known);
                None
            }
        }
    }

    fn serde_error(&mut self, e: &toml::de::Error, known: &[&str]) {
        let span = e.span().unwrap_or(0..0);
        let message = e.message();
        if let Some((name, expected)) = after_prefix(message, "unknown field `") {
            let candidates = expected
                .iter()
                .map(String::as_str)
                .chain(known.iter().copied());
            let suggestion = suggest(&name, candidates);
            let at = self.at(span);
            self.push(DagError::UnknownField {
                at,
                name,
                suggestion,
            });
        } else if let Some((name, _)) = after_prefix(message, "missing field `") {
            let table = self
                .index
                .lookup(span.start)
                .map(|e| e.path())
                .unwrap_or_default();
            let field = join_path(&table, &name);
            let at = self.at_field(Some(span), &field);
            self.push(DagError::MissingField {
                at,
                name,
                hint: None,
            });
        } else if let Some((name, expected)) = after_prefix(message, "unknown variant `") {
            let suggestion = suggest(&name, expected.iter().map(String::as_str));
            let mut message = format!(
                "unknown value {name:?}, expected one of: {}",
                expected.join(", ")
            );
            if let Some(s) = suggestion {
                message.push_str(&format!(" (did you mean {s:?}?)"));
            }
            self.invalid(span, message);
        } else {
            self.invalid(span, plain_types(message));
        }
    }

    fn parse_error(&mut self, e: &toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        if e.message().starts_with("duplicate key") {
            let name = self
                .source
                .get(span.clone())
                .unwrap_or_default()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned();
            let mut keys = self
                .index
                .lookup_or_before(span.start)
                .map(|e| e.keys.clone())
                .unwrap_or_default();
            if let Some(pos) = keys.iter().rposition(|k| *k == name) {
                keys.truncate(pos + 1);
            }
            // The keys of a task table defined a second time are duplicates too; the
            // task's own error says it all.
            if self
                .duplicate_tasks
                .iter()
                .any(|t| keys.len() >= 2 && keys[..2] == t[..])
            {
                return;
            }
            if keys.len() == 2 && keys[0] == "tasks" && keys[1] == name {
                let at = self.at_field(Some(span), &path_string(&keys));
                self.duplicate_tasks.push(keys);
                self.push(DagError::DuplicateTask { at, task: name });
                return;
            }
            let at = self.at_field(Some(span), &path_string(&keys));
            self.push(DagError::Syntax {
                at,
                message: format!("duplicate key {name:?}"),
            });
            return;
        }
        let at = self.at_field(Some(span), "");
        // toml stops at a fixed depth (its words for that are terse).
        let message = match e.message() {
            "recursion limit" => "keys nested too deeply".to_owned(),
            m if m.starts_with("cannot recurse further") => {
                "arrays or inline tables nested too deeply".to_owned()
            }
            m => m.to_owned(),
        };
        self.push(DagError::Syntax { at, message });
    }

    /// Parses an optional duration field; errors are recorded and yield `None`.
    fn duration(&mut self, v: Option<&Spanned<String>>, positive: bool) -> Option<Duration> {
        let v = v?;
        let parsed = if positive {
            parse_positive_duration(v.get_ref())
        } else {
            parse_duration(v.get_ref())
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                let at = self.at(v.span());
                self.push(DagError::BadDuration {
                    at,
                    value: v.get_ref().clone(),
                    reason: e.to_string(),
                });
                None
            }
        }
    }

    /// A non-empty name (pool, queue, connection); records an error when empty.
    fn name(&mut self, v: Option<&Spanned<String>>, what: &str) -> Option<String> {
        let v = v?;
        if v.get_ref().trim().is_empty() {
            self.invalid(v.span(), format!("{what} must not be empty"));
            return None;
        }
        Some(v.get_ref().clone())
    }
}

/// Serde names Rust types ("expected u32"); say what a TOML author writes instead.
fn plain_types(message: &str) -> String {
    for (rust, plain) in [
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 or more)"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
    ] {
        if let Some(rest) = message.strip_suffix(rust) {
            return format!("{rest}{plain}");
        }
    }
    message.to_owned()
}

/// Splits serde's "<prefix>name`, expected one of `a`, `b`" into the name and the list.
fn after_prefix(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), expected))
}

// ---------------------------------------------------------------------------------------
// Field paths from positions.

/// Every key and array element of the document with its dotted path and spans, so an
/// error at a byte offset can name its field.
struct PathIndex {
    entries: Vec<PathEntry>,
}

struct PathEntry {
    keys: Vec<String>,
    key: Range<usize>,
    value: Range<usize>,
}

impl PathEntry {
    fn path(&self) -> String {
        path_string(&self.keys)
    }
}

impl PathIndex {
    fn build(root: &DeTable<'_>) -> PathIndex {
        let mut entries = Vec::new();
        walk_table(root, &[], &mut entries);
        PathIndex { entries }
    }

    /// The deepest entry whose key or value contains `pos`.
    fn lookup(&self, pos: usize) -> Option<&PathEntry> {
        self.entries
            .iter()
            .filter(|e| e.key.contains(&pos) || e.value.contains(&pos) || e.key.start == pos)
            .max_by_key(|e| e.keys.len())
    }

    /// [`Self::lookup`], else the last key that starts before `pos`.
    fn lookup_or_before(&self, pos: usize) -> Option<&PathEntry> {
        self.lookup(pos).or_else(|| {
            self.entries
                .iter()
                .filter(|e| e.key.start <= pos)
                .max_by_key(|e| e.key.start)
        })
    }
}

/// The 1-based line and column of the value at `keys` (e.g. `["tasks", "t", "sql_file"]`)
/// in `source`, for errors found after parsing (reading a referenced file).
pub(super) fn field_position(source: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let (root, _) = DeTable::parse_recoverable(source);
    let index = PathIndex::build(root.get_ref());
    let entry = index.entries.iter().find(|e| e.keys.iter().eq(keys))?;
    Some(LineIndex::new(source).line_col(entry.value.start))
}

fn walk_table(table: &DeTable<'_>, prefix: &[String], out: &mut Vec<PathEntry>) {
    for (k, v) in table {
        let mut keys = prefix.to_vec();
        keys.push(k.get_ref().to_string());
        walk_value(v, keys, k.span(), out);
    }
}

fn walk_value(
    v: &Spanned<DeValue<'_>>,
    keys: Vec<String>,
    key: Range<usize>,
    out: &mut Vec<PathEntry>,
) {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, &keys, out),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let mut item_keys = keys.clone();
                item_keys.push(format!("[{i}]"));
                walk_value(item, item_keys, item.span(), out);
            }
        }
        _ => {}
    }
    out.push(PathEntry {
        keys,
        key,
        value: v.span(),
    });
}

fn path_string(keys: &[String]) -> String {
    let mut out = String::new();
    for k in keys {
        if k.starts_with('[') {
            out.push_str(k);
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            out.push_str(k);
        } else {
            out.push_str(&format!("{k:?}"));
        }
    }
    out
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

// ---------------------------------------------------------------------------------------
// Templates.

/// Checks every templated string of the document (see [`templated_fields`]).
fn check_templates(cx: &mut Ctx<'_>, root: &DeTable<'_>) {
    let path = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    for (key, value) in root {
        match (key.get_ref().as_ref(), value.get_ref()) {
            (cb @ ("on_failure" | "on_success"), DeValue::Table(t)) => {
                check_callback_templates(cx, t, &path(&[cb]))
            }
            ("defaults", DeValue::Table(defaults)) => {
                for (k, v) in defaults {
                    if let (cb, DeValue::Table(t)) = (k.get_ref().as_ref(), v.get_ref()) {
                        if CALLBACK_KEYS.contains(&cb) {
                            check_callback_templates(cx, t, &path(&["defaults", cb]));
                        }
                    }
                }
            }
            ("tasks", DeValue::Table(tasks)) => {
                for (id, task) in tasks {
                    let DeValue::Table(task) = task.get_ref() else {
                        continue;
                    };
                    let str_of = |k: &str| task.get(k).and_then(|v| v.get_ref().as_str());
                    let kind = match str_of("type") {
                        Some("sensor") => str_of("mode").unwrap_or_default(),
                        other => other.unwrap_or_default(),
                    };
                    let fields = templated_fields(kind);
                    for (k, v) in task {
                        let k = k.get_ref().as_ref();
                        let keys = path(&["tasks", id.get_ref(), k]);
                        if fields.contains(&k) {
                            check_strings(cx, v, &keys);
                        } else if let (true, DeValue::Table(t)) =
                            (CALLBACK_KEYS.contains(&k), v.get_ref())
                        {
                            check_callback_templates(cx, t, &keys);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn check_callback_templates(cx: &mut Ctx<'_>, callback: &DeTable<'_>, prefix: &[String]) {
    for (k, v) in callback {
        if CALLBACK_TEMPLATED.contains(&k.get_ref().as_ref()) {
            let mut keys = prefix.to_vec();
            keys.push(k.get_ref().to_string());
            check_strings(cx, v, &keys);
        }
    }
}

fn check_strings(cx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>, keys: &[String]) {
    match v.get_ref() {
        DeValue::String(s) => {
            if let Err(e) = crate::template::check(s) {
                let mut message = e.message.clone();
                if let Some(line) = e.line.filter(|l| *l > 1) {
                    message.push_str(&format!(" (line {line} of the template)"));
                }
                let at = cx.at_field(Some(v.span()), &path_string(keys));
                cx.push(DagError::BadTemplate { at, message });
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut item_keys = keys.to_vec();
                item_keys.push(format!("[{i}]"));
                check_strings(cx, item, &item_keys);
            }
        }
        DeValue::Table(t) => {
            for (k, item) in t {
                let mut item_keys = keys.to_vec();
                item_keys.push(k.get_ref().to_string());
                check_strings(cx, item, &item_keys);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The DAG level.

struct DagLevel {
    id: String,
    description: Option<String>,
    owner: Option<String>,
    tags: Vec<String>,
    schedule: Option<Schedule>,
    timezone: Tz,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    catchup: bool,
    max_active_runs: u32,
    max_active_tasks: u32,
    dagrun_timeout: Option<Duration>,
    params: serde_json::Map<String, serde_json::Value>,
    defaults: TaskDefaults,
    on_failure: Option<Callback>,
    on_success: Option<Callback>,
}

fn resolve_dag_level(cx: &mut Ctx<'_>, file: &str, raw: RawDag) -> DagLevel {
    let id = match &raw.id {
        Some(id) => {
            if let Err(reason) = check_id(id.get_ref(), true) {
                cx.invalid(
                    id.span(),
                    format!("invalid DAG id {:?}: {reason}", id.get_ref()),
                );
            }
            id.get_ref().clone()
        }
        None => {
            let stem = file_stem(file);
            if let Err(reason) = check_id(&stem, true) {
                let at = cx.at_field(None, "id");
                cx.push(DagError::InvalidValue {
                    at,
                    message: format!("the file name gives the DAG id {stem:?}, which is invalid: {reason}; set `id`"),
                });
            }
            stem
        }
    };

    let schedule = raw
        .schedule
        .as_ref()
        .and_then(|s| match Schedule::parse(s.get_ref()) {
            Ok(schedule) => Some(schedule),
            Err(e) => {
                let at = cx.at(s.span());
                cx.push(DagError::BadCron {
                    at,
                    expression: s.get_ref().clone(),
                    reason: e.to_string(),
                });
                None
            }
        });

    let timezone = match &raw.timezone {
        None => Tz::UTC,
        Some(tz) => match tz.get_ref().parse::<Tz>() {
            Ok(z) => z,
            Err(_) => {
                let at = cx.at(tz.span());
                let suggestion = suggest(
                    tz.get_ref(),
                    chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()),
                );
                cx.push(DagError::BadTimezone {
                    at,
                    value: tz.get_ref().clone(),
                    suggestion,
                });
                Tz::UTC
            }
        },
    };

    let start_date = raw.start_date.as_ref().and_then(|d| date(cx, d, timezone));
    let end_date = raw.end_date.as_ref().and_then(|d| date(cx, d, timezone));
    if let (Some(start), Some(end), Some(raw_end)) = (start_date, end_date, &raw.end_date) {
        if end < start {
            cx.invalid(raw_end.span(), "end_date is before start_date");
        }
    }

    let mut positive = |v: &Option<Spanned<u32>>, default: u32, what: &str| match v {
        None => default,
        Some(n) if *n.get_ref() == 0 => {
            cx.invalid(n.span(), format!("{what} must be at least 1"));
            default
        }
        Some(n) => *n.get_ref(),
    };
    let max_active_runs = positive(&raw.max_active_runs, 16, "max_active_runs");
    let max_active_tasks = positive(&raw.max_active_tasks, 16, "max_active_tasks");
    let dagrun_timeout = cx.duration(raw.dagrun_timeout.as_ref(), true);

    let defaults = raw
        .defaults
        .map(|d| resolve_defaults(cx, d))
        .unwrap_or_default();
    let on_failure = raw.on_failure.map(|c| callback(cx, c));
    let on_success = raw.on_success.map(|c| callback(cx, c));

    DagLevel {
        id,
        description: raw.description,
        owner: raw.owner,
        tags: raw.tags,
        schedule,
        timezone,
        start_date,
        end_date,
        catchup: raw.catchup.unwrap_or(false),
        max_active_runs,
        max_active_tasks,
        dagrun_timeout,
        params: table_to_json(&raw.params),
        defaults,
        on_failure: on_failure.flatten(),
        on_success: on_success.flatten(),
    }
}

fn file_stem(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Ids are letters, digits, `_` and `-` (DAG ids may also contain `.`), at most 250.
fn check_id(id: &str, allow_dot: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".into());
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(format!("it is longer than {MAX_ID_LEN} characters"));
    }
    if let Some(c) = id.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || (allow_dot && *c == '.'))
    }) {
        let allowed = if allow_dot {
            "letters, digits, '_', '-' and '.'"
        } else {
            "letters, digits, '_' and '-'"
        };
        return Err(format!("{c:?} is not allowed (use {allowed})"));
    }
    Ok(())
}

/// A date (`2026-01-01`, midnight in `tz`), a local date-time (in `tz`) or an RFC 3339
/// timestamp with an offset; as a TOML string or a TOML date.
fn date(cx: &mut Ctx<'_>, v: &Spanned<toml::Value>, tz: Tz) -> Option<DateTime<Utc>> {
    let text = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            cx.invalid(
                v.span(),
                format!("expected a date, found {}", other.type_str()),
            );
            return None;
        }
    };
    match parse_date(text.trim(), tz) {
        Ok(d) => Some(d),
        Err(reason) => {
            let at = cx.at(v.span());
            cx.push(DagError::BadDate {
                at,
                value: text,
                reason,
            });
            None
        }
    }
}

pub(super) fn parse_date(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(d.with_timezone(&Utc));
    }
    let local = if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
    } else {
        [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    };
    let local = local.ok_or_else(|| {
        "expected YYYY-MM-DD, a local date-time YYYY-MM-DDTHH:MM:SS or RFC 3339 with an offset"
            .to_owned()
    })?;
    // A local time inside a daylight-saving gap moves to the first instant after it.
    let mut probe = local;
    for _ in 0..=180 {
        if let Some(d) = tz.from_local_datetime(&probe).earliest() {
            return Ok(d.with_timezone(&Utc));
        }
        probe += chrono::Duration::minutes(1);
    }
    Err(format!("{local} does not exist in {tz}"))
}

fn resolve_defaults(cx: &mut Ctx<'_>, raw: RawDefaults) -> TaskDefaults {
    let base = TaskDefaults::default();
    TaskDefaults {
        retries: raw.retries.unwrap_or(base.retries),
        retry_delay: cx
            .duration(raw.retry_delay.as_ref(), false)
            .unwrap_or(base.retry_delay),
        retry_exponential_backoff: raw
            .retry_exponential_backoff
            .unwrap_or(base.retry_exponential_backoff),
        max_retry_delay: cx.duration(raw.max_retry_delay.as_ref(), true),
        timeout: cx.duration(raw.timeout.as_ref(), true),
        pool: cx.name(raw.pool.as_ref(), "pool").unwrap_or(base.pool),
        queue: cx.name(raw.queue.as_ref(), "queue").unwrap_or(base.queue),
        priority: raw.priority.unwrap_or(base.priority),
        on_failure: raw.on_failure.and_then(|c| callback(cx, c)),
        on_success: raw.on_success.and_then(|c| callback(cx, c)),
        on_retry: raw.on_retry.and_then(|c| callback(cx, c)),
    }
}

fn callback(cx: &mut Ctx<'_>, raw: Spanned<RawCallback>) -> Option<Callback> {
    let span = raw.span();
    let field = cx
        .index
        .lookup(span.start)
        .map(|e| e.path())
        .unwrap_or_default();
    let raw = raw.into_inner();
    match (raw.slack_webhook, raw.url) {
        (Some(_), Some(_)) => {
            cx.invalid(span, "a callback has either slack_webhook or url, not both");
            None
        }
        (None, None) => {
            let at = cx.at_field(Some(span), &join_path(&field, "url"));
            cx.push(DagError::MissingField {
                at,
                name: "url".into(),
                hint: Some("a callback needs slack_webhook or url".into()),
            });
            None
        }
        (Some(webhook), None) => {
            if raw.method.is_some() || !raw.headers.is_empty() || raw.json.is_some() {
                cx.invalid(
                    span,
                    "method, headers and json apply to url callbacks, not slack_webhook",
                );
                return None;
            }
            check_url(cx, &webhook, span, false);
            Some(Callback::Slack { webhook })
        }
        (None, Some(url)) => {
            check_url(cx, &url, span.clone(), false);
            let method = method(cx, raw.method.as_ref(), "POST")?;
            Some(Callback::Http {
                url,
                method,
                headers: raw.headers,
                json: raw.json.as_ref().map(toml_to_json),
            })
        }
    }
}

fn method(cx: &mut Ctx<'_>, v: Option<&Spanned<String>>, default: &str) -> Option<String> {
    let Some(v) = v else {
        return Some(default.to_owned());
    };
    let upper = v.get_ref().to_ascii_uppercase();
    if HTTP_METHODS.contains(&upper.as_str()) {
        Some(upper)
    } else {
        cx.invalid(
            v.span(),
            format!(
                "unknown HTTP method {:?}, expected one of: {}",
                v.get_ref(),
                HTTP_METHODS.join(", ")
            ),
        );
        None
    }
}

/// A URL must be absolute http(s), unless it is templated or (with a connection that
/// supplies the base) a path starting with `/`.
fn check_url(cx: &mut Ctx<'_>, url: &str, span: Range<usize>, relative_ok: bool) {
    if url.contains("{{") || (relative_ok && url.starts_with('/')) {
        return;
    }
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => {}
        _ => {
            let expected = if relative_ok {
                "an http(s) URL or a path starting with /"
            } else {
                "an http(s) URL"
            };
            cx.invalid(span, format!("invalid URL {url:?}: expected {expected}"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tasks.

/// Resolves one task; returns it with its `depends_on` entries (spans kept for the graph
/// checks), or `None` when its fields did not deserialize.
fn resolve_task(
    cx: &mut Ctx<'_>,
    id: &str,
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    defaults: &TaskDefaults,
    ids: &BTreeSet<String>,
    options: &ParseOptions,
) -> Option<(Task, Vec<Spanned<String>>)> {
    let field = path_string(&["tasks".to_owned(), id.to_owned()]);
    if let Err(reason) = check_id(id, false) {
        let at = cx.at_field(Some(key_span.clone()), &field);
        cx.push(DagError::InvalidValue {
            at,
            message: format!("invalid task id {id:?}: {reason}"),
        });
    }
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        cx.invalid(span, format!("task {id:?} must be a table"));
        return None;
    };

    let kind_name = match table.get("type") {
        None => {
            let at = cx.at_field(Some(span.clone()), &join_path(&field, "type"));
            cx.push(DagError::MissingField {
                at,
                name: "type".into(),
                hint: Some(format!("one of: {}", TASK_KINDS.join(", "))),
            });
            None
        }
        Some(t) => match t.get_ref().as_str() {
            Some(k) if TASK_KINDS.contains(&k) => Some(k.to_owned()),
            Some(k) => {
                let at = cx.at(t.span());
                cx.push(DagError::UnknownTaskKind {
                    at,
                    name: k.to_owned(),
                    suggestion: suggest(k, TASK_KINDS),
                });
                None
            }
            None => {
                cx.invalid(
                    t.span(),
                    format!("expected a string, found {}", t.get_ref().type_str()),
                );
                None
            }
        },
    };

    let (mut common, mut rest) = (DeTable::new(), DeTable::new());
    for (k, v) in table {
        match k.get_ref().as_ref() {
            "type" => {}
            name if COMMON_FIELDS.contains(&name) => {
                common.insert(k, v);
            }
            _ => {
                rest.insert(k, v);
            }
        }
    }
    let common: Option<RawCommon> = cx.de(
        Spanned::new(span.clone(), DeValue::Table(common)),
        COMMON_FIELDS,
    );
    let kind = kind_name.and_then(|k| resolve_kind(cx, &k, span.clone(), rest, options));
    let common = common?;

    let mut depends_on: Vec<Spanned<String>> = common
        .depends_on
        .map(Spanned::into_inner)
        .unwrap_or_default();
    let for_each = common
        .for_each
        .as_ref()
        .and_then(|f| resolve_for_each(cx, id, f, ids, &mut depends_on));

    let retry_delay = cx.duration(common.retry_delay.as_ref(), false);
    let max_retry_delay = cx.duration(common.max_retry_delay.as_ref(), true);
    let timeout = cx.duration(common.timeout.as_ref(), true);
    let pool = cx.name(common.pool.as_ref(), "pool");
    let queue = cx.name(common.queue.as_ref(), "queue");
    let pool_slots = match &common.pool_slots {
        None => 1,
        Some(n) if *n.get_ref() == 0 => {
            cx.invalid(n.span(), "pool_slots must be at least 1");
            1
        }
        Some(n) => *n.get_ref(),
    };
    let on_failure = common.on_failure.map(|c| callback(cx, c));
    let on_success = common.on_success.map(|c| callback(cx, c));
    let on_retry = common.on_retry.map(|c| callback(cx, c));
    let kind = kind?;

    let default_timeout = match kind {
        TaskKind::Sensor(_) => Some(SENSOR_DEFAULT_TIMEOUT),
        _ => None,
    };
    let task = Task {
        id: id.to_owned(),
        kind,
        depends_on: depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        trigger_rule: common.trigger_rule.unwrap_or_default(),
        for_each,
        retries: common.retries.unwrap_or(defaults.retries),
        retry_delay: retry_delay.unwrap_or(defaults.retry_delay),
        retry_exponential_backoff: common
            .retry_exponential_backoff
            .unwrap_or(defaults.retry_exponential_backoff),
        max_retry_delay: max_retry_delay.or(defaults.max_retry_delay),
        timeout: timeout.or(defaults.timeout).or(default_timeout),
        pool: pool.unwrap_or_else(|| defaults.pool.clone()),
        pool_slots,
        queue: queue.unwrap_or_else(|| defaults.queue.clone()),
        priority: common.priority.unwrap_or(defaults.priority),
        on_failure: on_failure.flatten().or_else(|| defaults.on_failure.clone()),
        on_success: on_success.flatten().or_else(|| defaults.on_success.clone()),
        on_retry: on_retry.flatten().or_else(|| defaults.on_retry.clone()),
        doc: common.doc,
    };
    Some((task, depends_on))
}

fn resolve_for_each(
    cx: &mut Ctx<'_>,
    id: &str,
    v: &Spanned<toml::Value>,
    ids: &BTreeSet<String>,
    depends_on: &mut Vec<Spanned<String>>,
) -> Option<ForEach> {
    let bad = |cx: &mut Ctx<'_>, message: String| {
        let at = cx.at(v.span());
        cx.push(DagError::BadForEach { at, message });
        None
    };
    match v.get_ref() {
        toml::Value::Array(items) if items.is_empty() => bad(
            cx,
            "for_each is an empty list; give at least one item".into(),
        ),
        toml::Value::Array(items) => Some(ForEach::Items(items.iter().map(toml_to_json).collect())),
        toml::Value::Table(t) => {
            let from = t.get("from").and_then(toml::Value::as_str);
            match from {
                Some(from) if t.len() == 1 => {
                    if from == id {
                        return bad(cx, format!("for_each.from names the task itself ({id:?})"));
                    }
                    if !ids.contains(from) {
                        let suggestion = suggest(from, ids.iter().map(String::as_str))
                            .map(|s| format!(" (did you mean {s:?}?)"))
                            .unwrap_or_default();
                        return bad(
                            cx,
                            format!("for_each.from names unknown task {from:?}{suggestion}"),
                        );
                    }
                    if !depends_on.iter().any(|d| d.get_ref() == from) {
                        depends_on.push(Spanned::new(v.span(), from.to_owned()));
                    }
                    Some(ForEach::From(from.to_owned()))
                }
                _ => bad(
                    cx,
                    "for_each table must be exactly { from = \"<upstream task id>\" }".into(),
                ),
            }
        }
        other => bad(
            cx,
            format!(
                "for_each must be a list of items or {{ from = \"<upstream task id>\" }}, found {}",
                other.type_str()
            ),
        ),
    }
}

fn resolve_kind(
    cx: &mut Ctx<'_>,
    kind: &str,
    span: Range<usize>,
    rest: DeTable<'_>,
    options: &ParseOptions,
) -> Option<TaskKind> {
    let known: Vec<&str> = COMMON_FIELDS.iter().chain(SENSOR_FIELDS).copied().collect();
    let value = Spanned::new(span.clone(), DeValue::Table(rest));
    match kind {
        "noop" => {
            if let DeValue::Table(t) = value.get_ref() {
                if let Some((k, _)) = t.iter().next() {
                    let at = cx.at(k.span());
                    let name = k.get_ref().to_string();
                    let suggestion = suggest(&name, COMMON_FIELDS.iter().copied());
                    cx.push(DagError::UnknownField {
                        at,
                        name,
                        suggestion,
                    });
                    return None;
                }
            }
            Some(TaskKind::Noop)
        }
        "command" => cx
            .de(value, &known)
            .and_then(|raw| command(cx, raw))
            .map(TaskKind::Command),
        "sql" => cx
            .de(value, &known)
            .and_then(|raw| sql(cx, raw, span.clone(), options))
            .map(TaskKind::Sql),
        "http" => cx
            .de(value, &known)
            .and_then(|raw| http(cx, raw, options))
            .map(TaskKind::Http),
        "ecs" => cx
            .de(value, &known)
            .and_then(|raw| ecs(cx, raw, span, options))
            .map(TaskKind::Ecs),
        "sensor" => sensor(cx, span, value, &known, options).map(TaskKind::Sensor),
        _ => None,
    }
}

fn command(cx: &mut Ctx<'_>, raw: RawCommand) -> Option<CommandTask> {
    let span = raw.command.span();
    let command = raw.command.into_inner();
    let empty = match &command {
        CommandLine::Shell(s) => s.trim().is_empty(),
        CommandLine::Argv(argv) => argv.first().is_none_or(|a| a.is_empty()),
    };
    if empty {
        cx.invalid(span, "command is empty");
        return None;
    }
    Some(CommandTask {
        command,
        env: raw.env,
        cwd: raw.cwd,
        skip_on_exit_code: raw.skip_on_exit_code.unwrap_or_else(|| vec![99]),
    })
}

fn connection(cx: &mut Ctx<'_>, v: &Spanned<String>, options: &ParseOptions) -> Option<String> {
    let name = cx.name(Some(v), "connection")?;
    if let Some(known) = &options.connections {
        if !known.contains(&name) {
            let at = cx.at(v.span());
            let suggestion = suggest(&name, known.iter().map(String::as_str));
            cx.push(DagError::UnknownConnection {
                at,
                name,
                suggestion,
            });
            return None;
        }
    }
    Some(name)
}

fn sql(
    cx: &mut Ctx<'_>,
    raw: RawSql,
    span: Range<usize>,
    options: &ParseOptions,
) -> Option<SqlTask> {
    let connection = connection(cx, &raw.connection, options);
    let source = match (raw.sql, raw.sql_file) {
        (Some(_), Some(file)) => {
            cx.invalid(file.span(), "set either sql or sql_file, not both");
            None
        }
        (None, None) => {
            let table = cx
                .index
                .lookup(span.start)
                .map(|e| e.path())
                .unwrap_or_default();
            let at = cx.at_field(Some(span), &join_path(&table, "sql"));
            cx.push(DagError::MissingField {
                at,
                name: "sql".into(),
                hint: Some("a sql task needs sql or sql_file".into()),
            });
            None
        }
        (Some(text), None) if text.get_ref().trim().is_empty() => {
            cx.invalid(text.span(), "sql is empty");
            None
        }
        (Some(text), None) => Some(SqlSource::Sql(text.into_inner())),
        (None, Some(file)) if file.get_ref().trim().is_empty() => {
            cx.invalid(file.span(), "sql_file is empty");
            None
        }
        (None, Some(file)) => Some(SqlSource::SqlFile {
            path: file.into_inner(),
            text: None,
        }),
    };
    Some(SqlTask {
        connection: connection?,
        source: source?,
        parameters: table_to_json(&raw.parameters).into_iter().collect(),
        transaction: raw.transaction.is_some_and(|t| *t.get_ref()),
    })
}

fn http(cx: &mut Ctx<'_>, raw: RawHttp, options: &ParseOptions) -> Option<HttpTask> {
    let connection = raw.connection.as_ref().map(|c| connection(cx, c, options));
    check_url(
        cx,
        raw.url.get_ref(),
        raw.url.span(),
        raw.connection.is_some(),
    );
    let method = method(cx, raw.method.as_ref(), "GET");
    if let (Some(body), Some(_)) = (&raw.body, &raw.json) {
        cx.invalid(body.span(), "set either body or json, not both");
        return None;
    }
    let expect_status = match &raw.expect_status {
        None => Some(vec![StatusRange {
            start: 200,
            end: 299,
        }]),
        Some(list) => expect_status(cx, list),
    };
    let json_check = raw.json_check.map(|c| JsonCheck {
        path: c.path,
        equals: toml_to_json(&c.equals),
    });
    Some(HttpTask {
        connection: match connection {
            Some(c) => Some(c?),
            None => None,
        },
        method: method?,
        url: raw.url.into_inner(),
        headers: raw.headers,
        query: raw.query,
        body: raw.body.map(Spanned::into_inner),
        json: raw.json.as_ref().map(toml_to_json),
        expect_status: expect_status?,
        json_check,
    })
}

fn expect_status(
    cx: &mut Ctx<'_>,
    list: &Spanned<Vec<Spanned<toml::Value>>>,
) -> Option<Vec<StatusRange>> {
    if list.get_ref().is_empty() {
        cx.invalid(list.span(), "expect_status is empty");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in list.get_ref() {
        match status_range(item.get_ref()) {
            Ok(r) => out.push(r),
            Err(message) => {
                cx.invalid(item.span(), message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn status_range(v: &toml::Value) -> Result<StatusRange, String> {
    let code = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("{n} is not an HTTP status (100-599)"))
    };
    let number = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid status range {s:?}: expected e.g. 200 or \"200-299\""))
            .and_then(code)
    };
    match v {
        toml::Value::Integer(n) => code(*n).map(|c| StatusRange { start: c, end: c }),
        toml::Value::String(s) => {
            let (start, end) = match s.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let c = number(s)?;
                    (c, c)
                }
            };
            if start > end {
                return Err(format!("invalid status range {s:?}: start is after end"));
            }
            Ok(StatusRange { start, end })
        }
        other => Err(format!(
            "expected a status code or a range such as \"200-299\", found {}",
            other.type_str()
        )),
    }
}

fn ecs(
    cx: &mut Ctx<'_>,
    raw: RawEcs,
    span: Range<usize>,
    options: &ParseOptions,
) -> Option<EcsTask> {
    let mut ok = true;
    let connection = match &raw.connection {
        Some(c) => {
            let c = connection(cx, c, options);
            ok &= c.is_some();
            c
        }
        None => None,
    };
    let field_of = |cx: &Ctx<'_>, name: &str| {
        let table = cx
            .index
            .lookup(span.start)
            .map(|e| e.path())
            .unwrap_or_default();
        join_path(&table, name)
    };
    for (name, value) in [
        ("cluster", &raw.cluster),
        ("task_definition", &raw.task_definition),
    ] {
        if value.trim().is_empty() {
            let at = cx.at_field(Some(span.clone()), &field_of(cx, name));
            cx.push(DagError::InvalidValue {
                at,
                message: format!("{name} must not be empty"),
            });
            ok = false;
        }
    }
    let launch_type = match &raw.launch_type {
        None => None,
        Some(lt) => match lt.get_ref().to_ascii_uppercase().as_str() {
            "FARGATE" => Some(LaunchType::Fargate),
            "EC2" => Some(LaunchType::Ec2),
            "EXTERNAL" => Some(LaunchType::External),
            _ => {
                cx.invalid(
                    lt.span(),
                    format!(
                        "unknown launch_type {:?}, expected one of: FARGATE, EC2, EXTERNAL",
                        lt.get_ref()
                    ),
                );
                ok = false;
                None
            }
        },
    };
    let capacity_provider_strategy: Vec<CapacityProviderItem> = match raw.capacity_provider_strategy
    {
        None => Vec::new(),
        Some(list) => {
            if raw.launch_type.is_some() {
                cx.invalid(
                    list.span(),
                    "set either launch_type or capacity_provider_strategy, not both",
                );
                ok = false;
            } else if list.get_ref().is_empty() {
                cx.invalid(list.span(), "capacity_provider_strategy is empty");
                ok = false;
            }
            list.into_inner()
                .into_iter()
                .map(|p| CapacityProviderItem {
                    capacity_provider: p.capacity_provider,
                    weight: p.weight,
                    base: p.base,
                })
                .collect()
        }
    };
    if launch_type == Some(LaunchType::Fargate) && raw.subnets.is_empty() {
        let at = cx.at_field(Some(span.clone()), &field_of(cx, "subnets"));
        cx.push(DagError::MissingField {
            at,
            name: "subnets".into(),
            hint: Some("Fargate tasks use awsvpc networking and need at least one subnet".into()),
        });
        ok = false;
    }
    let overrides = [
        raw.command.as_ref().map(|c| ("command", c.span())),
        raw.environment.as_ref().map(|c| ("environment", c.span())),
        raw.cpu.as_ref().map(|c| ("cpu", c.span())),
        raw.memory.as_ref().map(|c| ("memory", c.span())),
    ];
    if raw.container.is_none() {
        if let Some((name, at_span)) = overrides.iter().flatten().next() {
            let at = cx.at_field(Some(at_span.clone()), &field_of(cx, "container"));
            cx.push(DagError::MissingField {
                at,
                name: "container".into(),
                hint: Some(format!("{name} overrides apply to a named container")),
            });
            ok = false;
        }
    }
    if let Some(c) = &raw.command {
        if c.get_ref().is_empty() {
            cx.invalid(c.span(), "command is empty");
            ok = false;
        }
    }
    let propagate_tags = match &raw.propagate_tags {
        None => None,
        Some(p) => match p.get_ref().to_ascii_uppercase().as_str() {
            "TASK_DEFINITION" => Some(PropagateTags::TaskDefinition),
            "SERVICE" => Some(PropagateTags::Service),
            "NONE" => Some(PropagateTags::None),
            _ => {
                cx.invalid(
                    p.span(),
                    format!(
                        "unknown propagate_tags {:?}, expected one of: TASK_DEFINITION, SERVICE, NONE",
                        p.get_ref()
                    ),
                );
                ok = false;
                None
            }
        },
    };
    if raw.awslogs_stream_prefix.is_some() && raw.awslogs_group.is_none() {
        let at = cx.at_field(Some(span.clone()), &field_of(cx, "awslogs_group"));
        cx.push(DagError::MissingField {
            at,
            name: "awslogs_group".into(),
            hint: Some("awslogs_stream_prefix needs the log group".into()),
        });
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(EcsTask {
        connection,
        cluster: raw.cluster,
        task_definition: raw.task_definition,
        revision: raw.revision,
        launch_type,
        capacity_provider_strategy,
        platform_version: raw.platform_version,
        subnets: raw.subnets,
        security_groups: raw.security_groups,
        assign_public_ip: raw.assign_public_ip.unwrap_or(false),
        container: raw.container,
        command: raw.command.map(Spanned::into_inner),
        environment: raw.environment.map(Spanned::into_inner).unwrap_or_default(),
        cpu: raw.cpu.map(Spanned::into_inner),
        memory: raw.memory.map(Spanned::into_inner),
        tags: raw.tags,
        started_by: raw.started_by,
        propagate_tags,
        awslogs_group: raw.awslogs_group,
        awslogs_stream_prefix: raw.awslogs_stream_prefix,
        skip_on_exit_code: raw.skip_on_exit_code,
    })
}

fn sensor(
    cx: &mut Ctx<'_>,
    span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    known: &[&str],
    options: &ParseOptions,
) -> Option<SensorTask> {
    let DeValue::Table(table) = value.into_inner() else {
        return None;
    };
    let (mut own, mut check) = (DeTable::new(), DeTable::new());
    for (k, v) in table {
        if SENSOR_FIELDS.contains(&k.get_ref().as_ref()) {
            own.insert(k, v);
        } else {
            check.insert(k, v);
        }
    }
    let raw: RawSensor = cx.de(Spanned::new(span.clone(), DeValue::Table(own)), known)?;
    let poke_interval = match &raw.poke_interval {
        None => Some(SENSOR_DEFAULT_POKE_INTERVAL),
        Some(p) => cx.duration(Some(p), true),
    };
    let check_value = Spanned::new(span.clone(), DeValue::Table(check));
    let check = match raw.mode.get_ref().as_str() {
        "sql" => {
            let raw_sql: RawSql = cx.de(check_value, known)?;
            if let Some(t) = &raw_sql.transaction {
                cx.invalid(t.span(), "transaction does not apply to a sensor");
                return None;
            }
            SensorCheck::Sql(sql(cx, raw_sql, span, options)?)
        }
        "http" => {
            let raw_http: RawHttp = cx.de(check_value, known)?;
            SensorCheck::Http(http(cx, raw_http, options)?)
        }
        other => {
            cx.invalid(
                raw.mode.span(),
                format!("unknown sensor mode {other:?}, expected one of: sql, http"),
            );
            return None;
        }
    };
    Some(SensorTask {
        poke_interval: poke_interval?,
        soft_fail: raw.soft_fail.unwrap_or(false),
        check,
    })
}

// ---------------------------------------------------------------------------------------
// The graph.

/// Unknown upstreams, duplicates, self-dependencies and cycles.
fn check_graph(
    cx: &mut Ctx<'_>,
    ids: &BTreeSet<String>,
    deps: &BTreeMap<String, Vec<Spanned<String>>>,
) {
    let mut graph: DiGraph<&str, ()> = DiGraph::new();
    let mut edge_span: BTreeMap<(&str, &str), Range<usize>> = BTreeMap::new();
    let nodes: BTreeMap<&str, NodeIndex> = ids
        .iter()
        .map(|id| (id.as_str(), graph.add_node(id.as_str())))
        .collect();
    for (id, upstreams) in deps {
        let mut seen = BTreeSet::new();
        for up in upstreams {
            let name = up.get_ref().as_str();
            if !seen.insert(name) {
                cx.invalid(up.span(), format!("upstream {name:?} is listed twice"));
                continue;
            }
            if name == id {
                let at = cx.at(up.span());
                cx.push(DagError::Cycle {
                    at,
                    path: vec![id.clone(), id.clone()],
                });
                continue;
            }
            match ids.get(name) {
                Some(up_id) => {
                    if let (Some(&a), Some(&b)) =
                        (nodes.get(up_id.as_str()), nodes.get(id.as_str()))
                    {
                        graph.add_edge(a, b, ());
                    }
                    edge_span.insert((up_id.as_str(), id.as_str()), up.span());
                }
                None => {
                    let at = cx.at(up.span());
                    let suggestion =
                        suggest(name, ids.iter().map(String::as_str).filter(|t| t != id));
                    cx.push(DagError::UnknownUpstream {
                        at,
                        upstream: name.to_owned(),
                        suggestion,
                    });
                }
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() < 2 {
            continue;
        }
        let members: BTreeSet<&str> = scc.iter().map(|n| graph[*n]).collect();
        let Some(&start) = members.first() else {
            continue;
        };
        let path = cycle_through(&graph, &nodes, &members, start);
        let closing = (path[path.len() - 2], start);
        let span = edge_span.get(&closing).cloned().unwrap_or(0..0);
        let at = cx.at(span);
        cx.push(DagError::Cycle {
            at,
            path: path.iter().map(|s| s.to_string()).collect(),
        });
    }
}

/// The shortest cycle from `start` back to itself inside one strongly connected component,
/// following upstream → downstream edges; starts and ends with `start`.
fn cycle_through<'a>(
    graph: &DiGraph<&'a str, ()>,
    nodes: &BTreeMap<&str, NodeIndex>,
    members: &BTreeSet<&'a str>,
    start: &'a str,
) -> Vec<&'a str> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<&str> = nodes
            .get(node)
            .map(|&i| {
                graph
                    .neighbors(i)
                    .map(|n| graph[n])
                    .filter(|n| members.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        next.sort_unstable();
        for n in next {
            if n == start {
                return cycle_path(start, node, &parent);
            }
            if !parent.contains_key(n) {
                parent.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    vec![start, start]
}

fn cycle_path<'a>(
    start: &'a str,
    last: &'a str,
    parent: &BTreeMap<&'a str, &'a str>,
) -> Vec<&'a str> {
    let mut back = vec![last];
    let mut cur = last;
    while let Some(&p) = parent.get(cur) {
        back.push(p);
        cur = p;
    }
    back.reverse();
    back.push(start);
    back
}
