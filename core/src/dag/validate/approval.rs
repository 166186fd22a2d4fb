//! Validating an `approval` task's own fields: `message` (a template, checked with the
//! other templated fields) and `on_timeout` (`reject`, `approve` or `fail`).

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use super::Ctx;
use crate::approval::{ApprovalTask, OnTimeout};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    message: Option<Spanned<String>>,
    on_timeout: Option<Spanned<String>>,
}

/// The approval `value` describes; errors are recorded and yield `None`.
pub(super) fn approval(
    cx: &mut Ctx<'_>,
    value: Spanned<DeValue<'_>>,
    known: &[&str],
) -> Option<ApprovalTask> {
    let raw: RawApproval = cx.de(value, known)?;
    let on_timeout = match &raw.on_timeout {
        None => OnTimeout::Fail,
        Some(text) => match OnTimeout::parse(text.get_ref()) {
            Some(on_timeout) => on_timeout,
            None => {
                cx.invalid(
                    text.span(),
                    format!(
                        "unknown on_timeout {:?}, expected one of: {}",
                        text.get_ref(),
                        OnTimeout::NAMES.join(", ")
                    ),
                );
                return None;
            }
        },
    };
    let message = match raw.message {
        Some(m) if m.get_ref().trim().is_empty() => {
            cx.invalid(
                m.span(),
                "message is empty; leave it out for the default text",
            );
            return None;
        }
        m => m.map(Spanned::into_inner),
    };
    Some(ApprovalTask {
        message,
        on_timeout,
    })
}

#[cfg(test)]
mod tests {
    use crate::approval::OnTimeout;
    use crate::dag::{parse_dag, TaskKind};

    fn check(toml: &str, expected: Result<(Option<&str>, OnTimeout), &str>) {
        match (parse_dag("dags/a.toml", toml), expected) {
            (Ok(dag), Ok((message, on_timeout))) => match &dag.tasks["ok"].kind {
                TaskKind::Approval(a) => {
                    assert_eq!(a.message.as_deref(), message);
                    assert_eq!(a.on_timeout, on_timeout);
                }
                other => panic!("not an approval: {other:?}"),
            },
            (Err(errors), Err(expected)) => {
                let text = errors.to_string();
                assert!(text.contains(expected), "{text}");
            }
            (got, expected) => panic!("{toml}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn approvals_parse_and_bad_fields_are_named() {
        check(
            "[tasks.ok]\ntype = \"approval\"\n",
            Ok((None, OnTimeout::Fail)),
        );
        check(
            "[tasks.ok]\ntype = \"approval\"\nmessage = \"Load {{ ds }}?\"\ntimeout = \"2h\"\non_timeout = \"reject\"\n",
            Ok((Some("Load {{ ds }}?"), OnTimeout::Reject)),
        );
        check(
            "[tasks.ok]\ntype = \"approval\"\non_timeout = \"maybe\"\n",
            Err("dags/a.toml:3:14: tasks.ok.on_timeout: unknown on_timeout \"maybe\", expected one of: reject, approve, fail"),
        );
        check(
            "[tasks.ok]\ntype = \"approval\"\nmessage = \"{{ nope(\"\n",
            Err("tasks.ok.message"),
        );
        check(
            "[tasks.ok]\ntype = \"approval\"\nmesage = \"x\"\n",
            Err("tasks.ok.mesage: unknown field"),
        );
    }
}
