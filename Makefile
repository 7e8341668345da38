# SPDX-License-Identifier: Apache-2.0
# flowstat: build the BPF object, embed it, build the Swift agent, test it.
#   make run     install what is missing, build (release), start the agent on :8020
#   make test    install what is missing, build, run unit and privileged tests on this
#                kernel, the release and image tests (scripts/test-release.sh,
#                scripts/test-image.sh), then the core
#                end-to-end tests under Debian's 6.1 and 6.12 kernels
#   make test-kernels  the whole end-to-end suite on this kernel, 6.1 and 6.12 (the matrix)
#   make build   release binary at .build/release/flowstat
#   make release from a clean tree: dist/flowstat-VERSION-linux-ARCH.tar.gz and its .sha256
#   make image   the OCI image, from scratch: dist/flowstat-VERSION-oci.tar and -oci/ (layout)
#   make bench   benchmarks (not part of make test; root): BENCH_ARGS="--flows 10000 --runs 3",
#                or BENCH_ARGS="--inet-diag-table --flows 10000 --runs 15" for the inet_diag table
#   make format  rewrite the Swift and C sources in the project's style
#   make lint    check formatting, license headers, Prometheus files and shell scripts

SHELL      := /bin/bash
SWIFT      ?= swift
CLANG      ?= clang
BPFTOOL    ?= bpftool
ARGS       ?=
ARCH       := $(shell uname -m)
BPF_ARCH   := $(patsubst x86_64,x86,$(patsubst aarch64,arm64,$(ARCH)))
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) \
              -I/usr/include/$(ARCH)-linux-gnu -Ibpf -Wall -Werror
SKELETON   := Sources/CFlowStat/generated/flowstat.skel.h
# flowstat's version from git (scripts/version.sh), read by BuildInfo through CFlowStat.
VERSION_H  := Sources/CFlowStat/generated/flowstat_version.h
RELEASE    := .build/release/flowstat
# The tests' kernel probe: minimal programs of each kind flowstat uses (Tests/Support/kernel-probe).
PROBE      := .build-probe/kernel-probe

.PHONY: FORCE all deps test-deps lint-deps bench-deps bpf build run test test-kernels unit-test bench clean kernel-probe format lint release image

all: build

deps:
	@scripts/install-deps.sh build

# clang-format, shellcheck and promtool for make format and make lint.
lint-deps:
	@scripts/install-deps.sh lint

# The test packages, plus QEMU, virtme-ng and the kernels of the matrix.
test-deps:
	@scripts/install-deps.sh kernels

# What the bench needs besides the build: the seed's collector (ss2) in .venv-bench/.
bench-deps:
	@scripts/install-deps.sh bench

bpf: $(SKELETON) $(VERSION_H)

# Checked on every make; the script rewrites the header only when the version or the
# commit changed, so an unchanged tree does not rebuild.
$(VERSION_H): FORCE
	@scripts/version.sh --header $@

bpf/flowstat.bpf.o: bpf/flowstat.bpf.c bpf/flowstat.h bpf/kernel_types.bpf.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# bpftool's static linker keeps BTF and drops DWARF: a smaller embedded object.
bpf/flowstat.o: bpf/flowstat.bpf.o
	$(BPFTOOL) gen object $@ $<

# The skeleton carries the object's bytes, so the binary needs no file beside it.
$(SKELETON): bpf/flowstat.o
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen skeleton $< name flowstat_bpf > $@.tmp
	@mv $@.tmp $@

kernel-probe: $(PROBE)

$(PROBE): Tests/Support/kernel-probe/kernel_probe.c Tests/Support/kernel-probe/probe.bpf.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O2 -target bpf -I/usr/include/$(ARCH)-linux-gnu -Wall -Werror \
		-c Tests/Support/kernel-probe/probe.bpf.c -o $(dir $@)probe.bpf.o
	$(CC) -O2 -Wall -Werror -o $@ Tests/Support/kernel-probe/kernel_probe.c -lbpf

build: deps $(SKELETON) $(VERSION_H)
	$(SWIFT) build -c release --static-swift-stdlib

# Refuses a dirty tree; version from git (scripts/version.sh). CONTRIBUTING.md: cutting a release.
release: deps
	@scripts/release.sh

# From scratch (no base image): the binary, the libraries it links, CA certificates.
image: build
	@scripts/image.py

run: build
	$(RELEASE) serve $(ARGS)

# Privileged tests (BPF, network namespaces) need root; as root they all run.
test: deps test-deps $(SKELETON) $(VERSION_H) $(PROBE)
	$(SWIFT) build --build-tests
	set -o pipefail; timeout 1800 $(SWIFT) test --skip-build --no-parallel 2>&1 | scripts/test-summary.py
	scripts/test-release.sh
	scripts/test-image.sh
	scripts/test-kernels.sh --core 6.1 6.12

test-kernels: deps test-deps $(SKELETON) $(VERSION_H) $(PROBE)
	$(SWIFT) build --build-tests
	scripts/test-kernels.sh

unit-test: $(SKELETON) $(VERSION_H)
	$(SWIFT) test --filter FlowStatCoreTests

bench: build bench-deps
	scripts/bench.py $(BENCH_ARGS)

# Style: .swift-format and .clang-format; scripts/lint.sh says what else lint checks.
format: lint-deps
	SWIFT=$(SWIFT) scripts/lint.sh --fix

lint: lint-deps
	SWIFT=$(SWIFT) scripts/lint.sh

clean:
	rm -rf .build .build-probe bpf/*.o Sources/CFlowStat/generated dist
