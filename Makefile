# remediator: `make demo` heals a local etcd filled into NOSPACE; `make test` runs every test.
GO       ?= go
BIN      := bin
ETCD     := $(BIN)/etcd
# Tests and the demo run this etcd server, built once from the pinned tools/etcd module.
export REMEDIATOR_ETCD_BIN := $(CURDIR)/$(ETCD)
NATS_SERVER := $(BIN)/nats-server
# Failover tests run this nats-server as a real cluster, built once from the pinned tools/nats-server module.
export REMEDIATOR_NATS_SERVER_BIN := $(CURDIR)/$(NATS_SERVER)
KUBE_APISERVER := $(BIN)/kube-apiserver
# The apiserver remediation's tests run this kube-apiserver as a static pod, built once from the
# pinned tools/kube-apiserver module (k8s.io/kubernetes; minutes on a few cores). Its `go vet`
# is not in vet: cold, it takes as long as the build.
export REMEDIATOR_KUBE_APISERVER_BIN := $(CURDIR)/$(KUBE_APISERVER)
HELM := $(BIN)/helm
# make lint-deploy lints and renders deploy/helm/remediator with this helm, built once from the
# pinned tools/helm module (helm.sh/helm/v4; about 2 minutes cold on 2 cores).
export REMEDIATOR_HELM_BIN := $(CURDIR)/$(HELM)
KEDA_CHECK := $(BIN)/keda-check
# make lint-deploy checks the chart's ScaledObject with KEDA's own types and nats-jetstream
# scaler, built once from the pinned tools/keda module (github.com/kedacore/keda/v2; about 6
# minutes cold on 2 cores).
# Like kube-apiserver, neither tool module is in vet: cold, vetting them costs their build.
export REMEDIATOR_KEDA_CHECK_BIN := $(CURDIR)/$(KEDA_CHECK)
IMAGE := $(BIN)/remediator-image.tar
# make image builds this OCI archive with buildah, offline (apt-get install buildah); the
# image test reads it, and skips without it unless CI is set.
export REMEDIATOR_IMAGE := $(CURDIR)/$(IMAGE)
# Tests that run on every etcd version clusters run start 3.4 (Debian's etcd-server and
# etcd-client), 3.5 and 3.6 (built once from tools/etcd-3.5 and tools/etcd-3.6 into the user
# cache) and 3.7; `REMEDIATOR_ETCD_VERSIONS=3.7 make test` (or 3.4,3.7) runs only those.

.PHONY: build run demo test bench fuzz vet lint-deploy image clean

build: $(BIN)/remediator $(ETCD)

# The build stamps what `remediator version` and remediator_build_info say.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

$(BIN)/remediator: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/remediator

$(ETCD): tools/etcd/go.mod tools/etcd/go.sum tools/etcd/main.go
	cd tools/etcd && $(GO) build -o $(CURDIR)/$(ETCD) .

$(NATS_SERVER): tools/nats-server/go.mod tools/nats-server/go.sum tools/nats-server/main.go
	cd tools/nats-server && $(GO) build -o $(CURDIR)/$(NATS_SERVER) .

$(KUBE_APISERVER): tools/kube-apiserver/go.mod tools/kube-apiserver/go.sum tools/kube-apiserver/main.go
	cd tools/kube-apiserver && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$(KUBE_APISERVER) .

$(HELM): tools/helm/go.mod tools/helm/go.sum tools/helm/main.go
	cd tools/helm && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$(HELM) .

$(KEDA_CHECK): tools/keda/go.mod tools/keda/go.sum tools/keda/main.go
	cd tools/keda && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$(KEDA_CHECK) .

# The image's binaries: static (CGO_ENABLED=0), without the build's paths, stamped as
# $(BIN)/remediator is; etcdutl for the agent's snapshot restores. go build rewrites its
# output even when nothing changed, so remediator is replaced only when it differs, and the
# image is not rebuilt for an unchanged binary.
$(BIN)/image/remediator: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@.new ./cmd/remediator
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(BIN)/image/etcdutl: tools/etcd/go.mod tools/etcd/go.sum tools/etcd/etcdutl/main.go
	cd tools/etcd && CGO_ENABLED=0 $(GO) build -trimpath -o $(CURDIR)/$@ ./etcdutl

## image: the OCI image archive bin/remediator-image.tar (FROM scratch: remediator and
## etcdutl, user 65532), built with buildah, offline; the Dockerfile builds the same with docker
image: $(IMAGE)

# Rebuilt only when a binary, the script or the certificates change: the version and commit
# the labels carry are stamped into remediator too, and the commit time goes with the commit.
$(IMAGE): $(BIN)/image/remediator $(BIN)/image/etcdutl image/build.sh /etc/ssl/certs/ca-certificates.crt
	image/build.sh $(IMAGE) $(BIN)/image/remediator $(BIN)/image/etcdutl '$(VERSION)' '$(COMMIT)' \
	  "$$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"

## run: serve on the defaults (127.0.0.1:9095, ./data, embedded NATS, etcd at $ETCDCTL_ENDPOINTS)
run: $(BIN)/remediator
	$(BIN)/remediator serve

## demo: a 3-member etcd filled into NOSPACE, healed end to end; prints the report
demo: build
	$(GO) run ./cmd/demo

vet:
	$(GO) vet ./...
	cd tools/etcd && $(GO) vet ./...
	cd tools/etcd-3.5 && $(GO) vet ./...
	cd tools/etcd-3.6 && $(GO) vet ./...
	cd tools/nats-server && $(GO) vet ./...

## lint-deploy: validate deploy/ offline: kustomize build and the Helm chart's renders decoded
## strictly into the API types, remediator's configs loaded as the pods see them, the chart's
## ScaledObject through KEDA's own code, promtool and amtool (apt-get install prometheus
## prometheus-alertmanager), Loki rules, the Slack manifest
lint-deploy: $(HELM) $(KEDA_CHECK)
	$(GO) test -count=1 ./deploy/

## test: every test, against real etcd and NATS JetStream
test: $(ETCD) $(NATS_SERVER) $(KUBE_APISERVER) vet image lint-deploy
	$(GO) test -race -count=1 -timeout 25m ./...

## bench: webhook ingest against raw JetStream publishes, signed publishes against unsigned ones,
## synced writes against an interval, and the cost of an alert, a page of incidents and an
## admission at 1k against 100k stored, and remediator's NOSPACE and fragmentation recoveries
## against the seed runbook's etcdctl commands on the same data (16 MiB, and 280 MiB live per
## member: REMEDIATOR_BENCH_LIVE_MIB), and a fleet of 100 clusters (ten incidents at once
## against one, idle CPU and memory against one cluster), each pair in the same run
bench: $(ETCD) $(NATS_SERVER)
	$(GO) test -run '^$$' -bench Ingest -benchtime 5000x -count 3 ./handlers/
	$(GO) test -run '^$$' -bench 'SignedPublish|SyncedPublish' -benchtime 5000x -count 3 ./queue/
	$(GO) test -run '^$$' -bench 'Evidence|History' -benchtime 200x ./queue/
	$(GO) test -run '^$$' -bench Recovery -benchtime 1x -timeout 60m ./cmd/remediator/
	$(GO) test -run '^$$' -bench Fleet -benchtime 1x ./cmd/remediator/

## fuzz: fuzz the Alertmanager webhook decoder for a while
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeAlertmanager -fuzztime 60s ./handlers/

clean:
	rm -rf $(BIN) .demo

FORCE:
