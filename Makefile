# Herald: `make run` starts the server, `make test` runs every test.
GO ?= go
export CGO_ENABLED := 1

.PHONY: run build test bench bench-go bench-e2e lint fmt

# The first build compiles SQLite's C source through cgo: minutes, with
# nothing on screen but "go: downloading" lines. Say so before it starts.
FIRST_BUILD = @echo "herald: building; the first build compiles SQLite (cgo) and takes a few minutes, later ones seconds"

run:
	$(FIRST_BUILD)
	$(GO) run . serve

build:
	$(FIRST_BUILD)
	$(GO) build -o herald .

# The tests start real redis-server and PostgreSQL processes on random
# local ports; .ci/deps installs them first when they are missing.
test:
	@sh .ci/deps
	@echo "herald: the first run compiles SQLite (cgo) with -race, which takes a few minutes"
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

# Micro-benchmarks, then a short end-to-end scenario set with `herald bench`.
bench: bench-go bench-e2e

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./...

# bench-e2e runs a short `herald bench` scenario set, each scenario against
# a fresh ./herald on $(BENCH_ADDR) (throwaway data dir, rate limits off,
# durable defaults otherwise: sqlite-sync FULL) given to bench by --pid. A
# fresh server per scenario keeps them apart: the streams of one go offline
# a presence grace (5s) after it ends, which would land in the next one's
# measurement, and memory per stream is measured from a cold heap. The EXIT
# trap stops the server and removes the data even when a step fails or make
# is interrupted (a background job ignores SIGINT: it gets SIGTERM).
BENCH_ADDR ?= 127.0.0.1:18090
bench-e2e: build
	@set -eu; root=$$(mktemp -d); pid=; \
	stop() { if [ -n "$$pid" ]; then kill $$pid 2>/dev/null || true; wait $$pid 2>/dev/null || true; pid=; fi; }; \
	trap 'stop; rm -rf "$$root"' EXIT; trap 'exit 130' INT TERM; \
	scenario() { \
		echo "== $$1"; shift; dir=$$(mktemp -d -p "$$root"); \
		HERALD_ADDR=$(BENCH_ADDR) HERALD_DATA_DIR=$$dir HERALD_RATE_LIMITS=off HERALD_LOG_LEVEL=warn ./herald serve & pid=$$!; \
		for i in $$(seq 100); do \
			curl -fsS -o /dev/null http://$(BENCH_ADDR)/readyz 2>/dev/null && break; \
			kill -0 $$pid 2>/dev/null || { echo "bench-e2e: herald exited"; exit 1; }; sleep 0.1; \
		done; \
		curl -fsS -o /dev/null http://$(BENCH_ADDR)/readyz; \
		./herald bench --url http://$(BENCH_ADDR) --data-dir "$$dir" --pid $$pid "$$@"; \
		stop; \
	}; \
	scenario "S1: 1 room x 1000 streams, 1 publisher flat out, 5s" --streams 1000 --rooms 1 --publishers 1 --duration 5s; \
	scenario "S2: 50 posts/s x 1000 streams, 5s" --streams 1000 --rooms 1 --publishers 1 --rate 50 --duration 5s; \
	scenario "latency floor: 10 streams, 20 posts/s, 5s" --streams 10 --rooms 1 --publishers 1 --rate 20 --duration 5s; \
	scenario "S4: 100 rooms x 50 streams, 8 publishers flat out, 5s" --streams 5000 --rooms 100 --publishers 8 --duration 5s

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w .
