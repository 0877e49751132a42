# Herald: `make run` starts the server, `make test` runs every test.
GO ?= go
export CGO_ENABLED := 1

.PHONY: run dev build test bench bench-go bench-e2e bench-cluster lint fmt mutate fuzz

# The first build compiles SQLite's C source through cgo: minutes, with
# nothing on screen but "go: downloading" lines. Say so before it starts.
FIRST_BUILD = @echo "herald: building; the first build compiles SQLite (cgo) and takes a few minutes, later ones seconds"

run:
	$(FIRST_BUILD)
	$(GO) run . serve

# dev mode: the chat page at http://localhost:8080, and tokens for any name.
dev:
	$(FIRST_BUILD)
	$(GO) run . serve --dev

build:
	$(FIRST_BUILD)
	$(GO) build -o herald .

# The tests start real redis-server, PostgreSQL, Chromium and nginx
# processes on random local ports; .ci/deps installs them first when they
# are missing (with curl, jq and npm).
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
# BENCH_ONLY runs only the scenarios whose title contains it, such as
# BENCH_ONLY=latency or BENCH_ONLY=S2.
BENCH_ONLY ?=
bench-e2e: build
	@set -eu; root=$$(mktemp -d); pid=; \
	stop() { if [ -n "$$pid" ]; then kill $$pid 2>/dev/null || true; wait $$pid 2>/dev/null || true; pid=; fi; }; \
	trap 'stop; rm -rf "$$root"' EXIT; trap 'exit 130' INT TERM; \
	scenario() { \
		case "$$1" in *"$(BENCH_ONLY)"*) ;; *) return 0 ;; esac; \
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
	scenario "S4: 100 rooms x 50 streams, 8 publishers flat out, 5s" --streams 5000 --rooms 100 --publishers 8 --duration 5s; \
	scenario "log: 100 rooms x 1 stream, 16 publishers flat out, 5s" --streams 100 --rooms 100 --publishers 16 --duration 5s

