//! Every trigger rule through the real loop: upstreams that succeed (S), fail (F) and are
//! skipped (K), in every combination; the downstream's final state must be Airflow's.
//! (core::trigger holds the unit table; this is the integration version.)

use nightshift_core::state::{RunState, TaskState};
use nightshift_store::{Store, TaskInstance};

use crate::common::{add_dag, both_backends, drive, scheduler, t, trigger, Outcome};

both_backends!(every_rule_gives_airflows_outcome);

const COMBOS: [&str; 7] = ["S", "F", "K", "SF", "SK", "FK", "SFK"];

/// Rule, then the downstream's final state for each of [`COMBOS`], a letter each:
/// `s` ran (and succeeded), `u` upstream_failed, `k` skipped.
const TABLE: &[(&str, &str)] = &[
    ("all_success", "sukukuu"),
    ("all_failed", "kskkkkk"),
    ("all_done", "sssssss"),
    ("all_done_min_one_success", "sukskkk"),
    ("one_success", "sukssus"),
    ("one_failed", "kskskss"),
    ("one_done", "sskssss"),
    ("none_failed", "sususuu"),
    ("none_failed_min_one_success", "sukusuu"),
    ("none_skipped", "sskskkk"),
    ("all_skipped", "kkskkkk"),
    ("always", "sssssss"),
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
        assert_eq!(
            expected.len(),
            COMBOS.len(),
            "{rule}: a state for each combination"
        );
        for (combo, want) in COMBOS.iter().zip(expected.chars()) {
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
