#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine: a virtual environment with every optional part
# (torch pinned to 2.13.0, the CPU build), and Debian's chromium with CJK fonts for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "setup: cannot install Debian's chromium here (needs root and apt-get); the browser tests will be skipped" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[all]'
