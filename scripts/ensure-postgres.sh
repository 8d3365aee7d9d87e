#!/usr/bin/env bash
# Print an admin connection URL for a PostgreSQL where the test suite may
# CREATE/DROP DATABASE, e.g.  postgres://postgres@127.0.0.1:5432/postgres
#
# stdout carries only the URL; progress goes to stderr. Order:
#   1. $SANYU_TEST_PG_URL, if set (printed as is, not checked);
#   2. a server on 127.0.0.1:5432 that lets user postgres in without a password
#      (skipped when SANYU_PG_FORCE_THROWAWAY=1);
#   3. a throwaway cluster in <repo>/.tools/pg (initdb, trust auth, 127.0.0.1 only,
#      port $SANYU_PG_THROWAWAY_PORT or 54329), started or reused;
#   4. with CI=true, as root, with apt-get: install Debian's postgresql, then 3.
# Otherwise prints nothing and exits 3 (the PostgreSQL suite should then be skipped).
# Stop the throwaway cluster with scripts/stop-postgres.sh.
#
# Environment:
#   SANYU_TEST_PG_URL          use this URL, no probing
#   SANYU_PG_FORCE_THROWAWAY=1 skip the 127.0.0.1:5432 probe, use/start the throwaway cluster
#   SANYU_PG_THROWAWAY_PORT    port of the throwaway cluster (default 54329)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$REPO/.tools"
PORT="${SANYU_PG_THROWAWAY_PORT:-54329}"
# Loopback only, so no TLS (TLS works as fast since sqlx 0.9.1; see README).
SYSTEM_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
THROWAWAY_URL="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"

