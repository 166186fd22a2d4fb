//! The instances of the runs this scheduler works on, kept from one pass to the next and
//! brought up to date with only the rows that changed since ([`Store::instance_changes`]),
//! so a pass over a run of 10,000 instances reads a few dozen rows, not 10,000.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use nightshift_core::plan::InstanceView;
use nightshift_core::state::TaskState;
use nightshift_store::{ChangeMark, InstanceChanges, Store, StoreError};

/// One run's instances as last read, with where that read left off.
#[derive(Debug, Default)]
pub(crate) struct RunInstances {
    /// Ordered by task id and map index.
    pub views: Vec<InstanceView>,
    /// Position of each instance id in `views`.
    index: HashMap<i64, usize>,
    mark: Option<ChangeMark>,
    /// The DAG definition (`source_hash`) the instances were last found complete for:
    /// every task of it has an instance.
    checked: Option<String>,
}

impl RunInstances {
    /// Brings the instances up to date: reads the rows changed since the last read (all
    /// of them the first time, or when the store cannot tell) and merges them in.
    pub async fn refresh(&mut self, store: &Store, run: i64) -> Result<(), StoreError> {
        let changes = store.instance_changes(run, self.mark).await?;
        self.merge(changes);
        Ok(())
    }

    fn merge(&mut self, changes: InstanceChanges) {
        self.mark = changes.mark;
        if changes.complete {
            self.views = changes.views;
            self.reindex();
            return;
        }
        let mut added = false;
        for view in changes.views {
            match self.index.get(&view.id) {
                Some(&i) => self.views[i] = view,
                None => {
                    self.views.push(view);
                    added = true;
                }
            }
        }
        if added {
            self.views
                .sort_by(|a, b| (&a.task_id, a.map_index).cmp(&(&b.task_id, b.map_index)));
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .views
            .iter()
            .enumerate()
            .map(|(i, view)| (view.id, i))
            .collect();
    }

    /// Whether every task of the definition `hash` is known to have an instance.
    pub fn checked_against(&self, hash: &str) -> bool {
        self.checked.as_deref() == Some(hash)
    }

    pub fn set_checked_against(&mut self, hash: &str) {
        self.checked = Some(hash.to_owned());
    }

    /// Records a state this scheduler just wrote (the next read returns it too).
    pub fn set_state(&mut self, id: i64, state: TaskState) {
        if let Some(&i) = self.index.get(&id) {
            self.views[i].state = state;
        }
    }
}

/// [`RunInstances`] by run id, for the runs this scheduler claimed at its last pass.
#[derive(Debug, Default)]
pub(crate) struct InstanceCache {
    runs: Mutex<HashMap<i64, RunInstances>>,
}

impl InstanceCache {
    /// Takes run `run`'s instances out of the cache (empty the first time); give them
    /// back with [`InstanceCache::put`] after the pass. A pass that fails does not, and the
    /// next one reads the whole run again.
    pub fn take(&self, run: i64) -> RunInstances {
        self.lock().remove(&run).unwrap_or_default()
    }

    pub fn put(&self, run: i64, instances: RunInstances) {
        self.lock().insert(run, instances);
    }

    /// Forgets every run but `keep` (runs that ended or went to another scheduler).
    pub fn retain(&self, keep: &HashSet<i64>) {
        self.lock().retain(|run, _| keep.contains(run));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, RunInstances>> {
        // Only copies of stored rows; a poisoned map is still good.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: i64, task_id: &str, state: TaskState) -> InstanceView {
        InstanceView {
            id,
            task_id: task_id.to_owned(),
            map_index: -1,
            state,
            try_number: 0,
            next_retry_at: None,
        }
    }

    #[test]
    fn changes_merge_into_the_kept_instances() {
        let mut run = RunInstances::default();
        run.merge(InstanceChanges {
            views: vec![
                view(1, "a", TaskState::Running),
                view(2, "c", TaskState::Pending),
            ],
            complete: true,
            mark: None,
        });
        run.set_state(2, TaskState::Scheduled);
        run.merge(InstanceChanges {
            views: vec![
                view(1, "a", TaskState::Success),
                view(3, "b", TaskState::Pending),
            ],
            complete: false,
            mark: None,
        });
        let got: Vec<_> = run
            .views
            .iter()
            .map(|v| (v.id, v.task_id.as_str(), v.state))
            .collect();
        assert_eq!(
            got,
            [
                (1, "a", TaskState::Success),
                (3, "b", TaskState::Pending),
                (2, "c", TaskState::Scheduled),
            ]
        );
        run.set_state(3, TaskState::Scheduled);
        assert_eq!(run.views[1].state, TaskState::Scheduled);
        // A complete read replaces everything.
        run.merge(InstanceChanges {
            views: vec![view(4, "d", TaskState::Pending)],
            complete: true,
            mark: None,
        });
        assert_eq!(run.views.len(), 1);
        run.set_state(1, TaskState::Failed);
        assert_eq!(run.views[0].state, TaskState::Pending);
    }
}
