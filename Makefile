# Storks: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need on a fresh Debian machine (apt-get as root, and
# Go tools through the module proxy). `make help` lists every target: those
# with a "## name: what it does" comment, which every target a user runs has.

GO       ?= go
BIN      := $(CURDIR)/bin
REGISTRY ?=
# Bounded fuzzing in `make test`; `make fuzz FUZZTIME=10m` for longer runs.
FUZZTIME ?= 15s

.PHONY: all help build demo console dev test test-go test-zk test-chaos test-interop test-mdns test-console vet fmt-check lint check-gen gen gen-interop fuzz bench bench-quick bench-large bench-micro bench-test deps deps-protoc deps-zookeeper deps-consul deps-lint deps-grpcurl deps-python deps-zeroconf deps-chromium clean

all: build

## help: list these targets with what they do
help:
	@awk '/^## [A-Za-z0-9_.-]+: / { t = substr($$0, 4); i = index(t, ": "); n++; \
		name[n] = substr(t, 1, i - 1); text[n] = substr(t, i + 2); if (i - 1 > w) w = i - 1 } \
		END { for (k = 1; k <= n; k++) printf("  %-" w "s  %s\n", name[k], text[k]) }' $(firstword $(MAKEFILE_LIST))

## build: compile everything and the example programs into bin/
build:
	$(GO) build ./...
	$(GO) build -o $(BIN)/ ./examples/provider ./examples/consumer ./examples/demo ./cmd/protoc-gen-storks ./cmd/storks

## demo: three providers and a consumer on 127.0.0.1, round-robin (REGISTRY=URL: another registry)
demo: build
	$(BIN)/demo -bin $(BIN) $(if $(REGISTRY),-registry '$(REGISTRY)')

## console: the web console on http://127.0.0.1:8080/ of REGISTRY, or of a storks dev etcd it starts (then: make demo REGISTRY=etcd://127.0.0.1:2379/storks)
console: build
	BIN=$(BIN) REGISTRY='$(REGISTRY)' scripts/console.sh

## dev: run an embedded etcd registry on 127.0.0.1 for local development
dev: build
	$(BIN)/storks dev

## test: lint, every test (runtime under -race), generated-code freshness, fuzzing
test: deps fmt-check vet lint check-gen test-go test-zk test-chaos test-interop test-console fuzz

# Packages whose tests make ZooKeeper clients reconnect run without -race:
# go-zookeeper v1.0.4 (the latest) has a data race on reconnect in its own
# code (lastZxid; go-zookeeper/zk#35) that the detector reports as a failure.
# Everything else, the runtime included, runs under -race.

## test-go: the Go tests under -race, but for those of test-zk, test-chaos and test-interop
test-go:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v -e '/registry/zookeeper$$' -e '/examples/e2e$$' -e '/internal/chaos$$' -e '/internal/interop/')

## test-zk: the Go tests whose ZooKeeper clients reconnect, without -race
# One package at a time (-p 1): examples/e2e measures latencies
# (TestLeastLoadedAvoidsASlowProvider), which a ZooKeeper server and its
# tests running beside it on two cores would drown.
test-zk:
	$(GO) test -p 1 -count=1 -timeout 10m ./registry/zookeeper ./examples/e2e

## test-chaos: fault tests with real processes and registries; prints their figures
test-chaos:
	@out=$$(mktemp); $(GO) test -count=1 -timeout 10m -v ./internal/chaos >$$out 2>&1; s=$$?; \
	if [ $$s -eq 0 ]; then grep -E -- '--- |figures:|^ok' $$out; else cat $$out; fi; rm -f $$out; exit $$s

# internal/interop/...: real gRPC clients (grpc-go, grpcurl, Python's grpcio)
# against Storks providers. When grpcurl or Python's grpcio is missing, the
# tests that need it fail under CI (elsewhere they skip, saying so), naming
# the target that installs it. GRPCURL is the path that deps-grpcurl built,
# so the tests need not ask the go command again.
## test-interop: gRPC interop tests (grpc-go, grpcurl, Python) under -race; installs grpcurl and Python's grpcio first
test-interop: deps-grpcurl deps-python
	GRPCURL="$$(cd tools/interop && $(GO) tool -n grpcurl)" CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m ./internal/interop/...

