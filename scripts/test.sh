#!/usr/bin/env bash
# Sets up a fresh machine for the test suite and runs it: Chromium (the kiosk and report tests drive a real
# headless browser, Debian's package, never a downloaded one), a virtual environment, the package, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Tests never reach for the Hub: models are the tiny ones built locally (tests/conftest.py sets this too).
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q "$@"
