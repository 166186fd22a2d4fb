//! The warehouse task kinds' validated fields: `athena` (StartQueryExecution),
//! `redshift` (the Redshift Data API) and `bigquery` (a query job). Their statements are
//! [`SqlSource`]s like a `sql` task's (`sql` inline or `sql_file` embedded by the
//! loader); their parameters are bound by the warehouse, never spliced into the text.

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

/// A BigQuery query job (jobs.insert), in the project of a `bigquery://` connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BigqueryTask {
    /// The `bigquery://PROJECT` connection: project, location, credentials, endpoint.
    pub connection: String,
    pub source: SqlSource,
    /// Named parameters (`@name` in the query), bound as the job's `queryParameters`
    /// (see [`bigquery_parameter`]).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Where the job runs; the connection's `location` when unset.
    pub location: Option<String>,
    /// `[project.]dataset.table` the results are written to (a template).
    pub destination_table: Option<String>,
    /// `WRITE_TRUNCATE`, `WRITE_APPEND` or `WRITE_EMPTY` (with `destination_table`).
    pub write_disposition: Option<String>,
    /// `CREATE_IF_NEEDED` or `CREATE_NEVER` (with `destination_table`).
    pub create_disposition: Option<String>,
    /// The job's labels.
    pub labels: BTreeMap<String, String>,
    /// The job fails instead of billing more bytes than this.
    pub maximum_bytes_billed: Option<u64>,
    /// Only check the query and log the bytes it would process; nothing runs.
    pub dry_run: bool,
    /// How many result rows are kept as the task's output.
    pub max_rows: u32,
}

/// BigQuery's write dispositions, as its API spells them.
pub const BIGQUERY_WRITE_DISPOSITIONS: &[&str] = &["WRITE_TRUNCATE", "WRITE_APPEND", "WRITE_EMPTY"];
/// BigQuery's create dispositions.
pub const BIGQUERY_CREATE_DISPOSITIONS: &[&str] = &["CREATE_IF_NEEDED", "CREATE_NEVER"];

impl BigqueryTask {
    /// The job's `configuration` as jobs.insert takes it; `project` completes a
    /// `destination_table` written as `dataset.table` (`None`: left out, as in `tasks
    /// render` without the connection). A destination that is not `[project.]dataset.table`
    /// is an error.
    pub fn configuration(&self, project: Option<&str>) -> Result<serde_json::Value, String> {
        use serde_json::{json, Map, Value};
        let sql = self.source.text().unwrap_or_default();
        let mut query = Map::new();
        query.insert("query".into(), json!(sql));
        query.insert("useLegacySql".into(), json!(false));
        if !self.parameters.is_empty() {
            query.insert("parameterMode".into(), json!("NAMED"));
            query.insert(
                "queryParameters".into(),
                Value::Array(
                    self.parameters
                        .iter()
                        .map(|(name, value)| bigquery_parameter(name, value))
                        .collect(),
                ),
            );
        }
        if let Some(table) = &self.destination_table {
            let parts: Vec<&str> = table.split('.').collect();
            let (p, dataset, table_id) = match parts.as_slice() {
                [dataset, table] => (project, *dataset, *table),
                [p, dataset, table] => (Some(*p), *dataset, *table),
                _ => {
                    return Err(format!(
                        "destination_table must be [project.]dataset.table, found {table:?}"
                    ))
                }
            };
            if dataset.is_empty() || table_id.is_empty() || p.is_some_and(str::is_empty) {
                return Err(format!(
                    "destination_table must be [project.]dataset.table, found {table:?}"
                ));
            }
            let mut reference = Map::new();
            if let Some(p) = p {
                reference.insert("projectId".into(), json!(p));
            }
            reference.insert("datasetId".into(), json!(dataset));
            reference.insert("tableId".into(), json!(table_id));
            query.insert("destinationTable".into(), Value::Object(reference));
        }
        if let Some(w) = &self.write_disposition {
            query.insert("writeDisposition".into(), json!(w));
        }
        if let Some(c) = &self.create_disposition {
            query.insert("createDisposition".into(), json!(c));
        }
        if let Some(max) = self.maximum_bytes_billed {
            // int64 values travel as strings in BigQuery's JSON.
            query.insert("maximumBytesBilled".into(), json!(max.to_string()));
        }
        let mut config = Map::new();
        config.insert("query".into(), Value::Object(query));
        if !self.labels.is_empty() {
            config.insert("labels".into(), json!(self.labels));
        }
        if self.dry_run {
            config.insert("dryRun".into(), json!(true));
        }
        Ok(Value::Object(config))
    }

