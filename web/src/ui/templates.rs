//! The HTML templates, embedded in the binary, and the filters they use: `dt` shows an
//! instant in a time zone with UTC on hover, `dur` a duration between two instants.
//! Undefined values are strict (also for `is none`, `tojson`, `dt` and `dur`): a
//! template naming a field its context (a typed [`Page`]) lacks is an error, caught by
//! the render test of every page (`samples`).

use std::sync::LazyLock;

use axum::response::Html;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use super::contexts::Page;
use crate::error::ApiError;

/// Every template: (name, source).
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("dags.html", include_str!("../../templates/dags.html")),
    ("grid.html", include_str!("../../templates/grid.html")),
    ("charts.html", include_str!("../../templates/charts.html")),
    (
        "durations.html",
        include_str!("../../templates/durations.html"),
    ),
    (
        "calendar.html",
        include_str!("../../templates/calendar.html"),
    ),
    ("graph.html", include_str!("../../templates/graph.html")),
    ("source.html", include_str!("../../templates/source.html")),
    ("run.html", include_str!("../../templates/run.html")),
    (
        "run_live.html",
        include_str!("../../templates/run_live.html"),
    ),
    ("gantt.html", include_str!("../../templates/gantt.html")),
    ("task.html", include_str!("../../templates/task.html")),
    (
        "task_head.html",
        include_str!("../../templates/task_head.html"),
    ),
    (
        "task_live.html",
        include_str!("../../templates/task_live.html"),
    ),
    (
        "task_log.html",
        include_str!("../../templates/task_log.html"),
    ),
    (
        "log_lines.html",
        include_str!("../../templates/log_lines.html"),
    ),
    ("trigger.html", include_str!("../../templates/trigger.html")),
    ("audit.html", include_str!("../../templates/audit.html")),
    ("confirm.html", include_str!("../../templates/confirm.html")),
    (
        "confirm_box.html",
        include_str!("../../templates/confirm_box.html"),
    ),
    ("admin.html", include_str!("../../templates/admin.html")),
    (
        "admin_pools.html",
        include_str!("../../templates/admin_pools.html"),
    ),
    (
        "admin_users.html",
        include_str!("../../templates/admin_users.html"),
    ),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| environment_with(TEMPLATES));

/// The templates, strict about undefined values, with the filters. `is none` is strict
/// too: an undefined value (a misspelt field) is an error, not "not none".
pub(super) fn environment_with<'s>(templates: &[(&'s str, &'s str)]) -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in templates {
        if let Err(err) = env.add_template(name, source) {
            tracing::error!(template = name, error = %err, "template does not compile");
        }
    }
    env.add_filter("dt", dt);
    env.add_function("dur", dur);
    env.add_filter("urlencode", |value: String| super::urlencode(&value));
    env.add_test("none", |value: &Value| {
        defined(value, "a value tested for none").map(|()| value.is_none())
    });
    env.add_filter(
        "tojson",
        |value: &Value, indent: Option<Value>, args: minijinja::value::Kwargs| {
            defined(value, "a value shown as JSON")?;
            minijinja::filters::tojson(value, indent, args)
        },
    );
    env
}

/// An error for an undefined value: a template naming a field its context lacks.
fn defined(value: &Value, what: &str) -> Result<(), Error> {
    if value.is_undefined() {
        Err(Error::new(
            ErrorKind::UndefinedError,
            format!("{what} is undefined (is the field misspelt?)"),
        ))
    } else {
        Ok(())
    }
}

/// An optional instant: none is fine, undefined (a misspelt field) is an error even
/// though minijinja turns it into `None` for an `Option` argument.
fn instant(value: &Value) -> Result<Option<DateTime<Utc>>, Error> {
    defined(value, "an instant")?;
    Ok(value.as_str().and_then(|v| {
        DateTime::parse_from_rfc3339(v)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }))
}

/// `{{ instant|dt(tz) }}`: `<time>` in the zone, UTC in the title; empty for none.
fn dt(value: &Value, tz: &Value) -> Result<Value, Error> {
    let at = instant(value)?;
    defined(tz, "the time zone")?;
    let Some(at) = at else {
        return Ok(Value::from(""));
    };
    let zone: Tz = tz.as_str().and_then(|z| z.parse().ok()).unwrap_or(Tz::UTC);
    let local = at.with_timezone(&zone);
    Ok(Value::from_safe_string(format!(
        "<time datetime=\"{}\" title=\"{} UTC\">{}</time>",
        at.to_rfc3339(),
        at.format("%Y-%m-%d %H:%M:%S"),
        local.format("%Y-%m-%d %H:%M:%S %Z"),
    )))
}

/// `{{ dur(start, end) }}`: `1h 2m 3s`; empty when either is missing.
fn dur(start: &Value, end: &Value) -> Result<String, Error> {
    let (Some(start), Some(end)) = (instant(start)?, instant(end)?) else {
        return Ok(String::new());
    };
    Ok(human_duration((end - start).num_seconds()))
}

pub fn human_duration(total: i64) -> String {
    let total = total.max(0);
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// Renders a page with its template.
pub fn render<P: Page>(page: &P) -> Result<Html<String>, ApiError> {
    let name = P::TEMPLATE;
    let template = ENV.get_template(name).map_err(ApiError::internal)?;
    template
        .render(Value::from(minijinja::value::Serde(page)))
        .map(Html)
        .map_err(|err| ApiError::internal_while(format_args!("rendering {name}"), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, source) in TEMPLATES {
            let mut env = Environment::new();
            env.add_template(name, source)
                .unwrap_or_else(|err| panic!("{name}: {err:#}"));
        }
    }

    fn check_dt(value: &str, tz: &str, expected: &str) {
        let out = dt(&Value::from(value), &Value::from(tz))
            .unwrap_or_else(|err| panic!("{value} in {tz}: {err:#}"));
        assert_eq!(out.to_string(), expected, "{value} in {tz}");
    }

    #[test]
    fn instants_show_in_the_zone_with_utc_on_hover() {
        check_dt(
            "2026-01-01T18:00:00Z",
            "Asia/Tokyo",
            "<time datetime=\"2026-01-01T18:00:00+00:00\" title=\"2026-01-01 18:00:00 UTC\">\
             2026-01-02 03:00:00 JST</time>",
        );
        check_dt(
            "2026-07-01T00:00:00+00:00",
            "not/a zone",
            "<time datetime=\"2026-07-01T00:00:00+00:00\" title=\"2026-07-01 00:00:00 UTC\">\
             2026-07-01 00:00:00 UTC</time>",
        );
        check_dt("garbage", "UTC", "");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        for (secs, expected) in [
            (0, "0s"),
            (59, "59s"),
            (61, "1m 1s"),
            (3723, "1h 2m 3s"),
            (-5, "0s"),
        ] {
            assert_eq!(human_duration(secs), expected);
        }
    }
}
