# Runbox: `make run` starts everything on this host, `make test` runs every
# test. Both install and start what they need (Docker engine, Redis, images).

GO        ?= go
BIN       := bin
LANGUAGES ?=
export LANGUAGES

.PHONY: all build setup setup-test images run test test-unit bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/runbox-api ./api
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/runbox-worker ./worker

# Installs and starts the Docker engine and Redis where they are missing.
setup:
	deployments/scripts/setup-host.sh

setup-test:
	deployments/scripts/setup-host.sh --test

# Builds the base image and the language images; unchanged images are
# skipped. LANGUAGES=python,c builds a subset.
images:
	deployments/scripts/build-images.sh

run: setup images build
	deployments/scripts/run-local.sh

# Every test: unit, integration (real Redis and Docker engine), end to end
# and the browser test.
test: setup-test images
	TESTCONTAINERS_RYUK_DISABLED=true $(GO) test -count=1 -p 1 -timeout 60m ./...

# Tests that need neither a Docker engine nor Redis: request validation,
# verdict mapping, the page and the Kubernetes manifests.
test-unit:
	$(GO) test -count=1 ./pkg/submission ./web ./deployments/kubernetes
	$(GO) test -count=1 -run 'Verdict|CappedBuffer' ./pkg/sandbox

clean:
	rm -rf $(BIN)

# Measures Runbox against `docker run --rm` and writes docs/benchmarks.md.
bench: setup images
	$(GO) run ./test/bench

.PHONY: compose-images test-compose

# Builds runbox/api and runbox/worker for docker-compose.yml and
# deployments/kubernetes, and writes the language image archives that each
# worker loads into its own engine (RUNBOX_ARCHIVE_DIR, default
# /var/lib/runbox/images). LANGUAGES=python,bash limits the archives.
compose-images: images build
	deployments/scripts/compose-images.sh

# Only the docker-compose tests (two Docker-in-Docker workers); `make test`
# runs them too.
test-compose: setup-test images
	$(GO) test -count=1 -v -timeout 20m ./test/compose
