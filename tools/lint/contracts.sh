#!/usr/bin/env bash
# The contract linters of `make lint`, from the npm packages pinned here (package-lock.json):
#   Redocly CLI (its `recommended` ruleset) and Spectral (`spectral:oas`) on the OpenAPI document,
#   the AsyncAPI CLI on the AsyncAPI document.
# Any error fails; warnings are printed. Nothing is fetched at run time: the rulesets ship in the
# packages, telemetry and update checks are off.
# usage: contracts.sh [OPENAPI [ASYNCAPI]]   (default: contracts/openapi.json contracts/asyncapi.yaml)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OPENAPI="$(realpath "${1:-$ROOT/contracts/openapi.json}")"
ASYNCAPI="$(realpath "${2:-$ROOT/contracts/asyncapi.yaml}")"
BIN="$HERE/node_modules/.bin"
[[ -x "$BIN/redocly" && -x "$BIN/spectral" && -x "$BIN/asyncapi" ]] \
  || { echo "the contract linters are not installed: run \`make lint-tools\`" >&2; exit 2; }

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
export ASYNCAPI_METRICS_CONFIG_PATH="$HERE/asyncapi-analytics.json" ASYNCAPI_SKIP_NEW_VERSION_CHECK=true
export NO_UPDATE_NOTIFIER=1 DO_NOT_TRACK=1 SCARF_ANALYTICS=false

cd "$HERE"
echo "== redocly $("$BIN/redocly" --version 2>/dev/null) lint (recommended): ${OPENAPI#"$ROOT"/}"
# (Its banner about Node.js 20's end of life, printed on every run there, left out.)
status=0
out="$("$BIN/redocly" lint --config redocly.yaml --format stylish "$OPENAPI" 2>&1)" || status=$?
grep -v -e '[║╔╚]' -e '^$' <<<"$out" || true
((status == 0)) || exit "$status"
echo "== spectral $("$BIN/spectral" --version) lint (spectral:oas): ${OPENAPI#"$ROOT"/}"
"$BIN/spectral" lint --ruleset .spectral.yaml --fail-severity error "$OPENAPI"
echo "== asyncapi $("$BIN/asyncapi" --version | cut -d' ' -f1 | sed 's#.*/##') validate: ${ASYNCAPI#"$ROOT"/}"
"$BIN/asyncapi" validate --fail-severity error "$ASYNCAPI"
