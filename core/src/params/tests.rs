//! Tests of param declarations and the conf check.

use serde_json::json;

use super::*;

fn declared(toml_text: &str) -> Declared {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    declare(&table)
}

const PARAMS: &str = r#"
limit = 100
ratio = 0.5
full = false
table = "orders"
day = 2026-03-01
at = 2026-03-01T02:00:00Z
local = 2026-03-01T02:00:00
clock = 02:30:00
flags = { full = false }
env = { type = "string", default = "dev", enum = ["dev", "prod"], description = "Where to load" }
batch = { type = "integer", default = 10 }
"#;

fn specs() -> BTreeMap<String, ParamSpec> {
    let d = declared(PARAMS);
    assert_eq!(d.errors, []);
    specs_of(&d.defaults, &d.specs)
}

#[test]
fn types_are_inferred_from_bare_defaults_and_read_from_the_explicit_form() {
    let d = declared(PARAMS);
    let kinds: Vec<(&str, ParamType)> = d.specs.iter().map(|(n, s)| (n.as_str(), s.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("at", ParamType::Datetime),
            ("batch", ParamType::Integer),
            ("clock", ParamType::String),
            ("day", ParamType::Date),
            ("env", ParamType::String),
            ("flags", ParamType::Json),
            ("full", ParamType::Boolean),
            ("limit", ParamType::Integer),
            ("local", ParamType::Datetime),
            ("ratio", ParamType::Number),
            ("table", ParamType::String),
        ]
    );
    // Templates see the default, not the declaration.
    assert_eq!(d.defaults["env"], "dev");
    assert_eq!(d.defaults["flags"], json!({"full": false}));
    assert_eq!(d.specs["env"].description.as_deref(), Some("Where to load"));
    // Every inferred default is a value of its own type.
    for (name, spec) in &d.specs {
        assert_eq!(spec.check(&spec.default), Ok(()), "{name}");
    }
}

#[test]
fn wrong_declarations_name_the_param() {
    let d = declared(
        r#"
a = { type = "integr", default = 1 }
b = { type = "integer", default = "x" }
c = { type = "string", default = "z", enum = ["x", "y"] }
d = { type = "integer" }
"#,
    );
    let names: Vec<&str> = d.errors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(
        d.errors[0].1.contains("unknown type \"integr\""),
        "{:?}",
        d.errors
    );
    assert!(
        d.errors[1].1.contains("expected an integer"),
        "{:?}",
        d.errors
    );
    assert!(
        d.errors[2].1.contains("one of \"x\", \"y\""),
        "{:?}",
        d.errors
    );
    assert!(d.errors[3].1.contains("default"), "{:?}", d.errors);
}

#[test]
fn a_good_conf_is_merged_over_the_defaults() {
    let merged = check_conf(
        &specs(),
        &json!({"limit": 5, "env": "prod", "day": "2026-04-02"}),
    )
    .expect("valid conf");
    assert_eq!(merged["limit"], 5);
    assert_eq!(merged["env"], "prod");
    assert_eq!(merged["day"], "2026-04-02");
    assert_eq!(merged["table"], "orders", "default kept");
    assert_eq!(
        check_conf(&specs(), &Value::Null).expect("no conf")["limit"],
        100
    );
    // A number param takes integers too; a json param anything.
    check_conf(&specs(), &json!({"ratio": 2, "flags": [1, "x"]})).expect("valid");
}

