//! DAG files: the TOML format (one DAG a file), its validation, and the validated model.
//!
//! [`parse_dag`] turns a file's text into a [`Dag`] or into every problem found, each
//! naming the file, line, column and field. The format is documented in
//! `docs/dag-format.md`.

mod error;
mod model;
mod raw;
mod require;
mod validate;
mod warehouse;

use std::collections::BTreeSet;

pub use error::{DagError, DagErrors, Location, MAX_ERRORS};
pub use model::*;
pub(crate) use raw::toml_to_json;
pub use require::{IfMissing, RequireTask, RerunOn};
pub(crate) use validate::parse_date;
pub use warehouse::*;

/// The most task instances one DAG may start a run with, unless a setting says otherwise
/// (`max_tasks_per_dag`). The largest benchmark DAG has 10,002 tasks; a DAG far beyond
/// this makes every page that shows it slow and costs megabytes per view.
pub const DEFAULT_MAX_TASKS: usize = 20_000;

/// Extra checks that need facts from outside the file.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// When set, every `connection` a task names must be one of these.
    pub connections: Option<BTreeSet<String>>,
    /// The most task instances a run of the DAG starts with: one per task, one per item
    /// of a literal `for_each` list (a `for_each` over an upstream's output is bounded at
    /// run time by `max_map_length`).
    pub max_tasks: usize,
    /// When set, every DAG a `require` task names must be one of these (or the DAG
    /// itself); see [`Dag::check_required_dags`].
    pub dags: Option<BTreeSet<String>>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            connections: None,
            max_tasks: DEFAULT_MAX_TASKS,
            dags: None,
        }
    }
}

/// Parses and validates one DAG file. `file` is the path to name in errors; the DAG id
/// defaults to its stem.
pub fn parse_dag(file: &str, source: &str) -> Result<Dag, DagErrors> {
    validate::parse(file, source, &ParseOptions::default())
}

/// [`parse_dag`] with extra checks (see [`ParseOptions`]).
pub fn parse_dag_with(file: &str, source: &str, options: &ParseOptions) -> Result<Dag, DagErrors> {
    validate::parse(file, source, options)
}

#[cfg(test)]
mod tests;
