#!/usr/bin/env bash
# Ensure a pinned schemathesis (the OpenAPI conformance tester) is installed
# and print the absolute path of its `st` command.
#
#   scripts/ensure-schemathesis.sh    -> /path/to/repo/.tools/schemathesis/bin/st
#
# stdout carries only the path; progress goes to stderr.
# Order:
#   1. $SANYU_SCHEMATHESIS, if set and executable;
#   2. <repo>/.tools/schemathesis/bin/st, if present and of the pinned version;
#   3. install PyPI package schemathesis==$ST_VERSION into its own venv
#      <repo>/.tools/schemathesis.
# Safe to run concurrently (flock on <repo>/.tools/.ensure-schemathesis.lock).
set -euo pipefail

ST_VERSION="4.32.5"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$REPO/.tools"
VENV="$TOOLS/schemathesis"
ST="$VENV/bin/st"

log() { printf 'ensure-schemathesis: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_pinned() {
    local out
    out="$("$1" --version 2>/dev/null)" || return 1
    [[ "$out" == *"$ST_VERSION"* ]]
}

if [[ -n "${SANYU_SCHEMATHESIS:-}" ]]; then
    [[ -x "$SANYU_SCHEMATHESIS" ]] || die "SANYU_SCHEMATHESIS=$SANYU_SCHEMATHESIS is not executable"
    printf '%s\n' "$SANYU_SCHEMATHESIS"
    exit 0
fi

if [[ -x "$ST" ]] && is_pinned "$ST"; then
    printf '%s\n' "$ST"
    exit 0
fi

mkdir -p "$TOOLS"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.ensure-schemathesis.lock"
    flock 9
    if [[ -x "$ST" ]] && is_pinned "$ST"; then
        printf '%s\n' "$ST"
        exit 0
    fi
fi

command -v python3 >/dev/null 2>&1 || die "python3 not found; install it or set SANYU_SCHEMATHESIS"
rm -rf "$VENV"
python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
log "installing schemathesis==$ST_VERSION into $VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION" >&2
is_pinned "$ST" || die "$ST --version does not report $ST_VERSION"
log "$("$ST" --version 2>&1)"
printf '%s\n' "$ST"
