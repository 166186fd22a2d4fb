//! Typed DAG `params` and the one check of a trigger's `conf` against them.
//!
//! A param is declared either as a bare default (`limit = 100`: its type is inferred from
//! the value, like Airflow's `Param` without a schema) or in the explicit form
//! `limit = { type = "integer", default = 100, description = "…", enum = [10, 100] }`.
//! [`check_conf`] is used by the API, the UI and the CLI alike: a conf with a key the DAG
//! does not declare, or a value of the wrong type, is refused with an error naming the param.
//! A DAG without `params` takes any conf object.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The keys of the explicit form; a table with `type` and only these keys is a declaration.
const SPEC_KEYS: [&str; 4] = ["type", "default", "description", "enum"];

/// What values a param takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    /// Any JSON number (integers too).
    Number,
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 (`2026-03-01T02:00:00Z`) or a local `YYYY-MM-DDTHH:MM[:SS]`.
    Datetime,
    /// Any JSON value.
    Json,
}

impl ParamType {
    pub const ALL: [ParamType; 7] = [
        ParamType::String,
        ParamType::Integer,
        ParamType::Number,
        ParamType::Boolean,
        ParamType::Date,
        ParamType::Datetime,
        ParamType::Json,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Date => "date",
            ParamType::Datetime => "datetime",
            ParamType::Json => "json",
        }
    }

    fn parse(name: &str) -> Option<ParamType> {
        ParamType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The type a bare JSON default implies (a stored DAG's params, no declaration).
    pub fn infer(value: &Value) -> ParamType {
        match value {
            Value::String(_) => ParamType::String,
            Value::Bool(_) => ParamType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => ParamType::Integer,
            Value::Number(_) => ParamType::Number,
            Value::Null | Value::Array(_) | Value::Object(_) => ParamType::Json,
        }
    }

    /// The type a bare TOML default implies: a TOML date is a `date`, a TOML date-time a
    /// `datetime`, a TOML time of day a `string`.
    fn infer_toml(value: &toml::Value) -> ParamType {
        match value {
            toml::Value::String(_) => ParamType::String,
            toml::Value::Integer(_) => ParamType::Integer,
            toml::Value::Float(_) => ParamType::Number,
            toml::Value::Boolean(_) => ParamType::Boolean,
            toml::Value::Datetime(d) if d.date.is_none() => ParamType::String,
            toml::Value::Datetime(d) if d.time.is_none() => ParamType::Date,
            toml::Value::Datetime(_) => ParamType::Datetime,
            toml::Value::Array(_) | toml::Value::Table(_) => ParamType::Json,
        }
    }

    /// `Ok` when `value` is of this type; otherwise what was expected.
    pub fn check(self, value: &Value) -> Result<(), String> {
        let ok = match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Date => value
                .as_str()
                .is_some_and(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
            ParamType::Datetime => value.as_str().is_some_and(is_datetime),
            ParamType::Json => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {}, got {}",
                self.expected(),
                short(value)
            ))
        }
    }

    fn expected(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "true or false",
            ParamType::Date => "a date (YYYY-MM-DD)",
            ParamType::Datetime => "a date-time (RFC 3339, e.g. 2026-03-01T02:00:00Z)",
            ParamType::Json => "any JSON value",
        }
    }
}

fn is_datetime(s: &str) -> bool {
    DateTime::parse_from_rfc3339(s).is_ok()
        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok()
        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").is_ok()
}

/// A value as shown in an error: compact JSON, cut at 60 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// One declared param.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub default: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When not empty, the only values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Value>,
}

impl ParamSpec {
    /// A param declared by its default alone.
    pub fn inferred(default: &Value) -> ParamSpec {
        ParamSpec {
            kind: ParamType::infer(default),
            default: default.clone(),
            description: None,
            values: Vec::new(),
        }
    }

    /// `Ok` when `value` is allowed; otherwise what was expected.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        self.kind.check(value)?;
        if !self.values.is_empty() && !self.values.contains(value) {
            let allowed: Vec<String> = self.values.iter().map(short).collect();
            return Err(format!(
                "expected one of {}, got {}",
                allowed.join(", "),
                short(value)
            ));
        }
        Ok(())
    }

    /// Reads a form field's text as this param's value (the UI's inputs). A boolean is
    /// "true"/"on" or anything else for false; a `json` param's text is JSON.
    pub fn parse_input(&self, text: &str) -> Result<Value, String> {
        let value = match self.kind {
            ParamType::String | ParamType::Date | ParamType::Datetime => {
                Value::String(text.to_owned())
            }
            ParamType::Boolean => Value::Bool(matches!(text, "true" | "on")),
            ParamType::Integer => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("expected an integer, got {text:?}"))?,
            ParamType::Number => {
                let trimmed = text.trim();
                match trimmed.parse::<i64>() {
                    Ok(i) => Value::from(i),
                    Err(_) => trimmed
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| format!("expected a number, got {text:?}"))?,
                }
            }
            ParamType::Json => {
                serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))?
            }
        };
        // An enum of non-strings is offered as each value's JSON text.
        if !self.values.is_empty() && self.kind != ParamType::String {
            if let Some(v) = self.values.iter().find(|v| input_text(v) == text) {
                return Ok(v.clone());
            }
        }
        self.check(&value)?;
        Ok(value)
    }
}

