# remediator: `make demo` heals a local etcd filled into NOSPACE; `make test` runs every test.
GO       ?= go
BIN      := bin
ETCD     := $(BIN)/etcd
# Tests and the demo run this etcd server, built once from the pinned tools/etcd module.
export REMEDIATOR_ETCD_BIN := $(CURDIR)/$(ETCD)
NATS_SERVER := $(BIN)/nats-server
# Failover tests run this nats-server as a real cluster, built once from the pinned tools/nats-server module.
export REMEDIATOR_NATS_SERVER_BIN := $(CURDIR)/$(NATS_SERVER)

.PHONY: build run demo test bench fuzz vet lint-deploy clean

build: $(BIN)/remediator $(ETCD)

$(BIN)/remediator: FORCE
	$(GO) build -o $@ ./cmd/remediator

$(ETCD): tools/etcd/go.mod tools/etcd/go.sum tools/etcd/main.go
	cd tools/etcd && $(GO) build -o $(CURDIR)/$(ETCD) .

$(NATS_SERVER): tools/nats-server/go.mod tools/nats-server/go.sum tools/nats-server/main.go
	cd tools/nats-server && $(GO) build -o $(CURDIR)/$(NATS_SERVER) .

## run: serve on the defaults (127.0.0.1:9095, ./data, embedded NATS, etcd at $ETCDCTL_ENDPOINTS)
run: $(BIN)/remediator
	$(BIN)/remediator serve

## demo: a 3-member etcd filled into NOSPACE, healed end to end; prints the report
demo: build
	$(GO) run ./cmd/demo

vet:
	$(GO) vet ./...
	cd tools/etcd && $(GO) vet ./...
	cd tools/nats-server && $(GO) vet ./...

## lint-deploy: validate deploy/ offline: kustomize build decoded strictly into the API types,
## remediator's configs loaded as the pods see them, promtool and amtool (apt-get install
## prometheus prometheus-alertmanager), Loki rules, the Slack manifest
lint-deploy:
	$(GO) test -count=1 ./deploy/

## test: every test, against real etcd and NATS JetStream
test: $(ETCD) $(NATS_SERVER) vet lint-deploy
	$(GO) test -race -count=1 -timeout 15m ./...

## bench: webhook ingest against raw JetStream publishes, signed publishes against unsigned ones,
## synced writes against an interval, and the cost of an alert, a page of incidents and an
## admission at 1k against 100k stored, each pair in the same run
bench: $(ETCD) $(NATS_SERVER)
	$(GO) test -run '^$$' -bench Ingest -benchtime 5000x -count 3 ./handlers/
	$(GO) test -run '^$$' -bench 'SignedPublish|SyncedPublish' -benchtime 5000x -count 3 ./queue/
	$(GO) test -run '^$$' -bench 'Evidence|History' -benchtime 200x ./queue/

## fuzz: fuzz the Alertmanager webhook decoder for a while
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeAlertmanager -fuzztime 60s ./handlers/

clean:
	rm -rf $(BIN) .demo

FORCE:
