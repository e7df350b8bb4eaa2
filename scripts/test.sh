#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian/Ubuntu machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
