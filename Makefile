# ferry — see README.md. A new user runs two commands: `make demo` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:/usr/local/sbin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/ferry-project/ferry/internal/version.Version=$(VERSION)
BIN := bin
FUZZTIME ?= 10s

.PHONY: all deps build test test-unit test-e2e test-precopy fuzz-smoke demo demo-redis docs lab-down clean bench bench-mem bench-fs bench-redis

all: build

## deps: install everything ferry and its lab need (apt packages, CRIU 4.x, Go modules). Idempotent.
deps:
	bash scripts/deps.sh
	$(GO) mod download

## build: ferry, ferry-receiver, ferry-lab and the lab workload into bin/
build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/ferry ./cmd/ferry-receiver ./cmd/ferry-lab
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ferry-workload ./lab/workload

## test: everything CI runs — unit tests, end-to-end tests on the lab, a short fuzz run — then a
## summary of what was skipped and why.
test: deps build
	set -o pipefail; { \
	  $(GO) test -json -count=1 -timeout 20m $$($(GO) list ./... | grep -v /e2e/vm) ; \
	  $(GO) test -json -count=1 -timeout 45m ./e2e/vm ; \
	  $(GO) test -json -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./transport/wire ; \
	  $(GO) test -json -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./transport/zstream ; \
	} 2>&1 | $(GO) run ./scripts/testsummary

## test-unit: the tests that need neither root nor the lab
test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

## test-precopy: pre-copy end to end, in a VM on Debian's kernel (soft-dirty tracking), ~5 min
test-precopy: deps build
	$(GO) test -count=1 -v -timeout 45m ./e2e/vm

## test-e2e: only the end-to-end tests (root)
test-e2e: build
	$(GO) test -count=1 -v ./e2e

fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./transport/wire
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./transport/zstream

## demo: install, build, and move a 64 MiB workload a → b → a on the lab, checking each move.
demo: deps build
	bash scripts/demo.sh

## demo-redis: Debian's redis-server moved a → b → a while a client keeps one connection to it:
## every key present, the same connection, the longest gap the client saw.
demo-redis: deps build
	bash scripts/demo-redis.sh

## docs: regenerate the CLI reference in docs/cli from the command trees (a test fails when it is stale)
docs:
	$(GO) test ./cmd/ferry ./cmd/ferry-receiver ./cmd/ferry-lab -run TestCLIReference -count=1 -args -update

lab-down:
	-$(BIN)/ferry-lab down

clean: lab-down
	rm -rf $(BIN)

## bench-fs: filesystem drivers on the lab (JSON in bench/results/fs.json, a table on stdout)
bench-fs: build
	mkdir -p bench/results
	-$(BIN)/ferry-lab down >/dev/null 2>&1
	$(BIN)/ferry-lab up --zfs
	$(BIN)/ferry-lab bench-fs --out bench/results/fs.json | tee bench/results/fs.md; s=$${PIPESTATUS[0]}; $(BIN)/ferry-lab down; exit $$s

## bench-mem: memory strategies at 64/256/1024 MiB × filesystem (the writable layer by rsync; plus
## a volume on a plain directory by rsync; plus a zfs volume by zfs send) vs the raw SSH link (into
## /dev/null and into a file) and Podman's checkpoint/restore pipeline (installs podman; JSON in
## bench/results/mem.json, a table on stdout)
bench-mem: build
	FERRY_BENCH=1 bash scripts/deps.sh
	mkdir -p bench/results
	-$(BIN)/ferry-lab down >/dev/null 2>&1
	$(BIN)/ferry-lab up --zfs
	$(BIN)/ferry-lab bench-mem --drivers rootfs,rsync,zfs --out bench/results/mem.json | tee bench/results/mem.md; s=$${PIPESTATUS[0]}; $(BIN)/ferry-lab down; exit $$s

## bench-redis: client-observed downtime (the longest gap between two answers on one connection)
## of a Redis container with 10k and 1M keys, per strategy (JSON in bench/results/redis.json)
bench-redis: build
	mkdir -p bench/results
	-$(BIN)/ferry-lab down >/dev/null 2>&1
	$(BIN)/ferry-lab up
	$(BIN)/ferry-lab bench-redis --out bench/results/redis.json | tee bench/results/redis.md; s=$${PIPESTATUS[0]}; $(BIN)/ferry-lab down; exit $$s

## bench: every benchmark (bench-mem, bench-fs, bench-redis) and the plots (SVG in bench/results)
bench: deps bench-mem bench-fs bench-redis
	$(BIN)/ferry-lab plot --mem bench/results/mem.json --out bench/results