# bench-cluster runs scenarios against a cluster of three instances on this
# machine: a PostgreSQL and a redis-server of its own (in a throwaway folder,
# on BENCH_PG_PORT and BENCH_REDIS_PORT), each scenario on a fresh database
# and an emptied Redis, with fresh instances. Streams are spread over the
# instances and publishers post through another instance than their room's
# first stream reads from, so latency is post-on-A to receive-on-C. CPU and
# memory are the three instances' together (PostgreSQL and Redis not
# counted). Needs initdb/pg_ctl/psql and redis-server (see .ci/deps).
BENCH_PG_PORT ?= 15432
BENCH_REDIS_PORT ?= 16379
bench-cluster: build
	@set -eu; root=$$(mktemp -d); chmod 755 "$$root"; pids=; \
	as_pg() { if [ "$$(id -u)" = 0 ]; then runuser -u postgres -- "$$@"; else "$$@"; fi; }; \
	pgbin=$$(dirname "$$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)"); \
	if [ "$$(id -u)" = 0 ]; then chown postgres "$$root"; fi; \
	stop() { for p in $$pids; do kill $$p 2>/dev/null || true; done; for p in $$pids; do wait $$p 2>/dev/null || true; done; pids=; }; \
	trap 'stop; redis-cli -p $(BENCH_REDIS_PORT) shutdown nosave >/dev/null 2>&1 || true; as_pg "$$pgbin/pg_ctl" -D "$$root/pg" -m fast stop >/dev/null 2>&1 || true; rm -rf "$$root"' EXIT; \
	trap 'exit 130' INT TERM; \
	as_pg "$$pgbin/initdb" -D "$$root/pg" -U postgres -A trust >/dev/null; \
	as_pg "$$pgbin/pg_ctl" -D "$$root/pg" -l "$$root/pg/server.log" -w \
		-o "-p $(BENCH_PG_PORT) -c listen_addresses=127.0.0.1 -k $$root -c max_connections=200" start >/dev/null; \
	redis-server --port $(BENCH_REDIS_PORT) --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
		--dir "$$root" --pidfile "$$root/redis.pid" --logfile "$$root/redis.log"; \
	secret=$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n'); n=0; \
	scenario() { \
		case "$$1" in *"$(BENCH_ONLY)"*) ;; *) return 0 ;; esac; \
		echo "== $$1"; shift; n=$$((n+1)); db=bench$$n; urls=; pidl=; \
		psql -q -h 127.0.0.1 -p $(BENCH_PG_PORT) -U postgres -c "CREATE DATABASE $$db" >/dev/null; \
		redis-cli -p $(BENCH_REDIS_PORT) flushall >/dev/null; \
		for i in 1 2 3; do \
			addr=127.0.0.1:$$((18090 + i)); \
			HERALD_ADDR=$$addr HERALD_INSTANCE_ID=herald-$$i HERALD_JWT_SECRET=$$secret \
			HERALD_DATABASE_URL="postgres://postgres@127.0.0.1:$(BENCH_PG_PORT)/$$db?sslmode=disable" \
			HERALD_REDIS_URL=redis://127.0.0.1:$(BENCH_REDIS_PORT)/0 HERALD_RATE_LIMITS=off HERALD_LOG_LEVEL=warn \
			./herald serve & pids="$$pids $$!"; pidl=$${pidl:+$$pidl,}$$!; urls=$${urls:+$$urls,}http://$$addr; \
		done; \
		for u in $$(echo $$urls | tr , ' '); do \
			for i in $$(seq 100); do curl -fsS -o /dev/null $$u/readyz 2>/dev/null && break; sleep 0.1; done; \
			curl -fsS -o /dev/null $$u/readyz; \
		done; \
		./herald bench --url $$urls --jwt-secret $$secret --pid $$pidl "$$@"; \
		stop; \
	}; \
	scenario "C1: 1 room x 1000 streams over 3 instances, 1 publisher flat out, 5s" --streams 1000 --rooms 1 --publishers 1 --duration 5s; \
	scenario "C2: 50 posts/s x 1000 streams over 3 instances, post on one, receive on another, 5s" --streams 1000 --rooms 1 --publishers 1 --rate 50 --duration 5s; \
	scenario "latency floor: 10 streams over 3 instances, 20 posts/s, 5s" --streams 10 --rooms 1 --publishers 1 --rate 20 --duration 5s; \
	scenario "C3: 100 rooms x 50 streams over 3 instances, 8 publishers flat out, 5s" --streams 5000 --rooms 100 --publishers 8 --duration 5s; \
	scenario "C4: 3000 idle streams over 3 instances, one room each: memory per stream" --streams 3000 --rooms 3000 --idle --duration 3s; \
	scenario "log: 100 rooms x 1 stream over 3 instances, 16 publishers flat out, 5s" --streams 100 --rooms 100 --publishers 16 --duration 5s

# fuzz explores each fuzz target for FUZZTIME, one after another (go test
# -fuzz takes one target per run), from its seeds in the package's
# testdata/fuzz/<target>/, where a failing input is written. `make test`
# runs the seeds alone. A run that ends with nothing but "context deadline
# exceeded" and writes no failing input is Go's own race at the end of
# -fuzztime (go.dev/issue/75804, fixed in Go 1.27), not a finding.
FUZZTIME ?= 10s
FUZZ_TARGETS ?= api:FuzzRequests api:FuzzToken stream:FuzzFrame stream:FuzzLastEventID
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=./$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		if out=$$($(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then \
			echo "$$out" | tail -n 2; \
		elif echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
			echo "$$out" | tail -n 4; echo "fuzz: $$name ended on Go's -fuzztime race (go.dev/issue/75804), no failing input"; \
		else \
			echo "$$out"; exit 1; \
		fi; \
	done

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w .

# mutate runs mutation testing over stream/, store/ and api/; it is not part
# of `make test` (about 15 minutes on 2 cores: a change that hangs the tests
# costs its timeout). gremlins changes one operator at a time (< into <=,
# == into !=, + into -, ...) and runs that package's own tests against each
# change; README.md says how to read its report. The tool is installed into
# .bin/, pinned, not into go.mod.
GREMLINS := github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
MUTATE_PKGS ?= stream store api
mutate:
	GOBIN=$(CURDIR)/.bin $(GO) install $(GREMLINS)
	@set -e; for p in $(MUTATE_PKGS); do \
		echo "== mutants of $$p/"; \
		./.bin/gremlins unleash --workers 2 --timeout-coefficient 15 ./$$p; \
	done
