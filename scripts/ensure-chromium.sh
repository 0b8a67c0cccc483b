#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard browser tests when it is missing (idempotent).
# Never runs `playwright install`: the tests drive /usr/bin/chromium through Playwright.
set -euo pipefail
CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "ensure-chromium: $CHROMIUM is installed, nothing to do"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-chromium: $CHROMIUM is missing and this is not root, so it cannot be installed;" >&2
  echo "  the browser tests will be skipped (as root: apt-get install -y chromium)" >&2
  exit 0
fi
echo "ensure-chromium: $CHROMIUM is missing; running apt-get update"
apt-get update -qq
echo "ensure-chromium: running apt-get install -y chromium"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
