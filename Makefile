# Herald: `make run` starts the server, `make test` runs every test.
GO ?= go
export CGO_ENABLED := 1

.PHONY: run build test bench bench-go bench-e2e lint fmt

run:
	$(GO) run . serve

build:
	$(GO) build -o herald .

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

# Micro-benchmarks, then a short end-to-end scenario set with `herald bench`.
bench: bench-go bench-e2e

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./...

bench-e2e: build
	./scripts/bench.sh

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w .
