# spotrescue — see README.md. `make demo` shows a rescue end to end; `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
LAB_DIR ?= /tmp/spotrescue-lab
export LAB_DIR

.PHONY: all build test unit lab-test vet lab-up lab-down lab-env demo fmt clean

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/spotrescue ./controller/cmd/spotrescue
	$(GO) build -o bin/ssmlocal ./hack/ssmlocal
	$(GO) build -o bin/labinit ./hack/labinit

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags lab ./...

unit:
	$(GO) test -race -count=1 ./...

# Integration tests run against the lab; with-lab.sh starts it when it is not
# up and stops it again afterwards.
lab-test: build
	hack/lab/with-lab.sh $(GO) test -tags lab -count=1 -p 1 -timeout 20m ./...

test: vet unit lab-test

# demo brings the lab up (if needed), interrupts a job and shows it resume.
demo: build
	hack/lab/up.sh
	$(GO) build -o bin/demo ./hack/demo
	source $(LAB_DIR)/lab.env && bin/demo

lab-up: build
	hack/lab/up.sh

lab-down:
	hack/lab/down.sh

lab-env:
	@cat $(LAB_DIR)/lab.env

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
