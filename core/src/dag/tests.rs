//! Tests of DAG parsing: the example DAGs, the broken fixtures (one per error class) and
//! tables of accepted and rejected snippets.

use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::*;
use crate::trigger::TriggerRule;

const NIGHTLY_DMP: &str = include_str!("../../../dags/nightly_dmp.toml");
const HELLO_COMMANDS: &str = include_str!("../../../dags/hello_commands.toml");
const EVERY_FIELD: &str = include_str!("../../../tests/fixtures/good_dags/every_field.toml");

fn parse_ok(file: &str, source: &str) -> Dag {
    match parse_dag(file, source) {
        Ok(dag) => dag,
        Err(errors) => panic!("{file} should parse, got:\n{errors}"),
    }
}

#[test]
fn example_dags_parse() {
    for (file, source) in [
        ("dags/nightly_dmp.toml", NIGHTLY_DMP),
        ("dags/hello_commands.toml", HELLO_COMMANDS),
        ("tests/fixtures/good_dags/every_field.toml", EVERY_FIELD),
        (
            "tests/fixtures/broken_dags/good.toml",
            include_str!("../../../tests/fixtures/broken_dags/good.toml"),
        ),
    ] {
        parse_ok(file, source);
    }
}

#[test]
fn nightly_dmp_resolves_the_story() {
    let dag = parse_ok("dags/nightly_dmp.toml", NIGHTLY_DMP);
    assert_eq!(dag.id, "nightly_dmp");
    assert_eq!(
        dag.schedule.as_ref().map(|s| s.expression()),
        Some("0 3 * * *")
    );
    assert_eq!(dag.timezone, chrono_tz::Asia::Tokyo);
    // Midnight in Tokyo is 15:00 UTC the day before.
    assert_eq!(
        dag.start_date,
        Some(Utc.with_ymd_and_hms(2025, 12, 31, 15, 0, 0).unwrap())
    );
    assert_eq!((dag.max_active_runs, dag.max_active_tasks), (1, 8));
    assert_eq!(dag.dagrun_timeout, Some(Duration::from_secs(6 * 3600)));
    assert!(matches!(dag.on_failure, Some(Callback::Slack { .. })));

    let extract = &dag.tasks["extract"];
    assert_eq!(
        extract.for_each,
        Some(ForEach::Items(vec![
            "Student".into(),
            "Lesson".into(),
            "Teacher".into()
        ]))
    );
    assert_eq!(extract.retries, 3, "from [defaults]");
    assert_eq!(
        extract.timeout,
        Some(Duration::from_secs(7200)),
        "from [defaults]"
    );
    assert_eq!(extract.pool, "fargate");
    let TaskKind::Ecs(ecs) = &extract.kind else {
        panic!("extract is an ecs task: {:?}", extract.kind)
    };
    assert_eq!(ecs.launch_type, Some(LaunchType::Fargate));
    assert_eq!(ecs.environment["CLASSNAME"], "{{ item }}");

    let marts = &dag.tasks["build_marts"];
    let TaskKind::Sql(sql) = &marts.kind else {
        panic!("build_marts is a sql task")
    };
    assert_eq!(
        sql.source,
        SqlSource::SqlFile {
            path: "sql/build_marts.sql".into(),
            text: None
        }
    );
    assert_eq!(
        marts.timeout,
        Some(Duration::from_secs(3600)),
        "task overrides defaults"
    );

    let post = &dag.tasks["post_kpi"];
    assert_eq!(
        (post.retries, post.retry_delay),
        (5, Duration::from_secs(60))
    );
    assert_eq!(post.queue, DEFAULT_QUEUE);
    assert_eq!(
        dag.topological_order(),
        ["extract", "build_marts", "check_marts", "post_kpi"]
    );
}

#[test]
fn hello_commands_fans_out_and_joins() {
    let dag = parse_ok("dags/hello_commands.toml", HELLO_COMMANDS);
    assert_eq!(dag.id, "hello_commands");
    let count = &dag.tasks["count_lines"];
    assert_eq!(count.for_each, Some(ForEach::From("list_files".into())));
    assert_eq!(
        count.depends_on,
        ["list_files"],
        "for_each.from implies the dependency"
    );
    assert_eq!(dag.tasks["join"].trigger_rule, TriggerRule::NoneFailed);
    assert_eq!(dag.roots(), ["start"]);
    assert_eq!(dag.leaves(), ["report"]);
    assert_eq!(
        dag.upstreams("join"),
        ["greet", "count_lines", "maybe_skip"]
    );
    assert_eq!(
        dag.downstreams("start"),
        ["greet", "list_files", "maybe_skip"]
    );
    assert!(dag.upstreams("no_such_task").is_empty());
    let TaskKind::Command(cmd) = &dag.tasks["greet"].kind else {
        panic!("greet is a command task")
    };
    assert!(matches!(cmd.command, CommandLine::Argv(ref argv) if argv[0] == "sh"));
    assert_eq!(cmd.skip_on_exit_code, [99], "Airflow's default");
    let order = dag.topological_order();
    assert_eq!(order.len(), dag.tasks.len());
    for task in dag.tasks.values() {
        let pos = |id: &str| order.iter().position(|t| *t == id);
        for up in &task.depends_on {
            assert!(pos(up) < pos(&task.id), "{up} before {}", task.id);
        }
    }
}

#[test]
fn every_field_resolves() {
    let dag = parse_ok("every_field.toml", EVERY_FIELD);
    assert_eq!(dag.tags, ["test", "reference"]);
    assert_eq!(dag.timezone, chrono_tz::Europe::London);
    // A TOML date (unquoted) works too; 2026-03-01 is GMT in London.
    assert_eq!(
        dag.start_date,
        Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        dag.end_date,
        Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
    );
    assert!(dag.catchup);
    assert_eq!(dag.params["limit"], 100);
    assert_eq!(dag.params["flags"]["full"], false);
    assert_eq!(dag.defaults.pool, "etl");

    let shell = &dag.tasks["shell"];
    assert_eq!(shell.pool, "default_pool", "task overrides defaults");
    assert_eq!(
        (shell.pool_slots, shell.priority, shell.retries),
        (2, 10, 0)
    );
    assert!(!shell.retry_exponential_backoff);
    assert_eq!(shell.max_retry_delay, Some(Duration::from_secs(120)));
    assert!(matches!(shell.on_success, Some(Callback::Http { .. })));
    assert!(
        matches!(shell.on_failure, Some(Callback::Slack { .. })),
        "from defaults"
    );

    let argv = &dag.tasks["argv"];
    assert_eq!(argv.pool, "etl");
    assert_eq!(argv.queue, "batch");
    assert_eq!(argv.priority, 5);
    assert!(argv.retry_exponential_backoff);
    assert_eq!(argv.max_retry_delay, Some(Duration::from_secs(600)));
    match &argv.on_retry {
        Some(Callback::Http { method, json, .. }) => {
            assert_eq!(method, "PUT");
            assert_eq!(
                json.as_ref().map(|j| j["task"].clone()),
                Some("{{ task_id }}".into())
            );
        }
        other => panic!("on_retry from defaults: {other:?}"),
    }

    let TaskKind::Http(call) = &dag.tasks["call"].kind else {
        panic!("call is http")
    };
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.expect_status,
        [
            StatusRange {
                start: 200,
                end: 200
            },
            StatusRange {
                start: 201,
                end: 201
            },
            StatusRange {
                start: 204,
                end: 204
            }
        ]
    );
    assert_eq!(
        call.json_check.as_ref().map(|c| c.path.as_str()),
        Some("result.status")
    );
    let TaskKind::Http(fetch) = &dag.tasks["fetch_ids"].kind else {
        panic!("fetch_ids is http")
    };
    assert_eq!(
        (fetch.method.as_str(), fetch.expect_status[0].end),
        ("GET", 299)
    );

    let TaskKind::Ecs(spot) = &dag.tasks["spot"].kind else {
        panic!("spot is ecs")
    };
    assert_eq!(spot.launch_type, None);
    assert_eq!(spot.capacity_provider_strategy[1].base, 1);

    let rows = &dag.tasks["wait_for_rows"];
    let TaskKind::Sensor(sensor) = &rows.kind else {
        panic!("wait_for_rows is a sensor")
    };
    assert_eq!(sensor.poke_interval, Duration::from_secs(300));
    assert!(sensor.soft_fail);
    assert!(matches!(sensor.check, SensorCheck::Sql(_)));
    assert_eq!(rows.timeout, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(rows.kind.connection(), Some("warehouse"));
    let api = &dag.tasks["wait_for_api"];
    assert_eq!(
        api.timeout,
        Some(Duration::from_secs(3600)),
        "defaults.timeout"
    );
}