log() { printf 'ensure-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
skip() {
    log "no PostgreSQL available: the PostgreSQL suite will be skipped${1:+ ($1)}"
    exit 3
}

# True if "$1" accepts user postgres without a password and may create databases.
usable() {
    command -v psql >/dev/null 2>&1 || return 1
    local out
    out="$(env -u PGPASSWORD PGPASSFILE=/dev/null PGCONNECT_TIMEOUT=3 \
        psql -w -X -Atq -d "$1" \
        -c "select rolsuper or rolcreatedb from pg_roles where rolname = current_user" \
        2>/dev/null)" || return 1
    [[ "$out" == "t" ]]
}

# 1. explicit URL
if [[ -n "${SANYU_TEST_PG_URL:-}" ]]; then
    printf '%s\n' "$SANYU_TEST_PG_URL"
    exit 0
fi

# 2. the machine's server on 5432
if [[ "${SANYU_PG_FORCE_THROWAWAY:-}" != "1" ]]; then
    if usable "$SYSTEM_URL"; then
        printf '%s\n' "$SYSTEM_URL"
        exit 0
    fi
    if ! command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 &&
        pg_isready -q -h 127.0.0.1 -p 5432 -U postgres -t 3; then
        # No psql to check auth with: trust pg_isready.
        printf '%s\n' "$SYSTEM_URL"
        exit 0
    fi
fi

# 3. throwaway cluster ---------------------------------------------------------------

# Bin dir of the highest installed server version, or nothing.
find_bindir() {
    local c
    local -a found=()
    for c in /usr/lib/postgresql/*/bin/initdb; do
        if [[ -x "$c" ]]; then found+=("$c"); fi
    done
    if (( ${#found[@]} > 0 )); then
        dirname "$(printf '%s\n' "${found[@]}" | sort -V | tail -n 1)"
    fi
}

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
    if [[ "${CI:-}" == "true" && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
        log "CI: installing Debian's postgresql"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2 ||
            skip "apt-get install postgresql failed"
        BINDIR="$(find_bindir)"
    fi
    [[ -n "$BINDIR" ]] || skip "no server binaries in /usr/lib/postgresql/*/bin"
fi
command -v psql >/dev/null 2>&1 || [[ -x "$BINDIR/psql" ]] || skip "psql not found"
PATH="$BINDIR:$PATH"

mkdir -p "$TOOLS"
# Serialise concurrent callers (parallel test processes).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.ensure-postgres.lock"
    flock 9
fi

# PostgreSQL refuses to run as root: as root, run it as an unprivileged user.
RUN_AS=""
if [[ "$(id -u)" == "0" ]]; then
    if id -u postgres >/dev/null 2>&1; then RUN_AS="postgres"
    elif id -u nobody >/dev/null 2>&1; then RUN_AS="nobody"
    else die "running as root and neither user postgres nor nobody exists"
    fi
fi

# Run a command as $RUN_AS (or as ourselves), from / so no unreadable cwd bothers it.
as_pg() {
    if [[ -z "$RUN_AS" ]]; then
        (cd / && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        # shellcheck disable=SC2016 # expanded by the inner shell
        (cd / && su -s /bin/sh -c 'exec "$0" "$@"' "$RUN_AS" "$@")
    fi
}

PGLINK="$TOOLS/pg"
if [[ ! -e "$PGLINK" ]]; then
    mkdir -p "$PGLINK"
    # The service user must be able to reach the repo; if it cannot (repo under
    # /root, say), keep the cluster in /tmp and point .tools/pg at it.
    if [[ -n "$RUN_AS" ]]; then
        chown "$RUN_AS" "$PGLINK"
        if ! as_pg test -w "$PGLINK"; then
            rmdir "$PGLINK"
            alt="${TMPDIR:-/tmp}/sanyu-pg-$(printf '%s' "$REPO" | cksum | cut -d' ' -f1)"
            log "$RUN_AS cannot reach $REPO; keeping the cluster in $alt"
            mkdir -p "$alt"
            ln -s "$alt" "$PGLINK"
        fi
    fi
fi
PGDIR="$(readlink -f "$PGLINK")"
DATA="$PGDIR/data"
SOCK="$PGDIR/sock"
# A unix socket path must fit in 107 bytes (".s.PGSQL.<port>" included).
if (( ${#SOCK} > 80 )); then
    SOCK="${TMPDIR:-/tmp}/sanyu-pg-sock-$(printf '%s' "$PGDIR" | cksum | cut -d' ' -f1)"
fi
mkdir -p "$SOCK"
if [[ -n "$RUN_AS" ]]; then chown -R "$RUN_AS" "$PGDIR" "$SOCK"; fi
chmod 700 "$SOCK"
printf '%s\n' "$BINDIR" >"$PGDIR/bindir"

if [[ ! -s "$DATA/PG_VERSION" ]]; then
    log "initdb $DATA ($("$BINDIR/initdb" --version), as ${RUN_AS:-$(id -un)})"
    rm -rf "$DATA"
    if ! as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C \
        >"$PGDIR/initdb.log" 2>&1 9>&-; then
        cat "$PGDIR/initdb.log" >&2
        die "initdb failed"
    fi
    cat >>"$DATA/postgresql.conf" <<EOF

# --- sanyu throwaway test cluster (scripts/ensure-postgres.sh) ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
EOF
fi

if as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    # Report the port it actually runs on (line 4 of postmaster.pid).
    running_port="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)"
    if [[ "$running_port" =~ ^[0-9]+$ && "$running_port" != "$PORT" ]]; then
        log "note: it runs on port $running_port, not $PORT (stop it to change the port)"
        THROWAWAY_URL="postgres://postgres@127.0.0.1:$running_port/postgres?sslmode=disable"
    fi
    log "throwaway cluster already running ($DATA)"
else
    log "starting throwaway cluster on 127.0.0.1:$PORT"
    # 9>&-: the postmaster must not inherit (and hold forever) our lock.
    if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$PGDIR/postgres.log" -w -t 60 \
        -o "-p $PORT -k '$SOCK'" start >&2 9>&-; then
        tail -n 20 "$PGDIR/postgres.log" >&2 || true
        die "throwaway cluster did not start (port $PORT taken? set SANYU_PG_THROWAWAY_PORT)"
    fi
fi

usable "$THROWAWAY_URL" || die "throwaway cluster runs but $THROWAWAY_URL is not usable"
printf '%s\n' "$THROWAWAY_URL"
