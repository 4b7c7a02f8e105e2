# Bazaar: `make up` runs the shop, `make test` runs every test. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
CODEGEN := .build/debug/bazaar-codegen

.PHONY: help deps python-env build codegen generate check-generated test up fuzz bench describe clean

help:
	@echo "make up        build, check generated code and show the shop API (installs what is missing)"
	@echo "make test      install test dependencies and run every test"
	@echo "make generate  regenerate all committed generated code from the .proto files"
	@echo "make fuzz      run the wire decoder fuzzer (FUZZ_SECONDS=60)"
	@echo "make bench     run the codec benchmark and print the figures for BENCHMARKS.md"
	@echo "make describe  print the shop API contract (routes, auth, deadlines, retry safety)"

deps:
	@bash scripts/install-deps.sh

python-env: deps
	@bash scripts/python-env.sh

# Building only this product never compiles generated code, so it works even when that is stale.
codegen: deps
	@$(SWIFT) build --product bazaar-codegen 2>&1 | grep -E 'error|Build' | tail -3 ; test -x $(CODEGEN)

generate: codegen
	@bash scripts/generate.sh $(CODEGEN)

check-generated: codegen
	@bash scripts/generate.sh $(CODEGEN) --check

build: deps
	$(SWIFT) build

test: deps python-env
	@bash scripts/run-tests.sh

up: deps build
	@bash scripts/up.sh

fuzz: deps
	@bash scripts/fuzz.sh

bench: deps
	@bash scripts/bench.sh

describe: codegen
	@$(CODEGEN) -I proto -I /usr/include --describe $$(cd proto && ls shop/v1/*.proto)

clean:
	rm -rf .build .build-* .run
