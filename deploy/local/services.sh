#!/usr/bin/env bash
# Run Kalo's services in the background (what `make demo` uses), each under its supervisor
# (supervise.sh: started again when it dies, as docker-compose's `restart:` does).
# Logs in .state/services/NAME.log (the supervisor logs each restart there too);
# NAME.pid is the supervisor's pid (its process group holds the service), NAME.child.pid the service's.
# usage: services.sh start|stop|status [service...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUN_DIR="$STATE_DIR/services"
mkdir -p "$RUN_DIR"
ALL=(gateway assessment ledger liquidation control audit)
# The audit store signs its tree heads with a key of its own: made once, kept in the state folder
# (give the auditors $KALO_AUDIT_SIGNING_KEY.pub).
export KALO_AUDIT_SIGNING_KEY="${KALO_AUDIT_SIGNING_KEY:-$STATE_DIR/audit.key}"
export KALO_AUDIT_HEADS_FILE="${KALO_AUDIT_HEADS_FILE:-$STATE_DIR/audit-heads.jsonl}"

start() {
  for svc in "${@:-${ALL[@]}}"; do
    if pid_alive "$RUN_DIR/$svc.pid"; then log "$svc already running"; continue; fi
    if [[ "$svc" == audit && ! -f "$KALO_AUDIT_SIGNING_KEY" ]]; then
      (cd "$REPO_DIR" && "$PYTHON" -m services.cli audit keygen "$KALO_AUDIT_SIGNING_KEY" >/dev/null)
    fi
    log "starting $svc (log: $RUN_DIR/$svc.log)"
    (cd "$REPO_DIR" && exec setsid nohup bash "$LOCAL_DIR/supervise.sh" --child-pid "$RUN_DIR/$svc.child.pid" \
      "$svc" -- "$PYTHON" -m services.cli run "$svc" >"$RUN_DIR/$svc.log" 2>&1) &
    echo $! >"$RUN_DIR/$svc.pid"
  done
  for svc in "${@:-${ALL[@]}}"; do
    [[ "$svc" == gateway ]] && wait_for "the gateway" 60 curl -fsS "http://127.0.0.1:${KALO_GATEWAY_PORT:-8080}/ready"
    [[ "$svc" == control ]] && wait_for "the control commission" 60 curl -fsS "http://127.0.0.1:${KALO_CONTROL_PORT:-8081}/ready"
  done
  return 0
}

stop() {
  local svc pids=()
  for svc in "${@:-${ALL[@]}}"; do  # all at once: each supervisor passes SIGTERM on
    if pid_alive "$RUN_DIR/$svc.pid"; then
      local pid; pid="$(cat "$RUN_DIR/$svc.pid")"
      log "stopping $svc (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$svc:$pid")
    fi
  done
  # A supervisor SIGKILLs its service after KALO_STOP_GRACE_S (10 s); then the group goes.
  for entry in "${pids[@]}"; do
    local svc="${entry%%:*}" pid="${entry#*:}"
    wait_for "$svc to stop" 15 bash -c "! kill -0 $pid" || kill -KILL -- "-$pid" 2>/dev/null || true
  done
  for svc in "${@:-${ALL[@]}}"; do rm -f "$RUN_DIR/$svc.pid" "$RUN_DIR/$svc.child.pid"; done
}

status() {
  local rc=0
  for svc in "${@:-${ALL[@]}}"; do
    local restarts=0
    [[ -f "$RUN_DIR/$svc.log" ]] && restarts="$(grep -c '\[supervise\] .*restarting in' "$RUN_DIR/$svc.log" || true)"
    if pid_alive "$RUN_DIR/$svc.pid" && pid_alive "$RUN_DIR/$svc.child.pid"; then
      echo "$svc: up (pid $(cat "$RUN_DIR/$svc.child.pid"), supervisor $(cat "$RUN_DIR/$svc.pid"), restarts $restarts)"
    elif pid_alive "$RUN_DIR/$svc.pid"; then
      echo "$svc: restarting (supervisor $(cat "$RUN_DIR/$svc.pid"), restarts $restarts)"; rc=1
    else echo "$svc: down"; rc=1; fi
  done
  return $rc
}

cmd="${1:-status}"; shift || true
"$cmd" "$@"
