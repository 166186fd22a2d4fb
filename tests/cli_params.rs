//! `dags trigger --conf` checks the conf against the DAG's typed `params` with the same
//! code as the API: a wrong type or an unknown key is refused naming the param, and
//! nothing is triggered.

mod common;

use std::time::Duration;

use common::{Backend, Env};

#[test]
fn trigger_refuses_a_conf_that_does_not_match_the_params() {
    let env = Env::new(Backend::Sqlite);
    env.write_dag(
        "typed.toml",
        "[params]\nlimit = { type = \"integer\", default = 10 }\n\
         [tasks.a]\ntype = \"noop\"\n",
    );
    for (conf, needle) in [
        (
            r#"{"limit": "five"}"#,
            r#"param "limit": expected an integer, got "five""#,
        ),
        (r#"{"limt": 5}"#, r#"param "limt": unknown param"#),
    ] {
        let out = env.run(
            &["dags", "trigger", "typed", "--conf", conf],
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{conf} refused");
        assert!(stderr.contains(needle), "{conf}: {stderr}");
    }
    let runs = env.json(&["runs", "list", "typed"]);
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(0),
        "nothing triggered: {runs}"
    );
    let runs = env.json(&["dags", "trigger", "typed", "--conf", r#"{"limit": 5}"#]);
    assert_eq!(runs[0]["conf"]["limit"], 5, "{runs}");
}
