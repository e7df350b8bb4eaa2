#!/usr/bin/env bash
# Shared install step for demo.sh and test.sh: Debian packages, then a venv with the pinned project.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv python3-pip)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
command -v lame >/dev/null 2>&1 || need_apt+=(lame)   # the recording benchmark compares against the lame CLI
[ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)    # the MQTT broker the sync tests run against
[ -f /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so ] || [ -f /usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so ] \
    || need_apt+=(mosquitto)                             # enrollment adds edges through dynamic security
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)  # aggregator tests run on PostgreSQL too
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    rm -f .venv/.installed-* && touch "$stamp"
fi
