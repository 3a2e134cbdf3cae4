.PHONY: install install-kubernetes up up-kubernetes test check lint typecheck bench

install:
	./scripts/install.sh

up: install
	.venv/bin/aevatar-sandbox up

# The local single-node Kubernetes cluster's binaries, packages and images (not needed by `make up`).
install-kubernetes:
	./scripts/install-kubernetes.sh

# The platform on a local single-node Kubernetes cluster: every run is a Job and a real pod.
up-kubernetes: install install-kubernetes
	./scripts/up-kubernetes.sh

# The whole test suite, on a fresh machine too: installs, starts the broker (the fixture does).
test: install install-kubernetes
	.venv/bin/pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

check: install install-kubernetes lint typecheck
	.venv/bin/pytest

bench: install
	.venv/bin/aevatar-sandbox bench
