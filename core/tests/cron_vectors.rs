//! Checks `Schedule::next_after` against next-fire vectors generated with croniter (the
//! engine Apache Airflow uses) by `scripts/gen_croniter_vectors.py`. Vectors near
//! daylight-saving transitions are left out there: that is our own policy, tested in
//! `nightshift_core::schedule`'s unit tests.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nightshift_core::schedule::Schedule;

const VECTORS: &str = include_str!("data/croniter_vectors.tsv");

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad timestamp {text:?} in the vectors file: {e}"))
        .to_utc()
}

#[test]
fn every_croniter_vector_agrees() {
    let mut checked = 0;
    let mut disagreements = Vec::new();
    for line in VECTORS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let [expression, zone, start, fires] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("malformed vector line {line:?}");
        };
        let schedule = Schedule::parse(expression).unwrap_or_else(|e| panic!("{e}"));
        let tz: Tz = zone
            .parse()
            .unwrap_or_else(|e| panic!("zone {zone:?}: {e}"));
        let expected: Vec<DateTime<Utc>> = fires.split(' ').map(utc).collect();
        let mut actual = Vec::with_capacity(expected.len());
        let mut after = utc(start);
        for _ in 0..expected.len() {
            match schedule.next_after(after, tz) {
                Some(next) => {
                    actual.push(next);
                    after = next;
                }
                None => break,
            }
        }
        if actual != expected {
            disagreements.push(format!(
                "{expression:?} in {zone} from {start}:\n  croniter {expected:?}\n  ours     {actual:?}"
            ));
        }
        checked += 1;
    }
    assert!(checked >= 4000, "only {checked} vectors in the file");
    assert!(
        disagreements.is_empty(),
        "{} of {checked} vectors disagree:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
