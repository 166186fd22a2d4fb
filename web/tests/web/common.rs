//! Shared fixtures: the both-backends macro, a seeded store (a DAG with a run whose first
//! task failed, with a log), users of each role with API tokens and sessions, and request
//! helpers.

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use nightshift_core::dag::Dag;
use nightshift_core::state::{RunState, TaskEvent, TaskState};
use nightshift_store::{
    AuditRecord, ClaimRequest, DagRun, LogLine, NewApiToken, NewSession, NewUser, Pool, Role,
    RunType, RunningTry, Store, TaskInstance, Transition, TriggerParams, TryOutcome, User,
};
use nightshift_web::{app, hash_password, AppState, Metrics, WebSettings};
use serde_json::Value;
use tower::ServiceExt;

/// The SQLite bodies run on two worker threads.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        nightshift_testkit::both_backends!(worker_threads = 2; $($name),+);
    };
}
pub(crate) use both_backends;

/// The process-wide metrics recorder, installed once for every test of this binary.
pub fn metrics() -> Metrics {
    static METRICS: LazyLock<Metrics> =
        LazyLock::new(|| Metrics::install().expect("install the metrics recorder"));
    METRICS.clone()
}

pub const DAG_ID: &str = "nightly";
pub const PASSWORD: &str = "correct horse battery";

/// One Argon2 hash for every test user (hashing is slow on purpose).
static HASH: LazyLock<String> = LazyLock::new(|| hash_password(PASSWORD).expect("hash"));

const DAG_TOML: &str = r#"
description = "the nightly test pipeline"
tags = ["nightly"]
schedule = "0 3 * * *"
timezone = "Asia/Tokyo"
start_date = "2026-01-01"

[params]
target = "prod"

[defaults]
retries = 0

[tasks.extract]
type = "command"
command = "echo extract"

[tasks.fanout]
type = "noop"
depends_on = ["extract"]
for_each = ["a", "b"]

[tasks.load]
type = "noop"
depends_on = ["fanout"]
"#;

pub use nightshift_testkit::t;

/// A browser session: the cookie's secret and the CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Fixture {
    pub app: Router,
    pub store: Store,
    pub viewer: String,
    pub operator: String,
    pub admin: String,
    pub viewer_session: Session,
    pub operator_session: Session,
    pub admin_session: Session,
    /// The run whose `extract` failed (try 1, with a log).
    pub run_id: String,
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// The cookie, and the CSRF header when `true`.
    Session(&'a Session, bool),
}

async fn user_with_access(store: &Store, name: &str, role: Role) -> (String, Session) {
    let now = Utc::now();
    let user = store
        .create_user(&NewUser {
            username: name.to_owned(),
            password_hash: HASH.clone(),
            role,
            now,
        })
        .await
        .expect("create user");
    let token = format!("token-of-{name}");
    store
        .create_api_token(&NewApiToken {
            token_hash: hex_sha256(&token),
            user_id: user.id,
            name: "test".to_owned(),
            now,
            expires_at: None,
        })
        .await
        .expect("create token");
    let session = Session {
        cookie: format!("session-of-{name}"),
        csrf: format!("csrf-of-{name}"),
    };
    open_session(store, user.id, &session).await;
    (token, session)
}

/// Stores `session` (its cookie and CSRF token) for the user `user_id`, valid for an hour.
pub async fn open_session(store: &Store, user_id: i64, session: &Session) {
    let now = Utc::now();
    store
        .create_session(&NewSession {
            token_hash: hex_sha256(&session.cookie),
            user_id,
            csrf_token: session.csrf.clone(),
            ip: None,
            now,
            expires_at: now + chrono::TimeDelta::hours(1),
        })
        .await
        .expect("create session");
}

