//! Trigger rules: when a task instance may run, given the states of its upstream instances.
//!
//! The decisions reproduce Apache Airflow's `TriggerRuleDep` as the scheduler runs it
//! (`flag_upstream_failed=True`): besides "wait" and "run", a rule that can no longer be
//! met turns the downstream into `skipped` or `upstream_failed`, with Airflow's exact
//! choice between the two. Reference followed line by line:
//! `apache/airflow` `airflow-core/src/airflow/ti_deps/deps/trigger_rule_dep.py`
//! (`_evaluate_direct_relatives`) and its tests
//! `airflow-core/tests/unit/ti_deps/deps/test_trigger_rule_dep.py`.
//!
//! Two deliberate differences, both about things Airflow has and nightshift has not:
//! - Setup/teardown tasks (`all_done_setup_success`, the setup constraint) do not exist here.
//! - Removed upstream instances (a task that left the DAG, a `for_each` instance dropped by
//!   a re-expansion) are not counted as upstreams at all. Airflow subtracts them from the
//!   non-success tallies only for mapped downstream instances (`if ti.map_index > -1:
//!   num_failures -= removed`); for the others a removed upstream instance would keep the
//!   downstream waiting forever. Airflow's extra outcome `removed` for a mapped instance
//!   whose index exceeds its upstream's successes belongs to expansion, not to this module.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::state::TaskState;

/// Airflow's trigger rules, with the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    AllDoneMinOneSuccess,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    AllSkipped,
    Always,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 12] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllDoneMinOneSuccess,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::AllSkipped,
        TriggerRule::Always,
    ];

    /// The name used in DAG files, the API and Airflow.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllDoneMinOneSuccess => "all_done_min_one_success",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::Always => "always",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trigger rule name that is not one of Airflow's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger rule {0:?} (expected one of: all_success, all_failed, all_done, all_done_min_one_success, one_success, one_failed, one_done, none_failed, none_failed_min_one_success, none_skipped, all_skipped, always)")]
pub struct UnknownTriggerRule(pub String);

impl FromStr for TriggerRule {
    type Err = UnknownTriggerRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == s)
            .ok_or_else(|| UnknownTriggerRule(s.to_owned()))
    }
}

/// Counts over all upstream task instances of one downstream instance (each instance of a
/// mapped upstream counted on its own), as Airflow's `_UpstreamTIStates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpstreamStates {
    pub success: u32,
    pub skipped: u32,
    pub failed: u32,
    pub upstream_failed: u32,
    pub removed: u32,
    /// Upstream instances in a finished state (success, failed, skipped, upstream_failed,
    /// removed); `up_for_retry` is not finished.
    pub done: u32,
    /// All upstream instances, finished or not, removed included.
    pub total: u32,
}

impl UpstreamStates {
    /// Counts the states of all upstream instances.
    pub fn from_states(states: impl IntoIterator<Item = TaskState>) -> UpstreamStates {
        let mut up = UpstreamStates::default();
        for state in states {
            up.add(state);
        }
        up
    }

    /// Counts one more upstream instance.
    pub fn add(&mut self, state: TaskState) {
        self.total += 1;
        match state {
            TaskState::Success => self.success += 1,
            TaskState::Skipped => self.skipped += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::UpstreamFailed => self.upstream_failed += 1,
            TaskState::Removed => self.removed += 1,
            TaskState::Pending
            | TaskState::Scheduled
            | TaskState::Queued
            | TaskState::Running
            | TaskState::UpForRetry
            | TaskState::UpForReschedule
            | TaskState::AwaitingInput => {}
        }
        if state.is_finished() {
            self.done += 1;
        }
    }

    /// Upstream instances that count (removed ones do not).
    fn upstream(&self) -> u32 {
        self.total.saturating_sub(self.removed)
    }

    /// Finished upstream instances that count.
    fn finished(&self) -> u32 {
        self.done.saturating_sub(self.removed)
    }

    fn all_done(&self) -> bool {
        self.finished() >= self.upstream()
    }
}

/// What the scheduler does with a waiting task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerDecision {
    /// The rule is not met yet but still can be.
    Wait,
    /// The rule is met: schedule the instance.
    Run,
    /// The rule can no longer be met: the instance becomes `skipped`.
    Skip,
    /// The rule can no longer be met because upstreams failed: it becomes `upstream_failed`.
    UpstreamFailed,
}

