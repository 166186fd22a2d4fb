//! The `require` task kind (Digdag's `require>`): waiting for another DAG's run at a
//! logical date, or for one task of it, and the check that the DAG it names exists.
//!
//! Which DAGs exist is a fact of the whole DAG folder, known only once every file is
//! read: the loader checks it after reading them all ([`Dag::check_required_dags`]), so
//! the order files are read in never matters; [`super::ParseOptions::dags`] runs the same
//! check when a caller knows the set up front.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{suggest, DagError, DagErrors, Location};
use super::model::{Dag, TaskKind};
use crate::duration::human;

/// Waits, without holding a worker slot, until the run of `dag` at a logical date (or
/// its task `task`) has finished, and takes its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequireTask {
    /// The DAG whose run is required.
    pub dag: String,
    /// A template for the required run's logical date (RFC 3339, or a date or local
    /// date-time in the requiring DAG's time zone); `None`: the requiring run's logical
    /// date. Rendering writes the resolved date here as RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_date: Option<String>,
    /// Wait for this task of the run (every instance of it) instead of the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub if_missing: IfMissing,
    pub rerun_on: RerunOn,
    /// Succeed even when the required run (or task) failed.
    pub ignore_failure: bool,
    #[serde(with = "human")]
    pub poke_interval: Duration,
}

/// `if_missing`: what a `require` task does while the required run does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfMissing {
    /// Wait for it to be created (by its schedule, or by a person).
    #[default]
    Wait,
    /// Create it (once, however many requirers race to).
    Trigger,
}

/// `rerun_on`: what a `require` task does when the required run had already finished
/// when the try first looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RerunOn {
    /// Take its result.
    #[default]
    None,
    /// Run its failed tasks again when it failed (a clear of the failed instances).
    Failed,
    /// Run it again whatever its result.
    All,
}

