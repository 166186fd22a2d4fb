//! Approval steps end to end on both backends: the real loader, scheduler and worker (in
//! process, the worker with one slot), the web app's UI form and the real CLI binary.
//! An `approval` task asks once and then awaits input without a worker slot (another task
//! runs meanwhile); an operator's approval in the UI runs its downstream, which reads the
//! decision from `outputs`; the CLI approves and rejects; the timeout decides as
//! `on_timeout` says, driven by the scheduler's `now`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use nightshift_core::state::{RunState, TaskState};
use nightshift_scheduler::{Scheduler, SchedulerConfig};
use nightshift_store::{AuditFilter, DagRun, NewSession, NewUser, Role, Store, TaskInstance};
use nightshift_testkit::Service;
use nightshift_worker::WorkerConfig;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

mod inprocess;
use inprocess::{instance, load_folder, quick_worker, run_finished, start_scheduler, wait_until};

/// How long a test waits for what it follows.
const LIMIT: Duration = Duration::from_secs(60);

nightshift_testkit::both_backends_with_url!(
    an_operator_approves_in_the_ui_and_the_downstream_runs_while_no_slot_is_held,
    the_cli_approves_and_rejects,
    timeouts_decide_as_on_timeout_says,
);

/// A worker with one slot.
fn start_worker(store: &Store) -> Service {
    let config = WorkerConfig {
        concurrency: 1,
        ..quick_worker("w1", "approval-host")
    };
    inprocess::start_worker(store, config)
}

/// Loads `toml` as DAG `gate` from a fresh DAG folder.
async fn load(store: &Store, toml: &str) -> tempfile::TempDir {
    let (dir, errors) = load_folder(store, &[("gate.toml", toml)]).await;
    assert!(errors.is_empty(), "{errors:?}");
    dir
}

/// A queued manual run `run_id` of `gate` (a scheduler starts it).
async fn trigger(store: &Store, run_id: &str) -> DagRun {
    inprocess::trigger(store, "gate", Some(run_id), None).await
}

fn state(instances: &[TaskInstance], task_id: &str) -> TaskState {
    instance(instances, task_id).state
}

/// What a try printed on stdout.
async fn stdout(store: &Store, ti: &TaskInstance) -> Vec<String> {
    store
        .read_logs(ti.id, ti.try_number, 0, 1_000)
        .await
        .expect("logs")
        .into_iter()
        .filter(|row| row.stream == "stdout")
        .map(|row| row.line)
        .collect()
}

