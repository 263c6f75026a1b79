#!/usr/bin/env bash
# Run Kalo's services in the background (what `make demo` uses); logs in .state/logs.
# usage: services.sh start|stop|status [service...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUN_DIR="$STATE_DIR/services"
mkdir -p "$RUN_DIR"
ALL=(gateway assessment ledger)
KALO="$REPO_DIR/.venv/bin/kalo"

start() {
  for svc in "${@:-${ALL[@]}}"; do
    if pid_alive "$RUN_DIR/$svc.pid"; then log "$svc already running"; continue; fi
    log "starting $svc (log: $RUN_DIR/$svc.log)"
    (cd "$REPO_DIR" && exec setsid nohup "$KALO" run "$svc" >"$RUN_DIR/$svc.log" 2>&1) &
    echo $! >"$RUN_DIR/$svc.pid"
  done
  for svc in "${@:-${ALL[@]}}"; do
    [[ "$svc" == gateway ]] && wait_for "the gateway" 60 curl -fsS "http://127.0.0.1:${KALO_GATEWAY_PORT:-8080}/health"
  done
  return 0
}

stop() {
  for svc in "${@:-${ALL[@]}}"; do
    local f="$RUN_DIR/$svc.pid"
    if pid_alive "$f"; then
      local pid; pid="$(cat "$f")"
      log "stopping $svc (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      wait_for "$svc to stop" 30 bash -c "! kill -0 $pid" || kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

status() {
  local rc=0
  for svc in "${ALL[@]}"; do
    if pid_alive "$RUN_DIR/$svc.pid"; then echo "$svc: up (pid $(cat "$RUN_DIR/$svc.pid"))"
    else echo "$svc: down"; rc=1; fi
  done
  return $rc
}

cmd="${1:-status}"; shift || true
"$cmd" "$@"
