#!/usr/bin/env bash
# Side-by-side comparison of nightshift and Apache Airflow 3.x on this machine, one system
# after the other, on the same local PostgreSQL. See bench/airflow/README.md.
#
#   bash bench/airflow/compare.sh      (on an otherwise idle machine)
#
# Settings (environment):
#   NIGHTSHIFT_BENCH_DIR  cache dir: venv, AIRFLOW_HOME, DAGs, results
#                         (default ~/.cache/nightshift/airflow)
#   NIGHTSHIFT_BIN        the nightshift binary (default $CARGO_TARGET_DIR/release/nightshift,
#                         else ./target/release/nightshift); build it first with
#                         `cargo build --release -p nightshift`
#   AIRFLOW_VERSION       Airflow version to install (default: the latest 3.x on PyPI)
#   PYTHON                interpreter for the venv (default python3; Airflow 3 needs 3.10-3.13)
#   PGHOST PGPORT PGUSER  the PostgreSQL server (default 127.0.0.1 5432 postgres, trust auth)
#   REPEATS               runs of chain40 per system (default 3)
#   FAN_REPEATS           runs of fan1000 per system (default 1)
#   PARALLEL              task slots: Airflow parallelism and max_active_tasks, nightshift
#                         worker concurrency and max_active_tasks (default 32)
#   BENCHES               which parts to run (default "nightshift airflow parse")
#   KEEP_DATABASES=1      keep the benchmark databases at the end
#   AIRFLOW_PORT NIGHTSHIFT_PORT   ports of the two servers (default 28080, 28081)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DIR=${NIGHTSHIFT_BENCH_DIR:-$HOME/.cache/nightshift/airflow}
PYTHON=${PYTHON:-python3}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
REPEATS=${REPEATS:-3}
FAN_REPEATS=${FAN_REPEATS:-1}
PARALLEL=${PARALLEL:-32}
BENCHES=${BENCHES:-nightshift airflow parse}
AF_PORT=${AIRFLOW_PORT:-28080}
NS_PORT=${NIGHTSHIFT_PORT:-28081}
NIGHTSHIFT_BIN=${NIGHTSHIFT_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/nightshift}
IDLE_SECONDS=${IDLE_SECONDS:-10}

