#!/usr/bin/env bash
# The contract linters of `make lint`, from the npm packages pinned here (package-lock.json):
#   Redocly CLI (its `recommended` ruleset) and Spectral (`spectral:oas`) on each OpenAPI document,
#   the AsyncAPI CLI on the AsyncAPI document.
# Any error fails; warnings are printed. Nothing is fetched at run time: the rulesets ship in the
# packages, telemetry and update checks are off.
# usage: contracts.sh [--asyncapi FILE] [OPENAPI...]
#   (default: contracts/openapi.json contracts/control-openapi.json, contracts/asyncapi.yaml)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ASYNCAPI="$ROOT/contracts/asyncapi.yaml"
if [[ "${1:-}" == "--asyncapi" ]]; then ASYNCAPI="$2"; shift 2; fi
ASYNCAPI="$(realpath "$ASYNCAPI")"
OPENAPIS=()
for doc in "${@:-$ROOT/contracts/openapi.json}"; do OPENAPIS+=("$(realpath "$doc")"); done
(($#)) || OPENAPIS+=("$ROOT/contracts/control-openapi.json")
BIN="$HERE/node_modules/.bin"
[[ -x "$BIN/redocly" && -x "$BIN/spectral" && -x "$BIN/asyncapi" ]] \
  || { echo "the contract linters are not installed: run \`make lint-tools\`" >&2; exit 2; }

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
export ASYNCAPI_METRICS_CONFIG_PATH="$HERE/asyncapi-analytics.json" ASYNCAPI_SKIP_NEW_VERSION_CHECK=true
export NO_UPDATE_NOTIFIER=1 DO_NOT_TRACK=1 SCARF_ANALYTICS=false

cd "$HERE"
for OPENAPI in "${OPENAPIS[@]}"; do
  echo "== redocly $("$BIN/redocly" --version 2>/dev/null) lint (recommended): ${OPENAPI#"$ROOT"/}"
  # (Its banner about Node.js 20's end of life, printed on every run there, left out.)
  status=0
  out="$("$BIN/redocly" lint --config redocly.yaml --format stylish "$OPENAPI" 2>&1)" || status=$?
  grep -v -e '[║╔╚]' -e '^$' <<<"$out" || true
  ((status == 0)) || exit "$status"
  echo "== spectral $("$BIN/spectral" --version) lint (spectral:oas): ${OPENAPI#"$ROOT"/}"
  "$BIN/spectral" lint --ruleset .spectral.yaml --fail-severity error "$OPENAPI"
done
echo "== asyncapi $("$BIN/asyncapi" --version | cut -d' ' -f1 | sed 's#.*/##') validate: ${ASYNCAPI#"$ROOT"/}"
"$BIN/asyncapi" validate --fail-severity error "$ASYNCAPI"
