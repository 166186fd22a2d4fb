//! Rendering one task for one try: builds the template variables from the DAG, its run,
//! the instance and its upstreams' outputs, and renders exactly the fields that
//! `docs/dag-format.md` lists as templated (nothing else: ids, `type`, `connection`, …).
//!
//! Pure: the worker gathers the facts (run, upstream outputs, its environment) and calls
//! [`render_task`] just before a try starts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::dag::{
    AthenaTask, BigqueryTask, CommandTask, Dag, EcsTask, ForEach, HttpTask, RedshiftTask,
    RequireTask, S3Check, S3Target, SensorCheck, SqlSource, SqlTask, Task, TaskKind,
};
use crate::secret::Secret;
use crate::template::{self, ContextParams, TemplateContext, TemplateError};

/// The DAG run a try belongs to, as templates see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub dag_id: String,
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// The trigger's conf (a JSON object; anything else counts as empty).
    pub conf: Value,
}

/// Everything [`render_task`] needs.
#[derive(Debug, Clone, Copy)]
pub struct RenderParams<'a> {
    pub dag: &'a Dag,
    pub task: &'a Task,
    pub run: &'a RunInfo,
    /// -1 when the task is not mapped.
    pub map_index: i32,
    /// 1 for the first try.
    pub try_number: u32,
    /// Upstream task id → its output; see [`collect_outputs`].
    pub upstream_outputs: &'a Map<String, Value>,
    /// The environment variables templates may read as `env`.
    pub env: &'a BTreeMap<String, String>,
    /// The values of the `secret("…")` references the task's templates make (see
    /// [`task_secret_references`]), fetched by the caller.
    pub secrets: &'a BTreeMap<String, Secret>,
}

/// A task's kind with every templated field rendered for one try.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTask {
    pub kind: TaskKind,
    /// The rendered templated fields, by field name (e.g. `{"command": …, "env": …}`), to
    /// show a user what the try ran. Connection secrets are not masked here: pass it
    /// through [`mask_fields`] with the secrets of the task's connection before showing it.
    pub fields: Value,
}

/// Why a task could not be rendered. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A templated field does not render; the error says which field (``in `env.DATE`: …``).
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// The instance's `for_each` item cannot be found.
    #[error("task {task_id} map index {map_index}: {message}")]
    Item {
        task_id: String,
        map_index: i32,
        message: String,
    },
    /// A rendered field no longer fits its type (cannot happen for string templates;
    /// reported rather than unwrapped).
    #[error("field `{field}` does not fit its type after rendering: {message}")]
    Shape { field: String, message: String },
}

/// DAG params with the run's conf merged over them (top-level keys; the conf wins).
pub fn merge_params(dag_params: &Map<String, Value>, conf: &Value) -> Value {
    let mut params = dag_params.clone();
    if let Value::Object(conf) = conf {
        for (key, value) in conf {
            params.insert(key.clone(), value.clone());
        }
    }
    Value::Object(params)
}

/// The `outputs` map of a task: for each of `upstreams`, the output of its unmapped
/// instance (left out when it has none, so using it is an "undefined" error), or for a
/// mapped upstream a JSON list of its instances' outputs in map order (`null` for an
/// instance without output). `instances` are `(task_id, map_index, output)` of the run.
pub fn collect_outputs<'a>(
    upstreams: &[String],
    instances: impl IntoIterator<Item = (&'a str, i32, Option<&'a Value>)>,
) -> Map<String, Value> {
    let mut unmapped: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut mapped: BTreeMap<&str, BTreeMap<i32, Value>> = BTreeMap::new();
    for (task_id, map_index, output) in instances {
        if !upstreams.iter().any(|u| u == task_id) {
            continue;
        }
        if map_index < 0 {
            if let Some(output) = output {
                unmapped.insert(task_id, output);
            }
        } else {
            mapped
                .entry(task_id)
                .or_default()
                .insert(map_index, output.cloned().unwrap_or(Value::Null));
        }
    }
    let mut outputs = Map::new();
    for upstream in upstreams {
        if let Some(items) = mapped.remove(upstream.as_str()) {
            outputs.insert(
                upstream.clone(),
                Value::Array(items.into_values().collect()),
            );
        } else if let Some(output) = unmapped.get(upstream.as_str()) {
            outputs.insert(upstream.clone(), (*output).clone());
        }
    }
    outputs
}

