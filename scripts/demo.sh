#!/usr/bin/env bash
# Installs what the demo needs (bootstrap.sh: Mosquitto with its dynamic-security plugin among it), then runs
# an HQ on loopback (Mosquitto, aggregator, ingest, dispatcher) and an edge driven by the HIL PBX simulator,
# enrolled with that HQ and syncing to it, live in the terminal. --no-hq runs the edge alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/edge demo "$@"
