//! `TaskState::on` under random event sequences. The invariants, from `core::state`, the
//! design notes and `docs/operations.md`:
//!
//! 1. `on` decides every (state, event) pair without panicking; a refusal names both.
//! 2. A try starts only by `Claim` from `queued`: that is the only way into `running`,
//!    so a try number is taken exactly when the instance enters `running`.
//! 3. Every try ends exactly once: the instance leaves `running` by one event before
//!    anything can claim it again, so there are never two live tries.
//! 4. Try outcomes (`Succeed`, `Fail`, `Reap`, `HandBack`) happen only to a running try.
//! 5. What workers and schedulers do (`Schedule`, `Queue`, `Claim`, `Succeed`, `Fail`,
//!    `Skip`, `UpstreamFailed`, `Reap`, `HandBack`) never changes a finished instance: it
//!    is left only by a person (`Clear`, `MarkSuccess`, `MarkFailed`) or by its DAG's
//!    definition (`Remove`, `Restore`).
//! 6. `success` is reached only by a try's `Succeed` or by `MarkSuccess`; `up_for_retry`
//!    only by a failed or reaped try that may retry; `queued` only by `Queue`.
//! 7. `Clear` (legal everywhere but `pending`) and `Restore` (only from `removed`) lead to
//!    `pending`; marks lead to the marked state and never apply to a removed task.
//! 8. Nothing gets stuck: an unfinished instance can always be marked failed.

use nightshift_core::state::{TaskEvent as E, TaskState as S};
use proptest::prelude::*;
use proptest::sample::Index;

use super::cases;

const EVENTS: [E; 16] = [
    E::Schedule,
    E::Queue,
    E::Claim,
    E::Succeed,
    E::Fail { retry: true },
    E::Fail { retry: false },
    E::Skip,
    E::UpstreamFailed,
    E::Reap { retry: true },
    E::Reap { retry: false },
    E::HandBack,
    E::Clear,
    E::MarkSuccess,
    E::MarkFailed,
    E::Remove,
    E::Restore,
];

fn is_person_or_definition(event: E) -> bool {
    matches!(
        event,
        E::Clear | E::MarkSuccess | E::MarkFailed | E::Remove | E::Restore
    )
}

fn is_try_outcome(event: E) -> bool {
    matches!(
        event,
        E::Succeed | E::Fail { .. } | E::Reap { .. } | E::HandBack
    )
}

/// The model: the state, how many tries were started, and whether one is live.
#[derive(Debug, Default)]
struct Instance {
    state: Option<S>,
    tries: u32,
    live_try: Option<u32>,
}

/// Applies `event` and checks every invariant of one step.
fn step(model: &mut Instance, event: E) -> Result<(), TestCaseError> {
    let from = model.state.unwrap_or(S::Pending);
    let result = from.on(event);
    prop_assert_eq!(from.on(event), result, "on is deterministic");
    let to = match result {
        Err(illegal) => {
            prop_assert_eq!((illegal.from, illegal.event), (from, event));
            prop_assert!(!illegal.to_string().is_empty());
            // Invariant 7 and 8: these are always allowed.
            prop_assert!(
                !(event == E::Clear && from != S::Pending),
                "{} refused Clear",
                from
            );
            prop_assert!(!(event == E::Restore && from == S::Removed));
            prop_assert!(
                event != E::MarkFailed || from.is_finished(),
                "an unfinished {} cannot be marked failed",
                from
            );
            return Ok(());
        }
        Ok(to) => to,
    };
    // 2: the only way into running.
    if to == S::Running {
        prop_assert_eq!((from, event), (S::Queued, E::Claim));
    }
    // 3: a claim never finds a live try; a live try exists exactly while running.
    if event == E::Claim {
        prop_assert!(
            model.live_try.is_none(),
            "claimed while try {:?} is live",
            model.live_try
        );
        model.tries += 1;
        model.live_try = Some(model.tries);
    } else if from == S::Running && to != S::Running {
        prop_assert!(model.live_try.is_some());
        model.live_try = None;
    }
    prop_assert_eq!(model.live_try.is_some(), to == S::Running);
    // 4
    // An approval awaiting input still has its try (no worker holds it): its timeout
    // fails that try (`on_timeout = "fail"`), the one try outcome that finds no worker.
    if is_try_outcome(event) {
        let awaiting_fails = from == S::AwaitingInput && matches!(event, E::Fail { .. });
        prop_assert!(
            from == S::Running || awaiting_fails,
            "{:?} without a running try (from {})",
            event,
            from
        );
    }
    // 5
    if from.is_finished() {
        prop_assert!(
            is_person_or_definition(event),
            "{:?} moved a finished instance from {} to {}",
            event,
            from,
            to
        );
    }
    // 6
    if to == S::Success {
        let succeeding = matches!(event, E::Succeed | E::MarkSuccess);
        prop_assert!(succeeding, "{:?} made it succeed", event);
    }
    if to == S::UpForRetry {
        let retrying = matches!(event, E::Fail { retry: true } | E::Reap { retry: true });
        prop_assert!(retrying, "{:?} made it up_for_retry", event);
        prop_assert!(
            matches!(from, S::Running | S::AwaitingInput),
            "from {}",
            from
        );
    }
    if to == S::Queued {
        prop_assert_eq!((from, event), (S::Scheduled, E::Queue));
    }
    // 7
    match event {
        E::Clear | E::Restore => prop_assert_eq!(to, S::Pending),
        E::MarkSuccess => prop_assert_eq!(to, S::Success),
        E::MarkFailed => prop_assert_eq!(to, S::Failed),
        _ => {}
    }
    if matches!(event, E::MarkSuccess | E::MarkFailed) {
        prop_assert_ne!(from, S::Removed);
    }
    // 8
    if !to.is_finished() {
        prop_assert_eq!(to.on(E::MarkFailed), Ok(S::Failed));
    }
    prop_assert!(S::ALL.contains(&to));
    prop_assert_eq!(to.as_str().parse::<S>(), Ok(to));
    model.state = Some(to);
    Ok(())
}

/// Each step either takes any event (mostly refused) or one the current state allows,
/// so that long sequences walk deep into the machine.
fn pick(state: S, legal_only: bool, index: &Index) -> E {
    if legal_only {
        let legal: Vec<E> = EVENTS
            .into_iter()
            .filter(|e| state.on(*e).is_ok())
            .collect();
        if !legal.is_empty() {
            return legal[index.index(legal.len())];
        }
    }
    EVENTS[index.index(EVENTS.len())]
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        steps in prop::collection::vec((prop::bool::weighted(0.8), any::<Index>()), 0..120),
        start in prop::sample::select(S::ALL.to_vec()),
    ) {
        // Start anywhere: a store row can be in any state after an upgrade or a crash.
        let mut model = Instance {
            state: Some(start),
            tries: 1,
            live_try: (start == S::Running).then_some(1),
        };
        for (legal_only, index) in &steps {
            let event = pick(model.state.unwrap_or(S::Pending), *legal_only, index);
            step(&mut model, event)?;
        }
    }
}

#[test]
fn every_unfinished_state_reaches_a_finished_one() {
    for state in S::ALL {
        let ends = EVENTS
            .iter()
            .filter_map(|e| state.on(*e).ok())
            .any(|to| to.is_finished());
        assert!(state.is_finished() || ends, "{state} cannot finish");
    }
}
