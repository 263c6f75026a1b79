#!/usr/bin/env bash
# promtool from Debian's `prometheus` package, for `promtool check config` and `promtool test
# rules` on deploy/prometheus (tests/contract/test_prometheus_rules.py). Installed when
# missing, as browser.sh installs Chromium. Only the binary is wanted: the Prometheus server
# the package sets up is stopped and disabled where systemd started it.
# usage: promtool.sh [ensure|status]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PROMTOOL="${KALO_PROMTOOL:-/usr/bin/promtool}"

ensure() {
  if [[ -x "$PROMTOOL" ]]; then
    return 0
  fi
  log "installing promtool (Debian's prometheus package)"
  apt_install --no-install-recommends prometheus
  if [[ -d /run/systemd/system ]] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  [[ -x "$PROMTOOL" ]] || { log "promtool not found at $PROMTOOL"; return 1; }
}

status() {
  if [[ -x "$PROMTOOL" ]]; then
    echo "promtool: $("$PROMTOOL" --version 2>&1 | head -n 1)"
  else
    echo "promtool: missing (make up installs it)"; return 1
  fi
}

cmd="${1:-ensure}"; shift || true
"$cmd" "$@"
