# spotrescue — see README.md. `make demo` shows a rescue end to end; `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
LAB_DIR ?= /tmp/spotrescue-lab
export LAB_DIR

.PHONY: all build deps test unit lab-test vet lab-up lab-down lab-env demo chaos bench-burst bench-burst-lab fmt clean
GOBIN := $(shell $(GO) env GOPATH)/bin
STATICCHECK ?= $(shell command -v staticcheck || echo $(GOBIN)/staticcheck)

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/spotrescue ./controller/cmd/spotrescue
	$(GO) build -o bin/ssmlocal ./hack/ssmlocal
	$(GO) build -o bin/labinit ./hack/labinit
	$(GO) build -o bin/faultproxy ./hack/faultproxy
	$(GO) build -o bin/slurmreplay ./hack/slurmreplay
	$(GO) build -o bin/hostile ./hack/hostile

# deps installs what the tests need and this machine lacks (Debian's Slurm,
# munge, Prometheus, systemd-analyze and shellcheck; AEMM and staticcheck
# from the Go module proxy), and says what it installed.
deps:
	@hack/deps.sh test

# The top level is fixed by DESIGN.md; a stray file (a binary built in the
# wrong directory, a pid file) fails here instead of landing.
TOP_LEVEL := .ci .gitignore LICENSE Makefile README.md controller deploy go.mod go.sum hack rescue state
vet:
	@extra="$$(git ls-files | cut -d/ -f1 | sort -u | grep -vxF -f <(tr ' ' '\n' <<<'$(TOP_LEVEL)'))"; \
		test -z "$$extra" || { echo "top level is fixed (DESIGN.md); move or remove: $$extra"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags lab ./...

unit:
	$(GO) test -race -count=1 ./...

# Integration tests run against the lab; with-lab.sh starts it when it is not
# up and stops it again afterwards.
LAB_PKGS ?= ./...
lab-test: build
	hack/lab/with-lab.sh $(GO) test -tags lab -count=1 -p 1 -timeout 20m $(LAB_PKGS)

# lab-test-24.11 runs the Slurm adapter's lab tests and the end-to-end
# tests that exercise Slurm's behaviour again on Slurm 24.11 (Debian
# trixie's, hack/deps.sh slurm-24.11), in a lab of its own.
LAB_DIR_2411 ?= /tmp/spotrescue-lab-24.11
SLURM_TESTS := ^(TestLab.*|TestHappyPath|TestTwoJobsOnOneNode|TestTwoNodeJob|TestArrayTask|TestHeterogeneousJob|TestNoRequeueJob|TestAlreadyRequeuedBySlurm|TestUserHeldJobStaysUserHeld|TestJobFinishesDuringRescue|TestCheckpointSignal|TestFallbackToOnDemand)$$
.PHONY: lab-test-24.11 lab-up-24.11 lab-down-24.11 unit-fuzz-burst
lab-test-24.11: build
	SLURM=24.11 LAB_DIR=$(LAB_DIR_2411) hack/lab/with-lab.sh $(GO) test -tags lab -count=1 -p 1 -timeout 20m -run '$(SLURM_TESTS)' ./controller/slurm ./hack/e2e

# test runs the Slurm 24.11 lab tests (they mostly wait on Slurm) beside the
# unit tests, the fuzzing and the mass-reclaim burst (hack/burst runs the real
# controller on emulators of its own, not the lab), which keep the CPUs
# busy; then the other 22.05 lab tests alone: some measure uploads against
# deadlines.
test: deps vet
	$(MAKE) --no-print-directory -j2 --output-sync=target unit-fuzz-burst lab-test-24.11
	$(MAKE) --no-print-directory lab-test LAB_PKGS="$$($(GO) list -tags lab ./... | grep -v '/hack/burst$$' | tr '\n' ' ')"

unit-fuzz-burst: build
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory fuzz-short
	$(GO) test -tags lab -count=1 -timeout 20m ./hack/burst

# fuzz runs every fuzz target of the parsers (events, Slurm output, config,
# manifests) for FUZZTIME each; fuzz-short, part of test, for 5 s each. A
# crasher is written to the package's testdata/fuzz/<FuzzName>/ and from
# then on runs in unit as a regression test. Go 1.26's fuzz coordinator can
# fail a target with a bare "context deadline exceeded" as -fuzztime ends
# (go.dev/issue/75804, fixed in Go 1.27): that, without a failing input
# written, is reported and not counted as a failure.
.PHONY: fuzz fuzz-short
FUZZ_PKGS := ./controller/event ./controller/slurm ./controller/config ./rescue ./rescue/naming
FUZZTIME ?= 30s
# Minimizing every new input can take the default 60 s on the 50-70 KB
# Slurm JSON seeds, which would leave a short run no time to explore.
FUZZMINIMIZETIME ?= 2s

fuzz:
	@set -eo pipefail; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for pkg in $(FUZZ_PKGS); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for target in $$(grep '^Fuzz' <<<"$$list"); do \
			echo "==> $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg 2>&1 | tee $$log || \
			if grep -qx '    context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
				echo "==> $$target: Go's fuzztime deadline race (go.dev/issue/75804), not a failing input"; \
			else exit 1; fi; \
		done; \
	done

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# demo brings the lab up (if needed), interrupts a job and shows it resume;
# it resumes the node it interrupted, and takes down a lab it started unless
# asked to keep it (KEEP_LAB=1 keeps it without asking).
demo: build
	$(GO) build -o bin/demo ./hack/demo
	hack/lab/with-lab.sh --offer-to-keep bin/demo

# bench compares the agent with `aws s3 sync` on a private SeaweedFS, with
# and without hack/faultproxy's model of the network to S3, and rewrites the
# generated section of hack/bench/BENCHMARKS.md and its plots (about 15
# minutes, plus 8 to build SeaweedFS the first time; not part of test).
.PHONY: bench
bench: build
	hack/deps.sh bench
	$(GO) build -o bin/bench ./hack/bench
	BENCH_COMMAND='make bench' bin/bench -out hack/bench/BENCHMARKS.md

# chaos runs the crash and fault tests at full size: 50 interruptions on a
# 50-node lab (it replaces a running lab and takes it down afterwards).
chaos: build
	hack/lab/down.sh
	LAB_NODES=50 hack/lab/up.sh
	source $(LAB_DIR)/lab.env && CHAOS_INTERRUPTIONS=50 $(GO) test -tags lab -count=1 -v -timeout 40m \
		-run 'TestChaosKilledDuringBurst|TestFaultsOnEveryAWSAPI' ./hack/e2e/; status=$$?; hack/lab/down.sh; exit $$status

# bench-burst measures a mass reclaim of 1,000 nodes against the baseline
# (recorded Slurm state, one private moto_server per service; bin/burst
# -network model adds AWS-like latency to every call); see hack/bench/BENCHMARKS.md.
# bench-burst-lab does 50 real lab nodes end to end (it brings up a 50-node lab).
bench-burst: build
	$(GO) build -o bin/burst ./hack/burst
	bin/burst -mode replay -n $(or $(N),1000) -plot hack/bench/burst-receipt-to-dispatch.png

bench-burst-lab: build
	$(GO) build -o bin/burst ./hack/burst
	hack/lab/down.sh
	LAB_NODES=50 hack/lab/up.sh
	source $(LAB_DIR)/lab.env && bin/burst -mode lab -n 50 -jobs-per-node 3; status=$$?; hack/lab/down.sh; exit $$status

# release builds the tarballs a deployment starts from (README, "Deploying"):
# make release VERSION=v1.2.3 writes bin/release/spotrescue-<version>-linux-{amd64,arm64}.tar.gz
# and SHA256SUMS.
.PHONY: release
release:
	@hack/release/release.sh

lab-up: build
	hack/lab/up.sh

lab-down:
	hack/lab/down.sh

lab-up-24.11: build
	SLURM=24.11 LAB_DIR=$(LAB_DIR_2411) hack/lab/up.sh

lab-down-24.11:
	LAB_DIR=$(LAB_DIR_2411) hack/lab/down.sh

lab-env:
	@cat $(LAB_DIR)/lab.env

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
