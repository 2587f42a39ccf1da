#!/usr/bin/env bash
# The ahead-of-time export tests link libraries and C programs with the system C compiler (cc/gcc + libc headers).
set -euo pipefail
if command -v cc >/dev/null 2>&1 && printf '#include <stdio.h>\nint main(void){return 0;}\n' | cc -x c - -o /dev/null 2>/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq gcc libc6-dev >/dev/null
else
  echo "aot-cc.sh: no C compiler and no apt-get; install gcc (or clang) and the libc headers" >&2
  exit 1
fi
