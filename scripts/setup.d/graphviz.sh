#!/usr/bin/env bash
# Graphviz's `dot` for `mlpc dump --format svg|png` and the report's graph pictures; Debian's package.
set -euo pipefail
if ! command -v dot >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends graphviz >/dev/null
fi
