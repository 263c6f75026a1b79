#!/usr/bin/env bash
# Debian's Chromium and its driver, for the browser tests of the controllers' page
# (tests/browser). Installed when missing, as pg.sh installs PostgreSQL; nothing downloads a
# browser of its own (Selenium is pointed at these two binaries).
# usage: browser.sh [ensure|status]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CHROMIUM="${KALO_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${KALO_CHROMEDRIVER:-/usr/bin/chromedriver}"

ensure() {
  if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    return 0
  fi
  log "installing Chromium and its driver from Debian"
  apt_install chromium chromium-driver
  [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] || { log "Chromium not found at $CHROMIUM / $CHROMEDRIVER"; return 1; }
}

status() {
  if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    echo "browser: $("$CHROMIUM" --version 2>/dev/null | head -n 1), $("$CHROMEDRIVER" --version 2>/dev/null | head -n 1)"
  else
    echo "browser: missing (make up installs it)"; return 1
  fi
}

cmd="${1:-ensure}"; shift || true
"$cmd" "$@"
