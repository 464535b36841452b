package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// Pauses keeps the clusters operators paused, by cluster name (keyAllClusters for a pause of
// every cluster), until they are resumed.
type Pauses struct {
	kv jetstream.KeyValue
}

// keyAllClusters is the key of a pause of every cluster: "*" is not a valid key.
const keyAllClusters = "_all"

func pauseKey(cluster string) string {
	if cluster == remediator.AllClusters {
		return keyAllClusters
	}
	return cluster
}

// Pause records p; pausing a paused cluster again keeps the first pause.
func (p *Pauses) Pause(ctx context.Context, pause remediator.Pause) (remediator.Pause, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	data, _ := json.Marshal(pause)
	_, err := p.kv.Create(ctx, pauseKey(pause.Cluster), data)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		if held, ok, err := p.get(ctx, pause.Cluster); err != nil || ok {
			return held, err
		}
		return p.Pause(ctx, pause) // resumed in between
	case errors.Is(err, jetstream.ErrInvalidKey):
		return remediator.Pause{}, remediator.Errorf(remediator.EINVALID, "cluster %q: not a cluster name", pause.Cluster)
	case err != nil:
		return remediator.Pause{}, unavailable("pause %s", pause.Cluster, err)
	}
	return pause, nil
}

// Resume lifts the pause of a cluster (or of every cluster); it says whether there was one.
func (p *Pauses) Resume(ctx context.Context, cluster string) (bool, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	_, ok, err := p.get(ctx, cluster)
	if err != nil || !ok {
		return false, err
	}
	if err := p.kv.Purge(ctx, pauseKey(cluster)); err != nil {
		return false, unavailable("resume %s", cluster, err)
	}
	return true, nil
}

// Paused returns what holds a cluster's steps back: its own pause, or a pause of every
// cluster; nil if neither.
func (p *Pauses) Paused(ctx context.Context, cluster string) (*remediator.Pause, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for _, c := range []string{remediator.AllClusters, cluster} {
		pause, ok, err := p.get(ctx, c)
		if err != nil {
			return nil, err
		}
		if ok {
			return &pause, nil
		}
	}
	return nil, nil
}

// List returns every pause, a pause of every cluster first.
func (p *Pauses) List(ctx context.Context) ([]remediator.Pause, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	keys, err := p.kv.ListKeys(ctx)
	if err != nil {
		return nil, unavailable("list %s", bucketPauses, err)
	}
	defer func() { _ = keys.Stop() }()
	out := []remediator.Pause{}
	for k := range keys.Keys() {
		e, err := p.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, unavailable("read pause %s", k, err)
		}
		var pause remediator.Pause
		if err := json.Unmarshal(e.Value(), &pause); err != nil {
			return nil, fmt.Errorf("queue: pause %s: %w", k, err)
		}
		out = append(out, pause)
	}
	slices.SortFunc(out, func(a, b remediator.Pause) int {
		if (a.Cluster == remediator.AllClusters) != (b.Cluster == remediator.AllClusters) {
			if a.Cluster == remediator.AllClusters {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Cluster, b.Cluster)
	})
	return out, nil
}

func (p *Pauses) get(ctx context.Context, cluster string) (remediator.Pause, bool, error) {
	e, err := p.kv.Get(ctx, pauseKey(cluster))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		return remediator.Pause{}, false, nil
	case err != nil:
		return remediator.Pause{}, false, unavailable("read pause of %s", cluster, err)
	}
	var pause remediator.Pause
	if err := json.Unmarshal(e.Value(), &pause); err != nil {
		return remediator.Pause{}, false, fmt.Errorf("queue: pause of %s: %w", cluster, err)
	}
	return pause, true, nil
}