/// Whether rendering `task` can read its upstreams' outputs: it fans out over one
/// (`for_each` from a task), or a templated field names `outputs`. A worker reads the
/// upstream instances only then: a try of a task that needs none starts one query
/// sooner. Erring towards true is harmless (a read that was not needed); a template
/// cannot reach `outputs` without naming it, so false is never wrong.
pub fn needs_upstream_outputs(task: &Task) -> bool {
    if matches!(task.for_each, Some(ForEach::From(_))) {
        return true;
    }
    serde_json::to_string(&task.kind).map_or(true, |fields| fields.contains("outputs"))
}

/// The `for_each` item of `task`'s instance at `map_index`; `None` for an unmapped task.
pub fn item_for(
    task: &Task,
    map_index: i32,
    upstream_outputs: &Map<String, Value>,
) -> Result<Option<Value>, RenderError> {
    let Some(for_each) = &task.for_each else {
        return Ok(None);
    };
    let err = |message: String| RenderError::Item {
        task_id: task.id.clone(),
        map_index,
        message,
    };
    let (items, from) = match for_each {
        ForEach::Items(items) => (items.as_slice(), "the `for_each` list".to_owned()),
        ForEach::From(upstream) => match upstream_outputs.get(upstream) {
            Some(Value::Array(items)) => (items.as_slice(), format!("the output of {upstream}")),
            Some(other) => {
                return Err(err(format!(
                    "`for_each` reads the output of {upstream}, which is not a JSON list: {}",
                    short(other)
                )))
            }
            None => {
                return Err(err(format!(
                    "`for_each` reads the output of {upstream}, which has none"
                )))
            }
        },
    };
    let index = usize::try_from(map_index)
        .map_err(|_| err("a `for_each` task runs only as its mapped instances".to_owned()))?;
    items.get(index).cloned().map(Some).ok_or_else(|| {
        err(format!(
            "{from} has only {} items; the instance has no item",
            items.len()
        ))
    })
}

/// Renders `p.task`'s templated fields for one try.
pub fn render_task(p: &RenderParams<'_>) -> Result<RenderedTask, RenderError> {
    let item = item_for(p.task, p.map_index, p.upstream_outputs)?;
    let ctx = TemplateContext::new(ContextParams {
        dag_id: p.run.dag_id.clone(),
        run_id: p.run.run_id.clone(),
        task_id: p.task.id.clone(),
        logical_date: p.run.logical_date,
        data_interval_start: p.run.data_interval_start,
        data_interval_end: p.run.data_interval_end,
        timezone: p.dag.timezone,
        try_number: p.try_number,
        map_index: u32::try_from(p.map_index).ok(),
        params: merge_params(&p.dag.params, &p.run.conf),
        item,
        env: p.env.clone(),
        outputs: p.upstream_outputs.clone(),
    })
    .with_secrets(p.secrets.clone());
    let mut r = Renderer {
        ctx: &ctx,
        fields: Map::new(),
    };
    let kind = match &p.task.kind {
        TaskKind::Command(t) => TaskKind::Command(r.command(t)?),
        TaskKind::Sql(t) => TaskKind::Sql(r.sql(t)?),
        TaskKind::Http(t) => TaskKind::Http(r.http(t)?),
        TaskKind::Ecs(t) => TaskKind::Ecs(r.ecs(t)?),
        TaskKind::Sensor(s) => {
            let mut s = s.clone();
            s.check = match &s.check {
                SensorCheck::Sql(t) => SensorCheck::Sql(r.sql(t)?),
                SensorCheck::Http(t) => SensorCheck::Http(r.http(t)?),
                SensorCheck::S3(t) => SensorCheck::S3(r.s3(t)?),
            };
            TaskKind::Sensor(s)
        }
        TaskKind::Noop => TaskKind::Noop,
        TaskKind::Approval(a) => TaskKind::Approval(r.approval(a)?),
        TaskKind::Require(t) => TaskKind::Require(r.require(t, p)?),
        TaskKind::Athena(t) => TaskKind::Athena(r.athena(t)?),
        TaskKind::Redshift(t) => TaskKind::Redshift(r.redshift(t)?),
        TaskKind::Bigquery(t) => TaskKind::Bigquery(r.bigquery(t)?),
    };
    Ok(RenderedTask {
        kind,
        fields: Value::Object(r.fields),
    })
}

