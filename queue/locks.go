package queue

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// Locks are cluster locks in a key-value bucket whose keys expire after a TTL: a holder
// keeps its lock by refreshing it, and the lock of a holder that crashed expires.
type Locks struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// TTL is how long a lock lives without a refresh.
func (l *Locks) TTL() time.Duration { return l.ttl }

// Acquire takes the cluster's lock for holder and returns holder, or returns who holds it.
// Taking a lock the holder holds already refreshes it.
func (l *Locks) Acquire(ctx context.Context, cluster, holder string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for range maxUpdateTries {
		_, err := l.kv.Create(ctx, cluster, []byte(holder))
		if err == nil {
			return holder, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", unavailable("lock %s", cluster, err)
		}
		e, err := l.kv.Get(ctx, cluster)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released in between
		}
		if err != nil {
			return "", unavailable("read lock %s", cluster, err)
		}
		if owner := string(e.Value()); owner != holder {
			return owner, nil
		}
		return holder, l.Refresh(ctx, cluster, holder)
	}
	return "", remediator.Errorf(remediator.ECONFLICT, "lock %s: contended", cluster)
}

// Refresh renews the holder's lock; it fails if the lock expired, or is someone else's now.
func (l *Locks) Refresh(ctx context.Context, cluster, holder string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, err := l.kv.Get(ctx, cluster)
	if err != nil {
		return unavailable("read lock %s", cluster, err)
	}
	if owner := string(e.Value()); owner != holder {
		return remediator.Errorf(remediator.ECONFLICT, "lock %s is held by %s now", cluster, owner)
	}
	if _, err := l.kv.Update(ctx, cluster, []byte(holder), e.Revision()); err != nil {
		return unavailable("refresh lock %s", cluster, err)
	}
	return nil
}

// Release gives the holder's lock up; a lock that expired or changed hands is left alone.
func (l *Locks) Release(ctx context.Context, cluster, holder string) error {
	return deleteIfHeld(ctx, l.kv, cluster, holder)
}
