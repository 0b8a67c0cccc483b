#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard browser tests when it is missing (idempotent).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing and we are not root: browser tests will be skipped (apt-get install chromium)" >&2
  exit 0
fi
echo "installing Debian chromium for browser tests ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
chromium --version