/// The `secret("…")` references in `task`'s fields (literal arguments only), each once:
/// what the caller fetches before [`render_task`].
pub fn task_secret_references(task: &Task) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(kind) = serde_json::to_value(&task.kind) {
        crate::secret_store::references_in_value(&kind, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Replaces every occurrence of the secrets in every string of `fields` (keys included)
/// with `***`; see [`template::mask_secrets`].
pub fn mask_fields(fields: &Value, secrets: &[&str]) -> Value {
    match fields {
        Value::String(s) => Value::String(template::mask_secrets(s, secrets)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| mask_fields(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (template::mask_secrets(k, secrets), mask_fields(v, secrets)))
                .collect(),
        ),
        other => other.clone(),
    }
}

struct Renderer<'c> {
    ctx: &'c TemplateContext,
    fields: Map<String, Value>,
}

impl Renderer<'_> {
    /// Renders one field in place (every string inside it) and records it in `fields`.
    fn field<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        value: &mut T,
    ) -> Result<(), RenderError> {
        let shape = |e: serde_json::Error| RenderError::Shape {
            field: name.to_owned(),
            message: e.to_string(),
        };
        let mut wrapped = Map::new();
        wrapped.insert(
            name.to_owned(),
            serde_json::to_value(&*value).map_err(shape)?,
        );
        // Wrapping the value under its name makes errors read ``in `name.KEY`: …``.
        let rendered = match template::render_value(&Value::Object(wrapped), self.ctx)? {
            Value::Object(mut map) => map.remove(name).unwrap_or(Value::Null),
            other => other,
        };
        *value = serde_json::from_value(rendered.clone()).map_err(shape)?;
        self.fields.insert(name.to_owned(), rendered);
        Ok(())
    }

    fn command(&mut self, t: &CommandTask) -> Result<CommandTask, RenderError> {
        let mut t = t.clone();
        self.field("command", &mut t.command)?;
        self.field("env", &mut t.env)?;
        self.field("cwd", &mut t.cwd)?;
        Ok(t)
    }

    fn sql(&mut self, t: &SqlTask) -> Result<SqlTask, RenderError> {
        let mut t = t.clone();
        match &mut t.source {
            SqlSource::Sql(text) => self.field("sql", text)?,
            // The loader embeds the file's text; without it there is nothing to render
            // and the sql kind reports the missing text.
            SqlSource::SqlFile {
                text: Some(text), ..
            } => self.field("sql_file", text)?,
            SqlSource::SqlFile { text: None, .. } => {}
        }
        self.field("parameters", &mut t.parameters)?;
        Ok(t)
    }

    fn approval(
        &mut self,
        t: &crate::approval::ApprovalTask,
    ) -> Result<crate::approval::ApprovalTask, RenderError> {
        let mut t = t.clone();
        self.field("message", &mut t.message)?;
        Ok(t)
    }

    fn http(&mut self, t: &HttpTask) -> Result<HttpTask, RenderError> {
        let mut t = t.clone();
        self.field("url", &mut t.url)?;
        self.field("headers", &mut t.headers)?;
        self.field("query", &mut t.query)?;
        self.field("body", &mut t.body)?;
        self.field("json", &mut t.json)?;
        Ok(t)
    }

    /// Renders `logical_date` (default: the run's) and resolves it to an instant, written
    /// back as RFC 3339 in UTC: a date or local date-time is read in the DAG's time zone.
    fn require(
        &mut self,
        t: &RequireTask,
        p: &RenderParams<'_>,
    ) -> Result<RequireTask, RenderError> {
        let mut t = t.clone();
        let at = match &mut t.logical_date {
            None => p.run.logical_date,
            Some(text) => {
                self.field("logical_date", text)?;
                crate::dag::parse_date(text.trim(), p.dag.timezone).map_err(|reason| {
                    RenderError::Shape {
                        field: "logical_date".to_owned(),
                        message: format!("{text:?} is not a date: {reason}"),
                    }
                })?
            }
        };
        let resolved = at.to_rfc3339();
        self.fields
            .insert("logical_date".to_owned(), Value::String(resolved.clone()));
        t.logical_date = Some(resolved);
        Ok(t)
    }

    /// The text of a statement source, rendered as `sql` or `sql_file`.
    fn source(&mut self, source: &mut SqlSource) -> Result<(), RenderError> {
        match source {
            SqlSource::Sql(text) => self.field("sql", text),
            // Without the loader's embedded text the kind reports it missing.
            SqlSource::SqlFile {
                text: Some(text), ..
            } => self.field("sql_file", text),
            SqlSource::SqlFile { text: None, .. } => Ok(()),
        }
    }

    fn athena(&mut self, t: &AthenaTask) -> Result<AthenaTask, RenderError> {
        let mut t = t.clone();
        self.source(&mut t.source)?;
        self.field("parameters", &mut t.parameters)?;
        Ok(t)
    }

    fn bigquery(&mut self, t: &BigqueryTask) -> Result<BigqueryTask, RenderError> {
        let mut t = t.clone();
        self.source(&mut t.source)?;
        self.field("parameters", &mut t.parameters)?;
        if let Some(table) = &mut t.destination_table {
            self.field("destination_table", table)?;
        }
        Ok(t)
    }

    fn redshift(&mut self, t: &RedshiftTask) -> Result<RedshiftTask, RenderError> {
        let mut t = t.clone();
        if let Some(source) = &mut t.source {
            self.source(source)?;
        } else {
            self.field("sqls", &mut t.sqls)?;
        }
        self.field("parameters", &mut t.parameters)?;
        Ok(t)
    }

    fn s3(&mut self, t: &S3Check) -> Result<S3Check, RenderError> {
        let mut t = t.clone();
        self.field("bucket", &mut t.bucket)?;
        match &mut t.target {
            S3Target::Key(key) => self.field("key", key)?,
            S3Target::Prefix(prefix) => self.field("prefix", prefix)?,
        }
        Ok(t)
    }

    fn ecs(&mut self, t: &EcsTask) -> Result<EcsTask, RenderError> {
        let mut t = t.clone();
        self.field("command", &mut t.command)?;
        self.field("environment", &mut t.environment)?;
        self.field("tags", &mut t.tags)?;
        Ok(t)
    }
}

