//! Sending callbacks from the outbox: a Slack incoming webhook gets `{"text": ...}`, an HTTP
//! callback its own JSON template (rendered) or the event as JSON. Each request is tried
//! [`CALLBACK_ATTEMPTS`] times; a callback that fails is logged and never fails a run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift_core::dag::Callback;
use nightshift_core::plan::UNMAPPED;
use nightshift_core::template::{render_str, render_value, ContextParams, TemplateContext};
use nightshift_store::{
    CallbackClaim, CallbackEvent, CallbackFailure, CallbackKind, CallbackRequest, Store, StoreError,
};
use serde_json::{json, Value};
use tracing::instrument;

use crate::scheduler::SchedulerConfig;

/// How long one HTTP call may take.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Sending attempts per request before it is marked failed.
pub const CALLBACK_ATTEMPTS: i32 = 3;
/// The wait after a failed attempt, times the number of attempts so far.
const RETRY_STEP: Duration = Duration::from_secs(15);

/// The facts of an event every enqueuer records in `payload`.
pub(crate) fn event_payload(state: &str, error: Option<&str>) -> Value {
    json!({ "state": state, "error": error })
}

/// The UI page of a task instance (`task_id` given) or of a run.
pub fn link(base_url: &str, dag_id: &str, run_id: &str, task: Option<(&str, i32)>) -> String {
    let base = base_url.trim_end_matches('/');
    let run = format!(
        "{base}/dags/{}/runs/{}",
        encode_segment(dag_id),
        encode_segment(run_id)
    );
    match task {
        Some((task_id, map_index)) => {
            format!(
                "{run}/tasks/{}?map_index={map_index}",
                encode_segment(task_id)
            )
        }
        None => run,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The human message and the JSON event of one request (`base_url`: the web UI's
/// address, for the link).
pub fn message(req: &CallbackRequest, base_url: &str) -> (String, Value) {
    let error = req.payload.get("error").and_then(Value::as_str);
    let state = req
        .payload
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("");
    let verb = match req.event {
        CallbackEvent::Failure => "failed",
        CallbackEvent::Success => "succeeded",
        CallbackEvent::Retry => "is up for retry",
        CallbackEvent::DeadlineMissed => "missed its deadline",
        CallbackEvent::ApprovalRequested => "awaits approval",
    };
    let (text, link) = match (&req.kind, &req.task_id) {
        (CallbackKind::Task, Some(task_id)) => {
            let shown = if req.map_index == UNMAPPED {
                task_id.clone()
            } else {
                format!("{task_id}[{}]", req.map_index)
            };
            let about = match req.event {
                CallbackEvent::DeadlineMissed | CallbackEvent::ApprovalRequested => String::new(),
                _ => format!(" (try {}, state {state})", req.try_number),
            };
            (
                format!(
                    "nightshift: task {shown} of DAG {} run {} {verb}{about}",
                    req.dag_id, req.run_id
                ),
                link(
                    base_url,
                    &req.dag_id,
                    &req.run_id,
                    Some((task_id, req.map_index)),
                ),
            )
        }
        _ => (
            format!("nightshift: DAG {} run {} {verb}", req.dag_id, req.run_id),
            link(base_url, &req.dag_id, &req.run_id, None),
        ),
    };
    // A failed run names the instances that failed themselves, each with its error's
    // first line and its page; with exactly one, the alert's link is that task's page.
    let failed = failed_tasks(req, base_url);
    let link = match failed.as_slice() {
        [only] if req.kind == CallbackKind::DagRun => only.link.clone(),
        _ => link,
    };
    // An approval request links to the task page's approval form, and says its message.
    let link = match req.event {
        CallbackEvent::ApprovalRequested => format!("{link}#approval"),
        _ => link,
    };
    // A missed deadline says which deadline and when it fell (`detail`), not an error.
    let detail = error
        .or_else(|| req.payload.get("detail").and_then(Value::as_str))
        .or_else(|| req.payload.get("message").and_then(Value::as_str));
    let mut text = match detail {
        Some(detail) => format!("{text}: {detail}"),
        None => text,
    };
    if req.kind == CallbackKind::DagRun {
        for task in &failed {
            let error = task.error.as_deref().unwrap_or("no error recorded");
            text.push_str(&format!("\n• {}: {error}", task.name));
            if failed.len() > 1 {
                text.push_str(&format!(" {}", task.link));
            }
        }
    }
    let text = format!("{text}\n{link}");
    let mut event = json!({
        "kind": req.kind,
        "event": req.event,
        "dag_id": req.dag_id,
        "run_id": req.run_id,
        "task_id": req.task_id,
        "map_index": req.map_index,
        "try_number": req.try_number,
        "state": state,
        "error": error,
        "link": link,
        "text": text,
    });
    if let Some(event) = event.as_object_mut() {
        if !failed.is_empty() {
            let list: Vec<Value> = failed
                .iter()
                .map(|f| {
                    json!({
                        "task_id": f.task_id,
                        "map_index": f.map_index,
                        "error": f.error,
                        "link": f.link,
                    })
                })
                .collect();
            event.insert("failed".into(), Value::Array(list));
        }
    }
    if let (Some(event), Some(extra)) = (event.as_object_mut(), req.payload.as_object()) {
        for (key, value) in extra {
            event.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    (text, event)
}

/// A failed instance as a run alert shows it: `load` or `load[2]`, its error's first line,
/// its task page.
#[derive(Debug, Clone)]
struct FailedLink {
    task_id: String,
    map_index: i32,
    name: String,
    error: Option<String>,
    link: String,
}

/// The failed instances a run callback's payload lists (empty for any other callback).
fn failed_tasks(req: &CallbackRequest, base_url: &str) -> Vec<FailedLink> {
    let Some(list) = req.payload.get("failed").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|item| {
            let task_id = item.get("task_id")?.as_str()?.to_owned();
            let map_index = item
                .get("map_index")
                .and_then(Value::as_i64)
                .and_then(|m| i32::try_from(m).ok())
                .unwrap_or(UNMAPPED);
            let name = if map_index == UNMAPPED {
                task_id.clone()
            } else {
                format!("{task_id}[{map_index}]")
            };
            let link = link(
                base_url,
                &req.dag_id,
                &req.run_id,
                Some((&task_id, map_index)),
            );
            Some(FailedLink {
                error: item.get("error").and_then(Value::as_str).map(str::to_owned),
                task_id,
                map_index,
                name,
                link,
            })
        })
        .collect()
}

/// Claims due callback requests and sends them one after the other; returns how many
/// were sent. A failed send is recorded for a later attempt, or given up after
/// [`CALLBACK_ATTEMPTS`].
pub(crate) async fn send_due(
    store: &Store,
    http: &reqwest::Client,
    config: &SchedulerConfig,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let requests = store
        .claim_callbacks(&CallbackClaim {
            scheduler_id: config.id.clone(),
            limit: config.max_callbacks_per_tick,
            lease: CALLBACK_TIMEOUT * 3,
            now,
        })
        .await?;
    let mut sent = 0;
    for req in requests {
        let outcome = send_one(store, http, config, &req).await;
        let written = match outcome {
            Ok(()) => {
                sent += 1;
                store.callback_sent(req.id, now).await
            }
            Err(error) => {
                let retry_at = (req.attempts < CALLBACK_ATTEMPTS).then(|| {
                    now + chrono::TimeDelta::from_std(RETRY_STEP * req.attempts.max(1) as u32)
                        .unwrap_or_default()
                });
                tracing::warn!(callback_id = req.id, dag_id = %req.dag_id, run_id = %req.run_id,
                    attempt = req.attempts, gives_up = retry_at.is_none(), %error,
                    "callback not delivered");
                store
                    .callback_failed(&CallbackFailure {
                        id: req.id,
                        error,
                        retry_at,
                        now,
                    })
                    .await
            }
        };
        match written {
            Ok(()) => {}
            Err(err) if err.is_stale() => {
                tracing::debug!(error = %err, "callback changed meanwhile")
            }
            Err(err) => return Err(err),
        }
    }
    Ok(sent)
}

/// Sends one request; the error text never holds the URL (a webhook URL is a secret).
#[instrument(skip_all, fields(dag_id = %req.dag_id, run_id = %req.run_id,
    task_id = req.task_id.as_deref().unwrap_or(""), try_number = req.try_number))]
async fn send_one(
    store: &Store,
    http: &reqwest::Client,
    config: &SchedulerConfig,
    req: &CallbackRequest,
) -> Result<(), String> {
    let callback: Callback = serde_json::from_value(req.callback.clone())
        .map_err(|err| format!("the stored callback does not parse: {err}"))?;
    let run = store
        .get_run_by_run_id(&req.dag_id, &req.run_id)
        .await
        .map_err(|err| format!("reading the run: {err}"))?;
    let (logical_date, start, end, params) = match run {
        Some(run) => (
            run.logical_date,
            run.data_interval_start,
            run.data_interval_end,
            run.conf,
        ),
        None => (req.created_at, req.created_at, req.created_at, json!({})),
    };
    let ctx = TemplateContext::new(ContextParams {
        dag_id: req.dag_id.clone(),
        run_id: req.run_id.clone(),
        task_id: req.task_id.clone().unwrap_or_default(),
        logical_date,
        data_interval_start: start,
        data_interval_end: end,
        timezone: chrono_tz::UTC,
        try_number: u32::try_from(req.try_number).unwrap_or(0),
        map_index: u32::try_from(req.map_index).ok(),
        params,
        item: None,
        env: config.template_env.clone(),
        outputs: serde_json::Map::new(),
    });
    let (text, event) = message(req, &config.base_url);
    let request = match &callback {
        Callback::Slack { webhook } => {
            let url = render_str(webhook, &ctx).map_err(|err| format!("slack webhook: {err}"))?;
            http.post(url).json(&json!({ "text": text }))
        }
        Callback::Http {
            url,
            method,
            headers,
            json,
        } => {
            let url = render_str(url, &ctx).map_err(|err| format!("url: {err}"))?;
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("unknown HTTP method {method:?}"))?;
            let body = match json {
                Some(template) => {
                    render_value(template, &ctx).map_err(|err| format!("json: {err}"))?
                }
                None => event,
            };
            let mut request = http.request(method, url).json(&body);
            for (name, value) in headers {
                let value =
                    render_str(value, &ctx).map_err(|err| format!("header {name}: {err}"))?;
                request = request.header(name.as_str(), value);
            }
            request
        }
    };
    let response = request
        .timeout(CALLBACK_TIMEOUT)
        .send()
        .await
        .map_err(|err| format!("request failed: {}", err.without_url()))?;
    let status = response.status();
    if status.is_success() {
        tracing::info!(callback_id = req.id, %status, "callback sent");
        Ok(())
    } else {
        Err(format!("the callback answered HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        let cases = [
            (
                "http://127.0.0.1:8080/",
                "d",
                "scheduled__2026-01-01T00:00:00+00:00",
                Some(("t", -1)),
                "http://127.0.0.1:8080/dags/d/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/t?map_index=-1",
            ),
            (
                "https://ns.example",
                "a b",
                "r/1",
                None,
                "https://ns.example/dags/a%20b/runs/r%2F1",
            ),
            ("http://h", "d", "r", Some(("x.y", 3)), "http://h/dags/d/runs/r/tasks/x.y?map_index=3"),
        ];
        for (base, dag, run, task, expected) in cases {
            assert_eq!(link(base, dag, run, task), expected);
        }
    }
}

#[cfg(test)]
mod approval_tests {
    use super::*;

    #[test]
    fn an_approval_request_links_to_the_form_and_says_its_message() {
        let req = CallbackRequest {
            id: 1,
            created_at: Utc::now(),
            kind: CallbackKind::Task,
            event: CallbackEvent::ApprovalRequested,
            dag_id: "gate".into(),
            run_id: "r1".into(),
            task_id: Some("ask".into()),
            map_index: UNMAPPED,
            try_number: 1,
            callback: json!({}),
            payload: json!({
                "state": "awaiting_input",
                "error": null,
                "message": "Publish 42 lessons?",
                "timeout_at": null,
            }),
            state: nightshift_store::CallbackState::Pending,
            attempts: 0,
            last_error: None,
            sent_at: None,
            next_attempt_at: None,
            claimed_by: None,
        };
        let (text, event) = message(&req, "http://ns.test/");
        let link = "http://ns.test/dags/gate/runs/r1/tasks/ask?map_index=-1#approval";
        assert_eq!(
            text,
            format!("nightshift: task ask of DAG gate run r1 awaits approval: Publish 42 lessons?\n{link}")
        );
        assert_eq!(event["link"], link);
        assert_eq!(event["event"], "approval_requested");
        assert_eq!(event["message"], "Publish 42 lessons?");
    }
}
