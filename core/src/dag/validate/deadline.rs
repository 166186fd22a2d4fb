//! Validating a deadline (`[deadline]` or a task's `deadline = { … }`): exactly one of `at`
//! (a time of day) and `within` (a positive duration), and `fail`.

use toml::Spanned;

use super::paths::join_path;
use super::Ctx;
use crate::dag::error::DagError;
use crate::dag::raw::RawDeadline;
use crate::deadline::{parse_time_of_day, Deadline, Due};

/// The deadline `raw` describes; errors are recorded and yield `None`.
pub(super) fn deadline(cx: &mut Ctx<'_>, raw: Spanned<RawDeadline>) -> Option<Deadline> {
    let span = raw.span();
    let field = cx.field_at(&span);
    let raw = raw.into_inner();
    let due = match (&raw.at, &raw.within) {
        (Some(_), Some(_)) => {
            cx.invalid(
                span,
                "a deadline has either at (a time of day) or within (a duration), not both",
            );
            None
        }
        (None, None) => {
            let at = cx.at_field(Some(span), &join_path(&field, "at"));
            cx.push(DagError::MissingField {
                at,
                name: "at".into(),
                hint: Some(
                    "a deadline needs at = \"HH:MM\" (in the DAG's timezone) or within = \
                     \"<duration>\""
                        .into(),
                ),
            });
            None
        }
        (Some(at), None) => time_of_day(cx, at).map(Due::At),
        (None, Some(within)) => cx.duration(Some(within), true).map(Due::Within),
    };
    Some(Deadline {
        due: due?,
        fail: raw.fail.unwrap_or(false),
    })
}

/// `at`: a `"HH:MM"` or `"HH:MM:SS"` string, or a TOML local time (`at = 09:00:00`).
fn time_of_day(cx: &mut Ctx<'_>, v: &Spanned<toml::Value>) -> Option<chrono::NaiveTime> {
    let text = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.date.is_none() && d.offset.is_none() => d.to_string(),
        other => {
            cx.invalid(
                v.span(),
                format!(
                    "expected a time of day such as \"09:00\", found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match parse_time_of_day(&text) {
        Ok(time) => Some(time),
        Err(message) => {
            cx.invalid(v.span(), message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::dag::parse_dag;
    use crate::deadline::{Deadline, Due};

    const TASK: &str = "[tasks.a]\ntype = \"noop\"\n";

    /// The errors of `source` as `"<kind> <line> <field>"`, in order.
    fn errors(source: &str) -> Vec<String> {
        match parse_dag("dags/t.toml", source) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| {
                    let at = e.location();
                    let line = at.line.map_or("-".to_owned(), |l| l.to_string());
                    format!("{} {line} {}", e.kind(), at.field)
                })
                .collect(),
        }
    }

    fn check(source: &str, expected: &[&str]) {
        let shown = parse_dag("dags/t.toml", source)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(errors(source), expected, "source:\n{source}\n{shown}");
    }

    fn at(h: u32, m: u32) -> Due {
        Due::At(chrono::NaiveTime::from_hms_opt(h, m, 0).expect("time"))
    }

    #[test]
    fn run_and_task_deadlines_parse() {
        let dag = parse_dag(
            "dags/t.toml",
            "timezone = \"Asia/Tokyo\"\n\
             on_deadline_missed = { url = \"https://hooks.example/late?d={{ dag_id }}\" }\n\
             [deadline]\nat = \"09:00\"\nfail = true\n\
             [tasks.a]\ntype = \"noop\"\ndeadline = { within = \"2h\" }\n\
             [tasks.b]\ntype = \"noop\"\ndeadline = { at = 07:30:00 }\n\
             [tasks.c]\ntype = \"noop\"\n",
        )
        .expect("valid");
        assert_eq!(
            dag.deadline,
            Some(Deadline {
                due: at(9, 0),
                fail: true
            })
        );
        assert!(dag.on_deadline_missed.is_some());
        assert_eq!(
            dag.tasks["a"].deadline,
            Some(Deadline {
                due: Due::Within(Duration::from_secs(7200)),
                fail: false
            })
        );
        assert_eq!(
            dag.tasks["b"].deadline.as_ref().map(|d| &d.due),
            Some(&at(7, 30))
        );
        assert_eq!(dag.tasks["c"].deadline, None);
        // The parsed DAG goes through the store as JSON.
        let json = serde_json::to_string(&dag).expect("serialize");
        assert_eq!(
            serde_json::from_str::<crate::dag::Dag>(&json).ok(),
            Some(dag)
        );
    }

    #[test]
    fn a_dag_without_deadlines_serializes_without_them() {
        let dag = parse_dag("dags/t.toml", TASK).expect("valid");
        let json = serde_json::to_value(&dag).expect("serialize");
        assert!(json.get("deadline").is_none());
        assert!(json.get("on_deadline_missed").is_none());
        assert!(json["tasks"]["a"].get("deadline").is_none());
    }

    #[test]
    fn bad_deadlines_name_line_and_field() {
        check(
            &format!("[deadline]\nat = \"9am\"\n{TASK}"),
            &["invalid_value 2 deadline.at"],
        );
        check(
            &format!("[deadline]\nat = \"25:00\"\n{TASK}"),
            &["invalid_value 2 deadline.at"],
        );
        check(
            &format!("[deadline]\nat = 9\n{TASK}"),
            &["invalid_value 2 deadline.at"],
        );
        check(
            &format!("[deadline]\nwithin = \"soon\"\n{TASK}"),
            &["bad_duration 2 deadline.within"],
        );
        check(
            &format!("[deadline]\nwithin = \"0s\"\n{TASK}"),
            &["bad_duration 2 deadline.within"],
        );
        check(
            &format!("[deadline]\nfail = true\n{TASK}"),
            &["missing_field 1 deadline.at"],
        );
        check(
            &format!("[deadline]\nat = \"09:00\"\nwithin = \"1h\"\n{TASK}"),
            &["invalid_value 1 deadline"],
        );
        check(
            &format!("[deadline]\nat = \"09:00\"\nalert = true\n{TASK}"),
            &["unknown_field 3 deadline.alert"],
        );
        check(
            "[tasks.a]\ntype = \"noop\"\ndeadline = { within = \"2 fortnights\" }\n",
            &["bad_duration 3 tasks.a.deadline.within"],
        );
        check(
            "[tasks.a]\ntype = \"noop\"\ndeadline = { at = \"09:00\", fial = true }\n",
            &["unknown_field 3 tasks.a.deadline.fial"],
        );
        check(
            "[tasks.a]\ntype = \"noop\"\ndeadline = {}\n",
            &["missing_field 3 tasks.a.deadline.at"],
        );
        check(
            &format!("on_deadline_missed = {{ url = \"ftp://x\" }}\n{TASK}"),
            &["invalid_value 1 on_deadline_missed"],
        );
        check(
            &format!("on_deadline_missed = {{ url = \"{{{{ nope(\" }}\n{TASK}"),
            &["bad_template 1 on_deadline_missed.url"],
        );
        // [defaults] has no deadline: a deadline per task is written on the task.
        check(
            &format!("[defaults]\ndeadline = {{ within = \"1h\" }}\n{TASK}"),
            &["unknown_field 2 defaults.deadline"],
        );
    }
}
