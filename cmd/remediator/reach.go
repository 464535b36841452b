package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/remediator/remediator/handlers"
	"github.com/remediator/remediator/remediations/etcdops"
)

// reachStale is how old a cluster's reachability may be before the next reader has it
// checked again; nothing checks while nobody asks, so a quiet fleet costs nothing.
const reachStale = 30 * time.Second

// reach knows whether each cluster's etcd answered when last asked: serve asks at start (and
// logs the clusters it cannot reach), and /readyz and the clusters API ask again when the
// answer is stale, without waiting for it.
type reach struct {
	clients  *etcdops.Clients
	clusters []string
	log      *slog.Logger

	mu       sync.Mutex
	last     map[string]handlers.Reachability
	checking bool
}

func newReach(clients *etcdops.Clients, clusters []string, log *slog.Logger) *reach {
	return &reach{clients: clients, clusters: clusters, log: log, last: map[string]handlers.Reachability{}}
}

// reachAtOnce is how many clusters check asks at once: an unreachable one holds its turn for
// the call timeout, so a fleet of 100 with many down is checked in seconds, not a minute.
const reachAtOnce = 32

// check asks every cluster's etcd now, a few at a time, and logs the ones that changed.
func (r *reach) check(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, reachAtOnce)
	for _, name := range r.clusters {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ep, err := r.clients.Probe(ctx, name)
			got := handlers.Reachability{Cluster: name, Reachable: err == nil, Endpoint: ep, CheckedAt: time.Now()}
			if err != nil {
				got.Error = err.Error()
			}
			r.mu.Lock()
			before, known := r.last[name]
			r.last[name] = got
			r.mu.Unlock()
			switch {
			case !got.Reachable && (!known || before.Reachable):
				r.log.Warn("cluster's etcd unreachable; webhooks are still taken, and its remediations retry", "cluster", name, "err", got.Error)
			case got.Reachable && known && !before.Reachable:
				r.log.Info("cluster's etcd reachable again", "cluster", name, "endpoint", ep)
			}
		}()
	}
	wg.Wait()
}

// Reachability returns what is known of each cluster, and has a stale answer checked again
// in the background.
func (r *reach) Reachability(context.Context) []handlers.Reachability {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]handlers.Reachability, 0, len(r.clusters))
	stale := false
	for _, name := range r.clusters {
		got, ok := r.last[name]
		if !ok || time.Since(got.CheckedAt) > reachStale {
			stale = true
		}
		if ok {
			out = append(out, got)
		}
	}
	if stale && !r.checking {
		r.checking = true
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r.check(ctx)
			r.mu.Lock()
			r.checking = false
			r.mu.Unlock()
		}()
	}
	return out
}
