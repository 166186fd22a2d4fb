//! The warehouse kinds' tables: `athena`, `redshift` and `bigquery` resolved into their
//! tasks, every value checked (exactly one statement source, a target, row bounds).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::dag::{
    AthenaTask, BigqueryTask, RedshiftTarget, RedshiftTask, BIGQUERY_CREATE_DISPOSITIONS,
    BIGQUERY_WRITE_DISPOSITIONS, DEFAULT_MAX_ROWS, MAX_ROWS_LIMIT,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAthena {
    pub sql: Option<Spanned<String>>,
    pub sql_file: Option<Spanned<String>>,
    #[serde(default)]
    pub parameters: Vec<Spanned<toml::Value>>,
    pub database: Option<Spanned<String>>,
    pub catalog: Option<Spanned<String>>,
    pub workgroup: Option<Spanned<String>>,
    pub output_location: Option<Spanned<String>>,
    pub max_rows: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedshift {
    pub sql: Option<Spanned<String>>,
    pub sql_file: Option<Spanned<String>>,
    pub sqls: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub parameters: toml::Table,
    pub database: Spanned<String>,
    pub cluster_identifier: Option<Spanned<String>>,
    pub db_user: Option<Spanned<String>>,
    pub workgroup_name: Option<Spanned<String>>,
    pub secret_arn: Option<Spanned<String>>,
    pub statement_name: Option<Spanned<String>>,
    pub max_rows: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBigquery {
    pub connection: Spanned<String>,
    pub sql: Option<Spanned<String>>,
    pub sql_file: Option<Spanned<String>>,
    #[serde(default)]
    pub parameters: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    pub location: Option<Spanned<String>>,
    pub destination_table: Option<Spanned<String>>,
    pub write_disposition: Option<Spanned<String>>,
    pub create_disposition: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<Spanned<String>, Spanned<String>>,
    pub maximum_bytes_billed: Option<Spanned<i64>>,
    pub dry_run: Option<bool>,
    pub max_rows: Option<Spanned<u32>>,
}

/// The field path `name` of the task table at `span`.
fn field_of(cx: &Ctx<'_>, span: &Range<usize>, name: &str) -> String {
    let table = cx
        .index
        .lookup(span.start)
        .map(|e| e.path())
        .unwrap_or_default();
    join_path(&table, name)
}

fn missing(cx: &mut Ctx<'_>, span: &Range<usize>, name: &str, hint: &str) {
    let at = cx.at_field(Some(span.clone()), &field_of(cx, span, name));
    cx.push(DagError::MissingField {
        at,
        name: name.into(),
        hint: Some(hint.into()),
    });
}

/// Exactly one of `sql` and `sql_file`, neither empty; `None` after reporting.
fn source(
    cx: &mut Ctx<'_>,
    kind: &str,
    sql: Option<Spanned<String>>,
    sql_file: Option<Spanned<String>>,
    span: &Range<usize>,
) -> Option<SqlSource> {
    match (sql, sql_file) {
        (Some(_), Some(file)) => {
            cx.invalid(file.span(), "set either sql or sql_file, not both");
            None
        }
        (None, None) => {
            missing(
                cx,
                span,
                "sql",
                &format!("an {kind} task needs sql or sql_file"),
            );
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
    }
}

/// `max_rows` within 0..=[`MAX_ROWS_LIMIT`], [`DEFAULT_MAX_ROWS`] when unset.
fn max_rows(cx: &mut Ctx<'_>, v: Option<Spanned<u32>>) -> Option<u32> {
    match v {
        None => Some(DEFAULT_MAX_ROWS),
        Some(n) if *n.get_ref() > MAX_ROWS_LIMIT => {
            cx.invalid(
                n.span(),
                format!("max_rows must be at most {MAX_ROWS_LIMIT}"),
            );
            None
        }
        Some(n) => Some(n.into_inner()),
    }
}

/// A string field that, when set, must not be blank.
fn not_blank(
    cx: &mut Ctx<'_>,
    name: &str,
    v: Option<Spanned<String>>,
) -> Result<Option<String>, ()> {
    match v {
        Some(s) if s.get_ref().trim().is_empty() => {
            cx.invalid(s.span(), format!("{name} must not be empty"));
            Err(())
        }
        other => Ok(other.map(Spanned::into_inner)),
    }
}

pub(super) fn athena(cx: &mut Ctx<'_>, raw: RawAthena, span: Range<usize>) -> Option<AthenaTask> {
    let source = source(cx, "athena", raw.sql, raw.sql_file, &span);
    let mut parameters = Vec::new();
    let mut ok = true;
    for p in &raw.parameters {
        match cx.json(p) {
            Some(v) => parameters.push(v),
            None => ok = false,
        }
    }
    if let Some(out) = &raw.output_location {
        if !out.get_ref().starts_with("s3://") {
            cx.invalid(
                out.span(),
                format!(
                    "output_location must be an s3:// URL, found {:?}",
                    out.get_ref()
                ),
            );
            ok = false;
        }
    }
    let database = not_blank(cx, "database", raw.database);
    let catalog = not_blank(cx, "catalog", raw.catalog);
    let workgroup = not_blank(cx, "workgroup", raw.workgroup);
    let max_rows = max_rows(cx, raw.max_rows);
    if !ok {
        return None;
    }
    Some(AthenaTask {
        source: source?,
        parameters,
        database: database.ok()?,
        catalog: catalog.ok()?,
        workgroup: workgroup.ok()?,
        output_location: raw.output_location.map(Spanned::into_inner),
        max_rows: max_rows?,
    })
}

pub(super) fn redshift(
    cx: &mut Ctx<'_>,
    raw: RawRedshift,
    span: Range<usize>,
) -> Option<RedshiftTask> {
    let mut ok = true;
    let (source, sqls) = match raw.sqls {
        Some(list) => {
            if let Some(other) = raw.sql.as_ref().or(raw.sql_file.as_ref()) {
                cx.invalid(other.span(), "set one of sql, sql_file and sqls");
                ok = false;
            }
            if list.get_ref().is_empty() || list.get_ref().iter().any(|s| s.trim().is_empty()) {
                cx.invalid(list.span(), "sqls must list statements, none of them empty");
                ok = false;
            }
            if let Some((key, _)) = raw.parameters.iter().next() {
                let at = cx.at_field(
                    Some(list.span()),
                    &field_of(cx, &span, &format!("parameters.{key}")),
                );
                cx.push(DagError::InvalidValue {
                    at,
                    message: "the Data API binds no parameters in a batch (sqls): use one statement in sql".into(),
                });
                ok = false;
            }
            (None, list.into_inner())
        }
        None => match source(cx, "redshift", raw.sql, raw.sql_file, &span) {
            Some(s) => (Some(s), Vec::new()),
            None => return None,
        },
    };
    if raw.database.get_ref().trim().is_empty() {
        cx.invalid(raw.database.span(), "database must not be empty");
        ok = false;
    }
    let target = match (raw.cluster_identifier, raw.workgroup_name) {
        (Some(_), Some(w)) => {
            cx.invalid(
                w.span(),
                "set either cluster_identifier (provisioned) or workgroup_name (Serverless), not both",
            );
            None
        }
        (None, None) => {
            missing(
                cx,
                &span,
                "cluster_identifier",
                "a redshift task runs on a provisioned cluster (cluster_identifier) or a Serverless workgroup (workgroup_name)",
            );
            None
        }
        (Some(c), None) => {
            let db_user = not_blank(cx, "db_user", raw.db_user.clone()).ok()?;
            Some(RedshiftTarget::Cluster {
                cluster_identifier: c.into_inner(),
                db_user,
            })
        }
        (None, Some(w)) => {
            if let Some(u) = &raw.db_user {
                cx.invalid(
                    u.span(),
                    "db_user applies to a provisioned cluster; a Serverless workgroup uses your IAM identity or secret_arn",
                );
                ok = false;
            }
            Some(RedshiftTarget::Serverless {
                workgroup_name: w.into_inner(),
            })
        }
    };
    let secret_arn = not_blank(cx, "secret_arn", raw.secret_arn);
    let statement_name = not_blank(cx, "statement_name", raw.statement_name);
    let max_rows = max_rows(cx, raw.max_rows);
    if !ok {
        return None;
    }
    Some(RedshiftTask {
        source,
        sqls,
        parameters: table_to_json(&raw.parameters).into_iter().collect(),
        database: raw.database.into_inner(),
        target: target?,
        secret_arn: secret_arn.ok()?,
        statement_name: statement_name.ok()?,
        max_rows: max_rows?,
    })
}

/// A BigQuery parameter name: a letter or `_`, then letters, digits or `_`; at most 128.
fn bigquery_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// A BigQuery label key (`first` also: a lower-case letter first, not empty) or value:
/// lower-case letters, digits, `_` and `-`, at most 63 characters.
fn bigquery_label(text: &str, key: bool) -> bool {
    text.len() <= 63
        && (!key || text.starts_with(|c: char| c.is_ascii_lowercase()))
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// One of `allowed` (any case, stored as BigQuery spells it).
fn one_of(
    cx: &mut Ctx<'_>,
    name: &str,
    v: Option<Spanned<String>>,
    allowed: &[&str],
) -> Result<Option<String>, ()> {
    let Some(v) = v else { return Ok(None) };
    let upper = v.get_ref().to_ascii_uppercase();
    if allowed.contains(&upper.as_str()) {
        Ok(Some(upper))
    } else {
        cx.invalid(
            v.span(),
            format!(
                "{name} must be one of {}, found {:?}",
                allowed.join(", "),
                v.get_ref()
            ),
        );
        Err(())
    }
}

pub(super) fn bigquery(
    cx: &mut Ctx<'_>,
    raw: RawBigquery,
    span: Range<usize>,
    options: &ParseOptions,
) -> Option<BigqueryTask> {
    let connection = super::tasks::connection(cx, &raw.connection, options);
    let source = source(cx, "bigquery", raw.sql, raw.sql_file, &span);
    let mut ok = true;
    let mut parameters = BTreeMap::new();
    for (name, value) in &raw.parameters {
        if !bigquery_parameter_name(name.get_ref()) {
            cx.invalid(
                name.span(),
                format!(
                    "parameter name {:?} is not a BigQuery parameter name (a letter or _, then letters, digits or _)",
                    name.get_ref()
                ),
            );
            ok = false;
        }
        match cx.json(value) {
            Some(v) => {
                parameters.insert(name.get_ref().clone(), v);
            }
            None => ok = false,
        }
    }
    let mut labels = BTreeMap::new();
    for (key, value) in &raw.labels {
        if !bigquery_label(key.get_ref(), true) || key.get_ref().is_empty() {
            cx.invalid(
                key.span(),
                format!(
                    "label key {:?}: use lower-case letters, digits, _ and -, starting with a letter, at most 63 characters",
                    key.get_ref()
                ),
            );
            ok = false;
        } else if !bigquery_label(value.get_ref(), false) {
            cx.invalid(
                value.span(),
                format!(
                    "label value {:?}: use lower-case letters, digits, _ and -, at most 63 characters",
                    value.get_ref()
                ),
            );
            ok = false;
        }
        labels.insert(key.get_ref().clone(), value.get_ref().clone());
    }
    if let Some(table) = &raw.destination_table {
        let text = table.get_ref();
        let templated = text.contains("{{") || text.contains("{%");
        let parts: Vec<&str> = text.split('.').collect();
        if !templated && (!(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty())) {
            cx.invalid(
                table.span(),
                format!("destination_table must be [project.]dataset.table, found {text:?}"),
            );
            ok = false;
        }
    }
    if raw.destination_table.is_none() {
        for field in [&raw.write_disposition, &raw.create_disposition]
            .into_iter()
            .flatten()
        {
            let name = cx.field_at(&field.span());
            cx.invalid(
                field.span(),
                format!(
                    "{} applies to a destination_table, which is not set",
                    name.rsplit('.').next().unwrap_or("it")
                ),
            );
            ok = false;
        }
    }
    let write_disposition = one_of(
        cx,
        "write_disposition",
        raw.write_disposition,
        BIGQUERY_WRITE_DISPOSITIONS,
    );
    let create_disposition = one_of(
        cx,
        "create_disposition",
        raw.create_disposition,
        BIGQUERY_CREATE_DISPOSITIONS,
    );
    let maximum_bytes_billed = match raw.maximum_bytes_billed {
        Some(n) if *n.get_ref() <= 0 => {
            cx.invalid(
                n.span(),
                "maximum_bytes_billed must be a positive number of bytes",
            );
            ok = false;
            None
        }
        Some(n) => u64::try_from(n.into_inner()).ok(),
        None => None,
    };
    let location = not_blank(cx, "location", raw.location);
    let max_rows = max_rows(cx, raw.max_rows);
    if !ok {
        return None;
    }
    Some(BigqueryTask {
        connection: connection?,
        source: source?,
        parameters,
        location: location.ok()?,
        destination_table: raw.destination_table.map(Spanned::into_inner),
        write_disposition: write_disposition.ok()?,
        create_disposition: create_disposition.ok()?,
        labels,
        maximum_bytes_billed,
        dry_run: raw.dry_run.unwrap_or(false),
        max_rows: max_rows?,
    })
}
