#!/usr/bin/env bash
# Fuzzes the REST API with schemathesis against its own OpenAPI document
# (/api/v1/openapi.json): starts `nightshift standalone` on a fresh SQLite file with a
# small DAG and one finished run, signs in with an admin API token, and runs every check
# schemathesis has: no 5xx, every response (status, content type, headers, body) matches
# the document, schema-valid requests are accepted and schema-violating ones refused,
# requests without credentials get a 401, and the stateful (linked operations) phase.
#
#   bash scripts/schemathesis.sh            # ~2-3 minutes
#   ST_MAX_EXAMPLES=200 bash scripts/schemathesis.sh   # a longer run
#   ST_CHECKS=not_a_server_error,response_schema_conformance bash scripts/schemathesis.sh
#   ST_SEED=7 bash scripts/schemathesis.sh  # other generated cases
#
# schemathesis (PyPI) is installed into ~/.cache/nightshift/venv-schemathesis when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[schemathesis] $*" >&2; }

VENV="${ST_VENV:-$HOME/.cache/nightshift/venv-schemathesis}"
ST_VERSION="4.32.5"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-25}"
MAX_TIME="${ST_MAX_TIME:-150}"

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
    log "installing schemathesis $ST_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

cargo build --quiet --locked --bin nightshift
BIN="${CARGO_TARGET_DIR:-target}/debug/nightshift"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/dags"
# No [params]: a DAG's params narrow its trigger's conf (unknown keys and wrong types are a
# 400 naming the param), which the OpenAPI document cannot say per DAG, so schemathesis'
# "schema-valid request accepted" check would flag every generated conf. The params check
# has its own tests (web/tests/web/params.rs, core/src/params/tests.rs).
cat > "$WORK/dags/fuzzed.toml" <<'DAG'
description = "a small DAG so the API has something to show"
[tasks.extract]
type = "noop"
[tasks.load]
type = "noop"
depends_on = ["extract"]
DAG

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
export NIGHTSHIFT_DATABASE_URL="sqlite://$WORK/nightshift.db"
export NIGHTSHIFT_DAGS_FOLDER="$WORK/dags"
export NIGHTSHIFT_DAGS_PAUSED_AT_CREATION=false
export NIGHTSHIFT_LOG_LEVEL="${NIGHTSHIFT_LOG_LEVEL:-warn}"
unset NIGHTSHIFT_BIND

"$BIN" standalone --bind "127.0.0.1:$PORT" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS "$BASE/health" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$BASE/health" >/dev/null || { cat "$WORK/server.log" >&2; log "the server did not start"; exit 1; }

"$BIN" users create st-admin --role admin >/dev/null 2>&1
TOKEN="$("$BIN" tokens create st-admin schemathesis 2>/dev/null)"
"$BIN" dags trigger fuzzed --wait >/dev/null

started=$(date +%s)
status=0
"$VENV/bin/st" run "$BASE/api/v1/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks "${ST_CHECKS:-all}" \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --seed "${ST_SEED:-1}" \
    --workers 2 \
    --generation-database none \
    --no-color || status=$?
log "finished in $(( $(date +%s) - started ))s with exit code $status"
if grep -q "ERROR\|panicked" "$WORK/server.log"; then
    log "the server logged errors:"
    grep "ERROR\|panicked" "$WORK/server.log" | head -50 >&2
    status=1
fi
exit "$status"