# make test runs these in test-go (the conformance suite, the interop tests
# with python-zeroconf, all on the loopback interface, which the tests set up
# for multicast when run as root) and examples/e2e's in test-zk; this target
# is for working on the adapter alone.
## test-mdns: the mdns:// registry's tests under -race (installs python3-zeroconf first)
test-mdns: deps-zeroconf
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m ./registry/mdns
	$(GO) test -count=1 -timeout 10m -run MDNS ./examples/e2e

# console/browsertest: the web console (storks console) in a real headless
# chromium, driven with chromedp, against provider processes on an embedded
# etcd, and the console on etcd, Consul and ZooKeeper. A module of its own
# (chromedp needs Go 1.25; the main module stays at 1.24). Run alone: its
# timings (a disabled provider gets no call within 1 s, a killed one leaves
# the page within the TTL) want the two cores to themselves. Screenshots go
# to test-output/console/. Under CI a missing chromium fails the test,
# naming deps-chromium.
## test-console: the web console's tests in headless chromium and on each registry; installs chromium first
test-console: deps-chromium deps-zookeeper deps-consul
	@out=$$(mktemp); (cd console/browsertest && $(GO) vet ./... && \
		STORKS_TEST_OUTPUT=$(CURDIR)/test-output/console CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 10m -v ./...) >$$out 2>&1; s=$$?; \
	if [ $$s -eq 0 ]; then grep -E -- '--- |_test.go:[0-9]+: [a-zA-Z]|^ok' $$out; else cat $$out; fi; rm -f $$out; exit $$s

## vet: go vet ./...
vet:
	$(GO) vet ./...

## fmt-check: fail if a Go file is not gofmt-formatted
fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## lint: staticcheck with staticcheck.conf on this module and bench/ (silent when clean)
# bench/gen is wholly generated and has no package comments (ST1000, which
# staticcheck applies to generated packages too), so it is left out.
lint: deps-lint
	@sc="$$(cd tools/lint && $(GO) tool -n staticcheck)" || exit 1; s=0; \
	$$sc ./... || s=1; \
	out="$$(cd bench && $$sc $$($(GO) list ./... | grep -v '/bench/gen/') 2>&1)" || s=1; \
	[ -z "$$out" ] || echo "$$out" | sed 's|^[^[:space:]]|bench/&|'; \
	out="$$(cd console/browsertest && $$sc ./... 2>&1)" || s=1; \
	[ -z "$$out" ] || echo "$$out" | sed 's|^[^[:space:]]|console/browsertest/&|'; \
	exit $$s

## gen: regenerate examples/gen with storks generate (no protoc needed)
gen:
	scripts/gen.sh

## gen-interop: regenerate the grpc-go client of the interop tests (protoc, protoc-gen-go-grpc)
gen-interop: deps-protoc
	scripts/gen-interop.sh

## check-gen: fail if examples/gen or the interop tests' grpc-go client is not what the generators produce
check-gen: deps-protoc
	scripts/check-gen.sh
	scripts/gen-interop.sh -check

## fuzz: run every fuzz target for FUZZTIME each (default 15s; FUZZTIME=10m for longer)
# scripts/fuzz.sh: -fuzzminimizetime keeps minimising a large input from
# eating the whole run, and a run that Go's coordinator fails with a bare
# deadline race, having written no failing input, is retried once.
fuzz:
	GO=$(GO) scripts/fuzz.sh ./runtime FuzzDecodeFrame $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./runtime FuzzParseRequest $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./runtime FuzzParseStreamFrames $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./runtime FuzzServerStreamFrames $(FUZZTIME)
	GO=$(GO) scripts/fuzz.sh ./registry/mdns FuzzHandlePacket $(FUZZTIME)

