//! Templating with minijinja, with the variables and macros Airflow users know
//! (`{{ ds }}`, `{{ params.x }}`, `{{ macros.ds_add(ds, 1) }}`), plus secret masking for
//! rendered text.
//!
//! Rendering is strict: an unknown variable or attribute is an error naming it (Airflow
//! renders with `StrictUndefined` too), never an empty string. One shared minijinja
//! environment serves every render; a fuel limit stops runaway templates.
//!
//! Dates: `ds`, `ts` and the date-times are in the DAG's time zone (the `timezone` passed
//! to [`TemplateContext::new`]). Airflow uses UTC; for a DAG in UTC both agree.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use minijinja::value::{Serde, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

pub use crate::mask::mask_secrets;
use crate::secret::Secret;

/// Instructions a single render may execute before it is stopped as runaway.
pub const FUEL: u64 = 2_000_000;

/// A template that does not parse or does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", .line.map(|line| format!(" (line {line})")).unwrap_or_default())]
pub struct TemplateError {
    pub message: String,
    /// 1-based line inside the template text, when known.
    pub line: Option<usize>,
}

/// What [`TemplateContext::new`] is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextParams {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// The DAG's time zone; dates are rendered in it.
    pub timezone: Tz,
    /// The try being rendered for (1 for the first try).
    pub try_number: u32,
    /// The instance's index in a `for_each` expansion; `None` when not mapped.
    pub map_index: Option<u32>,
    /// DAG params merged with the trigger's conf (a JSON object).
    pub params: serde_json::Value,
    /// The `for_each` item of this instance.
    pub item: Option<serde_json::Value>,
    /// Environment variables visible to templates, chosen by the caller.
    pub env: BTreeMap<String, String>,
    /// Upstream task id → that task's output.
    pub outputs: serde_json::Map<String, serde_json::Value>,
}

/// The variables a template sees, under these names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateContext {
    /// Logical date as `YYYY-MM-DD`.
    pub ds: String,
    /// Logical date as `YYYYMMDD`.
    pub ds_nodash: String,
    /// Logical date-time in ISO 8601, e.g. `2026-01-01T03:00:00+09:00`.
    pub ts: String,
    /// e.g. `20260101T030000`.
    pub ts_nodash: String,
    /// e.g. `20260101T030000+0900`.
    pub ts_nodash_with_tz: String,
    /// Same text as `ts`.
    pub logical_date: String,
    /// ISO 8601.
    pub data_interval_start: String,
    /// ISO 8601.
    pub data_interval_end: String,
    pub run_id: String,
    pub dag_id: String,
    pub task_id: String,
    pub try_number: u32,
    /// The `for_each` index, -1 when the task is not mapped (as in Airflow).
    pub map_index: i64,
    pub params: serde_json::Value,
    /// Absent (so an error to use) when the task is not mapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<serde_json::Value>,
    pub env: BTreeMap<String, String>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// What `secret("…")` returns, by reference (fetched before rendering); not a
    /// variable of its own.
    #[serde(skip)]
    pub secrets: BTreeMap<String, Secret>,
}

impl TemplateContext {
    pub fn new(p: ContextParams) -> TemplateContext {
        let logical = p.logical_date.with_timezone(&p.timezone);
        let ts = iso(p.logical_date, p.timezone);
        TemplateContext {
            ds: logical.format("%Y-%m-%d").to_string(),
            ds_nodash: logical.format("%Y%m%d").to_string(),
            ts_nodash: logical.format("%Y%m%dT%H%M%S").to_string(),
            ts_nodash_with_tz: logical.format("%Y%m%dT%H%M%S%z").to_string(),
            logical_date: ts.clone(),
            ts,
            data_interval_start: iso(p.data_interval_start, p.timezone),
            data_interval_end: iso(p.data_interval_end, p.timezone),
            run_id: p.run_id,
            dag_id: p.dag_id,
            task_id: p.task_id,
            try_number: p.try_number,
            map_index: p.map_index.map_or(-1, i64::from),
            params: p.params,
            item: p.item,
            env: p.env,
            outputs: p.outputs,
            secrets: BTreeMap::new(),
        }
    }

    /// The context with the values `secret("…")` returns, by reference.
    pub fn with_secrets(mut self, secrets: BTreeMap<String, Secret>) -> TemplateContext {
        self.secrets = secrets;
        self
    }

