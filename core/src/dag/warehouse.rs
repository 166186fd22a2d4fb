//! The warehouse task kinds' validated fields: `athena` (StartQueryExecution) and
//! `redshift` (the Redshift Data API). Their statements are [`SqlSource`]s like a `sql`
//! task's (`sql` inline or `sql_file` embedded by the loader); their parameters are bound
//! by the warehouse, never spliced into the text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SqlSource;

/// How many result rows a warehouse task keeps as its output unless `max_rows` says.
pub const DEFAULT_MAX_ROWS: u32 = 100;
/// The most result rows a warehouse task may keep as its output.
pub const MAX_ROWS_LIMIT: u32 = 1_000;

/// An Athena query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AthenaTask {
    pub source: SqlSource,
    /// Values for the query's positional `?` placeholders, sent as Athena's
    /// `ExecutionParameters` (see [`athena_literal`]).
    pub parameters: Vec<serde_json::Value>,
    /// The query's database (`QueryExecutionContext.Database`).
    pub database: Option<String>,
    /// The data catalog (`QueryExecutionContext.Catalog`); Athena's default is
    /// `AwsDataCatalog`.
    pub catalog: Option<String>,
    /// The workgroup; Athena's default is `primary`.
    pub workgroup: Option<String>,
    /// Where Athena writes the results (`s3://…/`); the workgroup's setting when unset.
    pub output_location: Option<String>,
    /// How many result rows are kept as the task's output.
    pub max_rows: u32,
}

impl AthenaTask {
    /// One line saying what StartQueryExecution is sent (for `nightshift tasks render`).
    pub fn submission(&self) -> String {
        let mut parts = vec![format!(
            "workgroup={}",
            self.workgroup.as_deref().unwrap_or("(default: primary)")
        )];
        if let Some(catalog) = &self.catalog {
            parts.push(format!("catalog={catalog}"));
        }
        if let Some(database) = &self.database {
            parts.push(format!("database={database}"));
        }
        if let Some(out) = &self.output_location {
            parts.push(format!("output_location={out}"));
        }
        let params: Vec<String> = self.parameters.iter().map(athena_literal).collect();
        parts.push(format!("ExecutionParameters=[{}]", params.join(", ")));
        format!("Athena StartQueryExecution {}", parts.join(" "))
    }
}

/// A parameter as Athena's `ExecutionParameters` take it: the text of a SQL literal. A
/// string becomes a quoted string literal (quotes doubled), numbers and booleans their
/// text, `null` NULL; a list or table its JSON text as a string literal.
pub fn athena_literal(value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match value {
        J::String(s) => quoted(s),
        J::Number(n) => n.to_string(),
        J::Bool(b) => b.to_string(),
        J::Null => "NULL".to_owned(),
        other => quoted(&other.to_string()),
    }
}

/// A statement (or a batch) through the Redshift Data API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedshiftTask {
    /// One statement (ExecuteStatement); `None` when `sqls` holds a batch.
    pub source: Option<SqlSource>,
    /// Several statements run as one transaction (BatchExecuteStatement); empty when
    /// `source` is set.
    pub sqls: Vec<String>,
    /// Named parameters (`:name` in the statement), bound by Redshift (ExecuteStatement
    /// only; the Data API takes none for a batch).
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub database: String,
    pub target: RedshiftTarget,
    /// A Secrets Manager secret holding the database credentials.
    pub secret_arn: Option<String>,
    /// The statement's name (shown in the console); a name derived from the try when unset.
    pub statement_name: Option<String>,
    /// How many result rows are kept as the task's output.
    pub max_rows: u32,
}

/// Where a Redshift statement runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedshiftTarget {
    /// A provisioned cluster; `db_user` gets temporary credentials unless `secret_arn` is set.
    Cluster {
        cluster_identifier: String,
        db_user: Option<String>,
    },
    /// A Redshift Serverless workgroup.
    Serverless { workgroup_name: String },
}

impl RedshiftTask {
    /// One line saying what the Data API is sent (for `nightshift tasks render`).
    pub fn submission(&self) -> String {
        let call = if self.sqls.is_empty() {
            "ExecuteStatement"
        } else {
            "BatchExecuteStatement"
        };
        let mut parts = vec![match &self.target {
            RedshiftTarget::Cluster {
                cluster_identifier,
                db_user,
            } => {
                let mut s = format!("cluster_identifier={cluster_identifier}");
                if let Some(user) = db_user {
                    s.push_str(&format!(" db_user={user}"));
                }
                s
            }
            RedshiftTarget::Serverless { workgroup_name } => {
                format!("workgroup_name={workgroup_name}")
            }
        }];
        parts.push(format!("database={}", self.database));
        if let Some(arn) = &self.secret_arn {
            parts.push(format!("secret_arn={arn}"));
        }
        if !self.parameters.is_empty() {
            let params: Vec<String> = self
                .parameters
                .iter()
                .map(|(k, v)| format!("{k}={}", redshift_value(v)))
                .collect();
            parts.push(format!("Parameters=[{}]", params.join(", ")));
        }
        format!("Redshift Data API {call} {}", parts.join(" "))
    }
}

/// A parameter's value as the Data API takes it (a string Redshift casts): a string as
/// is, anything else its JSON text.
pub fn redshift_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn athena_parameters_become_literals() {
        fn check(v: serde_json::Value, expected: &str) {
            assert_eq!(athena_literal(&v), expected, "{v}");
        }
        check(json!("2026-01-01"), "'2026-01-01'");
        check(json!("it's"), "'it''s'");
        check(json!(42), "42");
        check(json!(1.5), "1.5");
        check(json!(true), "true");
        check(json!(null), "NULL");
        check(json!(["a"]), "'[\"a\"]'");
    }

    #[test]
    fn redshift_values_are_strings() {
        assert_eq!(redshift_value(&json!("x'y")), "x'y");
        assert_eq!(redshift_value(&json!(7)), "7");
        assert_eq!(redshift_value(&json!(false)), "false");
    }
}
