package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// Runs returns the recent finished incidents of a cluster and remediation, as the gates read
// them: one read, however many incidents are stored.
func (s *Store) Runs(ctx context.Context, cluster, remediation string) ([]remediator.Run, error) {
	runs, _, err := s.runsOf(ctx, openKey(cluster, remediation))
	return runs, err
}

func (s *Store) runsOf(ctx context.Context, key string) ([]remediator.Run, uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	e, err := s.runs.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, 0, nil
	case err != nil:
		return nil, 0, unavailable("read runs of %s", key, err)
	}
	var runs []remediator.Run
	if err := json.Unmarshal(e.Value(), &runs); err != nil {
		return nil, 0, fmt.Errorf("queue: runs of %s: %w", key, err)
	}
	return runs, e.Revision(), nil
}

// recordRun adds a finished incident's run to its cluster and remediation's runs, once for
// each of its attempts.
func (s *Store) recordRun(ctx context.Context, inc *remediator.Incident) error {
	key := openKey(inc.Cluster, inc.Remediation)
	for range maxUpdateTries {
		runs, rev, err := s.runsOf(ctx, key)
		if err != nil {
			return err
		}
		run := inc.Run()
		if slices.ContainsFunc(runs, func(r remediator.Run) bool { return r.Incident == run.Incident && max(r.Attempt, 1) == run.Attempt }) {
			return nil
		}
		runs = append(runs, run)
		if len(runs) > remediator.RunsKept {
			runs = runs[len(runs)-remediator.RunsKept:]
		}
		data, err := json.Marshal(runs)
		if err != nil {
			return err
		}
		uctx, cancel := withDefaultTimeout(ctx)
		if rev == 0 {
			_, err = s.runs.Create(uctx, key, data)
		} else {
			_, err = s.runs.Update(uctx, key, data, rev)
		}
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue
		case err != nil:
			return unavailable("record a run of %s", key, err)
		}
		return nil
	}
	return remediator.Errorf(remediator.ECONFLICT, "runs of %s: contended", key)
}