    fn to_value(&self) -> Value {
        let resolved = std::sync::Arc::new(self.secrets.clone());
        // `secret("ssm:/x")`: a value fetched before rendering (the worker looks for
        // literal references in the task's templates and fetches each one).
        let secret = Value::from_function(move |reference: String| {
            resolved
                .get(&reference)
                .map(|s| s.expose().to_owned())
                .ok_or_else(|| {
                    invalid(format!(
                        "secret({reference:?}) was not fetched: write the reference as a \
                         string literal, \"ssm:/NAME\" or \"secretsmanager:ID\""
                    ))
                })
        });
        minijinja::context! { secret => secret, ..Value::from(Serde(self)) }
    }
}

fn iso(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// Checks that `source` parses as a template (undefined variables are not an error here).
pub fn check(source: &str) -> Result<(), TemplateError> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|err| convert(&err, ""))
}

/// Renders one template string.
pub fn render_str(source: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    if !is_template(source) {
        return Ok(source.to_owned());
    }
    render_with(source, &ctx.to_value(), "")
}

/// Renders every string inside `value` (object keys are left alone), e.g. a task's
/// `environment` table or an HTTP body. Errors say where: ``in `environment.DATE`: ...``.
pub fn render_value(
    value: &serde_json::Value,
    ctx: &TemplateContext,
) -> Result<serde_json::Value, TemplateError> {
    let mut ctx_value = None;
    let mut path = String::new();
    render_inner(value, ctx, &mut ctx_value, &mut path)
}

fn render_inner(
    value: &serde_json::Value,
    ctx: &TemplateContext,
    ctx_value: &mut Option<Value>,
    path: &mut String,
) -> Result<serde_json::Value, TemplateError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(source) if is_template(source) => {
            let ctx_value = ctx_value.get_or_insert_with(|| ctx.to_value());
            J::String(render_with(source, ctx_value, path)?)
        }
        J::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                out.push(render_inner(item, ctx, ctx_value, path)?);
                path.truncate(len);
            }
            J::Array(out)
        }
        J::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                out.insert(key.clone(), render_inner(item, ctx, ctx_value, path)?);
                path.truncate(len);
            }
            J::Object(out)
        }
        other => other.clone(),
    })
}

/// Text without any delimiter renders to itself; skipping it saves a compile.
fn is_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

fn render_with(source: &str, ctx: &Value, path: &str) -> Result<String, TemplateError> {
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|err| convert(&err, path))?;
    template.render(ctx).map_err(|err| convert(&err, path))
}

fn convert(err: &minijinja::Error, path: &str) -> TemplateError {
    let what = match (err.kind(), err.detail()) {
        (ErrorKind::OutOfFuel, _) => format!(
            "template stopped after {FUEL} steps (a runaway loop?); render less in one template"
        ),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    let message = if path.is_empty() {
        what
    } else {
        format!("in `{path}`: {what}")
    };
    TemplateError {
        message,
        line: err.line(),
    }
}

/// The one environment every render uses.
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Debug info is what lets an undefined error name the variable.
        env.set_debug(true);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build();
        if let Ok(syntax) = syntax {
            env.set_syntax(syntax);
        }
        // `debug()` would dump the whole context, env included, into the output.
        env.remove_global("debug");
        env.add_function("ds_add", ds_add);
        env.add_filter("ds_add", ds_add);
        env.add_function("ds_format", ds_format);
        env.add_filter("ds_format", ds_format);
        for (name, filter) in DATE_FILTERS {
            env.add_filter(name, filter);
        }
        env.add_filter("shell_quote", shell_quote);
        env.add_global(
            "macros",
            Value::from_pairs([
                ("ds_add", Value::from_function(ds_add)),
                ("ds_format", Value::from_function(ds_format)),
            ]),
        );
        env
    })
}

/// `{{ params.x | shell_quote }}`: the value as one word of a POSIX shell command, quoted
/// so that no character in it is special to `sh` (`$(…)`, `;`, quotes, spaces, globs).
/// Strings are quoted as they are; other values as they render (`10`, `true`).
fn shell_quote(value: &Value) -> Result<String, minijinja::Error> {
    let text = match value.as_str() {
        Some(text) => text.to_owned(),
        None => value.to_string(),
    };
    shlex::try_quote(&text)
        .map(|quoted| quoted.into_owned())
        .map_err(|err| invalid(format!("shell_quote: {err}")))
}

fn invalid(message: String) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message)
}

/// Airflow's `macros.ds_add`: `ds_add('2026-01-31', 1)` is `'2026-02-01'`.
fn ds_add(ds: &str, days: i64) -> Result<String, minijinja::Error> {
    let date = NaiveDate::parse_from_str(ds, "%Y-%m-%d")
        .map_err(|err| invalid(format!("ds_add: {ds:?} is not a YYYY-MM-DD date ({err})")))?;
    TimeDelta::try_days(days)
        .and_then(|delta| date.checked_add_signed(delta))
        .map(|date| date.format("%Y-%m-%d").to_string())
        .ok_or_else(|| invalid(format!("ds_add: {ds} + {days} days is out of range")))
}

