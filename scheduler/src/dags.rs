//! The DAG definitions the scheduler works from: read from the store each tick and
//! deserialized only when a DAG's `source_hash` changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use nightshift_core::dag::Dag;
use nightshift_store::{DagFilter, Store};

use crate::scheduler::{store_err, SchedulerError};

/// One stored DAG with its parsed definition.
#[derive(Debug, Clone)]
pub(crate) struct CachedDag {
    pub dag: Arc<Dag>,
    pub is_paused: bool,
    pub is_active: bool,
    /// The store's hash of the definition; runs record it.
    pub source_hash: String,
}

/// Parsed definitions by DAG id, keyed by the hash they were parsed from.
#[derive(Debug, Default)]
pub(crate) struct DagCache {
    parsed: Mutex<HashMap<String, (String, Arc<Dag>)>>,
}

impl DagCache {
    /// Every stored DAG whose definition deserializes, by id. A definition that does not
    /// (written by another nightshift version) is logged and left out.
    pub async fn refresh(
        &self,
        store: &Store,
    ) -> Result<BTreeMap<String, CachedDag>, SchedulerError> {
        let records = store
            .list_dags(&DagFilter::default())
            .await
            .map_err(store_err("listing DAGs"))?;
        let Ok(mut parsed) = self.parsed.lock() else {
            return Ok(BTreeMap::new());
        };
        parsed.retain(|id, _| records.iter().any(|r| &r.dag_id == id));
        let mut dags = BTreeMap::new();
        for record in records {
            let dag = match parsed.get(&record.dag_id) {
                Some((hash, dag)) if *hash == record.source_hash => dag.clone(),
                _ => match serde_json::from_value::<Dag>(record.definition.clone()) {
                    Ok(dag) => {
                        let dag = Arc::new(dag);
                        parsed.insert(
                            record.dag_id.clone(),
                            (record.source_hash.clone(), dag.clone()),
                        );
                        dag
                    }
                    Err(err) => {
                        tracing::warn!(dag_id = %record.dag_id, error = %err,
                            "stored DAG definition does not deserialize; skipped");
                        continue;
                    }
                },
            };
            dags.insert(
                record.dag_id.clone(),
                CachedDag {
                    dag,
                    is_paused: record.is_paused,
                    is_active: record.is_active,
                    source_hash: record.source_hash,
                },
            );
        }
        Ok(dags)
    }
}