#[test]
fn dag_round_trips_through_json() {
    for (file, source) in [
        ("dags/nightly_dmp.toml", NIGHTLY_DMP),
        ("dags/hello_commands.toml", HELLO_COMMANDS),
        ("every_field.toml", EVERY_FIELD),
    ] {
        let dag = parse_ok(file, source);
        let json = serde_json::to_string(&dag).expect("serialize");
        let back: Dag = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, dag, "{file}");
    }
}

#[test]
fn the_version_hash_is_of_the_parsed_definition() {
    const BASE: &str = r#"
description = "versions"
schedule = "@daily"
params = { region = "eu", limit = 10 }

[defaults]
retries = 1
retry_delay = "1m"

[tasks.extract]
type = "command"
command = "echo extract"
env = { A = "1", B = "2" }

[tasks.load]
type = "http"
depends_on = ["extract"]
url = "http://example.invalid/load"
json = { table = "t", rows = [1, 2], meta = { x = 1, y = 2 } }
"#;
    // The same meaning: comments, blank lines and spaces, keys and tables reordered
    // (inline tables too), another path.
    const SAME: &str = r#"
# nightly load; edited comment
[tasks.load]   # the second task first
json = { meta = { y = 2, x = 1 }, rows = [1, 2], table = "t" }
url    = "http://example.invalid/load"
depends_on = ["extract"]
type = "http"

[tasks.extract]
env = { B = "2", A = "1" }
command = "echo extract"
type = "command"

[defaults]
retry_delay = "1m"
retries = 1
"#;
    let base = parse_ok("dags/v.toml", BASE);
    assert_eq!(base.source_hash.len(), 64);
    assert_eq!(base.source_hash, base.version_hash());
    // Top-level keys must come before the first table; prepend them reordered.
    let same = format!(
        "params = {{ limit = 10, region = \"eu\" }}\nschedule = \"@daily\"\n\
         description = \"versions\"\n{SAME}"
    );
    assert_eq!(
        parse_ok("elsewhere/v.toml", &same).source_hash,
        base.source_hash,
        "a reformatted file is the same version"
    );
    for (what, changed) in [
        ("a command", BASE.replace("echo extract", "echo extract2")),
        ("an env value", BASE.replace("B = \"2\"", "B = \"3\"")),
        ("a JSON body", BASE.replace("x = 1", "x = 5")),
        (
            "array order",
            BASE.replace("rows = [1, 2]", "rows = [2, 1]"),
        ),
        ("a default", BASE.replace("retries = 1", "retries = 2")),
    ] {
        assert_ne!(
            parse_ok("dags/v.toml", &changed).source_hash,
            base.source_hash,
            "changing {what} is a new version"
        );
    }
}

#[test]
fn an_embedded_sql_file_is_part_of_the_version() {
    let source = "[tasks.q]\ntype = \"sql\"\nconnection = \"wh\"\nsql_file = \"q.sql\"\n";
    let embed = |text: &str| {
        let mut dag = parse_ok("dags/q.toml", source);
        dag.embed_sql_files(source, |_| Ok::<_, String>(text.to_owned()))
            .expect("embed");
        dag.source_hash
    };
    assert_eq!(embed("SELECT 1"), embed("SELECT 1"));
    assert_ne!(embed("SELECT 1"), embed("SELECT 2"));
}

// -------------------------------------------------------------------------------------
// Broken fixtures: each yields exactly one error of the expected kind, line and field.

struct Expect {
    file: &'static str,
    source: &'static str,
    kind: &'static str,
    line: usize,
    field: &'static str,
    message_has: &'static str,
}

macro_rules! fixture {
    ($name:literal, $kind:literal, $line:literal, $field:literal, $has:literal) => {
        Expect {
            file: concat!("tests/fixtures/broken_dags/", $name),
            source: include_str!(concat!("../../../tests/fixtures/broken_dags/", $name)),
            kind: $kind,
            line: $line,
            field: $field,
            message_has: $has,
        }
    };
}

#[test]
fn each_broken_fixture_yields_its_one_error() {
    let table = [
        fixture!("syntax.toml", "syntax", 6, "", "string"),
        fixture!(
            "unknown_key.toml",
            "unknown_field",
            7,
            "tasks.hello.retires",
            "did you mean \"retries\""
        ),
        fixture!(
            "cycle.toml",
            "cycle",
            4,
            "tasks.a.depends_on[0]",
            "a -> b -> c -> a"
        ),
        fixture!(
            "unknown_upstream.toml",
            "unknown_upstream",
            8,
            "tasks.load.depends_on[0]",
            "did you mean \"extract\""
        ),
        fixture!(
            "duplicate_task.toml",
            "duplicate_task",
            10,
            "tasks.extract",
            "task \"extract\" is defined twice"
        ),
        fixture!("bad_cron.toml", "bad_cron", 2, "schedule", "61"),
        fixture!(
            "bad_duration.toml",
            "bad_duration",
            4,
            "defaults.retry_delay",
            "\"5x\""
        ),
        fixture!(
            "bad_timezone.toml",
            "bad_timezone",
            3,
            "timezone",
            "did you mean \"Asia/Tokyo\""
        ),
        fixture!(
            "unknown_task_kind.toml",
            "unknown_task_kind",
            3,
            "tasks.hello.type",
            "\"bash\""
        ),
        fixture!(
            "bad_for_each.toml",
            "bad_for_each",
            4,
            "tasks.extract.for_each",
            "found string"
        ),
        fixture!(
            "bad_template.toml",
            "bad_template",
            4,
            "tasks.hello.command",
            "template does not parse"
        ),
        fixture!(
            "missing_field.toml",
            "missing_field",
            2,
            "tasks.extract.cluster",
            "\"cluster\""
        ),
    ];
    for e in table {
        let errors = match parse_dag(e.file, e.source) {
            Ok(_) => panic!("{} should fail", e.file),
            Err(errors) => errors,
        };
        assert_eq!(
            errors.len(),
            1,
            "{}: exactly one error, got:\n{errors}",
            e.file
        );
        let err = &errors.errors[0];
        let at = err.location();
        let shown = err.to_string();
        assert_eq!(err.kind(), e.kind, "{shown}");
        assert_eq!(at.file, e.file, "{shown}");
        assert_eq!(at.line, Some(e.line), "{shown}");
        assert!(at.column.is_some(), "{shown}");
        assert_eq!(at.field, e.field, "{shown}");
        assert!(
            shown.contains(e.message_has),
            "{shown:?} should contain {:?}",
            e.message_has
        );
        let prefix = format!("{}:{}:", e.file, e.line);
        assert!(shown.starts_with(&prefix), "{shown}");
    }
}

