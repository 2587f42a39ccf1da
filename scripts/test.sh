#!/usr/bin/env bash
# Installs everything the tests need (Python packages, and system tools where a test needs them), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check -e '.[test]'
for extra in scripts/setup.d/*.sh; do
  [ -e "$extra" ] && bash "$extra"
done
python -m pytest "$@"