impl TriggerDecision {
    /// The state a waiting instance is moved to, if any (`Run` means `scheduled`).
    pub fn target_state(self) -> Option<TaskState> {
        match self {
            TriggerDecision::Wait => None,
            TriggerDecision::Run => Some(TaskState::Scheduled),
            TriggerDecision::Skip => Some(TaskState::Skipped),
            TriggerDecision::UpstreamFailed => Some(TaskState::UpstreamFailed),
        }
    }
}

/// Decides whether a task instance with trigger rule `rule` may run now, must wait, or
/// is skipped / upstream_failed because its rule can no longer be met.
///
/// As in Airflow, the "can no longer be met" check comes first and wins (which matters
/// for `none_failed_min_one_success` with every upstream skipped: skipped, not run), and
/// the fast rules (`one_success`, `one_failed`, `one_done`) run without waiting for the
/// other upstreams. A task without upstreams, and `always`, run at once.
pub fn evaluate(rule: TriggerRule, up: &UpstreamStates) -> TriggerDecision {
    use TriggerDecision::{Run, Skip, UpstreamFailed, Wait};

    let upstream = up.upstream();
    if upstream == 0 || rule == TriggerRule::Always {
        return Run;
    }
    let UpstreamStates {
        success,
        skipped,
        failed,
        upstream_failed,
        ..
    } = *up;
    let done = up.finished();
    let upstream_done = up.all_done();
    let any_failed = failed > 0 || upstream_failed > 0;

    // The outcome when the rule can no longer be met (Airflow's `new_state`).
    let cannot_be_met = match rule {
        TriggerRule::AllSuccess => {
            if any_failed {
                Some(UpstreamFailed)
            } else if skipped > 0 {
                Some(Skip)
            } else {
                None
            }
        }
        TriggerRule::AllFailed => (success > 0 || skipped > 0).then_some(Skip),
        TriggerRule::OneSuccess => {
            if upstream_done && done == skipped {
                Some(Skip)
            } else if upstream_done && success == 0 {
                Some(UpstreamFailed)
            } else {
                None
            }
        }
        TriggerRule::OneFailed => (upstream_done && !any_failed).then_some(Skip),
        TriggerRule::OneDone => (upstream_done && failed == 0 && success == 0).then_some(Skip),
        TriggerRule::NoneFailed => any_failed.then_some(UpstreamFailed),
        TriggerRule::NoneFailedMinOneSuccess => {
            if any_failed {
                Some(UpstreamFailed)
            } else if skipped == upstream {
                Some(Skip)
            } else {
                None
            }
        }
        TriggerRule::NoneSkipped => (skipped > 0).then_some(Skip),
        TriggerRule::AllSkipped => (success > 0 || any_failed).then_some(Skip),
        TriggerRule::AllDoneMinOneSuccess => {
            // Skipped upstreams are not "done" for this rule: one skip skips it at once.
            let non_skipped_done = success + failed + upstream_failed;
            let non_skipped_upstream = upstream.saturating_sub(skipped);
            if skipped > 0 {
                Some(Skip)
            } else if non_skipped_done >= non_skipped_upstream && success == 0 {
                Some(UpstreamFailed)
            } else {
                None
            }
        }
        TriggerRule::AllDone | TriggerRule::Always => None,
    };
    if let Some(decision) = cannot_be_met {
        return decision;
    }

    // Whether the rule is met (Airflow's passing dep status).
    let met = match rule {
        TriggerRule::AllSuccess => success >= upstream,
        TriggerRule::AllFailed => failed + upstream_failed >= upstream,
        TriggerRule::AllDone => upstream_done,
        TriggerRule::AllDoneMinOneSuccess => {
            skipped == 0 && success + failed + upstream_failed >= upstream && success > 0
        }
        TriggerRule::OneSuccess => success > 0,
        TriggerRule::OneFailed => any_failed,
        TriggerRule::OneDone => success + failed > 0,
        TriggerRule::NoneFailed | TriggerRule::NoneFailedMinOneSuccess => {
            success + skipped >= upstream
        }
        TriggerRule::NoneSkipped => upstream_done && skipped == 0,
        TriggerRule::AllSkipped => skipped >= upstream,
        TriggerRule::Always => true,
    };
    if met {
        Run
    } else {
        Wait
    }
}