/// A value for an error message, cut to a readable length.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::dag::{parse_dag, CommandLine};

    const DAG: &str = r#"
timezone = "Asia/Tokyo"
params = { table = "users", limit = 10 }

[tasks.list]
type = "command"
command = "echo '[\"a\", \"b\"]'"

[tasks.count]
type = "command"
command = "echo 42"

[tasks.load]
type = "command"
depends_on = ["count"]
for_each = ["Student", "Lesson"]
command = ["load", "--date={{ ds }}", "--table={{ item }}", "--limit={{ params.limit }}"]
env = { ROWS = "{{ outputs.count }}", TRY = "{{ try_number }}", HOME_DIR = "{{ env.HOME }}" }
cwd = "/tmp/{{ ds_nodash }}"
skip_on_exit_code = [3]

[tasks.per_file]
type = "command"
for_each = { from = "list" }
command = "process {{ item }} for {{ run_id }} in {{ dag_id }}.{{ task_id }}[{{ map_index }}]"

[tasks.post]
type = "http"
depends_on = ["load"]
method = "POST"
url = "https://example.invalid/{{ params.table }}"
headers = { X-Date = "{{ ds }}" }
json = { text = "{{ outputs.load | tojson }}", n = 3 }

[tasks.marts]
type = "sql"
connection = "warehouse"
sql = "select '{{ ds }}' -- {{ connection }}"
parameters = { d = "{{ ds }}", n = 1 }

