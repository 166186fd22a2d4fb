#!/usr/bin/env bash
# The whole test suite: formatting, lints and every test on PostgreSQL and SQLite.
# Installs and starts the services it needs (scripts/ensure-services.sh) first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-services.sh

# #[sqlx::test] creates a fresh PostgreSQL database per test from this server.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
echo "== schemathesis (the API against its OpenAPI document)"
bash scripts/schemathesis.sh
echo "== fuzzing: the DAG file, cron and duration parsers, ${NIGHTSHIFT_FUZZ_SECS:-20} s each"
bash scripts/fuzz.sh "${NIGHTSHIFT_FUZZ_SECS:-20}"

# One closing line over every cargo test binary (doc-test binaries report 0 tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
