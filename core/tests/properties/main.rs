//! Property tests of the pure parsers and the state machine: DAG files (arbitrary text
//! and mutations of real files), cron schedules, durations, and `TaskState::on` under
//! random event sequences. The case counts keep this binary to a few seconds in a debug
//! build; `PROPTEST_CASES=10000 cargo test -p nightshift-core --test properties` runs
//! longer (the fuzz targets in `fuzz/` cover the parsers for hours).

mod dag_files;
mod durations;
mod schedules;
mod task_states;

use proptest::test_runner::Config;

/// `n` cases unless `PROPTEST_CASES` asks for another number; failures are reported, not
/// written to `proptest-regressions/` (a failing input becomes a named `#[test]`).
pub fn cases(n: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