[tasks.bad]
type = "command"
command = "echo hi"
env = { X = "{{ params.nope }}" }

[tasks.join]
type = "noop"
"#;

    fn dag() -> Dag {
        parse_dag("dags/render_test.toml", DAG).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn only_tasks_that_can_read_outputs_need_them() {
        let dag = dag();
        let needs: Vec<(&str, bool)> = dag
            .tasks
            .values()
            .map(|task| (task.id.as_str(), needs_upstream_outputs(task)))
            .collect();
        assert_eq!(
            needs,
            [
                ("bad", false),
                ("count", false),
                ("join", false),
                ("list", false),
                ("load", true),
                ("marts", false),
                ("per_file", true),
                ("post", true),
            ]
        );
    }

    fn run(conf: Value) -> RunInfo {
        RunInfo {
            dag_id: "render_test".into(),
            run_id: "manual__1".into(),
            // 2026-01-01 03:00 in Tokyo.
            logical_date: Utc.with_ymd_and_hms(2025, 12, 31, 18, 0, 0).unwrap(),
            data_interval_start: Utc.with_ymd_and_hms(2025, 12, 31, 18, 0, 0).unwrap(),
            data_interval_end: Utc.with_ymd_and_hms(2026, 1, 1, 18, 0, 0).unwrap(),
            conf,
        }
    }

    fn render(
        task_id: &str,
        map_index: i32,
        conf: Value,
        outputs: Value,
    ) -> Result<RenderedTask, RenderError> {
        let dag = dag();
        let run = run(conf);
        let outputs = outputs.as_object().cloned().unwrap_or_default();
        let env = BTreeMap::from([("HOME".to_owned(), "/home/ns".to_owned())]);
        render_task(&RenderParams {
            dag: &dag,
            task: &dag.tasks[task_id],
            run: &run,
            map_index,
            try_number: 2,
            upstream_outputs: &outputs,
            env: &env,
            secrets: &BTreeMap::new(),
        })
    }

    fn check_fields(task_id: &str, map_index: i32, conf: Value, outputs: Value, expected: Value) {
        match render(task_id, map_index, conf, outputs) {
            Ok(r) => assert_eq!(r.fields, expected, "{task_id}[{map_index}]"),
            Err(e) => panic!("{task_id}[{map_index}]: {e}"),
        }
    }

    #[test]
    fn rendered_fields() {
        check_fields(
            "load",
            1,
            json!({"limit": 5}),
            json!({"count": 42}),
            json!({
                "command": ["load", "--date=2026-01-01", "--table=Lesson", "--limit=5"],
                "env": {"HOME_DIR": "/home/ns", "ROWS": "42", "TRY": "2"},
                "cwd": "/tmp/20260101",
            }),
        );
        check_fields(
            "per_file",
            0,
            json!({}),
            json!({"list": ["a.csv", "b.csv"]}),
            json!({
                "command": "process a.csv for manual__1 in render_test.per_file[0]",
                "env": {},
                "cwd": null,
            }),
        );
        check_fields(
            "post",
            -1,
            json!({"table": "lessons"}),
            json!({"load": [1, null]}),
            json!({
                "url": "https://example.invalid/lessons",
                "headers": {"X-Date": "2026-01-01"},
                "query": {},
                "body": null,
                "json": {"text": "[1, null]", "n": 3},
            }),
        );
        check_fields("join", -1, json!({}), json!({}), json!({}));
    }

    #[test]
    fn rendered_kind_keeps_untemplated_fields() {
        let rendered = render("load", 0, json!({}), json!({"count": 1})).expect("renders");
        let TaskKind::Command(t) = rendered.kind else {
            panic!("a command task, got {:?}", rendered.kind);
        };
        assert_eq!(
            t.command,
            CommandLine::Argv(vec![
                "load".into(),
                "--date=2026-01-01".into(),
                "--table=Student".into(),
                "--limit=10".into()
            ])
        );
        assert_eq!(t.skip_on_exit_code, vec![3]);
        assert_eq!(t.cwd.as_deref(), Some("/tmp/20260101"));
    }

    #[test]
    fn sql_renders_text_and_parameters_only() {
        let err = render("marts", -1, json!({}), json!({})).expect_err("connection is no variable");
        assert_eq!(
            err.to_string(),
            "in `sql`: undefined value: `connection` is undefined (line 1)"
        );
    }

    #[test]
    fn errors_name_the_field() {
        fn check(task_id: &str, map_index: i32, outputs: Value, expected: &str) {
            let err = render(task_id, map_index, json!({}), outputs).expect_err(task_id);
            assert_eq!(err.to_string(), expected, "{task_id}[{map_index}]");
        }
        check(
            "bad",
            -1,
            json!({}),
            "in `env.X`: undefined value: `params.nope` is undefined (line 1)",
        );
        check(
            "load",
            0,
            json!({}),
            "in `env.ROWS`: undefined value: `outputs.count` is undefined (line 1)",
        );
        check(
            "load",
            2,
            json!({"count": 1}),
            "task load map index 2: the `for_each` list has only 2 items; the instance has no item",
        );
        check(
            "per_file",
            0,
            json!({"list": "a.csv"}),
            "task per_file map index 0: `for_each` reads the output of list, which is not a JSON list: \"a.csv\"",
        );
        check(
            "per_file",
            0,
            json!({}),
            "task per_file map index 0: `for_each` reads the output of list, which has none",
        );
        check(
            "per_file",
            -1,
            json!({"list": []}),
            "task per_file map index -1: a `for_each` task runs only as its mapped instances",
        );
    }

    #[test]
    fn params_merge_conf_over_dag_params() {
        fn check(dag_params: Value, conf: Value, expected: Value) {
            let dag_params = dag_params.as_object().cloned().unwrap_or_default();
            assert_eq!(merge_params(&dag_params, &conf), expected, "{conf}");
        }
        check(
            json!({"a": 1, "b": 2}),
            json!({"b": 3, "c": 4}),
            json!({"a": 1, "b": 3, "c": 4}),
        );
        check(
            json!({"a": {"x": 1}}),
            json!({"a": {"y": 2}}),
            json!({"a": {"y": 2}}),
        );
        check(json!({"a": 1}), json!(null), json!({"a": 1}));
        check(json!({}), json!({"a": 1}), json!({"a": 1}));
    }

    #[test]
    fn outputs_of_upstreams() {
        fn check(upstreams: &[&str], instances: &[(&str, i32, Option<Value>)], expected: Value) {
            let upstreams: Vec<String> = upstreams.iter().map(|u| (*u).to_owned()).collect();
            let got = collect_outputs(
                &upstreams,
                instances.iter().map(|(t, i, o)| (*t, *i, o.as_ref())),
            );
            assert_eq!(Value::Object(got), expected, "{instances:?}");
        }
        check(&["a"], &[("a", -1, Some(json!(1)))], json!({"a": 1}));
        // Not an upstream: left out.
        check(&["a"], &[("b", -1, Some(json!(1)))], json!({}));
        // No output: left out, so using it is an error rather than "none".
        check(&["a"], &[("a", -1, None)], json!({}));
        // Mapped: the instances' outputs in map order; the -1 placeholder is ignored.
        check(
            &["m"],
            &[
                ("m", 1, Some(json!("one"))),
                ("m", -1, None),
                ("m", 0, Some(json!("zero"))),
                ("m", 2, None),
            ],
            json!({"m": ["zero", "one", null]}),
        );
    }

    #[test]
    fn masking_reaches_every_string() {
        let fields =
            json!({"url": "https://u:hunter2@x", "headers": {"hunter2": ["a hunter2"]}, "n": 1});
        assert_eq!(
            mask_fields(&fields, &["hunter2"]),
            json!({"url": "https://u:***@x", "headers": {"***": ["a ***"]}, "n": 1})
        );
    }
}