// -------------------------------------------------------------------------------------
// Snippets: `check(source, expected errors as "kind line field")`.

/// Parses `source` as `dags/t.toml` and compares its errors, each written
/// `"<kind> <line> <field>"` (`-` for no line or no field), in order.
fn check(source: &str, expected: &[&str]) {
    let got: Vec<String> = match parse_dag("dags/t.toml", source) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                let at = e.location();
                let line = at.line.map_or("-".to_owned(), |l| l.to_string());
                let field = if at.field.is_empty() {
                    "-"
                } else {
                    at.field.as_str()
                };
                format!("{} {line} {field}", e.kind())
            })
            .collect(),
    };
    let messages = parse_dag("dags/t.toml", source)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(got, expected, "source:\n{source}\nerrors:\n{messages}");
}

const NOOP: &str = "[tasks.a]\ntype = \"noop\"\n";

#[test]
fn top_level_fields() {
    check(NOOP, &[]);
    check(
        &format!("schedule = \"@daily\"\ntimezone = \"America/New_York\"\n{NOOP}"),
        &[],
    );
    check(&format!("schedule = \"*/15 * * * *\"\n{NOOP}"), &[]);
    check(
        &format!("schedule = \"0 3 * *\"\n{NOOP}"),
        &["bad_cron 1 schedule"],
    );
    check(
        &format!("schedule = \"@fortnightly\"\n{NOOP}"),
        &["bad_cron 1 schedule"],
    );
    check(
        &format!("timezone = \"Mars/Olympus\"\n{NOOP}"),
        &["bad_timezone 1 timezone"],
    );
    check(
        &format!("start_date = \"2026-13-01\"\n{NOOP}"),
        &["bad_date 1 start_date"],
    );
    check(
        &format!("start_date = \"yesterday\"\n{NOOP}"),
        &["bad_date 1 start_date"],
    );
    check(
        &format!("start_date = 2026\n{NOOP}"),
        &["invalid_value 1 start_date"],
    );
    check(
        &format!("start_date = \"2026-02-01\"\nend_date = \"2026-01-01\"\n{NOOP}"),
        &["invalid_value 2 end_date"],
    );
    check(
        &format!("max_active_runs = 0\n{NOOP}"),
        &["invalid_value 1 max_active_runs"],
    );
    check(
        &format!("max_active_tasks = -1\n{NOOP}"),
        &["invalid_value 1 max_active_tasks"],
    );
    check(
        &format!("catchup = \"yes\"\n{NOOP}"),
        &["invalid_value 1 catchup"],
    );
    check(
        &format!("dagrun_timeout = \"0s\"\n{NOOP}"),
        &["bad_duration 1 dagrun_timeout"],
    );
    check(
        &format!("schedul = \"@daily\"\n{NOOP}"),
        &["unknown_field 1 schedul"],
    );
    check(
        &format!("id = \"has space\"\n{NOOP}"),
        &["invalid_value 1 id"],
    );
    check(&format!("id = \"dots.are.fine\"\n{NOOP}"), &[]);
    check("", &["missing_field - -"]);
    check("[tasks]\n", &["missing_field 1 tasks"]);
    check("tasks = 3\n", &["invalid_value 1 tasks"]);
    check(
        &format!("[defaults]\nretries = 1\npool = \"\"\n{NOOP}"),
        &["invalid_value 3 defaults.pool"],
    );
    check(
        &format!("[defaults]\nretry_dely = \"1m\"\n{NOOP}"),
        &["unknown_field 2 defaults.retry_dely"],
    );
}

#[test]
fn unknown_field_messages_suggest_the_closest_field() {
    let err = parse_dag(
        "t.toml",
        "schedul = \"@daily\"\n[tasks.a]\ntype = \"noop\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.toml:1:1: schedul: unknown field \"schedul\" (did you mean \"schedule\"?)"
    );
    // A common field misspelt in a kind's table is still recognised.
    let err = parse_dag(
        "t.toml",
        "[tasks.a]\ntype = \"command\"\ncommand = \"true\"\ndepends = []\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("did you mean \"depends_on\""),
        "{err}"
    );
}

#[test]
fn the_id_defaults_to_the_file_stem() {
    let dag = parse_ok("some/dir/my_dag.toml", NOOP);
    assert_eq!(dag.id, "my_dag");
    assert_eq!(dag.file, "some/dir/my_dag.toml");
    let dag = parse_ok("x.toml", &format!("id = \"other\"\n{NOOP}"));
    assert_eq!(dag.id, "other");
    check_file("bad name.toml", NOOP, "invalid_value");
}

fn check_file(file: &str, source: &str, kind: &str) {
    let err = parse_dag(file, source).unwrap_err();
    assert_eq!(
        err.iter().map(DagError::kind).collect::<Vec<_>>(),
        [kind],
        "{err}"
    );
}

#[test]
fn dates_are_midnight_in_the_dag_time_zone() {
    use super::validate::parse_date;
    let tokyo = chrono_tz::Asia::Tokyo;
    let utc = |y, m, d, h, min| Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
    let check = |text: &str, tz: chrono_tz::Tz, expected: Result<chrono::DateTime<Utc>, ()>| {
        assert_eq!(
            parse_date(text, tz).map_err(|_| ()),
            expected,
            "{text} in {tz}"
        );
    };
    check("2026-01-01", tokyo, Ok(utc(2025, 12, 31, 15, 0)));
    check("2026-01-01", chrono_tz::UTC, Ok(utc(2026, 1, 1, 0, 0)));
    check("2026-01-01T03:00:00", tokyo, Ok(utc(2025, 12, 31, 18, 0)));
    check("2026-01-01T03:00:00Z", tokyo, Ok(utc(2026, 1, 1, 3, 0)));
    check(
        "2026-01-01T03:00:00+09:00",
        chrono_tz::UTC,
        Ok(utc(2025, 12, 31, 18, 0)),
    );
    // 02:30 does not exist in New York on 2026-03-08: the first instant after the gap.
    check(
        "2026-03-08T02:30:00",
        chrono_tz::America::New_York,
        Ok(utc(2026, 3, 8, 7, 0)),
    );
    check("2026-02-30", tokyo, Err(()));
    check("01/02/2026", tokyo, Err(()));
}

