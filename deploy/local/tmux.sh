#!/usr/bin/env bash
# Debian's tmux, for the test that runs `kalo status --watch` in a real terminal and reads
# its screen (tests/integration/test_status_watch.py). Installed when missing, as
# browser.sh installs Chromium.
# usage: tmux.sh [ensure|status]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

TMUX_BIN="${KALO_TMUX:-/usr/bin/tmux}"

ensure() {
  if [[ -x "$TMUX_BIN" ]]; then
    return 0
  fi
  log "installing tmux from Debian"
  apt_install tmux
  [[ -x "$TMUX_BIN" ]] || { log "tmux not found at $TMUX_BIN"; return 1; }
}

status() {
  if [[ -x "$TMUX_BIN" ]]; then
    echo "tmux: $("$TMUX_BIN" -V)"
  else
    echo "tmux: missing (make up installs it)"; return 1
  fi
}

cmd="${1:-ensure}"; shift || true
"$cmd" "$@"
