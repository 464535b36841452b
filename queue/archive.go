package queue

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/remediator/remediator"
)

// keyArchivedThrough, in bucketMeta, is the index sequence below which every incident is
// archived: the next pass starts there.
const keyArchivedThrough = "archived_through"

// Archive moves the incidents closed before now minus retention to the archive (where they
// stay readable, reports and all) and drops their traces. It walks the index from where the
// last pass stopped to the incidents opened after the cutoff, so a pass costs what there is
// to archive, not what is stored. It returns how many it archived.
func (q *Queue) Archive(ctx context.Context, retention time.Duration, now time.Time) (int, error) {
	s := q.Incidents
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cutoff := now.Add(-retention)
	info, err := s.index.Info(ctx)
	if err != nil {
		return 0, unavailable("read %s", streamIndex, err)
	}
	meta, err := q.js.KeyValue(ctx, bucketMeta)
	if err != nil {
		return 0, unavailable("bucket %s", bucketMeta, err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	from := max(info.State.FirstSeq, 1)
	if e, err := meta.Get(ctx, keyArchivedThrough); err == nil {
		if n, err := strconv.ParseUint(string(e.Value()), 10, 64); err == nil && n > from {
			from = n
		}
	}
	archived, through := 0, from
	done := true // every incident below seq is archived (or gone)
	for seq := from; seq <= info.State.LastSeq; seq++ {
		m, err := s.index.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			if done {
				through = seq + 1
			}
			continue
		}
		if err != nil {
			return archived, unavailable("read %s", streamIndex, err)
		}
		id := string(m.Data)
		e, err := s.incidents.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if done {
				through = seq + 1
			}
			continue // archived already, or never stored
		}
		if err != nil {
			return archived, unavailable("get incident %s", id, err)
		}
		var inc remediator.Incident
		if err := json.Unmarshal(e.Value(), &inc); err != nil {
			return archived, err
		}
		if !inc.CreatedAt.Before(cutoff) {
			break // opened after the cutoff: it and the rest are too recent
		}
		if !inc.Closed() || !inc.ClosedAt.Before(cutoff) {
			done = false
			continue
		}
		if _, err := s.archive.Put(ctx, id, e.Value()); err != nil {
			if err := full(bucketArchive, err); err != nil {
				return archived, err
			}
			return archived, unavailable("archive incident %s", id, err)
		}
		if err := s.incidents.Purge(ctx, id, jetstream.LastRevision(e.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return archived, unavailable("drop archived incident %s", id, err)
		}
		if err := s.dropTraces(ctx, id); err != nil {
			return archived, err
		}
		archived++
		if done {
			through = seq + 1
		}
	}
	if _, err := meta.Put(ctx, keyArchivedThrough, []byte(strconv.FormatUint(through, 10))); err != nil {
		return archived, unavailable("record %s", keyArchivedThrough, err)
	}
	return archived, nil
}

// dropTraces purges the evidence traces of an archived incident: its counts and kept detail
// stay in the incident.
func (s *Store) dropTraces(ctx context.Context, id string) error {
	keys, err := s.evidence.ListKeysFiltered(ctx, id+".*")
	if err != nil {
		return unavailable("list evidence of %s", id, err)
	}
	defer keys.Stop()
	for k := range keys.Keys() {
		if err := s.evidence.Purge(ctx, k); err != nil {
			return unavailable("drop evidence %s", k, err)
		}
	}
	return nil
}