#[test]
fn wrong_types_unknown_keys_and_values_outside_the_enum_name_the_param() {
    let cases = [
        (
            json!({"limit": "five"}),
            "limit",
            "expected an integer, got \"five\"",
        ),
        (json!({"limit": 1.5}), "limit", "expected an integer"),
        (json!({"full": "yes"}), "full", "expected true or false"),
        (json!({"ratio": "x"}), "ratio", "expected a number"),
        (json!({"day": "01/03/2026"}), "day", "expected a date"),
        (json!({"at": "tomorrow"}), "at", "expected a date-time"),
        (
            json!({"env": "staging"}),
            "env",
            "expected one of \"dev\", \"prod\"",
        ),
        (json!({"limt": 5}), "limt", "unknown param"),
    ];
    for (conf, param, message) in cases {
        let errors = check_conf(&specs(), &conf).expect_err("refused");
        assert_eq!(errors.len(), 1, "{conf}: {errors:?}");
        assert_eq!(errors[0].param.as_deref(), Some(param), "{conf}");
        assert!(errors[0].message.contains(message), "{conf}: {}", errors[0]);
        assert!(
            errors[0].to_string().contains(&format!("{param:?}")),
            "{}",
            errors[0]
        );
    }
    let errors =
        check_conf(&specs(), &json!({"zz": 1, "limit": "x", "aa": 2})).expect_err("refused");
    let params: Vec<_> = errors
        .iter()
        .map(|e| e.param.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        params,
        ["aa", "zz", "limit"],
        "every problem, unknown keys first"
    );
    let errors = check_conf(&specs(), &json!([1])).expect_err("not an object");
    assert_eq!(errors[0].param, None);
}

#[test]
fn a_dag_without_params_takes_any_conf_object() {
    let none = BTreeMap::new();
    assert_eq!(check_conf(&none, &json!({"x": 1})).expect("any")["x"], 1);
    assert!(check_conf(&none, &json!(5)).is_err());
}

#[test]
fn form_inputs_are_read_by_type() {
    let s = specs();
    assert_eq!(s["limit"].parse_input(" 7 "), Ok(json!(7)));
    assert!(s["limit"]
        .parse_input("five")
        .unwrap_err()
        .contains("integer"));
    assert_eq!(s["ratio"].parse_input("2.5"), Ok(json!(2.5)));
    assert_eq!(s["full"].parse_input("on"), Ok(json!(true)));
    assert_eq!(s["full"].parse_input(""), Ok(json!(false)));
    assert_eq!(s["flags"].parse_input("{\"a\": 1}"), Ok(json!({"a": 1})));
    assert!(s["flags"].parse_input("{").unwrap_err().contains("JSON"));
    assert_eq!(
        s["at"].parse_input("2026-03-01T02:00"),
        Ok(json!("2026-03-01T02:00"))
    );
    assert!(s["env"].parse_input("qa").is_err());
    let mut spec = ParamSpec::inferred(&json!(1));
    spec.values = vec![json!(1), json!(2)];
    assert_eq!(spec.parse_input("2"), Ok(json!(2)));
}

#[test]
fn a_dag_file_declares_typed_params_and_its_wrong_declarations_are_errors() {
    let source = r#"
[params]
limit = { type = "integer", default = 10, description = "Rows to load" }
table = "orders"

[tasks.a]
type = "command"
command = "echo {{ params.limit }}"
"#;
    let dag = crate::dag::parse_dag("dags/typed.toml", source).expect("parses");
    assert_eq!(dag.params["limit"], 10, "templates see the default");
    let specs = dag.param_specs();
    assert_eq!(specs["limit"].kind, ParamType::Integer);
    assert_eq!(specs["table"].kind, ParamType::String);
    let errors = dag
        .check_conf(&json!({"limit": "five"}))
        .expect_err("refused");
    assert_eq!(errors[0].param.as_deref(), Some("limit"));

    // A stored DAG from before specs existed: inferred from its defaults.
    let mut stored = serde_json::to_value(&dag).expect("serializes");
    stored
        .as_object_mut()
        .expect("object")
        .remove("param_specs");
    let old: crate::dag::Dag = serde_json::from_value(stored).expect("reads");
    assert!(old.declared_params.is_empty());
    assert_eq!(old.param_specs()["limit"].kind, ParamType::Integer);

    let bad = source.replace("\"integer\", default = 10", "\"integer\", default = \"x\"");
    let errors = crate::dag::parse_dag("dags/typed.toml", &bad).expect_err("refused");
    let text = errors.to_string();
    assert!(text.contains("dags/typed.toml:3:9: params.limit"), "{text}");
    assert!(text.contains("expected an integer"), "{text}");
}