VENV=$BENCH_DIR/venv
PY=$VENV/bin/python
RESULTS=$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$RESULTS/logs
DAGS=$BENCH_DIR/dags
PG_BASE="postgresql://$PGUSER@$PGHOST:$PGPORT"
AF_DB=airflow_bench
AF_PARSE_DB=airflow_bench_parse
NS_DB=nightshift_bench
NS_PARSE_DB=nightshift_bench_parse

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
fresh_db() { psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

# ------------------------------------------------------------------ process bookkeeping
# Every server is started in its own process group; cleanup stops exactly those groups.
PIDS=()
start_bg() { # NAME CMD... ; sets STARTED_PID
    local name=$1; shift
    setsid "$@" >"$LOGS/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    log "started $name (pid $STARTED_PID)"
}
stop_group() { # PID
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for i in $(seq 1 150); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    log "process group $pid did not stop in 30 s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || true
}
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_group "$pid"; done
    PIDS=()
}
SAMPLER=
sample_start() { # OUTFILE PID... : peak RSS/PSS of these process trees until sample_stop
    local out=$1; shift
    "$PY" "$HERE/bench.py" rss --out "$out" "$@" &
    SAMPLER=$!
}
sample_stop() {
    [ -n "$SAMPLER" ] || return 0
    kill -TERM "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=
}
cleanup() {
    local rc=$?
    sample_stop
    stop_all
    if [ "${KEEP_DATABASES:-0}" != 1 ]; then
        for db in $AF_DB $AF_PARSE_DB $NS_DB $NS_PARSE_DB; do
            psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
        done
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ preflight
[ -x "$NIGHTSHIFT_BIN" ] || die "no nightshift binary at $NIGHTSHIFT_BIN (cargo build --release -p nightshift, or set NIGHTSHIFT_BIN)"
pg_isready -q || die "PostgreSQL is not reachable at $PGHOST:$PGPORT"
command -v setsid >/dev/null || die "setsid (util-linux) is needed"
mkdir -p "$LOGS" "$DAGS" "$BENCH_DIR/work"
# Run everything from a scratch dir, so no ./nightshift.toml or ./dags is picked up.
cd "$BENCH_DIR/work"
log "results in $RESULTS"

# ------------------------------------------------------------------ Airflow install
install_airflow() {
    if [ ! -x "$PY" ]; then
        log "creating the virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip wheel
    fi
    local want=${AIRFLOW_VERSION:-}
    if [ -z "$want" ]; then
        # The newest final 3.x release on PyPI.
        want=$("$VENV/bin/pip" index versions apache-airflow 2>/dev/null |
            sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' |
            grep -E '^3\.[0-9]+\.[0-9]+$' | head -n1 || true)
        [ -n "$want" ] || die "cannot list apache-airflow versions on PyPI"
    fi
    local have
    have=$("$PY" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))' 2>/dev/null || true)
    if [ "$have" = "$want" ]; then
        log "Apache Airflow $have already installed in $VENV"
        return
    fi
    local pyver constraints=() url
    pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    url="https://raw.githubusercontent.com/apache/airflow/constraints-$want/constraints-$pyver.txt"
    if curl -fsS --max-time 15 -o "$BENCH_DIR/constraints-$want-$pyver.txt" "$url" 2>/dev/null; then
        constraints=(-c "$BENCH_DIR/constraints-$want-$pyver.txt")
        log "installing apache-airflow $want with its constraints file"
    else
        log "constraints file $url not reachable: installing apache-airflow $want without it (resolved versions go to pip-freeze.txt)"
    fi
    "$VENV/bin/pip" install -q "apache-airflow[postgres]==$want" psycopg2-binary asyncpg "${constraints[@]}"
}

# ------------------------------------------------------------------ settings
airflow_env() { # DB DAGS_FOLDER
    export AIRFLOW_HOME=$BENCH_DIR/home
    export AIRFLOW__CORE__EXECUTOR=LocalExecutor
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__DAGS_FOLDER=$2
    export AIRFLOW__CORE__PARALLELISM=$PARALLEL
    export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=$PARALLEL
    export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
    export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$AF_PORT/execution/
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://$PGUSER@$PGHOST:$PGPORT/$1
    export AIRFLOW__API__HOST=127.0.0.1
    export AIRFLOW__API__PORT=$AF_PORT
    export AIRFLOW__API__BASE_URL=http://127.0.0.1:$AF_PORT
    export AIRFLOW__API__SECRET_KEY=nightshift-bench-secret
    export AIRFLOW__API_AUTH__JWT_SECRET=nightshift-bench-jwt-secret
    export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$((AF_PORT + 3))
    export AIRFLOW__CORE__FERNET_KEY=${AIRFLOW__CORE__FERNET_KEY:-}
    mkdir -p "$AIRFLOW_HOME"
}
nightshift_env() { # DB DAGS_FOLDER
    export NIGHTSHIFT_DATABASE_URL=postgres://$PGUSER@$PGHOST:$PGPORT/$1
    export NIGHTSHIFT_DAGS_FOLDER=$2
    export NIGHTSHIFT_BIND=127.0.0.1:$NS_PORT
    export NIGHTSHIFT_WORKER_CONCURRENCY=$PARALLEL
    export NIGHTSHIFT_LOG_LEVEL=${NIGHTSHIFT_LOG_LEVEL:-info}
}
nightshift() { "$NIGHTSHIFT_BIN" "$@"; }

