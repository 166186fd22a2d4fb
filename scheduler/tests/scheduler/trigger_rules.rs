//! Every trigger rule through the real loop: upstreams that succeed (S), fail (F) and are
//! skipped (K), in every combination; the downstream's final state must be Airflow's.
//! (core::trigger holds the unit table; this is the integration version.)

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{Store, TaskInstance};

use crate::common::{add_dag, both_backends, drive, scheduler, t, trigger, Outcome};

both_backends!(every_rule_gives_airflows_outcome);

const COMBOS: [&str; 7] = ["S", "F", "K", "SF", "SK", "FK", "SFK"];

/// Rule, then the downstream's final state for each of [`COMBOS`]:
/// `s` ran (and succeeded), `u` upstream_failed, `k` skipped.
const TABLE: &[(&str, [char; 7])] = &[
    ("all_success", ['s', 'u', 'k', 'u', 'k', 'u', 'u']),
    ("all_failed", ['k', 's', 'k', 'k', 'k', 'k', 'k']),
    ("all_done", ['s', 's', 's', 's', 's', 's', 's']),
    (
        "all_done_min_one_success",
        ['s', 'u', 'k', 's', 'k', 'k', 'k'],
    ),
    ("one_success", ['s', 'u', 'k', 's', 's', 'u', 's']),
    ("one_failed", ['k', 's', 'k', 's', 'k', 's', 's']),
    ("one_done", ['s', 's', 'k', 's', 's', 's', 's']),
    ("none_failed", ['s', 'u', 's', 'u', 's', 'u', 'u']),
    (
        "none_failed_min_one_success",
        ['s', 'u', 'k', 'u', 's', 'u', 'u'],
    ),
    ("none_skipped", ['s', 's', 'k', 's', 'k', 'k', 'k']),
    ("all_skipped", ['k', 'k', 's', 'k', 'k', 'k', 'k']),
    ("always", ['s', 's', 's', 's', 's', 's', 's']),
];

fn upstream(letter: char) -> &'static str {
    match letter {
        'S' => "ok",
        'F' => "bad",
        _ => "skip",
    }
}

async fn every_rule_gives_airflows_outcome(store: Store) {
    let mut toml = String::from(
        "id = \"rules\"\nmax_active_tasks = 500\n\
         [tasks.ok]\ntype = \"noop\"\n[tasks.bad]\ntype = \"noop\"\n[tasks.skip]\ntype = \"noop\"\n",
    );
    for (rule, _) in TABLE {
        for combo in COMBOS {
            let ups: Vec<String> = combo
                .chars()
                .map(|c| format!("\"{}\"", upstream(c)))
                .collect();
            toml.push_str(&format!(
                "[tasks.{rule}_{combo}]\ntype = \"noop\"\ntrigger_rule = \"{rule}\"\ndepends_on = [{}]\n",
                ups.join(", ")
            ));
        }
    }
    let dag = add_dag(&store, "rules", &toml, false).await;
    let run = trigger(&store, &dag, t("2026-01-01T00:00:00Z")).await;
    let s = scheduler(&store, "s1");
    let decide = |ti: &TaskInstance| match ti.task_id.as_str() {
        "bad" => Outcome::Fail,
        "skip" => Outcome::Skip,
        _ => Outcome::Succeed(None),
    };
    let (state, states) = drive(&store, &s, &run, t("2026-01-01T00:00:01Z"), &decide).await;
    let mut mismatches = Vec::new();
    for (rule, expected) in TABLE {
        for (combo, want) in COMBOS.iter().zip(expected) {
            let want = match want {
                's' => TaskState::Success,
                'u' => TaskState::UpstreamFailed,
                _ => TaskState::Skipped,
            };
            let got = states[&format!("{rule}_{combo}")];
            if got != want {
                mismatches.push(format!("{rule} with {combo}: got {got}, want {want}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Leaves with upstream_failed fail the run (Airflow's rule).
    assert_eq!(state, RunState::Failed);
}
