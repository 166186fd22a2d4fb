#!/usr/bin/env bash
# Makes the populated databases that tests/upgrade.rs upgrades: run it with the binary of
# a release, before the next release adds migrations, e.g.
#
#   git checkout <release> && cargo build --release
#   NIGHTSHIFT_BIN=$PWD/target/release/nightshift bash scripts/make-upgrade-fixtures.sh 0004
#
# It writes tests/fixtures/upgrade/{postgres,sqlite}-<schema>.sql: a plain SQL dump of a
# database holding finished runs (successes, a retry, a failure and its upstream_failed
# downstream, mapped instances), their attempts and logs, a pool, users, a token and
# audit entries. <schema> names the newest migration of that release.
set -euo pipefail
cd "$(dirname "$0")/.."

schema="${1:?usage: make-upgrade-fixtures.sh <newest migration number, e.g. 0004>}"
bin="${NIGHTSHIFT_BIN:-${CARGO_TARGET_DIR:-target}/release/nightshift}"
admin_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
out="tests/fixtures/upgrade"
mkdir -p "$out"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
    psql "$admin_url" -q -c "DROP DATABASE IF EXISTS ns_upgrade_fixture WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

mkdir -p "$work/dags"
cp "$out/history.toml" "$work/dags/history.toml"

export NIGHTSHIFT_DAGS_FOLDER="$work/dags"
export NIGHTSHIFT_DAGS_PAUSED_AT_CREATION=false
export NIGHTSHIFT_LOG_LEVEL=warn

populate() {
    "$bin" db migrate
    "$bin" dags list >/dev/null
    "$bin" pools set etl 4 --description "ETL slots" >/dev/null
    echo 'operator-password' | "$bin" users create alice --role operator --password-stdin >/dev/null
    echo 'viewer-password' | "$bin" users create bob --role viewer --password-stdin >/dev/null
    "$bin" tokens create alice upgrade-fixture >/dev/null
    "$bin" scheduler 2>"$work/scheduler.log" & pids+=($!)
    "$bin" worker 2>"$work/worker.log" & pids+=($!)
    for day in 2026-01-01 2026-01-02 2026-01-03; do
        "$bin" dags trigger history --logical-date "${day}T00:00:00Z" --wait >/dev/null || true
    done
    "$bin" dags pause history >/dev/null
    for pid in "${pids[@]}"; do kill "$pid"; done
    wait
    pids=()
}

# SQLite
export NIGHTSHIFT_DATABASE_URL="sqlite://$work/nightshift.db"
populate
python3 - "$work/nightshift.db" "$out/sqlite-$schema.sql" <<'EOF'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
with open(sys.argv[2], "w") as f:
    for line in con.iterdump():
        f.write(line + "\n")
EOF

# PostgreSQL
psql "$admin_url" -q -c "DROP DATABASE IF EXISTS ns_upgrade_fixture WITH (FORCE)" >/dev/null
psql "$admin_url" -q -c "CREATE DATABASE ns_upgrade_fixture" >/dev/null
export NIGHTSHIFT_DATABASE_URL="${admin_url%/*}/ns_upgrade_fixture"
populate
pg_dump --no-owner --no-privileges --no-comments "$NIGHTSHIFT_DATABASE_URL" \
    | grep -v '^SET transaction_timeout' > "$out/postgres-$schema.sql"

echo "wrote $out/sqlite-$schema.sql and $out/postgres-$schema.sql"
