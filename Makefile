.PHONY: install up test check lint typecheck bench

install:
	./scripts/install.sh

up: install
	.venv/bin/aevatar-sandbox up

# The whole test suite, on a fresh machine too: installs, starts the broker (the fixture does).
test: install
	.venv/bin/pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

check: install lint typecheck
	.venv/bin/pytest

bench: install
	.venv/bin/aevatar-sandbox bench
