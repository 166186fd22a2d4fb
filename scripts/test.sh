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
cargo test --workspace --locked
