//! DAG files: the TOML format (one DAG a file), its validation, and the validated model.
//!
//! [`parse_dag`] turns a file's text into a [`Dag`] or into every problem found, each
//! naming the file, line, column and field. The format is documented in
//! `docs/dag-format.md`.

mod error;
mod model;
mod raw;
mod validate;

use std::collections::BTreeSet;

pub use error::{DagError, DagErrors, Location, MAX_ERRORS};
pub use model::*;

/// Extra checks that need facts from outside the file.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// When set, every `connection` a task names must be one of these.
    pub connections: Option<BTreeSet<String>>,
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