## bench: Storks vs grpc-go, rpcx, Kitex and plain-TCP references, unary, large unary and streaming (bench/, ~18 min): bench/RESULTS.md, bench/throughput.svg, bench/profiles/
bench:
	cd bench && $(GO) run ./cmd/rpcbench -mode full

## bench-quick: 581 B at 1/64/1000 callers and 64 server/bidi streams, 3 rounds of 1 s (about two minutes once compiled)
bench-quick:
	cd bench && $(GO) run ./cmd/rpcbench -mode quick

## bench-large: large unary calls (16 KiB, 1 MiB, 3.9 MiB at 8 callers), Storks vs grpc-go, 5 rounds of 2 s; prints, writes nothing
bench-large:
	cd bench && $(GO) run ./cmd/rpcbench -mode large

## bench-micro: the runtime's own go-test benchmarks
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./runtime

## bench-test: every benchmark row answers correctly
bench-test:
	cd bench && $(GO) test -count=1 ./...

## deps: install what the tests need: protoc, ZooKeeper, Python's grpcio and zeroconf, chromium (as root, from Debian), Consul, staticcheck and grpcurl (Go tools)
deps: deps-protoc deps-zookeeper deps-consul deps-lint deps-grpcurl deps-python deps-zeroconf deps-chromium

# protoc 3.21 from Debian: only the tests that compare protoc's output with
# storks generate's and examples/gen need it (make gen does not).
## deps-protoc: install protoc from Debian (as root), unless it is on $PATH
deps-protoc:
	@command -v protoc >/dev/null || scripts/apt-install.sh protobuf-compiler

## deps-zookeeper: install ZooKeeper from Debian (as root), for the real-ZooKeeper tests
deps-zookeeper:
	@[ -x /usr/share/zookeeper/bin/zkServer.sh ] || scripts/apt-install.sh zookeeper

# Consul is not in Debian: it builds from the module proxy as a tool of
# tools/go.mod (about 5 minutes the first time, cached afterwards).
## deps-consul: build Consul as a tool of tools/go.mod, for the real-Consul tests
deps-consul:
	cd tools && $(GO) tool consul version >/dev/null

# staticcheck builds from the module proxy as a tool of tools/lint/go.mod, a
# module of its own (see there); about 2.5 minutes the first time.
## deps-lint: build staticcheck as a tool of tools/lint/go.mod
deps-lint:
	cd tools/lint && $(GO) tool -n staticcheck >/dev/null

# grpcurl builds from the module proxy as a tool of tools/interop/go.mod, a
# module of its own (see there); about a minute the first time.
## deps-grpcurl: build grpcurl as a tool of tools/interop/go.mod, for the interop tests
deps-grpcurl:
	cd tools/interop && $(GO) tool -n grpcurl >/dev/null

# Debian 12's grpcio 1.51 and python3-protobuf 3.21.12 match its protoc
# 3.21.12, whose grpc_python_plugin (protobuf-compiler-grpc) the Python test
# runs. They are for Debian's /usr/bin/python3, which the test runs: a
# python3 earlier on $PATH (pyenv, a venv) does not see them.
## deps-python: install Python's grpcio, protobuf and grpc_python_plugin from Debian (as root), for the interop tests
deps-python:
	@{ [ -x /usr/bin/grpc_python_plugin ] && /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null; } || \
		scripts/apt-install.sh python3-grpcio python3-protobuf protobuf-compiler-grpc

# python-zeroconf is the mDNS/DNS-SD implementation that registry/mdns's
# interop tests run against (a browser and an announcer), for Debian's
# /usr/bin/python3.
## deps-zeroconf: install python3-zeroconf from Debian (as root), for the mdns:// interop tests
deps-zeroconf:
	@/usr/bin/python3 -c 'import zeroconf' 2>/dev/null || scripts/apt-install.sh python3-zeroconf

## deps-chromium: install Debian's chromium (as root), for the web console's browser tests
deps-chromium:
	@[ -x /usr/bin/chromium ] || scripts/apt-install.sh chromium

## clean: remove bin/
clean:
	rm -rf $(BIN)
