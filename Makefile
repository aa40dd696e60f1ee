# Kiln — `make run` and `make test` do all the set-up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
GO := $(shell bash scripts/go.sh)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -X github.com/kilnproject/kiln/internal/version.Version=$(VERSION)
export KILN_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kiln
export KILN_AGENT := $(CURDIR)/bin/kiln-agent
export KILN_BIN := $(CURDIR)/bin/kiln
TEST_TIMEOUT ?= 40m
FUZZTIME ?= 10s

.PHONY: all deps inputs build run test vet fuzz bench package clean

all: build

## deps: install missing system packages and Go modules
deps:
	@bash scripts/install-deps.sh
	@$(GO) mod download

## inputs: fetch the default image's input packages into $KILN_CACHE/debs and the arm64-uefi board's
## into $KILN_CACHE/debs-arm64 for the tests (idempotent; kiln build fetches what it needs by itself)
inputs: bin/kiln
	@bash scripts/fetch-inputs.sh

## build: bin/kiln (desktop app + CLI) and bin/kiln-agent (static, for the images; -amd64 and -arm64
## for images of each arch)
build: bin/kiln bin/kiln-agent bin/kiln-agent-amd64 bin/kiln-agent-arm64

bin/kiln: FORCE
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ .

bin/kiln-agent: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $@ ./cmd/kiln-agent

bin/kiln-agent-%: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $@ ./cmd/kiln-agent

FORCE:

## run: set up, build and open the app on the built-in default recipe
run: deps inputs build
	./bin/kiln

## vet: go vet for this OS and the other desktop OSes (Windows with the app, cgo through mingw-w64;
## macOS without it, as the app needs a Mac's cgo)
vet:
	$(GO) vet ./...
	CGO_ENABLED=0 GOOS=darwin $(GO) vet $$($(GO) list ./... | grep -v -e /app -e '/kiln$$')
	CGO_ENABLED=0 GOOS=darwin $(GO) vet -tags nogui .
	CGO_ENABLED=1 GOOS=windows CC=x86_64-w64-mingw32-gcc $(GO) vet ./...

## test: set up and run every test (root for loop devices; QEMU boot tests included), then every
## fuzz target for a short time so a regression in a parser shows
test: deps inputs build vet
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh; f=$$?; \
	GO=$(GO) TEST_TIMEOUT=$(TEST_TIMEOUT) bash scripts/test.sh && exit $$f

## fuzz: every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m for a long run)
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

## bench: speed and size figures against the usual tools, recorded in docs/benchmarks.md
bench: deps inputs build
	bash bench/run.sh

## package: release artifacts in dist/: Linux .tar.xz and .deb, Windows .zip (app + CLI, cross-built
## with mingw-w64), macOS CLI .tar.gz (amd64, arm64)
package: build
	GO=$(GO) bash packaging/cross.sh $(VERSION) bin/cross
	KILN_CROSS=bin/cross bash packaging/build.sh $(VERSION)

clean:
	rm -rf bin dist out
