#!/usr/bin/env bash
# Installs what the demo needs, then runs an edge driven by the HIL PBX simulator, live in the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/edge demo "$@"
