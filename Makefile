# Bazaar: `make up` runs the shop, `make test` runs every test. See README.md.
SHELL := /bin/bash
SWIFT ?= swift
CODEGEN_BUILD := .build-codegen
CODEGEN := $(CODEGEN_BUILD)/debug/bazaar-codegen

.PHONY: help deps python-env build codegen generate check-generated test test-swift test-interop up fuzz bench clean

help:
	@echo "make up        build and run the shop (installs what is missing)"
	@echo "make test      install test dependencies and run every test"
	@echo "make generate  regenerate all committed generated code from the .proto files"
	@echo "make fuzz      run the wire decoder fuzzer (FUZZ_SECONDS=60)"
	@echo "make bench     run the codec benchmark and print the figures for BENCHMARKS.md"

deps:
	@bash scripts/install-deps.sh

python-env: deps
	@bash scripts/python-env.sh

# The generator is built in its own scratch folder so it never depends on generated code.
codegen: deps
	@$(SWIFT) build --scratch-path $(CODEGEN_BUILD) --product bazaar-codegen 2>&1 | grep -E 'error|warning: |Compiling|Build' | tail -5 ; test -x $(CODEGEN)

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

clean:
	rm -rf .build .build-* .run
