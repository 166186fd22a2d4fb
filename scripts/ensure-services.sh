#!/usr/bin/env bash
# Makes sure the local services the test suite talks to are installed and running:
# PostgreSQL on 127.0.0.1:5432 with trust auth for the `postgres` user.
# Safe to run repeatedly; installs only what is missing.
set -euo pipefail

log() { echo "[ensure-services] $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing: $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_up; then
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        apt_install postgresql postgresql-client
    fi
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        log "allowing trust auth on 127.0.0.1 in $hba"
        as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || \
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    for _ in $(seq 1 30); do
        pg_up && return
        sleep 1
    done
    log "PostgreSQL did not come up on 127.0.0.1:5432"
    exit 1
}

ensure_postgres
log "PostgreSQL is up on 127.0.0.1:5432"
