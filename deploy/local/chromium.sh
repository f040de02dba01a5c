#!/usr/bin/env bash
# Makes sure headless Chromium and ChromeDriver (Debian's `chromium` and
# `chromium-driver`) are installed, for the admin page's browser test.
# Prints nothing when they already are.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
echo "chromium.sh: installing chromium and chromium-driver with apt" >&2
if [[ $(id -u) -ne 0 ]]; then echo "chromium.sh: need root to apt-get install chromium" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium chromium-driver >&2