/// A sentence for people (UI, logs) saying why `evaluate` decided what it did.
pub fn explain(rule: TriggerRule, up: &UpstreamStates) -> String {
    let decision = evaluate(rule, up);
    let counts = format!(
        "upstreams: {} total, {} done ({} success, {} failed, {} upstream_failed, {} skipped, {} removed)",
        up.total, up.done, up.success, up.failed, up.upstream_failed, up.skipped, up.removed
    );
    let verdict = match decision {
        TriggerDecision::Run => "is met",
        TriggerDecision::Wait => "is not met yet",
        TriggerDecision::Skip => "can no longer be met: the task is skipped",
        TriggerDecision::UpstreamFailed => {
            "can no longer be met because upstreams failed: the task is upstream_failed"
        }
    };
    format!("trigger rule {rule} {verdict}; {counts}")
}

#[cfg(test)]
mod tests {
    use super::TaskState as S;
    use super::TriggerDecision::{Run, Skip, UpstreamFailed as UpFailed, Wait};
    use super::TriggerRule as R;
    use super::*;

    /// Upstream scenarios the table below is written against.
    const ALL_SUCCESS: &[TaskState] = &[S::Success, S::Success];
    const SOME_FAILED: &[TaskState] = &[S::Success, S::Failed];
    const ALL_FAILED: &[TaskState] = &[S::Failed, S::Failed];
    const SOME_UPSTREAM_FAILED: &[TaskState] = &[S::Success, S::UpstreamFailed];
    const ALL_UPSTREAM_FAILED: &[TaskState] = &[S::UpstreamFailed, S::UpstreamFailed];
    const SOME_SKIPPED: &[TaskState] = &[S::Success, S::Skipped];
    const ALL_SKIPPED: &[TaskState] = &[S::Skipped, S::Skipped];
    const MIXED: &[TaskState] = &[S::Success, S::Failed, S::Skipped];
    const FAILED_AND_SKIPPED: &[TaskState] = &[S::Failed, S::Skipped];
    const NONE_DONE: &[TaskState] = &[S::Running, S::Pending];
    const SUCCESS_NOT_DONE: &[TaskState] = &[S::Success, S::Running];
    const FAILED_NOT_DONE: &[TaskState] = &[S::Failed, S::UpForRetry];
    const SKIPPED_NOT_DONE: &[TaskState] = &[S::Skipped, S::Queued];