pub fn hex_sha256(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored definition of DAG `dag_id`.
pub async fn load_dag_named(store: &Store, dag_id: &str) -> Dag {
    let record = store.get_dag(dag_id).await.expect("get").expect("stored");
    serde_json::from_value(record.definition).expect("definition")
}

/// The DAG, loaded as the scheduler's loader stores it.
pub async fn load_dag(store: &Store) -> Dag {
    nightshift_testkit::seed_dag(store, "dags/nightly.toml", DAG_TOML).await
}

/// Triggers the run `run_id` of `dag` for `logical_date` and starts it (`queued` to
/// `running`), as the scheduler would.
pub async fn started_run(
    store: &Store,
    dag: &Dag,
    run_id: &str,
    run_type: RunType,
    logical_date: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DagRun {
    let run = store
        .trigger_run(
            dag,
            &TriggerParams {
                run_id: Some(run_id.to_owned()),
                logical_date: Some(logical_date),
                data_interval: None,
                conf: Value::Null,
                run_type,
                now,
            },
        )
        .await
        .expect("trigger");
    store
        .set_run_state(run.id, RunState::Queued, RunState::Running, now)
        .await
        .expect("run starts");
    run
}

/// Schedules and queues `task_id` of `run` and claims its try as `worker-1` on `host-1`:
/// the instance's id and the running try.
pub async fn claim_task(
    store: &Store,
    run: i64,
    task_id: &str,
    now: DateTime<Utc>,
) -> (i64, RunningTry) {
    let ti = store
        .find_task_instance(run, task_id, -1)
        .await
        .expect("find")
        .unwrap_or_else(|| panic!("{task_id} exists"));
    let mut state = ti.state;
    for event in [TaskEvent::Schedule, TaskEvent::Queue] {
        let transition = Transition::on(ti.id, state, 0, event, now).expect("legal");
        let next = transition.new_state();
        store.transition(&transition).await.expect("transition");
        state = next;
    }
    let claimed = store
        .claim(&ClaimRequest {
            hostname: "host-1".to_owned(),
            ..nightshift_testkit::claim_request("worker-1", now)
        })
        .await
        .expect("claim")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("claimed {task_id}"));
    assert_eq!(claimed.instance().task_id, task_id);
    (ti.id, claimed)
}

/// A run of the DAG whose `extract` ran once and failed with a log.
async fn failed_run(store: &Store, dag: &Dag) -> String {
    let now = t("2026-01-02T03:00:00Z");
    let run = started_run(
        store,
        dag,
        "scheduled__2026-01-01",
        RunType::Scheduled,
        t("2026-01-01T18:00:00Z"),
        now,
    )
    .await;
    let (ti_id, claimed) = claim_task(store, run.id, "extract", now).await;
    let lines: Vec<LogLine> = (0..5)
        .map(|i| LogLine {
            ts: now,
            stream: if i == 4 { "stderr" } else { "stdout" }.to_owned(),
            line: format!("extract line {i}"),
        })
        .collect();
    store.append_logs(ti_id, 1, &lines).await.expect("logs");
    claimed
        .finish(TryOutcome {
            new_state: TaskState::Failed,
            error: Some("command exited with code 3".to_owned()),
            exit_code: Some(3),
            output: None,
            next_retry_at: None,
            now,
            callback: None,
            progress: Default::default(),
        })
        .await
        .expect("finish");
    run.run_id
}

pub async fn fixture(store: Store) -> Fixture {
    let dag = load_dag(&store).await;
    let run_id = failed_run(&store, &dag).await;
    let (viewer, viewer_session) = user_with_access(&store, "vera", Role::Viewer).await;
    let (operator, operator_session) = user_with_access(&store, "otto", Role::Operator).await;
    let (admin, admin_session) = user_with_access(&store, "ada", Role::Admin).await;
    let app = app(AppState {
        store: store.clone(),
        settings: WebSettings::default(),
        metrics: Some(metrics()),
        login: Default::default(),
    });
    Fixture {
        app,
        store,
        viewer,
        operator,
        admin,
        viewer_session,
        operator_session,
        admin_session,
        run_id,
    }
}

/// Requests to the fixture's app: the free functions of the same names on `self.app`, and
/// the admin's usual requests.
impl Fixture {
    /// Posts `fields` (already encoded) as `session`, with its CSRF token.
    pub async fn post_as(&self, session: &Session, path: &str, fields: &str) -> Reply {
        let form = format!("{fields}&csrf={}", session.csrf);
        self.post_form(path, Auth::Session(session, false), &form)
            .await
    }

    /// Posts `fields` (already encoded) as the admin's session, with its CSRF token.
    pub async fn admin_post(&self, path: &str, fields: &str) -> Reply {
        self.post_as(&self.admin_session, path, fields).await
    }

    /// The user `name`, who must exist.
    pub async fn user(&self, name: &str) -> User {
        let user = self.store.get_user_by_name(name).await.expect("get user");
        user.unwrap_or_else(|| panic!("no user {name}"))
    }

    /// The run `run_id` of the fixture's DAG, which must exist.
    pub async fn run(&self, run_id: &str) -> DagRun {
        let run = self.store.get_run_by_run_id(DAG_ID, run_id).await;
        run.expect("get run")
            .unwrap_or_else(|| panic!("no run {run_id}"))
    }

    /// The instance `task_id` (unmapped) of the run with the row id `run`.
    pub async fn instance(&self, run: i64, task_id: &str) -> TaskInstance {
        let ti = self.store.find_task_instance(run, task_id, -1).await;
        ti.expect("find").unwrap_or_else(|| panic!("no {task_id}"))
    }

    /// Every audit entry, newest first.
    pub async fn audit(&self) -> Vec<AuditRecord> {
        let all = self.store.list_audit(&Default::default()).await;
        all.expect("audit")
    }

    /// The pool `name`, if there is one.
    pub async fn pool(&self, name: &str) -> Option<Pool> {
        self.store.get_pool(name).await.expect("get pool")
    }

    /// Posts `fields` as the admin, which must be done: a redirect (303).
    pub async fn admin_done(&self, path: &str, fields: &str) -> Reply {
        let reply = self.admin_post(path, fields).await;
        let text = reply.text();
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{path} {fields}: {text}"
        );
        reply
    }

    /// PATCHes the user `name` through the API with the admin's token.
    pub async fn admin_patch_user(&self, name: &str, body: &Value) -> Reply {
        let path = format!("/api/v1/users/{name}");
        self.call(Method::PATCH, &path, Auth::Bearer(&self.admin), body)
            .await
    }

    pub async fn get(&self, path: &str, auth: Auth<'_>) -> Reply {
        get(&self.app, path, auth).await
    }

    pub async fn call(&self, method: Method, path: &str, auth: Auth<'_>, body: &Value) -> Reply {
        call(&self.app, method, path, auth, body).await
    }

    pub async fn post_form(&self, path: &str, auth: Auth<'_>, form: &str) -> Reply {
        post_form(&self.app, path, auth, form).await
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Where a redirect points: the `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a problem document with this status and returns its detail.
    pub fn problem(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let doc = self.json();
        assert_eq!(doc["status"], status.as_u16());
        assert!(doc["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:nightshift:problem:")));
        assert!(doc["title"].is_string());
        doc["detail"].as_str().expect("detail").to_owned()
    }
}

pub fn request(
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Body,
    content_type: &str,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Bearer(token) => {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Auth::Session(session, with_csrf) => {
            builder = builder.header(
                header::COOKIE,
                format!("nightshift_session={}", session.cookie),
            );
            if with_csrf {
                builder = builder.header("x-csrf-token", &session.csrf);
            }
        }
    }
    builder
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .expect("request")
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(app: &Router, path: &str, auth: Auth<'_>) -> Reply {
    send(
        app,
        request(Method::GET, path, auth, Body::empty(), "text/plain"),
    )
    .await
}

pub async fn call(app: &Router, method: Method, path: &str, auth: Auth<'_>, body: &Value) -> Reply {
    let req = request(
        method,
        path,
        auth,
        Body::from(body.to_string()),
        "application/json",
    );
    send(app, req).await
}

/// Posts an HTML form (`key=value&…`, already encoded).
pub async fn post_form(app: &Router, path: &str, auth: Auth<'_>, form: &str) -> Reply {
    let req = request(
        Method::POST,
        path,
        auth,
        Body::from(form.to_owned()),
        "application/x-www-form-urlencoded",
    );
    send(app, req).await
}

/// `html` with the entities minijinja's escaping writes turned back into characters.
pub fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
