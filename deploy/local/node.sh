#!/usr/bin/env bash
# Node.js and npm for the contract linters of `make lint` (tools/lint: Redocly, Spectral, the
# AsyncAPI CLI, pinned in its package-lock.json). Installed when missing, as pg.sh installs
# PostgreSQL; Redocly CLI 2 needs Node.js 20.19 or later.
# usage: node.sh [ensure|status]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

MIN_NODE="20.19.0"

recent_enough() {
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  local have
  have="$(node -p 'process.versions.node')"
  [[ "$(printf '%s\n%s\n' "$MIN_NODE" "$have" | sort -V | head -n 1)" == "$MIN_NODE" ]]
}

ensure() {
  recent_enough && return 0
  log "installing Node.js and npm from the system's package sources"
  apt_install nodejs
  command -v npm >/dev/null || apt_install npm
  recent_enough || { log "Node.js $MIN_NODE or later is needed, found $(node --version 2>/dev/null || echo none)"; return 1; }
}

status() {
  if recent_enough; then
    echo "node: $(node --version), npm $(npm --version)"
  else
    echo "node: missing or older than $MIN_NODE (make lint installs it)"; return 1
  fi
}

cmd="${1:-ensure}"; shift || true
"$cmd" "$@"
