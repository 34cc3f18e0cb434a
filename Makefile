# sqsworker — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
SQS_SERVER_DIR := tools/sqs-server
SQS_SERVER := $(SQS_SERVER_DIR)/node_modules/.bin/node
GOLANGCI_LINT_VERSION := v2.15.0
BIN := bin
# The Lambda runtime interface emulator the lambda handler's tests run a
# function in: a tool of this module (go.mod's tool directive pins it),
# built into bin/tools, where internal/lambdatest builds it too.
LAMBDA_RIE := $(BIN)/tools/aws-lambda-rie
# grpcnotrace keeps gRPC's request tracing (and html/template with it) out
# of the worker: the binary is a third smaller. See internal/sqstest.WorkerTags.
WORKER_TAGS := grpcnotrace

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

tools: $(SQS_SERVER) $(LAMBDA_RIE) ## Install the local SQS-compatible server (fauxqs, pinned in tools/sqs-server) and the Lambda runtime interface emulator

$(LAMBDA_RIE): go.mod go.sum
	$(GO) build -o $@ github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie

# promtool checks and unit-tests deploy/monitoring/alerts.yml, for make test
# only. A promtool on PATH is used as it is; else the one in Debian's
# prometheus package is unpacked into bin/tools, without installing the
# package: no service, no user, no dependencies (promtool needs only libc).
# Building it from its Go module took over ten minutes on two cores. When it
# cannot be had, the alert rule tests skip and say why.
PROMTOOL_DIR := $(BIN)/tools
promtool:
	@command -v promtool >/dev/null 2>&1 || [ -x $(PROMTOOL_DIR)/promtool ] || { \
	  tmp=$$(mktemp -d) && chmod 755 $$tmp && \
	  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then \
	    echo "unpacking promtool from Debian's prometheus package into $(PROMTOOL_DIR)"; \
	    { apt-get update -qq >/dev/null 2>&1 || true; } && \
	    (cd $$tmp && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null) && \
	    dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root && \
	    mkdir -p $(PROMTOOL_DIR) && cp $$tmp/root/usr/bin/promtool $(PROMTOOL_DIR)/promtool || \
	    echo "could not unpack promtool: the alert rule tests will skip (put promtool on PATH to run them)"; \
	  else \
	    echo "promtool not found and no apt-get: the alert rule tests will skip (put promtool on PATH to run them)"; \
	  fi; rm -rf $$tmp; }

$(SQS_SERVER): $(SQS_SERVER_DIR)/package.json $(SQS_SERVER_DIR)/package-lock.json
	cd $(SQS_SERVER_DIR) && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error
	@touch $@

# `worker version` names the commit built, its time and whether tracked
# files differed from it, stamped at link time from git: the go command
# stamps them itself only with -buildvcs on, and GOFLAGS may turn it off.
# The version is `git describe --tags --dirty`, "devel" without a tag.
# Outside a git checkout all stay empty and the go command's, if any, show.
BUILDINFO := github.com/sqsworker/sqsworker/internal/buildinfo
GIT_VERSION = $(shell git describe --tags --dirty 2>/dev/null)
GIT_REVISION = $(shell git rev-parse HEAD 2>/dev/null)
GIT_TIME = $(shell TZ=UTC git show -s --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd HEAD 2>/dev/null)
GIT_MODIFIED = $(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo true)
WORKER_LDFLAGS = -X $(BUILDINFO).version=$(GIT_VERSION) -X $(BUILDINFO).revision=$(GIT_REVISION) \
	-X $(BUILDINFO).revisionTime=$(GIT_TIME) -X $(BUILDINFO).modified=$(GIT_MODIFIED)

build: ## Build bin/worker, stamped with the commit it was built from
	$(GO) build -tags $(WORKER_TAGS) -ldflags "$(WORKER_LDFLAGS)" -o $(BIN)/worker ./cmd/worker

demo: tools build ## Run the whole job end to end against a local server and print a summary
	$(GO) build -o $(BIN)/demo-handler ./examples/handler
	$(GO) run ./examples/demo --worker $(BIN)/worker --handler $(BIN)/demo-handler

test: tools promtool lint ## Run every test (with -race), after gofmt, go vet and golangci-lint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	@# The report prints each package's result, the figures tests count
	@# (lost, duplicates, redeliveries, calls per round), and all output of
	@# anything that failed.
	@# One package at a time (-p 1): the heartbeat and GC tests hold
	@# thousands of leases or watch collections under -race, and on two
	@# cores another package's load beside them makes them miss.
	set -o pipefail; PATH="$(abspath $(PROMTOOL_DIR)):$$PATH" $(GO) test -race -count=1 -p 1 -timeout 30m -json ./... | $(GO) run ./tools/testreport

# With 20 ms round trips the no-op throughput loops move a few hundred
# msg/s, so that run takes 10,000 messages instead of 50,000 (its table
# says so).
bench: tools ## Run sqsbench's scenarios locally, then with 20 ms per round trip; print the tables
	$(GO) run ./cmd/sqsbench --json bench-results.json
	$(GO) run ./cmd/sqsbench --rtt 20ms --throughput-messages 10000 --json bench-results-rtt20ms.json \
	  --scenarios $(RTT_SCENARIOS)
	$(GO) run ./cmd/sqsbench --readme README.md --from bench-results.json,bench-results-rtt20ms.json

# With 20 ms round trips, the scenarios whose figure depends on latency;
# receive-integrity and the drain figures are about the worker and the
# local server, and would only take longer.
RTT_SCENARIOS := noop-throughput,requests-per-message,binary-noop,peer-throughput,idle-cost,long-tail-utilization,pickup-latency,heartbeat-cost,footprint,load-throughput

lint: ## Run golangci-lint (installed from the Go module proxy on first use)
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

clean: ## Remove build output
	rm -rf $(BIN)

.PHONY: help tools promtool build demo test bench lint clean