    /// (rule, upstream states, expected decision), derived from `_evaluate_direct_relatives`
    /// with `flag_upstream_failed=True`; the comment names the Airflow test where one exists.
    const TABLE: &[(TriggerRule, &[TaskState], TriggerDecision)] = &[
        // all_success
        (R::AllSuccess, ALL_SUCCESS, Run), // test_all_success_tr_success
        (R::AllSuccess, SOME_FAILED, UpFailed), // test_all_success_tr_failure
        (R::AllSuccess, ALL_FAILED, UpFailed),
        (R::AllSuccess, SOME_UPSTREAM_FAILED, UpFailed),
        (R::AllSuccess, ALL_UPSTREAM_FAILED, UpFailed),
        (R::AllSuccess, SOME_SKIPPED, Skip), // test_all_success_tr_skip
        (R::AllSuccess, ALL_SKIPPED, Skip),
        (R::AllSuccess, MIXED, UpFailed), // failure wins over skip
        (R::AllSuccess, FAILED_AND_SKIPPED, UpFailed),
        (R::AllSuccess, NONE_DONE, Wait),
        (R::AllSuccess, SUCCESS_NOT_DONE, Wait),
        (R::AllSuccess, FAILED_NOT_DONE, UpFailed), // decided before the rest finish
        (R::AllSuccess, SKIPPED_NOT_DONE, Skip),
        // all_failed
        (R::AllFailed, ALL_SUCCESS, Skip), // test_all_failed_tr_failure
        (R::AllFailed, SOME_FAILED, Skip),
        (R::AllFailed, ALL_FAILED, Run), // test_all_failed_tr_success
        (R::AllFailed, SOME_UPSTREAM_FAILED, Skip),
        (R::AllFailed, ALL_UPSTREAM_FAILED, Run),
        (R::AllFailed, SOME_SKIPPED, Skip),
        (R::AllFailed, ALL_SKIPPED, Skip),
        (R::AllFailed, MIXED, Skip),
        (R::AllFailed, FAILED_AND_SKIPPED, Skip),
        (R::AllFailed, NONE_DONE, Wait),
        (R::AllFailed, SUCCESS_NOT_DONE, Skip),
        (R::AllFailed, FAILED_NOT_DONE, Wait),
        (R::AllFailed, SKIPPED_NOT_DONE, Skip),
        // all_done
        (R::AllDone, ALL_SUCCESS, Run), // test_all_done_tr_success
        (R::AllDone, SOME_FAILED, Run),
        (R::AllDone, ALL_FAILED, Run),
        (R::AllDone, SOME_UPSTREAM_FAILED, Run),
        (R::AllDone, ALL_UPSTREAM_FAILED, Run),
        (R::AllDone, SOME_SKIPPED, Run),
        (R::AllDone, ALL_SKIPPED, Run),
        (R::AllDone, MIXED, Run),
        (R::AllDone, FAILED_AND_SKIPPED, Run),
        (R::AllDone, NONE_DONE, Wait),
        (R::AllDone, SUCCESS_NOT_DONE, Wait), // test_all_done_tr_failure
        (R::AllDone, FAILED_NOT_DONE, Wait),
        (R::AllDone, SKIPPED_NOT_DONE, Wait),
        // all_done_min_one_success
        (R::AllDoneMinOneSuccess, ALL_SUCCESS, Run), // ..._with_all_successful_upstreams
        (R::AllDoneMinOneSuccess, SOME_FAILED, Run), // ..._with_mixed_success_and_failure
        (R::AllDoneMinOneSuccess, ALL_FAILED, UpFailed), // ..._with_all_failed_upstreams
        (R::AllDoneMinOneSuccess, SOME_UPSTREAM_FAILED, Run),
        (R::AllDoneMinOneSuccess, ALL_UPSTREAM_FAILED, UpFailed), // ..._upstream_failed_cascade
        (R::AllDoneMinOneSuccess, SOME_SKIPPED, Skip), // ..._with_success_and_skipped_upstream
        (R::AllDoneMinOneSuccess, ALL_SKIPPED, Skip),
        (R::AllDoneMinOneSuccess, MIXED, Skip),
        (R::AllDoneMinOneSuccess, FAILED_AND_SKIPPED, Skip),
        (R::AllDoneMinOneSuccess, NONE_DONE, Wait),
        (R::AllDoneMinOneSuccess, SUCCESS_NOT_DONE, Wait),
        (R::AllDoneMinOneSuccess, FAILED_NOT_DONE, Wait),
        (R::AllDoneMinOneSuccess, SKIPPED_NOT_DONE, Skip), // a skip decides at once
        // one_success
        (R::OneSuccess, ALL_SUCCESS, Run),
        (R::OneSuccess, SOME_FAILED, Run),
        (R::OneSuccess, ALL_FAILED, UpFailed),
        (R::OneSuccess, SOME_UPSTREAM_FAILED, Run),
        (R::OneSuccess, ALL_UPSTREAM_FAILED, UpFailed),
        (R::OneSuccess, SOME_SKIPPED, Run),
        (R::OneSuccess, ALL_SKIPPED, Skip), // test_one_success_tr_failure_all_skipped
        (R::OneSuccess, MIXED, Run),
        (R::OneSuccess, FAILED_AND_SKIPPED, UpFailed),
        (R::OneSuccess, NONE_DONE, Wait),
        (R::OneSuccess, SUCCESS_NOT_DONE, Run), // fast trigger
        (R::OneSuccess, FAILED_NOT_DONE, Wait),
        (R::OneSuccess, SKIPPED_NOT_DONE, Wait),
        // one_failed
        (R::OneFailed, ALL_SUCCESS, Skip), // test_one_failure_tr_failure
        (R::OneFailed, SOME_FAILED, Run),
        (R::OneFailed, ALL_FAILED, Run),
        (R::OneFailed, SOME_UPSTREAM_FAILED, Run), // test_one_failure_tr_success_no_failed
        (R::OneFailed, ALL_UPSTREAM_FAILED, Run),
        (R::OneFailed, SOME_SKIPPED, Skip),
        (R::OneFailed, ALL_SKIPPED, Skip),
        (R::OneFailed, MIXED, Run),
        (R::OneFailed, FAILED_AND_SKIPPED, Run), // test_one_failure_tr_success
        (R::OneFailed, NONE_DONE, Wait),
        (R::OneFailed, SUCCESS_NOT_DONE, Wait),
        (R::OneFailed, FAILED_NOT_DONE, Run), // fast trigger
        (R::OneFailed, SKIPPED_NOT_DONE, Wait),
        // one_done: upstream_failed counts as neither success nor failure
        (R::OneDone, ALL_SUCCESS, Run), // test_one_done_tr_success
        (R::OneDone, SOME_FAILED, Run),
        (R::OneDone, ALL_FAILED, Run), // test_one_done_tr_success_with_failed
        (R::OneDone, SOME_UPSTREAM_FAILED, Run),
        (R::OneDone, ALL_UPSTREAM_FAILED, Skip), // test_one_done_tr_upstream_failed
        (R::OneDone, SOME_SKIPPED, Run),
        (R::OneDone, ALL_SKIPPED, Skip), // test_one_done_tr_skip
        (R::OneDone, MIXED, Run),
        (R::OneDone, FAILED_AND_SKIPPED, Run),
        (R::OneDone, NONE_DONE, Wait),
        (R::OneDone, SUCCESS_NOT_DONE, Run),
        (R::OneDone, FAILED_NOT_DONE, Run),
        (R::OneDone, SKIPPED_NOT_DONE, Wait),
        // none_failed
        (R::NoneFailed, ALL_SUCCESS, Run),
        (R::NoneFailed, SOME_FAILED, UpFailed), // test_none_failed_tr_failure
        (R::NoneFailed, ALL_FAILED, UpFailed),
        (R::NoneFailed, SOME_UPSTREAM_FAILED, UpFailed), // ..._with_upstream_failure
        (R::NoneFailed, ALL_UPSTREAM_FAILED, UpFailed),
        (R::NoneFailed, SOME_SKIPPED, Run), // test_none_failed_tr_success
        (R::NoneFailed, ALL_SKIPPED, Run),
        (R::NoneFailed, MIXED, UpFailed),
        (R::NoneFailed, FAILED_AND_SKIPPED, UpFailed),
        (R::NoneFailed, NONE_DONE, Wait),
        (R::NoneFailed, SUCCESS_NOT_DONE, Wait),
        (R::NoneFailed, FAILED_NOT_DONE, UpFailed),
        (R::NoneFailed, SKIPPED_NOT_DONE, Wait),
        // none_failed_min_one_success
        (R::NoneFailedMinOneSuccess, ALL_SUCCESS, Run),
        (R::NoneFailedMinOneSuccess, SOME_FAILED, UpFailed), // ..._tr_failure
        (R::NoneFailedMinOneSuccess, ALL_FAILED, UpFailed),
        (R::NoneFailedMinOneSuccess, SOME_UPSTREAM_FAILED, UpFailed), // ..._upstream_failure
        (R::NoneFailedMinOneSuccess, ALL_UPSTREAM_FAILED, UpFailed),
        (R::NoneFailedMinOneSuccess, SOME_SKIPPED, Run), // ..._tr_success
        (R::NoneFailedMinOneSuccess, ALL_SKIPPED, Skip), // ..._tr_skipped
        (R::NoneFailedMinOneSuccess, MIXED, UpFailed),
        (R::NoneFailedMinOneSuccess, FAILED_AND_SKIPPED, UpFailed),
        (R::NoneFailedMinOneSuccess, NONE_DONE, Wait),
        (R::NoneFailedMinOneSuccess, SUCCESS_NOT_DONE, Wait),
        (R::NoneFailedMinOneSuccess, FAILED_NOT_DONE, UpFailed),
        (R::NoneFailedMinOneSuccess, SKIPPED_NOT_DONE, Wait),
        // none_skipped
        (R::NoneSkipped, ALL_SUCCESS, Run),
        (R::NoneSkipped, SOME_FAILED, Run), // test_none_skipped_tr_success
        (R::NoneSkipped, ALL_FAILED, Run),
        (R::NoneSkipped, SOME_UPSTREAM_FAILED, Run),
        (R::NoneSkipped, ALL_UPSTREAM_FAILED, Run),
        (R::NoneSkipped, SOME_SKIPPED, Skip), // test_none_skipped_tr_failure
        (R::NoneSkipped, ALL_SKIPPED, Skip),
        (R::NoneSkipped, MIXED, Skip),
        (R::NoneSkipped, FAILED_AND_SKIPPED, Skip),
        (R::NoneSkipped, NONE_DONE, Wait), // test_none_skipped_tr_failure_empty
        (R::NoneSkipped, SUCCESS_NOT_DONE, Wait),
        (R::NoneSkipped, FAILED_NOT_DONE, Wait),
        (R::NoneSkipped, SKIPPED_NOT_DONE, Skip),
        // all_skipped
        (R::AllSkipped, ALL_SUCCESS, Skip), // test_all_skipped_tr_failure
        (R::AllSkipped, SOME_FAILED, Skip),
        (R::AllSkipped, ALL_FAILED, Skip),
        (R::AllSkipped, SOME_UPSTREAM_FAILED, Skip),
        (R::AllSkipped, ALL_UPSTREAM_FAILED, Skip), // ..._tr_failure_upstream_failed
        (R::AllSkipped, SOME_SKIPPED, Skip),
        (R::AllSkipped, ALL_SKIPPED, Run), // test_all_skipped_tr_success
        (R::AllSkipped, MIXED, Skip),
        (R::AllSkipped, FAILED_AND_SKIPPED, Skip),
        (R::AllSkipped, NONE_DONE, Wait),
        (R::AllSkipped, SUCCESS_NOT_DONE, Skip),
        (R::AllSkipped, FAILED_NOT_DONE, Skip),
        (R::AllSkipped, SKIPPED_NOT_DONE, Wait),
        // always
        (R::Always, ALL_SUCCESS, Run), // test_always_tr
        (R::Always, SOME_FAILED, Run),
        (R::Always, ALL_FAILED, Run),
        (R::Always, SOME_UPSTREAM_FAILED, Run),
        (R::Always, ALL_UPSTREAM_FAILED, Run),
        (R::Always, SOME_SKIPPED, Run),
        (R::Always, ALL_SKIPPED, Run),
        (R::Always, MIXED, Run),
        (R::Always, FAILED_AND_SKIPPED, Run),
        (R::Always, NONE_DONE, Run),
        (R::Always, SUCCESS_NOT_DONE, Run),
        (R::Always, FAILED_NOT_DONE, Run),
        (R::Always, SKIPPED_NOT_DONE, Run),
    ];