    /// One line saying what jobs.insert is sent (for `nightshift tasks render`).
    pub fn submission(&self) -> String {
        let mut parts = vec![format!("connection={}", self.connection)];
        if let Some(location) = &self.location {
            parts.push(format!("location={location}"));
        }
        match self.configuration(None) {
            Ok(mut config) => {
                // The query text is shown as its own field already.
                if let Some(q) = config.get_mut("query").and_then(|q| q.as_object_mut()) {
                    q.remove("query");
                }
                parts.push(format!("configuration={config}"));
            }
            Err(e) => parts.push(format!("(invalid: {e})")),
        }
        format!("BigQuery jobs.insert {}", parts.join(" "))
    }
}

/// A named parameter as BigQuery's `queryParameters` take it. A string is a `STRING`, an
/// integer an `INT64`, a float a `FLOAT64`, a boolean a `BOOL`, `null` a NULL `STRING`; a
/// table `{ type = "DATE", value = "…" }` is a scalar of that type; a list of scalars an
/// `ARRAY` of their type; anything else a `JSON` value of its text.
pub fn bigquery_parameter(name: &str, value: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value as J};
    fn scalar(value: &J) -> Option<(&'static str, Option<String>)> {
        match value {
            J::String(s) => Some(("STRING", Some(s.clone()))),
            J::Number(n) if n.is_i64() || n.is_u64() => Some(("INT64", Some(n.to_string()))),
            J::Number(n) => Some(("FLOAT64", Some(n.to_string()))),
            J::Bool(b) => Some(("BOOL", Some(b.to_string()))),
            J::Null => Some(("STRING", None)),
            _ => None,
        }
    }
    fn value_json(v: Option<String>) -> J {
        match v {
            Some(v) => json!({ "value": v }),
            None => json!({}),
        }
    }
    let (ty, val) = match value {
        J::Object(map)
            if map.len() == 2
                && map.get("type").is_some_and(J::is_string)
                && map.contains_key("value") =>
        {
            let ty = map["type"]
                .as_str()
                .unwrap_or("STRING")
                .to_ascii_uppercase();
            let v = match &map["value"] {
                J::String(s) => Some(s.clone()),
                J::Null => None,
                other => Some(other.to_string()),
            };
            (json!({ "type": ty }), value_json(v))
        }
        J::Array(items) => {
            let scalars: Option<Vec<(&str, Option<String>)>> = items.iter().map(scalar).collect();
            match scalars {
                Some(scalars) if scalars.iter().all(|(_, v)| v.is_some()) => {
                    let mut types: Vec<&str> = scalars.iter().map(|(t, _)| *t).collect();
                    types.sort_unstable();
                    types.dedup();
                    let element = match types.as_slice() {
                        [] => Some("STRING"),
                        [one] => Some(*one),
                        ["FLOAT64", "INT64"] => Some("FLOAT64"),
                        _ => None,
                    };
                    match element {
                        Some(element) => (
                            json!({ "type": "ARRAY", "arrayType": { "type": element } }),
                            json!({ "arrayValues": scalars.into_iter().map(|(_, v)| value_json(v)).collect::<Vec<_>>() }),
                        ),
                        None => (
                            json!({ "type": "JSON" }),
                            value_json(Some(value.to_string())),
                        ),
                    }
                }
                _ => (
                    json!({ "type": "JSON" }),
                    value_json(Some(value.to_string())),
                ),
            }
        }
        other => match scalar(other) {
            Some((ty, v)) => (json!({ "type": ty }), value_json(v)),
            None => (
                json!({ "type": "JSON" }),
                value_json(Some(other.to_string())),
            ),
        },
    };
    json!({ "name": name, "parameterType": ty, "parameterValue": val })
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
    fn bigquery_parameters_carry_their_types() {
        fn check(v: serde_json::Value, ty: serde_json::Value, val: serde_json::Value) {
            assert_eq!(
                bigquery_parameter("p", &v),
                json!({"name": "p", "parameterType": ty, "parameterValue": val}),
                "{v}"
            );
        }
        check(
            json!("it's"),
            json!({"type": "STRING"}),
            json!({"value": "it's"}),
        );
        check(json!(42), json!({"type": "INT64"}), json!({"value": "42"}));
        check(
            json!(1.5),
            json!({"type": "FLOAT64"}),
            json!({"value": "1.5"}),
        );
        check(
            json!(true),
            json!({"type": "BOOL"}),
            json!({"value": "true"}),
        );
        check(json!(null), json!({"type": "STRING"}), json!({}));
        check(
            json!({"type": "date", "value": "2026-01-01"}),
            json!({"type": "DATE"}),
            json!({"value": "2026-01-01"}),
        );
        check(
            json!([1, 2]),
            json!({"type": "ARRAY", "arrayType": {"type": "INT64"}}),
            json!({"arrayValues": [{"value": "1"}, {"value": "2"}]}),
        );
        check(
            json!([1, 2.5]),
            json!({"type": "ARRAY", "arrayType": {"type": "FLOAT64"}}),
            json!({"arrayValues": [{"value": "1"}, {"value": "2.5"}]}),
        );
        check(
            json!([1, "a"]),
            json!({"type": "JSON"}),
            json!({"value": "[1,\"a\"]"}),
        );
        check(
            json!({"a": 1}),
            json!({"type": "JSON"}),
            json!({"value": "{\"a\":1}"}),
        );
    }

    #[test]
    fn bigquery_configuration_names_the_destination() {
        let task = BigqueryTask {
            connection: "bq".into(),
            source: SqlSource::Sql("SELECT @n".into()),
            parameters: [("n".to_owned(), json!(1))].into_iter().collect(),
            location: None,
            destination_table: Some("marts.kpi".into()),
            write_disposition: Some("WRITE_TRUNCATE".into()),
            create_disposition: None,
            labels: [("team".to_owned(), "dmp".to_owned())]
                .into_iter()
                .collect(),
            maximum_bytes_billed: Some(1_000_000),
            dry_run: true,
            max_rows: 10,
        };
        let config = task.configuration(Some("p1")).expect("valid");
        assert_eq!(
            config,
            json!({
                "query": {
                    "query": "SELECT @n",
                    "useLegacySql": false,
                    "parameterMode": "NAMED",
                    "queryParameters": [{"name": "n", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "1"}}],
                    "destinationTable": {"projectId": "p1", "datasetId": "marts", "tableId": "kpi"},
                    "writeDisposition": "WRITE_TRUNCATE",
                    "maximumBytesBilled": "1000000",
                },
                "labels": {"team": "dmp"},
                "dryRun": true,
            })
        );
        let other = BigqueryTask {
            destination_table: Some("other.marts.kpi".into()),
            ..task.clone()
        };
        assert_eq!(
            other.configuration(Some("p1")).expect("valid")["query"]["destinationTable"]
                ["projectId"],
            json!("other")
        );
        let bad = BigqueryTask {
            destination_table: Some("kpi".into()),
            ..task
        };
        assert!(bad.configuration(Some("p1")).is_err());
    }

    #[test]
    fn redshift_values_are_strings() {
        assert_eq!(redshift_value(&json!("x'y")), "x'y");
        assert_eq!(redshift_value(&json!(7)), "7");
        assert_eq!(redshift_value(&json!(false)), "false");
    }
}
