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

mod approval;
mod deadline;
mod graph;
pub(super) mod paths;
mod require;
mod tasks;
mod warehouse;

use graph::*;
use paths::*;
use tasks::*;

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

    if let Some(d) = &dag_level {
        require::check_self_requires(&mut cx, &d.id, &tasks);
    }
    if !cx.errors.is_empty() {
        return Err(cx.finish());
    }
    let Some(d) = dag_level else {
        return Err(cx.finish());
    };
    let mut dag = Dag {
        id: d.id,
        file: file.to_owned(),
        source_hash: String::new(),
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
        declared_params: d.param_specs,
        defaults: d.defaults,
        on_failure: d.on_failure,
        on_success: d.on_success,
        deadline: d.deadline,
        on_deadline_missed: d.on_deadline_missed,
        on_approval_requested: d.on_approval_requested,
        tasks,
    };
    dag.source_hash = dag.version_hash();
    if let Some(known) = &options.dags {
        dag.check_required_dags(source, known)?;
    }
    Ok(dag)
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

pub(super) fn sha256_hex(source: &str) -> String {
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
        let field = self.field_at(&span);
        self.at_field(Some(span), &field)
    }

    /// The dotted path of the field found at `span` (empty when none is).
    fn field_at(&self, span: &Range<usize>) -> String {
        self.index
            .lookup(span.start)
            .map(|e| e.path())
            .unwrap_or_default()
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

    /// A JSON body or value written in TOML; JSON has no NaN or infinity, so a
    /// non-finite float is an error here rather than a silent `null` on the wire.
    fn json(&mut self, v: &Spanned<toml::Value>) -> Option<serde_json::Value> {
        fn finite(v: &toml::Value) -> bool {
            match v {
                toml::Value::Float(f) => f.is_finite(),
                toml::Value::Array(a) => a.iter().all(finite),
                toml::Value::Table(t) => t.values().all(finite),
                _ => true,
            }
        }
        if finite(v.get_ref()) {
            Some(toml_to_json(v.get_ref()))
        } else {
            self.invalid(
                v.span(),
                "JSON has no NaN or infinity: write a finite number",
            );
            None
        }
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
// Templates.

/// Checks every templated string of the document (see [`templated_fields`]).
fn check_templates(cx: &mut Ctx<'_>, root: &DeTable<'_>) {
    let path = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    for (key, value) in root {
        match (key.get_ref().as_ref(), value.get_ref()) {
            (
                cb @ ("on_failure" | "on_success" | "on_deadline_missed" | "on_approval_requested"),
                DeValue::Table(t),
            ) => check_callback_templates(cx, t, &path(&[cb])),
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
    param_specs: BTreeMap<String, crate::params::ParamSpec>,
    defaults: TaskDefaults,
    on_failure: Option<Callback>,
    on_success: Option<Callback>,
    deadline: Option<crate::deadline::Deadline>,
    on_deadline_missed: Option<Callback>,
    on_approval_requested: Option<Callback>,
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
    let deadline = raw.deadline.and_then(|d| deadline::deadline(cx, d));
    let on_deadline_missed = raw.on_deadline_missed.and_then(|c| callback(cx, c));
    let on_approval_requested = raw.on_approval_requested.and_then(|c| callback(cx, c));
    let declared = crate::params::declare(&raw.params);
    for (name, message) in declared.errors {
        let span = cx.index.value_span(&["params", &name]);
        let at = cx.at_field(span, &format!("params.{name}"));
        cx.push(DagError::InvalidValue {
            at,
            message: format!("param {name:?}: {message}"),
        });
    }

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
        params: declared.defaults,
        param_specs: declared.specs,
        defaults,
        on_failure: on_failure.flatten(),
        on_success: on_success.flatten(),
        deadline,
        on_deadline_missed,
        on_approval_requested,
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

pub(crate) fn parse_date(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
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
    let field = cx.field_at(&span);
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
            let method = method(cx, raw.method.as_ref(), "POST");
            let json = match &raw.json {
                Some(j) => Some(cx.json(j)?),
                None => None,
            };
            Some(Callback::Http {
                url,
                method: method?,
                headers: raw.headers,
                json,
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