/// The text a form input shows for `value`: a string as itself, anything else as JSON.
pub fn input_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A `[params]` table read: the defaults (what templates see) and every param's spec.
#[derive(Debug, Default)]
pub struct Declared {
    pub defaults: Map<String, Value>,
    pub specs: BTreeMap<String, ParamSpec>,
    /// `(param, message)` for each declaration that is wrong.
    pub errors: Vec<(String, String)>,
}

/// Reads a DAG file's `[params]` table.
pub fn declare(table: &toml::Table) -> Declared {
    let to_json = crate::dag::toml_to_json;
    let mut out = Declared::default();
    for (name, raw) in table {
        let spec = match raw {
            toml::Value::Table(t)
                if t.contains_key("type") && t.keys().all(|k| SPEC_KEYS.contains(&k.as_str())) =>
            {
                match explicit(t, to_json) {
                    Ok(spec) => spec,
                    Err(message) => {
                        out.errors.push((name.clone(), message));
                        continue;
                    }
                }
            }
            other => ParamSpec {
                kind: ParamType::infer_toml(other),
                default: to_json(other),
                description: None,
                values: Vec::new(),
            },
        };
        out.defaults.insert(name.clone(), spec.default.clone());
        out.specs.insert(name.clone(), spec);
    }
    out
}

fn explicit(t: &toml::Table, to_json: fn(&toml::Value) -> Value) -> Result<ParamSpec, String> {
    let type_name = t.get("type").and_then(toml::Value::as_str).unwrap_or("");
    let kind = ParamType::parse(type_name).ok_or_else(|| {
        let names: Vec<&str> = ParamType::ALL.iter().map(|t| t.name()).collect();
        format!(
            "unknown type {type_name:?}; expected one of {}",
            names.join(", ")
        )
    })?;
    let description = match t.get("description") {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`description` must be a string".to_owned()),
    };
    let values = match t.get("enum") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) if !a.is_empty() => a.iter().map(to_json).collect(),
        Some(_) => return Err("`enum` must be a non-empty array".to_owned()),
    };
    let default = t
        .get("default")
        .map(to_json)
        .ok_or("a `default` is required (scheduled runs have no conf)")?;
    for v in &values {
        kind.check(v).map_err(|e| format!("`enum`: {e}"))?;
    }
    let spec = ParamSpec {
        kind,
        default,
        description,
        values,
    };
    spec.check(&spec.default)
        .map_err(|e| format!("`default`: {e}"))?;
    Ok(spec)
}

/// A conf refused by [`check_conf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The param at fault; `None` when the conf as a whole is wrong (not an object).
    pub param: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.param {
            Some(param) => write!(f, "conf: param {param:?}: {}", self.message),
            None => write!(f, "conf: {}", self.message),
        }
    }
}

impl std::error::Error for ConfError {}

/// Every param of a DAG with its spec: the declared ones, and for a DAG stored before
/// specs existed, inferred from its defaults.
pub fn specs_of(
    defaults: &Map<String, Value>,
    declared: &BTreeMap<String, ParamSpec>,
) -> BTreeMap<String, ParamSpec> {
    defaults
        .iter()
        .map(|(name, default)| {
            let spec = declared
                .get(name)
                .cloned()
                .unwrap_or_else(|| ParamSpec::inferred(default));
            (name.clone(), spec)
        })
        .collect()
}

/// Checks a trigger's conf against the DAG's params. `Null` is an empty conf. On success
/// returns the params as the run will see them: the defaults with the conf merged over.
/// Every problem is returned (unknown keys first, then wrong values, each in name order).
pub fn check_conf(
    specs: &BTreeMap<String, ParamSpec>,
    conf: &Value,
) -> Result<Map<String, Value>, Vec<ConfError>> {
    let empty = Map::new();
    let given = match conf {
        Value::Null => &empty,
        Value::Object(map) => map,
        other => {
            return Err(vec![ConfError {
                param: None,
                message: format!("expected a JSON object, got {}", short(other)),
            }])
        }
    };
    let mut merged: Map<String, Value> = specs
        .iter()
        .map(|(name, spec)| (name.clone(), spec.default.clone()))
        .collect();
    if specs.is_empty() {
        // No declared params: nothing to check against.
        return Ok(given.clone());
    }
    let mut errors = Vec::new();
    let mut names: Vec<&String> = given.keys().collect();
    names.sort();
    for name in &names {
        if !specs.contains_key(*name) {
            let known: Vec<&str> = specs.keys().map(String::as_str).collect();
            errors.push(ConfError {
                param: Some((*name).clone()),
                message: format!("unknown param; this DAG's params are {}", known.join(", ")),
            });
        }
    }
    for name in names {
        if let (Some(spec), Some(value)) = (specs.get(name), given.get(name)) {
            match spec.check(value) {
                Ok(()) => {
                    merged.insert(name.clone(), value.clone());
                }
                Err(message) => errors.push(ConfError {
                    param: Some(name.clone()),
                    message,
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(merged)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
