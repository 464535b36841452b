package queue

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// Locks are cluster locks in a key-value bucket whose keys expire after a TTL: a holder
// keeps its lock by refreshing it, and the lock of a holder that crashed expires.
type Locks struct {
	kv jetstream.KeyValue
	// fences keeps, by cluster, the step a holder runs and its deadline: a lock expires when
	// its holder goes silent, but the step it started may still run (a defragmentation cannot
	// be cancelled on the server), so no new holder starts before that deadline.
	fences jetstream.KeyValue
	ttl    time.Duration
}

// Fence is the step a lock holder runs, until when at most.
type Fence struct {
	Holder   string    `json:"holder"`
	Step     string    `json:"step"`
	Deadline time.Time `json:"deadline"`
}

// TTL is how long a lock lives without a refresh.
func (l *Locks) TTL() time.Duration { return l.ttl }

// Acquire takes the cluster's lock for holder and returns holder, or returns who holds it.
// Taking a lock the holder holds already refreshes it.
// A holder other than the last may not take it while the last one's step may still run: that
// is a *remediator.Later until the step's deadline.
func (l *Locks) Acquire(ctx context.Context, cluster, holder string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	f, _, err := l.fence(ctx, cluster)
	if err != nil {
		return "", err
	}
	if f != nil && f.Holder != holder {
		if left := time.Until(f.Deadline); left > 0 {
			return "", remediator.RetryLater(left, "step %s of the last lock holder (%s) may still be running on cluster %s until its deadline, %s",
				f.Step, f.Holder, cluster, f.Deadline.UTC().Format(time.RFC3339))
		}
	}
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

// Fence records that holder runs step on the cluster until deadline at most.
func (l *Locks) Fence(ctx context.Context, cluster, holder, step string, deadline time.Time) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	data, err := json.Marshal(Fence{Holder: holder, Step: step, Deadline: deadline})
	if err != nil {
		return err
	}
	if _, err := l.fences.Put(ctx, cluster, data); err != nil {
		return unavailable("fence %s", cluster, err)
	}
	return nil
}

// Unfence says holder's step on the cluster is over; another holder's fence is left alone.
func (l *Locks) Unfence(ctx context.Context, cluster, holder string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	f, rev, err := l.fence(ctx, cluster)
	if err != nil || f == nil || f.Holder != holder {
		return err
	}
	err = l.fences.Delete(ctx, cluster, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return unavailable("unfence %s", cluster, err)
	}
	return nil
}

func (l *Locks) fence(ctx context.Context, cluster string) (*Fence, uint64, error) {
	e, err := l.fences.Get(ctx, cluster)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, unavailable("read fence %s", cluster, err)
	}
	var f Fence
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		return nil, 0, nil // unreadable: it fences nothing
	}
	return &f, e.Revision(), nil
}
