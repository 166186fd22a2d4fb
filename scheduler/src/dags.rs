//! The DAG definitions the scheduler works from: the DAGs' heads are read from the store
//! each tick, a definition is fetched and deserialized only when its `source_hash` changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use nightshift_core::dag::Dag;
use nightshift_store::Store;

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
pub(crate) struct ParsedDags {
    parsed: Mutex<HashMap<String, (String, Arc<Dag>)>>,
}

impl ParsedDags {
    /// Every stored DAG whose definition deserializes, by id. Only the DAGs' heads are
    /// read each pass; a definition is fetched and parsed when its hash changed. One
    /// that does not deserialize (written by another nightshift version) is logged and
    /// left out.
    pub async fn refresh(
        &self,
        store: &Store,
    ) -> Result<BTreeMap<String, CachedDag>, SchedulerError> {
        let heads = store
            .list_dag_heads()
            .await
            .map_err(store_err("listing DAGs"))?;
        if let Ok(mut parsed) = self.parsed.lock() {
            let ids: HashSet<&str> = heads.iter().map(|h| h.dag_id.as_str()).collect();
            parsed.retain(|id, _| ids.contains(id.as_str()));
        }
        let mut dags = BTreeMap::new();
        for head in heads {
            let cached = self.parsed.lock().ok().and_then(|parsed| {
                parsed
                    .get(&head.dag_id)
                    .filter(|(hash, _)| *hash == head.source_hash)
                    .map(|(_, dag)| dag.clone())
            });
            let dag = match cached {
                Some(dag) => dag,
                None => match self.load(store, &head.dag_id).await? {
                    Some((hash, dag)) if hash == head.source_hash => dag,
                    // Changed again between the two reads, or gone: next pass.
                    Some(_) | None => continue,
                },
            };
            dags.insert(
                head.dag_id,
                CachedDag {
                    dag,
                    is_paused: head.is_paused,
                    is_active: head.is_active,
                    source_hash: head.source_hash,
                },
            );
        }
        Ok(dags)
    }

    /// Fetches and parses one DAG's definition and remembers it by its hash; `None` when
    /// the DAG vanished or its definition does not deserialize.
    async fn load(
        &self,
        store: &Store,
        dag_id: &str,
    ) -> Result<Option<(String, Arc<Dag>)>, SchedulerError> {
        let Some(record) = store
            .get_dag(dag_id)
            .await
            .map_err(store_err("reading a DAG definition"))?
        else {
            return Ok(None);
        };
        match serde_json::from_value::<Dag>(record.definition) {
            Ok(dag) => {
                let dag = Arc::new(dag);
                if let Ok(mut parsed) = self.parsed.lock() {
                    parsed.insert(
                        record.dag_id.clone(),
                        (record.source_hash.clone(), dag.clone()),
                    );
                }
                Ok(Some((record.source_hash, dag)))
            }
            Err(err) => {
                tracing::warn!(dag_id = %record.dag_id, error = %err,
                    "stored DAG definition does not deserialize; skipped");
                Ok(None)
            }
        }
    }
}