record_versions() {
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "host: $(uname -srm), $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "postgresql: $(psql -X -tA -d postgres -c 'SHOW server_version')"
        echo "python: $("$PY" --version 2>&1)"
        echo "apache-airflow: $("$PY" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
        echo "nightshift: $("$NIGHTSHIFT_BIN" --version | head -n1) ($NIGHTSHIFT_BIN)"
        echo "nightshift source: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo ' + uncommitted changes')"
        echo "settings: PARALLEL=$PARALLEL REPEATS=$REPEATS FAN_REPEATS=$FAN_REPEATS"
    } >"$RESULTS/versions.txt"
    "$VENV/bin/pip" freeze >"$RESULTS/pip-freeze.txt"
}

# Triggers DAG N times through SYSTEM's CLI; one JSON line per run into FILE.
run_bench() { # SYSTEM DB DAG N TIMEOUT CMD...
    local system=$1 db=$2 dag=$3 n=$4 timeout=$5 i
    shift 5
    for i in $(seq 1 "$n"); do
        "$PY" "$HERE/bench.py" trigger --system "$system" --db "$PG_BASE/$db" --dag "$dag" \
            --timeout "$timeout" -- "$@" | tee -a "$RESULTS/$system-$dag.jsonl" >&2
    done
}

# Idle memory, then chain40 and fan1000, with the servers' process trees sampled.
measure_runs() { # SYSTEM DB TRIGGER-PREFIX... (the DAG id is appended)
    local system=$1 db=$2
    shift 2
    log "$system: sampling idle memory for $IDLE_SECONDS s"
    sample_start "$RESULTS/$system-rss-idle.json" "${PIDS[@]}"
    sleep "$IDLE_SECONDS"
    sample_stop
    log "$system: chain40 x $REPEATS"
    sample_start "$RESULTS/$system-rss-chain40.json" "${PIDS[@]}"
    run_bench "$system" "$db" chain40 "$REPEATS" 1800 "$@" chain40
    sample_stop
    log "$system: fan1000 x $FAN_REPEATS"
    sample_start "$RESULTS/$system-rss-fan1000.json" "${PIDS[@]}"
    run_bench "$system" "$db" fan1000 "$FAN_REPEATS" 7200 "$@" fan1000
    sample_stop
}

# ------------------------------------------------------------------ main
install_airflow
record_versions
cat "$RESULTS/versions.txt" >&2
"$PY" "$HERE/gen_dags.py" run "$DAGS/nightshift-run" "$DAGS/airflow-run" --parallel "$PARALLEL"

if [[ " $BENCHES " == *" nightshift "* ]]; then
    log "nightshift: fresh database $NS_DB"
    fresh_db $NS_DB
    nightshift_env $NS_DB "$DAGS/nightshift-run"
    start_bg nightshift-standalone "$NIGHTSHIFT_BIN" standalone
    "$PY" "$HERE/bench.py" wait-sql --db "$PG_BASE/$NS_DB" --expect 2 --timeout 120 \
        --sql "SELECT count(*) FROM dags WHERE dag_id IN ('chain40', 'fan1000')" >/dev/null
    nightshift dags unpause chain40 >/dev/null 2>>"$LOGS/nightshift-cli.log"
    nightshift dags unpause fan1000 >/dev/null 2>>"$LOGS/nightshift-cli.log"
    measure_runs nightshift $NS_DB "$NIGHTSHIFT_BIN" dags trigger
    stop_all
fi

if [[ " $BENCHES " == *" airflow "* || " $BENCHES " == *" parse "* ]]; then
    log "airflow: fresh database $AF_DB, airflow db migrate"
    fresh_db $AF_DB
    airflow_env $AF_DB "$DAGS/airflow-run"
    "$VENV/bin/airflow" db migrate >"$LOGS/airflow-db-migrate.log" 2>&1 ||
        die "airflow db migrate failed: see $LOGS/airflow-db-migrate.log"
    # A migrated, empty copy for the parse1000 load.
    psql_admin -c "DROP DATABASE IF EXISTS $AF_PARSE_DB WITH (FORCE)" \
        -c "CREATE DATABASE $AF_PARSE_DB TEMPLATE $AF_DB"
fi

