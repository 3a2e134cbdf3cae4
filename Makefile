.PHONY: install install-toolchains install-kubernetes up up-kubernetes test check lint typecheck bench

# What `up` needs for a first hello world (Python, JavaScript, Bash): packages, venv, Kafka jars.
install:
	./scripts/install.sh

# The other languages' toolchains (C, C++, C#, the JDK, TypeScript, Rust, Go's std cache).
install-toolchains:
	./scripts/install.sh --toolchains

# The platform now; the other toolchains install in the background (log: $(TOOLCHAINS_LOG)), and
# their languages report as warming until they land.
TOOLCHAINS_LOG ?= /tmp/aevatar-sandbox-toolchains.log
up: install
	nohup ./scripts/install.sh --toolchains >$(TOOLCHAINS_LOG) 2>&1 &
	.venv/bin/aevatar-sandbox up

# The local single-node Kubernetes cluster's binaries, packages and images (not needed by `make up`).
install-kubernetes:
	./scripts/install-kubernetes.sh

# The platform on a local single-node Kubernetes cluster: every run is a Job and a real pod.
up-kubernetes: install install-kubernetes
	./scripts/up-kubernetes.sh

# The whole test suite, on a fresh machine too: installs, starts the broker (the fixture does).
test: install install-toolchains install-kubernetes
	.venv/bin/pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

check: install install-toolchains install-kubernetes lint typecheck
	.venv/bin/pytest

bench: install install-toolchains
	.venv/bin/aevatar-sandbox bench
