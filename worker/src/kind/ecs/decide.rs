//! The pure decision of the `ecs` kind: a STOPPED task (as DescribeTasks returns it) and
//! which of its containers are essential → the try's [`Outcome`].
//!
//! Success only when every essential container exited 0. A non-zero exit code listed in
//! `skip_on_exit_code` (and no other problem) skips the task. Anything else fails it, with
//! the stop code, the stopped reason and each container's exit code and reason in the
//! error, so the person reading it at 03:10 sees why without opening the AWS console.

use std::collections::BTreeSet;

use aws_sdk_ecs::types::Task;
use serde_json::json;

use crate::kind::Outcome;

/// The last segment of a task ARN (`arn:aws:ecs:region:account:task/cluster/ID` → `ID`).
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The outcome of a STOPPED `task`. Containers named in `non_essential` (from the task
/// definition) do not decide it; every other container does (ECS's default is essential).
pub fn decide(task: &Task, non_essential: &BTreeSet<String>, skip_on_exit_code: &[i32]) -> Outcome {
    let id = task_id(task.task_arn().unwrap_or("?"));
    let mut problems = Vec::new();
    let mut skip_codes = Vec::new();
    let mut fail_code = None;
    let mut essential = 0;
    for c in task.containers() {
        let name = c.name().unwrap_or("?");
        if non_essential.contains(name) {
            continue;
        }
        essential += 1;
        match c.exit_code() {
            Some(0) => {}
            Some(code) if skip_on_exit_code.contains(&code) => {
                skip_codes.push((name.to_owned(), code));
            }
            Some(code) => {
                problems.push(name.to_owned());
                fail_code.get_or_insert(code);
            }
            None => problems.push(name.to_owned()),
        }
    }
    if essential == 0 {
        return Outcome::Failed {
            error: format!(
                "ECS task {id} reported no essential container{}",
                details(task)
            ),
            retryable: true,
            exit_code: None,
        };
    }
    if problems.is_empty() && skip_codes.is_empty() {
        let exit_codes: serde_json::Map<String, serde_json::Value> = task
            .containers()
            .iter()
            .map(|c| (c.name().unwrap_or("?").to_owned(), json!(c.exit_code())))
            .collect();
        return Outcome::Success {
            output: Some(json!({
                "task_arn": task.task_arn(),
                "exit_codes": exit_codes,
            })),
        };
    }
    if problems.is_empty() {
        let listed: Vec<String> = skip_codes
            .iter()
            .map(|(name, code)| format!("{name} exited {code}"))
            .collect();
        return Outcome::Skipped {
            reason: format!(
                "ECS task {id}: {} (listed in skip_on_exit_code)",
                listed.join(", ")
            ),
            exit_code: skip_codes.first().map(|(_, code)| *code),
        };
    }
    Outcome::Failed {
        error: format!(
            "ECS task {id} failed: essential container {} did not exit 0{}",
            problems.join(", "),
            details(task)
        ),
        retryable: true,
        exit_code: fail_code.or(skip_codes.first().map(|(_, code)| *code)),
    }
}

/// `; stop code X: reason; containers: a exited 1 (reason), b no exit code`.
pub fn details(task: &Task) -> String {
    let mut text = String::new();
    let code = task.stop_code().map(|c| c.as_str());
    let reason = task.stopped_reason().filter(|r| !r.is_empty());
    match (code, reason) {
        (Some(code), Some(reason)) => text.push_str(&format!("; stop code {code}: {reason}")),
        (Some(code), None) => text.push_str(&format!("; stop code {code}")),
        (None, Some(reason)) => text.push_str(&format!("; stopped: {reason}")),
        (None, None) => {}
    }
    let containers: Vec<String> = task
        .containers()
        .iter()
        .map(|c| {
            let mut part = c.name().unwrap_or("?").to_owned();
            match c.exit_code() {
                Some(code) => part.push_str(&format!(" exited {code}")),
                None => part.push_str(" has no exit code"),
            }
            if let Some(reason) = c.reason().filter(|r| !r.is_empty()) {
                part.push_str(&format!(" ({reason})"));
            }
            part
        })
        .collect();
    if !containers.is_empty() {
        text.push_str(&format!("; containers: {}", containers.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Container, TaskStopCode};

    use super::*;

    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/dmp/0123abcd";

    /// (name, exit code, reason)
    type C<'a> = (&'a str, Option<i32>, Option<&'a str>);

    fn task(containers: &[C<'_>], stop_code: Option<TaskStopCode>, reason: Option<&str>) -> Task {
        let mut b = Task::builder()
            .task_arn(ARN)
            .last_status("STOPPED")
            .set_stop_code(stop_code)
            .set_stopped_reason(reason.map(str::to_owned));
        for (name, code, why) in containers {
            b = b.containers(
                Container::builder()
                    .name(*name)
                    .set_exit_code(*code)
                    .set_reason(why.map(|s| (*s).to_owned()))
                    .last_status("STOPPED")
                    .build(),
            );
        }
        b.build()
    }

    fn check(task: Task, non_essential: &[&str], skip: &[i32], expected: Outcome) {
        let non_essential = non_essential.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(decide(&task, &non_essential, skip), expected, "{task:?}");
    }

    fn failed(error: &str, exit_code: Option<i32>) -> Outcome {
        Outcome::Failed {
            error: error.to_owned(),
            retryable: true,
            exit_code,
        }
    }

    #[test]
    fn essential_containers_decide() {
        let essential_exited = Some(TaskStopCode::EssentialContainerExited);
        let why = Some("Essential container in task exited");
        // Exit code 0 everywhere: success, with the codes as output.
        check(
            task(
                &[("extract", Some(0), None), ("sidecar", Some(0), None)],
                essential_exited.clone(),
                why,
            ),
            &[],
            &[],
            Outcome::Success {
                output: Some(json!({"task_arn": ARN, "exit_codes": {"extract": 0, "sidecar": 0}})),
            },
        );
        // Exit code 1: failure naming the stop code, the reason and every container.
        check(
            task(
                &[("extract", Some(1), None), ("sidecar", Some(0), None)],
                essential_exited.clone(),
                why,
            ),
            &[],
            &[],
            failed(
                "ECS task 0123abcd failed: essential container extract did not exit 0; \
                 stop code EssentialContainerExited: Essential container in task exited; \
                 containers: extract exited 1, sidecar exited 0",
                Some(1),
            ),
        );
        // A missing exit code (the container never ran) is a failure, not a success.
        check(
            task(
                &[("extract", None, Some("CannotPullContainerError: pull access denied"))],
                Some(TaskStopCode::TaskFailedToStart),
                Some("CannotPullContainerError: pull access denied for dmp-extract"),
            ),
            &[],
            &[],
            failed(
                "ECS task 0123abcd failed: essential container extract did not exit 0; \
                 stop code TaskFailedToStart: CannotPullContainerError: pull access denied for dmp-extract; \
                 containers: extract has no exit code (CannotPullContainerError: pull access denied)",
                None,
            ),
        );
        // A non-essential container failing does not fail the task.
        check(
            task(
                &[
                    ("extract", Some(0), None),
                    ("log-router", Some(137), Some("killed")),
                ],
                essential_exited.clone(),
                why,
            ),
            &["log-router"],
            &[],
            Outcome::Success {
                output: Some(
                    json!({"task_arn": ARN, "exit_codes": {"extract": 0, "log-router": 137}}),
                ),
            },
        );
        // ... but an essential one does, even when another is fine.
        check(
            task(
                &[
                    ("extract", Some(0), None),
                    ("loader", Some(2), Some("OutOfMemoryError")),
                ],
                None,
                None,
            ),
            &[],
            &[],
            failed(
                "ECS task 0123abcd failed: essential container loader did not exit 0; \
                 containers: extract exited 0, loader exited 2 (OutOfMemoryError)",
                Some(2),
            ),
        );
        // A stop by a person or by nightshift, with no exit codes.
        check(
            task(&[("extract", None, None)], Some(TaskStopCode::UserInitiated), Some("nightshift: timed out after 2h")),
            &[],
            &[],
            failed(
                "ECS task 0123abcd failed: essential container extract did not exit 0; \
                 stop code UserInitiated: nightshift: timed out after 2h; containers: extract has no exit code",
                None,
            ),
        );
        // No essential container at all.
        check(
            task(&[("log-router", Some(0), None)], None, Some("gone")),
            &["log-router"],
            &[],
            failed(
                "ECS task 0123abcd reported no essential container; stopped: gone; containers: log-router exited 0",
                None,
            ),
        );
        check(
            task(&[], None, None),
            &[],
            &[],
            failed("ECS task 0123abcd reported no essential container", None),
        );
    }

    #[test]
    fn skip_codes_skip_only_when_nothing_else_failed() {
        check(
            task(
                &[("extract", Some(3), None), ("sidecar", Some(0), None)],
                None,
                None,
            ),
            &[],
            &[3, 99],
            Outcome::Skipped {
                reason: "ECS task 0123abcd: extract exited 3 (listed in skip_on_exit_code)".into(),
                exit_code: Some(3),
            },
        );
        // A skip code and a real failure together: the failure wins.
        check(
            task(
                &[("extract", Some(3), None), ("loader", Some(1), None)],
                None,
                None,
            ),
            &[],
            &[3],
            failed(
                "ECS task 0123abcd failed: essential container loader did not exit 0; \
                 containers: extract exited 3, loader exited 1",
                Some(1),
            ),
        );
        // A code not listed fails.
        check(
            task(&[("extract", Some(4), None)], None, None),
            &[],
            &[3],
            failed(
                "ECS task 0123abcd failed: essential container extract did not exit 0; containers: extract exited 4",
                Some(4),
            ),
        );
    }

    #[test]
    fn task_ids_come_from_arns() {
        fn check(arn: &str, expected: &str) {
            assert_eq!(task_id(arn), expected);
        }
        check("arn:aws:ecs:us-east-1:1:task/dmp/abc", "abc");
        check("arn:aws:ecs:us-east-1:1:task/abc", "abc");
        check("abc", "abc");
    }
}
