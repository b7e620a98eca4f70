# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_PASSWORD ?= demo-password

FRONTEND_SOURCES := $(shell find frontend/src frontend/index.html frontend/vite.config.ts frontend/tsconfig.json -type f 2>/dev/null)

SAM2 ?= sam2==1.1.0

.PHONY: run test node-check install install-dev medsam2 frontend lint typecheck api-types api-types-check pytest clean

run: node-check install frontend
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo --password "$(DEMO_PASSWORD)"
	$(PY) manage.py serve --host $(HOST) --port $(PORT) \
		--logins "Logins (password '$(DEMO_PASSWORD)'): manager, annotator, reviewer"

test: node-check install-dev medsam2 frontend lint typecheck api-types-check
	cd frontend && npm test
	$(PY) -m pytest

# Node.js first, against "engines" in frontend/package.json: one line naming the versions the build
# needs, rather than npm's EBADENGINE warnings and a build that fails further on.
node-check:
	@command -v node >/dev/null || { echo "The front end needs Node.js and npm (README: Two commands)."; exit 1; }
	@node frontend/scripts/check-node.mjs

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The default backend (LiteMedSAM) needs torch, torchvision and timm: the 'litemedsam' extra
# asks for torchvision, whose release pins the torch it was built with, so pip installs a pair
# that imports together (README, "Segmentation backends").
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[litemedsam]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

medsam2: $(VENV)/.installed-medsam2
$(VENV)/.installed-medsam2: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[medsam2]'
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet --no-deps --no-build-isolation "$(SAM2)"
	touch $@

# devDependencies too (--include=dev, even with NODE_ENV=production): vite and vitest build and
# test the front end, playwright-core drives Chromium in the browser tests (tests/browser/).
frontend/node_modules/.package-lock.json: frontend/package-lock.json frontend/package.json | node-check
	cd frontend && npm ci --include=dev --no-audit --no-fund

frontend: frontend/dist/index.html
frontend/dist/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	cd frontend && npm run build

# The front end's API types come from the API's OpenAPI schema (drf-spectacular ->
# openapi-typescript): `make api-types` after an API change, and `make test` fails while the
# committed frontend/src/api/schema.d.ts differs from what the schema generates.
# The schema is generated against SQLite whatever DATABASE_URL says: DRF gives model integer fields
# the database's range, and drf-spectacular writes int64 for SQLite's but not for PostgreSQL's.
SCHEMA := DATABASE_URL=sqlite://:memory: $(PY) manage.py spectacular --validate --fail-on-warn

api-types: install-dev frontend/node_modules/.package-lock.json
	mkdir -p var
	$(SCHEMA) --file var/openapi.yaml
	cd frontend && npm run --silent api-types -- src/api/schema.d.ts

api-types-check: install-dev frontend/node_modules/.package-lock.json
	mkdir -p var
	$(SCHEMA) --file var/openapi.yaml
	cd frontend && npm run --silent api-types -- ../var/schema.d.ts
	@cmp -s var/schema.d.ts frontend/src/api/schema.d.ts || \
		{ echo "frontend/src/api/schema.d.ts is not what the API's schema generates: run make api-types"; exit 1; }

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install-dev
	$(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist var test-artifacts
