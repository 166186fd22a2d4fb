#!/usr/bin/env bash
# Makes sure a virtualenv with `bqemulator` (the DuckDB-backed BigQuery REST emulator the
# `bigquery` task kind is tested against) exists, and prints its python interpreter's path.
# Safe to run repeatedly and concurrently; installs only when missing.
#   NIGHTSHIFT_BQEMULATOR_VENV  where the virtualenv lives
#                               (default ~/.cache/nightshift/bqemulator-venv)
# bqemulator downloads DuckDB's spatial extension when it starts, which needs the network;
# the extension is installed from its PyPI wheel instead and copied to where DuckDB looks
# (~/.duckdb/extensions/v1.5.5/linux_amd64/), so the emulator starts offline.
set -euo pipefail

BQEMULATOR_VERSION="1.4.0"
SPATIAL_VERSION="1.5.5"
venv="${NIGHTSHIFT_BQEMULATOR_VENV:-$HOME/.cache/nightshift/bqemulator-venv}"
python="$venv/bin/python"
ext_dir="$HOME/.duckdb/extensions/v$SPATIAL_VERSION/linux_amd64"

log() { echo "[ensure-bqemulator] $*" >&2; }

installed() {
    [ -x "$python" ] && [ -f "$ext_dir/spatial.duckdb_extension" ] &&
        "$python" - "$BQEMULATOR_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import duckdb  # noqa: F401
sys.exit(0 if version("bqemulator") == sys.argv[1] else 1)
PY
}

if ! installed; then
    mkdir -p "$(dirname "$venv")"
    # Serialise concurrent test processes installing into the same place.
    exec 9>"$venv.lock"
    flock 9
    if ! installed; then
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
            log "installing python3-venv"
            if [ "$(id -u)" -eq 0 ]; then sudo_="" ; else sudo_="sudo"; fi
            $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        if [ ! -x "$python" ]; then
            log "creating $venv with bqemulator==$BQEMULATOR_VERSION"
            python3 -m venv "$venv"
        fi
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "bqemulator==$BQEMULATOR_VERSION" "duckdb==1.5.*" \
            "duckdb-extension-spatial==$SPATIAL_VERSION" numpy >&2
        wheel_ext="$("$python" - "$SPATIAL_VERSION" <<'PY'
import sys, pathlib, duckdb_extension_spatial
root = pathlib.Path(duckdb_extension_spatial.__file__).parent
print(root / "extensions" / ("v" + sys.argv[1]) / "spatial.duckdb_extension")
PY
)"
        mkdir -p "$ext_dir"
        cp "$wheel_ext" "$ext_dir/spatial.duckdb_extension"
    fi
fi
echo "$python"