    fn check(rule: TriggerRule, states: &[TaskState], expected: TriggerDecision) {
        let up = UpstreamStates::from_states(states.iter().copied());
        assert_eq!(
            evaluate(rule, &up),
            expected,
            "{rule} with upstreams {states:?}"
        );
    }

    #[test]
    fn decisions_match_airflow() {
        for &(rule, states, expected) in TABLE {
            check(rule, states, expected);
        }
    }

    #[test]
    fn table_covers_every_rule_and_scenario() {
        let scenarios = [
            ALL_SUCCESS,
            SOME_FAILED,
            ALL_FAILED,
            SOME_UPSTREAM_FAILED,
            ALL_UPSTREAM_FAILED,
            SOME_SKIPPED,
            ALL_SKIPPED,
            MIXED,
            FAILED_AND_SKIPPED,
            NONE_DONE,
            SUCCESS_NOT_DONE,
            FAILED_NOT_DONE,
            SKIPPED_NOT_DONE,
        ];
        for rule in TriggerRule::ALL {
            for scenario in scenarios {
                let rows = TABLE
                    .iter()
                    .filter(|(r, s, _)| *r == rule && *s == scenario)
                    .count();
                assert_eq!(rows, 1, "{rule} with {scenario:?}");
            }
        }
    }