#[test]
fn task_common_fields() {
    let t =
        |body: &str| format!("[tasks.a]\ntype = \"noop\"\n[tasks.b]\ntype = \"noop\"\n{body}\n");
    check(&t("[tasks.c]\ntype = \"noop\"\ndepends_on = [\"a\", \"b\"]\ntrigger_rule = \"one_failed\""), &[]);
    check(
        &t("[tasks.c]\ntype = \"noop\"\ntrigger_rule = \"all_sucess\""),
        &["invalid_value 7 tasks.c.trigger_rule"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\ndepends_on = [\"a\", \"a\"]"),
        &["invalid_value 7 tasks.c.depends_on[1]"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\ndepends_on = [\"c\"]"),
        &["cycle 7 tasks.c.depends_on[0]"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\ndepends_on = \"a\""),
        &["invalid_value 7 tasks.c.depends_on"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\nretries = -1"),
        &["invalid_value 7 tasks.c.retries"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\ntimeout = \"0s\""),
        &["bad_duration 7 tasks.c.timeout"],
    );
    check(&t("[tasks.c]\ntype = \"noop\"\nretry_delay = \"0s\""), &[]);
    check(
        &t("[tasks.c]\ntype = \"noop\"\npool_slots = 0"),
        &["invalid_value 7 tasks.c.pool_slots"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\nqueue = \"\""),
        &["invalid_value 7 tasks.c.queue"],
    );
    check(
        &t("[tasks.\"c d\"]\ntype = \"noop\""),
        &["invalid_value 5 tasks.\"c d\""],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\non_failure = { }"),
        &["missing_field 7 tasks.c.on_failure.url"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\non_failure = { slack_webhook = \"https://x.invalid\", url = \"https://y.invalid\" }"),
        &["invalid_value 7 tasks.c.on_failure"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\non_retry = { url = \"https://y.invalid\", method = \"FETCH\" }"),
        &["invalid_value 7 tasks.c.on_retry.method"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\non_success = { url = \"not a url\" }"),
        &["invalid_value 7 tasks.c.on_success"],
    );
    check(
        &t("[tasks.c]\ntype = \"noop\"\ncommand = \"true\""),
        &["unknown_field 7 tasks.c.command"],
    );
    check("[tasks]\nc = 1\n", &["invalid_value 2 tasks.c"]);
    check(
        &t("[tasks.c]\ndepends_on = [\"a\"]"),
        &["missing_field 5 tasks.c.type"],
    );
    check(&t("[tasks.c]\ntype = 1"), &["invalid_value 6 tasks.c.type"]);
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let source = "\
schedule = \"99 * * * *\"
timezone = \"Nowhere/Land\"

[tasks.a]
type = \"command\"
command = \"echo {{ ds \"
timeout = \"soon\"

[tasks.b]
type = \"bash\"

[tasks.c]
type = \"noop\"
depends_on = [\"x\", \"c\"]
";
    check(
        source,
        &[
            "bad_cron 1 schedule",
            "bad_timezone 2 timezone",
            "bad_template 6 tasks.a.command",
            "bad_duration 7 tasks.a.timeout",
            "unknown_task_kind 10 tasks.b.type",
            "unknown_upstream 14 tasks.c.depends_on[0]",
            "cycle 14 tasks.c.depends_on[1]",
        ],
    );
}

#[test]
fn cycles_report_their_path() {
    let source = "\
[tasks.a]
type = \"noop\"
depends_on = [\"b\"]
[tasks.b]
type = \"noop\"
depends_on = [\"a\"]
[tasks.x]
type = \"noop\"
depends_on = [\"z\"]
[tasks.y]
type = \"noop\"
depends_on = [\"x\"]
[tasks.z]
type = \"noop\"
depends_on = [\"y\"]
";
    let err = parse_dag("t.toml", source).unwrap_err();
    let paths: Vec<Vec<String>> = err
        .iter()
        .filter_map(|e| match e {
            DagError::Cycle { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(paths, [vec!["a", "b", "a"], vec!["x", "y", "z", "x"]]);
    assert!(
        err.to_string()
            .contains("t.toml:9:15: tasks.x.depends_on[0]: dependency cycle: x -> y -> z -> x"),
        "{err}"
    );
}

#[test]
fn duplicates_are_reported_clearly() {
    check(
        "[tasks.a]\ntype = \"noop\"\n[tasks.a]\ntype = \"noop\"\n",
        &["duplicate_task 3 tasks.a"],
    );
    check(
        "[tasks]\na = { type = \"noop\" }\na = { type = \"noop\" }\n",
        &["duplicate_task 3 tasks.a"],
    );
    check(
        "[tasks.a]\ntype = \"noop\"\ntype = \"noop\"\n",
        &["syntax 3 tasks.a.type"],
    );
}

#[test]
fn for_each_shapes() {
    let t = |for_each: &str| {
        format!("[tasks.up]\ntype = \"noop\"\n[tasks.m]\ntype = \"noop\"\nfor_each = {for_each}\n")
    };
    check(&t("[1, \"two\", { three = 3 }]"), &[]);
    check(&t("{ from = \"up\" }"), &[]);
    check(&t("[]"), &["bad_for_each 5 tasks.m.for_each"]);
    check(
        &t("{ from = \"upp\" }"),
        &["bad_for_each 5 tasks.m.for_each"],
    );
    check(&t("{ from = \"m\" }"), &["bad_for_each 5 tasks.m.for_each"]);
    check(
        &t("{ from = \"up\", extra = 1 }"),
        &["bad_for_each 5 tasks.m.for_each"],
    );
    check(&t("{ items = [1] }"), &["bad_for_each 5 tasks.m.for_each"]);
    check(&t("3"), &["bad_for_each 5 tasks.m.for_each"]);
    let err = parse_dag("t.toml", &t("{ from = \"upp\" }")).unwrap_err();
    assert!(err.to_string().contains("did you mean \"up\""), "{err}");
}

fn task(kind_and_fields: &str) -> String {
    format!("[tasks.t]\n{kind_and_fields}\n")
}

#[test]
fn command_tasks() {
    check(
        &task("type = \"command\"\ncommand = \"echo hi\"\nenv = { A = \"1\" }\ncwd = \"/tmp\""),
        &[],
    );
    check(
        &task("type = \"command\"\ncommand = [\"echo\", \"hi\"]\nskip_on_exit_code = []"),
        &[],
    );
    check(
        &task("type = \"command\""),
        &["missing_field 1 tasks.t.command"],
    );
    check(
        &task("type = \"command\"\ncommand = \"  \""),
        &["invalid_value 3 tasks.t.command"],
    );
    check(
        &task("type = \"command\"\ncommand = []"),
        &["invalid_value 3 tasks.t.command"],
    );
    check(
        &task("type = \"command\"\ncommand = [\"echo\", 1]"),
        &["invalid_value 3 tasks.t.command[1]"],
    );
    check(
        &task("type = \"command\"\ncommand = 1"),
        &["invalid_value 3 tasks.t.command"],
    );
    check(
        &task("type = \"command\"\ncommand = \"x\"\nenv = { A = 1 }"),
        &["invalid_value 4 tasks.t.env.A"],
    );
    check(
        &task("type = \"command\"\ncommand = \"x\"\ncluster = \"c\""),
        &["unknown_field 4 tasks.t.cluster"],
    );
    check(
        &task("type = \"command\"\ncommand = [\"echo\", \"{% if %}\"]"),
        &["bad_template 3 tasks.t.command[1]"],
    );
    check(
        &task("type = \"command\"\ncommand = \"x\"\nenv = { A = \"{{ }}\" }"),
        &["bad_template 4 tasks.t.env.A"],
    );
    // Only templated fields are checked: `doc` is free text.
    check(
        &task("type = \"command\"\ncommand = \"x\"\ndoc = \"{{ not a template\""),
        &[],
    );
}

#[test]
fn sql_tasks() {
    check(
        &task("type = \"sql\"\nconnection = \"wh\"\nsql = \"SELECT 1\""),
        &[],
    );
    check(
        &task("type = \"sql\"\nconnection = \"wh\"\nsql_file = \"sql/x.sql\"\ntransaction = true"),
        &[],
    );
    check(
        &task("type = \"sql\"\nsql = \"SELECT 1\""),
        &["missing_field 1 tasks.t.connection"],
    );
    check(
        &task("type = \"sql\"\nconnection = \"wh\""),
        &["missing_field 1 tasks.t.sql"],
    );
    check(
        &task("type = \"sql\"\nconnection = \"wh\"\nsql = \"SELECT 1\"\nsql_file = \"x.sql\""),
        &["invalid_value 5 tasks.t.sql_file"],
    );
    check(
        &task("type = \"sql\"\nconnection = \"\"\nsql = \"SELECT 1\""),
        &["invalid_value 3 tasks.t.connection"],
    );
    check(
        &task("type = \"sql\"\nconnection = \"wh\"\nsql = \"\""),
        &["invalid_value 4 tasks.t.sql"],
    );
    check(
        &task("type = \"sql\"\nconnection = \"wh\"\nsql = \"SELECT {{ x \""),
        &["bad_template 4 tasks.t.sql"],
    );
    check(
        &task("type = \"sql\"\nconnection = \"wh\"\nsql = \"SELECT :d\"\nparameters = { d = \"{{ ds }\" }"),
        &["bad_template 5 tasks.t.parameters.d"],
    );
}

#[test]
fn http_tasks() {
    let base = "type = \"http\"\nurl = \"https://api.example.invalid/x\"";
    check(&task(base), &[]);
    check(
        &task(&format!(
            "{base}\nmethod = \"delete\"\nexpect_status = [204, \"400-404\"]"
        )),
        &[],
    );
    check(
        &task("type = \"http\"\nurl = \"/relative\""),
        &["invalid_value 3 tasks.t.url"],
    );
    check(
        &task("type = \"http\"\nconnection = \"api\"\nurl = \"/relative\""),
        &[],
    );
    check(&task("type = \"http\"\nurl = \"{{ params.base }}/x\""), &[]);
    check(
        &task("type = \"http\"\nurl = \"ftp://x\""),
        &["invalid_value 3 tasks.t.url"],
    );
    check(&task("type = \"http\""), &["missing_field 1 tasks.t.url"]);
    check(
        &task(&format!("{base}\nmethod = \"FETCH\"")),
        &["invalid_value 4 tasks.t.method"],
    );
    check(
        &task(&format!("{base}\nbody = \"x\"\njson = {{ a = 1 }}")),
        &["invalid_value 4 tasks.t.body"],
    );
    check(
        &task(&format!("{base}\nexpect_status = []")),
        &["invalid_value 4 tasks.t.expect_status"],
    );
    check(
        &task(&format!("{base}\nexpect_status = [700]")),
        &["invalid_value 4 tasks.t.expect_status[0]"],
    );
    check(
        &task(&format!("{base}\nexpect_status = [\"299-200\"]")),
        &["invalid_value 4 tasks.t.expect_status[0]"],
    );
    check(
        &task(&format!("{base}\nexpect_status = [\"2xx\"]")),
        &["invalid_value 4 tasks.t.expect_status[0]"],
    );
    check(
        &task(&format!("{base}\njson_check = {{ path = \"a\" }}")),
        &["missing_field 4 tasks.t.json_check.equals"],
    );
    // JSON has no NaN or infinity: no silent null in a body or a check.
    check(
        &task(&format!("{base}\njson = nan")),
        &["invalid_value 4 tasks.t.json"],
    );
    check(
        &task(&format!("{base}\njson = {{ a = [1, inf] }}")),
        &["invalid_value 4 tasks.t.json"],
    );
    check(
        &task(&format!(
            "{base}\njson_check = {{ path = \"a\", equals = -inf }}"
        )),
        &["invalid_value 4 tasks.t.json_check.equals"],
    );
    check(
        &task(&format!("{base}\njson = {{ text = \"{{{{ ds \" }}")),
        &["bad_template 4 tasks.t.json.text"],
    );
    check(
        &task(&format!("{base}\nheaders = {{ X = \"{{% if %}}\" }}")),
        &["bad_template 4 tasks.t.headers.X"],
    );
}

#[test]
fn ecs_tasks() {
    let base = "type = \"ecs\"\ncluster = \"c\"\ntask_definition = \"td\"";
    check(&task(base), &[]);
    check(&task(&format!("{base}\nlaunch_type = \"EC2\"")), &[]);
    check(
        &task(&format!("{base}\nlaunch_type = \"FARGATE\"")),
        &["missing_field 1 tasks.t.subnets"],
    );
    check(
        &task(&format!("{base}\nlaunch_type = \"LAMBDA\"")),
        &["invalid_value 5 tasks.t.launch_type"],
    );
    check(
        &task(&format!(
            "{base}\nlaunch_type = \"EC2\"\ncapacity_provider_strategy = [{{ capacity_provider = \"x\" }}]"
        )),
        &["invalid_value 6 tasks.t.capacity_provider_strategy"],
    );
    check(
        &task(&format!(
            "{base}\ncapacity_provider_strategy = [{{ provider = \"x\" }}]"
        )),
        &["unknown_field 5 tasks.t.capacity_provider_strategy[0].provider"],
    );
    check(
        &task(&format!("{base}\ncommand = [\"run\"]")),
        &["missing_field 5 tasks.t.container"],
    );
    check(
        &task(&format!(
            "{base}\ncontainer = \"main\"\ncommand = [\"run\"]\ncpu = 256"
        )),
        &[],
    );
    check(
        &task(&format!("{base}\npropagate_tags = \"ALL\"")),
        &["invalid_value 5 tasks.t.propagate_tags"],
    );
    check(
        &task(&format!("{base}\nawslogs_stream_prefix = \"ecs\"")),
        &["missing_field 1 tasks.t.awslogs_group"],
    );
    check(
        &task(&format!("{base}\nrevision = \"7\"")),
        &["invalid_value 5 tasks.t.revision"],
    );
    check(
        &task(&format!(
            "{base}\ncontainer = \"m\"\nenvironment = {{ A = \"{{{{ item \" }}"
        )),
        &["bad_template 6 tasks.t.environment.A"],
    );
}

#[test]
fn sensor_tasks() {
    check(
        &task("type = \"sensor\"\nmode = \"sql\"\nconnection = \"wh\"\nsql = \"SELECT 1\""),
        &[],
    );
    check(&task("type = \"sensor\"\nmode = \"http\"\nurl = \"https://x.invalid\"\npoke_interval = \"30s\""), &[]);
    check(
        &task("type = \"sensor\"\nurl = \"https://x.invalid\""),
        &["missing_field 1 tasks.t.mode"],
    );
    check(
        &task("type = \"sensor\"\nmode = \"file\"\npath = \"/x\""),
        &["invalid_value 3 tasks.t.mode"],
    );
    check(
        &task("type = \"sensor\"\nmode = \"http\"\nurl = \"https://x.invalid\"\npoke_interval = \"0s\""),
        &["bad_duration 5 tasks.t.poke_interval"],
    );
    check(
        &task("type = \"sensor\"\nmode = \"sql\"\nconnection = \"wh\"\nsql = \"SELECT 1\"\ntransaction = true"),
        &["invalid_value 6 tasks.t.transaction"],
    );
    check(
        &task(
            "type = \"sensor\"\nmode = \"http\"\nurl = \"https://x.invalid\"\nsql = \"SELECT 1\"",
        ),
        &["unknown_field 5 tasks.t.sql"],
    );
    check(
        &task("type = \"sensor\"\nmode = \"http\"\nurl = \"https://x.invalid/{{ ds \""),
        &["bad_template 4 tasks.t.url"],
    );
    let dag = parse_ok(
        "t.toml",
        &task("type = \"sensor\"\nmode = \"http\"\nurl = \"https://x.invalid\""),
    );
    let t = &dag.tasks["t"];
    assert_eq!(
        t.timeout,
        Some(Duration::from_secs(7 * 24 * 3600)),
        "Airflow's sensor default"
    );
    let TaskKind::Sensor(s) = &t.kind else {
        panic!("a sensor")
    };
    assert_eq!(s.poke_interval, Duration::from_secs(60));
}

#[test]
fn s3_sensor_tasks() {
    let s3 = |fields: &str| task(&format!("type = \"sensor\"\nmode = \"s3\"\n{fields}"));
    check(&s3("bucket = \"b\"\nkey = \"k\"\nmin_size = 1"), &[]);
    check(&s3("bucket = \"b\"\nprefix = \"\"\nmin_objects = 3"), &[]);
    check(&s3("bucket = \"b\""), &["missing_field 1 tasks.t.key"]);
    check(
        &s3("bucket = \"b\"\nkey = \"k\"\nprefix = \"p/\""),
        &["invalid_value 6 tasks.t.prefix"],
    );
    check(
        &s3("bucket = \"b\"\nkey = \"k\"\nmin_objects = 2"),
        &["invalid_value 6 tasks.t.min_objects"],
    );
    check(
        &s3("bucket = \"b\"\nprefix = \"p\"\nmin_objects = 0"),
        &["invalid_value 6 tasks.t.min_objects"],
    );
    check(
        &s3("bucket = \"b\"\nprefix = \"p\"\nmin_size = -1"),
        &["invalid_value 6 tasks.t.min_size"],
    );
    check(
        &s3("bucket = \"b\"\nprefix = \"p\"\nurl = \"x\""),
        &["unknown_field 6 tasks.t.url"],
    );
    check(
        &s3("bucket = \"b\"\nprefix = \"p/{{ ds \""),
        &["bad_template 5 tasks.t.prefix"],
    );
    let dag = parse_ok(
        "t.toml",
        &s3("bucket = \"b\"\nprefix = \"p/{{ ds }}/\"\nmin_objects = 2"),
    );
    let TaskKind::Sensor(s) = &dag.tasks["t"].kind else {
        panic!("a sensor")
    };
    assert_eq!(
        s.check,
        SensorCheck::S3(S3Check {
            bucket: "b".into(),
            target: S3Target::Prefix("p/{{ ds }}/".into()),
            min_size: 0,
            min_objects: 2,
        })
    );
}

#[test]
fn callbacks_and_noop() {
    check(
        &format!("[on_failure]\nslack_webhook = \"{{{{ env.HOOK }}}}\"\n{NOOP}"),
        &[],
    );
    check(
        &format!("[on_failure]\nslack_webhook = \"{{{{ env.HOOK \"\n{NOOP}"),
        &["bad_template 2 on_failure.slack_webhook"],
    );
    check(
        &format!("[on_failure]\nslack_webhook = \"https://x.invalid\"\nmethod = \"GET\"\n{NOOP}"),
        &["invalid_value 1 on_failure"],
    );
    check(
        &format!("[on_retry]\nurl = \"https://x.invalid\"\n{NOOP}"),
        &["unknown_field 1 on_retry"],
    );
    check(
        &format!("[defaults.on_retry]\nurl = \"https://x.invalid\"\nmethod = \"PATCH\"\n{NOOP}"),
        &[],
    );
    check(
        &format!("[defaults.on_retry]\nurl = \"https://x.invalid/{{{{ x \"\n{NOOP}"),
        &["bad_template 2 defaults.on_retry.url"],
    );
    check(
        &task("type = \"noop\"\nurl = \"https://x.invalid\""),
        &["unknown_field 3 tasks.t.url"],
    );
}

#[test]
fn tasks_per_dag_are_limited() {
    let options = ParseOptions {
        max_tasks: 3,
        ..ParseOptions::default()
    };
    let parse = |source: &str| parse_dag_with("dags/t.toml", source, &options);
    let noops = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[tasks.t{i}]\ntype = \"noop\"\n"))
            .collect()
    };
    assert!(parse(&noops(3)).is_ok(), "at the limit");
    let err = parse(&noops(4)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dags/t.toml:1:2: tasks: the DAG has 4 tasks; at most 3 are allowed (the \
         max_tasks_per_dag setting)"
    );
    // Two tasks, but a run would start with four instances.
    let mapped = "[tasks.a]\ntype = \"noop\"\n[tasks.b]\ntype = \"noop\"\nfor_each = [1, 2, 3]\n";
    let err = parse(mapped).unwrap_err();
    assert_eq!(
        err.iter().map(DagError::kind).collect::<Vec<_>>(),
        ["invalid_value"]
    );
    assert!(
        err.to_string()
            .contains("the DAG has 4 task instances (each item of a literal for_each list counts)"),
        "{err}"
    );
    // The default is far above any real DAG and lets the 10,002-task benchmark DAG in.
    assert_eq!(ParseOptions::default().max_tasks, DEFAULT_MAX_TASKS);
    assert!(parse_dag("dags/t.toml", &noops(10_002)).is_ok());
    assert!(parse_dag("dags/t.toml", &noops(DEFAULT_MAX_TASKS + 1)).is_err());
}

#[test]
fn connections_are_checked_when_known() {
    let source = task("type = \"sql\"\nconnection = \"warehous\"\nsql = \"SELECT 1\"");
    let known = ParseOptions {
        connections: Some(["warehouse".to_owned(), "api".to_owned()].into()),
        ..ParseOptions::default()
    };
    let err = parse_dag_with("t.toml", &source, &known).unwrap_err();
    assert_eq!(
        err.iter().map(DagError::kind).collect::<Vec<_>>(),
        ["unknown_connection"]
    );
    assert!(
        err.to_string().contains("did you mean \"warehouse\""),
        "{err}"
    );
    assert!(
        parse_dag("t.toml", &source).is_ok(),
        "unchecked without the list"
    );
    let http = task("type = \"http\"\nurl = \"https://x.invalid\"");
    assert!(
        parse_dag_with("t.toml", &http, &known).is_ok(),
        "no connection, nothing to check"
    );
}

#[test]
fn errors_serialize_with_their_kind() {
    let err = parse_dag("dags/x.toml", "[tasks.a]\ntype = \"bash\"\n").unwrap_err();
    let json = serde_json::to_value(&err).expect("serialize");
    assert_eq!(json["errors"][0]["kind"], "unknown_task_kind");
    assert_eq!(json["errors"][0]["at"]["line"], 2);
    let back: DagErrors = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, err);
}

#[test]
fn sql_files_are_embedded_by_the_loader() {
    let mut dag = parse_ok("dags/nightly_dmp.toml", NIGHTLY_DMP);
    assert_eq!(dag.sql_files(), [("build_marts", "sql/build_marts.sql")]);
    let sql = include_str!("../../../dags/sql/build_marts.sql");
    dag.embed_sql_files(NIGHTLY_DMP, |path| match path {
        "sql/build_marts.sql" => Ok(sql.to_owned()),
        other => Err(format!("unexpected {other}")),
    })
    .expect("embeds");
    let TaskKind::Sql(marts) = &dag.tasks["build_marts"].kind else {
        panic!("build_marts is sql")
    };
    assert_eq!(marts.source.text(), Some(sql));

    let source =
        task("type = \"sensor\"\nmode = \"sql\"\nconnection = \"w\"\nsql_file = \"a.sql\"");
    let mut dag = parse_ok("dags/x.toml", &source);
    let err = dag
        .embed_sql_files(&source, |_| Err("no such file"))
        .unwrap_err();
    // The error names the line and column of the `sql_file` value.
    let line = source
        .lines()
        .position(|l| l.starts_with("sql_file"))
        .map(|i| i + 1)
        .expect("a sql_file line");
    assert_eq!(
        err.to_string(),
        format!(
            "dags/x.toml:{line}:12: tasks.t.sql_file: cannot read sql_file \"a.sql\": no such file"
        )
    );
    let err = dag
        .embed_sql_files(&source, |_| Ok::<_, String>("SELECT {{ x".into()))
        .unwrap_err();
    assert_eq!(
        err.iter().map(DagError::kind).collect::<Vec<_>>(),
        ["bad_template"]
    );
}

// -------------------------------------------------------------------------------------
// Hostile input: the parser answers with a short, clear error, never a stack overflow or
// megabytes of messages.

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    const DEPTH: usize = 100_000;
    let noop = "\n[tasks.a]\ntype = \"noop\"\n";
    let keys = vec!["a"; DEPTH].join(".");
    let check = |what: &str, source: String, message: &str| {
        let errors = parse_dag("dags/deep.toml", &source).expect_err(what);
        assert!(
            errors.len() <= MAX_ERRORS,
            "{what}: {} errors",
            errors.len()
        );
        let first = errors.iter().next().expect("an error").to_string();
        assert!(first.starts_with("dags/deep.toml:1:"), "{what}: {first}");
        assert!(first.ends_with(message), "{what}: {first}");
    };
    let arrays = format!("a = {}{}{noop}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    check(
        "arrays",
        arrays,
        "arrays or inline tables nested too deeply",
    );
    let tables = format!("a = {}1{}{noop}", "{b = ".repeat(DEPTH), "}".repeat(DEPTH));
    check(
        "inline tables",
        tables,
        "arrays or inline tables nested too deeply",
    );
    check(
        "dotted key",
        format!("{keys} = 1{noop}"),
        "keys nested too deeply",
    );
    check(
        "table header",
        format!("[{keys}]{noop}"),
        "keys nested too deeply",
    );
    check(
        "params header",
        format!("[params.{keys}]{noop}"),
        "keys nested too deeply",
    );
    // Nesting that a person would write is fine.
    let params = format!("[params]\na = {}1{}{noop}", "[".repeat(30), "]".repeat(30));
    parse_ok("dags/deep.toml", &params);
}

#[test]
fn a_flood_of_errors_is_cut_short() {
    // Every repetition of a key is an error of its own.
    let errors = parse_dag("dags/x.toml", &"a = 1\n".repeat(5_000)).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS);
    let last = errors.iter().last().expect("errors").to_string();
    assert!(
        last.starts_with("dags/x.toml: ") && last.ends_with("more errors not shown"),
        "{last}"
    );
    assert_eq!(
        errors.iter().last().map(DagError::kind),
        Some("too_many_errors")
    );
    // 150 tasks with an unknown field each: 99 errors, then the count of the rest.
    let tasks = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[tasks.t{i}]\ntype = \"noop\"\nbogus = 1\n"))
            .collect()
    };
    let errors = parse_dag("dags/x.toml", &tasks(150)).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS);
    assert_eq!(
        errors.iter().last().map(ToString::to_string).as_deref(),
        Some("dags/x.toml: 51 more errors not shown")
    );
    // Exactly at the limit nothing is cut.
    let errors = parse_dag("dags/x.toml", &tasks(MAX_ERRORS)).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS);
    assert!(errors.iter().all(|e| e.kind() == "unknown_field"));
}

#[test]
fn empty_and_blank_files_say_what_is_missing() {
    for source in ["", "\n\n", "   ", "# only a comment\n", "\u{feff}"] {
        let errors = parse_dag("dags/empty.toml", source).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "dags/empty.toml: missing required field \"tasks\" (add at least one [tasks.<id>] table)",
            "{source:?}"
        );
    }
}

#[test]
fn a_duration_at_the_edge_of_the_range_is_an_error_not_a_panic() {
    // humantime panicked on this sum (found by fuzzing `parse_duration`); in a DAG file it
    // would have taken the DAG folder sync down with it.
    let source = task("type = \"noop\"\nretry_delay = \"18446744073709551615s 500ms 500ms\"");
    let errors = parse_dag("dags/x.toml", &source).unwrap_err();
    assert_eq!(
        errors.iter().map(DagError::kind).collect::<Vec<_>>(),
        ["bad_duration"]
    );
    assert!(
        errors.to_string().contains("number is too large"),
        "{errors}"
    );
}

#[test]
fn warehouse_kinds_resolve() {
    let dag = parse_ok(
        "dags/w.toml",
        r#"
[tasks.a]
type = "athena"
database = "logs"
workgroup = "nightly"
output_location = "s3://r/"
sql = "SELECT * FROM t WHERE dt = ? AND n > ?"
parameters = ["{{ ds }}", 3]
max_rows = 5

[tasks.r]
type = "redshift"
cluster_identifier = "c1"
db_user = "etl"
database = "dmp"
sql = "SELECT :day"
parameters = { day = "{{ ds }}" }

[tasks.b]
type = "redshift"
workgroup_name = "wg"
database = "dmp"
sqls = ["DELETE FROM k", "INSERT INTO k SELECT 1"]
"#,
    );
    let TaskKind::Athena(a) = &dag.tasks["a"].kind else {
        panic!("athena: {:?}", dag.tasks["a"].kind)
    };
    assert_eq!(
        a.parameters,
        [serde_json::json!("{{ ds }}"), serde_json::json!(3)]
    );
    assert_eq!((a.max_rows, a.workgroup.as_deref()), (5, Some("nightly")));
    assert!(a
        .submission()
        .contains("ExecutionParameters=['{{ ds }}', 3]"));
    let TaskKind::Redshift(r) = &dag.tasks["r"].kind else {
        panic!("redshift")
    };
    assert_eq!(
        r.target,
        RedshiftTarget::Cluster {
            cluster_identifier: "c1".into(),
            db_user: Some("etl".into())
        }
    );
    assert_eq!(r.max_rows, DEFAULT_MAX_ROWS);
    let TaskKind::Redshift(b) = &dag.tasks["b"].kind else {
        panic!("redshift batch")
    };
    assert_eq!((b.source.is_none(), b.sqls.len()), (true, 2));
    assert!(b
        .submission()
        .starts_with("Redshift Data API BatchExecuteStatement workgroup_name=wg"));
}

#[test]
fn warehouse_kinds_reject_bad_fields() {
    let athena = "[tasks.a]\ntype = \"athena\"\n";
    check(athena, &["missing_field 1 tasks.a.sql"]);
    check(
        &format!("{athena}sql = \"SELECT 1\"\noutput_location = \"/tmp/x\"\n"),
        &["invalid_value 4 tasks.a.output_location"],
    );
    check(
        &format!("{athena}sql = \"SELECT 1\"\nmax_rows = 5000\n"),
        &["invalid_value 4 tasks.a.max_rows"],
    );
    check(
        &format!("{athena}sql = \"SELECT 1\"\nworkgroups = \"x\"\n"),
        &["unknown_field 4 tasks.a.workgroups"],
    );
    check(
        &format!("{athena}sql = \"SELECT {{{{ ds \"\n"),
        &["bad_template 3 tasks.a.sql"],
    );
    let redshift = "[tasks.r]\ntype = \"redshift\"\ndatabase = \"d\"\n";
    check(
        &format!("{redshift}sql = \"SELECT 1\"\n"),
        &["missing_field 1 tasks.r.cluster_identifier"],
    );
    check(
        &format!(
            "{redshift}sql = \"SELECT 1\"\ncluster_identifier = \"c\"\nworkgroup_name = \"w\"\n"
        ),
        &["invalid_value 6 tasks.r.workgroup_name"],
    );
    check(
        &format!("{redshift}sql = \"SELECT 1\"\nworkgroup_name = \"w\"\ndb_user = \"u\"\n"),
        &["invalid_value 6 tasks.r.db_user"],
    );
    check(
        &format!("{redshift}sqls = [\"a\"]\nsql = \"b\"\ncluster_identifier = \"c\"\n"),
        &["invalid_value 5 tasks.r.sql"],
    );
    check(
        &format!(
            "{redshift}sqls = [\"a\"]\nparameters = {{ x = 1 }}\ncluster_identifier = \"c\"\n"
        ),
        &["invalid_value 4 tasks.r.parameters.x"],
    );
    check(
        "[tasks.r]\ntype = \"redshift\"\nsql = \"x\"\ncluster_identifier = \"c\"\n",
        &["missing_field 1 tasks.r.database"],
    );
}

#[test]
fn bigquery_tasks_resolve() {
    let dag = parse_ok(
        "dags/bq.toml",
        r#"
[tasks.k]
type = "bigquery"
connection = "dwh"
location = "asia-northeast1"
sql = "SELECT @day, @n"
parameters = { day = { type = "DATE", value = "{{ ds }}" }, n = 3 }
destination_table = "marts.kpi${{ ds_nodash }}"
write_disposition = "write_append"
create_disposition = "CREATE_NEVER"
labels = { team = "dmp", run-kind = "nightly_1" }
maximum_bytes_billed = 1_000_000
max_rows = 5

[tasks.d]
type = "bigquery"
connection = "dwh"
sql = "SELECT 1"
dry_run = true
"#,
    );
    let TaskKind::Bigquery(k) = &dag.tasks["k"].kind else {
        panic!("bigquery: {:?}", dag.tasks["k"].kind)
    };
    assert_eq!(dag.tasks["k"].kind.connection(), Some("dwh"));
    assert_eq!(
        (
            k.location.as_deref(),
            k.write_disposition.as_deref(),
            k.create_disposition.as_deref(),
            k.maximum_bytes_billed,
            k.max_rows,
            k.dry_run
        ),
        (
            Some("asia-northeast1"),
            Some("WRITE_APPEND"),
            Some("CREATE_NEVER"),
            Some(1_000_000),
            5,
            false
        )
    );
    assert_eq!(
        k.parameters["day"],
        serde_json::json!({"type": "DATE", "value": "{{ ds }}"})
    );
    assert_eq!(k.labels["run-kind"], "nightly_1");
    assert!(k.submission().starts_with(
        "BigQuery jobs.insert connection=dwh location=asia-northeast1 configuration="
    ));
    let TaskKind::Bigquery(d) = &dag.tasks["d"].kind else {
        panic!("bigquery dry run")
    };
    assert_eq!(
        (d.dry_run, d.max_rows, d.location.clone()),
        (true, DEFAULT_MAX_ROWS, None)
    );
}

#[test]
fn bigquery_tasks_reject_bad_fields() {
    let bq = "[tasks.q]\ntype = \"bigquery\"\nconnection = \"dwh\"\n";
    check(bq, &["missing_field 1 tasks.q.sql"]);
    check(
        "[tasks.q]\ntype = \"bigquery\"\nsql = \"SELECT 1\"\n",
        &["missing_field 1 tasks.q.connection"],
    );
    check(
        &format!("{bq}sql = \"SELECT 1\"\nwrite_disposition = \"WRITE_TRUNCATE\"\n"),
        &["invalid_value 5 tasks.q.write_disposition"],
    );
    check(
        &format!(
            "{bq}sql = \"SELECT 1\"\ndestination_table = \"d.t\"\nwrite_disposition = \"OVERWRITE\"\n"
        ),
        &["invalid_value 6 tasks.q.write_disposition"],
    );
    check(
        &format!("{bq}sql = \"SELECT 1\"\ndestination_table = \"t\"\n"),
        &["invalid_value 5 tasks.q.destination_table"],
    );
    check(
        &format!("{bq}sql = \"SELECT 1\"\nlabels = {{ Team = \"x\" }}\n"),
        &["invalid_value 5 tasks.q.labels.Team"],
    );
    check(
        &format!("{bq}sql = \"SELECT 1\"\nparameters = {{ \"2x\" = 1 }}\n"),
        &["invalid_value 5 tasks.q.parameters.2x"],
    );
    check(
        &format!("{bq}sql = \"SELECT 1\"\nmaximum_bytes_billed = 0\n"),
        &["invalid_value 5 tasks.q.maximum_bytes_billed"],
    );
    check(
        &format!("{bq}sql = \"SELECT 1\"\nlocations = \"US\"\n"),
        &["unknown_field 5 tasks.q.locations"],
    );
}
