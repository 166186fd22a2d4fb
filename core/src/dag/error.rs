//! Errors in DAG files: each one names the file, the line and column, and the field.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an error is: the file, the 1-based line and column when known, and the dotted
/// field path (`tasks.load.depends_on`; empty for the document as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        Ok(())
    }
}

/// One problem in a DAG file. Displays as `file:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DagError {
    /// The file is not valid TOML.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    /// A key that the format does not know.
    #[error("{at}: unknown field {name:?}{}", did_you_mean(suggestion))]
    UnknownField {
        at: Location,
        name: String,
        suggestion: Option<String>,
    },
    /// A required field is absent.
    #[error("{at}: missing required field {name:?}{}", hint_suffix(hint))]
    MissingField {
        at: Location,
        name: String,
        hint: Option<String>,
    },
    /// A value of the right TOML type that the format does not accept.
    #[error("{at}: {message}")]
    InvalidValue { at: Location, message: String },
    /// Two `[tasks.<id>]` tables with the same id.
    #[error("{at}: task {task:?} is defined twice")]
    DuplicateTask { at: Location, task: String },
    /// A `type` that is not one of the task kinds.
    #[error(
        "{at}: unknown task type {name:?}{} (expected one of: {})",
        did_you_mean(suggestion),
        super::TASK_KINDS.join(", ")
    )]
    UnknownTaskKind {
        at: Location,
        name: String,
        suggestion: Option<String>,
    },
    /// `depends_on` names a task that does not exist.
    #[error("{at}: unknown upstream task {upstream:?}{}", did_you_mean(suggestion))]
    UnknownUpstream {
        at: Location,
        upstream: String,
        suggestion: Option<String>,
    },
    /// The dependencies form a cycle; `path` starts and ends with the same task.
    #[error("{at}: dependency cycle: {}", path.join(" -> "))]
    Cycle { at: Location, path: Vec<String> },
    /// A schedule that is not a valid 5-field cron expression or preset.
    #[error("{at}: {reason}")]
    BadCron {
        at: Location,
        expression: String,
        reason: String,
    },
    /// A duration such as `"5m"` that does not parse or is out of range.
    #[error("{at}: {reason}")]
    BadDuration {
        at: Location,
        value: String,
        reason: String,
    },
    /// A time zone that is not an IANA name.
    #[error("{at}: unknown time zone {value:?}{}", match suggestion {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => " (use an IANA name such as \"Asia/Tokyo\" or \"UTC\")".to_owned(),
    })]
    BadTimezone {
        at: Location,
        value: String,
        suggestion: Option<String>,
    },
    /// A date that is neither `YYYY-MM-DD` nor RFC 3339.
    #[error("{at}: invalid date {value:?}: {reason}")]
    BadDate {
        at: Location,
        value: String,
        reason: String,
    },
    /// A `for_each` that is neither a non-empty list nor `{ from = "<upstream>" }`.
    #[error("{at}: {message}")]
    BadForEach { at: Location, message: String },
    /// A templated string that does not parse.
    #[error("{at}: template does not parse: {message}")]
    BadTemplate { at: Location, message: String },
    /// A connection name that is not configured (only checked when the caller passes the
    /// known connections).
    #[error("{at}: unknown connection {name:?}{}", did_you_mean(suggestion))]
    UnknownConnection {
        at: Location,
        name: String,
        suggestion: Option<String>,
    },
    /// A `require` task names a DAG that is not loaded (checked once every DAG file of the
    /// folder is read).
    #[error("{at}: unknown DAG {name:?}{}", did_you_mean(suggestion))]
    UnknownDag {
        at: Location,
        name: String,
        suggestion: Option<String>,
    },
    /// The last entry of a list cut at [`MAX_ERRORS`]: how many more were found.
    #[error("{at}: {omitted} more errors not shown")]
    TooManyErrors { at: Location, omitted: usize },
}

/// At most this many errors are reported for one file (the last one says how many more
/// there were), so that a mangled file yields a readable message, not megabytes of one.
pub const MAX_ERRORS: usize = 100;

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

