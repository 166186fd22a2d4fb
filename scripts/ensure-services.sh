#!/usr/bin/env bash
# Makes sure the local services the test suite talks to are installed and running:
# PostgreSQL on 127.0.0.1:5432 with trust auth for the `postgres` user, and MariaDB on
# 127.0.0.1:3306 where root logs in without a password over TCP.
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

mariadb_up() {
    command -v mariadb >/dev/null &&
        mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -uroot -e 'SELECT 1' >/dev/null 2>&1
}

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

ensure_mariadb() {
    if mariadb_up; then
        return
    fi
    if ! port_open 3306; then
        if [ ! -x /usr/sbin/mariadbd ]; then
            apt_install mariadb-server mariadb-client
        fi
        as_root mkdir -p /run/mysqld
        as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
        if [ ! -d /var/lib/mysql/mysql ]; then
            log "initialising the MariaDB data directory"
            as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        fi
        log "starting MariaDB"
        as_root service mariadb start >/dev/null 2>&1 ||
            as_root start-stop-daemon --start --oknodo --background \
                --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --port=3306
        for _ in $(seq 1 30); do
            port_open 3306 && break
            sleep 1
        done
    fi
    if ! mariadb_up; then
        # A fresh Debian install lets root in only through the unix socket: allow TCP
        # logins without a password (development and CI machines only).
        log "allowing root without a password over TCP"
        as_root mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" || true
    fi
    mariadb_up || { log "MariaDB did not come up on 127.0.0.1:3306 for root"; exit 1; }
    mariadb --protocol=TCP -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
}

ensure_postgres
log "PostgreSQL is up on 127.0.0.1:5432"
ensure_mariadb
log "MariaDB is up on 127.0.0.1:3306"

# The browser test (tests/browser.rs) drives Debian's Chromium with playwright-core from
# npm; it needs /usr/bin/chromium, Node.js and npm.
ensure_browser() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    log "Chromium and Node.js are installed ($(/usr/bin/chromium --version 2>/dev/null | head -n1))"
}
ensure_browser
