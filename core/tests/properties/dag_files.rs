//! `parse_dag` on arbitrary text and on mutations of real DAG files: it never panics,
//! every error names the file, and what it accepts survives the stored (JSON) form.

use std::collections::BTreeSet;

use nightshift_core::dag::{parse_dag, parse_dag_with, Dag, DagErrors, ParseOptions};
use proptest::prelude::*;
use proptest::sample::Index;

use super::cases;

const FILE: &str = "dags/fuzzed.toml";

/// Valid files and one broken file of each error kind: the starting points of mutations.
const SEEDS: &[&str] = &[
    include_str!("../../../dags/hello_commands.toml"),
    include_str!("../../../dags/nightly_dmp.toml"),
    include_str!("../../../tests/fixtures/good_dags/every_field.toml"),
    include_str!("../../../tests/fixtures/broken_dags/good.toml"),
    include_str!("../../../tests/fixtures/broken_dags/bad_cron.toml"),
    include_str!("../../../tests/fixtures/broken_dags/bad_duration.toml"),
    include_str!("../../../tests/fixtures/broken_dags/bad_for_each.toml"),
    include_str!("../../../tests/fixtures/broken_dags/bad_template.toml"),
    include_str!("../../../tests/fixtures/broken_dags/bad_timezone.toml"),
    include_str!("../../../tests/fixtures/broken_dags/cycle.toml"),
    include_str!("../../../tests/fixtures/broken_dags/duplicate_task.toml"),
    include_str!("../../../tests/fixtures/broken_dags/missing_field.toml"),
    include_str!("../../../tests/fixtures/broken_dags/syntax.toml"),
    include_str!("../../../tests/fixtures/broken_dags/unknown_key.toml"),
    include_str!("../../../tests/fixtures/broken_dags/unknown_task_kind.toml"),
    include_str!("../../../tests/fixtures/broken_dags/unknown_upstream.toml"),
];

/// Values that sit on an edge of some check: types, ranges, calendars, templates.
const VALUES: &[&str] = &[
    "\"\"",
    "\" \"",
    "[]",
    "{}",
    "-1",
    "0",
    "4294967296",
    "9223372036854775807",
    "1e400",
    "-0.0",
    "nan",
    "inf",
    "true",
    "\"0 0 31 2 *\"",
    "\"0 0 30 2 *\"",
    "\"0 0 * 2 1#5\"",
    "\"0 0 L 2 *\"",
    "\"0 0 29 2 1\"",
    "\"@reboot\"",
    "\"61 * * * *\"",
    "\"* * * * * *\"",
    "\"99999999999999999999y\"",
    "\"584942417355y\"",
    "\"18446744073709551615s\"",
    "\"0s\"",
    "\"1ns\"",
    "\"Mars/Olympus\"",
    "\"Pacific/Apia\"",
    "\"Australia/Lord_Howe\"",
    "\"2026-02-30\"",
    "\"+275760-09-13\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"0000-01-01\"",
    "1979-05-27T07:32:00-08:00",
    "1979-05-27",
    "07:32:00",
    "\"{{ \"",
    "\"{% for x in y %}\"",
    "\"{{ item }}\"",
    "\"{{ outputs.nope }}\"",
    "[[[[[1]]]]]",
    "{ from = \"start\" }",
    "{ from = \"\" }",
    "{ from = \"nope\" }",
    "[\"a\", \"a\"]",
    "[\"start\"]",
    "\"extract\"",
    "\"noop\"",
    "\"command\"",
    "\"sensor\"",
    "\"\\u0000\"",
    "'''\n'''",
    "\"a.b\"",
    "\"http://[::1\"",
    "\"GETT\"",
    "[200, \"2xx\", 999, \"abc\"]",
    "\"a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value a very long value\"",
];

/// Whole lines to insert: tables, keys in the wrong place, duplicates, odd headers.
const LINES: &[&str] = &[
    "[tasks.x]",
    "[tasks]",
    "tasks = 1",
    "[[tasks.a]]",
    "[tasks.\"a b\"]",
    "[tasks.extract]",
    "[tasks.start]",
    "tasks.y.type = \"noop\"",
    "type = \"noop\"",
    "type = \"ecs\"",
    "depends_on = [\"x\"]",
    "depends_on = [\"start\", \"start\"]",
    "for_each = { from = \"start\" }",
    "[defaults]",
    "[on_failure]",
    "[params]",
    "params.a.b.c = 1",
    "id = \"a.b/c\"",
    "schedule = \"* * * * *\"",
    "url = \"::\"",
    "mode = \"sql\"",
    "retries = -1",
    "timeout = \"0s\"",
    "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "a = {b={c={d={e={f={g={h={i={j={k={l={m={n={o={p=1}}}}}}}}}}}}}}}",
    "\u{feff}",
    "\r",
    "# comment",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    SwapValues(Index, Index),
    ReplaceValue(Index, &'static str),
    InsertLine(Index, &'static str),
    InsertBytes(Index, Vec<u8>),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapValues(a, b)),
        (any::<Index>(), prop::sample::select(VALUES))
            .prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        (any::<Index>(), prop::sample::select(LINES)).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `m` to `source`; byte-level changes go through lossy UTF-8 (as a file read
/// with invalid bytes would be reported before parsing anyway).
fn apply(source: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = source.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(n));
        }
        Mutation::DuplicateLine(i) => {
            let i = i.index(n);
            lines.insert(i, lines[i].clone());
        }
        Mutation::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
        Mutation::SwapValues(a, b) => {
            let (a, b) = (a.index(n), b.index(n));
            if let (Some((ka, va)), Some((kb, vb))) =
                (lines[a].split_once('='), lines[b].split_once('='))
            {
                let (new_a, new_b) = (format!("{ka}={vb}"), format!("{kb}={va}"));
                lines[a] = new_a;
                lines[b] = new_b;
            }
        }
        Mutation::ReplaceValue(i, value) => {
            let i = i.index(n);
            if let Some((key, _)) = lines[i].split_once('=') {
                lines[i] = format!("{key}= {value}");
            }
        }
        Mutation::InsertLine(i, line) => lines.insert(i.index(n + 1), (*line).to_owned()),
        Mutation::InsertBytes(i, bytes) => {
            let mut all = lines.join("\n").into_bytes();
            let at = i.index(all.len() + 1);
            all.splice(at..at, bytes.iter().copied());
            return String::from_utf8_lossy(&all).into_owned();
        }
        Mutation::Truncate(i) => {
            let all = lines.join("\n");
            let mut at = i.index(all.len() + 1);
            while !all.is_char_boundary(at) {
                at -= 1;
            }
            return all[..at].to_owned();
        }
    }
    lines.join("\n")
}

