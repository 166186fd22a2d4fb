//! `parse_dag` on arbitrary bytes (invalid UTF-8 replaced, as the loader reports it
//! before parsing): no panic, every error names the file, and an accepted DAG reads
//! back from its stored (JSON) form unchanged.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use nightshift_core::dag::{parse_dag, parse_dag_with, Dag, DagErrors, ParseOptions};

const FILE: &str = "dags/fuzz.toml";

fn check(result: &Result<Dag, DagErrors>) {
    match result {
        Ok(dag) => {
            assert!(!dag.tasks.is_empty());
            let json = serde_json::to_value(dag).expect("serialize");
            let back: Dag = serde_json::from_value(json).expect("stored form reads back");
            assert_eq!(&back, dag);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert_eq!(e.location().file, FILE);
                assert!(e.to_string().starts_with(FILE), "{e}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    check(&parse_dag(FILE, &source));
    let options = ParseOptions {
        connections: Some(BTreeSet::from(["warehouse".to_owned()])),
        ..ParseOptions::default()
    };
    check(&parse_dag_with(FILE, &source, &options));
});
