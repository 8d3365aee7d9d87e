#!/usr/bin/env bash
# Ensure a pinned axe-core (the accessibility engine the console's browser test
# injects into every page) is available and print the absolute path of its
# `axe.min.js`.
#
#   scripts/ensure-axe.sh            -> /path/to/repo/.tools/axe-core-4.14.1/axe.min.js
#
# stdout carries only the path; progress goes to stderr.
# Order:
#   1. $SANYU_AXE_JS, if set and a readable file (use any copy you like);
#   2. <repo>/.tools/axe-core-$AXE_VERSION/axe.min.js, if present;
#   3. `npm pack axe-core@$AXE_VERSION` into <repo>/.tools, check the tarball's
#      sha256 against the pinned one, and unpack `axe.min.js` from it.
# Safe to run concurrently (flock on <repo>/.tools/.ensure-axe.lock).
set -euo pipefail

AXE_VERSION="4.14.1"
# sha256 of the npm tarball axe-core-4.14.1.tgz.
AXE_SHA256="e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$REPO/.tools"
DIR="$TOOLS/axe-core-$AXE_VERSION"
JS="$DIR/axe.min.js"

log() { printf 'ensure-axe: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -n "${SANYU_AXE_JS:-}" ]]; then
    [[ -r "$SANYU_AXE_JS" ]] || die "SANYU_AXE_JS=$SANYU_AXE_JS is not a readable file"
    printf '%s\n' "$SANYU_AXE_JS"
    exit 0
fi

if [[ -s "$JS" ]]; then
    printf '%s\n' "$JS"
    exit 0
fi

mkdir -p "$TOOLS"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.ensure-axe.lock"
    flock 9
    if [[ -s "$JS" ]]; then
        printf '%s\n' "$JS"
        exit 0
    fi
fi

command -v npm >/dev/null 2>&1 || die "npm not found; install it (Debian: apt-get install npm) or set SANYU_AXE_JS"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found"

WORK="$(mktemp -d "$TOOLS/.axe.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "fetching axe-core@$AXE_VERSION with npm pack"
(cd "$WORK" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null) || die "npm pack axe-core@$AXE_VERSION failed"
TGZ="$WORK/axe-core-$AXE_VERSION.tgz"
[[ -f "$TGZ" ]] || die "npm pack wrote no $TGZ"
GOT="$(sha256sum "$TGZ" | cut -d' ' -f1)"
[[ "$GOT" == "$AXE_SHA256" ]] || die "axe-core-$AXE_VERSION.tgz has sha256 $GOT, expected $AXE_SHA256"
tar -xzf "$TGZ" -C "$WORK" package/axe.min.js package/LICENSE
mkdir -p "$DIR.tmp.$$"
mv "$WORK/package/axe.min.js" "$WORK/package/LICENSE" "$DIR.tmp.$$/"
rm -rf "$DIR"
mv -T "$DIR.tmp.$$" "$DIR"
log "axe-core $AXE_VERSION -> $JS"
printf '%s\n' "$JS"