fn hex_sha256(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signed-in browser session of a new user `name` with `role`: (cookie, CSRF token).
async fn session(store: &Store, name: &str, role: Role) -> (String, String) {
    let now = Utc::now();
    let user = store
        .create_user(&NewUser {
            username: name.to_owned(),
            password_hash: nightshift_web::hash_password("a long enough password").expect("hash"),
            role,
            now,
        })
        .await
        .expect("user");
    let (cookie, csrf) = (format!("cookie-of-{name}"), format!("csrf-of-{name}"));
    store
        .create_session(&NewSession {
            token_hash: hex_sha256(&cookie),
            user_id: user.id,
            csrf_token: csrf.clone(),
            ip: None,
            now,
            expires_at: now + TimeDelta::hours(1),
        })
        .await
        .expect("session");
    (cookie, csrf)
}

/// Posts the task page's approval form as a browser would.
async fn post_form(app: &axum::Router, path: &str, cookie: &str, form: &str) -> StatusCode {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::COOKIE, format!("nightshift_session={cookie}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .expect("request");
    app.clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

const UI_DAG: &str = r#"
[tasks.ask]
type = "approval"
message = "Publish the marts of {{ ds }}?"
priority = 10

[tasks.after]
type = "command"
depends_on = ["ask"]
command = "echo approved-by={{ outputs.ask.by }} comment={{ outputs.ask.comment }}"

[tasks.unrelated]
type = "command"
command = "echo unrelated"
priority = 1
"#;

/// The done-when: the approval awaits input holding no slot (the worker's one slot runs
/// the unrelated task); a viewer's post is refused; an operator approves in the UI; the
/// downstream runs and reads who approved and why.
async fn an_operator_approves_in_the_ui_and_the_downstream_runs_while_no_slot_is_held(
    store: Store,
    _url: String,
) {
    let _dir = load(&store, UI_DAG).await;
    let run = trigger(&store, "manual__ui").await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store);

    let instances = wait_until(
        &store,
        &run,
        "the approval to ask and the other task to run",
        LIMIT,
        |tis| {
            state(tis, "ask") == TaskState::AwaitingInput
                && state(tis, "unrelated") == TaskState::Success
        },
    )
    .await;
    let ask = instance(&instances, "ask");
    assert_eq!(ask.lease_owner, None, "no worker slot is held: {ask:?}");
    assert_eq!(state(&instances, "after"), TaskState::Pending);
    let message = ask.output.as_ref().and_then(|o| o["message"].as_str());
    let message = message.unwrap_or_default();
    assert!(
        message.starts_with("Publish the marts of 20") && !message.contains("{{"),
        "the message is rendered: {message}"
    );
    let attempts = store.list_attempts(ask.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].end_date, None,
        "the try goes on until the decision"
    );

    let app = nightshift_web::app(nightshift_web::AppState {
        store: store.clone(),
        settings: nightshift_web::WebSettings::default(),
        metrics: None,
        login: Default::default(),
    });
    let path = "/dags/gate/runs/manual__ui/tasks/ask/approval";
    let (viewer, viewer_csrf) = session(&store, "vera", Role::Viewer).await;
    let form = format!("decision=approve&comment=no&map_index=-1&csrf={viewer_csrf}");
    assert_eq!(
        post_form(&app, path, &viewer, &form).await,
        StatusCode::FORBIDDEN
    );
    let ask_now = nightshift_testkit::instance(&store, ask.id).await;
    assert_eq!(
        ask_now.state,
        TaskState::AwaitingInput,
        "a viewer cannot decide"
    );

    let (operator, csrf) = session(&store, "otto", Role::Operator).await;
    let form = format!("decision=approve&comment=numbers+look+right&map_index=-1&csrf={csrf}");
    assert_eq!(
        post_form(&app, path, &operator, &form).await,
        StatusCode::SEE_OTHER
    );

    let instances = wait_until(&store, &run, "the downstream to run", LIMIT, |tis| {
        state(tis, "after") == TaskState::Success
    })
    .await;
    let ask = instance(&instances, "ask");
    assert_eq!(ask.state, TaskState::Success);
    let output = ask.output.clone().expect("output");
    assert_eq!(output["decision"], "approved");
    assert_eq!(output["by"], "otto");
    assert_eq!(output["comment"], "numbers look right");
    assert_eq!(
        stdout(&store, instance(&instances, "after")).await,
        ["approved-by=otto comment=numbers look right"]
    );
    let audit = store
        .list_audit(&AuditFilter {
            action: Some("task.approve".to_owned()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].actor, "otto");
    assert_eq!(audit[0].task_id.as_deref(), Some("ask"));
    assert_eq!(audit[0].details["comment"], "numbers look right");
    let run = run_finished(&store, &run).await;
    assert_eq!(run.state, RunState::Success);
    worker.stop().await;
    scheduler.stop().await;
}

const CLI_DAG: &str = r#"
[tasks.ask_a]
type = "approval"

[tasks.after_a]
type = "command"
depends_on = ["ask_a"]
command = "echo {{ outputs.ask_a.decision }}"

[tasks.ask_b]
type = "approval"
retries = 2

[tasks.after_b]
type = "command"
depends_on = ["ask_b"]
command = "echo never"
"#;

/// `nightshift tasks approve|reject gate manual__cli TASK [--comment …]`, the real binary.
fn cli(url: &str, dags: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["tasks"];
    all.extend_from_slice(args);
    all.push("--no-migrate");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(&all)
        .env("NIGHTSHIFT_DATABASE_URL", url)
        .env("NIGHTSHIFT_DAGS_FOLDER", dags)
        .env("NIGHTSHIFT_LOG_LEVEL", "warn")
        .output()
        .expect("run nightshift");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn the_cli_approves_and_rejects(store: Store, url: String) {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["tasks", "approve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--comment"), "{help}");
    let dir = load(&store, CLI_DAG).await;
    let run = trigger(&store, "manual__cli").await;
    let scheduler = start_scheduler(&store);
    let worker = start_worker(&store);
    wait_until(&store, &run, "both approvals to ask", LIMIT, |tis| {
        state(tis, "ask_a") == TaskState::AwaitingInput
            && state(tis, "ask_b") == TaskState::AwaitingInput
    })
    .await;

    // Deciding a task that does not await input is refused with the reason.
    let (ok, text) = cli(
        &url,
        dir.path(),
        &["approve", "gate", "manual__cli", "after_a"],
    );
    assert!(!ok && text.contains("not an approval"), "{text}");

    let (ok, text) = cli(
        &url,
        dir.path(),
        &[
            "reject",
            "gate",
            "manual__cli",
            "ask_b",
            "--comment",
            "not tonight",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &url,
        dir.path(),
        &["approve", "gate", "manual__cli", "ask_a"],
    );
    assert!(ok, "{text}");
    // A second decision loses.
    let (ok, text) = cli(
        &url,
        dir.path(),
        &["approve", "gate", "manual__cli", "ask_a"],
    );
    assert!(!ok && text.contains("does not await input"), "{text}");

    let run = run_finished(&store, &run).await;
    assert_eq!(run.state, RunState::Failed, "after_b never ran");
    let instances = store.list_task_instances(run.id).await.expect("instances");
    assert_eq!(state(&instances, "after_a"), TaskState::Success);
    assert_eq!(
        stdout(&store, instance(&instances, "after_a")).await,
        ["approved"]
    );
    let ask_b = instance(&instances, "ask_b");
    assert_eq!(
        (ask_b.state, ask_b.try_number),
        (TaskState::Failed, 1),
        "a rejection spends no retry"
    );
    assert_eq!(state(&instances, "after_b"), TaskState::UpstreamFailed);
    // The CLI decides as `cli:<OS user>`.
    let audit: Vec<_> = store
        .list_audit(&AuditFilter::default())
        .await
        .expect("audit")
        .into_iter()
        .filter(|a| a.action.starts_with("task."))
        .collect();
    let decided: Vec<(&str, &str, Option<&str>)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str(), a.task_id.as_deref()))
        .collect();
    let actor = audit[0].actor.clone();
    assert!(actor.starts_with("cli:"), "{decided:?}");
    assert_eq!(
        decided,
        [
            ("task.approve", actor.as_str(), Some("ask_a")),
            ("task.reject", actor.as_str(), Some("ask_b"))
        ],
        "newest first"
    );
    assert_eq!(audit[1].details["comment"], "not tonight");
    let attempts = store.list_attempts(ask_b.id).await.expect("attempts");
    assert_eq!(
        attempts[0].error.clone(),
        Some(format!("rejected by {actor}: not tonight"))
    );
    let output = ask_b.output.clone().expect("output");
    assert_eq!(output["decision"], "rejected");
    assert_eq!(output["by"], actor.as_str());
    worker.stop().await;
    scheduler.stop().await;
}

const TIMEOUT_DAG: &str = r#"
[defaults]
timeout = "1h"
retry_delay = "1s"

[tasks.approves]
type = "approval"
on_timeout = "approve"

[tasks.after_approves]
type = "noop"
depends_on = ["approves"]

[tasks.rejects]
type = "approval"
on_timeout = "reject"
retries = 1

[tasks.fails]
type = "approval"
on_timeout = "fail"
retries = 1
"#;

/// Ticks `scheduler` at `now` until `done` holds for the run's instances (the worker runs
/// meanwhile, at its own pace).
async fn tick_until(
    scheduler: &Scheduler,
    store: &Store,
    run: &DagRun,
    now: impl Fn() -> DateTime<Utc>,
    what: &str,
    done: impl Fn(&[TaskInstance]) -> bool,
) -> Vec<TaskInstance> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        scheduler.tick(now()).await.expect("tick");
        let instances = store.list_task_instances(run.id).await.expect("instances");
        if done(&instances) {
            return instances;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {instances:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nobody decides within the hour: at the scheduler's `now` past it, `approve` approves
/// (its downstream runs), `reject` rejects (no retry), and `fail` fails the try, whose
/// retry asks again and fails at the next timeout.
async fn timeouts_decide_as_on_timeout_says(store: Store, _url: String) {
    let _dir = load(&store, TIMEOUT_DAG).await;
    let run = trigger(&store, "manual__timeouts").await;
    let scheduler = Scheduler::new(
        store.clone(),
        SchedulerConfig {
            id: "s1".to_owned(),
            ..SchedulerConfig::new("http://ns.test")
        },
    );
    let worker = start_worker(&store);
    let asking = ["approves", "rejects", "fails"];
    tick_until(
        &scheduler,
        &store,
        &run,
        Utc::now,
        "every approval to ask",
        |tis| {
            asking
                .iter()
                .all(|t| state(tis, t) == TaskState::AwaitingInput)
        },
    )
    .await;
    // Before the hour is up nothing is decided.
    let report = scheduler
        .tick(Utc::now() + TimeDelta::minutes(59))
        .await
        .expect("tick");
    assert_eq!(report.approvals_timed_out, 0);
    // Two hours on: the timeouts decide; the retried `fails` asks again and times out too.
    let later = || Utc::now() + TimeDelta::hours(2);
    let instances = tick_until(&scheduler, &store, &run, later, "the timeouts", |tis| {
        state(tis, "after_approves") == TaskState::Success
            && state(tis, "rejects") == TaskState::Failed
            && state(tis, "fails") == TaskState::Failed
    })
    .await;
    let approves = instance(&instances, "approves");
    assert_eq!(approves.state, TaskState::Success);
    let output = approves.output.clone().expect("output");
    assert_eq!(
        (&output["decision"], &output["by"]),
        (&"approved".into(), &"timeout".into())
    );
    let rejects = instance(&instances, "rejects");
    assert_eq!(rejects.try_number, 1, "a rejection is not retried");
    let attempts = store.list_attempts(rejects.id).await.expect("attempts");
    let error = attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.starts_with("rejected by timeout: nobody decided within"),
        "{error}"
    );
    let fails = instance(&instances, "fails");
    let attempts = store.list_attempts(fails.id).await.expect("attempts");
    assert_eq!(
        attempts.iter().map(|a| a.state).collect::<Vec<_>>(),
        [TaskState::UpForRetry, TaskState::Failed],
        "the retry asked again: {attempts:?}"
    );
    for a in &attempts {
        let error = a.error.clone().unwrap_or_default();
        assert!(
            error.starts_with("timed out waiting for approval"),
            "{error}"
        );
    }
    let audit = store
        .list_audit(&AuditFilter {
            actor: Some("timeout".to_owned()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 4, "{audit:?}");
    worker.stop().await;
}
