# Shared settings of the local stack; sourced by the other scripts.
# Every value can be overridden with the same KALO_* variable the services read.
LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LOCAL_DIR/../.." && pwd)"
STATE_DIR="${KALO_STATE_DIR:-$LOCAL_DIR/.state}"
# KALO_KAFKA_HOME: jars fetched elsewhere (another checkout's), used as they are.
KAFKA_HOME="${KALO_KAFKA_HOME:-$LOCAL_DIR/.kafka}"
KAFKA_PORT="${KALO_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KALO_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_DIR="$STATE_DIR/kafka-$KAFKA_PORT"
PG_PORT="${KALO_PG_PORT:-5433}"
PG_DB="${KALO_PG_DB:-kalo}"
PG_USER="${KALO_PG_USER:-kalo}"
PYTHON="${KALO_PYTHON:-$REPO_DIR/.venv/bin/python}"
mkdir -p "$STATE_DIR"

log() { printf '[kalo-local] %s\n' "$*" >&2; }

# apt_install [APT-GET OPTIONS] PACKAGE...: Debian's packages, quietly (the setup's one way in).
apt_install() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND every half second.
wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "timed out after ${seconds}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
