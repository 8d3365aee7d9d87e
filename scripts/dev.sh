#!/usr/bin/env bash
# Run the whole system on embedded defaults (README's first command):
# a SQLite file and a local NATS server with JetStream in .sanyu/, every
# service in one process, and a demo school with tokens printed once.
# Extra arguments go to `sanyu dev` (see `--help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SANYU_NATS_SERVER="$(bash scripts/ensure-nats.sh)"
export SANYU_NATS_SERVER
exec cargo run --locked -p sanyu-cli --bin sanyu -- dev "$@"