    #[test]
    fn no_upstreams_runs_whatever_the_rule() {
        for rule in TriggerRule::ALL {
            check(rule, &[], Run);
        }
    }

    /// Airflow's tests that fake the counts directly (`get_task_instance(...)`), with the
    /// number of upstream tasks they declare.
    #[test]
    fn airflow_count_cases() {
        fn counts(
            success: u32,
            skipped: u32,
            failed: u32,
            upstream_failed: u32,
            done: u32,
            total: u32,
        ) -> UpstreamStates {
            UpstreamStates {
                success,
                skipped,
                failed,
                upstream_failed,
                removed: 0,
                done,
                total,
            }
        }
        let cases = [
            // test_none_failed_tr_failure: 1 success, 1 skipped, 1 failed of 3
            (R::NoneFailed, counts(1, 1, 1, 0, 3, 3), UpFailed),
            // test_none_skipped_tr_success: 2 success, 1 failed of 3
            (R::NoneSkipped, counts(2, 0, 1, 0, 3, 3), Run),
            // test_all_skipped_tr_success: 3 skipped of 3
            (R::AllSkipped, counts(0, 3, 0, 0, 3, 3), Run),
            // test_all_done_min_one_success_with_upstream_failed_cascade: 1 upstream_failed of 1
            (R::AllDoneMinOneSuccess, counts(0, 0, 0, 1, 1, 1), UpFailed),
            // test_all_done_tr_failure: 1 success of 2 (one unfinished)
            (R::AllDone, counts(1, 0, 0, 0, 1, 2), Wait),
        ];
        for (rule, up, expected) in cases {
            assert_eq!(evaluate(rule, &up), expected, "{rule} with {up:?}");
        }
    }

