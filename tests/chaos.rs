//! The chaos suite: two schedulers and three workers (separate processes of the real
//! binary) on a private PostgreSQL server run a mixed workload while processes are
//! SIGKILLed and restarted every few seconds and PostgreSQL itself is stopped and
//! started. Every command task appends to a ledger file when it starts and when it ends;
//! afterwards the ledger and the database are checked against each other:
//!
//! - every DAG run finished, in the state its definition implies, and so did every task
//!   instance;
//! - no try of a task ran twice, and no two tries of one task instance overlapped in time;
//! - every try recorded as `success` or `failed` by its worker ran and ended as recorded,
//!   and no try reaped for a lost lease is recorded as a success;
//! - no process exited or panicked on its own.
//!
//! `NIGHTSHIFT_CHAOS_SECS` sets how long the chaos lasts (default 60; run it for 30
//! minutes or more by hand, see docs/operations.md). The summary is printed either way.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::pg_server::PgServer;
use common::Env;
use rand::seq::IndexedRandom;
use rand::Rng;

/// The DAGs of the workload: every command task writes `start` and `end` ledger lines.
fn workload() -> Vec<(&'static str, String)> {
    let defaults = "[defaults]\nretries = 8\nretry_delay = \"1s\"\n\n";
    let mut chain = format!("max_active_runs = 4\n{defaults}");
    for i in 0..10 {
        chain.push_str(&format!(
            "[tasks.c{i:02}]\ntype = \"command\"\ncommand = \"{}\"\n",
            ledger(0.3, "0")
        ));
        if i > 0 {
            chain.push_str(&format!("depends_on = [\"c{:02}\"]\n", i - 1));
        }
    }
    let mut fan = format!("max_active_runs = 2\nmax_active_tasks = 64\n{defaults}");
    fan.push_str(&format!(
        "[tasks.start]\ntype = \"command\"\ncommand = \"{}\"\n",
        ledger(0.0, "0")
    ));
    for i in 0..200 {
        fan.push_str(&format!(
            "[tasks.f{i:03}]\ntype = \"command\"\ndepends_on = [\"start\"]\ncommand = \"{}\"\n",
            ledger(0.05, "0")
        ));
    }
    let all: Vec<String> = (0..200).map(|i| format!("\"f{i:03}\"")).collect();
    fan.push_str(&format!(
        "[tasks.end]\ntype = \"command\"\ndepends_on = [{}]\ncommand = \"{}\"\n",
        all.join(", "),
        ledger(0.0, "0")
    ));
    let list = format!("echo '[1, 2, 3, 4, 5, 6, 7, 8]'; {}", ledger(0.0, "0"));
    let mapped = format!(
        "max_active_runs = 3\n{defaults}\
         [tasks.each]\ntype = \"command\"\nfor_each = [{items}]\ncommand = \"{each}\"\n\
         [tasks.list]\ntype = \"command\"\ncommand = \"{list}\"\n\
         [tasks.each_output]\ntype = \"command\"\nfor_each = {{ from = \"list\" }}\ncommand = \"{each}\"\n\
         [tasks.after]\ntype = \"command\"\ndepends_on = [\"each\", \"each_output\"]\ncommand = \"{after}\"\n",
        items = (0..30).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        each = ledger(0.2, "0"),
        after = ledger(0.0, "0"),
    );
    let flaky = format!(
        "max_active_runs = 3\n{defaults}\
         [tasks.flaky]\ntype = \"command\"\ncommand = \"{flaky}\"\n\
         [tasks.after]\ntype = \"command\"\ndepends_on = [\"flaky\"]\ncommand = \"{after}\"\n",
        flaky = ledger(
            0.2,
            "$([ $NIGHTSHIFT_TRY_NUMBER -ge 3 ] && echo 0 || echo 1)"
        ),
        after = ledger(0.0, "0"),
    );
    let failing = format!(
        "max_active_runs = 3\n{defaults}\
         [tasks.boom]\ntype = \"command\"\nretries = 1\ncommand = \"{boom}\"\n\
         [tasks.never]\ntype = \"command\"\ndepends_on = [\"boom\"]\ncommand = \"{ok}\"\n\
         [tasks.cleanup]\ntype = \"command\"\ndepends_on = [\"boom\"]\ntrigger_rule = \"all_done\"\ncommand = \"{ok}\"\n",
        boom = ledger(0.2, "3"),
        ok = ledger(0.0, "0"),
    );
    vec![
        ("chain", chain),
        ("fan", fan),
        ("mapped", mapped),
        ("flaky", flaky),
        ("failing", failing),
    ]
}

