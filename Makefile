# ferry — see README.md. The two commands a new user runs: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := /usr/local/go/bin:/usr/local/sbin:$(PATH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/ferry-project/ferry/internal/version.Version=$(VERSION)
BIN := bin

.PHONY: all deps build clean
all: build

deps:
	bash scripts/deps.sh
	$(GO) mod download

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/ferry ./cmd/ferry-receiver ./cmd/ferry-lab
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ferry-workload ./lab/workload

clean:
	rm -rf $(BIN)

.PHONY: test
test: build
	$(GO) test ./...