impl Dag {
    /// The `(task id, DAG id)` of every `require` task, by task id.
    pub fn required_dags(&self) -> Vec<(&str, &str)> {
        self.tasks
            .values()
            .filter_map(|t| match &t.kind {
                TaskKind::Require(r) => Some((t.id.as_str(), r.dag.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Checks that every DAG a `require` task names is in `known` (this DAG always is).
    /// `source` is the DAG file's text, to name the line of each unknown one. All
    /// problems are returned together.
    pub fn check_required_dags(
        &self,
        source: &str,
        known: &BTreeSet<String>,
    ) -> Result<(), DagErrors> {
        let errors: Vec<DagError> = self
            .required_dags()
            .into_iter()
            .filter(|(_, dag)| *dag != self.id && !known.contains(*dag))
            .map(|(task_id, dag)| {
                let position =
                    super::validate::paths::field_position(source, &["tasks", task_id, "dag"]);
                DagError::UnknownDag {
                    at: Location {
                        file: self.file.clone(),
                        line: position.map(|(line, _)| line),
                        column: position.map(|(_, column)| column),
                        field: format!("tasks.{task_id}.dag"),
                    },
                    name: dag.to_owned(),
                    suggestion: suggest(dag, known.iter().map(String::as_str)),
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DagErrors {
                file: self.file.clone(),
                errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{parse_dag, parse_dag_with, ParseOptions};

    const MARTS: &str = r#"
schedule = "@daily"

[tasks.wait_extract]
type = "require"
dag = "extract"

[tasks.wait_load]
type = "require"
dag = "load"
task = "copy"
logical_date = "{{ macros.ds_add(ds, -1) }}"
if_missing = "trigger"
rerun_on = "failed"
ignore_failure = true
poke_interval = "30s"
timeout = "2h"

[tasks.build]
type = "noop"
depends_on = ["wait_extract", "wait_load"]
"#;

    fn require_of(dag: &Dag, task: &str) -> RequireTask {
        match &dag.tasks[task].kind {
            TaskKind::Require(r) => r.clone(),
            other => panic!("{task} is {other:?}"),
        }
    }

    #[test]
    fn require_tasks_resolve_with_defaults() {
        let dag = parse_dag("dags/marts.toml", MARTS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            require_of(&dag, "wait_extract"),
            RequireTask {
                dag: "extract".into(),
                logical_date: None,
                task: None,
                if_missing: IfMissing::Wait,
                rerun_on: RerunOn::None,
                ignore_failure: false,
                poke_interval: Duration::from_secs(60),
            }
        );
        // Like a sensor, a require task waits a week at most unless it says otherwise.
        assert_eq!(
            dag.tasks["wait_extract"].timeout,
            Some(Duration::from_secs(7 * 24 * 3600))
        );
        assert_eq!(
            require_of(&dag, "wait_load"),
            RequireTask {
                dag: "load".into(),
                logical_date: Some("{{ macros.ds_add(ds, -1) }}".into()),
                task: Some("copy".into()),
                if_missing: IfMissing::Trigger,
                rerun_on: RerunOn::Failed,
                ignore_failure: true,
                poke_interval: Duration::from_secs(30),
            }
        );
        assert_eq!(
            dag.tasks["wait_load"].timeout,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            dag.required_dags(),
            vec![("wait_extract", "extract"), ("wait_load", "load")]
        );
        // The model survives the store's JSON round trip.
        let json = serde_json::to_value(&dag).unwrap_or_default();
        let back: Dag = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, dag);
    }

    #[test]
    fn bad_require_fields_name_file_line_and_field() {
        fn check(task: &str, expected: &str) {
            let source = format!("[tasks.wait]\ntype = \"require\"\n{task}\n");
            let errors = match parse_dag("dags/marts.toml", &source) {
                Ok(_) => panic!("{task:?} should not parse"),
                Err(errors) => errors.to_string(),
            };
            assert!(
                errors.contains(expected),
                "{task:?}: expected {expected:?} in:\n{errors}"
            );
        }
        check(
            "",
            "dags/marts.toml:1:1: tasks.wait.dag: missing required field \"dag\"",
        );
        check(
            "dag = \"extract\"\nif_missing = \"start\"",
            "dags/marts.toml:4:14: tasks.wait.if_missing: unknown value \"start\", expected one of: wait, trigger",
        );
        check(
            "dag = \"extract\"\nrerun_on = \"always\"",
            "dags/marts.toml:4:12: tasks.wait.rerun_on: unknown value \"always\", expected one of: none, failed, all",
        );
        check(
            "dag = \"extract\"\nwait_for = \"x\"",
            "dags/marts.toml:4:1: tasks.wait.wait_for: unknown field \"wait_for\"",
        );
        check(
            "dag = \"no good\"",
            "dags/marts.toml:3:7: tasks.wait.dag: invalid DAG id \"no good\"",
        );
        check(
            "dag = \"extract\"\nlogical_date = \"{{ ds \"",
            "dags/marts.toml:4:16: tasks.wait.logical_date: template does not parse",
        );
        check(
            "dag = \"extract\"\npoke_interval = \"soon\"",
            "dags/marts.toml:4:17: tasks.wait.poke_interval:",
        );
        check(
            "dag = \"marts\"",
            "dags/marts.toml:3:7: tasks.wait.dag: task \"wait\" requires its own DAG at the same logical date",
        );
    }

    #[test]
    fn its_own_dag_at_another_date_is_fine() {
        let source = "[tasks.wait]\ntype = \"require\"\ndag = \"marts\"\n\
                      logical_date = \"{{ macros.ds_add(ds, -1) }}\"\n";
        assert!(parse_dag("dags/marts.toml", source).is_ok());
    }

    #[test]
    fn an_unknown_dag_is_an_error_at_its_line() {
        let dag = parse_dag("dags/marts.toml", MARTS).unwrap_or_else(|e| panic!("{e}"));
        let known: BTreeSet<String> = ["extract", "load"].map(String::from).into();
        assert_eq!(dag.check_required_dags(MARTS, &known), Ok(()));

        let known: BTreeSet<String> = ["extrakt", "load"].map(String::from).into();
        let errors = dag
            .check_required_dags(MARTS, &known)
            .expect_err("extract is unknown");
        assert_eq!(
            errors.to_string(),
            "dags/marts.toml:6:7: tasks.wait_extract.dag: unknown DAG \"extract\" (did you mean \"extrakt\"?)"
        );
        assert_eq!(errors.errors[0].kind(), "unknown_dag");

        // The same check when the caller knows the DAGs up front.
        let options = ParseOptions {
            dags: Some(["load".to_owned()].into()),
            ..ParseOptions::default()
        };
        let errors =
            parse_dag_with("dags/marts.toml", MARTS, &options).expect_err("extract is unknown");
        assert_eq!(
            errors.to_string(),
            "dags/marts.toml:6:7: tasks.wait_extract.dag: unknown DAG \"extract\""
        );
    }

    #[test]
    fn logical_date_renders_to_an_instant() {
        use chrono::{TimeZone, Utc};

        use crate::render::{render_task, RenderParams, RunInfo};
        let source = "timezone = \"Asia/Tokyo\"\n\
                      [tasks.same]\ntype = \"require\"\ndag = \"extract\"\n\
                      [tasks.yesterday]\ntype = \"require\"\ndag = \"extract\"\n\
                      logical_date = \"{{ macros.ds_add(ds, -1) }}\"\n\
                      [tasks.exact]\ntype = \"require\"\ndag = \"extract\"\n\
                      logical_date = \"{{ data_interval_end }}\"\n\
                      [tasks.bad]\ntype = \"require\"\ndag = \"extract\"\n\
                      logical_date = \"day {{ ds }}\"\n";
        let dag = parse_dag("dags/marts.toml", source).unwrap_or_else(|e| panic!("{e}"));
        let logical_date = Utc.with_ymd_and_hms(2026, 1, 1, 15, 0, 0).unwrap();
        let run = RunInfo {
            dag_id: "marts".into(),
            run_id: "r".into(),
            logical_date,
            data_interval_start: logical_date,
            data_interval_end: Utc.with_ymd_and_hms(2026, 1, 2, 15, 0, 0).unwrap(),
            conf: serde_json::json!({}),
        };
        let render = |task: &str| {
            render_task(&RenderParams {
                dag: &dag,
                task: &dag.tasks[task],
                run: &run,
                map_index: -1,
                try_number: 1,
                upstream_outputs: &Default::default(),
                env: &Default::default(),
                secrets: &Default::default(),
            })
        };
        let check = |task: &str, expected: &str| {
            let rendered = render(task).unwrap_or_else(|e| panic!("{task}: {e}"));
            let TaskKind::Require(r) = &rendered.kind else {
                panic!("{task}: {rendered:?}");
            };
            assert_eq!(r.logical_date.as_deref(), Some(expected), "{task}");
            assert_eq!(rendered.fields["logical_date"], expected, "{task}");
        };
        // The run's own; 2026-01-02 00:00 in Tokyo is 2026-01-01 15:00 UTC.
        check("same", "2026-01-01T15:00:00+00:00");
        // A date is midnight in the DAG's time zone: 2026-01-01 00:00 in Tokyo.
        check("yesterday", "2025-12-31T15:00:00+00:00");
        check("exact", "2026-01-02T15:00:00+00:00");
        let err = render("bad").expect_err("not a date");
        assert!(
            err.to_string()
                .starts_with("field `logical_date` does not fit its type after rendering: \"day 2026-01-02\" is not a date"),
            "{err}"
        );
    }
}
