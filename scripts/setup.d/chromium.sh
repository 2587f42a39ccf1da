#!/usr/bin/env bash
# Headless Chromium for the HTML report test (tests/inspection/test_report_browser.py); Debian's package.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
