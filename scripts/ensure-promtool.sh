#!/usr/bin/env bash
# Prints the path of a `promtool` (Prometheus' rule checker) for
# tests/e2e/metrics.rs: the one on PATH, or one unpacked from Debian's
# `prometheus` package into .tools/ (downloaded, not installed: no daemon,
# no root). Exits 1 when none can be had; the test then checks the alert
# rules by parsing them instead, and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    exit 0
fi
dir="$PWD/.tools/prometheus"
if [ -x "$dir/usr/bin/promtool" ]; then
    echo "$dir/usr/bin/promtool"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || exit 1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || exit 1
mkdir -p "$dir"
dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
"$dir/usr/bin/promtool" --version >/dev/null 2>&1 || exit 1
echo "$dir/usr/bin/promtool"
