#!/usr/bin/env bash
# Fuzzes the DAG file, cron and duration parsers (the cargo-fuzz targets in fuzz/) for a
# bounded time each, and exits non-zero if any target crashed (a panic, a failed
# assertion, a per-input timeout or running out of memory).
#
#   scripts/fuzz.sh [seconds-per-target]      # default 30
#
# Environment: FUZZ_TARGETS (default "dag_file cron duration"), FUZZ_SANITIZER (default
# "none": the code under test is safe Rust, and without ASan it runs ~2x faster; use
# "address" for a slower, stricter run), FUZZ_JOBS (parallel fuzzing processes, default 1),
# FUZZ_TARGET_DIR (the fuzz build's cargo target dir, default
# ~/.cache/nightshift/fuzz-target, kept apart from the main build: other flags).
# Corpora grow in fuzz/corpus/<target>/ (not committed); a crashing input is written
# to fuzz/artifacts/<target>/ — add it as a regression case to a normal #[test].
set -euo pipefail

seconds="${1:-30}"
targets="${FUZZ_TARGETS:-dag_file cron duration}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/nightshift/fuzz-target}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"

# cargo-fuzz passes nightly-only flags to rustc; stable accepts them with this.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Seeds: every DAG file we have, and the schedules and durations written in them and in
# the croniter test vectors. Named by content hash, like libFuzzer's own corpus files.
seed() {
    local dir="$1" file="$2"
    mkdir -p "$dir"
    cp "$file" "$dir/$(sha1sum "$file" | cut -c1-40)"
}
seed_text() {
    local dir="$1" text="$2" tmp
    tmp="$(mktemp)"
    printf '%s' "$text" >"$tmp"
    seed "$dir" "$tmp"
    rm -f "$tmp"
}
corpus="$fuzz/corpus"
while IFS= read -r -d '' file; do
    seed "$corpus/dag_file" "$file"
done < <(find "$root/dags" "$root/tests/fixtures" -name '*.toml' -type f -print0)
while IFS= read -r value; do
    seed_text "$corpus/cron" "$value"
done < <(
    {
        grep -rhoE '^schedule *= *"[^"]*"' "$root/dags" "$root/tests/fixtures" | sed -E 's/^[^"]*"(.*)"$/\1/'
        grep -v '^#' "$root/core/tests/data/croniter_vectors.tsv" | cut -f1 | sort -u | head -200
    } | sort -u
)
while IFS= read -r value; do
    seed_text "$corpus/duration" "$value"
done < <(
    grep -rhoE '(retry_delay|max_retry_delay|timeout|dagrun_timeout|poke_interval) *= *"[^"]*"' \
        "$root/dags" "$root/tests/fixtures" | sed -E 's/^[^"]*"(.*)"$/\1/' | sort -u
)

max_len() {
    case "$1" in
        dag_file) echo 65536 ;; # the loader's limit is 4 MiB; real files are a few KiB
        cron) echo 256 ;;
        duration) echo 128 ;;
        *) echo 4096 ;;
    esac
}

# -jobs makes libFuzzer write fuzz-<n>.log files: only when asked for more than one.
parallel=()
if ((jobs > 1)); then
    parallel=(-jobs="$jobs" -workers="$jobs")
fi

failed=()
for target in $targets; do
    echo "fuzz.sh: $target for ${seconds}s" >&2
    log="$(mktemp)"
    if (cd "$fuzz" && cargo fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" \
        "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "${parallel[@]}" \
        -dict="dicts/$target.dict") 2>"$log"; then
        grep -E '^(stat::number_of_executed_units|Done [0-9]+ runs)' "$log" | sed "s/^/fuzz.sh: $target: /" >&2 || true
    else
        # The panic message first (a backtrace may push it far up), then libFuzzer's report.
        grep -A2 'panicked at' "$log" | head -n 6 >&2 || true
        tail -n 30 "$log" >&2
        failed+=("$target")
    fi
    rm -f "$log"
done

if ((${#failed[@]})); then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes" >&2
