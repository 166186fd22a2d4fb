//! Copies an ECS task's CloudWatch log lines (awslogs driver) into the try's log while
//! the task runs and once more after it stops.
//!
//! The awslogs driver writes each container to the stream `PREFIX/CONTAINER/TASK_ID` of
//! its group. A stream appears only once the container has started, so a missing one is
//! normal and simply read again at the next poll. Each stream keeps its forward token, so
//! every line is copied once.

use aws_sdk_cloudwatchlogs::Client;

use crate::kind::TaskContext;
use crate::log::Stream;

/// Pages read from one stream per [`LogCopier::copy`], so a chatty task cannot starve the
/// status polling (the rest is read at the next call).
const MAX_PAGES_PER_COPY: usize = 20;

/// Where one container's lines are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub container: String,
    pub group: String,
    pub stream: String,
}

impl LogSource {
    /// The awslogs stream of `container` in task `task_id`: `prefix/container/task_id`.
    pub fn awslogs(container: &str, group: &str, prefix: &str, task_id: &str) -> LogSource {
        LogSource {
            container: container.to_owned(),
            group: group.to_owned(),
            stream: format!("{prefix}/{container}/{task_id}"),
        }
    }
}

struct Cursor {
    source: LogSource,
    /// The forward token of the last read page; `None` before the first.
    token: Option<String>,
    /// The last error text reported to the log, so a lasting error is reported once.
    reported: Option<String>,
}

/// Reads the log streams of one ECS task into a try's log.
pub struct LogCopier {
    client: Client,
    cursors: Vec<Cursor>,
    /// Prefix lines with their container's name (when there is more than one stream).
    label: bool,
}

impl LogCopier {
    pub fn new(client: Client, sources: Vec<LogSource>) -> LogCopier {
        let label = sources.len() > 1;
        LogCopier {
            client,
            cursors: sources
                .into_iter()
                .map(|source| Cursor {
                    source,
                    token: None,
                    reported: None,
                })
                .collect(),
            label,
        }
    }

    /// The streams it reads.
    pub fn sources(&self) -> impl Iterator<Item = &LogSource> {
        self.cursors.iter().map(|c| &c.source)
    }

    /// Copies the lines written since the last call; returns how many. Errors are never
    /// fatal: a missing stream is skipped quietly, any other error is reported once in
    /// the try's log and the stream is read again next time.
    pub async fn copy(&mut self, ctx: &TaskContext) -> usize {
        let mut copied = 0;
        for cursor in &mut self.cursors {
            copied += copy_stream(&self.client, cursor, self.label, ctx).await;
        }
        copied
    }
}

async fn copy_stream(
    client: &Client,
    cursor: &mut Cursor,
    label: bool,
    ctx: &TaskContext,
) -> usize {
    let mut copied = 0;
    for _ in 0..MAX_PAGES_PER_COPY {
        let request = client
            .get_log_events()
            .log_group_name(&cursor.source.group)
            .log_stream_name(&cursor.source.stream)
            .start_from_head(true)
            .set_next_token(cursor.token.clone());
        let page = match request.send().await {
            Ok(page) => page,
            Err(error) => {
                let not_yet = error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception());
                if !not_yet {
                    let text =
                        aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&error).to_string();
                    if cursor.reported.as_deref() != Some(text.as_str()) {
                        ctx.system(format!(
                            "cannot read CloudWatch log stream {} of group {}: {text}",
                            cursor.source.stream, cursor.source.group
                        ));
                        cursor.reported = Some(text);
                    }
                }
                return copied;
            }
        };
        cursor.reported = None;
        for event in page.events() {
            let message = event.message().unwrap_or_default();
            let message = message.strip_suffix('\n').unwrap_or(message);
            if label {
                ctx.log.line(
                    Stream::Stdout,
                    format!("[{}] {message}", cursor.source.container),
                );
            } else {
                ctx.log.line(Stream::Stdout, message);
            }
            copied += 1;
        }
        let next = page.next_forward_token().map(str::to_owned);
        // The same token back (or none) means the end of what is there now.
        let at_end = next.is_none() || next == cursor.token || page.events().is_empty();
        if next.is_some() {
            cursor.token = next;
        }
        if at_end {
            break;
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awslogs_stream_names() {
        fn check(container: &str, group: &str, prefix: &str, task: &str, expected: &str) {
            let source = LogSource::awslogs(container, group, prefix, task);
            assert_eq!(source.stream, expected);
            assert_eq!(source.group, group);
            assert_eq!(source.container, container);
        }
        check(
            "extract",
            "/ecs/dmp",
            "ecs",
            "0123abcd",
            "ecs/extract/0123abcd",
        );
        check("app", "g", "a/b", "t", "a/b/app/t");
    }
}
