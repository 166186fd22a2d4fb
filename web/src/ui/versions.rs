//! The run page's version of its DAG: which version the run was created with, which is
//! loaded now, and, when they differ, a line diff of the DAG file between them
//! (computed with `similar`, shown as escaped text in hunks with three lines of context).

use std::time::Duration;

use nightshift_store::{DagRecord, DagRun, Store, StoreError};
use serde::Serialize;
use similar::{ChangeTag, TextDiff};

/// At most this many diff lines are shown; the rest are counted.
const DIFF_LINES: usize = 2_000;
/// Lines of unchanged context around each change.
const CONTEXT: usize = 3;
/// A diff of two large files that takes longer falls back to a coarser (still correct)
/// one, as `similar` does on a deadline.
const DIFF_TIMEOUT: Duration = Duration::from_millis(200);

/// The versions the run page names.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunVersion {
    /// The run's version number (`None`: it predates kept versions).
    pub run_version: Option<i64>,
    /// The number of the version loaded now.
    pub current_version: Option<i64>,
}

/// The DAG file's changes from the run's version to the current one.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDiff {
    pub hunks: Vec<Hunk>,
    /// Diff lines beyond those shown.
    pub more: usize,
    /// The run's text was not kept (a version from before texts were kept): no diff.
    pub missing: bool,
}

/// One run of changes with its context.
#[derive(Debug, Clone, Serialize)]
pub struct Hunk {
    /// `@@ -a,b +c,d @@`, as a unified diff heads it.
    pub header: String,
    pub lines: Vec<DiffLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffLine {
    /// `same`, `del` or `add` (a CSS class).
    pub kind: &'static str,
    /// The line's number in the run's version (`None` for an added line).
    pub old: Option<usize>,
    /// The line's number in the current version (`None` for a removed line).
    pub new: Option<usize>,
    pub text: String,
}

/// The version numbers of `run`'s definition and of the one loaded now.
pub async fn run_version(
    store: &Store,
    record: &DagRecord,
    run: &DagRun,
) -> Result<RunVersion, StoreError> {
    let versions = store.list_dag_versions(&record.dag_id).await?;
    let number = |hash: &str| {
        versions
            .iter()
            .find(|v| v.source_hash == hash)
            .map(|v| v.version)
    };
    Ok(RunVersion {
        run_version: number(&run.definition_hash),
        current_version: number(&record.source_hash),
    })
}

/// The diff of the DAG file from `run`'s version to the current one; `None` when the run
/// was made from the current version (or the current text is not kept).
pub async fn run_diff(
    store: &Store,
    record: &DagRecord,
    run: &DagRun,
) -> Result<Option<VersionDiff>, StoreError> {
    if run.definition_hash == record.source_hash {
        return Ok(None);
    }
    let Some(current) = store
        .get_dag_source(&record.dag_id, &record.source_hash)
        .await?
    else {
        return Ok(None);
    };
    let Some(then) = store
        .get_dag_source(&record.dag_id, &run.definition_hash)
        .await?
    else {
        return Ok(Some(VersionDiff {
            hunks: Vec::new(),
            more: 0,
            missing: true,
        }));
    };
    Ok(Some(diff(&then.source, &current.source)))
}

/// The line diff of `old` to `new`, in hunks with [`CONTEXT`] lines of context.
pub fn diff(old: &str, new: &str) -> VersionDiff {
    let text = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new);
    let mut hunks = Vec::new();
    let (mut shown, mut more) = (0, 0);
    for group in text.grouped_ops(CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let (old_range, new_range) = (
            first.old_range().start..last.old_range().end,
            first.new_range().start..last.new_range().end,
        );
        let mut lines = Vec::new();
        for op in &group {
            for change in text.iter_changes(op) {
                if shown >= DIFF_LINES {
                    more += 1;
                    continue;
                }
                shown += 1;
                lines.push(DiffLine {
                    kind: match change.tag() {
                        ChangeTag::Equal => "same",
                        ChangeTag::Delete => "del",
                        ChangeTag::Insert => "add",
                    },
                    old: change.old_index().map(|i| i + 1),
                    new: change.new_index().map(|i| i + 1),
                    text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
                });
            }
        }
        if !lines.is_empty() {
            hunks.push(Hunk {
                header: format!(
                    "@@ -{},{} +{},{} @@",
                    old_range.start + 1,
                    old_range.len(),
                    new_range.start + 1,
                    new_range.len()
                ),
                lines,
            });
        }
    }
    VersionDiff {
        hunks,
        more,
        missing: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_a_removal_and_an_addition_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni\n";
        let d = diff(old, new);
        assert_eq!(d.hunks.len(), 1);
        assert_eq!(d.hunks[0].header, "@@ -2,7 +2,7 @@");
        let lines: Vec<(&str, Option<usize>, Option<usize>, &str)> = d.hunks[0]
            .lines
            .iter()
            .map(|l| (l.kind, l.old, l.new, l.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                ("same", Some(2), Some(2), "b"),
                ("same", Some(3), Some(3), "c"),
                ("same", Some(4), Some(4), "d"),
                ("del", Some(5), None, "e"),
                ("add", None, Some(5), "E"),
                ("same", Some(6), Some(6), "f"),
                ("same", Some(7), Some(7), "g"),
                ("same", Some(8), Some(8), "h"),
            ]
        );
        assert_eq!(d.more, 0);
    }

    #[test]
    fn a_huge_diff_is_cut_and_counted() {
        let old: String = (0..3_000).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..3_000).map(|i| format!("new {i}\n")).collect();
        let d = diff(&old, &new);
        let shown: usize = d.hunks.iter().map(|h| h.lines.len()).sum();
        assert_eq!(shown, DIFF_LINES);
        assert_eq!(shown + d.more, 6_000);
    }
}