    #[test]
    fn removed_upstreams_are_not_waited_for() {
        // A for_each upstream re-expanded from 5 to 3 items: 3 success, 2 removed.
        let shrunk = [S::Success, S::Success, S::Success, S::Removed, S::Removed];
        check(R::AllSuccess, &shrunk, Run);
        check(R::NoneFailed, &shrunk, Run);
        check(R::NoneFailedMinOneSuccess, &shrunk, Run);
        check(R::AllDone, &shrunk, Run);
        check(R::AllDoneMinOneSuccess, &shrunk, Run);
        check(
            R::AllFailed,
            &[S::Failed, S::Failed, S::Failed, S::Removed, S::Removed],
            Run,
        );
        check(R::AllSkipped, &[S::Skipped, S::Removed], Run);
        check(R::OneSuccess, &[S::Skipped, S::Removed], Skip);
        check(R::AllSuccess, &[S::Success, S::Running, S::Removed], Wait);
        // Only removed upstreams left: as if there were none.
        check(R::AllSuccess, &[S::Removed], Run);
    }

    #[test]
    fn counts_follow_airflow_upstream_ti_states() {
        // test_UpstreamTIStates: op5's upstreams op2 (failed), op3, op4 (success).
        let up = UpstreamStates::from_states([S::Failed, S::Success, S::Success]);
        assert_eq!(
            up,
            UpstreamStates {
                success: 2,
                skipped: 0,
                failed: 1,
                upstream_failed: 0,
                removed: 0,
                done: 3,
                total: 3,
            }
        );
        let up = UpstreamStates::from_states(TaskState::ALL);
        assert_eq!((up.done, up.total), (5, 12));
        assert_eq!(
            (
                up.success,
                up.skipped,
                up.failed,
                up.upstream_failed,
                up.removed
            ),
            (1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn decisions_map_to_states_reachable_from_pending() {
        for decision in [Run, Skip, UpFailed] {
            let target = decision.target_state();
            let event = match decision {
                Run => crate::state::TaskEvent::Schedule,
                Skip => crate::state::TaskEvent::Skip,
                _ => crate::state::TaskEvent::UpstreamFailed,
            };
            assert_eq!(S::Pending.on(event).ok(), target, "{decision:?}");
        }
        assert_eq!(Wait.target_state(), None);
    }

    #[test]
    fn names_round_trip() {
        for rule in TriggerRule::ALL {
            assert_eq!(rule.as_str().parse::<TriggerRule>(), Ok(rule));
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(json, format!("\"{}\"", rule.as_str()));
        }
        assert!("all_sucess".parse::<TriggerRule>().is_err());
    }

    #[test]
    fn explanation_names_rule_and_counts() {
        let up = UpstreamStates::from_states([S::Success, S::Failed]);
        assert_eq!(
            explain(R::AllSuccess, &up),
            "trigger rule all_success can no longer be met because upstreams failed: the task \
             is upstream_failed; upstreams: 2 total, 2 done (1 success, 1 failed, \
             0 upstream_failed, 0 skipped, 0 removed)"
        );
    }
}