/// A command that records its start, sleeps, records its end and exits with `code` (a
/// shell word). `$PPID` is the worker that runs it.
fn ledger(sleep: f64, code: &str) -> String {
    let who = "$NIGHTSHIFT_DAG_ID $NIGHTSHIFT_RUN_ID $NIGHTSHIFT_TASK_ID $NIGHTSHIFT_MAP_INDEX $NIGHTSHIFT_TRY_NUMBER $PPID";
    format!(
        "code={code}; echo \\\"start {who} $(date +%s%N)\\\" >> $CHAOS_LEDGER; sleep {sleep}; \
         echo \\\"end {who} $code $(date +%s%N)\\\" >> $CHAOS_LEDGER; exit $code"
    )
}

/// What each task instance must end as.
fn expected_state(dag: &str, task: &str) -> &'static str {
    match (dag, task) {
        ("failing", "boom") => "failed",
        ("failing", "never") => "upstream_failed",
        _ => "success",
    }
}

fn expected_run_state(dag: &str) -> &'static str {
    if dag == "failing" {
        "failed"
    } else {
        "success"
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[derive(Default)]
struct Summary {
    kills: usize,
    db_outages: usize,
    triggers: usize,
    failed_triggers: usize,
    runs: usize,
    task_instances: usize,
    attempts: usize,
    executions: usize,
    reaped: usize,
    /// Executions stopped without an end line while their worker lived (fenced by a
    /// lost lease): when they died is unknown, so they cannot be checked for overlap.
    fenced: usize,
    violations: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Scheduler,
    Worker,
}

#[test]
fn chaos_loses_nothing_and_never_runs_a_try_twice() {
    let chaos_for = Duration::from_secs(
        std::env::var("NIGHTSHIFT_CHAOS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let server = PgServer::start();
    let url = server.create_database("chaos");
    let mut env = Env::on_database(url.clone());
    let ledger_path = env.path().join("ledger");
    env.set_env("CHAOS_LEDGER", &ledger_path.display().to_string());
    env.set_env("NIGHTSHIFT_WORKER_LEASE", "4s");
    env.set_env("NIGHTSHIFT_WORKER_CONCURRENCY", "12");
    for (name, source) in workload() {
        env.write_dag(&format!("{name}.toml"), &source);
    }
    env.ok(&["db", "migrate"]);
    env.ok(&["dags", "list"]);

    let mut procs: Vec<(Role, u32)> = Vec::new();
    for _ in 0..2 {
        procs.push((Role::Scheduler, env.spawn(&["scheduler"])));
    }
    for _ in 0..3 {
        procs.push((Role::Worker, env.spawn(&["worker"])));
    }

    let mut summary = Summary::default();
    // Every process: (pid, started, killed). Pids are reused over a long run, so an
    // execution's worker is the process with its pid that was alive when it started.
    let mut lives: Vec<(u32, u128, Option<u128>)> =
        procs.iter().map(|(_, pid)| (*pid, 0, None)).collect();
    let mut rng = rand::rng();
    let started = Instant::now();
    let outage_at = chaos_for.mul_f64(0.4);
    let mut outage_done = false;
    let mut next_trigger = Instant::now();

    while started.elapsed() < chaos_for {
        if Instant::now() >= next_trigger {
            for (dag, _) in workload() {
                summary.triggers += 1;
                let out = env.run(&["dags", "trigger", dag], Duration::from_secs(60));
                if !out.status.success() {
                    summary.failed_triggers += 1;
                }
            }
            next_trigger = Instant::now() + Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..4000)));
        check_exits(&mut env, &mut summary);

        if !outage_done && started.elapsed() >= outage_at {
            // PostgreSQL goes away for a few seconds with every connection cut, then
            // comes back: every process must ride it out.
            server.stop();
            std::thread::sleep(Duration::from_secs(3));
            server.start_again();
            summary.db_outages += 1;
            outage_done = true;
            continue;
        }

        let victim = *procs.choose(&mut rng).expect("processes");
        env.kill(victim.1);
        let killed = now_ns();
        if let Some(life) = lives
            .iter_mut()
            .rev()
            .find(|(pid, _, end)| *pid == victim.1 && end.is_none())
        {
            life.2 = Some(killed);
        }
        summary.kills += 1;
        let replacement = match victim.0 {
            Role::Scheduler => env.spawn(&["scheduler"]),
            Role::Worker => env.spawn(&["worker"]),
        };
        lives.push((replacement, now_ns(), None));
        procs.retain(|p| p.1 != victim.1);
        procs.push((victim.0, replacement));
    }

    // Calm: everything still running finishes.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        check_exits(&mut env, &mut summary);
        let unfinished = psql(
            &url,
            "SELECT count(*) FROM dag_runs WHERE state NOT IN ('success', 'failed')",
        );
        if unfinished.trim() == "0" {
            break;
        }
        if Instant::now() > deadline {
            summary.violations.push(format!(
                "{} runs did not finish within 5 minutes of the chaos",
                unfinished.trim()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    check_exits(&mut env, &mut summary);
    check(&env, &url, &ledger_path, &lives, &mut summary);

    let report = format!(
        "chaos for {:?}: {} kills, {} database outage(s), {} triggers ({} refused while the database was away), \
         {} runs, {} task instances, {} attempts ({} reaped), {} executions ({} fenced), {} violations",
        chaos_for,
        summary.kills,
        summary.db_outages,
        summary.triggers,
        summary.failed_triggers,
        summary.runs,
        summary.task_instances,
        summary.attempts,
        summary.reaped,
        summary.executions,
        summary.fenced,
        summary.violations.len()
    );
    eprintln!("{report}");
    if !summary.violations.is_empty() {
        let mut text = String::new();
        for v in summary.violations.iter().take(50) {
            let _ = writeln!(text, "  - {v}");
        }
        panic!("{report}\n{text}\nlogs:\n{}", tail(&env.logs(), 20_000));
    }
}

/// A process that exited without being killed is a violation; so is a panic in a log.
fn check_exits(env: &mut Env, summary: &mut Summary) {
    for (pid, status) in env.exited() {
        summary
            .violations
            .push(format!("process {pid} exited on its own ({status})"));
    }
}

fn psql(url: &str, sql: &str) -> String {
    common::stdout_of(
        std::process::Command::new("psql").args([url, "-X", "-A", "-t", "-F", "\t", "-c", sql]),
    )
}

/// One execution of a command task, from the ledger.
#[derive(Debug, Default, Clone)]
struct Execution {
    worker_pid: u32,
    start_ns: u128,
    end: Option<(i32, u128)>,
}

/// Key of a task instance: dag, run, task, map index.
type TiKey = (String, String, String, i32);

fn check(
    env: &Env,
    url: &str,
    ledger_path: &std::path::Path,
    lives: &[(u32, u128, Option<u128>)],
    summary: &mut Summary,
) {
    let v = &mut summary.violations;
    // Runs.
    for line in psql(url, "SELECT dag_id, run_id, state FROM dag_runs").lines() {
        let f: Vec<&str> = line.split('\t').collect();
        summary.runs += 1;
        if f[2] != expected_run_state(f[0]) {
            v.push(format!(
                "run {} of {} ended {}, expected {}",
                f[1],
                f[0],
                f[2],
                expected_run_state(f[0])
            ));
        }
    }
    // Task instances.
    let mut instances: HashMap<i64, (TiKey, String, i32)> = HashMap::new();
    for line in psql(
        url,
        "SELECT ti.id, r.dag_id, r.run_id, ti.task_id, ti.map_index, ti.state, ti.try_number \
         FROM task_instances ti JOIN dag_runs r ON r.id = ti.run",
    )
    .lines()
    {
        let f: Vec<&str> = line.split('\t').collect();
        let key = (
            f[1].to_owned(),
            f[2].to_owned(),
            f[3].to_owned(),
            f[4].parse().unwrap_or(-2),
        );
        let (state, try_number) = (f[5].to_owned(), f[6].parse().unwrap_or(-1));
        if state != expected_state(&key.0, &key.2) {
            v.push(format!(
                "{key:?} ended {state} at try {try_number}, expected {}",
                expected_state(&key.0, &key.2)
            ));
        }
        instances.insert(f[0].parse().expect("id"), (key, state, try_number));
    }
    summary.task_instances = instances.len();
    // Attempts, by instance and try.
    let mut attempts: HashMap<(TiKey, i32), (String, bool, Option<i32>)> = HashMap::new();
    for line in psql(
        url,
        "SELECT task_instance, try_number, state, coalesce(error, '') LIKE '%lease%', coalesce(exit_code::text, '') \
         FROM attempts",
    )
    .lines()
    {
        let f: Vec<&str> = line.split('\t').collect();
        let Some((key, _, _)) = instances.get(&f[0].parse::<i64>().expect("ti")) else {
            v.push(format!("attempt of an unknown task instance {}", f[0]));
            continue;
        };
        let reaped = f[3] == "t";
        if reaped {
            summary.reaped += 1;
            if f[2] == "success" {
                v.push(format!("{key:?} try {} is a success although it was reaped", f[1]));
            }
        }
        attempts.insert(
            (key.clone(), f[1].parse().expect("try")),
            (f[2].to_owned(), reaped, f[4].parse().ok()),
        );
    }
    summary.attempts = attempts.len();
    for (key, try_number) in attempts.keys() {
        if let Some((_, _, current)) = instances.values().find(|(k, _, _)| k == key) {
            if try_number > current {
                v.push(format!(
                    "{key:?} has an attempt {try_number} beyond its try number {current}"
                ));
            }
        }
    }

    // The ledger.
    let text = std::fs::read_to_string(ledger_path).unwrap_or_default();
    let mut runs: BTreeMap<TiKey, BTreeMap<i32, Vec<Execution>>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let parsed = (|| -> Option<()> {
            let key: TiKey = (
                f.get(1)?.to_string(),
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
                f.get(4)?.parse().ok()?,
            );
            let try_number: i32 = f.get(5)?.parse().ok()?;
            let pid: u32 = f.get(6)?.parse().ok()?;
            let tries = runs.entry(key).or_default().entry(try_number).or_default();
            match f[0] {
                "start" => tries.push(Execution {
                    worker_pid: pid,
                    start_ns: f.get(7)?.parse().ok()?,
                    end: None,
                }),
                "end" => {
                    let code: i32 = f.get(7)?.parse().ok()?;
                    let at: u128 = f.get(8)?.parse().ok()?;
                    let open = tries
                        .iter_mut()
                        .rev()
                        .find(|e| e.worker_pid == pid && e.end.is_none())?;
                    open.end = Some((code, at));
                }
                _ => return None,
            }
            Some(())
        })();
        if parsed.is_none() {
            v.push(format!("unreadable ledger line {line:?}"));
        }
    }
    for (key, tries) in &runs {
        let mut all: Vec<(i32, &Execution)> = Vec::new();
        for (try_number, executions) in tries {
            summary.executions += executions.len();
            if executions.len() > 1 {
                v.push(format!(
                    "{key:?} try {try_number} ran {} times",
                    executions.len()
                ));
            }
            match attempts.get(&(key.clone(), *try_number)) {
                None => v.push(format!("{key:?} try {try_number} ran but has no attempt")),
                Some((state, _, exit_code)) => {
                    // An outcome the worker recorded must be the one the execution had.
                    if state == "success" || state == "failed" || state == "up_for_retry" {
                        let ended = executions.iter().find_map(|e| e.end);
                        match (state.as_str(), ended, exit_code) {
                            ("success", Some((0, _)), _) => {}
                            ("success", other, _) => v.push(format!("{key:?} try {try_number} is a success but its execution ended {other:?}")),
                            (_, Some((code, _)), Some(recorded)) if code != *recorded => v.push(format!("{key:?} try {try_number} exited {code} but {recorded} is recorded")),
                            _ => {}
                        }
                    }
                }
            }
            for e in executions {
                all.push((*try_number, e));
            }
        }
        // No two executions of one task instance overlap: each ended (by itself, or with
        // its worker's SIGKILL) before the next started.
        all.sort_by_key(|(_, e)| e.start_ns);
        for pair in all.windows(2) {
            let ((t1, a), (t2, b)) = (pair[0], pair[1]);
            // Killed with its worker: the life of that pid that covers its start.
            let killed = lives
                .iter()
                .filter(|(pid, born, _)| *pid == a.worker_pid && *born <= a.start_ns)
                .max_by_key(|(_, born, _)| *born)
                .and_then(|(_, _, killed)| *killed);
            let a_end = a.end.map(|(_, at)| at).or(killed);
            match a_end {
                Some(end) if end <= b.start_ns => {}
                Some(end) => v.push(format!(
                    "{key:?} try {t2} started {:.3}s before try {t1} ended",
                    (end - b.start_ns) as f64 / 1e9
                )),
                None => {
                    summary.fenced += 1;
                    // Stopped without its worker being killed: the worker fenced it (lost
                    // lease) or the run was cancelled; it is dead by now either way, but
                    // the ledger cannot tell when it died.
                }
            }
        }
    }
    // Every try a worker recorded as finished ran.
    for ((key, try_number), (state, reaped, _)) in &attempts {
        if !reaped && (state == "success" || state == "failed") {
            let ran = runs
                .get(key)
                .and_then(|t| t.get(try_number))
                .is_some_and(|e| !e.is_empty());
            if !ran {
                v.push(format!(
                    "{key:?} try {try_number} is recorded {state} but never ran"
                ));
            }
        }
    }
    if env.logs().contains("panicked") {
        v.push("a process panicked (see the logs)".to_owned());
    }
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[start..]
}
