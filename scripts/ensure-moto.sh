#!/usr/bin/env bash
# Makes sure a virtualenv with moto's server (the ECS/EC2/CloudWatch Logs emulator the ecs
# task kind is tested against) exists, and prints its python interpreter's path.
# Safe to run repeatedly and concurrently; installs only when missing.
#   NIGHTSHIFT_MOTO_VENV  where the virtualenv lives (default ~/.cache/nightshift/moto-venv)
# moto 5.2.5 exactly: 5.2.1 returns `cpu` as a number, which the Rust AWS SDK rejects.
set -euo pipefail

MOTO_VERSION="5.2.5"
venv="${NIGHTSHIFT_MOTO_VENV:-$HOME/.cache/nightshift/moto-venv}"
python="$venv/bin/python"

log() { echo "[ensure-moto] $*" >&2; }

installed() {
    [ -x "$python" ] && "$python" - "$MOTO_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import moto.server  # noqa: F401  (the server extra is importable)
sys.exit(0 if version("moto") == sys.argv[1] else 1)
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
        log "creating $venv with moto[server]==$MOTO_VERSION"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
    fi
fi
echo "$python"