/// Airflow's `macros.ds_format`: `ds_format('2026-01-31', '%Y-%m-%d', '%d/%m/%Y')`.
fn ds_format(
    ds: &str,
    input_format: &str,
    output_format: &str,
) -> Result<String, minijinja::Error> {
    let date = NaiveDate::parse_from_str(ds, input_format).map_err(|err| {
        invalid(format!(
            "ds_format: {ds:?} does not match {input_format:?} ({err})"
        ))
    })?;
    let mut out = String::new();
    std::fmt::write(&mut out, format_args!("{}", date.format(output_format))).map_err(|_| {
        invalid(format!(
            "ds_format: invalid output format {output_format:?}"
        ))
    })?;
    Ok(out)
}

type DateFilter = fn(&str) -> Result<String, minijinja::Error>;

/// Airflow's date filters, applied to an ISO 8601 date-time such as `data_interval_end`.
const DATE_FILTERS: [(&str, DateFilter); 5] = [
    ("ds", |s| reformat(s, "%Y-%m-%d")),
    ("ds_nodash", |s| reformat(s, "%Y%m%d")),
    ("ts", |s| {
        parse_iso(s).map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
    }),
    ("ts_nodash", |s| reformat(s, "%Y%m%dT%H%M%S")),
    ("ts_nodash_with_tz", |s| reformat(s, "%Y%m%dT%H%M%S%z")),
];

fn parse_iso(s: &str) -> Result<DateTime<chrono::FixedOffset>, minijinja::Error> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|err| invalid(format!("{s:?} is not an ISO 8601 date-time ({err})")))
}

