#!/usr/bin/env bash
# Installs the unchanged Airflow API clients that tests/airflow_clients.rs runs against
# nightshift, each in its own virtualenv under ~/.cache/nightshift (idempotent: a venv
# that already has its pinned version is left alone).
#   airflow-client-2  apache-airflow-client==2.10.0  (Airflow 2, /api/v1, HTTP Basic)
#   airflow-client-3  apache-airflow-client==3.3.2   (Airflow 3, /api/v2, POST /auth/token)
#   airflowctl        apache-airflow-ctl, newest     (Airflow 3's CLI, /auth/token/cli)
set -euo pipefail

CACHE="${NIGHTSHIFT_CACHE:-$HOME/.cache/nightshift}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE"

ensure() {
    local venv="$CACHE/$1" requirement="$2" module="$3"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$requirement" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
name, _, pinned = sys.argv[1].partition("==")
installed = version(name)
sys.exit(0 if not pinned or installed == pinned else 1)
PY
    then
        "$venv/bin/python" -c "import $module" && return 0
    fi
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement"
    "$venv/bin/python" -c "import $module"
}

ensure airflow-client-2 "apache-airflow-client==2.10.0" airflow_client.client
ensure airflow-client-3 "apache-airflow-client==3.3.2" airflow_client.client
ensure airflowctl "apache-airflow-ctl" airflowctl
