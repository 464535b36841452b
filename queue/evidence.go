package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// traceWriters bounds the trace reads and writes of one join that run at once.
const traceWriters = 16

// Join adds alerts to incident id as evidence, each alert tagged with the batch it came in.
// Each fingerprint's trace is written first (a compare-and-set per fingerprint, so that
// concurrent joins count each observation once); then the incident absorbs what they changed
// in one compare-and-set, with accept (a check that it still takes evidence) and then (more
// changes) applied on the way. accept is also asked before any trace is written. New
// fingerprints are indexed to the incident.
func (s *Store) Join(ctx context.Context, id string, alerts []remediator.Arrival, accept func(*remediator.Incident) error, then func(*remediator.Incident)) (*remediator.Incident, error) {
	if accept != nil {
		inc, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := accept(inc); err != nil {
			return nil, err
		}
	}
	changes, err := s.trace(ctx, id, alerts)
	if err != nil {
		return nil, err
	}
	inc, err := s.Update(ctx, id, func(inc *remediator.Incident) error {
		if accept != nil {
			if err := accept(inc); err != nil {
				return err
			}
		}
		inc.Absorb(changes)
		if then != nil {
			then(inc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var fresh []string
	for _, c := range changes {
		if c.New {
			fresh = append(fresh, c.Observations[0].Fingerprint)
		}
	}
	return inc, s.IndexAlerts(ctx, id, fresh)
}

// trace records the alerts in their fingerprints' traces and returns what changed: one change
// per fingerprint that changed. A batch delivered again finds its own change in the trace,
// and returns it again, for the incident to absorb if it has not yet.
func (s *Store) trace(ctx context.Context, id string, alerts []remediator.Arrival) ([]remediator.Change, error) {
	byFP := map[string][]remediator.Arrival{}
	var order []string
	for _, a := range alerts {
		if _, ok := byFP[a.Fingerprint]; !ok {
			order = append(order, a.Fingerprint)
		}
		byFP[a.Fingerprint] = append(byFP[a.Fingerprint], a)
	}
	changes := make([]*remediator.Change, len(order))
	errs := make([]error, len(order))
	slots := make(chan struct{}, traceWriters)
	var wg sync.WaitGroup
	for i, fp := range order {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			changes[i], errs[i] = s.traceOne(ctx, id, byFP[fp])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []remediator.Change
	for _, c := range changes {
		if c != nil {
			out = append(out, *c)
		}
	}
	return out, nil
}

// traceOne records one fingerprint's observations, with compare-and-set on its trace.
func (s *Store) traceOne(ctx context.Context, id string, alerts []remediator.Arrival) (*remediator.Change, error) {
	key := traceKey(id, alerts[0].Fingerprint)
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for range maxUpdateTries {
		var (
			t   remediator.Trace
			rev uint64
		)
		e, err := s.evidence.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, unavailable("read evidence %s", key, err)
		default:
			if err := json.Unmarshal(e.Value(), &t); err != nil {
				return nil, fmt.Errorf("queue: evidence %s: %w", key, err)
			}
			rev = e.Revision()
		}
		orig, changed := t.Batch, false
		for _, a := range alerts {
			if t.Batch == a.Batch && !changed && t.Holds(a.Alert) {
				continue // this batch was here before: its change stands as recorded
			}
			changed = t.Observe(a.Batch, a.Alert) || changed
		}
		if !changed {
			if orig == alerts[len(alerts)-1].Batch {
				return &t.Change, nil // delivered again: the incident may not have absorbed it
			}
			return nil, nil
		}
		data, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("queue: evidence %s: %w", key, err)
		}
		if rev == 0 {
			_, err = s.evidence.Create(ctx, key, data)
		} else {
			_, err = s.evidence.Update(ctx, key, data, rev)
		}
		switch {
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue
		case err != nil:
			if err := full(bucketEvidence, err); err != nil {
				return nil, err
			}
			return nil, unavailable("record evidence %s", key, err)
		}
		return &t.Change, nil
	}
	return nil, remediator.Errorf(remediator.ECONFLICT, "evidence %s: changed by others %d times in a row", key, maxUpdateTries)
}

// HoldsAlert says whether incident id holds this observation of the alert already.
func (s *Store) HoldsAlert(ctx context.Context, id string, a remediator.Alert) (bool, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	key := traceKey(id, a.Fingerprint)
	e, err := s.evidence.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, unavailable("read evidence %s", key, err)
	}
	var t remediator.Trace
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return false, fmt.Errorf("queue: evidence %s: %w", key, err)
	}
	return t.Holds(a), nil
}

var keySafe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// traceKey is the evidence key of a fingerprint in an incident.
func traceKey(id, fingerprint string) string {
	if !keySafe.MatchString(fingerprint) {
		sum := sha256.Sum256([]byte(fingerprint))
		fingerprint = "h" + hex.EncodeToString(sum[:16])
	}
	return id + "." + fingerprint
}
