# Bazaar: `make up` runs the shop, `make test` runs every test. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
CODEGEN := .build/debug/bazaar-codegen

.PHONY: help deps python-env build codegen generate check-generated api-check lint test sanitize soak up down image fuzz bench bench-rpc bench-mesh bench-shop bench-gateway bench-mix certs describe clean

help:
	@echo "make up        build release binaries and run the shop in the background: PostgreSQL, Redis, an SMTP sink, the five services, the gateway, demo data"
	@echo "make down      stop everything make up started (data stays in .run/)"
	@echo "make test      install test dependencies and run every test"
	@echo "make generate  regenerate all committed generated code (.proto files, Kubernetes workloads)"
	@echo "make lint      swift format lint over hand-written Swift (scripts/lint.sh --fix reformats)"
	@echo "make api-check the .proto files against the last release tag: refuses changes that break clients (REF=... for another)"
	@echo "make image     build the container image localhost/bazaar:dev with podman (TAG=...)"
	@echo "make sanitize  the Swift suites and the RPC, mesh and shop suites under ThreadSanitizer and AddressSanitizer (part of make test)"
	@echo "make soak      the mixed shop workload for 30 minutes (SOAK_SECONDS=...), every process sampled; fails on growth (report in .build/soak)"
	@echo "make fuzz      fuzz every network parser, FUZZ_SECONDS=60 each (FUZZ_TARGETS=\"http1 json\" for some)"
	@echo "make bench     run the codec benchmark and print the figures for BENCHMARKS.md"
	@echo "make bench-rpc run the RPC benchmarks (h2load, mTLS pairs, callgrind, memory); see scripts/bench-rpc.sh"
	@echo "make bench-gateway REST through the gateway (wrk) against gRPC straight to the service (h2load)"
	@echo "make bench-shop checkout throughput, latency and CPU per order of the whole shop (LEVELS=\"16 64\")"
	@echo "make bench-mix  a mixed shop workload through the gateway with locust (USERS=64 DURATION=30)"
	@echo "make bench-mesh measure the mesh: instructions per call vs the bare transport, failover gap; see scripts/bench-mesh.sh"
	@echo "make certs     make a development mesh PKI in .run/certs (SERVICES=\"catalog orders ...\")"
	@echo "make describe  print the shop API contract (routes, auth, deadlines, retry safety)"

deps:
	@bash scripts/install-deps.sh

python-env: deps
	@bash scripts/python-env.sh

# Building only this product never compiles generated code, so it works even when that is stale.
codegen: deps
	@$(SWIFT) build --product bazaar-codegen 2>&1 | grep -E 'error|Build' | tail -3 ; test -x $(CODEGEN)

generate: deps python-env
	@bash scripts/generate.sh
	@.venv/bin/python scripts/gen-kustomize.py
	@# The OpenAPI document comes from the gateway's route table (so from the compiled IDL).
	@$(SWIFT) build --product bazaar 2>&1 | grep -E 'error|Build' | tail -1
	@.build/debug/bazaar gateway --openapi | python3 -m json.tool --indent 2 > docs/openapi.json && echo "generate: docs/openapi.json"

lint:
	@bash scripts/lint.sh

check-generated: deps
	@bash scripts/generate.sh --check

api-check: codegen
	@bash scripts/api-check.sh $(REF)

build: deps
	$(SWIFT) build

test: deps python-env
	@bash scripts/run-tests.sh

# make test runs this too, with PostgreSQL and Redis up; alone, the data-store suites skip
# themselves unless BAZAAR_TEST_POSTGRES and BAZAAR_TEST_REDIS name servers.
sanitize: deps python-env
	@bash scripts/sanitizers.sh $(SANITIZERS)

soak: deps python-env
	@SOAK_SECONDS=$(SOAK_SECONDS) USERS=$(USERS) bash scripts/soak.sh

up: deps
	@bash scripts/up.sh

TAG ?= localhost/bazaar:dev
image: deps
	@bash deployments/container/build.sh $(TAG)

down:
	@bash scripts/down.sh

fuzz: deps
	@bash scripts/fuzz.sh

bench: deps
	@bash scripts/bench.sh

bench-rpc: deps python-env
	@bash scripts/bench-rpc.sh $(MODE)

bench-mesh: deps
	@bash scripts/bench-mesh.sh $(MODE)

bench-shop: deps
	@bash scripts/bench-shop.sh $(LEVELS)

bench-gateway: deps
	@bash scripts/bench-gateway.sh

bench-mix: deps
	@bash scripts/bench-mix.sh

SERVICES ?= catalog accounts cart orders notifications web gateway
certs: deps
	@$(SWIFT) build -c release --product bazaar 2>&1 | grep -E 'error|Build' | tail -1
	@.build/release/bazaar certs --dir .run/certs $(SERVICES)

describe: codegen
	@$(CODEGEN) -I proto -I /usr/include --describe $$(cd proto && ls shop/v1/*.proto)

clean:
	rm -rf .build .build-* .run
