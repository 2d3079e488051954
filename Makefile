# meshtrust: build, test and demo. `make demo` and `make test` are the two
# set-up commands; both build everything they need first.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go

TOOLS_MOD := e2e/tools
TOOLS_DIR := bin/tools

# Tool versions come from e2e/tools/go.mod, the single source of truth; the
# binaries are cached in bin/tools/<name>-<version>/ so a version bump
# rebuilds and an unchanged version never does.
TOOL_VERSIONS := $(shell cd $(TOOLS_MOD) && $(GO) list -m -f '{{.Path}}={{.Version}}' \
	github.com/hashicorp/vault k8s.io/kubernetes go.etcd.io/etcd/server/v3 sigs.k8s.io/controller-tools)
tool_version = $(patsubst $(1)=%,%,$(filter $(1)=%,$(TOOL_VERSIONS)))

VAULT_VERSION := $(call tool_version,github.com/hashicorp/vault)
KUBE_VERSION := $(call tool_version,k8s.io/kubernetes)
ETCD_VERSION := $(call tool_version,go.etcd.io/etcd/server/v3)
CONTROLLER_GEN_VERSION := $(call tool_version,sigs.k8s.io/controller-tools)
HELM_VERSION := $(shell cd $(TOOLS_MOD)/helm && $(GO) list -m -f '{{.Version}}' helm.sh/helm/v3)
ISTIO_VERSION := $(shell cd $(TOOLS_MOD)/istio && $(GO) list -m -f '{{.Version}}' istio.io/istio)
PROMETHEUS_VERSION := $(shell cd $(TOOLS_MOD)/prometheus && $(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus)

VAULT := $(TOOLS_DIR)/vault-$(VAULT_VERSION)/vault
KUBE_APISERVER := $(TOOLS_DIR)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
ETCD := $(TOOLS_DIR)/etcd-$(ETCD_VERSION)/etcd
CONTROLLER_GEN := $(TOOLS_DIR)/controller-gen-$(CONTROLLER_GEN_VERSION)/controller-gen
HELM := $(TOOLS_DIR)/helm-$(HELM_VERSION)/helm
ISTIOD := $(TOOLS_DIR)/istiod-$(ISTIO_VERSION)/istiod
PROMETHEUS := $(TOOLS_DIR)/prometheus-$(PROMETHEUS_VERSION)/prometheus
PROMTOOL := $(TOOLS_DIR)/promtool-$(PROMETHEUS_VERSION)/promtool

KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean

# istiod reports this as its version (pilot-discovery version, its start-up log).
ISTIO_LDFLAGS := -X istio.io/istio/pkg/version.buildVersion=$(ISTIO_VERSION) \
	-X istio.io/istio/pkg/version.buildStatus=Clean \
	-X istio.io/istio/pkg/version.buildTag=$(ISTIO_VERSION)

TEST_TIMEOUT ?= 60m

# Unit packages need no lab and run with the race detector; the end-to-end
# packages start real servers (make tools) and run without it, since their
# cost is the servers.
UNIT_PKGS := ./cmd/... ./internal/... ./issuer/... ./syncer/...
E2E_PKGS := ./e2e/...

CHART := deploy/charts/meshtrust
# The union of the code's RBAC markers: a test oracle, kept away from deploy/
# so that nobody applies it (e2e/deploy's markers test reads it).
RBAC_MARKERS := e2e/deploy/testdata/rbac-markers.yaml

# The chart's appVersion is the product's version: the binaries print it
# (--version), the image is labelled and tagged with it, and the chart's
# default image tag is it.
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' $(CHART)/Chart.yaml)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
# The commit time, so that two image builds of one commit are identical.
SOURCE_DATE := $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
VERSION_LDFLAGS := -X github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app.version=$(APP_VERSION) \
	-X github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app.revision=$(REVISION)
IMAGE_MOD := deploy/image
IMAGE_DIR := bin/image

.PHONY: all build image dashboard-png tools prometheus generate verify-generate manifests verify-manifests lint test test-unit bench demo clean

all: build

build:
	$(GO) build -ldflags '$(VERSION_LDFLAGS)' -o bin/meshtrust-controller ./cmd/meshtrust-controller
	$(GO) build -o bin/meshtrust ./cmd/meshtrust

tools: $(VAULT) $(KUBE_APISERVER) $(ETCD) $(CONTROLLER_GEN) $(HELM) $(ISTIOD)

# Only the tests need Prometheus, so `make demo` does not wait for it.
prometheus: $(PROMETHEUS) $(PROMTOOL)

$(VAULT):
	@echo "tools: building vault $(VAULT_VERSION) (about 9 minutes on 2 cores when nothing is cached)"
	@cd $(TOOLS_MOD) && $(GO) build -trimpath -o $(CURDIR)/$@ github.com/hashicorp/vault

$(KUBE_APISERVER):
	@echo "tools: building kube-apiserver $(KUBE_VERSION) (about 4 minutes)"
	@cd $(TOOLS_MOD) && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/kube-apiserver

$(ETCD):
	@echo "tools: building etcd $(ETCD_VERSION) (under a minute)"
	@cd $(TOOLS_MOD) && $(GO) build -trimpath -o $(CURDIR)/$@ go.etcd.io/etcd/server/v3

$(CONTROLLER_GEN):
	@echo "tools: building controller-gen $(CONTROLLER_GEN_VERSION)"
	@cd $(TOOLS_MOD) && $(GO) build -trimpath -o $(CURDIR)/$@ sigs.k8s.io/controller-tools/cmd/controller-gen

$(HELM):
	@echo "tools: building helm $(HELM_VERSION)"
	@cd $(TOOLS_MOD)/helm && $(GO) build -trimpath -o $(CURDIR)/$@ helm.sh/helm/v3/cmd/helm

# istiod is pilot-discovery, the binary of Istio's control-plane image.
$(ISTIOD):
	@echo "tools: building istiod $(ISTIO_VERSION) (pilot-discovery; about 9 minutes of CPU when nothing is cached)"
	@cd $(TOOLS_MOD)/istio && $(GO) build -trimpath -ldflags '$(ISTIO_LDFLAGS)' -o $(CURDIR)/$@ istio.io/istio/pilot/cmd/pilot-discovery

# Prometheus's module tag v0.X.Y is release 3.X.Y; stamping it makes
# /api/v1/status/buildinfo say which release runs. Built without the
# builtinassets tag: the web UI is not embedded (it needs a JavaScript build),
# while the HTTP API and promtool, which the tests use, are complete.
PROMETHEUS_LDFLAGS := -X github.com/prometheus/common/version.Version=$(patsubst v0.3%,3.%,$(PROMETHEUS_VERSION))

$(PROMETHEUS):
	@echo "tools: building prometheus $(PROMETHEUS_VERSION)"
	@cd $(TOOLS_MOD)/prometheus && $(GO) build -trimpath -ldflags '$(PROMETHEUS_LDFLAGS)' -o $(CURDIR)/$@ github.com/prometheus/prometheus/cmd/prometheus

$(PROMTOOL):
	@echo "tools: building promtool $(PROMETHEUS_VERSION)"
	@cd $(TOOLS_MOD)/prometheus && $(GO) build -trimpath -ldflags '$(PROMETHEUS_LDFLAGS)' -o $(CURDIR)/$@ github.com/prometheus/prometheus/cmd/promtool

# The OCI image of meshtrust-controller, with no container engine: a static
# binary (cgo off) in one layer, run as the chart's non-root user, written as
# an OCI image layout to bin/image (push it with crane or skopeo).
image:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '-s -w -buildid= $(VERSION_LDFLAGS)' \
		-o bin/image-build/meshtrust-controller ./cmd/meshtrust-controller
	cd $(IMAGE_MOD) && $(GO) run . -binary $(CURDIR)/bin/image-build/meshtrust-controller -out $(CURDIR)/$(IMAGE_DIR) \
		-version $(APP_VERSION) -revision $(REVISION) -created $(SOURCE_DATE)

generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./issuer/api/...
	$(CONTROLLER_GEN) crd paths=./issuer/api/... output:crd:artifacts:config=deploy/crds
	{ printf '%s\n' \
		'# GENERATED by `make generate` from the +kubebuilder:rbac markers of issuer/ and syncer/.' \
		'# NOT AN INSTALL MANIFEST: the union of every permission the code may use, granted' \
		'# cluster-wide (Secret writes in every namespace, tokens for any ServiceAccount).' \
		'# e2e/deploy checks that the chart grants nothing beyond it. Install meshtrust with the' \
		'# chart (deploy/charts/meshtrust) or deploy/manifests/meshtrust.yaml, whose RBAC is narrow.'; \
	  $(CONTROLLER_GEN) rbac:roleName=meshtrust-rbac-markers-not-for-install paths=./issuer/... paths=./syncer/... output:rbac:stdout; } > $(RBAC_MARKERS)

# CI fails when generated files are stale: regenerate, then compare.
verify-generate: generate
	@if [ -n "$$(git status --porcelain -- issuer/api deploy/crds $(RBAC_MARKERS))" ]; then \
		echo "generated files are stale; run 'make generate' and commit:"; \
		git status --porcelain -- issuer/api deploy/crds $(RBAC_MARKERS); exit 1; fi

# The chart carries a copy of the generated CRDs in files/crds, which its
# templates/crds.yaml installs (and upgrades); deploy/manifests is the chart
# rendered with default values, for installs without Helm.
manifests: $(HELM)
	rm -f $(CHART)/files/crds/*.yaml
	cp deploy/crds/*.yaml $(CHART)/files/crds/
	$(HELM) template meshtrust $(CHART) --namespace meshtrust-system > deploy/manifests/meshtrust.yaml.tmp
	mv deploy/manifests/meshtrust.yaml.tmp deploy/manifests/meshtrust.yaml

verify-manifests: manifests
	@if [ -n "$$(git status --porcelain -- deploy/manifests $(CHART)/files/crds)" ]; then \
		echo "deploy/manifests or the chart's CRDs are stale; run 'make generate manifests' and commit:"; \
		git status --porcelain -- deploy/manifests $(CHART)/files/crds; exit 1; fi

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd $(IMAGE_MOD) && $(GO) vet ./...

# deploy/image is a module of its own: its test loads the image `image` wrote.
test: tools prometheus lint verify-generate verify-manifests image
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) $(UNIT_PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(E2E_PKGS)
	cd $(IMAGE_MOD) && $(GO) test -count=1 ./...

# The fast loop: every unit test, fuzz seed corpus and the offline Vault
# contract test, with the race detector, and no lab.
test-unit:
	$(GO) test -count=1 -race $(UNIT_PKGS)

# Redraws deploy/dashboard-lab.png, the README's picture of the dashboard's
# panels, from the lab's Prometheus during the alert test.
dashboard-png: tools prometheus
	MESHTRUST_DASHBOARD_PNG=$(CURDIR)/deploy/dashboard-lab.png $(GO) test -count=1 -timeout 20m \
		-run TestExpiringIntermediateAlertFiresAndResolves ./e2e/monitoring

# Benchmarks print their figures; none is asserted. Each starts its own lab.
bench: tools
	$(GO) test -run '^$$' -bench . -benchtime=1x -timeout 60m ./e2e/issuer ./e2e/syncer ./e2e/rotation ./e2e/revocation

demo: tools build
	$(GO) run ./e2e/demo

clean:
	rm -rf bin/meshtrust-controller bin/meshtrust bin/demo bin/image bin/image-build