fn reformat(s: &str, format: &str) -> Result<String, minijinja::Error> {
    parse_iso(s).map(|at| at.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn params() -> ContextParams {
        ContextParams {
            dag_id: "nightly_dmp".into(),
            run_id: "scheduled__2026-01-01T03:00:00+09:00".into(),
            task_id: "extract".into(),
            // 2026-01-01 03:00 in Tokyo.
            logical_date: Utc.with_ymd_and_hms(2025, 12, 31, 18, 0, 0).unwrap(),
            data_interval_start: Utc.with_ymd_and_hms(2025, 12, 31, 18, 0, 0).unwrap(),
            data_interval_end: Utc.with_ymd_and_hms(2026, 1, 1, 18, 0, 0).unwrap(),
            timezone: chrono_tz::Asia::Tokyo,
            try_number: 2,
            map_index: Some(1),
            params: json!({"table": "Lesson", "limit": 10, "nested": {"flag": true}}),
            item: Some(json!("Lesson")),
            env: BTreeMap::from([("SLACK_WEBHOOK_URL".into(), "https://hooks.invalid/x".into())]),
            outputs: json!({"list_tables": ["A", "B"], "count": {"rows": 42}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn ctx() -> TemplateContext {
        TemplateContext::new(params())
    }

    #[test]
    fn secret_returns_what_was_fetched() {
        let ctx = ctx().with_secrets(BTreeMap::from([(
            "ssm:/dmp/hook".to_owned(),
            Secret::new("https://hooks.invalid/s3cr3t"),
        )]));
        assert_eq!(
            render_str("{{ secret('ssm:/dmp/hook') }}/x", &ctx).as_deref(),
            Ok("https://hooks.invalid/s3cr3t/x")
        );
        let err = render_str("{{ secret('ssm:/other') }}", &ctx).expect_err("not fetched");
        assert!(
            err.message.contains(
                "secret(\"ssm:/other\") was not fetched: write the reference as a string literal"
            ),
            "{err}"
        );
        // `secret` is a function, not a variable holding the values.
        let err = render_str("{{ secret }}", &ctx).map(|s| s.contains("s3cr3t"));
        assert_ne!(err, Ok(true));
    }

    fn check_render(source: &str, expected: &str) {
        assert_eq!(
            render_str(source, &ctx()).as_deref(),
            Ok(expected),
            "rendering {source:?}"
        );
    }

    fn check_error(source: &str, message: &str, line: Option<usize>) {
        let err = render_str(source, &ctx()).expect_err(source);
        assert_eq!(
            (err.message.as_str(), err.line),
            (message, line),
            "rendering {source:?}"
        );
    }

    #[test]
    fn shell_quote_makes_one_inert_word() {
        let cases = [
            ("{{ 'plain' | shell_quote }}", "plain"),
            ("{{ '$(id -un)' | shell_quote }}", "'$(id -un)'"),
            ("{{ 'a b; rm -rf ~' | shell_quote }}", "'a b; rm -rf ~'"),
            ("{{ \"it's\" | shell_quote }}", "\"it's\""),
            ("{{ '`x`' | shell_quote }}", "'`x`'"),
            ("{{ '' | shell_quote }}", "''"),
            ("{{ params.limit | shell_quote }}", "10"),
            ("{{ params.table | shell_quote }}", "Lesson"),
        ];
        for (source, expected) in cases {
            check_render(source, expected);
        }
        let nul = shell_quote(&Value::from("a\0b")).expect_err("a NUL cannot be quoted");
        assert_eq!(
            nul.detail(),
            Some("shell_quote: cannot shell-quote string containing nul byte")
        );
    }

    #[test]
    fn variables() {
        let cases = [
            ("{{ ds }}", "2026-01-01"),
            ("{{ ds_nodash }}", "20260101"),
            ("{{ ts }}", "2026-01-01T03:00:00+09:00"),
            ("{{ ts_nodash }}", "20260101T030000"),
            ("{{ ts_nodash_with_tz }}", "20260101T030000+0900"),
            ("{{ logical_date }}", "2026-01-01T03:00:00+09:00"),
            ("{{ data_interval_start }}", "2026-01-01T03:00:00+09:00"),
            ("{{ data_interval_end }}", "2026-01-02T03:00:00+09:00"),
            ("{{ run_id }}", "scheduled__2026-01-01T03:00:00+09:00"),
            ("{{ dag_id }}", "nightly_dmp"),
            ("{{ task_id }}", "extract"),
            ("{{ try_number }}", "2"),
            ("{{ map_index }}", "1"),
            ("{{ params.table }}", "Lesson"),
            ("{{ params['limit'] + 1 }}", "11"),
            // Booleans render as Jinja (Python) does.
            ("{{ params.nested.flag }}", "True"),
            ("{{ item }}", "Lesson"),
            ("{{ env.SLACK_WEBHOOK_URL }}", "https://hooks.invalid/x"),
            ("{{ outputs.list_tables | tojson }}", "[\"A\", \"B\"]"),
            ("{{ outputs.count.rows }}", "42"),
            ("{{ outputs['count'] | tojson }}", "{\"rows\": 42}"),
        ];
        for (source, expected) in cases {
            check_render(source, expected);
        }
    }

    #[test]
    fn macros_filters_and_syntax() {
        let cases = [
            ("{{ ds_add(ds, 1) }}", "2026-01-02"),
            ("{{ ds | ds_add(-1) }}", "2025-12-31"),
            ("{{ macros.ds_add(ds, 31) }}", "2026-02-01"),
            (
                "{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}",
                "01/01/2026",
            ),
            ("{{ ds | ds_format('%Y-%m-%d', '%Y%m') }}", "202601"),
            ("{{ data_interval_end | ds }}", "2026-01-02"),
            ("{{ data_interval_end | ds_nodash }}", "20260102"),
            ("{{ data_interval_end | ts_nodash }}", "20260102T030000"),
            (
                "{{ data_interval_end | ts_nodash_with_tz }}",
                "20260102T030000+0900",
            ),
            ("{{ data_interval_end | ts }}", "2026-01-02T03:00:00+09:00"),
            ("{{ params.missing | default('none') }}", "none"),
            (
                "{% if params.missing is defined %}x{% else %}y{% endif %}",
                "y",
            ),
            (
                "{% for t in outputs.list_tables %}{{ t | lower }},{% endfor %}",
                "a,b,",
            ),
            (
                "select * from t where d = '{{ ds }}';\n",
                "select * from t where d = '2026-01-01';\n",
            ),
            (
                "no template <here> {single} braces",
                "no template <here> {single} braces",
            ),
            ("{{ '<b>' }}", "<b>"),
            ("{# comment #}x", "x"),
        ];
        for (source, expected) in cases {
            check_render(source, expected);
        }
    }

    #[test]
    fn unmapped_task() {
        let ctx = TemplateContext::new(ContextParams {
            map_index: None,
            item: None,
            ..params()
        });
        assert_eq!(render_str("{{ map_index }}", &ctx).as_deref(), Ok("-1"));
        let err = render_str("{{ item }}", &ctx).expect_err("item is undefined");
        assert_eq!(err.message, "undefined value: `item` is undefined");
    }

    #[test]
    fn utc_dag_matches_airflow() {
        let ctx = TemplateContext::new(ContextParams {
            timezone: chrono_tz::UTC,
            ..params()
        });
        assert_eq!(
            render_str("{{ ds }} {{ ts }}", &ctx).as_deref(),
            Ok("2025-12-31 2025-12-31T18:00:00+00:00")
        );
    }

    #[test]
    fn errors() {
        let cases: [(&str, &str, Option<usize>); 12] = [
            ("{{ dss }}", "undefined value: `dss` is undefined", Some(1)),
            ("line one\n\n{{ params.tabel }}", "undefined value: `params.tabel` is undefined", Some(3)),
            ("{{ env.MISSING_VAR }}", "undefined value: `env.MISSING_VAR` is undefined", Some(1)),
            ("{{ outputs.nope }}", "undefined value: `outputs.nope` is undefined", Some(1)),
            ("{% if nope %}x{% endif %}", "undefined value: `nope` is undefined", Some(1)),
            ("{{ ds ", "syntax error: unexpected end of input, expected end of variable block", Some(1)),
            ("a\n{% if %}", "syntax error: unexpected end of block", Some(2)),
            ("{{ ds | nofilter }}", "unknown filter: filter nofilter is unknown", Some(1)),
            ("{{ nofunc(1) }}", "unknown function: nofunc is unknown", Some(1)),
            ("{{ debug() }}", "unknown function: debug is unknown", Some(1)),
            (
                "{{ ds_format(ds, '%Y-%m-%d', '%Q') }}",
                "invalid operation: ds_format: invalid output format \"%Q\"",
                Some(1),
            ),
            (
                "{{ ds_add('01/02/2026', 1) }}",
                "invalid operation: ds_add: \"01/02/2026\" is not a YYYY-MM-DD date (input contains invalid characters)",
                Some(1),
            ),
        ];
        for (source, message, line) in cases {
            check_error(source, message, line);
        }
    }

    #[test]
    fn runaway_template_runs_out_of_fuel() {
        let source =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let err = render_str(source, &ctx()).expect_err("runaway");
        assert!(err.message.contains("stopped after"), "{err}");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn error_display_includes_line() {
        let err = render_str("\n{{ dss }}", &ctx()).expect_err("undefined");
        assert_eq!(
            err.to_string(),
            "undefined value: `dss` is undefined (line 2)"
        );
    }

    #[test]
    fn check_parses_only() {
        let cases = [
            ("{{ anything_undefined }}", None),
            ("plain", None),
            ("{% for x in y %}{{ x }}{% endfor %}", None),
            ("{% for x in y %}", Some(1)),
            ("ok\n{{ 1 + }}", Some(2)),
        ];
        for (source, error_line) in cases {
            match (check(source), error_line) {
                (Ok(()), None) => {}
                (Err(err), Some(line)) => assert_eq!(err.line, Some(line), "{source:?}: {err}"),
                (got, want) => panic!("{source:?}: got {got:?}, wanted an error at {want:?}"),
            }
        }
    }

    #[test]
    fn render_value_renders_strings_not_keys() {
        let value = json!({
            "CLASSNAME": "{{ item }}",
            "TARGET_DATE": "{{ ds }}",
            "{{ key }}": "kept",
            "list": ["{{ ds_nodash }}", 3, null, {"deep": "{{ params.limit }}"}],
            "n": 1.5,
            "b": false,
        });
        let expected = json!({
            "CLASSNAME": "Lesson",
            "TARGET_DATE": "2026-01-01",
            "{{ key }}": "kept",
            "list": ["20260101", 3, null, {"deep": "10"}],
            "n": 1.5,
            "b": false,
        });
        assert_eq!(render_value(&value, &ctx()), Ok(expected));
        assert_eq!(render_value(&json!(7), &ctx()), Ok(json!(7)));
        assert_eq!(
            render_value(&json!("{{ ds }}"), &ctx()),
            Ok(json!("2026-01-01"))
        );
    }

    #[test]
    fn render_value_errors_name_the_field() {
        let cases = [
            (
                json!({"env": {"DATE": "{{ dss }}"}}),
                "in `env.DATE`: undefined value: `dss` is undefined",
            ),
            (
                json!({"args": ["ok", "{{ nope }}"]}),
                "in `args[1]`: undefined value: `nope` is undefined",
            ),
            (
                json!(["{{ x }}"]),
                "in `[0]`: undefined value: `x` is undefined",
            ),
            (json!("{{ y }}"), "undefined value: `y` is undefined"),
        ];
        for (value, message) in cases {
            let err = render_value(&value, &ctx()).expect_err("undefined");
            assert_eq!(err.message, message, "{value}");
        }
    }
}
