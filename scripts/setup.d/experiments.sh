#!/usr/bin/env bash
# tests/experiments draw figures (mlpc.experiments.plots): matplotlib, the `plot` extra.
set -euo pipefail
python -m pip install -q --disable-pip-version-check 'matplotlib>=3.7'
