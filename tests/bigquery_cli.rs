//! The real binary with a `bigquery` connection to `bqemulator`: `nightshift connections
//! test NAME` runs a dry run in its project, and `nightshift tasks render` shows the
//! jobs.insert request a `bigquery` task would submit.

mod common;

use std::time::Duration;

use nightshift_testkit::bqemulator::BqEmulator;

const DAG: &str = r#"
[tasks.kpi]
type = "bigquery"
connection = "bq"
location = "asia-northeast1"
sql = "SELECT COUNT(*) AS n FROM events WHERE day = @day"
parameters = { day = { type = "DATE", value = "{{ ds }}" } }
destination_table = "marts.kpi${{ ds_nodash }}"
write_disposition = "write_truncate"
labels = { team = "dmp" }
maximum_bytes_billed = 5000000000
"#;

#[test]
fn connections_test_and_tasks_render_speak_bigquery() {
    let bq = BqEmulator::start();
    let mut env = common::Env::new(common::Backend::Sqlite);
    env.set_env("NIGHTSHIFT_CONN_BQ", &bq.connection_uri());
    env.write_dag("bq.toml", DAG);
    env.ok(&["db", "migrate"]);

    let out = env.run(&["connections", "test", "bq"], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "ok: bq ({}): a dry run of SELECT 1 in project p1 was accepted in ",
            bq.connection_uri()
        )),
        "{stdout}"
    );

    let rendered = env.ok(&[
        "tasks",
        "render",
        "bq",
        "kpi",
        "--logical-date",
        "2026-01-02T00:00:00Z",
    ]);
    let submit = rendered
        .lines()
        .find(|l| l.starts_with("# would submit: "))
        .unwrap_or_else(|| panic!("no submission line: {rendered}"));
    assert_eq!(
        submit,
        concat!(
            r#"# would submit: BigQuery jobs.insert connection=bq location=asia-northeast1 configuration="#,
            r#"{"labels":{"team":"dmp"},"query":{"destinationTable":{"datasetId":"marts","tableId":"kpi$20260102"},"#,
            r#""maximumBytesBilled":"5000000000","parameterMode":"NAMED","queryParameters":[{"name":"day","parameterType":{"type":"DATE"},"parameterValue":{"value":"2026-01-02"}}],"#,
            r#""useLegacySql":false,"writeDisposition":"WRITE_TRUNCATE"}}"#
        ),
        "{rendered}"
    );
    assert!(
        rendered.contains("SELECT COUNT(*) AS n FROM events WHERE day = @day"),
        "{rendered}"
    );
}