if [[ " $BENCHES " == *" airflow "* ]]; then
    start_bg airflow-api-server "$VENV/bin/airflow" api-server
    start_bg airflow-scheduler "$VENV/bin/airflow" scheduler
    start_bg airflow-dag-processor "$VENV/bin/airflow" dag-processor
    "$PY" "$HERE/bench.py" wait-sql --db "$PG_BASE/$AF_DB" --expect 2 --timeout 600 \
        --sql "SELECT count(*) FROM serialized_dag WHERE dag_id IN ('chain40', 'fan1000')" >/dev/null ||
        die "Airflow did not load the DAGs: see $LOGS"
    for i in $(seq 1 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$AF_PORT/api/v2/monitor/health" && break
        [ "$i" = 300 ] && die "the Airflow api-server did not answer: see $LOGS/airflow-api-server.log"
        sleep 1
    done
    "$VENV/bin/airflow" dags unpause chain40 >/dev/null 2>>"$LOGS/airflow-cli.log"
    "$VENV/bin/airflow" dags unpause fan1000 >/dev/null 2>>"$LOGS/airflow-cli.log"
    measure_runs airflow $AF_DB "$VENV/bin/airflow" dags trigger
    stop_all
fi

if [[ " $BENCHES " == *" parse "* ]]; then
    "$PY" "$HERE/gen_dags.py" parse "$DAGS/nightshift-parse" "$DAGS/airflow-parse"
    log "parse1000: nightshift dags validate (median of 5)"
    "$PY" "$HERE/bench.py" timecmd --key parse_s --repeats 5 -- \
        "$NIGHTSHIFT_BIN" dags validate "$DAGS/nightshift-parse" | tee "$RESULTS/nightshift-parse.jsonl" >&2
    log "parse1000: nightshift dags list on a fresh database (cold start -> 1,000 DAGs stored)"
    fresh_db $NS_PARSE_DB
    nightshift_env $NS_PARSE_DB "$DAGS/nightshift-parse"
    nightshift db migrate >/dev/null 2>>"$LOGS/nightshift-cli.log"
    t0=$(date +%s.%N)
    start_bg nightshift-dags-list "$NIGHTSHIFT_BIN" dags list --no-migrate --output json
    sample_start "$RESULTS/nightshift-rss-load.json" "$STARTED_PID"
    "$PY" "$HERE/bench.py" wait-sql --db "$PG_BASE/$NS_PARSE_DB" --expect 1000 --timeout 600 --since "$t0" \
        --sql "SELECT count(*) FROM dags" | tee "$RESULTS/nightshift-load.jsonl" >&2
    wait "$STARTED_PID" || die "nightshift dags list failed: see $LOGS/nightshift-dags-list.log"
    sample_stop
    PIDS=()

    log "parse1000: Airflow DagBag in process (median of 1; imports excluded)"
    airflow_env $AF_PARSE_DB "$DAGS/airflow-parse"
    "$PY" "$HERE/bench.py" dagbag "$DAGS/airflow-parse" 2>"$LOGS/airflow-dagbag.log" |
        tee "$RESULTS/airflow-parse.jsonl" >&2
    log "parse1000: airflow dag-processor on a fresh database (cold start -> 1,000 DAGs serialized)"
    t0=$(date +%s.%N)
    start_bg airflow-dag-processor-parse "$VENV/bin/airflow" dag-processor
    sample_start "$RESULTS/airflow-rss-load.json" "$STARTED_PID"
    "$PY" "$HERE/bench.py" wait-sql --db "$PG_BASE/$AF_PARSE_DB" --expect 1000 --timeout 1800 --since "$t0" \
        --sql "SELECT count(*) FROM serialized_dag" | tee "$RESULTS/airflow-load.jsonl" >&2
    sample_stop
    stop_all
fi

log "done; results in $RESULTS"
echo
echo "nightshift vs Apache Airflow on $(nproc) CPUs ($(cut -d' ' -f1-3 /proc/loadavg) load now)"
sed 's/^/  /' "$RESULTS/versions.txt"
echo
"$PY" "$HERE/bench.py" report "$RESULTS" | tee "$RESULTS/report.md"
