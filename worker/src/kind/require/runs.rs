//! The one store access a `require` task has: other DAGs' runs. A narrow handle on the
//! worker's store, so the kind can look a run up, create it once, read one task's
//! states and re-run it, and nothing else.

use chrono::{DateTime, Utc};
use nightshift_core::dag::{Dag, RerunOn};
use nightshift_core::plan::ClearSelection;
use nightshift_core::state::TaskState;
use nightshift_store::{DagRun, RunType, Store, StoreError, TriggerParams};

/// A DAG another one requires, as the store has it now.
#[derive(Debug, Clone)]
pub struct RequiredDag {
    pub dag: Dag,
    pub is_paused: bool,
    /// False once its file vanished from the DAG folder.
    pub is_active: bool,
}

/// Why a required DAG could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DagLookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Written by another nightshift version, or damaged.
    #[error("the stored definition of DAG {dag_id} does not read: {source}")]
    Definition {
        dag_id: String,
        source: serde_json::Error,
    },
}

/// Other DAGs' runs, for `require` tasks.
#[derive(Clone)]
pub struct RequiredRuns {
    store: Store,
}

impl std::fmt::Debug for RequiredRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequiredRuns")
            .field("backend", &self.store.backend_name())
            .finish()
    }
}

/// Every handle reaches the one store: a spec's equality does not depend on it.
impl PartialEq for RequiredRuns {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The run id of a run created because a `require` task asked for it.
pub fn required_run_id(logical_date: DateTime<Utc>) -> String {
    format!("required__{}", logical_date.to_rfc3339())
}

impl RequiredRuns {
    pub fn new(store: Store) -> RequiredRuns {
        RequiredRuns { store }
    }

    /// The run of `dag_id` at `logical_date`, if it exists.
    pub async fn find(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<DagRun>, StoreError> {
        self.store.get_run_at(dag_id, logical_date).await
    }

    /// The DAG `dag_id` as loaded now; `None` when the store never had it.
    pub async fn dag(&self, dag_id: &str) -> Result<Option<RequiredDag>, DagLookupError> {
        let Some(record) = self.store.get_dag(dag_id).await? else {
            return Ok(None);
        };
        let dag = serde_json::from_value(record.definition).map_err(|source| {
            DagLookupError::Definition {
                dag_id: dag_id.to_owned(),
                source,
            }
        })?;
        Ok(Some(RequiredDag {
            dag,
            is_paused: record.is_paused,
            is_active: record.is_active,
        }))
    }

    /// The run of `dag` at `logical_date`, created queued (with the data interval its
    /// schedule gives that date) unless it exists; `true` when this call created it. Of
    /// requirers racing, exactly one creates it (the store's unique key on DAG and
    /// logical date).
    pub async fn create(
        &self,
        dag: &Dag,
        logical_date: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(DagRun, bool), StoreError> {
        let params = TriggerParams {
            run_id: Some(required_run_id(logical_date)),
            logical_date: Some(logical_date),
            data_interval: Some(nightshift_store::scheduled_data_interval(dag, logical_date)),
            conf: serde_json::Value::Null,
            run_type: RunType::Manual,
            now,
        };
        self.store.ensure_run(dag, &params).await
    }

    /// The states of every instance of `task_id` in `run` (one, or one per map index).
    pub async fn task_states(
        &self,
        run: &DagRun,
        task_id: &str,
    ) -> Result<Vec<TaskState>, StoreError> {
        let instances = self
            .store
            .list_task_instances_of(run.id, &[task_id.to_owned()])
            .await?;
        Ok(instances.iter().map(|ti| ti.state).collect())
    }

    /// Runs `run` (or only its task `task_id`) again, as a person's clear does: its
    /// failed instances for [`RerunOn::Failed`], all of them for [`RerunOn::All`]; the
    /// run reopens. Returns how many instances were cleared (none for
    /// [`RerunOn::None`]). [`StoreError::Stale`] when someone changed them since they
    /// were read (another requirer re-ran it first): nothing is written then.
    pub async fn rerun(
        &self,
        dag: &Dag,
        run: &DagRun,
        rerun_on: RerunOn,
        task_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let only_failed = match rerun_on {
            RerunOn::None => return Ok(0),
            RerunOn::Failed => true,
            RerunOn::All => false,
        };
        let task_ids = match task_id {
            Some(task_id) => vec![task_id.to_owned()],
            None => dag.tasks.keys().cloned().collect(),
        };
        let selection = ClearSelection {
            task_ids,
            downstream: false,
            upstream: false,
            only_failed,
            keep_version: false,
        };
        let plan = self.store.plan_clear(dag, run, &selection, now).await?;
        if plan.changes().is_empty() {
            return Ok(0);
        }
        Ok(self.store.apply_clear(&plan).await?.len())
    }
}