/// What every outcome of parsing must satisfy.
fn check_outcome(source: &str, result: &Result<Dag, DagErrors>) -> Result<(), TestCaseError> {
    match result {
        Ok(dag) => {
            prop_assert_eq!(&dag.file, FILE);
            prop_assert!(!dag.tasks.is_empty(), "a DAG without tasks was accepted");
            for (id, task) in &dag.tasks {
                for upstream in &task.depends_on {
                    prop_assert!(
                        dag.tasks.contains_key(upstream),
                        "{id} depends on unknown {upstream}"
                    );
                }
            }
            // The stored form (JSON) reads back as the same DAG: web and workers work
            // from it.
            let json = serde_json::to_value(dag)
                .map_err(|e| TestCaseError::fail(format!("serialize: {e}")))?;
            let back: Dag = serde_json::from_value(json.clone()).map_err(|e| {
                TestCaseError::fail(format!("stored form does not read back: {e}\n{json:#}"))
            })?;
            prop_assert_eq!(&back, dag);
        }
        Err(errors) => {
            prop_assert_eq!(&errors.file, FILE);
            prop_assert!(!errors.is_empty(), "Err without errors for {:?}", source);
            let lines = source.split('\n').count();
            for e in errors {
                let at = e.location();
                prop_assert_eq!(&at.file, FILE);
                if let Some(line) = at.line {
                    prop_assert!(
                        line >= 1 && line <= lines,
                        "line {} of {}: {}",
                        line,
                        lines,
                        e
                    );
                }
                let text = e.to_string();
                prop_assert!(
                    text.starts_with(FILE),
                    "error does not name the file: {}",
                    text
                );
                prop_assert!(
                    text.len() > FILE.len() + 2,
                    "error says nothing: {:?}",
                    text
                );
                prop_assert!(!e.kind().is_empty());
            }
            let display = errors.to_string();
            prop_assert_eq!(
                display.lines().count(),
                errors.len(),
                "one error a line: {}",
                display
            );
        }
    }
    Ok(())
}

fn options() -> ParseOptions {
    ParseOptions {
        connections: Some(BTreeSet::from(["warehouse".to_owned(), "kpi".to_owned()])),
        ..ParseOptions::default()
    }
}

/// Parses with and without connection checks; both must satisfy [`check_outcome`], and
/// parsing is deterministic.
fn check_source(source: &str) -> Result<(), TestCaseError> {
    let first = parse_dag(FILE, source);
    check_outcome(source, &first)?;
    prop_assert_eq!(
        &parse_dag(FILE, source),
        &first,
        "parsing is not deterministic"
    );
    let with = parse_dag_with(FILE, source, &options());
    check_outcome(source, &with)?;
    // Knowing the connections only adds checks.
    if first.is_err() {
        prop_assert!(with.is_err(), "connection checks made a broken file valid");
    }
    Ok(())
}

/// Text that looks enough like TOML to reach past the tokenizer.
fn tomlish() -> impl Strategy<Value = String> {
    "([a-z_]{1,8}( ?= ?)(\"[ -~]{0,12}\"|[0-9.e+-]{1,6}|true|\\[|\\]|\\{|\\}|,)|\\[\\[?(tasks\\.)?[a-z]{1,4}\\]\\]?|\\n|#|\\.|'|\"\"\"){0,40}"
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        check_source(&source)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_source(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn tomlish_text_never_panics(source in tomlish()) {
        check_source(&source)?;
    }

}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn mutated_dag_files_never_panic(
        seed in prop::sample::select(SEEDS),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut source = seed.to_owned();
        for m in &mutations {
            source = apply(&source, m);
        }
        check_source(&source)?;
    }
}

#[test]
fn the_seeds_parse_as_expected() {
    // The first four are valid, the rest each have their error: the mutations start from
    // both sides of the line.
    for (i, seed) in SEEDS.iter().enumerate() {
        let result = parse_dag(FILE, seed);
        assert_eq!(result.is_ok(), i < 4, "seed {i}: {result:?}");
    }
}