impl DagError {
    /// Where the error is.
    pub fn location(&self) -> &Location {
        match self {
            DagError::Syntax { at, .. }
            | DagError::UnknownField { at, .. }
            | DagError::MissingField { at, .. }
            | DagError::InvalidValue { at, .. }
            | DagError::DuplicateTask { at, .. }
            | DagError::UnknownTaskKind { at, .. }
            | DagError::UnknownUpstream { at, .. }
            | DagError::Cycle { at, .. }
            | DagError::BadCron { at, .. }
            | DagError::BadDuration { at, .. }
            | DagError::BadTimezone { at, .. }
            | DagError::BadDate { at, .. }
            | DagError::BadForEach { at, .. }
            | DagError::BadTemplate { at, .. }
            | DagError::UnknownConnection { at, .. }
            | DagError::UnknownDag { at, .. }
            | DagError::TooManyErrors { at, .. } => at,
        }
    }

    /// The kind as a stable snake_case name (`"unknown_upstream"`), as in the JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            DagError::Syntax { .. } => "syntax",
            DagError::UnknownField { .. } => "unknown_field",
            DagError::MissingField { .. } => "missing_field",
            DagError::InvalidValue { .. } => "invalid_value",
            DagError::DuplicateTask { .. } => "duplicate_task",
            DagError::UnknownTaskKind { .. } => "unknown_task_kind",
            DagError::UnknownUpstream { .. } => "unknown_upstream",
            DagError::Cycle { .. } => "cycle",
            DagError::BadCron { .. } => "bad_cron",
            DagError::BadDuration { .. } => "bad_duration",
            DagError::BadTimezone { .. } => "bad_timezone",
            DagError::BadDate { .. } => "bad_date",
            DagError::BadForEach { .. } => "bad_for_each",
            DagError::BadTemplate { .. } => "bad_template",
            DagError::UnknownConnection { .. } => "unknown_connection",
            DagError::UnknownDag { .. } => "unknown_dag",
            DagError::TooManyErrors { .. } => "too_many_errors",
        }
    }
}

/// All the problems found in one DAG file, in file order. Displays one error a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagErrors {
    pub file: String,
    pub errors: Vec<DagError>,
}

impl DagErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, DagError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for DagErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DagErrors {}

impl IntoIterator for DagErrors {
    type Item = DagError;
    type IntoIter = std::vec::IntoIter<DagError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a DagErrors {
    type Item = &'a DagError;
    type IntoIter = std::slice::Iter<'a, DagError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Converts byte offsets in a source text to 1-based (line, column), columns in characters.
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            source,
            line_starts,
        }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// The candidate closest to `name` by edit distance, when it is close enough to be a
/// plausible typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = name.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let c_lower = c.to_lowercase();
        let d = if c_lower == lower {
            0
        } else if lower.len() >= 4 && c_lower.starts_with(&lower) {
            1
        } else {
            edit_distance(&lower, &c_lower)
        };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (name.chars().count() / 3).max(1);
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c.to_owned())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let src = "a = 1\nbé = 2\n\nc";
        let idx = LineIndex::new(src);
        let check = |offset: usize, expected: (usize, usize)| {
            assert_eq!(idx.line_col(offset), expected, "offset {offset}")
        };
        check(0, (1, 1));
        check(4, (1, 5));
        check(6, (2, 1));
        check(9, (2, 3)); // after the two-byte 'é'
        check(14, (3, 1));
        check(15, (4, 1));
        check(999, (4, 2));
    }

    #[test]
    fn suggestions_only_for_plausible_typos() {
        let tasks = ["extract", "load", "build_marts"];
        let check = |name: &str, expected: Option<&str>| {
            assert_eq!(suggest(name, tasks), expected.map(str::to_owned), "{name}")
        };
        check("extrct", Some("extract"));
        check("Load", Some("load"));
        check("build_mart", Some("build_marts"));
        check("zzz", None);
        check("build", Some("build_marts"));
        check("loa", Some("load"));
        check("transform", None);
    }

    #[test]
    fn display_is_file_line_column_field_message() {
        let e = DagError::UnknownUpstream {
            at: Location {
                file: "dags/x.toml".into(),
                line: Some(12),
                column: Some(9),
                field: "tasks.load.depends_on".into(),
            },
            upstream: "extrct".into(),
            suggestion: Some("extract".into()),
        };
        assert_eq!(
            e.to_string(),
            r#"dags/x.toml:12:9: tasks.load.depends_on: unknown upstream task "extrct" (did you mean "extract"?)"#
        );
        let e = DagError::Syntax {
            at: Location {
                file: "x.toml".into(),
                line: None,
                column: None,
                field: String::new(),
            },
            message: "broken".into(),
        };
        assert_eq!(e.to_string(), "x.toml: broken");
    }
}
