#!/usr/bin/env python3
"""Measuring helpers of bench/airflow/compare.sh (run with the benchmark venv's Python,
which has psycopg2). Every subcommand prints one JSON object on stdout.

    bench.py trigger --system nightshift|airflow --db URL --dag ID [--timeout S] -- CMD...
        Runs the trigger command CMD, finds the run it created in the database and polls
        it (every 20 ms) until it finished. Reports, from the database's timestamps:
        e2e_s = run end - the moment CMD was started (includes the CLI's start-up),
        run_s = run end - run queued (what the scheduler and workers took),
        plus tasks/s and, for chains, the median handoff between consecutive tasks.
    bench.py rss --out FILE [--interval S] PID...
        Samples the process trees of PID... until SIGTERM; keeps the peak of the sum of
        their RSS and of their PSS (proportional set size: shared pages counted once)
        in FILE.
    bench.py wait-sql --db URL --sql SQL --expect N [--timeout S] [--since EPOCH]
        Polls SQL (a single number) until it reaches N; reports the seconds since EPOCH
        (default: the start of the wait).
    bench.py timecmd [--key K] [--repeats N] -- CMD...
        Median wall time of CMD (including its start-up).
    bench.py dagbag DIR
        Airflow only: times DagBag(DIR) in process (imports excluded).
    bench.py report RESULTS_DIR
        Prints the comparison table from the JSON files compare.sh wrote.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time


def connect(url):
    import psycopg2

    url = url.replace("postgresql+psycopg2://", "postgresql://")
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def scalar(conn, sql, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return None if row is None else row[0]


# ---------------------------------------------------------------- trigger and wait

RUNS = {  # system -> (runs table, task instances query by run)
    "nightshift": (
        "dag_runs",
        "SELECT task_id, start_date, end_date, state FROM task_instances WHERE run = %s",
    ),
    "airflow": (
        "dag_run",
        "SELECT ti.task_id, ti.start_date, ti.end_date, ti.state FROM task_instance ti "
        "JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id WHERE r.id = %s",
    ),
}


def cmd_trigger(a):
    table, ti_sql = RUNS[a.system]
    conn = connect(a.db)
    before = scalar(conn, f"SELECT coalesce(max(id), 0) FROM {table} WHERE dag_id = %s", (a.dag,))
    t0 = time.time()
    proc = subprocess.run(a.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cli_s = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"trigger command failed ({proc.returncode}): {proc.stderr[-2000:]}")
    deadline = t0 + a.timeout
    run = None
    while time.time() < deadline:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT id, state, queued_at, start_date, end_date FROM {table} "
                "WHERE dag_id = %s AND id > %s ORDER BY id LIMIT 1",
                (a.dag, before),
            )
            run = cur.fetchone()
        if run and str(run[1]).lower() in ("success", "failed") and run[4] is not None:
            break
        time.sleep(0.02)
    observed_s = time.time() - t0
    if not run or str(run[1]).lower() not in ("success", "failed"):
        sys.exit(f"run of {a.dag} not finished after {a.timeout} s (state {run and run[1]})")
    run_id, state, queued, started, ended = run
    with conn.cursor() as cur:
        cur.execute(ti_sql, (run_id,))
        tis = cur.fetchall()
    out = {
        "system": a.system,
        "dag": a.dag,
        "state": str(state).lower(),
        "cli_s": round(cli_s, 3),
        "e2e_s": round(ended.timestamp() - t0, 3),
        "run_s": round((ended - queued).total_seconds(), 3),
        "observed_s": round(observed_s, 3),
        "tasks": len(tis),
        "tasks_ok": sum(1 for t in tis if str(t[3]).lower() == "success"),
    }
    out["tasks_per_s"] = round(len(tis) / max(out["run_s"], 1e-9), 1)
    chain = sorted((t for t in tis if t[1] and t[2]), key=lambda t: t[0])
    if a.dag.startswith("chain") and len(chain) > 1:
        gaps = [
            (chain[i][1] - chain[i - 1][2]).total_seconds() for i in range(1, len(chain))
        ]
        out["handoff_median_ms"] = round(statistics.median(gaps) * 1000, 1)
    print(json.dumps(out))
    if out["state"] != "success":
        sys.exit(f"run of {a.dag} ended {out['state']}")


# ---------------------------------------------------------------- memory sampling


def tree(roots):
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    seen, todo = set(), [r for r in roots if os.path.exists(f"/proc/{r}")]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmd_rss(a):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    peak = {"peak_rss_mb": 0.0, "peak_pss_mb": 0.0, "peak_processes": 0, "samples": 0}
    while not stop:
        pids = tree(a.pids)
        if not pids:
            break
        rss = sum(kib(f"/proc/{p}/status", "VmRSS:") for p in pids) / 1024
        pss = sum(kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) / 1024
        peak["samples"] += 1
        peak["peak_rss_mb"] = round(max(peak["peak_rss_mb"], rss), 1)
        peak["peak_pss_mb"] = round(max(peak["peak_pss_mb"], pss), 1)
        peak["peak_processes"] = max(peak["peak_processes"], len(pids))
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(peak, f)
        os.replace(tmp, a.out)
        time.sleep(a.interval)


# ---------------------------------------------------------------- misc


def cmd_wait_sql(a):
    since = a.since or time.time()
    conn = None
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        try:
            conn = conn or connect(a.db)
            value = scalar(conn, a.sql)
        except Exception:  # the table may not exist yet
            conn, value = None, None
        if value is not None and value >= a.expect:
            print(json.dumps({"value": value, "elapsed_s": round(time.time() - since, 3)}))
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {a.sql!r} to reach {a.expect}")


def cmd_timecmd(a):
    took = []
    for _ in range(a.repeats):
        started = time.time()
        proc = subprocess.run(a.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        took.append(time.time() - started)
        if proc.returncode != 0:
            sys.exit(f"{a.cmd} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    print(json.dumps({a.key: round(statistics.median(took), 3), "all": [round(t, 3) for t in took]}))


def cmd_dagbag(a):
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:
        from airflow.models.dagbag import DagBag
    import inspect

    kwargs = {"dag_folder": a.dir}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:  # Airflow 2
        kwargs["include_examples"] = False
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # Airflow logs to stdout
        started = time.time()
        bag = DagBag(**kwargs)
        took = time.time() - started
    print(json.dumps({
        "parse_s": round(took, 3),
        "dags": len(bag.dags),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "import_errors": len(bag.import_errors),
    }))


def load(path):
    try:
        with open(path) as f:
            # Skip anything else a tool printed on stdout (Airflow logs there).
            return [json.loads(line) for line in f if line.startswith("{")]
    except FileNotFoundError:
        return []


def fmt(x, unit="s"):
    if x is None:
        return "—"
    if unit == "s":
        return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:.0f} MB"


def ratio(ns, af):
    if ns is None or af is None or ns <= 0:
        return "—"
    return f"{af / ns:.0f}×" if af / ns >= 10 else f"{af / ns:.1f}×"


def cmd_report(a):
    d = a.dir
    rows = []

    def med(samples, key):
        vals = [s[key] for s in samples if key in s]
        return statistics.median(vals) if vals else None

    for bench in ("chain40", "fan1000"):
        ns, af = load(f"{d}/nightshift-{bench}.jsonl"), load(f"{d}/airflow-{bench}.jsonl")
        n = f"{len(ns)}/{len(af)}"
        for key, label in (("e2e_s", "CLI trigger → run success"),
                           ("run_s", "run queued → run success")):
            a_, b_ = med(ns, key), med(af, key)
            rows.append((f"{bench}: {label} (median of {n})", fmt(a_), fmt(b_), ratio(a_, b_)))
        if bench == "chain40":
            a_, b_ = med(ns, "handoff_median_ms"), med(af, "handoff_median_ms")
            rows.append((f"{bench}: handoff median", fmt(a_ and a_ / 1000), fmt(b_ and b_ / 1000),
                         ratio(a_, b_)))
        else:
            a_, b_ = med(ns, "tasks_per_s"), med(af, "tasks_per_s")
            rows.append((f"{bench}: task instances / s",
                         "—" if a_ is None else f"{a_:.0f}", "—" if b_ is None else f"{b_:.1f}",
                         ratio(b_, a_)))
    p = {}
    for name in ("nightshift-parse", "airflow-parse", "nightshift-load", "airflow-load"):
        got = load(f"{d}/{name}.jsonl")
        p[name] = got[0] if got else {}
    a_, b_ = p["nightshift-parse"].get("parse_s"), p["airflow-parse"].get("parse_s")
    rows.append(("parse1000: parse 1,000 files × 10 tasks", fmt(a_), fmt(b_), ratio(a_, b_)))
    a_, b_ = p["nightshift-load"].get("elapsed_s"), p["airflow-load"].get("elapsed_s")
    rows.append(("parse1000: cold start → 1,000 DAGs in the database", fmt(a_), fmt(b_),
                 ratio(a_, b_)))
    for phase, label in (("idle", "idle with chain40 + fan1000 loaded"),
                         ("chain40", "during chain40"), ("fan1000", "during fan1000"),
                         ("load", "loading parse1000")):
        ns, af = load(f"{d}/nightshift-rss-{phase}.json"), load(f"{d}/airflow-rss-{phase}.json")
        for key, what in (("peak_pss_mb", "PSS"), ("peak_rss_mb", "RSS")):
            a_ = ns[0].get(key) if ns else None
            b_ = af[0].get(key) if af else None
            rows.append((f"memory, peak {what} sum, {label}", fmt(a_, "MB"), fmt(b_, "MB"),
                         ratio(a_, b_)))
    width = max(len(r[0]) for r in rows)
    out = [f"| {'benchmark'.ljust(width)} | nightshift | Airflow | Airflow / nightshift |",
           f"| {'-' * width} | ---: | ---: | ---: |"]
    out += [f"| {r[0].ljust(width)} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("trigger")
    t.add_argument("--system", choices=list(RUNS), required=True)
    t.add_argument("--db", required=True)
    t.add_argument("--dag", required=True)
    t.add_argument("--timeout", type=float, default=3600)
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    r = sub.add_parser("rss")
    r.add_argument("--out", required=True)
    r.add_argument("--interval", type=float, default=0.2)
    r.add_argument("pids", type=int, nargs="+")
    w = sub.add_parser("wait-sql")
    w.add_argument("--db", required=True)
    w.add_argument("--sql", required=True)
    w.add_argument("--expect", type=int, required=True)
    w.add_argument("--timeout", type=float, default=600)
    w.add_argument("--since", type=float)
    c = sub.add_parser("timecmd")
    c.add_argument("--key", default="elapsed_s")
    c.add_argument("--repeats", type=int, default=1)
    c.add_argument("cmd", nargs=argparse.REMAINDER)
    b = sub.add_parser("dagbag")
    b.add_argument("dir")
    rep = sub.add_parser("report")
    rep.add_argument("dir")
    a = p.parse_args()
    if getattr(a, "cmd", None) and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    if a.what == "trigger":
        cmd_trigger(a)
    else:
        {"rss": cmd_rss, "wait-sql": cmd_wait_sql, "dagbag": cmd_dagbag, "timecmd": cmd_timecmd,
         "report": cmd_report}[a.what](a)


if __name__ == "__main__":
    main()
