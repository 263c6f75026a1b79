#!/usr/bin/env bash
# Keep one service running, as docker-compose's `restart: on-failure` does: the command is
# started again whenever it exits with a non-zero status or is killed (SIGKILL, OOM…), after
# a short backoff (1 s, doubling up to KALO_RESTART_MAX_DELAY_S while it keeps dying within
# 10 s of its start). An exit with status 0 (the service stopped as asked) ends the loop.
# SIGTERM/SIGINT to the supervisor stop the service (SIGTERM, then SIGKILL after
# KALO_STOP_GRACE_S) and the loop. Each start and restart is logged on stderr, i.e. in the
# service's log when the caller sends both there (services.sh and the tests do).
#
# usage: supervise.sh [--child-pid FILE] NAME -- COMMAND [ARG...]
#   --child-pid FILE  where the running command's pid is kept (removed at the end)
set -uo pipefail

child_pid_file=""
if [[ "${1:-}" == "--child-pid" ]]; then child_pid_file="$2"; shift 2; fi
name="${1:?usage: supervise.sh [--child-pid FILE] NAME -- COMMAND [ARG...]}"; shift
[[ "${1:-}" == "--" ]] && shift
(($#)) || { echo "supervise.sh: no command for $name" >&2; exit 2; }

max_delay="${KALO_RESTART_MAX_DELAY_S:-10}"
grace="${KALO_STOP_GRACE_S:-10}"
stopping=0
child=""
killer=""

say() { printf '%s [supervise] %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$*" >&2; }

on_stop() {
  stopping=1
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    say "stopping (pid $child)"
    kill -TERM "$child" 2>/dev/null
    # Bounded: whatever the service waits for, it is gone after the grace period.
    ( sleep "$grace"; kill -0 "$child" 2>/dev/null && kill -KILL "$child" 2>/dev/null ) &
    killer=$!
  fi
}
trap on_stop TERM INT HUP

describe() {  # the exit status in words
  local rc="$1"
  if ((rc > 128)); then
    local sig; sig="$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
    echo "killed by SIG$sig (status $rc)"
  else
    echo "exited with status $rc"
  fi
}

delay=1
restarts=0
while :; do
  started=$SECONDS
  "$@" &
  child=$!
  [[ -n "$child_pid_file" ]] && echo "$child" >"$child_pid_file"
  if ((restarts == 0)); then say "started (pid $child)"; else say "restarted (pid $child, restart #$restarts)"; fi
  # `wait` returns early when a trapped signal arrives: wait again until the child is gone.
  while :; do
    wait "$child"; rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  wait "$child" 2>/dev/null && rc=0 || { r=$?; ((r != 127)) && rc=$r; }
  if ((stopping)); then say "stopped ($(describe "$rc"))"; break; fi
  if ((rc == 0)); then say "exited with status 0; not restarted"; break; fi
  if ((SECONDS - started >= 10)); then delay=1; fi
  restarts=$((restarts + 1))
  say "$(describe "$rc"); restarting in ${delay}s"
  # Interruptible sleep: a stop during the backoff ends the loop at once.
  sleep "$delay" & wait $! 2>/dev/null
  if ((stopping)); then say "stopped while waiting to restart"; break; fi
  delay=$((delay * 2 > max_delay ? max_delay : delay * 2))
done
[[ -n "$killer" ]] && kill "$killer" 2>/dev/null
[[ -n "$child_pid_file" ]] && rm -f "$child_pid_file"
exit 0
