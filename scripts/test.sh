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
# Two tiers, both must pass: the fast tier (in-process, minutes), then e2e (CLI subprocesses, kill -9, servers,
# Chromium). `slow` tests need real weights, which cannot be downloaded here: run them with `-m slow` on a
# connected or GPU machine. Both tiers run even if the first fails, so one run reports everything. Any non-zero
# pytest status fails the script, 5 (no tests collected: a marker typo or an empty tier) included.
tier() {
    local name=$1 marks=$2 start=$SECONDS status=0
    shift 2
    echo "== $name tier (-m \"$marks\")"
    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -m "$marks" "$@" || status=$?
    if [ "$status" = 5 ]; then echo "== $name tier: no tests collected (pytest exit 5): a failure"; fi
    echo "== $name tier: $((SECONDS - start)) s wall, pytest exit $status"
    return "$status"
}
fast=0 e2e=0
tier fast "not e2e and not slow and not rehearsal" "$@" || fast=$?
tier e2e "e2e and not slow and not rehearsal" "$@" || e2e=$?
if [ "$fast" != 0 ] || [ "$e2e" != 0 ]; then
    echo "FAILED: fast tier exit $fast, e2e tier exit $e2e"
    exit 1
fi
