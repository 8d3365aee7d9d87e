#!/usr/bin/env bash
# Stop the throwaway PostgreSQL cluster started by scripts/ensure-postgres.sh, if one runs.
# Never touches any other PostgreSQL (e.g. the machine's server on 5432).
#
#   scripts/stop-postgres.sh           stop it (fast shutdown); keep its data for reuse
#   scripts/stop-postgres.sh --purge   stop it and delete <repo>/.tools/pg
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGLINK="$REPO/.tools/pg"

log() { printf 'stop-postgres: %s\n' "$*" >&2; }

purge=0
case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    *) log "usage: $0 [--purge]"; exit 2 ;;
esac

if [[ ! -e "$PGLINK" ]]; then
    log "no throwaway cluster in $PGLINK"
    exit 0
fi
PGDIR="$(readlink -f "$PGLINK")"
DATA="$PGDIR/data"

if [[ ! -f "$DATA/postmaster.pid" ]]; then
    log "throwaway cluster not running"
else
    BINDIR="$(cat "$PGDIR/bindir" 2>/dev/null || true)"
    if [[ -x "$BINDIR/pg_ctl" ]]; then
        # pg_ctl refuses to run as root: run it as the data directory's owner.
        owner="$(stat -c %U "$DATA")"
        run=()
        if [[ "$(id -u)" == "0" && "$owner" != "root" ]]; then
            if command -v runuser >/dev/null 2>&1; then
                run=(runuser -u "$owner" --)
            else
                # shellcheck disable=SC2016 # expanded by the inner shell
                run=(su -s /bin/sh -c 'exec "$0" "$@"' "$owner")
            fi
        fi
        if (cd / && "${run[@]}" "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1); then
            log "stopping throwaway cluster ($DATA)"
            (cd / && "${run[@]}" "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2)
        else
            log "throwaway cluster not running (stale postmaster.pid)"
        fi
    else
        # No pg_ctl: SIGINT to the postmaster is a fast shutdown.
        pid="$(head -n 1 "$DATA/postmaster.pid")"
        log "pg_ctl not found; sending SIGINT to postmaster $pid"
        # Only if that pid still is a postgres process (pids get reused).
        if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "postgres" ]] && kill -INT "$pid"; then
            for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
    fi
fi

if (( purge )); then
    log "deleting $PGDIR"
    rm -rf "$PGDIR"
    if [[ -L "$PGLINK" ]]; then rm -f "$PGLINK"; fi
fi
